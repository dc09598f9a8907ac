// Per-packet tunnel encapsulation as "copy a precomputed header, patch five fields" (the
// VPP/OVS way). A template is built once per tunnel nexthop; `apply` then costs eight 8-byte
// stores for the header (overlapping at the tail, so any length from 40 to 64 bytes is
// written without a branch or a memcpy call) plus six small stores, and the outer IPv4
// checksum is one add-and-fold from a precomputed partial sum (RFC 1624 with the old
// fields zero), never a resum.

@frozen
public struct TunnelTemplate: Sendable {
    /// Header bytes as raw memory words: w0...w4 cover [0, 40), t0...t2 cover
    /// [headerLength - 24, headerLength).
    @usableFromInline let w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64, w4: UInt64
    @usableFromInline let t0: UInt64, t1: UInt64, t2: UInt64
    /// Bytes written in front of the inner packet (40...64).
    public let headerLength: Int
    /// Offset of the outer IPv4 header (the outer UDP header follows it at +20).
    public let ipOffset: Int
    /// Offset of the 32-bit word holding the VNI or the MPLS label stack entry.
    public let tagOffset: Int
    /// Ones'-complement sum of the outer IPv4 header with total length, identification and
    /// checksum zero.
    @usableFromInline let checksumBase: UInt32
    /// IPv4 total length and UDP length minus the inner length.
    @usableFromInline let ipLengthBase: Int
    @usableFromInline let udpLengthBase: Int
    /// The tag word is `labelOrVNI << tagShift | tagLow` (VXLAN: VNI << 8; MPLS:
    /// label << 12 | TC, S, TTL). The shift drops bits above 24 or 20 for free.
    @usableFromInline let tagShift: UInt32
    @usableFromInline let tagLow: UInt32

    public static let maxHeaderLength = 64
    public static let minHeaderLength = 40

    /// Builds a template from header bytes whose outer IPv4 header (20 bytes, no options)
    /// sits at `ipOffset` followed by UDP, with total length, identification, checksum,
    /// UDP source port and length free to be overwritten.
    public init(header: UnsafeRawBufferPointer, ipOffset: Int, tagOffset: Int, tagShift: UInt32, tagLow: UInt32) {
        let n = header.count
        precondition(n >= Self.minHeaderLength && n <= Self.maxHeaderLength, "tunnel header length out of range")
        precondition(ipOffset >= 0 && ipOffset &+ 28 <= n && tagOffset >= ipOffset &+ 28 && tagOffset &+ 4 <= n)
        let b = header.baseAddress!
        w0 = b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
        w1 = b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        w2 = b.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        w3 = b.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
        w4 = b.loadUnaligned(fromByteOffset: 32, as: UInt64.self)
        t0 = b.loadUnaligned(fromByteOffset: n - 24, as: UInt64.self)
        t1 = b.loadUnaligned(fromByteOffset: n - 16, as: UInt64.self)
        t2 = b.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
        headerLength = n
        self.ipOffset = ipOffset
        self.tagOffset = tagOffset
        ipLengthBase = n - ipOffset
        udpLengthBase = n - ipOffset - HeaderSize.ipv4
        self.tagShift = tagShift
        self.tagLow = tagLow
        // Sum the IPv4 header with the per-packet fields zeroed.
        var ip = (UInt64(0), UInt64(0), UInt32(0))
        checksumBase = withUnsafeMutableBytes(of: &ip) { h in
            h.baseAddress!.copyMemory(from: b + ipOffset, byteCount: HeaderSize.ipv4)
            h.baseAddress!.setBE16(2, 0)
            h.baseAddress!.setBE16(4, 0)
            h.baseAddress!.setBE16(10, 0)
            return UInt32(Checksum.sum(h.baseAddress!, count: HeaderSize.ipv4))
        }
    }

    /// Outer UDP source port for a flow hash: 49152 + (hash & 0x3FFF), the ephemeral range
    /// RFC 7510 §3 recommends (and RFC 7348 §5 suggests) so underlay ECMP spreads flows.
    @inlinable @inline(__always)
    public static func sourcePort(hash: UInt32) -> UInt16 {
        0xC000 | UInt16(truncatingIfNeeded: hash) & 0x3FFF
    }

    /// Writes the outer headers in the `headerLength` bytes before `inner` (the inner
    /// Ethernet frame for VXLAN, the inner IP packet for MPLSoUDP, `innerLength` bytes) and
    /// returns the new start of the frame. The caller guarantees the headroom, and
    /// `innerLength + headerLength` ≤ 65535.
    @inlinable @inline(__always)
    public func apply(
        to inner: UnsafeMutableRawPointer,
        innerLength: Int,
        sourcePort: UInt16,
        labelOrVNI: UInt32,
        identification: UInt16 = 0
    ) -> UnsafeMutableRawPointer {
        let h = inner - headerLength
        // Safe: headerLength is 40...64 (checked at init), so every store below is inside
        // [h, inner): the w stores end at 40, the t stores start at headerLength - 24 ≥ 16.
        h.storeBytes(of: w0, toByteOffset: 0, as: UInt64.self)
        h.storeBytes(of: w1, toByteOffset: 8, as: UInt64.self)
        h.storeBytes(of: w2, toByteOffset: 16, as: UInt64.self)
        h.storeBytes(of: w3, toByteOffset: 24, as: UInt64.self)
        h.storeBytes(of: w4, toByteOffset: 32, as: UInt64.self)
        h.storeBytes(of: t0, toByteOffset: headerLength &- 24, as: UInt64.self)
        h.storeBytes(of: t1, toByteOffset: headerLength &- 16, as: UInt64.self)
        h.storeBytes(of: t2, toByteOffset: headerLength &- 8, as: UInt64.self)
        let ip = h + ipOffset
        let total = UInt16(truncatingIfNeeded: innerLength &+ ipLengthBase)
        ip.setBE16(2, total)
        ip.setBE16(4, identification)
        ip.setBE16(10, ~Checksum.fold32(checksumBase &+ UInt32(total) &+ UInt32(identification)))
        ip.setBE16(20, sourcePort)
        ip.setBE16(24, UInt16(truncatingIfNeeded: innerLength &+ udpLengthBase))
        h.setBE32(tagOffset, labelOrVNI &<< tagShift | tagLow)
        return h
    }

    /// `apply` on pool buffer `idx`: prepends the outer headers to the frame at meta.offset
    /// and moves offset and length. False (nothing written) when the headroom is too small.
    @inlinable @inline(__always)
    public func apply(
        pool: PacketPool,
        _ idx: UInt32,
        sourcePort: UInt16,
        labelOrVNI: UInt32,
        identification: UInt16 = 0
    ) -> Bool {
        let m = pool.meta(idx)
        let off = Int(m.pointee.offset)
        guard off >= headerLength else { return false }
        let len = Int(m.pointee.length)
        _ = apply(
            to: pool.buffer(idx) + off,
            innerLength: len,
            sourcePort: sourcePort,
            labelOrVNI: labelOrVNI,
            identification: identification
        )
        m.pointee.offset = UInt16(truncatingIfNeeded: off &- headerLength)
        m.pointee.length = UInt16(truncatingIfNeeded: len &+ headerLength)
        return true
    }
}
