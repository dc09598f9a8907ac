import Glibc
import Testing
import VRouterCore

@testable import VRouterIO

/// Netlink replies parsed without a socket: the damaged ones the netlink fuzzer found
/// (each was a trap or a read past the datagram), and a good one for contrast. No root.
@Suite struct NetlinkReplyTests {
    static let sequence: UInt32 = 77
    static let portID: UInt32 = 4242

    /// One message: header (length from `declaredLength` or the bytes), then `payload`.
    static func message(type: UInt16, flags: UInt16 = 0, declaredLength: UInt32? = nil, _ payload: [UInt8]) -> [UInt8] {
        var m: [UInt8] = []
        for v in [declaredLength ?? UInt32(16 + payload.count)] { m += withUnsafeBytes(of: v) { Array($0) } }
        m += withUnsafeBytes(of: type) { Array($0) } + withUnsafeBytes(of: flags) { Array($0) }
        m += withUnsafeBytes(of: sequence) { Array($0) } + withUnsafeBytes(of: portID) { Array($0) }
        return m + payload
    }

    static func attribute(_ type: UInt16, _ data: [UInt8]) -> [UInt8] {
        var a = withUnsafeBytes(of: UInt16(4 + data.count)) { Array($0) } + withUnsafeBytes(of: type) { Array($0) }
        a += data
        while a.count % 4 != 0 { a.append(0) }
        return a
    }

    struct Walk {
        var handedOn: [(offset: Int, length: Int)] = []
        var links: [LinkInfo] = []
        var addresses: [AddressInfo] = []
        var routes: [Route] = []
        var finished = false
        var error: SystemError?
    }

    /// Walks `datagram` from an allocation of exactly its size (so AddressSanitizer, in
    /// `tools/test --sanitize address`, reports any read past it) through every parser.
    static func walk(_ datagram: [UInt8]) -> Walk {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(datagram.count, 1), alignment: 4)
        defer { buffer.deallocate() }
        datagram.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: datagram.count) }
        var result = Walk()
        var interrupted = false
        do {
            result.finished = try Netlink.walkReplies(
                buffer,
                length: datagram.count,
                sequence: sequence,
                portID: portID,
                interrupted: &interrupted
            ) { nlh in
                result.handedOn.append((UnsafeRawPointer(nlh) - UnsafeRawPointer(buffer), Int(nlh.pointee.nlmsg_len)))
                if let l = Netlink.parseLink(nlh) { result.links.append(l) }
                if let a = Netlink.parseAddress(nlh, names: [:]) { result.addresses.append(a) }
                if let r = Netlink.parseRoute(nlh, table: 254, names: [:]) { result.routes.append(r) }
            }
        } catch {
            result.error = error
        }
        return result
    }

    static let done = message(type: 3, [0, 0, 0, 0])

    @Test func aGoodLinkReplyIsParsed() {
        let ifinfo: [UInt8] =
            [0, 0, 1, 0] + withUnsafeBytes(of: Int32(5)) { Array($0) } + [UInt8](repeating: 0, count: 8)
        let link = Self.message(type: 16, ifinfo + Self.attribute(3, Array("vrt0\0".utf8)))
        let w = Self.walk(link + Self.done)
        #expect(w.finished && w.error == nil)
        #expect(w.links.map(\.name) == ["vrt0"] && w.links.map(\.index) == [5])
    }

    /// libmnl's mnl_nlmsg_ok compares the length as a signed int: a message claiming 2 GiB
    /// or more passed, and the parsers read as far as it claimed.
    @Test func aMessageLongerThanItsDatagramIsNotHandedOn() {
        let huge = Self.message(type: 16, declaredLength: 0xE400_0000, [UInt8](repeating: 0, count: 32))
        let w = Self.walk(huge)
        #expect(w.handedOn.isEmpty)
        #expect(!w.finished && w.error == nil)
    }

    /// The error code is -errno; -Int32.min does not exist, and negating it trapped.
    @Test func anErrorCodeThatIsNoErrnoIsAProtocolError() {
        for code in [Int32.min, 5] {
            let bytes = withUnsafeBytes(of: code) { Array($0) } + [UInt8](repeating: 0, count: 16)
            let w = Self.walk(Self.message(type: 2, bytes))
            #expect(w.error?.errno == EPROTO, "code \(code)")
        }
        let w = Self.walk(
            Self.message(type: 2, withUnsafeBytes(of: Int32(-ENODEV)) { Array($0) } + [UInt8](repeating: 0, count: 16))
        )
        #expect(w.error?.errno == ENODEV)
    }

    /// An error message too short for its code, or (with extended-ack attributes) for the
    /// request header it carries, was read past its end.
    @Test func truncatedErrorsAreReadNoFurtherThanTheyGo() {
        let w = Self.walk(Self.message(type: 2, []))
        #expect(w.error?.errno == EPROTO)
        #expect(w.error?.detail == "a truncated netlink error")
        // NLM_F_ACK_TLVS (0x200), an error code, and no request header after it.
        let tlvs = Self.walk(Self.message(type: 2, flags: 0x200, withUnsafeBytes(of: Int32(-EINVAL)) { Array($0) }))
        #expect(tlvs.error?.errno == EINVAL)
        #expect(tlvs.error?.detail == nil)
    }

    /// Link, address and route messages too short for their family header were read past
    /// their end.
    @Test func messagesShorterThanTheirFamilyHeaderAreSkipped() {
        for type: UInt16 in [16, 20, 24] {
            let w = Self.walk(Self.message(type: type, [1, 2, 3, 4]) + Self.done)
            #expect(w.finished)
            #expect(w.links.isEmpty && w.addresses.isEmpty && w.routes.isEmpty, "type \(type)")
        }
    }

    /// A prefix length longer than the address (an address /40, a route /200) trapped in
    /// InterfaceAddress and IPv4Prefix.
    @Test func prefixesLongerThanTheirAddressAreSkipped() {
        let v4: [UInt8] = [192, 0, 2, 10]
        let address = Self.message(type: 20, [2, 40, 0, 0, 5, 0, 0, 0] + Self.attribute(2, v4))
        // rtmsg: family 2, dst_len 200, …, table 254, protocol, scope, type 1 (unicast), flags.
        let route = Self.message(type: 24, [2, 200, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0] + Self.attribute(1, v4))
        let w = Self.walk(address + route + Self.done)
        #expect(w.finished)
        #expect(w.addresses.isEmpty && w.routes.isEmpty)
        // The same with lengths that fit are parsed.
        let good =
            Self.message(type: 20, [2, 24, 0, 0, 5, 0, 0, 0] + Self.attribute(2, v4))
            + Self.message(type: 24, [2, 24, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0] + Self.attribute(1, v4))
        let g = Self.walk(good + Self.done)
        #expect(g.addresses.map(\.description) == ["#5: 192.0.2.10/24 scope 0"])
        #expect(g.routes.count == 1)
    }
}
