// One MPLS label stack entry (RFC 3032 §2.1): label (20 bits), traffic class (3), bottom of
// stack (1), TTL (8), as a view and as a value encoder.

@frozen
public struct MPLSLabelStackEntry {
    public let base: UnsafeMutableRawPointer
    @inlinable @inline(__always) public init(_ base: UnsafeMutableRawPointer) { self.base = base }
    @inlinable @inline(__always) public init(_ base: UnsafeRawPointer) {
        self.base = UnsafeMutableRawPointer(mutating: base)
    }

    public static let maxLabel: UInt32 = 0xF_FFFF

    /// The 32-bit entry for the given fields (label masked to 20 bits, TC to 3).
    @inlinable @inline(__always)
    public static func encode(label: UInt32, trafficClass: UInt8, bottomOfStack: Bool, ttl: UInt8) -> UInt32 {
        (label & maxLabel) << 12 | UInt32(trafficClass & 7) << 9 | (bottomOfStack ? 0x100 : 0) | UInt32(ttl)
    }

    @inlinable public var word: UInt32 {
        get { base.be32(0) }
        nonmutating set { base.setBE32(0, newValue) }
    }
    @inlinable public var label: UInt32 {
        get { base.be32(0) >> 12 }
        nonmutating set { base.setBE32(0, base.be32(0) & 0xFFF | (newValue & Self.maxLabel) << 12) }
    }
    @inlinable public var trafficClass: UInt8 {
        get { UInt8(truncatingIfNeeded: base.be32(0) >> 9) & 7 }
        nonmutating set { base.setBE32(0, base.be32(0) & ~0xE00 | UInt32(newValue & 7) << 9) }
    }
    @inlinable public var bottomOfStack: Bool {
        get { base.u8(2) & 1 != 0 }
        nonmutating set { base.setU8(2, base.u8(2) & 0xFE | (newValue ? 1 : 0)) }
    }
    @inlinable public var ttl: UInt8 {
        get { base.u8(3) }
        nonmutating set { base.setU8(3, newValue) }
    }
}
