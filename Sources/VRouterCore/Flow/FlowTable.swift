// The flow cache: a per-worker exact-match table from FlowKey to FlowValue, allocated
// once at a fixed capacity. Single-threaded (one table per worker), so nothing is atomic.
//
// Layout: buckets of 2 entries; a bucket is exactly one cache line for IPv4 (2 × 32 B)
// and two for IPv6 (2 × 64 B). Two buckets and the line holding their 4 wide counters
// form a superblock (same page):
//
//   superblock  bucket 2k      entry 0 | entry 1
//               bucket 2k+1    entry 0 | entry 1
//               wide counters  4 × (packets: UInt64, bytes: UInt64)
//   entry       key (word0 carries the metadata byte) | action | small counters | lastSeen
//   action      UInt64: nexthop (20 bits) | label (26 bits) | generation (18 bits)
//   small       UInt32: packets (10 bits) | bytes (22 bits) since the last carry
//   metadata    bit 7 occupied · bits 0–3 FlowFlags · bits 4–6: 3 bits of the bucket's
//               overflow count (entry 0 low, entry 1 high; 6 bits, sticky at 63)
//
// One-line hits: a hit reads its action and writes lastSeen and the small counters in the
// line its lookup brought in. A flow's counters are wide + small; the small ones carry into
// the wide line when either would overflow: once per 1024 packets or 4 MiB, so the second
// line costs a 64-byte packet 1/1024 of a miss and a 1500-byte one 1/2796. (With the
// counters only in the wide line, every hit at 1M flows fetched and wrote back a second
// DRAM line: 83.7 ns per packet against 65.7 without counters, measured.) The narrow
// fields are what the tables produce: nexthop ids < 2^20 (TableBuilder.maxNexthopID),
// labels of 24 bits (VNI; MPLS labels are 20) plus FlowTranslation's two flag bits, and
// VRF generations of 18 bits (TableBuilder publishes them modulo 2^18; see VRF.generation).
//
// IPv4: 192 B per 4 slots = 48 B per slot; IPv6: 320 B per 4 slots = 80 B per slot.
// Why no tag line: this VM's DRAM sustains ~90M random line fetches/s per core, so at
// 1M flows the number of lines per lookup is the throughput. Comparing two full keys
// in one line costs a few xors; the 8-way bucket with a 16-bit tag line we built first
// (DPDK/SMC style) added a second, dependent line to every hit and topped out at ~25M
// hits/s at 1M flows. A hit reads 1 line (1.3 on average at 80% load, counting keys
// that live in their alternate bucket); `touch` adds the counters line.
//
// Placement: two candidate buckets per key (primary from the hash's high bits by
// multiply-shift, alternate a different bucket derived from a remix), any bucket count
// (not a power of two, so the table is sized to the capacity: slots = 1.25 × capacity,
// ≤ 60 B per IPv4 flow at capacity). Inserts prefer the primary, then the alternate,
// then a breadth-first cuckoo path of up to 4 moves, and only then evict the least
// recently used of the 4 candidates. The overflow count tells a lookup whether any key
// of this primary lives elsewhere, so a miss usually reads one line too.
// See FlowTable+Insert.swift for the measured load behaviour.

/// The two tables a worker keeps (IPv4 and IPv6 keys have separate layouts).
public typealias IPv4FlowTable = FlowTable<IPv4FlowKey>
public typealias IPv6FlowTable = FlowTable<IPv6FlowKey>

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
    /// Where `scanPinned` continues.
    @usableFromInline var pinnedCursor: Int
    @usableFromInline var defaultQuota: UInt32
    @usableFromInline var stats: FlowTableStats
}

/// A fixed-capacity flow cache, as a bundle of raw pointers: trivially copyable, so the
/// hot path keeps it in registers with no retain/release. Whoever made it calls
/// `deallocate()` once, after every copy is done with it. Slot indices (UInt32) name an
/// entry until the next insert, remove or expire on this table (an insert may move or
/// evict other entries); `FlowTable.miss` names none.
@frozen
public struct FlowTable<Key: FlowKey>: @unchecked Sendable {  // Safe: used by one worker at a time.
    @usableFromInline let blocks: UnsafeMutableRawPointer
    @usableFromInline let header: UnsafeMutablePointer<FlowTableHeader>
    @usableFromInline let vrfCounts: UnsafeMutablePointer<UInt32>
    /// Per-VRF limit, or UInt32.max for "the default quota" (itself UInt32.max for none).
    @usableFromInline let vrfQuotas: UnsafeMutablePointer<UInt32>
    /// Scratch owned by the table so that nothing allocates after init: the batched
    /// lookup's pending list, and the cuckoo search's nodes (bucket, parent, lane).
    @usableFromInline let scratchPending: UnsafeMutablePointer<UInt16>
    @usableFromInline let scratchBuckets: UnsafeMutablePointer<UInt32>
    @usableFromInline let scratchAddresses: UnsafeMutablePointer<UnsafeMutableRawPointer>
    @usableFromInline let scratchPath: UnsafeMutablePointer<UInt32>
    @usableFromInline let bucketCount: UInt32
    @usableFromInline let ownsBlocks: Bool
    /// HugeMemory's token for owned blocks.
    @usableFromInline let blocksToken: Int
    /// Most entries the table holds; inserts beyond it evict.
    public let capacity: Int
    /// VRF ids must be below this (per-VRF counts and quotas are arrays of this size).
    public let vrfLimit: Int
    /// The seed every hash given to this table was computed with (`key.flowHash(seed:)`).
    public let hashSeed: UInt64

    /// Slot value meaning "no entry" (equal to PacketMeta.noFlow).
    @inlinable public static var miss: UInt32 { .max }
    /// Most packets one batched pass handles; larger batches are split.
    @inlinable public static var batchLimit: Int { 256 }
    /// How many keys ahead the batched lookup requests buckets: enough lines in flight
    /// to cover DRAM latency (~200 ns on this VM) at ~10–20 ns per lookup. Measured at
    /// 1M flows: 8 → 38M/s, 16–32 → ~50M/s; at 64K flows 8–32 are alike.
    @inlinable static var prefetchDistance: Int { 20 }
    /// The same for batched inserts, which do ~4x the work per key.
    @inlinable static var insertPrefetchDistance: Int { 8 }

    // MARK: Layout constants (folded at compile time once Key is known)

    @inlinable static var lanes: Int { 2 }
    @inlinable static var entryStride: Int { Key.entryStride }
    @inlinable static var bucketBytes: Int { 2 &* Key.entryStride }
    @inlinable static var countersOffset: Int { 4 &* Key.entryStride }
    @inlinable static var superblockBytes: Int { 4 &* Key.entryStride &+ 64 }
    /// Offset of the action word, small counters and lastSeen inside an entry.
    @inlinable static var actionOffset: Int { MemoryLayout<Key>.size }
    @inlinable static var smallCountersOffset: Int { actionOffset &+ 8 }
    @inlinable static var lastSeenOffset: Int { actionOffset &+ 12 }
    /// Metadata byte: byte 4 of word0 (little-endian bits 32...39).
    @inlinable static var metaOffset: Int { 4 }
    @inlinable static var cuckooNodes: Int { 62 }
    @inlinable static var cuckooDepth: Int { 4 }

    /// Buckets for a capacity: slots = 2 × buckets ≥ 1.25 × capacity, so the table is at
    /// most 80% full, where a cuckoo path of ≤ 4 moves practically always exists.
    public static func bucketCount(capacity: Int) -> Int {
        precondition(capacity > 0 && capacity <= 1 << 30, "flow table capacity out of range")
        return Swift.max(2, (capacity * 5 + 7) / 8)
    }

    /// Bytes of bucket memory a table of this capacity needs (for `init(memory:)`).
    public static func bucketBytes(capacity: Int) -> Int {
        (bucketCount(capacity: capacity) + 1) / 2 * superblockBytes
    }

    /// Allocates a table. `defaultQuota` is the most flows a VRF may hold unless
    /// `setQuota` says otherwise; nil means no per-VRF limit (then only the capacity
    /// bounds a VRF, and a full table evicts instead of refusing).
    public init(
        capacity: Int,
        vrfLimit: Int = 4096,
        defaultQuota: Int? = nil,
        hashSeed: UInt64 = FlowHash.defaultSeed
    ) {
        let bytes = Self.bucketBytes(capacity: capacity)
        // 2 MiB alignment lets the kernel back a large table with huge pages when
        // transparent huge pages are on (fewer TLB misses at 1M flows).
        // Huge pages for a big table (MADV_HUGEPAGE): +8-10% hits at 1M flows, measured.
        let (mem, token) = HugeMemory.allocate(bytes: bytes)
        self.init(
            capacity: capacity,
            vrfLimit: vrfLimit,
            defaultQuota: defaultQuota,
            hashSeed: hashSeed,
            memory: mem,
            owns: true,
            token: token
        )
    }

    /// Builds a table in bucket memory the caller owns (64-byte aligned, at least
    /// `bucketBytes(capacity:)`; for example NUMA-local or huge-page memory). The
    /// memory is zeroed here and must outlive the table.
    public init(
        capacity: Int,
        vrfLimit: Int = 4096,
        defaultQuota: Int? = nil,
        hashSeed: UInt64 = FlowHash.defaultSeed,
        memory: UnsafeMutableRawPointer
    ) {
        precondition(UInt(bitPattern: memory) & 63 == 0, "flow table memory must be 64-byte aligned")
        self.init(
            capacity: capacity,
            vrfLimit: vrfLimit,
            defaultQuota: defaultQuota,
            hashSeed: hashSeed,
            memory: memory,
            owns: false,
            token: 0
        )
    }

    init(
        capacity: Int,
        vrfLimit: Int,
        defaultQuota: Int?,
        hashSeed: UInt64,
        memory: UnsafeMutableRawPointer,
        owns: Bool,
        token: Int
    ) {
        precondition(vrfLimit > 0 && vrfLimit <= 1 << 16, "vrfLimit must be 1...65536")
        let buckets = Self.bucketCount(capacity: capacity)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: Self.bucketBytes(capacity: capacity))
        blocks = memory
        ownsBlocks = owns
        blocksToken = token
        bucketCount = UInt32(buckets)
        self.capacity = capacity
        self.vrfLimit = vrfLimit
        self.hashSeed = hashSeed
        let quota = defaultQuota.map { Self.quotaBits($0) } ?? .max
        header = .allocate(capacity: 1)
        header.initialize(
            to: FlowTableHeader(count: 0, cursor: 0, pinnedCursor: 0, defaultQuota: quota, stats: FlowTableStats())
        )
        vrfCounts = .allocate(capacity: vrfLimit)
        vrfCounts.initialize(repeating: 0, count: vrfLimit)
        vrfQuotas = .allocate(capacity: vrfLimit)
        vrfQuotas.initialize(repeating: .max, count: vrfLimit)
        scratchPending = .allocate(capacity: Self.batchLimit)
        scratchPending.initialize(repeating: 0, count: Self.batchLimit)
        scratchBuckets = .allocate(capacity: Self.batchLimit)
        scratchBuckets.initialize(repeating: 0, count: Self.batchLimit)
        scratchAddresses = .allocate(capacity: Self.batchLimit)
        scratchAddresses.initialize(repeating: memory, count: Self.batchLimit)
        scratchPath = .allocate(capacity: 3 * Self.cuckooNodes)
        scratchPath.initialize(repeating: 0, count: 3 * Self.cuckooNodes)
    }

    public func deallocate() {
        if ownsBlocks { HugeMemory.free(blocks, blocksToken) }
        header.deallocate()
        vrfCounts.deallocate()
        vrfQuotas.deallocate()
        scratchPending.deallocate()
        scratchBuckets.deallocate()
        scratchAddresses.deallocate()
        scratchPath.deallocate()
    }

    /// Number of slots (buckets × 2); slot indices are below it.
    @inlinable public var slotCount: Int { Int(bucketCount) &* Self.lanes }

    /// The hash this table expects for `key`.
    @inlinable @inline(__always)
    public func hash(_ key: Key) -> UInt32 { key.flowHash(seed: hashSeed) }

    // MARK: Addressing

    @inlinable @inline(__always)
    func bucket(_ b: UInt32) -> UnsafeMutableRawPointer {
        // Superblock b/2 = 2 buckets + one counters line, so bucket b starts after b
        // buckets and b/2 counters lines (a shift-and-add, no multiply by 192).
        // Safe: b < bucketCount, so the bucket lies inside the allocation.
        blocks + (Int(b) &* Self.bucketBytes &+ Int(b &>> 1) &* 64)
    }

    @inlinable @inline(__always)
    func entry(_ b: UInt32, _ lane: Int) -> UnsafeMutableRawPointer {
        bucket(b) + lane &* Self.entryStride
    }

    /// The line holding the counters of buckets 2k and 2k+1 (the superblock's last).
    @inlinable @inline(__always)
    func countersLine(_ b: UInt32) -> UnsafeMutableRawPointer {
        blocks + (Int(b &>> 1) &* Self.superblockBytes &+ Self.countersOffset)
    }

    @inlinable @inline(__always)
    func counters(_ b: UInt32, _ lane: Int) -> UnsafeMutableRawPointer {
        countersLine(b) + (Int(b & 1) &* 32 &+ lane &* 16)
    }

    /// Bucket and lane of a slot. A slot beyond the table maps to bucket 0 so that a
    /// stale or garbage slot can never address memory outside the table.
    @inlinable @inline(__always)
    func locate(_ slot: UInt32) -> (UInt32, Int) {
        let b = slot &>> 1
        return (b < bucketCount ? b : 0, Int(slot & 1))
    }

    /// Multiply-shift range reduction: uniform over any bucket count, no division.
    @inlinable @inline(__always)
    func primaryBucket(_ hash: UInt32) -> UInt32 {
        UInt32(truncatingIfNeeded: (UInt64(hash) &* UInt64(bucketCount)) &>> 32)
    }

    /// A bucket other than the primary: primary + 1 + (remix of the hash mod count − 1).
    @inlinable @inline(__always)
    func alternateBucket(_ hash: UInt32) -> UInt32 {
        let remix = (UInt64(hash) &* 0x9E37_79B9_7F4A_7C15) &>> 32
        let step = UInt32(truncatingIfNeeded: (remix &* UInt64(bucketCount &- 1)) &>> 32) &+ 1
        let b = primaryBucket(hash) &+ step
        return b >= bucketCount ? b &- bucketCount : b
    }

    /// The other candidate bucket of a key whose hash is `hash`, seen from `b`.
    @inlinable @inline(__always)
    func otherBucket(_ hash: UInt32, from b: UInt32) -> UInt32 {
        let home = primaryBucket(hash)
        return b == home ? alternateBucket(hash) : home
    }

    // MARK: Entry metadata

    @inlinable @inline(__always)
    static func meta(_ e: UnsafeRawPointer) -> UInt8 {
        e.load(fromByteOffset: metaOffset, as: UInt8.self)
    }

    @inlinable @inline(__always)
    static func setMeta(_ e: UnsafeMutableRawPointer, _ m: UInt8) {
        e.storeBytes(of: m, toByteOffset: metaOffset, as: UInt8.self)
    }

    @inlinable @inline(__always)
    static func isOccupied(_ e: UnsafeRawPointer) -> Bool { meta(e) & FlowEntryMeta.occupied != 0 }

    /// Occupied and not pinned: what eviction may take.
    @inlinable @inline(__always)
    static func isEvictable(_ e: UnsafeRawPointer) -> Bool {
        meta(e) & (FlowEntryMeta.occupied | FlowFlags.pinned.rawValue) == FlowEntryMeta.occupied
    }

    /// Bits of the metadata byte that belong to the bucket (its overflow count).
    @inlinable static var overflowBits: UInt8 { 0x70 }

    @inlinable @inline(__always)
    static func overflow(_ bucket: UnsafeRawPointer) -> UInt8 {
        let m0 = meta(bucket)
        let m1 = meta(bucket + entryStride)
        return (m0 &>> 4) & 7 | ((m1 &>> 4) & 7) &<< 3
    }

    /// Whether any key whose primary is this bucket lives in its alternate.
    @inlinable @inline(__always)
    static func hasOverflow(_ bucket: UnsafeRawPointer) -> Bool {
        (meta(bucket) | meta(bucket + entryStride)) & overflowBits != 0
    }

    @inlinable @inline(__always)
    static func setOverflow(_ bucket: UnsafeMutableRawPointer, _ v: UInt8) {
        let e1 = bucket + entryStride
        setMeta(bucket, meta(bucket) & ~overflowBits | (v & 7) &<< 4)
        setMeta(e1, meta(e1) & ~overflowBits | ((v &>> 3) & 7) &<< 4)
    }

    @inlinable @inline(__always)
    static func lastSeen(_ e: UnsafeRawPointer) -> UInt32 {
        e.load(fromByteOffset: lastSeenOffset, as: UInt32.self)
    }

    @inlinable @inline(__always)
    static func setLastSeen(_ e: UnsafeMutableRawPointer, _ t: UInt32) {
        e.storeBytes(of: t, toByteOffset: lastSeenOffset, as: UInt32.self)
    }

    // MARK: Single lookup

    /// Slot of `key`, or `miss`. Counts nothing (used by insert and remove).
    @inlinable
    func find(_ key: Key, hash: UInt32) -> UInt32 {
        let b1 = primaryBucket(hash)
        let p = bucket(b1)
        if key.matches(p) { return b1 &<< 1 }
        if key.matches(p + Self.entryStride) { return b1 &<< 1 | 1 }
        // Nothing ever spilled from this primary: the alternate cannot hold the key.
        if !Self.hasOverflow(p) { return Self.miss }
        let b2 = alternateBucket(hash)
        let q = bucket(b2)
        if key.matches(q) { return b2 &<< 1 }
        if key.matches(q + Self.entryStride) { return b2 &<< 1 | 1 }
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
