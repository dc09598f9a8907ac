// IPv4 fragmentation (RFC 791 §3.2 "Fragmentation and Reassembly", RFC 815's hole rules
// for what receivers expect). Tungsten Fabric fragments an inner packet too big for the
// tunnel before encapsulating it; this is that step. The first fragment stays in the
// original buffer (its bytes are already where they belong); the others are new buffers.
// Slow path: one copy of the payload, one header checksum per fragment.

public enum IPv4Fragmenter {
    /// Splits the IPv4 packet in buffer `idx`, whose IP header starts `l2Length` bytes into
    /// the frame (the bytes before it — Ethernet, tags — are repeated in every fragment),
    /// into fragments whose IP length is at most `mtu`, and appends their indices to `out`
    /// in order (the first is `idx`). Options go whole into the first fragment and only
    /// those with the copied flag into the others; data is cut at multiples of 8 bytes; MF
    /// is set on all but the last, which keeps the original's MF, and offsets continue the
    /// original's, so a fragment is fragmented correctly again. Fragment meta is the
    /// original's with offset, length, l3, l4 and flags (.fragment, .laterFragment) set.
    ///
    /// A packet that fits is appended unchanged. Returns nil on success; otherwise nothing
    /// was changed or appended, buffers taken were returned, and the reason is:
    /// `.mtuExceeded` (DF set — send ICMP fragmentation-needed instead), `.noMemory` (the
    /// pool ran dry), `.txQueueFull` (`out` has no room for every fragment), or
    /// `.fragmentFailed` (not a well-formed IPv4 packet, bad options, an MTU below 68
    /// that leaves no room for 8 data bytes, or fragments too big for a buffer).
    public static func fragment(
        pool: PacketPool,
        _ idx: UInt32,
        l2Length: Int,
        mtu: Int,
        into out: inout Frame
    ) -> DropReason? {
        let m = pool.meta(idx)
        let offset = Int(m.pointee.offset)
        let length = Int(m.pointee.length)
        guard l2Length >= 0, offset + length <= pool.bufferSize, length - l2Length >= HeaderSize.ipv4 else {
            return .fragmentFailed
        }
        let frame = pool.buffer(idx) + offset
        let ip = IPv4Header(frame + l2Length)
        let hl = ip.headerLength
        let total = Int(ip.totalLength)
        guard ip.version == 4, hl >= HeaderSize.ipv4, total >= hl, total <= length - l2Length else {
            return .fragmentFailed
        }
        if total <= mtu {
            guard out.count < out.capacity else { return .txQueueFull }
            out.append(idx)
            return nil
        }
        if ip.dontFragment { return .mtuExceeded }
        // A fragment claiming to end past 65535 bytes cannot be split into valid offsets.
        guard Int(ip.fragmentOffset) << 3 + total - hl <= 0xFFFF else { return .fragmentFailed }

        // Options that later fragments carry: at most 40 bytes.
        var laterOptions = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let laterOptionsLength: Int? = withUnsafeMutableBytes(of: &laterOptions) { buf in
            IPv4Options.copyForLaterFragments(
                from: ip.options,
                length: hl - HeaderSize.ipv4,
                to: buf.baseAddress!
            )
        }
        guard let optLength = laterOptionsLength else { return .fragmentFailed }
        let laterHL = HeaderSize.ipv4 + optLength
        let data = total - hl
        let firstData = (mtu - hl) & ~7
        let laterData = (mtu - laterHL) & ~7
        guard firstData >= 8, laterData >= 8 else { return .fragmentFailed }
        let rest = data - firstData  // > 0: total > mtu
        let count = 1 + (rest + laterData - 1) / laterData
        guard out.capacity - out.count >= count else { return .txQueueFull }
        guard l2Length + laterHL + laterData <= pool.maxFrameLength else { return .fragmentFailed }

        // Take every buffer before touching anything, so failure leaves all as it was.
        let first = out.count
        out.append(idx)
        for _ in 1..<count {
            guard let b = pool.alloc() else {
                for k in (first + 1)..<out.count { pool.free(out[k]) }
                out.count = first
                return .noMemory
            }
            out.append(b)
        }

        let word = ip.flagsAndOffset
        let originalOffset = Int(word & IPv4Header.offsetMask)  // 8-byte units
        let originalMF = word & IPv4Header.moreFragmentsBit != 0
        let payload = ip.base + hl
        var done = firstData
        for k in 1..<count {
            let piece = min(laterData, data - done)
            let isLast = k == count - 1
            let b = out[first + k]
            let fm = pool.meta(b)
            let start = Int(fm.pointee.offset)  // fresh: the standard headroom
            fm.pointee = m.pointee
            // Safe: start is the fresh headroom and l2Length + laterHL + piece ≤
            // maxFrameLength (checked above), so every copy below ends inside buffer b;
            // the sources are inside the original frame (payload + done + piece ≤ total).
            let dst = pool.buffer(b) + start
            dst.copyMemory(from: frame, byteCount: l2Length)
            let h = IPv4Header(dst + l2Length)
            h.base.copyMemory(from: ip.base, byteCount: HeaderSize.ipv4)
            withUnsafeBytes(of: &laterOptions) { o in
                h.options.copyMemory(from: o.baseAddress!, byteCount: optLength)
            }
            h.ihl = UInt8(laterHL >> 2)
            h.totalLength = UInt16(laterHL + piece)
            var w = UInt16(originalOffset + done >> 3) & IPv4Header.offsetMask
            if !isLast || originalMF { w |= IPv4Header.moreFragmentsBit }
            h.flagsAndOffset = w
            h.updateChecksum()
            (h.base + laterHL).copyMemory(from: payload + done, byteCount: piece)
            fm.pointee.offset = UInt16(start)
            fm.pointee.length = UInt16(l2Length + laterHL + piece)
            fm.pointee.l3 = UInt16(start + l2Length)
            fm.pointee.l4 = UInt16(start + l2Length + laterHL)
            fm.pointee.flags.formUnion([.fragment, .laterFragment])
            done += piece
        }

        // The first fragment: the original buffer cut short.
        ip.totalLength = UInt16(hl + firstData)
        ip.flagsAndOffset = word | IPv4Header.moreFragmentsBit
        ip.updateChecksum()
        m.pointee.length = UInt16(l2Length + hl + firstData)
        m.pointee.l3 = UInt16(offset + l2Length)
        m.pointee.l4 = UInt16(offset + l2Length + hl)
        m.pointee.flags.insert(.fragment)
        if originalOffset != 0 { m.pointee.flags.insert(.laterFragment) }
        return nil
    }
}
