// Removing entries: by slot (the pipeline's handle), by key, and every flow of a VRF
// (when the VRF is deleted; a route change only bumps the VRF's generation instead).

extension FlowTable {
    /// Clears an occupied lane (its wide counters too: an empty lane's are zero, so an
    /// insert need not write that line) and releases its count, its VRF's quota and, if it
    /// lived in its alternate bucket, its primary's overflow count (rehashing the key: no
    /// hash is stored). Counts no statistic.
    @inlinable
    func removeEntry(_ b: UInt32, _ lane: Int) {
        let e = entry(b, lane)
        let key = Key.load(e)
        let home = primaryBucket(hash(key))
        Self.setMeta(e, Self.meta(e) & Self.overflowBits)
        counters(b, lane).initializeMemory(as: UInt64.self, repeating: 0, count: 2)
        if b != home { Self.decrementOverflow(bucket(home)) }
        header.pointee.count &-= 1
        // Safe: only keys with vrf < vrfLimit are ever placed.
        vrfCounts[Int(key.vrf)] &-= 1
    }

    /// Removes the entry at `slot`; false if the slot is empty.
    @inlinable
    @discardableResult
    public func remove(_ slot: UInt32) -> Bool {
        let (b, lane) = locate(slot)
        guard Self.isOccupied(entry(b, lane)) else { return false }
        removeEntry(b, lane)
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

    /// Removes every flow of `vrf` and returns how many. Walks the entries (sequential
    /// reads, stopping once the VRF's count reaches 0): a control-plane operation, a few
    /// milliseconds at 1M slots.
    @inlinable
    @discardableResult
    public func removeAll(vrf: UInt16) -> Int {
        guard Int(vrf) < vrfLimit, vrfCounts[Int(vrf)] > 0 else { return 0 }
        var removed = 0
        var b: UInt32 = 0
        while b < bucketCount && vrfCounts[Int(vrf)] > 0 {
            for lane in 0..<Self.lanes {
                let e = entry(b, lane)
                if Self.isOccupied(e) && Key.load(e).vrf == vrf {
                    removeEntry(b, lane)
                    removed &+= 1
                }
            }
            b &+= 1
        }
        header.pointee.stats.removed &+= UInt64(removed)
        return removed
    }

    /// Empties the table (statistics are kept).
    public func removeAll() {
        let n = header.pointee.count
        blocks.initializeMemory(as: UInt8.self, repeating: 0, count: Self.bucketBytes(capacity: capacity))
        vrfCounts.update(repeating: 0, count: vrfLimit)
        header.pointee.count = 0
        header.pointee.cursor = 0
        header.pointee.stats.removed &+= UInt64(n)
    }
}
