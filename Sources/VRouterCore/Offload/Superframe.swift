// A superframe's shape: a TCP or UDP packet bigger than its path's MTU that stands for
// many (a pod's TSO/USO send: one IP header, one L4 header, up to 64 KB of payload, and
// the size each segment is to carry). Parsed once from the metadata ethernet-input left
// (l3, l4, family, protocol) and the offload state the tap's virtio-net header gave.

@frozen
public struct Superframe: Sendable {
    /// Buffer offsets: the frame's first byte, IP header, L4 header, first payload byte.
    public let frame: Int
    public let l3: Int
    public let l4: Int
    public let payload: Int
    /// L4 header length (TCP with options, or 8 for UDP) and payload bytes.
    public let l4Length: Int
    public let payloadLength: Int
    /// Payload bytes per segment (the last may carry fewer).
    public let segmentSize: Int
    public let tcp: Bool
    public let v4: Bool

    /// Segments the payload makes.
    @inlinable public var segments: Int { (payloadLength &+ segmentSize &- 1) / segmentSize }
    /// IP and L4 header bytes every segment repeats.
    @inlinable public var headerLength: Int { payload &- l3 }
    /// IP length of the largest segment (a full-size one, or the only one of a superframe
    /// shorter than a segment): what has to fit the path's MTU.
    @inlinable public var segmentIPLength: Int { headerLength &+ min(segmentSize, payloadLength) }
    /// Payload bytes of segment `k`.
    @inlinable @inline(__always)
    public func chunk(_ k: Int) -> Int { min(segmentSize, payloadLength &- k &* segmentSize) }

    @usableFromInline
    init(
        frame: Int,
        l3: Int,
        l4: Int,
        l4Length: Int,
        payloadLength: Int,
        segmentSize: Int,
        tcp: Bool,
        v4: Bool
    ) {
        self.frame = frame
        self.l3 = l3
        self.l4 = l4
        self.l4Length = l4Length
        payload = l4 &+ l4Length
        self.payloadLength = payloadLength
        self.segmentSize = segmentSize
        self.tcp = tcp
        self.v4 = v4
    }

    /// The superframe in buffer `idx`, or nil when its metadata and headers disagree (a
    /// GSO kind that does not match the packet, a fragment, headers past the end, no
    /// payload). ethernet-input has validated the IP header and set l3, l4, proto.
    @inlinable
    public static func parse(pool: PacketPool, _ idx: UInt32) -> Superframe? {
        let m = pool.meta(idx)
        let o = m.pointee.offload
        let flags = m.pointee.flags
        let kind = o.gsoType & ~VirtioNet.gsoECN
        let v4 = flags.contains(.ipv4)
        guard v4 || flags.contains(.ipv6), !flags.contains(.fragment), o.gsoSize > 0 else { return nil }
        let tcp: Bool
        switch kind {
        case VirtioNet.gsoTCPv4:
            guard v4, m.pointee.proto == IPProtocol.tcp else { return nil }
            tcp = true
        case VirtioNet.gsoTCPv6:
            guard !v4, m.pointee.proto == IPProtocol.tcp else { return nil }
            tcp = true
        case VirtioNet.gsoUDPL4:
            guard m.pointee.proto == IPProtocol.udp else { return nil }
            tcp = false
        default:
            return nil
        }
        let p = pool.buffer(idx)
        let frame = Int(m.pointee.offset)
        let l3 = Int(m.pointee.l3)
        let l4 = Int(m.pointee.l4)
        let end = v4 ? l3 &+ Int(p.be16(l3 &+ 2)) : l3 &+ 40 &+ Int(p.be16(l3 &+ 4))
        guard end <= frame &+ Int(m.pointee.length), l4 > l3 else { return nil }
        let l4Length = tcp ? Int(p.u8(l4 &+ 12) >> 4) &<< 2 : HeaderSize.udp
        guard l4Length >= (tcp ? HeaderSize.tcp : HeaderSize.udp), l4 &+ l4Length < end else { return nil }
        return Superframe(
            frame: frame,
            l3: l3,
            l4: l4,
            l4Length: l4Length,
            payloadLength: end &- l4 &- l4Length,
            segmentSize: Int(o.gsoSize),
            tcp: tcp,
            v4: v4
        )
    }
}
