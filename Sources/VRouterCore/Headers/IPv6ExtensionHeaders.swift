// Walking the IPv6 extension-header chain (RFC 8200 §4) to the upper-layer header. Only the
// headers RFC 8200 and RFC 4302 define are skipped; any other next-header value is taken as
// the upper layer, as a forwarder that does not know it must. The walk is bounded by the
// bytes present and by a header count, so a hostile chain costs at most `maxHeaders` steps.

/// What the walk found. Offsets are from the start of the IPv6 header.
@frozen
public struct IPv6ExtensionWalk: Sendable {
    /// nil when the chain is well formed.
    public var dropReason: DropReason?
    /// Upper-layer protocol (the next header after the chain, or after the fragment header
    /// of a non-first fragment).
    public var proto: UInt8
    /// Where the upper-layer header starts (or the fragment's data for a non-first fragment).
    public var transportOffset: Int
    /// Offset of the fragment header, or -1.
    public var fragmentHeaderOffset: Int
    /// Fragment offset in bytes.
    public var fragmentOffset: Int
    public var moreFragments: Bool
    public var fragmentIdentification: UInt32
    /// Extension headers skipped.
    public var headerCount: Int

    @inlinable public var isFragment: Bool { fragmentHeaderOffset >= 0 }
    /// False for a non-first fragment: the upper-layer header is in another packet.
    @inlinable public var hasTransportHeader: Bool { fragmentOffset == 0 && proto != IPProtocol.ipv6NoNext }

    @inlinable
    init(proto: UInt8, offset: Int) {
        dropReason = nil
        self.proto = proto
        transportOffset = offset
        fragmentHeaderOffset = -1
        fragmentOffset = 0
        moreFragments = false
        fragmentIdentification = 0
        headerCount = 0
    }
}

extension IPv6Header {
    /// More than this many extension headers is treated as an attack, not a packet.
    public static let maxExtensionHeaders = 12

    /// Walks the chain of the IPv6 packet at `p` of which `length` bytes are present
    /// (the caller bounds it by 40 + payload length and by the frame). Never reads at or
    /// past `p + length`. Reports `.truncated` when a header runs past `length`, and
    /// `.invalidPacket` for a hop-by-hop header that is not first, two fragment headers or
    /// too many headers.
    @inlinable
    public static func walkExtensionHeaders(_ p: UnsafeRawPointer, length: Int) -> IPv6ExtensionWalk {
        var w = IPv6ExtensionWalk(proto: 0, offset: HeaderSize.ipv6)
        guard length >= HeaderSize.ipv6 else {
            w.dropReason = .truncated
            return w
        }
        var nh = p.u8(6)
        var off = HeaderSize.ipv6
        while true {
            switch nh {
            case IPProtocol.hopByHop, IPProtocol.ipv6Routing, IPProtocol.ipv6DestinationOptions, IPProtocol.ah:
                if nh == IPProtocol.hopByHop && w.headerCount != 0 {
                    w.dropReason = .invalidPacket  // RFC 8200 §4.3: only right after the header
                    return w
                }
                guard off &+ 2 <= length else {
                    w.dropReason = .truncated
                    return w
                }
                let lenField = Int(p.u8(off &+ 1))
                // AH counts 4-byte words minus 2 (RFC 4302 §2.2); the others 8-byte words minus 1.
                let size = nh == IPProtocol.ah ? (lenField &+ 2) &<< 2 : (lenField &+ 1) &<< 3
                guard off &+ size <= length else {
                    w.dropReason = .truncated
                    return w
                }
                nh = p.u8(off)
                off &+= size
            case IPProtocol.ipv6Fragment:
                guard w.fragmentHeaderOffset < 0 else {
                    w.dropReason = .invalidPacket
                    return w
                }
                guard off &+ 8 <= length else {
                    w.dropReason = .truncated
                    return w
                }
                let word = p.be16(off &+ 2)
                w.fragmentHeaderOffset = off
                w.fragmentOffset = Int(word & 0xFFF8)  // 13-bit offset in 8-byte units, in place
                w.moreFragments = word & 1 != 0
                w.fragmentIdentification = p.be32(off &+ 4)
                nh = p.u8(off)
                off &+= 8
                if w.fragmentOffset != 0 {
                    // The rest of the chain and the upper layer are in the first fragment.
                    w.headerCount &+= 1
                    w.proto = nh
                    w.transportOffset = off
                    return w
                }
            default:
                w.proto = nh
                w.transportOffset = off
                return w
            }
            w.headerCount &+= 1
            if w.headerCount > maxExtensionHeaders {
                w.dropReason = .invalidPacket
                return w
            }
        }
    }
}
