// Idle aging in the datapath, a little per frame: TF left aging to the agent (180 s
// default, a full scan every 45 s), so dead and dropped flows held their slots for minutes
// and a stuck agent froze them. Here the worker calls `expire` with a small `maxScan`
// between frames; a cursor walks the slots round-robin, so the cost per call is bounded
// and a full sweep takes slotCount / maxScan calls. Entries are read in address order
// (sequential lines, prefetcher-friendly); counters are not touched.

extension FlowTable {
    /// Examines up to `maxScan` slots from the aging cursor and removes entries idle for
    /// longer than their timeout: `closingTimeout` for entries flagged `.closing` or
    /// `.drop`, `idleTimeout` for the others (same ticks as `now`); pinned entries are
    /// left to their owner (`scanPinned`). Returns how many it removed. An entry moved by an insert during a sweep may be skipped until the next
    /// sweep.
    @inlinable
    @discardableResult
    public func expire(now: UInt32, idleTimeout: UInt32, closingTimeout: UInt32, maxScan: Int) -> Int {
        let total = slotCount
        var cursor = header.pointee.cursor < total ? header.pointee.cursor : 0
        var removed = 0
        let short = FlowFlags.shortLived.rawValue
        for _ in 0..<Swift.max(0, Swift.min(maxScan, total)) {
            let b = UInt32(truncatingIfNeeded: cursor &>> 1)
            let lane = cursor & 1
            let e = entry(b, lane)
            let m = Self.meta(e)
            if m & (FlowEntryMeta.occupied | FlowFlags.pinned.rawValue) == FlowEntryMeta.occupied {
                let age = now &- Self.lastSeen(e)
                if age > (m & short != 0 ? closingTimeout : idleTimeout) {
                    removeEntry(b, lane)
                    removed &+= 1
                }
            }
            cursor &+= 1
            if cursor == total { cursor = 0 }
        }
        header.pointee.cursor = cursor
        header.pointee.stats.expired &+= UInt64(removed)
        return removed
    }

    /// Calls `visit` with the slot of every pinned entry among up to `maxScan` slots from
    /// a cursor of its own (round-robin, like `expire`): the owner of pinned entries ages
    /// them with it. `visit` may remove entries (removing moves no other entry) but must
    /// not insert.
    @inlinable
    public func scanPinned(maxScan: Int, _ visit: (UInt32) -> Void) {
        let total = slotCount
        var cursor = header.pointee.pinnedCursor < total ? header.pointee.pinnedCursor : 0
        let want = FlowEntryMeta.occupied | FlowFlags.pinned.rawValue
        for _ in 0..<Swift.max(0, Swift.min(maxScan, total)) {
            let b = UInt32(truncatingIfNeeded: cursor &>> 1)
            if Self.meta(entry(b, cursor & 1)) & want == want { visit(UInt32(truncatingIfNeeded: cursor)) }
            cursor &+= 1
            if cursor == total { cursor = 0 }
        }
        header.pointee.pinnedCursor = cursor
    }
}
