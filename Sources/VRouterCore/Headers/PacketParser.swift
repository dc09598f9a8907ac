// The general parser: Ethernet (up to two VLAN tags), IPv4/IPv6/ARP, and TCP/UDP/ICMP.
// It is for tests, tools and slow paths, and fast enough for a hot path that wants one call:
// Eth/IPv4/UDP is about a dozen loads and compares, no allocation, and nothing past the
// `length` bytes given is ever read — every offset is compared with a bound first.
// It checks structure (lengths, versions, header chains), not checksums: the IPv4 header
// checksum is IPv4Header.isChecksumValid, which the caller runs when it wants it.

/// Network-layer family of a parsed frame.
@frozen
public enum PacketFamily: UInt8, Sendable {
    case none, ipv4, ipv6, arp
}

/// What `PacketParser.parse` found. Offsets are from the first byte of the frame.
/// Stored compactly (16-bit offsets, one flag byte) so that returning it is a handful of
/// stores: frames are at most 64 KiB, and the accessors widen to Int for free.
@frozen
public struct ParsedPacket: Sendable {
    @usableFromInline var _reason: UInt8
    @usableFromInline var _family: UInt8
    @usableFromInline var _vlanCount: UInt8
    @usableFromInline var _bits: UInt8
    /// Upper-layer protocol (after IPv6 extension headers).
    public var proto: UInt8
    public var tcpFlags: TCPFlags
    public var icmpType: UInt8
    public var icmpCode: UInt8
    /// EtherType after the tags.
    public var etherType: UInt16
    /// TPID and TCI of the outer (first) tag and TCI of the inner tag, 0 when absent.
    public var outerTPID: UInt16
    public var outerTCI: UInt16
    public var innerTCI: UInt16
    @usableFromInline var _l3: UInt16
    @usableFromInline var _l3Length: UInt16
    @usableFromInline var _l4: UInt16
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    @usableFromInline var _fragmentOffset: UInt16
    /// Echo request/reply identifier (the ICMP "port" of a flow key).
    public var icmpIdentifier: UInt16
    public var fragmentIdentification: UInt32
    /// Addresses in host order; IPv4 (and ARP sender/target) in the low 32 bits.
    public var source: UInt128
    public var destination: UInt128

    @usableFromInline static let noReason: UInt8 = 0xFF
    @usableFromInline static let transportBit: UInt8 = 1
    @usableFromInline static let fragmentBit: UInt8 = 2
    @usableFromInline static let moreBit: UInt8 = 4

    @inlinable
    public init() {
        _reason = Self.noReason
        _family = 0
        _vlanCount = 0
        _bits = 0
        proto = 0
        tcpFlags = []
        icmpType = 0
        icmpCode = 0
        etherType = 0
        outerTPID = 0
        outerTCI = 0
        innerTCI = 0
        _l3 = 0
        _l3Length = 0
        _l4 = 0
        sourcePort = 0
        destinationPort = 0
        _fragmentOffset = 0
        icmpIdentifier = 0
        fragmentIdentification = 0
        source = 0
        destination = 0
    }

    /// nil when the frame parsed; otherwise why it cannot be used (and the fields after the
    /// failing layer are unset).
    @inlinable public var dropReason: DropReason? {
        get { DropReason(rawValue: _reason) }
        set { _reason = newValue?.rawValue ?? Self.noReason }
    }
    @inlinable public var isValid: Bool { _reason == Self.noReason }
    @inlinable public var family: PacketFamily {
        get { PacketFamily(rawValue: _family) ?? .none }
        set { _family = newValue.rawValue }
    }
    /// 0, 1 (802.1Q or 802.1ad) or 2 (QinQ) tags.
    @inlinable public var vlanCount: Int {
        get { Int(_vlanCount) }
        set { _vlanCount = UInt8(truncatingIfNeeded: newValue) }
    }
    /// Start of the IPv4/IPv6 header or ARP body.
    @inlinable public var l3Offset: Int {
        get { Int(_l3) }
        set { _l3 = UInt16(truncatingIfNeeded: newValue) }
    }
    /// IPv4 total length, IPv6 40 + payload length, ARP 28 (Ethernet padding excluded).
    @inlinable public var l3Length: Int {
        get { Int(_l3Length) }
        set { _l3Length = UInt16(truncatingIfNeeded: newValue) }
    }
    /// Start of the transport header (for a non-first fragment: of the fragment's data).
    @inlinable public var l4Offset: Int {
        get { Int(_l4) }
        set { _l4 = UInt16(truncatingIfNeeded: newValue) }
    }
    /// False for non-first fragments and IPv6 "no next header".
    @inlinable public var hasTransportHeader: Bool {
        get { _bits & Self.transportBit != 0 }
        set { _bits = newValue ? _bits | Self.transportBit : _bits & ~Self.transportBit }
    }
    @inlinable public var isFragment: Bool {
        get { _bits & Self.fragmentBit != 0 }
        set { _bits = newValue ? _bits | Self.fragmentBit : _bits & ~Self.fragmentBit }
    }
    @inlinable public var moreFragments: Bool {
        get { _bits & Self.moreBit != 0 }
        set { _bits = newValue ? _bits | Self.moreBit : _bits & ~Self.moreBit }
    }
    /// Fragment offset in bytes.
    @inlinable public var fragmentOffset: Int {
        get { Int(_fragmentOffset) }
        set { _fragmentOffset = UInt16(truncatingIfNeeded: newValue) }
    }
    @inlinable public var sourceIPv4: IPv4Address { IPv4Address(UInt32(truncatingIfNeeded: source)) }
    @inlinable public var destinationIPv4: IPv4Address { IPv4Address(UInt32(truncatingIfNeeded: destination)) }
    @inlinable public var sourceIPv6: IPv6Address { IPv6Address(source) }
    @inlinable public var destinationIPv6: IPv6Address { IPv6Address(destination) }
    /// Bytes of Ethernet header and tags before L3.
    @inlinable public var l2Length: Int { Int(_l3) }
}

public enum PacketParser {
    @inlinable @inline(__always)
    public static func parse(_ p: UnsafeRawPointer, length: Int) -> ParsedPacket {
        var r = ParsedPacket()
        guard length >= HeaderSize.ethernet else {
            r.dropReason = .truncated
            return r
        }
        var off = 12
        var type = p.be16(12)
        if _slowPath(EthernetHeader.isVLANTag(type)) {
            guard length >= 18 else {
                r.dropReason = .truncated
                return r
            }
            r.vlanCount = 1
            r.outerTPID = type
            r.outerTCI = p.be16(14)
            type = p.be16(16)
            off = 16
            if EthernetHeader.isVLANTag(type) {
                guard length >= 22 else {
                    r.dropReason = .truncated
                    return r
                }
                r.vlanCount = 2
                r.innerTCI = p.be16(18)
                type = p.be16(20)
                off = 20
            }
        }
        off &+= 2
        r.etherType = type
        r.l3Offset = off
        // The IPv4 path is inlined so `r` stays in registers and is stored once into the
        // result; the other families go out of line with `r` by value, so that no path
        // makes `r` live in memory (a spilled struct is copied out with wide loads that
        // miss store forwarding: ~40 cycles measured).
        if _fastPath(type == EtherType.ipv4) {
            parseIPv4(p, length: length, into: &r)
            return r
        }
        if type == EtherType.ipv6 { return parseIPv6(p, length: length, r) }
        if type == EtherType.arp { return parseARP(p, length: length, r) }
        r.dropReason = .unsupportedProtocol
        return r
    }

    @inlinable @inline(__always)
    static func parseIPv4(_ p: UnsafeRawPointer, length: Int, into r: inout ParsedPacket) {
        let off = r.l3Offset
        r.family = .ipv4
        guard length &- off >= HeaderSize.ipv4 else {
            r.dropReason = .truncated
            return
        }
        let ip = p + off
        let vihl = ip.u8(0)
        let hl = Int(vihl & 0x0F) &<< 2
        let total = Int(ip.be16(2))
        guard vihl >> 4 == 4, hl >= HeaderSize.ipv4, total >= hl else {
            r.dropReason = .invalidPacket
            return
        }
        // total ≥ hl, so this also puts the options inside the frame.
        guard total <= length &- off else {
            r.dropReason = .truncated
            return
        }
        if _slowPath(hl > HeaderSize.ipv4) {
            guard IPv4Options.isWellFormed(ip + HeaderSize.ipv4, length: hl &- HeaderSize.ipv4) else {
                r.dropReason = .invalidPacket
                return
            }
        }
        r.l3Length = total
        r.proto = ip.u8(9)
        r.source = UInt128(ip.be32(12))
        r.destination = UInt128(ip.be32(16))
        r.l4Offset = off &+ hl
        let frag = ip.be16(6)
        if _slowPath(frag & (IPv4Header.moreFragmentsBit | IPv4Header.offsetMask) != 0) {
            r.isFragment = true
            r.moreFragments = frag & IPv4Header.moreFragmentsBit != 0
            r.fragmentOffset = Int(frag & IPv4Header.offsetMask) &<< 3
            r.fragmentIdentification = UInt32(ip.be16(4))
            if r.fragmentOffset != 0 { return }
        }
        parseTransport(p, end: off &+ total, into: &r)
    }

    @inlinable @inline(never)
    static func parseIPv6(_ p: UnsafeRawPointer, length: Int, _ l2: ParsedPacket) -> ParsedPacket {
        var r = l2
        parseIPv6(p, length: length, into: &r)
        return r
    }

    @inlinable
    static func parseIPv6(_ p: UnsafeRawPointer, length: Int, into r: inout ParsedPacket) {
        let off = r.l3Offset
        r.family = .ipv6
        guard length &- off >= HeaderSize.ipv6 else {
            r.dropReason = .truncated
            return
        }
        let ip = p + off
        guard ip.u8(0) >> 4 == 6 else {
            r.dropReason = .invalidPacket
            return
        }
        let total = HeaderSize.ipv6 &+ Int(ip.be16(4))
        guard total <= length &- off else {
            r.dropReason = .truncated
            return
        }
        r.l3Length = total
        r.source = ip.be128(8)
        r.destination = ip.be128(24)
        let w = IPv6Header.walkExtensionHeaders(ip, length: total)
        r.proto = w.proto
        if let reason = w.dropReason {
            r.dropReason = reason
            return
        }
        r.l4Offset = off &+ w.transportOffset
        if w.isFragment {
            r.isFragment = true
            r.moreFragments = w.moreFragments
            r.fragmentOffset = w.fragmentOffset
            r.fragmentIdentification = w.fragmentIdentification
        }
        if w.hasTransportHeader {
            parseTransport(p, end: off &+ total, into: &r)
        }
    }

    @inlinable @inline(never)
    static func parseARP(_ p: UnsafeRawPointer, length: Int, _ l2: ParsedPacket) -> ParsedPacket {
        var r = l2
        let off = r.l3Offset
        r.family = .arp
        guard length &- off >= HeaderSize.arp else {
            r.dropReason = .truncated
            return r
        }
        let arp = ARPHeader(p + off)
        guard arp.isEthernetIPv4 else {
            r.dropReason = .invalidPacket
            return r
        }
        r.l3Length = HeaderSize.arp
        r.source = UInt128(arp.senderIP.value)
        r.destination = UInt128(arp.targetIP.value)
        return r
    }

    /// Transport header at `r.l4Offset`, bounded by `end` (the end of the IP datagram,
    /// already checked to be inside the frame).
    @inlinable @inline(__always)
    static func parseTransport(_ p: UnsafeRawPointer, end: Int, into r: inout ParsedPacket) {
        let l4 = r.l4Offset
        let avail = end &- l4
        let t = p + l4
        switch r.proto {
        case IPProtocol.udp:
            guard avail >= HeaderSize.udp else {
                r.dropReason = .truncated
                return
            }
            r.sourcePort = t.be16(0)
            r.destinationPort = t.be16(2)
            // A first fragment's UDP length covers the whole datagram, not this piece.
            if _fastPath(!r.isFragment) {
                let udpLength = Int(t.be16(4))
                guard udpLength >= HeaderSize.udp else {
                    r.dropReason = .invalidPacket
                    return
                }
                guard udpLength <= avail else {
                    r.dropReason = .truncated
                    return
                }
            }
        case IPProtocol.tcp:
            guard avail >= HeaderSize.tcp else {
                r.dropReason = .truncated
                return
            }
            let hl = Int(t.u8(12) >> 4) &<< 2
            guard hl >= HeaderSize.tcp else {
                r.dropReason = .invalidPacket
                return
            }
            guard hl <= avail else {
                r.dropReason = .truncated
                return
            }
            r.sourcePort = t.be16(0)
            r.destinationPort = t.be16(2)
            r.tcpFlags = TCPFlags(rawValue: t.u8(13))
        case IPProtocol.icmp, IPProtocol.icmpv6:
            // ICMP over the wrong family is just another protocol number.
            guard (r.proto == IPProtocol.icmp) == (r.family == .ipv4) else { break }
            guard avail >= HeaderSize.icmp else {
                r.dropReason = .truncated
                return
            }
            r.icmpType = t.u8(0)
            r.icmpCode = t.u8(1)
            let echo =
                r.family == .ipv4
                ? (r.icmpType == ICMPv4Header.echoRequest || r.icmpType == ICMPv4Header.echoReply)
                : (r.icmpType == ICMPv6Header.echoRequest || r.icmpType == ICMPv6Header.echoReply)
            if echo { r.icmpIdentifier = t.be16(4) }
        default:
            break
        }
        r.hasTransportHeader = true
    }
}
