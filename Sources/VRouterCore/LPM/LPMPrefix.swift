// What a FIB needs to know about an address family: the address as an unsigned integer,
// the register a lookup walks it in, and how wide a direct-pointing array pays at a table
// size. `FIB<IPv4Prefix>` and `FIB<IPv6Prefix>` are the two tables a VRF holds; the code
// is one, specialised per family (the hot loops compile as if written for each).

/// A prefix type a FIB can be built over.
public protocol LPMPrefix: Sendable {
    /// The address bits, most significant first: UInt32 for IPv4, UInt128 for IPv6.
    associatedtype Key: FixedWidthInteger & UnsignedInteger & Sendable
    /// The register a lookup shifts the key through, 6 bits per level, with the key at its
    /// top so that chunks past the key's end read as zeros (as the builder pads the last
    /// level): a UInt64 for IPv4 (one register, and a 60-bit skip compare is one shift),
    /// the key itself for IPv6.
    associatedtype Walk: FixedWidthInteger & UnsignedInteger

    static func key(of prefix: Self) -> (Key, UInt8)
    /// The prefix of `length` bits at `key` (canonical: the FIB stores no host bits).
    static func prefix(_ key: Key, length: UInt8) -> Self
    static func walk(_ key: Key) -> Walk
    /// Direct-pointing width for a table of `routes` routes.
    static func directBits(routes: Int) -> Int
}

extension IPv4Prefix: LPMPrefix {
    public typealias Key = UInt32
    public typealias Walk = UInt64

    @inlinable public static func key(of prefix: Self) -> (UInt32, UInt8) { (prefix.address.value, prefix.length) }

    public static func prefix(_ key: UInt32, length: UInt8) -> Self {
        IPv4Prefix(truncating: IPv4Address(key), length: Int(length))
    }

    @inlinable @inline(__always)
    public static func walk(_ key: UInt32) -> UInt64 { UInt64(key) &<< 32 }

    /// 18 and 12 keep /24 and /18 on node boundaries (one node level for the common /24);
    /// 2^18 entries are 1 MiB, worth it only for big tables, while an empty VRF's table
    /// stays at 1 KiB.
    public static func directBits(routes count: Int) -> Int {
        switch count {
        case ..<512: 8
        case ..<8192: 12
        case ..<131_072: 16
        default: 18
        }
    }
}

extension IPv6Prefix: LPMPrefix {
    public typealias Key = UInt128
    public typealias Walk = UInt128

    @inlinable public static func key(of prefix: Self) -> (UInt128, UInt8) { (prefix.address.value, prefix.length) }

    public static func prefix(_ key: UInt128, length: UInt8) -> Self {
        IPv6Prefix(truncating: IPv6Address(key), length: Int(length))
    }

    @inlinable @inline(__always)
    public static func walk(_ key: UInt128) -> UInt128 { key }

    /// An empty VRF's table stays at 1 KiB. Global IPv6 routes all start with 2000::/3, so
    /// direct bits buy less than in IPv4: at 200k BGP-like routes 18 bits measured 6%
    /// faster (one node level fewer for /48) but 18.4 instead of 14.9 bytes per route, so
    /// 16 it is.
    public static func directBits(routes count: Int) -> Int {
        switch count {
        case ..<512: 8
        case ..<8192: 12
        default: 16
        }
    }
}

public typealias IPv4FIB = FIB<IPv4Prefix>
public typealias IPv6FIB = FIB<IPv6Prefix>
public typealias IPv4FIBView = FIBView<IPv4Prefix>
public typealias IPv6FIBView = FIBView<IPv6Prefix>
