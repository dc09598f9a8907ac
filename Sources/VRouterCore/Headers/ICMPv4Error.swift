// ICMPv4 error generation (RFC 792, RFC 1812 §4.3.2), in place: the original datagram's
// first bytes stay where they are and become the quote; the new Ethernet, IPv4 and ICMP
// headers are written in the 28 bytes of headroom before them. Slow path: one parse, one
// checksum over at most 556 bytes, no allocation.

/// The errors the dataplane sends.
@frozen
public enum ICMPv4ErrorKind: Sendable, Equatable {
    /// Type 11 code 0: TTL reached zero in transit.
    case timeExceeded
    /// Type 3 code 0: no route in the VRF.
    case netUnreachable
    /// Type 3 code 1.
    case hostUnreachable
    /// Type 3 code 3.
    case portUnreachable
    /// Type 3 code 13: refused by policy.
    case administrativelyProhibited
    /// Type 3 code 4 with the next-hop MTU (RFC 1191 §4): too big and DF set.
    case fragmentationNeeded(mtu: UInt16)

    @inlinable public var type: UInt8 {
        self == .timeExceeded ? ICMPv4Header.timeExceeded : ICMPv4Header.destinationUnreachable
    }
    @inlinable public var code: UInt8 {
        switch self {
        case .timeExceeded: 0
        case .netUnreachable: ICMPv4Header.codeNetUnreachable
        case .hostUnreachable: ICMPv4Header.codeHostUnreachable
        case .portUnreachable: ICMPv4Header.codePortUnreachable
        case .administrativelyProhibited: ICMPv4Header.codeAdministrativelyProhibited
        case .fragmentationNeeded: ICMPv4Header.codeFragmentationNeeded
        }
    }
    /// Bytes 4–7 of the ICMP header.
    @inlinable public var restOfHeader: UInt32 {
        if case .fragmentationNeeded(let mtu) = self { return UInt32(mtu) }
        return 0
    }
}

public enum ICMPv4Error {
    /// RFC 1812 §4.3.2.3: the error datagram (IP header included) is at most 576 bytes.
    public static let maxDatagramLength = 576
    /// New bytes in front of the quote: IPv4 header and ICMP header.
    static let added = HeaderSize.ipv4 + HeaderSize.icmp
    /// RFC 1812 §4.3.2.5: errors go out with precedence 6 (internetwork control).
    public static let tos: UInt8 = 0xC0
    public static let ttl: UInt8 = 64

    /// True when RFC 1812 §4.3.2.7 allows an ICMP error about this packet: not about an
    /// ICMP error, a non-first fragment, a link-layer or IP multicast/broadcast, or a
    /// source that is not one host (0/8, 127/8, multicast, class E).
    public static func isAllowed(about parsed: ParsedPacket, frame p: UnsafeRawPointer) -> Bool {
        guard parsed.isValid, parsed.family == .ipv4 else { return false }
        guard parsed.fragmentOffset == 0, parsed.hasTransportHeader else { return false }
        if parsed.proto == IPProtocol.icmp && ICMPv4Header.isError(parsed.icmpType) { return false }
        if EthernetHeader(p).destination.isMulticast { return false }  // includes broadcast
        let dst = parsed.destinationIPv4
        if dst.isMulticast || dst.isBroadcast { return false }
        return SlowPathAddress.isUnicastHost(parsed.sourceIPv4)
    }

    /// Rewrites the IPv4 frame in buffer `idx` into `kind` about itself, from `source`
    /// back to the original sender: Ethernet addresses swapped (tags kept), IPv4 TTL 64,
    /// TOS 0xC0, then the ICMP header and as much of the original datagram as fits in 576
    /// bytes (at least its header and 8 bytes when it has them, RFC 792). Updates meta
    /// offset, length, l3, l4, proto, flags (.ipv4, .generated, .vlan if tagged) and flow.
    /// Returns false, leaving the buffer as it was, when no error may or can be sent.
    public static func make(_ kind: ICMPv4ErrorKind, pool: PacketPool, _ idx: UInt32, source: IPv4Address) -> Bool {
        let m = pool.meta(idx)
        let offset = Int(m.pointee.offset)
        let length = Int(m.pointee.length)
        guard offset + length <= pool.bufferSize else { return false }
        let frame = pool.buffer(idx) + offset
        let parsed = PacketParser.parse(frame, length: length)
        guard isAllowed(about: parsed, frame: frame) else { return false }
        let l2 = parsed.l2Length
        let quote = min(parsed.l3Length, maxDatagramLength - added)
        guard let start = pool.makeRoom(idx, front: added, keep: l2 + quote, size: l2 + quote) else { return false }
        let b = pool.buffer(idx)
        let newStart = start - added
        let n = b + newStart
        // The old L2 header (≤ 22 bytes) moves 28 bytes down, so source and destination
        // ranges do not overlap; its place becomes the new IPv4/ICMP headers.
        n.copyMemory(from: b + start, byteCount: l2)
        EthernetHeader(n).swapAddresses()
        let ip = n + l2
        _ = PacketBuilder.ipv4(
            ip,
            source: source,
            destination: parsed.sourceIPv4,
            proto: IPProtocol.icmp,
            payloadLength: HeaderSize.icmp + quote,
            ttl: ttl,
            tos: tos
        )
        let icmp = ip + HeaderSize.ipv4
        icmp.setU8(0, kind.type)
        icmp.setU8(1, kind.code)
        icmp.setBE32(4, kind.restOfHeader)
        ICMPv4Header(icmp).updateChecksum(length: HeaderSize.icmp + quote)
        m.pointee.offset = UInt16(newStart)
        m.pointee.length = UInt16(l2 + added + quote)
        m.pointee.l3 = UInt16(newStart + l2)
        m.pointee.l4 = UInt16(newStart + l2 + HeaderSize.ipv4)
        m.pointee.proto = IPProtocol.icmp
        m.pointee.flags = parsed.vlanCount > 0 ? [.ipv4, .generated, .vlan] : [.ipv4, .generated]
        m.pointee.flow = PacketMeta.noFlow
        return true
    }
}
