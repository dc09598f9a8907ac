// TCP MSS clamping: tunnel overhead (50 bytes for VXLAN) would otherwise make every full
// segment too big for the underlay. Only SYN and SYN-ACK carry the option, so this runs
// once per connection direction; the checksum is patched (RFC 1624), not recomputed.

public enum MSSClamp {
    /// If the TCP segment at `tcp` (of which `available` bytes are present) is a SYN with
    /// an MSS option above `maximum`, lowers it to `maximum` and patches the checksum.
    /// Returns true when the segment changed. A SYN without the option is left alone: its
    /// implied MSS (536, RFC 9293 §3.7.1) is below any sane clamp.
    @inlinable
    public static func clamp(tcp: UnsafeMutableRawPointer, available: Int, maximum: UInt16) -> Bool {
        guard available >= HeaderSize.tcp else { return false }
        let h = TCPHeader(tcp)
        guard h.flags.contains(.syn), let at = h.mssOptionOffset(available: available) else { return false }
        let old = tcp.be16(at)
        guard old > maximum else { return false }
        tcp.setBE16(at, maximum)
        // Options need not be word aligned: at an odd offset the field straddles two
        // checksum words and contributes its bytes swapped.
        let odd = at & 1 != 0
        h.checksum = Checksum.update(
            h.checksum,
            old: odd ? old.byteSwapped : old,
            new: odd ? maximum.byteSwapped : maximum
        )
        return true
    }

    /// `clamp` on the TCP segment of the frame in buffer `idx` (IPv4 or IPv6).
    public static func clamp(pool: PacketPool, _ idx: UInt32, maximum: UInt16) -> Bool {
        let m = pool.meta(idx)
        let offset = Int(m.pointee.offset)
        let length = Int(m.pointee.length)
        guard offset + length <= pool.bufferSize else { return false }
        let frame = pool.buffer(idx) + offset
        let parsed = PacketParser.parse(frame, length: length)
        guard parsed.isValid, parsed.proto == IPProtocol.tcp, parsed.hasTransportHeader else { return false }
        return clamp(
            tcp: frame + parsed.l4Offset,
            available: parsed.l3Offset + parsed.l3Length - parsed.l4Offset,
            maximum: maximum
        )
    }
}
