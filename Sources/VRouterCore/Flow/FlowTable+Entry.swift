// Reading and updating one entry by slot: what the pipeline does per packet after a hit.
// A slot is what lookup/insert returned since the last insert/remove/expire. Any UInt32
// stays inside the table's memory (see `locate`), so a stale slot can corrupt another
// flow's counters but never memory.

extension FlowTable {
    /// Nexthop of the entry at `slot` (one load from the line a hit just read).
    @inlinable @inline(__always)
    public func nexthop(at slot: UInt32) -> UInt32 {
        let (b, lane) = locate(slot)
        return FlowAction.nexthop(Self.action(entry(b, lane)))
    }

    @inlinable @inline(__always)
    public func label(at slot: UInt32) -> UInt32 {
        let (b, lane) = locate(slot)
        return FlowAction.label(Self.action(entry(b, lane)))
    }

    @inlinable @inline(__always)
    public func generation(at slot: UInt32) -> UInt32 {
        let (b, lane) = locate(slot)
        return FlowAction.generation(Self.action(entry(b, lane)))
    }

    @inlinable @inline(__always)
    static func action(_ e: UnsafeRawPointer) -> UInt64 {
        e.load(fromByteOffset: actionOffset, as: UInt64.self)
    }

    @inlinable @inline(__always)
    public func flags(at slot: UInt32) -> FlowFlags {
        let (b, lane) = locate(slot)
        return FlowFlags(rawValue: Self.meta(entry(b, lane)) & FlowFlags.storable.rawValue)
    }

    /// Per-packet accounting on a hit: lastSeen and the small counters, both in the
    /// entry's line (see the layout: the wide counters line is written once per carry).
    @inlinable @inline(__always)
    public func touch(_ slot: UInt32, bytes: Int, now: UInt32) {
        let (b, lane) = locate(slot)
        let e = entry(b, lane)
        Self.setLastSeen(e, now)
        addPacket(e, b, lane, bytes: bytes)
    }

    /// Adds one packet of `bytes` (≤ 65535) to the entry's small counters, carrying them
    /// into the wide counters when either would overflow.
    @inlinable @inline(__always)
    func addPacket(_ e: UnsafeMutableRawPointer, _ b: UInt32, _ lane: Int, bytes: Int) {
        let small = e.load(fromByteOffset: Self.smallCountersOffset, as: UInt32.self)
        // Safe from overflow: the fields are below 2^10 and 2^22, a packet below 2^16.
        let packets = small & FlowSmallCounters.packetMask &+ 1
        let total = small &>> FlowSmallCounters.packetBits &+ UInt32(truncatingIfNeeded: bytes) & 0xFFFF
        if packets <= FlowSmallCounters.packetMask && total <= FlowSmallCounters.byteMask {
            e.storeBytes(
                of: packets | total &<< FlowSmallCounters.packetBits,
                toByteOffset: Self.smallCountersOffset,
                as: UInt32.self
            )
        } else {
            carry(e, b, lane, packets: packets, bytes: total)
        }
    }

    /// The small counters' overflow: their totals go to the wide counters line.
    @inlinable @inline(never)
    func carry(_ e: UnsafeMutableRawPointer, _ b: UInt32, _ lane: Int, packets: UInt32, bytes: UInt32) {
        let c = counters(b, lane)
        c.storeBytes(of: c.load(as: UInt64.self) &+ UInt64(packets), as: UInt64.self)
        c.storeBytes(of: c.load(fromByteOffset: 8, as: UInt64.self) &+ UInt64(bytes), toByteOffset: 8, as: UInt64.self)
        e.storeBytes(of: 0 as UInt32, toByteOffset: Self.smallCountersOffset, as: UInt32.self)
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
        e.storeBytes(
            of: FlowAction.pack(nexthop: value.nexthop, label: value.label, generation: value.generation),
            toByteOffset: actionOffset,
            as: UInt64.self
        )
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
        let action = Self.action(e)
        let small = e.load(fromByteOffset: Self.smallCountersOffset, as: UInt32.self)
        return FlowValue(
            nexthop: FlowAction.nexthop(action),
            label: FlowAction.label(action),
            generation: FlowAction.generation(action),
            flags: FlowFlags(rawValue: Self.meta(e) & FlowFlags.storable.rawValue),
            packets: c.load(as: UInt64.self) + UInt64(small & FlowSmallCounters.packetMask),
            bytes: c.load(fromByteOffset: 8, as: UInt64.self) + UInt64(small >> FlowSmallCounters.packetBits),
            lastSeen: Self.lastSeen(e)
        )
    }
}
