// Idle aging in the datapath, a little per frame: TF left aging to the agent (180 s
// default, a full scan every 45 s), so dead and dropped flows held their slots for minutes
// and a stuck agent froze them. Here the worker calls `expire` with a small `maxScan`
// between frames; a cursor walks the slots round-robin, so the cost per call is bounded
// and a full sweep takes slotCount / maxScan calls. The decision reads only the tag
// line (tag, lastSeen, flags); the entry is read only for entries being removed.

extension FlowTable {
    /// Examines up to `maxScan` slots from the aging cursor and removes entries idle for
    /// longer than their timeout: `closingTimeout` for entries flagged `.closing` or
    /// `.drop`, `idleTimeout` for the others (same ticks as `now`). Returns how many it
    /// removed. An entry moved by an insert during a sweep may be skipped until the next
    /// sweep.
    @inlinable
    @discardableResult
    public func expire(now: UInt32, idleTimeout: UInt32, closingTimeout: UInt32, maxScan: Int) -> Int {
        let total = slotCount
        var cursor = header.pointee.cursor & (total &- 1)
        var removed = 0
        let short = FlowFlags.shortLived.rawValue
        for _ in 0..<Swift.max(0, Swift.min(maxScan, total)) {
            let bucket = UInt32(truncatingIfNeeded: cursor &>> 3)
            let lane = cursor & 7
            let blk = block(bucket)
            if Self.tagAt(blk, lane) != 0 {
                let age = now &- Self.lastSeen(blk, lane)
                let timeout = Self.flagsAt(blk, lane) & short != 0 ? closingTimeout : idleTimeout
                if age > timeout {
                    removeEntry(bucket, lane)
                    removed &+= 1
                }
            }
            cursor = (cursor &+ 1) & (total &- 1)
        }
        header.pointee.cursor = cursor
        header.pointee.stats.expired &+= UInt64(removed)
        return removed
    }
}
