// Installing a flow after a miss. Order of preference, cheapest first:
//   1. a free lane in the primary bucket (its line is already in cache from the miss),
//   2. a free lane in the alternate bucket (and the primary's overflow count goes up),
//   3. a cuckoo path: breadth-first over residents of the two buckets and their other
//      candidates, up to 4 moves / 62 buckets examined, to free a candidate lane,
//   4. evict the least recently used of the 4 candidates.
// At capacity (count == capacity) step 4 comes first: the new flow replaces the LRU
// candidate (or, if all four candidates are empty, the next entry at the aging cursor),
// so the table never holds more than `capacity` entries.
// Simulated with random keys (2-entry buckets, this policy): at the 80% load the sizing
// allows, 31% of keys live in their alternate bucket and paths examine 0.4 buckets per
// insert on average; at 85%, 0.07% of inserts evict early. Measured filling a 1M table
// to capacity: 22 of 1,000,000 inserts (0.002%) evicted early, 14% needed moves.

import CVRouterShims

extension FlowTable {
    /// Installs `key` → `value` (counters from `value`, lastSeen = `now`) and returns its
    /// slot. If the key is already present its action is replaced instead (as `update`)
    /// and its lastSeen refreshed. Fails without changing anything when the VRF is at
    /// its quota or the VRF id is ≥ vrfLimit (`.full` only for a table with nothing to
    /// evict). Slots returned earlier may be invalid afterwards.
    @inlinable
    public func insert(
        _ key: Key,
        hash: UInt32,
        value: FlowValue,
        now: UInt32
    )
        -> Result<UInt32, FlowInsertError>
    {
        let existing = find(key, hash: hash)
        if existing != Self.miss {
            update(existing, value)
            let (b, lane) = locate(existing)
            Self.setLastSeen(entry(b, lane), now)
            return .success(existing)
        }
        return insertNew(key, hash: hash, value: value, now: now)
    }

    @inlinable
    public func insert(_ key: Key, value: FlowValue, now: UInt32) -> Result<UInt32, FlowInsertError> {
        insert(key, hash: hash(key), value: value, now: now)
    }

    /// Inserts a batch (the misses of a frame after their routes were resolved),
    /// software-pipelined like the batched lookup: while inserting key i it requests the
    /// lines key i + 8 will need (primary and alternate bucket, counters), so at 1M
    /// flows the DRAM misses of consecutive inserts overlap. `slots[i]` is the slot of
    /// `keys[i]`, valid after the whole batch, or `miss` if that insert failed (the
    /// reason is counted in `stats`). Returns how many succeeded. Duplicate keys in a
    /// batch are fine (the later one updates).
    @inlinable
    @discardableResult
    public func insert(
        keys: UnsafePointer<Key>,
        hashes: UnsafePointer<UInt32>,
        values: UnsafePointer<FlowValue>,
        count: Int,
        now: UInt32,
        slots: UnsafeMutablePointer<UInt32>
    ) -> Int {
        let ahead = Self.insertPrefetchDistance
        for i in 0..<Swift.min(ahead, count) { requestForInsert(hashes[i]) }
        let disturbed = header.pointee.stats.moves &+ header.pointee.stats.evictions
        var ok = 0
        for i in 0..<count {
            if i &+ ahead < count { requestForInsert(hashes[i &+ ahead]) }
            switch insert(keys[i], hash: hashes[i], value: values[i], now: now) {
            case .success(let s):
                slots[i] = s
                ok &+= 1
            case .failure:
                slots[i] = Self.miss
            }
        }
        // A later insert may have moved or evicted an earlier one of this batch.
        if header.pointee.stats.moves &+ header.pointee.stats.evictions != disturbed {
            for i in 0..<count where slots[i] != Self.miss {
                slots[i] = find(keys[i], hash: hashes[i])
            }
        }
        return ok
    }

    @inlinable @inline(__always)
    func requestForInsert(_ hash: UInt32) {
        let b1 = primaryBucket(hash)
        let p = bucket(b1)
        vrt_prefetch_write(p)
        if Self.bucketBytes > 64 { vrt_prefetch_write(p + 64) }
        let q = bucket(alternateBucket(hash))
        vrt_prefetch(q)
        if Self.bucketBytes > 64 { vrt_prefetch(q + 64) }
    }

    /// Insert for a key known to be absent (the caller just missed on it).
    @inlinable
    func insertNew(
        _ key: Key,
        hash: UInt32,
        value: FlowValue,
        now: UInt32
    )
        -> Result<UInt32, FlowInsertError>
    {
        let vrf = Int(key.vrf)
        guard vrf < vrfLimit else {
            header.pointee.stats.vrfOutOfRange &+= 1
            return .failure(.vrfOutOfRange)
        }
        // Safe: vrf < vrfLimit, the size of both per-VRF arrays.
        if vrfCounts[vrf] >= quotaValue(vrf) {
            header.pointee.stats.quotaExceeded &+= 1
            return .failure(.quotaExceeded)
        }
        let b1 = primaryBucket(hash)
        let b2 = alternateBucket(hash)
        if header.pointee.count >= capacity {
            guard evictLRU(b1, b2, now: now) || evictAtCursor() else {
                header.pointee.stats.full &+= 1
                return .failure(.full)
            }
        }
        if let lane = freeLane(b1) { return .success(place(key, hash, value, now, b1, lane)) }
        if let lane = freeLane(b2) { return .success(place(key, hash, value, now, b2, lane)) }
        if let (b, lane) = cuckooPath(b1, b2) { return .success(place(key, hash, value, now, b, lane)) }
        guard evictLRU(b1, b2, now: now) else {
            header.pointee.stats.full &+= 1
            return .failure(.full)
        }
        if let lane = freeLane(b1) { return .success(place(key, hash, value, now, b1, lane)) }
        // Safe: the eviction freed a lane of b1 or b2.
        return .success(place(key, hash, value, now, b2, freeLane(b2)!))
    }

    @inlinable @inline(__always)
    func freeLane(_ b: UInt32) -> Int? {
        let p = bucket(b)
        if !Self.isOccupied(p) { return 0 }
        if !Self.isOccupied(p + Self.entryStride) { return 1 }
        return nil
    }

    /// Writes a new entry into an empty lane of one of the key's candidate buckets.
    @inlinable
    func place(
        _ key: Key,
        _ hash: UInt32,
        _ value: FlowValue,
        _ now: UInt32,
        _ b: UInt32,
        _ lane: Int
    ) -> UInt32 {
        let e = entry(b, lane)
        let meta =
            Self.meta(e) & Self.overflowBits | FlowEntryMeta.occupied
            | value.flags.rawValue & FlowFlags.storable.rawValue
        key.store(e, meta: meta)
        Self.storeAction(e, value)
        e.storeBytes(of: 0 as UInt32, toByteOffset: Self.smallCountersOffset, as: UInt32.self)
        Self.setLastSeen(e, now)
        // An empty lane's wide counters are zero (removeEntry, moveResident): the line is
        // written only for a value that starts with counts, never for the pipeline's.
        if value.packets | value.bytes != 0 {
            let c = counters(b, lane)
            c.storeBytes(of: value.packets, as: UInt64.self)
            c.storeBytes(of: value.bytes, toByteOffset: 8, as: UInt64.self)
        }
        let home = primaryBucket(hash)
        if b != home { Self.incrementOverflow(bucket(home)) }
        header.pointee.count &+= 1
        // Safe: callers checked key.vrf < vrfLimit.
        vrfCounts[Int(key.vrf)] &+= 1
        header.pointee.stats.inserts &+= 1
        return b &<< 1 | UInt32(lane)
    }

    /// Breadth-first search for a chain of moves that frees a lane of `b1` or `b2`:
    /// node = a full bucket; its children are the other candidate buckets of its two
    /// residents. Level by level: all children of a level are computed and requested
    /// first, then checked, so their cache misses overlap. On finding a child with a
    /// free lane, moves residents along the path (deepest first) and returns the root
    /// lane it vacated. Residents' other buckets come from rehashing their keys (no hash
    /// is stored). Nil if no path of ≤ 4 moves exists (62 buckets at most).
    @inlinable
    func cuckooPath(_ b1: UInt32, _ b2: UInt32) -> (UInt32, Int)? {
        // Node i: nodeBucket[i], parent index (or max), lane in the parent whose
        // resident leads here. Safe: n ≤ cuckooNodes, the size of each third.
        let nodeBucket = scratchPath
        let nodeParent = scratchPath + Self.cuckooNodes
        let nodeLane = scratchPath + 2 &* Self.cuckooNodes
        nodeBucket[0] = b1
        nodeParent[0] = .max
        nodeBucket[1] = b2
        nodeParent[1] = .max
        var levelStart = 0
        var n = 2
        for _ in 1...Self.cuckooDepth {
            let levelEnd = n
            // Children of this level, requested together.
            for i in levelStart..<levelEnd {
                let b = nodeBucket[i]
                for lane in 0..<Self.lanes where n < Self.cuckooNodes {
                    let other = otherBucket(hash(Key.load(entry(b, lane))), from: b)
                    // Never revisit a bucket on this node's own path (that would move a
                    // resident twice).
                    var onPath = false
                    var a = UInt32(i)
                    while a != .max {
                        if nodeBucket[Int(a)] == other { onPath = true }
                        a = nodeParent[Int(a)]
                    }
                    if onPath { continue }
                    request(bucket(other), false)
                    nodeBucket[n] = other
                    nodeParent[n] = UInt32(i)
                    nodeLane[n] = UInt32(lane)
                    n &+= 1
                }
            }
            for child in levelEnd..<n {
                guard let free = freeLane(nodeBucket[child]) else { continue }
                // Move the parent's resident into the free lane, then each ancestor's
                // resident into the lane its child vacated, up to a root.
                var node = child
                var vacatedBucket = nodeBucket[child]
                var vacatedLane = free
                while nodeParent[node] != .max {
                    let parent = Int(nodeParent[node])
                    let pl = Int(nodeLane[node])
                    moveResident(from: nodeBucket[parent], pl, to: vacatedBucket, vacatedLane)
                    vacatedBucket = nodeBucket[parent]
                    vacatedLane = pl
                    node = parent
                }
                return (vacatedBucket, vacatedLane)
            }
            levelStart = levelEnd
            if levelStart == n { break }
        }
        return nil
    }

    /// Moves an entry (with its counters) to an empty lane of its other candidate bucket,
    /// keeping both buckets' overflow bits, and fixes its primary's overflow count.
    @inlinable
    func moveResident(from: UInt32, _ lane: Int, to: UInt32, _ toLane: Int) {
        let src = entry(from, lane)
        let dst = entry(to, toLane)
        let srcMeta = Self.meta(src)
        let dstOverflow = Self.meta(dst) & Self.overflowBits
        dst.copyMemory(from: src, byteCount: Self.entryStride)
        Self.setMeta(dst, srcMeta & ~Self.overflowBits | dstOverflow)
        Self.setMeta(src, srcMeta & Self.overflowBits)
        counters(to, toLane).copyMemory(from: counters(from, lane), byteCount: 16)
        counters(from, lane).initializeMemory(as: UInt64.self, repeating: 0, count: 2)
        let home = primaryBucket(hash(Key.load(dst)))
        if from == home { Self.incrementOverflow(bucket(home)) }
        if to == home { Self.decrementOverflow(bucket(home)) }
        header.pointee.stats.moves &+= 1
    }

    /// Evicts the least recently used occupied slot of buckets `b1` and `b2` (largest
    /// `now &- lastSeen`; ties go to the first, primary lanes first). Pinned entries are
    /// never taken. False when all four are empty or pinned.
    @inlinable
    func evictLRU(_ b1: UInt32, _ b2: UInt32, now: UInt32) -> Bool {
        var victimBucket = b1
        var victimLane = -1
        var oldest: UInt32 = 0
        for which in 0..<2 {
            let b = which == 0 ? b1 : b2
            for lane in 0..<Self.lanes {
                let e = entry(b, lane)
                guard Self.isEvictable(e) else { continue }
                let age = now &- Self.lastSeen(e)
                if victimLane < 0 || age > oldest {
                    victimBucket = b
                    victimLane = lane
                    oldest = age
                }
            }
        }
        guard victimLane >= 0 else { return false }
        removeEntry(victimBucket, victimLane)
        header.pointee.stats.evictions &+= 1
        return true
    }

    /// At capacity with all four candidates empty or pinned (possible: capacity is 80%
    /// of the slots), evicts the first unpinned entry at or after the aging cursor
    /// instead, a CLOCK-style stand-in for "least recently used anywhere". Looks at most
    /// 4096 slots, so a table full of pinned entries refuses an insert quickly. False
    /// when none was found.
    @inlinable
    func evictAtCursor() -> Bool {
        let total = slotCount
        var s = header.pointee.cursor < total ? header.pointee.cursor : 0
        for _ in 0..<Swift.min(total, 4096) {
            let b = UInt32(truncatingIfNeeded: s &>> 1)
            if Self.isEvictable(entry(b, s & 1)) {
                removeEntry(b, s & 1)
                header.pointee.stats.evictions &+= 1
                return true
            }
            s &+= 1
            if s == total { s = 0 }
        }
        return false
    }

    @inlinable @inline(__always)
    static func incrementOverflow(_ p: UnsafeMutableRawPointer) {
        let v = overflow(p)
        // Sticky at the maximum: the count can then no longer be trusted to reach 0,
        // which only costs lookups of that bucket a look at the alternate.
        if v != 63 { setOverflow(p, v &+ 1) }
    }

    @inlinable @inline(__always)
    static func decrementOverflow(_ p: UnsafeMutableRawPointer) {
        let v = overflow(p)
        if v != 63 && v != 0 { setOverflow(p, v &- 1) }
    }

    // MARK: Quotas

    @inlinable @inline(__always)
    func quotaValue(_ vrf: Int) -> UInt32 {
        let q = vrfQuotas[vrf]
        return q == .max ? header.pointee.defaultQuota : q
    }

    /// An explicit quota as stored: UInt32.max is reserved for "none/default".
    static func quotaBits(_ max: Int) -> UInt32 {
        Swift.min(UInt32(clamping: Swift.max(0, max)), .max - 1)
    }

    /// Limits VRF `vrf` to `max` flows (nil: back to the default quota). Lowering a
    /// quota below the VRF's current count removes nothing; its inserts fail until
    /// entries go.
    public func setQuota(vrf: UInt16, max: Int?) {
        precondition(Int(vrf) < vrfLimit, "vrf beyond the table's vrfLimit")
        vrfQuotas[Int(vrf)] = max.map(Self.quotaBits) ?? .max
    }

    /// The quota of every VRF without its own (nil: unlimited).
    public func setDefaultQuota(_ max: Int?) {
        header.pointee.defaultQuota = max.map(Self.quotaBits) ?? .max
    }

    /// Flows VRF `vrf` may hold; nil when unlimited, 0 for a VRF id beyond `vrfLimit`.
    public func quota(vrf: UInt16) -> Int? {
        guard Int(vrf) < vrfLimit else { return 0 }
        let q = quotaValue(Int(vrf))
        return q == .max ? nil : Int(q)
    }
}
