// Finding the inner packet of a VXLAN or MPLSoUDP frame once the outer headers have been
// parsed (PacketParser or the pipeline's own ethernet-input): the tunnel header is read
// at the outer UDP header + 8, bounded by the UDP length, which the outer parse has
// already checked to be inside the frame.

@frozen
public struct TunnelDecapResult: Sendable {
    /// nil on success.
    public var dropReason: DropReason?
    /// Start of the inner packet (Ethernet frame for VXLAN, IP packet for MPLSoUDP).
    public var innerOffset: Int
    public var innerLength: Int
    /// VNI, or the MPLS label.
    public var labelOrVNI: UInt32
    /// MPLS TTL (0 for VXLAN).
    public var ttl: UInt8

    @inlinable
    init(_ reason: DropReason?) {
        dropReason = reason
        innerOffset = 0
        innerLength = 0
        labelOrVNI = 0
        ttl = 0
    }
}

public enum TunnelDecap {
    /// VXLAN at `udpOffset + 8` in a frame of `length` bytes. `.truncated` when the UDP
    /// datagram or the inner Ethernet header is cut, `.invalidPacket` without the I flag.
    @inlinable
    public static func vxlan(_ p: UnsafeRawPointer, length: Int, udpOffset: Int) -> TunnelDecapResult {
        let header = HeaderSize.udp &+ HeaderSize.vxlan
        guard udpOffset >= 0, udpOffset &+ header <= length else { return TunnelDecapResult(.truncated) }
        let udpLength = Int(p.be16(udpOffset &+ 4))
        guard udpLength >= header &+ HeaderSize.ethernet, udpOffset &+ udpLength <= length else {
            return TunnelDecapResult(.truncated)
        }
        let vx = VXLANHeader(p + (udpOffset &+ HeaderSize.udp))
        guard vx.hasValidVNI else { return TunnelDecapResult(.invalidPacket) }
        var r = TunnelDecapResult(nil)
        r.labelOrVNI = vx.vni
        r.innerOffset = udpOffset &+ header
        r.innerLength = udpLength &- header
        return r
    }

    /// One MPLS label at `udpOffset + 8`. A label stack deeper than one entry (S clear) is
    /// `.invalidPacket`: this overlay pushes exactly one label (RFC 7510 allows more; no
    /// peer of ours sends them).
    @inlinable
    public static func mplsOverUDP(_ p: UnsafeRawPointer, length: Int, udpOffset: Int) -> TunnelDecapResult {
        let header = HeaderSize.udp &+ HeaderSize.mpls
        guard udpOffset >= 0, udpOffset &+ header <= length else { return TunnelDecapResult(.truncated) }
        let udpLength = Int(p.be16(udpOffset &+ 4))
        // The inner IPv4 or IPv6 header needs at least its first byte to say which.
        guard udpLength > header, udpOffset &+ udpLength <= length else { return TunnelDecapResult(.truncated) }
        let e = MPLSLabelStackEntry(p + (udpOffset &+ HeaderSize.udp))
        guard e.bottomOfStack else { return TunnelDecapResult(.invalidPacket) }
        var r = TunnelDecapResult(nil)
        r.labelOrVNI = e.label
        r.ttl = e.ttl
        r.innerOffset = udpOffset &+ header
        r.innerLength = udpLength &- header
        return r
    }
}
