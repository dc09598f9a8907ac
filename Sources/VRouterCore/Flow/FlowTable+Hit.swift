import CVRouterShims

// The pipeline's per-packet step on a hit, fused: the entry is located once, its action
// read (three loads from the line the lookup just brought in) and lastSeen updated in that
// line; packets and bytes are added later in the frame (`count`). Calling nexthop(at:),
// label(at:), generation(at:) and touch separately located it four times.

@frozen
public struct FlowHit: Sendable {
    public var nexthop: UInt32
    public var label: UInt32
    public var generation: UInt32
    @inlinable public init(nexthop: UInt32, label: UInt32, generation: UInt32) {
        self.nexthop = nexthop
        self.label = label
        self.generation = generation
    }
}

extension FlowTable {
    /// A hit's action and last-seen update, with the counters line only prefetched for
    /// writing: the pipeline adds packets and bytes later in the frame (`count`), by
    /// which time the line has arrived. (A touch right after the lookup stalled on that
    /// line at 1M flows: 40% of the frame's time.)
    @inlinable @inline(__always)
    public func hitDeferred(_ slot: UInt32, now: UInt32) -> FlowHit {
        let (b, lane) = locate(slot)
        let e = entry(b, lane)
        let action = e + Self.actionOffset
        let h = FlowHit(
            nexthop: action.load(as: UInt32.self),
            label: action.load(fromByteOffset: 4, as: UInt32.self),
            generation: action.load(fromByteOffset: 8, as: UInt32.self)
        )
        Self.setLastSeen(e, now)
        vrt_prefetch_write(counters(b, lane))
        return h
    }

    /// The deferred half of a hit: packets and bytes.
    @inlinable @inline(__always)
    public func count(_ slot: UInt32, bytes: Int) {
        let (b, lane) = locate(slot)
        let c = counters(b, lane)
        c.storeBytes(of: c.load(as: UInt64.self) &+ 1, as: UInt64.self)
        c.storeBytes(
            of: c.load(fromByteOffset: 8, as: UInt64.self) &+ UInt64(truncatingIfNeeded: bytes),
            toByteOffset: 8,
            as: UInt64.self
        )
    }
}
