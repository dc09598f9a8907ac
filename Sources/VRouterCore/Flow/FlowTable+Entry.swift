// Reading and updating one entry by slot: what the pipeline does per packet after a hit.
// A slot is what lookup/insert returned since the last insert/remove/expire. Any UInt32
// stays inside the table's memory (the bucket index is masked), so a stale slot can
// corrupt another flow's counters but never memory.

extension FlowTable {
    /// Nexthop of the entry at `slot` (one load from the entry line a hit just read).
    @inlinable @inline(__always)
    public func nexthop(at slot: UInt32) -> UInt32 {
        let (blk, lane) = locate(slot)
        return entry(blk, lane).load(fromByteOffset: Self.actionOffset, as: UInt32.self)
    }

    @inlinable @inline(__always)
    public func label(at slot: UInt32) -> UInt32 {
        let (blk, lane) = locate(slot)
        return entry(blk, lane).load(fromByteOffset: Self.actionOffset &+ 4, as: UInt32.self)
    }

    @inlinable @inline(__always)
    public func generation(at slot: UInt32) -> UInt32 {
        let (blk, lane) = locate(slot)
        return entry(blk, lane).load(fromByteOffset: Self.actionOffset &+ 8, as: UInt32.self)
    }

    @inlinable @inline(__always)
    public func flags(at slot: UInt32) -> FlowFlags {
        let (blk, lane) = locate(slot)
        return FlowFlags(rawValue: Self.flagsAt(blk, lane))
    }

    /// Per-packet accounting on a hit: lastSeen in the tag line, packets and bytes in
    /// the counters line. Three stores and an add; the batched lookup has already
    /// prefetched the counters line for writing.
    @inlinable @inline(__always)
    public func touch(_ slot: UInt32, bytes: Int, now: UInt32) {
        let (blk, lane) = locate(slot)
        Self.setLastSeen(blk, lane, now)
        let c = counters(blk, lane)
        c.storeBytes(of: c.load(as: UInt64.self) &+ 1, as: UInt64.self)
        c.storeBytes(
            of: c.load(fromByteOffset: 8, as: UInt64.self) &+ UInt64(truncatingIfNeeded: bytes),
            toByteOffset: 8, as: UInt64.self)
    }

    /// Sets flag bits (for example `.closing` when the pipeline sees a TCP FIN or RST).
    @inlinable @inline(__always)
    public func addFlags(_ slot: UInt32, _ flags: FlowFlags) {
        let (blk, lane) = locate(slot)
        Self.setFlags(blk, lane, Self.flagsAt(blk, lane) | flags.rawValue)
    }

    /// Replaces the action (nexthop, label, generation, flags) of an existing entry, as
    /// after re-resolving an entry whose generation is stale. Counters and lastSeen stay.
    @inlinable
    public func update(_ slot: UInt32, _ value: FlowValue) {
        let (blk, lane) = locate(slot)
        guard Self.tagAt(blk, lane) != 0 else { return }
        Self.storeAction(entry(blk, lane), value)
        Self.setFlags(blk, lane, value.flags.rawValue)
        header.pointee.stats.updates &+= 1
    }

    @inlinable @inline(__always)
    static func storeAction(_ e: UnsafeMutableRawPointer, _ value: FlowValue) {
        e.storeBytes(of: value.nexthop, toByteOffset: actionOffset, as: UInt32.self)
        e.storeBytes(of: value.label, toByteOffset: actionOffset &+ 4, as: UInt32.self)
        e.storeBytes(of: value.generation, toByteOffset: actionOffset &+ 8, as: UInt32.self)
    }

    /// Whether `slot` holds an entry.
    @inlinable
    public func isOccupied(_ slot: UInt32) -> Bool {
        let (blk, lane) = locate(slot)
        return Self.tagAt(blk, lane) != 0
    }

    /// Key at `slot`, or nil for an empty slot.
    public func key(at slot: UInt32) -> Key? {
        let (blk, lane) = locate(slot)
        guard Self.tagAt(blk, lane) != 0 else { return nil }
        return Self.key(entry(blk, lane))
    }

    /// Everything stored for `slot`, or nil for an empty slot.
    public func value(at slot: UInt32) -> FlowValue? {
        let (blk, lane) = locate(slot)
        guard Self.tagAt(blk, lane) != 0 else { return nil }
        let e = entry(blk, lane)
        let c = counters(blk, lane)
        return FlowValue(
            nexthop: e.load(fromByteOffset: Self.actionOffset, as: UInt32.self),
            label: e.load(fromByteOffset: Self.actionOffset + 4, as: UInt32.self),
            generation: e.load(fromByteOffset: Self.actionOffset + 8, as: UInt32.self),
            flags: FlowFlags(rawValue: Self.flagsAt(blk, lane)),
            packets: c.load(as: UInt64.self),
            bytes: c.load(fromByteOffset: 8, as: UInt64.self),
            lastSeen: Self.lastSeen(blk, lane))
    }
}
