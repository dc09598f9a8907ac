// Removing entries: by slot (the pipeline's handle), by key, and every flow of a VRF
// (when the VRF is deleted; a route change only bumps the VRF's generation instead).

extension FlowTable {
    /// Clears an occupied lane and releases its count, its VRF's quota and, if it lived
    /// in its alternate bucket, its primary's overflow count. Counts no statistic.
    @inlinable
    func removeEntry(_ bucket: UInt32, _ lane: Int) {
        let blk = block(bucket)
        let e = entry(blk, lane)
        let home = primaryBucket(Self.storedHash(e))
        if bucket != home { Self.decrementOverflow(block(home)) }
        let vrf = Int(Self.key(e).vrf)
        Self.setTag(blk, lane, 0)
        Self.setFlags(blk, lane, 0)
        header.pointee.count &-= 1
        // Safe: only keys with vrf < vrfLimit are ever placed.
        vrfCounts[vrf] &-= 1
    }

    /// Removes the entry at `slot`; false if the slot is empty.
    @inlinable
    @discardableResult
    public func remove(_ slot: UInt32) -> Bool {
        let bucket = (slot &>> 3) & bucketMask
        let lane = Int(slot & 7)
        guard Self.tagAt(block(bucket), lane) != 0 else { return false }
        removeEntry(bucket, lane)
        header.pointee.stats.removed &+= 1
        return true
    }

    /// Removes `key`; false if absent.
    @inlinable
    @discardableResult
    public func remove(_ key: Key, hash: UInt32) -> Bool {
        let slot = find(key, hash: hash)
        return slot != Self.miss && remove(slot)
    }

    @inlinable
    @discardableResult
    public func remove(_ key: Key) -> Bool { remove(key, hash: hash(key)) }

    /// Removes every flow of `vrf` and returns how many. Walks the whole table (tag lines,
    /// plus the entry of each occupied slot): a control-plane operation, about 10 ms at
    /// 1M slots.
    @inlinable
    @discardableResult
    public func removeAll(vrf: UInt16) -> Int {
        guard Int(vrf) < vrfLimit, vrfCounts[Int(vrf)] > 0 else { return 0 }
        var removed = 0
        for bucket in 0...bucketMask {
            let blk = block(bucket)
            var occupied = Self.occupiedLanes(blk)
            while occupied != 0 {
                let lane = Self.lane(ofBit: occupied.trailingZeroBitCount)
                occupied &= occupied &- 1
                if Self.key(entry(blk, lane)).vrf == vrf {
                    removeEntry(bucket, lane)
                    removed += 1
                }
            }
            if vrfCounts[Int(vrf)] == 0 { break }
        }
        header.pointee.stats.removed &+= UInt64(removed)
        return removed
    }

    /// Empties the table (statistics are kept).
    public func removeAll() {
        let n = header.pointee.count
        blocks.initializeMemory(as: UInt8.self, repeating: 0, count: (Int(bucketMask) + 1) * Self.blockSize)
        vrfCounts.update(repeating: 0, count: vrfLimit)
        header.pointee.count = 0
        header.pointee.cursor = 0
        header.pointee.stats.removed &+= UInt64(n)
    }
}
