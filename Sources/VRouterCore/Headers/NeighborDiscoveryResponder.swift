// Proxy neighbour discovery: the IPv6 counterpart of ARPResponder. A neighbour
// solicitation is validated as RFC 4861 §7.1.1 requires and turned into the advertisement
// of §7.2.4 in place (the NA is 72 bytes after L2; an NS is 64 or more).

/// A neighbour solicitation that passed validation.
@frozen
public struct NeighborSolicitation: Sendable {
    public var target: IPv6Address
    public var source: IPv6Address
    /// The source link-layer address option, when present.
    public var sourceLinkLayerAddress: MACAddress?
    /// Offsets in the frame.
    public var l3Offset: Int
    public var l4Offset: Int
    public var vlanCount: Int
    /// From the unspecified address: duplicate address detection (RFC 4862 §5.4.2).
    @inlinable public var isDuplicateAddressDetection: Bool { source == .any }
}

public enum NeighborDiscoveryResponder {
    /// ff02::1, where DAD answers go.
    public static let allNodes = IPv6Address(0xFF02_0000_0000_0000_0000_0000_0000_0001)
    /// 33:33:00:00:00:01 (RFC 2464 §7 mapping of ff02::1).
    public static let allNodesMAC = MACAddress(0x3333_0000_0001)
    /// The solicited-node prefix ff02::1:ff00:0/104 (RFC 4291 §2.7.1).
    static let solicitedNodePrefix: UInt128 = 0xFF02_0000_0000_0000_0000_0001_FF00_0000
    /// NS and NA must arrive with hop limit 255 (not forwarded by a router).
    public static let hopLimit: UInt8 = 255
    static let naLength = NeighborDiscoveryHeader.fixedLength + 8

    /// Validates the frame as a neighbour solicitation (RFC 4861 §7.1.1): IPv6 hop limit
    /// 255, ICMPv6 type 135 code 0, length ≥ 24, checksum correct, target not multicast,
    /// options well formed, and from :: only to a solicited-node address without a source
    /// link-layer option. ND messages with extension headers are not accepted.
    public static func validateSolicitation(_ p: UnsafeRawPointer, length: Int) -> NeighborSolicitation? {
        let parsed = PacketParser.parse(p, length: length)
        guard parsed.isValid, parsed.family == .ipv6, parsed.proto == IPProtocol.icmpv6,
            parsed.l4Offset == parsed.l3Offset + HeaderSize.ipv6,
            parsed.icmpType == ICMPv6Header.neighborSolicitation, parsed.icmpCode == 0
        else { return nil }
        let ip = IPv6Header(p + parsed.l3Offset)
        let icmpLength = parsed.l3Length - HeaderSize.ipv6
        guard ip.hopLimit == hopLimit, icmpLength >= NeighborDiscoveryHeader.fixedLength else { return nil }
        let icmp = ICMPv6Header(p + parsed.l4Offset)
        guard
            icmp.isChecksumValid(
                length: icmpLength,
                pseudoHeaderSum: ip.pseudoHeaderSum(nextHeader: IPProtocol.icmpv6, length: icmpLength)
            )
        else { return nil }
        let nd = NeighborDiscoveryHeader(p + parsed.l4Offset)
        let target = nd.target
        guard !target.isMulticast else { return nil }
        let scan = NeighborDiscoveryHeader.scanOptions(
            nd.options,
            length: icmpLength - NeighborDiscoveryHeader.fixedLength,
            linkLayerType: NeighborDiscoveryHeader.sourceLinkLayerOption
        )
        guard scan.isValid else { return nil }
        let source = parsed.sourceIPv6
        if source == .any {
            guard parsed.destination & ~0xFF_FFFF == solicitedNodePrefix, scan.linkLayerAddress == nil else {
                return nil
            }
        }
        return NeighborSolicitation(
            target: target,
            source: source,
            sourceLinkLayerAddress: scan.linkLayerAddress,
            l3Offset: parsed.l3Offset,
            l4Offset: parsed.l4Offset,
            vlanCount: parsed.vlanCount
        )
    }

    /// Turns the neighbour solicitation in buffer `idx` into a neighbour advertisement for
    /// its target at `mac` (RFC 4861 §7.2.4): router flag as given, override set, solicited
    /// set — except for DAD (NS from ::), which is answered to ff02::1 with solicited
    /// clear; a target link-layer address option; from the target address; hop limit 255.
    /// Note that answering a DAD probe for an address the asker is about to use makes the
    /// asker give that address up: the caller decides whose targets to answer.
    /// Updates meta length, l3, l4, proto, flags, flow. Returns false, leaving the buffer
    /// as it was, when the frame is not a valid NS.
    public static func advertise(pool: PacketPool, _ idx: UInt32, mac: MACAddress, isRouter: Bool = true) -> Bool {
        let m = pool.meta(idx)
        let offset = Int(m.pointee.offset)
        let length = Int(m.pointee.length)
        guard offset + length <= pool.bufferSize else { return false }
        guard let ns = validateSolicitation(pool.buffer(idx) + offset, length: length) else { return false }
        let newLength = ns.l4Offset + naLength
        guard let start = pool.makeRoom(idx, front: 0, keep: min(length, newLength), size: newLength) else {
            return false
        }
        let frame = pool.buffer(idx) + start
        let dad = ns.isDuplicateAddressDetection
        let eth = EthernetHeader(frame)
        eth.destination = dad ? allNodesMAC : eth.source
        eth.source = mac
        let ip = frame + ns.l3Offset
        _ = PacketBuilder.ipv6(
            ip,
            source: ns.target,
            destination: dad ? allNodes : ns.source,
            nextHeader: IPProtocol.icmpv6,
            payloadLength: naLength,
            hopLimit: hopLimit
        )
        let na = frame + ns.l4Offset
        na.setU8(0, ICMPv6Header.neighborAdvertisement)
        na.setU8(1, 0)
        var flags = NeighborDiscoveryHeader.overrideFlag
        if isRouter { flags |= NeighborDiscoveryHeader.routerFlag }
        if !dad { flags |= NeighborDiscoveryHeader.solicitedFlag }
        na.setBE32(4, UInt32(flags) << 24)
        na.setBE128(8, ns.target.value)
        na.setU8(24, NeighborDiscoveryHeader.targetLinkLayerOption)
        na.setU8(25, 1)
        na.setBE48(26, mac.value)
        ICMPv6Header(na).updateChecksum(
            length: naLength,
            pseudoHeaderSum: IPv6Header(ip).pseudoHeaderSum(nextHeader: IPProtocol.icmpv6, length: naLength)
        )
        m.pointee.length = UInt16(newLength)
        m.pointee.l3 = UInt16(start + ns.l3Offset)
        m.pointee.l4 = UInt16(start + ns.l4Offset)
        m.pointee.proto = IPProtocol.icmpv6
        m.pointee.flags = ns.vlanCount > 0 ? [.ipv6, .generated, .vlan] : [.ipv6, .generated]
        m.pointee.flow = PacketMeta.noFlow
        return true
    }
}
