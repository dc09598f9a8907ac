// The flow cache: a per-worker exact-match table from FlowKey to FlowValue, allocated
// once at a fixed capacity. Single-threaded (one table per worker), so nothing is atomic.
//
// Layout: 2^k buckets of 8 slots. A bucket is one contiguous block:
//
//   line 0   tags      8 × UInt16   0 = empty, else 16 high bits of the hash (never 0)
//            lastSeen  8 × UInt32   caller ticks at the last packet
//            flags     8 × UInt8    FlowFlags
//            overflow  UInt16       keys whose primary bucket is this one but which
//                                   live in their alternate bucket (sticky at 0xFFFF)
//   entries  8 × entryStride        key | nexthop | label | generation | hash
//                                   (IPv4: 32 B, two per line; IPv6: 64 B, one line)
//   counters 8 × 16 B               packets, bytes
//
// IPv4: 64 + 256 + 128 = 448 B per 8 slots = 56 B per slot. IPv6: 704 B = 88 B per slot.
// A hit reads the tag line and one entry (2 lines); `touch` writes lastSeen in the tag
// line and the counters (one more line, prefetched for write by the batched lookup).
// Keeping the three parts of a bucket in one block puts them in the same 4 KiB page
// most of the time, so a lookup at 1M flows costs one TLB miss, not three.
//
// Placement: two candidate buckets per key (primary = hash & mask, alternate = primary
// xor an odd function of the hash). Inserts prefer the primary, then the alternate, then
// try to move one resident of either bucket to its other candidate (one cuckoo step),
// and only then evict the least recently used of the 16 candidates. Preferring the
// primary keeps ~95% of keys there at 75% load, and the overflow count lets a lookup
// skip the alternate bucket unless some key actually spilled from this primary: most
// hits and most misses touch a single tag line. See FlowTable+Insert.swift.

/// Why an insert did not install the flow.
@frozen
public enum FlowInsertError: Error, Hashable, Sendable {
    /// The key's VRF already holds its quota of flows.
    case quotaExceeded
    /// Nothing could be evicted to make room (never happens with a nonempty candidate).
    case full
    /// The key's VRF id is not below the table's `vrfLimit`.
    case vrfOutOfRange
}

/// Event counters, plain UInt64s (one writer: the table's worker).
@frozen
public struct FlowTableStats: Hashable, Sendable {
    public var lookups: UInt64 = 0
    public var hits: UInt64 = 0
    public var misses: UInt64 = 0
    /// New flows installed (evicting or not).
    public var inserts: UInt64 = 0
    /// `update` calls, and inserts that found the key already present.
    public var updates: UInt64 = 0
    /// Live entries removed to make room (LRU among the key's candidate slots).
    public var evictions: UInt64 = 0
    /// Residents moved to their other candidate bucket to make room (no flow lost).
    public var moves: UInt64 = 0
    public var full: UInt64 = 0
    public var quotaExceeded: UInt64 = 0
    public var vrfOutOfRange: UInt64 = 0
    /// Entries removed by `expire`.
    public var expired: UInt64 = 0
    /// Entries removed by `remove` and `removeAll`.
    public var removed: UInt64 = 0
    public init() {}
}

/// Mutable scalars shared by every copy of a FlowTable value.
@usableFromInline
struct FlowTableHeader {
    @usableFromInline var count: Int
    @usableFromInline var cursor: Int
    @usableFromInline var defaultQuota: UInt32
    @usableFromInline var stats: FlowTableStats
}

/// A fixed-capacity flow cache, as a bundle of raw pointers: trivially copyable, so the
/// hot path keeps it in registers with no retain/release. Whoever made it calls
/// `deallocate()` once, after every copy is done with it. Slot indices (UInt32) name an
/// entry until the next insert, remove or expire on this table; `FlowTable.miss` names
/// none.
@frozen
public struct FlowTable<Key: FlowKey>: @unchecked Sendable {  // Safe: used by one worker at a time.
    @usableFromInline let blocks: UnsafeMutableRawPointer
    @usableFromInline let header: UnsafeMutablePointer<FlowTableHeader>
    @usableFromInline let vrfCounts: UnsafeMutablePointer<UInt32>
    /// Per-VRF limit, or UInt32.max for "the default quota" (itself UInt32.max for none).
    @usableFromInline let vrfQuotas: UnsafeMutablePointer<UInt32>
    /// Scratch for the batched lookup (tag-match masks and the pending list): owned by
    /// the table so a batch allocates nothing.
    @usableFromInline let scratchMasks: UnsafeMutablePointer<UInt64>
    @usableFromInline let scratchPending: UnsafeMutablePointer<UInt16>
    @usableFromInline let bucketMask: UInt32
    @usableFromInline let ownsBlocks: Bool
    /// Most entries the table holds; inserts beyond it evict.
    public let capacity: Int
    /// VRF ids must be below this (per-VRF counts and quotas are arrays of this size).
    public let vrfLimit: Int
    /// The seed every hash given to this table was computed with (`key.flowHash(seed:)`).
    public let hashSeed: UInt64

    /// Slot value meaning "no entry".
    @inlinable public static var miss: UInt32 { .max }
    /// Most packets one batched-lookup pass handles; larger batches are split.
    @inlinable public static var batchLimit: Int { 256 }

    // MARK: Layout constants (folded at compile time once Key is known)

    @inlinable static var lanes: Int { 8 }
    @inlinable static var lastSeenOffset: Int { 16 }
    @inlinable static var flagsOffset: Int { 48 }
    @inlinable static var overflowOffset: Int { 56 }
    @inlinable static var entriesOffset: Int { 64 }
    @inlinable static var entryStride: Int { Key.entryStride }
    /// Offset of nexthop/label/generation/hash inside an entry.
    @inlinable static var actionOffset: Int { MemoryLayout<Key>.size }
    @inlinable static var countersOffset: Int { 64 &+ 8 &* Key.entryStride }
    @inlinable static var blockSize: Int { countersOffset &+ 8 &* 16 }

    /// Buckets for a capacity: enough 8-slot buckets for every entry, a power of two, ≥ 2
    /// (so the two candidate buckets of a key always differ).
    public static func bucketCount(capacity: Int) -> Int {
        precondition(capacity > 0 && capacity <= 1 << 31, "flow table capacity out of range")
        let needed = (capacity + lanes - 1) / lanes
        var b = 2
        while b < needed { b <<= 1 }
        return b
    }

    /// Bytes of bucket memory a table of this capacity needs (for `init(memory:)`).
    public static func bucketBytes(capacity: Int) -> Int {
        bucketCount(capacity: capacity) * blockSize
    }

    /// Allocates a table. `defaultQuota` is the most flows a VRF may hold unless
    /// `setQuota` says otherwise; nil means no per-VRF limit (then only the capacity
    /// bounds a VRF, and a full table evicts instead of refusing).
    public init(
        capacity: Int, vrfLimit: Int = 4096, defaultQuota: Int? = nil,
        hashSeed: UInt64 = FlowHash.defaultSeed
    ) {
        let bytes = Self.bucketBytes(capacity: capacity)
        // 2 MiB alignment lets the kernel back a large table with huge pages when
        // transparent huge pages are on (fewer TLB misses at 1M flows).
        let align = bytes >= 1 << 21 ? 1 << 21 : 64
        let mem = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: align)
        self.init(
            capacity: capacity, vrfLimit: vrfLimit, defaultQuota: defaultQuota, hashSeed: hashSeed,
            memory: mem, owns: true)
    }

    /// Builds a table in bucket memory the caller owns (64-byte aligned, at least
    /// `bucketBytes(capacity:)`; for example NUMA-local or huge-page memory). The
    /// memory is zeroed here and must outlive the table.
    public init(
        capacity: Int, vrfLimit: Int = 4096, defaultQuota: Int? = nil,
        hashSeed: UInt64 = FlowHash.defaultSeed, memory: UnsafeMutableRawPointer
    ) {
        precondition(UInt(bitPattern: memory) & 63 == 0, "flow table memory must be 64-byte aligned")
        self.init(
            capacity: capacity, vrfLimit: vrfLimit, defaultQuota: defaultQuota, hashSeed: hashSeed,
            memory: memory, owns: false)
    }

    init(
        capacity: Int, vrfLimit: Int, defaultQuota: Int?, hashSeed: UInt64,
        memory: UnsafeMutableRawPointer, owns: Bool
    ) {
        precondition(vrfLimit > 0 && vrfLimit <= 1 << 16, "vrfLimit must be 1...65536")
        let buckets = Self.bucketCount(capacity: capacity)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: buckets * Self.blockSize)
        blocks = memory
        ownsBlocks = owns
        bucketMask = UInt32(buckets - 1)
        self.capacity = capacity
        self.vrfLimit = vrfLimit
        self.hashSeed = hashSeed
        let quota = defaultQuota.map { Self.quotaBits($0) } ?? .max
        header = .allocate(capacity: 1)
        header.initialize(
            to: FlowTableHeader(count: 0, cursor: 0, defaultQuota: quota, stats: FlowTableStats()))
        vrfCounts = .allocate(capacity: vrfLimit)
        vrfCounts.initialize(repeating: 0, count: vrfLimit)
        vrfQuotas = .allocate(capacity: vrfLimit)
        vrfQuotas.initialize(repeating: .max, count: vrfLimit)
        scratchMasks = .allocate(capacity: Self.batchLimit)
        scratchMasks.initialize(repeating: 0, count: Self.batchLimit)
        scratchPending = .allocate(capacity: Self.batchLimit)
        scratchPending.initialize(repeating: 0, count: Self.batchLimit)
    }

    public func deallocate() {
        if ownsBlocks { blocks.deallocate() }
        header.deallocate()
        vrfCounts.deallocate()
        vrfQuotas.deallocate()
        scratchMasks.deallocate()
        scratchPending.deallocate()
    }

    /// Number of slots (buckets × 8); slot indices are below it.
    @inlinable public var slotCount: Int { (Int(bucketMask) &+ 1) &* Self.lanes }

    /// The hash this table expects for `key`.
    @inlinable @inline(__always)
    public func hash(_ key: Key) -> UInt32 { key.flowHash(seed: hashSeed) }

    // MARK: Addressing

    @inlinable @inline(__always)
    func block(_ bucket: UInt32) -> UnsafeMutableRawPointer {
        // Safe: bucket ≤ bucketMask, so the block lies inside the allocation.
        blocks + Int(bucket) &* Self.blockSize
    }

    @inlinable @inline(__always)
    func entry(_ block: UnsafeMutableRawPointer, _ lane: Int) -> UnsafeMutableRawPointer {
        block + (Self.entriesOffset &+ lane &* Self.entryStride)
    }

    @inlinable @inline(__always)
    func counters(_ block: UnsafeMutableRawPointer, _ lane: Int) -> UnsafeMutableRawPointer {
        block + (Self.countersOffset &+ lane &* 16)
    }

    /// Block and lane of a slot index the table handed out (bucket = slot / 8).
    @inlinable @inline(__always)
    func locate(_ slot: UInt32) -> (UnsafeMutableRawPointer, Int) {
        (block((slot &>> 3) & bucketMask), Int(slot & 7))
    }

    @inlinable @inline(__always)
    func primaryBucket(_ hash: UInt32) -> UInt32 { hash & bucketMask }

    /// Primary xor an odd number: always a different bucket (there are ≥ 2).
    @inlinable @inline(__always)
    func alternateBucket(_ hash: UInt32) -> UInt32 {
        let spread = UInt32(truncatingIfNeeded: (UInt64(hash) &* 0x9E37_79B9_7F4A_7C15) &>> 32)
        return (hash ^ (spread | 1)) & bucketMask
    }

    /// The other candidate bucket of a key whose hash is `hash`, seen from `bucket`.
    @inlinable @inline(__always)
    func otherBucket(_ hash: UInt32, from bucket: UInt32) -> UInt32 {
        bucket == primaryBucket(hash) ? alternateBucket(hash) : primaryBucket(hash)
    }

    /// 16-bit tag from the high hash bits; 0 marks an empty slot, so a 0 tag becomes 1.
    @inlinable @inline(__always)
    static func tag(_ hash: UInt32) -> UInt16 {
        let t = UInt16(truncatingIfNeeded: hash &>> 16)
        return t | (t == 0 ? 1 : 0)
    }

    // MARK: Tag line

    /// Lanes whose tag equals `tag`, as bits: lane k < 4 at bit 16k, lane 4+k at bit
    /// 16k+8 (decode with `lane(ofBit:)`). SWAR over two 64-bit words, exact (no false
    /// lane matches), ~12 ALU ops, no SIMD needed on the baseline x86-64 target.
    @inlinable @inline(__always)
    static func matchLanes(_ block: UnsafeRawPointer, _ tag: UInt16) -> UInt64 {
        let pattern = UInt64(tag) &* 0x0001_0001_0001_0001
        let w0 = block.load(as: UInt64.self) ^ pattern
        let w1 = block.load(fromByteOffset: 8, as: UInt64.self) ^ pattern
        return (zeroLanes(w0) &>> 15) | (zeroLanes(w1) &>> 7)
    }

    /// High bit of each 16-bit lane that is zero.
    @inlinable @inline(__always)
    static func zeroLanes(_ x: UInt64) -> UInt64 {
        let low: UInt64 = 0x7FFF_7FFF_7FFF_7FFF
        return ~(((x & low) &+ low) | x) & ~low
    }

    /// Every lane bit `matchLanes` can set.
    @inlinable static var allLaneBits: UInt64 { 0x0101_0101_0101_0101 }

    /// Lanes holding an entry, in `matchLanes` form.
    @inlinable @inline(__always)
    static func occupiedLanes(_ block: UnsafeRawPointer) -> UInt64 {
        ~matchLanes(block, 0) & allLaneBits
    }

    @inlinable @inline(__always)
    static func lane(ofBit bit: Int) -> Int { (bit &>> 4) | ((bit &>> 1) & 4) }

    @inlinable @inline(__always)
    static func tagAt(_ block: UnsafeRawPointer, _ lane: Int) -> UInt16 {
        block.load(fromByteOffset: lane &* 2, as: UInt16.self)
    }

    @inlinable @inline(__always)
    static func setTag(_ block: UnsafeMutableRawPointer, _ lane: Int, _ tag: UInt16) {
        block.storeBytes(of: tag, toByteOffset: lane &* 2, as: UInt16.self)
    }

    @inlinable @inline(__always)
    static func lastSeen(_ block: UnsafeRawPointer, _ lane: Int) -> UInt32 {
        block.load(fromByteOffset: lastSeenOffset &+ lane &* 4, as: UInt32.self)
    }

    @inlinable @inline(__always)
    static func setLastSeen(_ block: UnsafeMutableRawPointer, _ lane: Int, _ t: UInt32) {
        block.storeBytes(of: t, toByteOffset: lastSeenOffset &+ lane &* 4, as: UInt32.self)
    }

    @inlinable @inline(__always)
    static func flagsAt(_ block: UnsafeRawPointer, _ lane: Int) -> UInt8 {
        block.load(fromByteOffset: flagsOffset &+ lane, as: UInt8.self)
    }

    @inlinable @inline(__always)
    static func setFlags(_ block: UnsafeMutableRawPointer, _ lane: Int, _ f: UInt8) {
        block.storeBytes(of: f, toByteOffset: flagsOffset &+ lane, as: UInt8.self)
    }

    @inlinable @inline(__always)
    static func overflow(_ block: UnsafeRawPointer) -> UInt16 {
        block.load(fromByteOffset: overflowOffset, as: UInt16.self)
    }

    @inlinable @inline(__always)
    static func setOverflow(_ block: UnsafeMutableRawPointer, _ v: UInt16) {
        block.storeBytes(of: v, toByteOffset: overflowOffset, as: UInt16.self)
    }

    // MARK: Entry fields

    @inlinable @inline(__always)
    static func key(_ entry: UnsafeRawPointer) -> Key { entry.load(as: Key.self) }

    @inlinable @inline(__always)
    static func storedHash(_ entry: UnsafeRawPointer) -> UInt32 {
        entry.load(fromByteOffset: actionOffset &+ 12, as: UInt32.self)
    }

    // MARK: Single lookup

    /// Slot of `key`, or `miss`. Counts nothing (used by insert and remove).
    @inlinable
    func find(_ key: Key, hash: UInt32) -> UInt32 {
        let tag = Self.tag(hash)
        let b1 = primaryBucket(hash)
        let blk1 = block(b1)
        var m = Self.matchLanes(blk1, tag)
        while m != 0 {
            let lane = Self.lane(ofBit: m.trailingZeroBitCount)
            if Self.key(entry(blk1, lane)) == key { return b1 &<< 3 | UInt32(lane) }
            m &= m &- 1
        }
        // Nothing ever spilled from this primary: the alternate cannot hold the key.
        if Self.overflow(blk1) == 0 { return Self.miss }
        let b2 = alternateBucket(hash)
        let blk2 = block(b2)
        m = Self.matchLanes(blk2, tag)
        while m != 0 {
            let lane = Self.lane(ofBit: m.trailingZeroBitCount)
            if Self.key(entry(blk2, lane)) == key { return b2 &<< 3 | UInt32(lane) }
            m &= m &- 1
        }
        return Self.miss
    }

    /// Slot of `key` (whose hash is `hash`), or `FlowTable.miss`.
    @inlinable
    public func lookup(_ key: Key, hash: UInt32) -> UInt32 {
        let slot = find(key, hash: hash)
        header.pointee.stats.lookups &+= 1
        if slot == Self.miss {
            header.pointee.stats.misses &+= 1
        } else {
            header.pointee.stats.hits &+= 1
        }
        return slot
    }

    @inlinable
    public func lookup(_ key: Key) -> UInt32 { lookup(key, hash: hash(key)) }
}
