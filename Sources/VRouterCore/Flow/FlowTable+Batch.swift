// Batched lookup over a frame, stage by stage ("loop and jump", as DPDK's bulk hash
// lookup and VPP's nodes do): first request every packet's tag line, then match tags and
// request the one entry each hit needs, then compare keys. Each stage only touches lines
// the previous stage requested, so up to a frame's worth of cache misses are in flight at
// once instead of one at a time: at 1M flows (tables in DRAM) this is what turns ~100 ns
// per lookup into a few ns. A frame's lines (≤256 tag lines + 256 entries, 32 KiB)
// stay within L1/L2 between the stages.

import CVRouterShims

extension FlowTable {
    /// Looks up `count` keys: `slots[i]` becomes the slot of `keys[i]` or `FlowTable.miss`.
    /// `hashes[i]` must be `hash(keys[i])` (the pipeline computed it once for ECMP and
    /// the outer UDP port too). Allocates nothing; any count works (frames of ≤256 are
    /// one pass). With `prefetchCounters` the counters line of every tag hit is
    /// prefetched for writing, for a `touch` that follows.
    @inlinable
    public func lookup(
        keys: UnsafePointer<Key>, hashes: UnsafePointer<UInt32>, count: Int,
        slots: UnsafeMutablePointer<UInt32>, prefetchCounters: Bool = true
    ) {
        var done = 0
        var hits = 0
        while done < count {
            let n = Swift.min(count &- done, Self.batchLimit)
            hits &+= lookupPass(keys + done, hashes + done, n, slots + done, prefetchCounters)
            done &+= n
        }
        header.pointee.stats.lookups &+= UInt64(truncatingIfNeeded: count)
        header.pointee.stats.hits &+= UInt64(truncatingIfNeeded: hits)
        header.pointee.stats.misses &+= UInt64(truncatingIfNeeded: count &- hits)
    }

    /// One pass over n ≤ batchLimit keys; returns the number of hits.
    @inlinable
    func lookupPass(
        _ keys: UnsafePointer<Key>, _ hashes: UnsafePointer<UInt32>, _ n: Int,
        _ slots: UnsafeMutablePointer<UInt32>, _ prefetchCounters: Bool
    ) -> Int {
        let masks = scratchMasks
        let pending = scratchPending
        let mask = bucketMask

        // Stage 1: request every primary tag line.
        for i in 0..<n {
            vrt_prefetch(block(hashes[i] & mask))
        }
        // Stage 2: match tags; request the first matching entry (a second match is a
        // 1-in-8000 tag collision and simply misses the cache).
        for i in 0..<n {
            let h = hashes[i]
            let blk = block(h & mask)
            let m = Self.matchLanes(blk, Self.tag(h))
            // Safe: i < n ≤ batchLimit, the scratch size.
            masks[i] = m
            if m != 0 {
                let lane = Self.lane(ofBit: m.trailingZeroBitCount)
                vrt_prefetch(entry(blk, lane))
                if prefetchCounters { vrt_prefetch_write(counters(blk, lane)) }
            }
        }
        // Stage 3: compare keys. Misses whose primary has spilled keys go to `pending`.
        var hits = 0
        var npending = 0
        for i in 0..<n {
            let h = hashes[i]
            let bucket = h & mask
            let blk = block(bucket)
            var m = masks[i]
            var slot = Self.miss
            while m != 0 {
                let lane = Self.lane(ofBit: m.trailingZeroBitCount)
                if Self.key(entry(blk, lane)) == keys[i] {
                    slot = bucket &<< 3 | UInt32(lane)
                    break
                }
                m &= m &- 1
            }
            slots[i] = slot
            if slot != Self.miss {
                hits &+= 1
            } else if Self.overflow(blk) != 0 {
                pending[npending] = UInt16(truncatingIfNeeded: i)
                npending &+= 1
            }
        }
        if npending == 0 { return hits }

        // The same three stages over the alternate buckets of the pending keys.
        for p in 0..<npending {
            vrt_prefetch(block(alternateBucket(hashes[Int(pending[p])])))
        }
        for p in 0..<npending {
            let h = hashes[Int(pending[p])]
            let blk = block(alternateBucket(h))
            let m = Self.matchLanes(blk, Self.tag(h))
            masks[p] = m
            if m != 0 {
                let lane = Self.lane(ofBit: m.trailingZeroBitCount)
                vrt_prefetch(entry(blk, lane))
                if prefetchCounters { vrt_prefetch_write(counters(blk, lane)) }
            }
        }
        for p in 0..<npending {
            let i = Int(pending[p])
            let bucket = alternateBucket(hashes[i])
            let blk = block(bucket)
            var m = masks[p]
            while m != 0 {
                let lane = Self.lane(ofBit: m.trailingZeroBitCount)
                if Self.key(entry(blk, lane)) == keys[i] {
                    slots[i] = bucket &<< 3 | UInt32(lane)
                    hits &+= 1
                    break
                }
                m &= m &- 1
            }
        }
        return hits
    }

    /// `touch` for every hit of a batch (`slots[i] != miss`), with per-packet byte counts.
    @inlinable
    public func touch(
        slots: UnsafePointer<UInt32>, bytes: UnsafePointer<UInt16>, count: Int, now: UInt32
    ) {
        for i in 0..<count where slots[i] != Self.miss {
            touch(slots[i], bytes: Int(bytes[i]), now: now)
        }
    }
}
