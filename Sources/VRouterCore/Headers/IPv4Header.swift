// IPv4 header (RFC 791) as a view. The checksum helpers are the hot ones: verify is one
// Checksum.sum over the header (three loads for IHL 5), and a TTL decrement is an RFC 1624
// update of one word instead of a resum.

@frozen
public struct IPv4Header {
    public let base: UnsafeMutableRawPointer
    @inlinable @inline(__always) public init(_ base: UnsafeMutableRawPointer) { self.base = base }
    @inlinable @inline(__always) public init(_ base: UnsafeRawPointer) {
        self.base = UnsafeMutableRawPointer(mutating: base)
    }

    /// Flag bits in the flags/fragment-offset word.
    public static let dontFragmentBit: UInt16 = 0x4000
    public static let moreFragmentsBit: UInt16 = 0x2000
    public static let offsetMask: UInt16 = 0x1FFF

    @inlinable public var version: UInt8 {
        get { base.u8(0) >> 4 }
        nonmutating set { base.setU8(0, base.u8(0) & 0x0F | newValue << 4) }
    }
    /// IHL in 32-bit words (5...15).
    @inlinable public var ihl: UInt8 {
        get { base.u8(0) & 0x0F }
        nonmutating set { base.setU8(0, base.u8(0) & 0xF0 | newValue & 0x0F) }
    }
    /// Header length in bytes, options included (IHL × 4).
    @inlinable public var headerLength: Int { Int(base.u8(0) & 0x0F) &<< 2 }
    /// Options length in bytes (0 for IHL 5; meaningless when IHL < 5).
    @inlinable public var optionsLength: Int { headerLength &- HeaderSize.ipv4 }
    @inlinable public var options: UnsafeMutableRawPointer { base + HeaderSize.ipv4 }

    @inlinable public var tos: UInt8 {
        get { base.u8(1) }
        nonmutating set { base.setU8(1, newValue) }
    }
    @inlinable public var dscp: UInt8 { base.u8(1) >> 2 }
    @inlinable public var ecn: UInt8 { base.u8(1) & 3 }
    @inlinable public var totalLength: UInt16 {
        get { base.be16(2) }
        nonmutating set { base.setBE16(2, newValue) }
    }
    @inlinable public var identification: UInt16 {
        get { base.be16(4) }
        nonmutating set { base.setBE16(4, newValue) }
    }
    /// The whole flags + fragment offset word.
    @inlinable public var flagsAndOffset: UInt16 {
        get { base.be16(6) }
        nonmutating set { base.setBE16(6, newValue) }
    }
    @inlinable public var dontFragment: Bool {
        get { base.be16(6) & Self.dontFragmentBit != 0 }
        nonmutating set {
            let w = base.be16(6)
            base.setBE16(6, newValue ? w | Self.dontFragmentBit : w & ~Self.dontFragmentBit)
        }
    }
    @inlinable public var moreFragments: Bool {
        get { base.be16(6) & Self.moreFragmentsBit != 0 }
        nonmutating set {
            let w = base.be16(6)
            base.setBE16(6, newValue ? w | Self.moreFragmentsBit : w & ~Self.moreFragmentsBit)
        }
    }
    /// Fragment offset in 8-byte units, as carried.
    @inlinable public var fragmentOffset: UInt16 {
        get { base.be16(6) & Self.offsetMask }
        nonmutating set { base.setBE16(6, base.be16(6) & ~Self.offsetMask | newValue & Self.offsetMask) }
    }
    /// Fragment offset in bytes.
    @inlinable public var fragmentByteOffset: Int { Int(base.be16(6) & Self.offsetMask) &<< 3 }
    /// MF set or a nonzero offset: this is a piece of a larger datagram.
    @inlinable public var isFragment: Bool { base.be16(6) & (Self.moreFragmentsBit | Self.offsetMask) != 0 }

    @inlinable public var ttl: UInt8 {
        get { base.u8(8) }
        nonmutating set { base.setU8(8, newValue) }
    }
    @inlinable public var proto: UInt8 {
        get { base.u8(9) }
        nonmutating set { base.setU8(9, newValue) }
    }
    @inlinable public var checksum: UInt16 {
        get { base.be16(10) }
        nonmutating set { base.setBE16(10, newValue) }
    }
    @inlinable public var source: IPv4Address {
        get { IPv4Address(base.be32(12)) }
        nonmutating set { base.setBE32(12, newValue.value) }
    }
    @inlinable public var destination: IPv4Address {
        get { IPv4Address(base.be32(16)) }
        nonmutating set { base.setBE32(16, newValue.value) }
    }

    /// True when the header checksum verifies. Reads `headerLength` bytes: the caller has
    /// checked IHL ≥ 5 and that the options are inside the packet.
    @inlinable @inline(__always)
    public var isChecksumValid: Bool {
        // A valid header sums to 0xFFFF (negative zero); 0x0000 needs an all-zero header.
        // 0xFFFF reads the same in either byte order, so the native-order sum needs no
        // swap. Without options that is three loads and a fold, inlined (the general
        // Checksum.sum is a call and a loop: ~5 ns instead of ~1).
        if _fastPath(base.u8(0) == 0x45) {
            let a = base.loadUnaligned(as: UInt64.self)
            let b = base.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            let c = base.loadUnaligned(fromByteOffset: 16, as: UInt32.self)
            var s = (a & 0xFFFF_FFFF) &+ (a >> 32) &+ (b & 0xFFFF_FFFF) &+ (b >> 32) &+ UInt64(c)
            s = (s & 0xFFFF) &+ (s >> 16)  // ≤ 5 × 0xFFFF_FFFF: three folds reach 16 bits
            s = (s & 0xFFFF) &+ (s >> 16)
            s = (s & 0xFFFF) &+ (s >> 16)
            return s == 0xFFFF
        }
        return Checksum.sum(base, count: headerLength) == 0xFFFF
    }

    /// Recomputes the header checksum from scratch (after several field changes).
    @inlinable
    public func updateChecksum() {
        base.setBE16(10, 0)
        base.setBE16(10, Checksum.compute(base, count: headerLength))
    }

    /// Decrements TTL by one and patches the checksum (RFC 1624). Returns the new TTL; the
    /// caller tests for zero before calling (a TTL of 0 or 1 is an ICMP time-exceeded).
    @inlinable @inline(__always) @discardableResult
    public func decrementTTL() -> UInt8 {
        let old = base.be16(8)
        let new = old &- 0x0100
        base.setBE16(8, new)
        base.setBE16(10, Checksum.update(base.be16(10), old: old, new: new))
        return UInt8(truncatingIfNeeded: new >> 8)
    }

    /// Sets a 16-bit header word at byte offset `offset` (even, < 20) and patches the checksum.
    @inlinable @inline(__always)
    public func setWord(_ offset: Int, _ value: UInt16) {
        let old = base.be16(offset)
        base.setBE16(offset, value)
        base.setBE16(10, Checksum.update(base.be16(10), old: old, new: value))
    }

    /// Pseudo-header partial sum for a transport checksum over `length` bytes of `proto`.
    @inlinable @inline(__always)
    public func pseudoHeaderSum(proto: UInt8, length: Int) -> UInt32 {
        Checksum.pseudoHeaderIPv4(src: base.be32(12), dst: base.be32(16), proto: proto, length: length)
    }
}

/// IPv4 option layout (RFC 791 §3.1): type 0 ends the list, type 1 is a one-byte NOP, every
/// other option is type, length (≥ 2, covering type and length), data.
public enum IPv4Options {
    /// The copied flag: the option goes into every fragment, not only the first.
    public static let copiedFlag: UInt8 = 0x80
    public static let endOfList: UInt8 = 0
    public static let noOperation: UInt8 = 1

    /// True when the `length` bytes of options at `p` are a well-formed list (padding after
    /// an end-of-list is not inspected). Never reads at or past `p + length`.
    @inlinable
    public static func isWellFormed(_ p: UnsafeRawPointer, length: Int) -> Bool {
        var i = 0
        while i < length {
            let type = p.u8(i)
            if type == endOfList { return true }
            if type == noOperation {
                i &+= 1
                continue
            }
            guard i &+ 1 < length else { return false }
            let l = Int(p.u8(i &+ 1))
            guard l >= 2, i &+ l <= length else { return false }
            i &+= l
        }
        return true
    }

    /// Writes the options of `src` (length `length`) that carry the copied flag to `dst`,
    /// padded with end-of-list to a multiple of 4. Returns the bytes written, or nil when
    /// the list is malformed. `dst` has room for `length` rounded up to 4.
    @inlinable
    public static func copyForLaterFragments(
        from src: UnsafeRawPointer,
        length: Int,
        to dst: UnsafeMutableRawPointer
    ) -> Int? {
        var i = 0
        var out = 0
        while i < length {
            let type = src.u8(i)
            if type == endOfList { break }
            if type == noOperation {
                i &+= 1
                continue
            }
            guard i &+ 1 < length else { return nil }
            let l = Int(src.u8(i &+ 1))
            guard l >= 2, i &+ l <= length else { return nil }
            if type & copiedFlag != 0 {
                // Safe: out ≤ i, and i + l ≤ length, so the copy stays inside dst's room.
                dst.advanced(by: out).copyMemory(from: src.advanced(by: i), byteCount: l)
                out &+= l
            }
            i &+= l
        }
        while out & 3 != 0 {
            dst.setU8(out, endOfList)
            out &+= 1
        }
        return out
    }
}
