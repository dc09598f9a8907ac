import CVRouterShims

// The pipeline's per-packet step on a hit, fused: the entry is located once, its action
// read (one load from the line the lookup just brought in), and lastSeen and the small
// counters updated in that same line. Calling nexthop(at:), label(at:), generation(at:)
// and touch separately located it four times.

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
    /// A hit: the entry's action, with lastSeen and one packet of `bytes` recorded, all in
    /// the entry's one line (which the batched lookup requested for writing).
    @inlinable @inline(__always)
    public func hit(_ slot: UInt32, bytes: Int, now: UInt32) -> FlowHit {
        let (b, lane) = locate(slot)
        let e = entry(b, lane)
        let action = Self.action(e)
        Self.setLastSeen(e, now)
        addPacket(e, b, lane, bytes: bytes)
        return FlowHit(
            nexthop: FlowAction.nexthop(action),
            label: FlowAction.label(action),
            generation: FlowAction.generation(action)
        )
    }
}

/// The packed action word of an entry (see FlowTable's layout).
@frozen
public enum FlowAction {
    @inlinable public static var nexthopBits: Int { 20 }
    @inlinable public static var labelBits: Int { 26 }
    @inlinable public static var generationBits: Int { 18 }
    /// Generations are kept modulo this (TableBuilder publishes them so).
    @inlinable public static var generationMask: UInt32 { 1 &<< 18 &- 1 }

    /// Label bits 0–23 (a VNI or an MPLS label) and FlowTranslation's flags (bits 30, 31)
    /// as 26 bits; other bits of the label are not stored.
    @inlinable @inline(__always)
    public static func pack(nexthop: UInt32, label: UInt32, generation: UInt32) -> UInt64 {
        let l = UInt64(label & 0xFF_FFFF) | UInt64(label &>> 30) &<< 24
        return UInt64(nexthop & 0xF_FFFF) | l &<< 20 | UInt64(generation & generationMask) &<< 46
    }

    @inlinable @inline(__always)
    public static func nexthop(_ a: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: a) & 0xF_FFFF }

    @inlinable @inline(__always)
    public static func label(_ a: UInt64) -> UInt32 {
        let l = UInt32(truncatingIfNeeded: a &>> 20)
        return l & 0xFF_FFFF | (l &>> 24 & 3) &<< 30
    }

    @inlinable @inline(__always)
    public static func generation(_ a: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: a &>> 46) }
}

/// The small counters of an entry: packets in the low bits, bytes above.
@frozen
public enum FlowSmallCounters {
    @inlinable public static var packetBits: UInt32 { 10 }
    @inlinable public static var packetMask: UInt32 { 0x3FF }
    @inlinable public static var byteMask: UInt32 { 0x3F_FFFF }
}
