// Room-making for the slow-path packet makers, which rewrite a packet in its own buffer:
// an ICMP error grows at the front (new headers before the quoted original), a neighbour
// advertisement may grow at the back. Normally the 128-byte headroom and the buffer tail
// are enough and nothing moves; a frame that starts too close to the buffer's start is
// moved once.

extension PacketPool {
    /// Ensures frame `idx` has at least `front` bytes before it and room for `size` bytes
    /// from its start, keeping its first `keep` bytes (the rest may be dropped). Returns the
    /// frame's offset (moved if it had to be), or nil when the buffer cannot hold it.
    func makeRoom(_ idx: UInt32, front: Int, keep: Int, size: Int) -> Int? {
        let m = meta(idx)
        let offset = Int(m.pointee.offset)
        if offset >= front && offset + size <= bufferSize { return offset }
        // Prefer the standard headroom, but never more than the buffer allows.
        let target = min(max(front, Self.headroom), bufferSize - size)
        guard target >= front, keep <= size else { return nil }
        let b = buffer(idx)
        // Safe: target + size ≤ bufferSize and keep ≤ size; the source is the frame's
        // own first `keep` bytes (the callers keep no more than the frame holds).
        (b + target).copyMemory(from: b + offset, byteCount: keep)
        m.pointee.offset = UInt16(target)
        return target
    }
}

/// Address checks shared by the ICMP makers.
enum SlowPathAddress {
    /// RFC 1812 §4.3.2.7: a source that does not name one host (0/8, 127/8, multicast,
    /// class E including the limited broadcast) gets no ICMP error.
    static func isUnicastHost(_ a: IPv4Address) -> Bool {
        let top = a.value >> 24
        return top != 0 && top != 127 && top < 224
    }
}
