// What a flow-cache hit gives the pipeline: the resolved forwarding action, so the packet
// skips the route lookup, plus the flow's counters for `flow list`.

/// Per-flow flag bits. Four bits, stored in the entry's metadata byte beside the key.
@frozen
public struct FlowFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// TCP FIN or RST seen (the pipeline sets it): the entry ages out on the short
    /// closing timeout instead of the idle timeout.
    @inlinable public static var closing: FlowFlags { FlowFlags(rawValue: 1 << 0) }
    /// The cached action is a drop (no route, policy deny). Also ages on the short
    /// timeout, so a dropped flow does not hold its slot for minutes (TF held it 180 s).
    @inlinable public static var drop: FlowFlags { FlowFlags(rawValue: 1 << 1) }
    /// The table never evicts or expires the entry: its owner removes it. The pipeline
    /// pins both entries of a translated (SNAT) flow pair, which must live and die
    /// together and whose port is reused only once both are gone.
    @inlinable public static var pinned: FlowFlags { FlowFlags(rawValue: 1 << 2) }
    /// Bit 3 is free for the pipeline (mirror, ...); the table only stores it. Bits
    /// 4...7 do not exist (the table drops them).
    @inlinable public static var user1: FlowFlags { FlowFlags(rawValue: 1 << 3) }

    /// Flags that select the short timeout.
    @inlinable public static var shortLived: FlowFlags { FlowFlags(rawValue: 0x03) }  // closing, drop
    // Computed (not `static let`): a global would cost a once-initialization check per
    // use in the hot path.
    /// Every bit the table stores.
    @inlinable public static var storable: FlowFlags { FlowFlags(rawValue: 0x0F) }
}

/// The cached result of resolving a flow, and its counters.
///
/// `insert` stores every field (counters start from the given values, normally 0, and
/// `lastSeen` from its `now`); `update` replaces only the action (nexthop, label,
/// generation, flags) and keeps the counters; `touch` advances the counters.
@frozen
public struct FlowValue: Hashable, Sendable {
    /// Nexthop index the route resolved to.
    public var nexthop: UInt32
    /// MPLS label or VXLAN VNI carried by the route (0 when the nexthop has none).
    public var label: UInt32
    /// The VRF's table generation when the action was resolved. The pipeline treats an
    /// entry whose generation differs from the VRF's current one as a miss and calls
    /// `update` after re-resolving: bumping a VRF's generation invalidates all its
    /// flows at once without walking the table.
    public var generation: UInt32
    public var flags: FlowFlags
    /// Packets and bytes since the flow was installed. 64-bit: at 100 Gb/s a flow needs
    /// 46 years to wrap the byte counter.
    public var packets: UInt64
    public var bytes: UInt64
    /// Caller's clock (any unit, typically milliseconds) at the last packet. Ages are
    /// computed as `now &- lastSeen`, so the clock may wrap; an entry must be aged
    /// (expire or eviction) within 2^31 ticks, which any sane idle timeout guarantees.
    public var lastSeen: UInt32

    @inlinable
    public init(
        nexthop: UInt32,
        label: UInt32 = 0,
        generation: UInt32 = 0,
        flags: FlowFlags = [],
        packets: UInt64 = 0,
        bytes: UInt64 = 0,
        lastSeen: UInt32 = 0
    ) {
        self.nexthop = nexthop
        self.label = label
        self.generation = generation
        self.flags = flags
        self.packets = packets
        self.bytes = bytes
        self.lastSeen = lastSeen
    }
}
