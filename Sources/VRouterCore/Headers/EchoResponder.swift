// Answering pings to the node's own addresses (the gateway address pods ping first), in
// place: swap the addresses, flip the type, patch the checksums.

public enum EchoResponder {
    public static let ttl: UInt8 = 64

    /// Turns the ICMPv4 echo request or ICMPv6 echo request in buffer `idx` into its reply,
    /// from the address it was sent to. IPv4 options are dropped from the reply (RFC 1122
    /// §3.2.2.6 only asks to reverse source routes, which this node never honours); TTL or
    /// hop limit 64; Ethernet padding trimmed. Updates meta length, l3, l4, proto, flags,
    /// flow. Returns false, leaving the buffer as it was, for anything else: not an echo
    /// request with code 0 and a valid checksum, a fragment, a request to a multicast or
    /// broadcast address or from a source that is not one host, IPv6 with extension headers.
    public static func reply(pool: PacketPool, _ idx: UInt32) -> Bool {
        let m = pool.meta(idx)
        let offset = Int(m.pointee.offset)
        let length = Int(m.pointee.length)
        guard offset + length <= pool.bufferSize else { return false }
        let frame = pool.buffer(idx) + offset
        let parsed = PacketParser.parse(frame, length: length)
        guard parsed.isValid, !parsed.isFragment, parsed.hasTransportHeader, parsed.icmpCode == 0 else { return false }
        guard !EthernetHeader(frame).destination.isMulticast else { return false }
        let l2 = parsed.l2Length
        switch parsed.family {
        case .ipv4:
            guard parsed.proto == IPProtocol.icmp, parsed.icmpType == ICMPv4Header.echoRequest else { return false }
            let src = parsed.sourceIPv4
            let dst = parsed.destinationIPv4
            guard SlowPathAddress.isUnicastHost(src), SlowPathAddress.isUnicastHost(dst) else { return false }
            let ip = IPv4Header(frame + l2)
            let hl = ip.headerLength
            let icmpLength = parsed.l3Length - hl
            guard ICMPv4Header(frame + parsed.l4Offset).isChecksumValid(length: icmpLength) else { return false }
            if hl > HeaderSize.ipv4 {
                // Drop the options: move the ICMP message down onto them.
                // Safe: the parser put hl + icmpLength = total length inside the frame.
                (ip.base + HeaderSize.ipv4).copyMemory(from: ip.base + hl, byteCount: icmpLength)
                ip.ihl = 5
            }
            ip.totalLength = UInt16(HeaderSize.ipv4 + icmpLength)
            ip.source = dst
            ip.destination = src
            ip.ttl = ttl
            ip.updateChecksum()
            let icmp = ICMPv4Header(ip.base + HeaderSize.ipv4)
            // Type word 0x0800 → 0x0000 (RFC 1624).
            icmp.type = ICMPv4Header.echoReply
            icmp.checksum = Checksum.update(icmp.checksum, old: UInt16(ICMPv4Header.echoRequest) << 8, new: 0)
            m.pointee.length = UInt16(l2 + HeaderSize.ipv4 + icmpLength)
            m.pointee.l4 = UInt16(offset + l2 + HeaderSize.ipv4)
            m.pointee.proto = IPProtocol.icmp
            m.pointee.flags = parsed.vlanCount > 0 ? [.ipv4, .generated, .vlan] : [.ipv4, .generated]
        case .ipv6:
            guard parsed.proto == IPProtocol.icmpv6, parsed.icmpType == ICMPv6Header.echoRequest,
                parsed.l4Offset == l2 + HeaderSize.ipv6
            else { return false }
            let src = parsed.sourceIPv6
            let dst = parsed.destinationIPv6
            guard src != .any, !src.isMulticast, !dst.isMulticast else { return false }
            let ip = IPv6Header(frame + l2)
            let icmpLength = parsed.l3Length - HeaderSize.ipv6
            let icmp = ICMPv6Header(frame + parsed.l4Offset)
            let pseudo = ip.pseudoHeaderSum(nextHeader: IPProtocol.icmpv6, length: icmpLength)
            guard icmp.isChecksumValid(length: icmpLength, pseudoHeaderSum: pseudo) else { return false }
            ip.source = dst
            ip.destination = src
            ip.hopLimit = ttl
            // Swapping the addresses leaves the pseudo-header sum as it was; only the type
            // word changes, 0x8000 → 0x8100.
            icmp.type = ICMPv6Header.echoReply
            icmp.checksum = Checksum.update(
                icmp.checksum,
                old: UInt16(ICMPv6Header.echoRequest) << 8,
                new: UInt16(ICMPv6Header.echoReply) << 8
            )
            m.pointee.length = UInt16(l2 + parsed.l3Length)
            m.pointee.l4 = UInt16(offset + parsed.l4Offset)
            m.pointee.proto = IPProtocol.icmpv6
            m.pointee.flags = parsed.vlanCount > 0 ? [.ipv6, .generated, .vlan] : [.ipv6, .generated]
        case .arp, .none:
            return false
        }
        EthernetHeader(frame).swapAddresses()
        m.pointee.l3 = UInt16(offset + l2)
        m.pointee.flow = PacketMeta.noFlow
        return true
    }
}
