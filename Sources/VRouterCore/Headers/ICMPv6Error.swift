// ICMPv6 error generation (RFC 4443 §2.4, §3), in place like ICMPv4Error: 48 bytes of new
// IPv6 + ICMPv6 header go in front of the original packet, which is quoted up to the
// 1280-byte minimum MTU.

@frozen
public enum ICMPv6ErrorKind: Sendable, Equatable {
    /// Type 3 code 0: hop limit exceeded in transit.
    case timeExceeded
    /// Type 1 code 0: no route to destination.
    case noRoute
    /// Type 1 code 1: communication administratively prohibited.
    case administrativelyProhibited
    /// Type 1 code 3: address unreachable.
    case addressUnreachable
    /// Type 2 code 0 with the MTU of the next hop.
    case packetTooBig(mtu: UInt32)

    @inlinable public var type: UInt8 {
        switch self {
        case .timeExceeded: ICMPv6Header.timeExceeded
        case .packetTooBig: ICMPv6Header.packetTooBig
        default: ICMPv6Header.destinationUnreachable
        }
    }
    @inlinable public var code: UInt8 {
        switch self {
        case .timeExceeded, .noRoute, .packetTooBig: 0
        case .administrativelyProhibited: ICMPv6Header.codeAdministrativelyProhibited
        case .addressUnreachable: ICMPv6Header.codeAddressUnreachable
        }
    }
    @inlinable public var restOfHeader: UInt32 {
        if case .packetTooBig(let mtu) = self { return mtu }
        return 0
    }
    @inlinable public var isPacketTooBig: Bool {
        if case .packetTooBig = self { return true }
        return false
    }
}

public enum ICMPv6Error {
    /// RFC 4443 §2.4(c): the error must not exceed the minimum IPv6 MTU.
    public static let maxPacketLength = 1280
    static let added = HeaderSize.ipv6 + HeaderSize.icmp
    public static let hopLimit: UInt8 = 64

    /// RFC 4443 §2.4(e): no error about an ICMPv6 error (or an ICMPv6 message whose type
    /// cannot be read), about a packet to a multicast address or sent as link-layer
    /// multicast/broadcast (Packet Too Big excepted), or from a source that is not one
    /// node (unspecified or multicast).
    public static func isAllowed(_ kind: ICMPv6ErrorKind, about parsed: ParsedPacket, frame p: UnsafeRawPointer) -> Bool
    {
        guard parsed.isValid, parsed.family == .ipv6 else { return false }
        if parsed.proto == IPProtocol.icmpv6 {
            guard parsed.hasTransportHeader, !ICMPv6Header.isError(parsed.icmpType) else { return false }
        }
        if !kind.isPacketTooBig {
            if parsed.destinationIPv6.isMulticast || EthernetHeader(p).destination.isMulticast { return false }
        }
        let src = parsed.sourceIPv6
        return src != .any && !src.isMulticast
    }

    /// Rewrites the IPv6 frame in buffer `idx` into `kind` about itself, from `source` to
    /// the original sender: Ethernet addresses swapped (tags kept), hop limit 64, then as
    /// much of the original packet as keeps the error within 1280 bytes. Updates meta as
    /// ICMPv4Error.make does. Returns false, leaving the buffer as it was, when no error
    /// may or can be sent.
    public static func make(_ kind: ICMPv6ErrorKind, pool: PacketPool, _ idx: UInt32, source: IPv6Address) -> Bool {
        let m = pool.meta(idx)
        let offset = Int(m.pointee.offset)
        let length = Int(m.pointee.length)
        guard offset + length <= pool.bufferSize else { return false }
        let frame = pool.buffer(idx) + offset
        let parsed = PacketParser.parse(frame, length: length)
        guard isAllowed(kind, about: parsed, frame: frame) else { return false }
        let l2 = parsed.l2Length
        // Clamp to what the buffer can hold with the new headers in front (small pools).
        let room = pool.bufferSize - added - l2
        let quote = min(parsed.l3Length, maxPacketLength - added, room)
        guard quote > 0,
            let start = pool.makeRoom(idx, front: added, keep: l2 + quote, size: l2 + quote)
        else { return false }
        let b = pool.buffer(idx)
        let newStart = start - added
        let n = b + newStart
        // 48 bytes down, L2 ≤ 22 bytes: no overlap.
        n.copyMemory(from: b + start, byteCount: l2)
        EthernetHeader(n).swapAddresses()
        let ip = n + l2
        let icmpLength = HeaderSize.icmp + quote
        _ = PacketBuilder.ipv6(
            ip,
            source: source,
            destination: parsed.sourceIPv6,
            nextHeader: IPProtocol.icmpv6,
            payloadLength: icmpLength,
            hopLimit: hopLimit
        )
        let icmp = ip + HeaderSize.ipv6
        icmp.setU8(0, kind.type)
        icmp.setU8(1, kind.code)
        icmp.setBE32(4, kind.restOfHeader)
        ICMPv6Header(icmp).updateChecksum(
            length: icmpLength,
            pseudoHeaderSum: IPv6Header(ip).pseudoHeaderSum(nextHeader: IPProtocol.icmpv6, length: icmpLength)
        )
        m.pointee.offset = UInt16(newStart)
        m.pointee.length = UInt16(l2 + added + quote)
        m.pointee.l3 = UInt16(newStart + l2)
        m.pointee.l4 = UInt16(newStart + l2 + HeaderSize.ipv6)
        m.pointee.proto = IPProtocol.icmpv6
        m.pointee.flags = parsed.vlanCount > 0 ? [.ipv6, .generated, .vlan] : [.ipv6, .generated]
        m.pointee.flow = PacketMeta.noFlow
        return true
    }
}
