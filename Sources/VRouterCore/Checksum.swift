// Internet checksum (RFC 1071) and its incremental update (RFC 1624, eqn. 3).
// The sum runs 8 bytes at a time into a 64-bit accumulator (end-around carries are
// folded at the end), which keeps a 20-byte IPv4 header at a handful of instructions.

public enum Checksum {
    /// Ones'-complement sum of `count` bytes at `p`, not yet complemented, folded to 16 bits.
    /// `initial` lets pseudo-header sums chain in. Bytes are summed as big-endian words.
    @inlinable
    public static func sum(_ p: UnsafeRawPointer, count: Int, initial: UInt32 = 0) -> UInt16 {
        var acc: UInt64 = 0
        var i = 0
        // Sum native-order words into 64 bits; byte order is fixed once at the end
        // (RFC 1071 §2(B): the sum is byte-order independent up to a final swap).
        while i &+ 8 <= count {
            let w = p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            acc &+= w & 0xFFFF_FFFF
            acc &+= w >> 32
            i &+= 8
        }
        if i &+ 4 <= count {
            acc &+= UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt32.self))
            i &+= 4
        }
        if i &+ 2 <= count {
            acc &+= UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt16.self))
            i &+= 2
        }
        if i < count {
            // An odd trailing byte is the high byte of a big-endian word, which is the low
            // byte of a native little-endian word.
            acc &+= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) &<< (isLittleEndian ? 0 : 8)
        }
        var folded = fold(acc)
        if isLittleEndian { folded = folded.byteSwapped }
        return fold32(UInt32(folded) &+ initial)
    }

    @inlinable @inline(__always)
    static var isLittleEndian: Bool { UInt16(1).littleEndian == 1 }

    @inlinable @inline(__always)
    static func fold(_ x: UInt64) -> UInt16 {
        var s = (x & 0xFFFF_FFFF) &+ (x >> 32)
        s = (s & 0xFFFF) &+ (s >> 16)
        s = (s & 0xFFFF) &+ (s >> 16)
        s = (s & 0xFFFF) &+ (s >> 16)
        return UInt16(truncatingIfNeeded: s)
    }

    @inlinable @inline(__always)
    public static func fold32(_ x: UInt32) -> UInt16 {
        var s = (x & 0xFFFF) &+ (x >> 16)
        s = (s & 0xFFFF) &+ (s >> 16)
        return UInt16(truncatingIfNeeded: s)
    }

    /// The checksum field value for `count` bytes (complement of the sum).
    @inlinable
    public static func compute(_ p: UnsafeRawPointer, count: Int, initial: UInt32 = 0) -> UInt16 {
        ~sum(p, count: count, initial: initial)
    }

    /// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for one 16-bit field changing from m to m'.
    @inlinable @inline(__always)
    public static func update(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        let s = UInt32(~checksum) &+ UInt32(~old) &+ UInt32(new)
        return ~fold32(s)
    }

    /// RFC 1624 for a 32-bit field (two 16-bit words).
    @inlinable @inline(__always)
    public static func update(_ checksum: UInt16, old: UInt32, new: UInt32) -> UInt16 {
        var s = UInt32(~checksum)
        s &+= UInt32(~UInt16(truncatingIfNeeded: old >> 16)) &+ UInt32(~UInt16(truncatingIfNeeded: old))
        s &+= (new >> 16) &+ (new & 0xFFFF)
        return ~fold32(s)
    }

    /// RFC 1624 for an address (in the pseudo-header) and a port changing together, as in
    /// a TCP/UDP checksum under address translation: one fold instead of two.
    @inlinable @inline(__always)
    public static func update(
        _ checksum: UInt16,
        old: UInt32,
        new: UInt32,
        oldPort: UInt16,
        newPort: UInt16
    ) -> UInt16 {
        var s = UInt32(~checksum)
        s &+= UInt32(~UInt16(truncatingIfNeeded: old >> 16)) &+ UInt32(~UInt16(truncatingIfNeeded: old))
        s &+= (new >> 16) &+ (new & 0xFFFF)
        s &+= UInt32(~oldPort) &+ UInt32(newPort)
        return ~fold32(s)
    }

    /// Sum of the IPv4 pseudo-header (RFC 768/793) as a 32-bit partial for `initial`.
    @inlinable @inline(__always)
    public static func pseudoHeaderIPv4(src: UInt32, dst: UInt32, proto: UInt8, length: Int) -> UInt32 {
        (src >> 16) &+ (src & 0xFFFF) &+ (dst >> 16) &+ (dst & 0xFFFF) &+ UInt32(proto)
            &+ UInt32(truncatingIfNeeded: length)
    }

    /// Sum of the IPv6 pseudo-header (RFC 8200 §8.1) as a 32-bit partial for `initial`.
    @inlinable @inline(__always)
    public static func pseudoHeaderIPv6(src: UInt128, dst: UInt128, nextHeader: UInt8, length: Int) -> UInt32 {
        var s: UInt64 = 0
        var a = src
        var b = dst
        for _ in 0..<8 {
            s &+= UInt64(a & 0xFFFF) &+ UInt64(b & 0xFFFF)
            a >>= 16
            b >>= 16
        }
        s &+= UInt64(nextHeader) &+ UInt64(truncatingIfNeeded: length >> 16) &+ UInt64(length & 0xFFFF)
        return UInt32(fold(s))
    }
}
