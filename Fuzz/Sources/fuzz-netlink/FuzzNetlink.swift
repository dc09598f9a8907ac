// rtnetlink replies as the kernel sends them, through what vrouterd reads them with:
// Netlink.walkReplies (acks, errors with extended-ack text, dump ends, stale answers,
// interrupted dumps) and the link, address and route parsers.
//
// Input: datagrams, each a big-endian 16-bit length and that many bytes (cut at the end
// of the input). They answer the request whose sequence number and port id the first
// message carries (so seeds captured from a kernel match). Each datagram is copied into an
// allocation of exactly its size, so AddressSanitizer reports any read past it.
//
// Checked: no crash and nothing read outside a datagram; every message handed on lies
// inside its datagram; every message is given to all three parsers, each of which must
// ignore what is not its own; a walk that finishes ends the answer.

import FuzzSupport
import Glibc
import VRouterIO

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNetlink(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    var sequence: UInt32 = 0
    var portID: UInt32 = 0
    var first = true
    var interrupted = false
    var names: [Int32: String] = [:]
    while !input.isAtEnd {
        let bytes = input.take(Int(input.bigEndian16()))
        let datagram = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 4)
        defer { datagram.deallocate() }
        if let base = bytes.baseAddress { datagram.copyMemory(from: base, byteCount: bytes.count) }
        if first && bytes.count >= 16 {
            sequence = datagram.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
            portID = datagram.loadUnaligned(fromByteOffset: 12, as: UInt32.self)
            first = false
        }
        let end = datagram + bytes.count
        do {
            let finished = try Netlink.walkReplies(
                datagram,
                length: bytes.count,
                sequence: sequence,
                portID: portID,
                interrupted: &interrupted
            ) { nlh in
                let start = UnsafeMutableRawPointer(nlh)
                require(
                    start >= datagram && start + Int(nlh.pointee.nlmsg_len) <= end,
                    "a message of \(nlh.pointee.nlmsg_len) B at \(start - datagram) handed on from a \(bytes.count) B datagram"
                )
                if let link = Netlink.parseLink(nlh) { names[link.index] = link.name }
                _ = Netlink.parseAddress(nlh, names: names)
                _ = Netlink.parseRoute(nlh, table: 254, names: names)
            }
            if finished { return 0 }
        } catch {
            // The kernel's error, as vrouterd would report it: it must render.
            require(!error.description.isEmpty, "an empty error")
            return 0
        }
    }
    return 0
}
