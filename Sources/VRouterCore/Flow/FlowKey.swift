// Flow keys: VRF + 5-tuple, packed into 64-bit words so that hashing and comparing a key
// are a few register operations. IPv4 and IPv6 keys have separate layouts and separate
// tables (FlowTable<IPv4FlowKey>, FlowTable<IPv6FlowKey>). One shared 40-byte layout would
// make every IPv4 entry carry 24 bytes of zeros: a 64-byte instead of a 32-byte entry,
// 80 instead of 48 bytes per slot and half the entries per cache line, for the bulk of
// the traffic.
//
//   word0 = vrf << 48 | proto << 40 | sport << 16 | dport      (bits 32..39 are zero)
//   IPv4: word1 = src << 32 | dst                               16 bytes
//   IPv6: srcHi, srcLo, dstHi, dstLo                             40 bytes
//
// Inside a FlowTable entry the zero byte of word0 (bits 32..39) carries the entry's
// metadata (FlowEntryMeta): an occupied bit, which the comparison checks, and flag and
// overflow bits, which it masks off. So a lookup compares the stored key in place with
// two (IPv4) or five (IPv6) xors and needs no separate tag or occupancy load.
//
// Ports are 0 for fragments and protocols without ports; for ICMP echo the pipeline may
// put the identifier in sport (dport 0) so that concurrent pings are distinct flows.

/// What FlowTable needs from a key type. Both conformers are plain words (BitwiseCopyable).
public protocol FlowKey: Hashable, Sendable, BitwiseCopyable {
    /// Bytes of one table entry (key + nexthop + label + generation + lastSeen), a power
    /// of two so that an entry never straddles a cache line.
    static var entryStride: Int { get }
    /// Zero exactly when the entry at `entry` is occupied and holds this key (metadata
    /// bits aside); otherwise some nonzero word. Branch-free, so a lookup can combine
    /// the two entries of a bucket without an unpredictable branch.
    func mismatch(_ entry: UnsafeRawPointer) -> UInt64
    /// Writes the key into an entry, with `meta` in word0's metadata byte.
    func store(_ entry: UnsafeMutableRawPointer, meta: UInt8)
    /// Reads the key of an entry (metadata stripped).
    static func load(_ entry: UnsafeRawPointer) -> Self
    var vrf: UInt16 { get }
    var proto: UInt8 { get }
    var sport: UInt16 { get }
    var dport: UInt16 { get }
    /// FlowHash of the key. A table expects `flowHash(seed: table.hashSeed)` with every
    /// call that takes a hash.
    func flowHash(seed: UInt64) -> UInt32
}

/// Where word0 keeps the table's per-entry metadata byte.
@frozen
public enum FlowEntryMeta {
    @inlinable public static var shift: UInt64 { 32 }
    /// Set in every occupied entry; compared, so an empty entry matches no key.
    @inlinable public static var occupied: UInt8 { 0x80 }
    /// word0 bits a lookup ignores (flags and overflow bits of the metadata byte).
    @inlinable public static var ignoredBits: UInt64 { 0x7F &<< 32 }
    /// word0 of a stored key must equal the query's word0 with the occupied bit set.
    @inlinable public static var occupiedBit: UInt64 { 0x80 &<< 32 }
    @inlinable public static var allBits: UInt64 { 0xFF &<< 32 }
}

extension FlowKey {
    /// Whether the entry at `entry` is occupied and holds this key.
    @inlinable @inline(__always)
    public func matches(_ entry: UnsafeRawPointer) -> Bool { mismatch(entry) == 0 }
}

/// Packs the fields every key shares into its first word.
@inlinable @inline(__always)
func flowKeyWord0(vrf: UInt16, proto: UInt8, sport: UInt16, dport: UInt16) -> UInt64 {
    UInt64(vrf) &<< 48 | UInt64(proto) &<< 40 | UInt64(sport) &<< 16 | UInt64(dport)
}

/// VRF + IPv4 5-tuple in 16 bytes.
@frozen
public struct IPv4FlowKey: FlowKey, CustomStringConvertible {
    public var word0: UInt64
    public var word1: UInt64

    @inlinable public static var entryStride: Int { 32 }

    /// From packed words (bits 32..39 of word0 are not part of a key and are cleared).
    @inlinable @inline(__always)
    public init(word0: UInt64, word1: UInt64) {
        self.word0 = word0 & ~FlowEntryMeta.allBits
        self.word1 = word1
    }

    @inlinable @inline(__always)
    public init(vrf: UInt16, proto: UInt8, src: UInt32, dst: UInt32, sport: UInt16, dport: UInt16) {
        word0 = flowKeyWord0(vrf: vrf, proto: proto, sport: sport, dport: dport)
        word1 = UInt64(src) &<< 32 | UInt64(dst)
    }

    @inlinable
    public init(
        vrf: UInt16,
        proto: UInt8,
        src: IPv4Address,
        dst: IPv4Address,
        sport: UInt16 = 0,
        dport: UInt16 = 0
    ) {
        self.init(vrf: vrf, proto: proto, src: src.value, dst: dst.value, sport: sport, dport: dport)
    }

    @inlinable public var vrf: UInt16 { UInt16(truncatingIfNeeded: word0 &>> 48) }
    @inlinable public var proto: UInt8 { UInt8(truncatingIfNeeded: word0 &>> 40) }
    @inlinable public var sport: UInt16 { UInt16(truncatingIfNeeded: word0 &>> 16) }
    @inlinable public var dport: UInt16 { UInt16(truncatingIfNeeded: word0) }
    @inlinable public var src: IPv4Address { IPv4Address(UInt32(truncatingIfNeeded: word1 &>> 32)) }
    @inlinable public var dst: IPv4Address { IPv4Address(UInt32(truncatingIfNeeded: word1)) }

    /// The key of the opposite direction (addresses and ports swapped).
    @inlinable public var reversed: IPv4FlowKey {
        IPv4FlowKey(vrf: vrf, proto: proto, src: dst.value, dst: src.value, sport: dport, dport: sport)
    }

    @inlinable @inline(__always)
    public func flowHash(seed: UInt64 = FlowHash.defaultSeed) -> UInt32 { FlowHash.hash(self, seed: seed) }

    @inlinable @inline(__always)
    public func mismatch(_ entry: UnsafeRawPointer) -> UInt64 {
        let e0 = entry.load(as: UInt64.self)
        let e1 = entry.load(fromByteOffset: 8, as: UInt64.self)
        return ((e0 ^ (word0 | FlowEntryMeta.occupiedBit)) & ~FlowEntryMeta.ignoredBits) | (e1 ^ word1)
    }

    @inlinable @inline(__always)
    public func store(_ entry: UnsafeMutableRawPointer, meta: UInt8) {
        entry.storeBytes(of: word0 | UInt64(meta) &<< FlowEntryMeta.shift, as: UInt64.self)
        entry.storeBytes(of: word1, toByteOffset: 8, as: UInt64.self)
    }

    @inlinable @inline(__always)
    public static func load(_ entry: UnsafeRawPointer) -> IPv4FlowKey {
        IPv4FlowKey(
            word0: entry.load(as: UInt64.self) & ~FlowEntryMeta.allBits,
            word1: entry.load(fromByteOffset: 8, as: UInt64.self)
        )
    }

    // Written out (not synthesized) so that clients inline them: one branch-free compare.
    @inlinable @inline(__always)
    public static func == (a: IPv4FlowKey, b: IPv4FlowKey) -> Bool {
        (a.word0 ^ b.word0) | (a.word1 ^ b.word1) == 0
    }

    @inlinable
    public func hash(into hasher: inout Hasher) {
        hasher.combine(word0)
        hasher.combine(word1)
    }

    public var description: String {
        "vrf \(vrf) proto \(proto) \(src):\(sport) → \(dst):\(dport)"
    }
}

/// VRF + IPv6 5-tuple in 40 bytes.
@frozen
public struct IPv6FlowKey: FlowKey, CustomStringConvertible {
    public var word0: UInt64
    public var srcHi: UInt64
    public var srcLo: UInt64
    public var dstHi: UInt64
    public var dstLo: UInt64

    /// 40-byte key + 16 bytes of action and lastSeen, padded to a cache line.
    @inlinable public static var entryStride: Int { 64 }

    @inlinable @inline(__always)
    public init(vrf: UInt16, proto: UInt8, src: UInt128, dst: UInt128, sport: UInt16, dport: UInt16) {
        word0 = flowKeyWord0(vrf: vrf, proto: proto, sport: sport, dport: dport)
        srcHi = UInt64(truncatingIfNeeded: src &>> 64)
        srcLo = UInt64(truncatingIfNeeded: src)
        dstHi = UInt64(truncatingIfNeeded: dst &>> 64)
        dstLo = UInt64(truncatingIfNeeded: dst)
    }

    @inlinable
    public init(
        vrf: UInt16,
        proto: UInt8,
        src: IPv6Address,
        dst: IPv6Address,
        sport: UInt16 = 0,
        dport: UInt16 = 0
    ) {
        self.init(vrf: vrf, proto: proto, src: src.value, dst: dst.value, sport: sport, dport: dport)
    }

    @inlinable public var vrf: UInt16 { UInt16(truncatingIfNeeded: word0 &>> 48) }
    @inlinable public var proto: UInt8 { UInt8(truncatingIfNeeded: word0 &>> 40) }
    @inlinable public var sport: UInt16 { UInt16(truncatingIfNeeded: word0 &>> 16) }
    @inlinable public var dport: UInt16 { UInt16(truncatingIfNeeded: word0) }
    @inlinable public var src: IPv6Address { IPv6Address(UInt128(srcHi) &<< 64 | UInt128(srcLo)) }
    @inlinable public var dst: IPv6Address { IPv6Address(UInt128(dstHi) &<< 64 | UInt128(dstLo)) }

    @inlinable public var reversed: IPv6FlowKey {
        IPv6FlowKey(vrf: vrf, proto: proto, src: dst.value, dst: src.value, sport: dport, dport: sport)
    }

    @inlinable @inline(__always)
    public func flowHash(seed: UInt64 = FlowHash.defaultSeed) -> UInt32 { FlowHash.hash(self, seed: seed) }

    @inlinable @inline(__always)
    public func mismatch(_ entry: UnsafeRawPointer) -> UInt64 {
        let e0 = entry.load(as: UInt64.self)
        let d0 = (e0 ^ (word0 | FlowEntryMeta.occupiedBit)) & ~FlowEntryMeta.ignoredBits
        return d0 | (entry.load(fromByteOffset: 8, as: UInt64.self) ^ srcHi)
            | (entry.load(fromByteOffset: 16, as: UInt64.self) ^ srcLo)
            | (entry.load(fromByteOffset: 24, as: UInt64.self) ^ dstHi)
            | (entry.load(fromByteOffset: 32, as: UInt64.self) ^ dstLo)
    }

    @inlinable @inline(__always)
    public func store(_ entry: UnsafeMutableRawPointer, meta: UInt8) {
        entry.storeBytes(of: word0 | UInt64(meta) &<< FlowEntryMeta.shift, as: UInt64.self)
        entry.storeBytes(of: srcHi, toByteOffset: 8, as: UInt64.self)
        entry.storeBytes(of: srcLo, toByteOffset: 16, as: UInt64.self)
        entry.storeBytes(of: dstHi, toByteOffset: 24, as: UInt64.self)
        entry.storeBytes(of: dstLo, toByteOffset: 32, as: UInt64.self)
    }

    @inlinable @inline(__always)
    public static func load(_ entry: UnsafeRawPointer) -> IPv6FlowKey {
        var k = IPv6FlowKey(vrf: 0, proto: 0, src: 0, dst: 0, sport: 0, dport: 0)
        k.word0 = entry.load(as: UInt64.self) & ~FlowEntryMeta.allBits
        k.srcHi = entry.load(fromByteOffset: 8, as: UInt64.self)
        k.srcLo = entry.load(fromByteOffset: 16, as: UInt64.self)
        k.dstHi = entry.load(fromByteOffset: 24, as: UInt64.self)
        k.dstLo = entry.load(fromByteOffset: 32, as: UInt64.self)
        return k
    }

    @inlinable @inline(__always)
    public static func == (a: IPv6FlowKey, b: IPv6FlowKey) -> Bool {
        (a.word0 ^ b.word0) | (a.srcHi ^ b.srcHi) | (a.srcLo ^ b.srcLo) | (a.dstHi ^ b.dstHi)
            | (a.dstLo ^ b.dstLo) == 0
    }

    @inlinable
    public func hash(into hasher: inout Hasher) {
        hasher.combine(word0)
        hasher.combine(srcHi)
        hasher.combine(srcLo)
        hasher.combine(dstHi)
        hasher.combine(dstLo)
    }

    public var description: String {
        "vrf \(vrf) proto \(proto) [\(src)]:\(sport) → [\(dst)]:\(dport)"
    }
}
