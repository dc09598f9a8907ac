// Reading and updating one entry by slot: what the pipeline does per packet after a hit.
// A slot is what lookup/insert returned since the last insert/remove/expire. Any UInt32
// stays inside the table's memory (see `locate`), so a stale slot can corrupt another
// flow's counters but never memory.

extension FlowTable {
    /// Nexthop of the entry at `slot` (one load from the line a hit just read).
    @inlinable @inline(__always)
    public func nexthop(at slot: UInt32) -> UInt32 {
        let (b, lane) = locate(slot)
        return entry(b, lane).load(fromByteOffset: Self.actionOffset, as: UInt32.self)
    }

    @inlinable @inline(__always)
    public func label(at slot: UInt32) -> UInt32 {
        let (b, lane) = locate(slot)
        return entry(b, lane).load(fromByteOffset: Self.actionOffset &+ 4, as: UInt32.self)
    }

    @inlinable @inline(__always)
    public func generation(at slot: UInt32) -> UInt32 {
        let (b, lane) = locate(slot)
        return entry(b, lane).load(fromByteOffset: Self.actionOffset &+ 8, as: UInt32.self)
    }

    @inlinable @inline(__always)
    public func flags(at slot: UInt32) -> FlowFlags {
        let (b, lane) = locate(slot)
        return FlowFlags(rawValue: Self.meta(entry(b, lane)) & FlowFlags.storable.rawValue)
    }

    /// Per-packet accounting on a hit: lastSeen in the entry line (already in L1 from
    /// the lookup), packets and bytes in the counters line (prefetched for writing by
    /// the batched lookup). Three stores and two adds.
    @inlinable @inline(__always)
    public func touch(_ slot: UInt32, bytes: Int, now: UInt32) {
        let (b, lane) = locate(slot)
        Self.setLastSeen(entry(b, lane), now)
        let c = counters(b, lane)
        c.storeBytes(of: c.load(as: UInt64.self) &+ 1, as: UInt64.self)
        c.storeBytes(
            of: c.load(fromByteOffset: 8, as: UInt64.self) &+ UInt64(truncatingIfNeeded: bytes),
            toByteOffset: 8,
            as: UInt64.self
        )
    }

    /// Sets flag bits (for example `.closing` when the pipeline sees a TCP FIN or RST).
    @inlinable @inline(__always)
    public func addFlags(_ slot: UInt32, _ flags: FlowFlags) {
        let (b, lane) = locate(slot)
        let e = entry(b, lane)
        let m = Self.meta(e)
        guard m & FlowEntryMeta.occupied != 0 else { return }
        Self.setMeta(e, m | flags.rawValue & FlowFlags.storable.rawValue)
    }

    /// Replaces the action (nexthop, label, generation, flags) of an existing entry, as
    /// after re-resolving an entry whose generation is stale. Counters and lastSeen stay.
    @inlinable
    public func update(_ slot: UInt32, _ value: FlowValue) {
        let (b, lane) = locate(slot)
        let e = entry(b, lane)
        let m = Self.meta(e)
        guard m & FlowEntryMeta.occupied != 0 else { return }
        Self.storeAction(e, value)
        Self.setMeta(e, m & ~FlowFlags.storable.rawValue | value.flags.rawValue & FlowFlags.storable.rawValue)
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
        let (b, lane) = locate(slot)
        return Self.isOccupied(entry(b, lane))
    }

    /// Key at `slot`, or nil for an empty slot.
    public func key(at slot: UInt32) -> Key? {
        let (b, lane) = locate(slot)
        let e = entry(b, lane)
        return Self.isOccupied(e) ? Key.load(e) : nil
    }

    /// Everything stored for `slot`, or nil for an empty slot.
    public func value(at slot: UInt32) -> FlowValue? {
        let (b, lane) = locate(slot)
        let e = entry(b, lane)
        guard Self.isOccupied(e) else { return nil }
        let c = counters(b, lane)
        return FlowValue(
            nexthop: e.load(fromByteOffset: Self.actionOffset, as: UInt32.self),
            label: e.load(fromByteOffset: Self.actionOffset + 4, as: UInt32.self),
            generation: e.load(fromByteOffset: Self.actionOffset + 8, as: UInt32.self),
            flags: FlowFlags(rawValue: Self.meta(e) & FlowFlags.storable.rawValue),
            packets: c.load(as: UInt64.self),
            bytes: c.load(fromByteOffset: 8, as: UInt64.self),
            lastSeen: Self.lastSeen(e)
        )
    }
}
