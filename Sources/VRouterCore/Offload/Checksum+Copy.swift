// Copy and checksum in one pass: segmentation moves every payload byte once and needs its
// sum for the segment's TCP/UDP checksum, so it sums the words it is moving anyway (the
// data is read once, not once for the copy and again for the sum). Same word order and
// folding as `Checksum.sum`.

extension Checksum {
    /// Copies `count` bytes from `src` to `dst` (not overlapping) and returns their
    /// ones'-complement sum folded to 16 bits, as `sum` would.
    @inlinable
    public static func copyAndSum(_ dst: UnsafeMutableRawPointer, _ src: UnsafeRawPointer, count: Int) -> UInt16 {
        var a: UInt64 = 0
        var b: UInt64 = 0
        var i = 0
        // Two accumulators and 16 bytes per round keep the adds off one dependency chain.
        while i &+ 16 <= count {
            let w0 = src.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let w1 = src.loadUnaligned(fromByteOffset: i &+ 8, as: UInt64.self)
            dst.storeBytes(of: w0, toByteOffset: i, as: UInt64.self)
            dst.storeBytes(of: w1, toByteOffset: i &+ 8, as: UInt64.self)
            a &+= (w0 & 0xFFFF_FFFF) &+ (w0 >> 32)
            b &+= (w1 & 0xFFFF_FFFF) &+ (w1 >> 32)
            i &+= 16
        }
        if i &+ 8 <= count {
            let w = src.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            dst.storeBytes(of: w, toByteOffset: i, as: UInt64.self)
            a &+= (w & 0xFFFF_FFFF) &+ (w >> 32)
            i &+= 8
        }
        if i &+ 4 <= count {
            let w = src.loadUnaligned(fromByteOffset: i, as: UInt32.self)
            dst.storeBytes(of: w, toByteOffset: i, as: UInt32.self)
            a &+= UInt64(w)
            i &+= 4
        }
        if i &+ 2 <= count {
            let w = src.loadUnaligned(fromByteOffset: i, as: UInt16.self)
            dst.storeBytes(of: w, toByteOffset: i, as: UInt16.self)
            a &+= UInt64(w)
            i &+= 2
        }
        if i < count {
            let byte = src.load(fromByteOffset: i, as: UInt8.self)
            dst.storeBytes(of: byte, toByteOffset: i, as: UInt8.self)
            a &+= UInt64(byte) &<< (isLittleEndian ? 0 : 8)
        }
        // Each accumulator gained at most 2^33 per round: no overflow below 2^30 rounds.
        var folded = fold(fold64(a) &+ fold64(b))
        if isLittleEndian { folded = folded.byteSwapped }
        return folded
    }

    @inlinable @inline(__always)
    static func fold64(_ x: UInt64) -> UInt64 { (x & 0xFFFF_FFFF) &+ (x >> 32) }

    /// Adds two folded 16-bit sums (ones'-complement addition).
    @inlinable @inline(__always)
    public static func add(_ a: UInt16, _ b: UInt16) -> UInt16 { fold32(UInt32(a) &+ UInt32(b)) }

    /// Completes a partial checksum (what a NEEDS_CSUM packet carries): the field at
    /// `start + offset` holds the pseudo-header sum; the sum of `[start, end)` is folded in
    /// and the field set to its complement. A UDP result of 0 is sent as 0xFFFF.
    @inlinable
    public static func complete(_ p: UnsafeMutableRawPointer, start: Int, offset: Int, end: Int, udp: Bool) {
        let s = sum(p + start, count: end &- start)
        var c = ~s
        if udp && c == 0 { c = 0xFFFF }
        p.setBE16(start &+ offset, c)
    }
}
