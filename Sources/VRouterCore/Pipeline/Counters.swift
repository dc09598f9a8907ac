// Per-worker counters: plain UInt64 stores, no atomics (each worker writes only its own).
// The control plane reads them racily and folds them across workers at scrape time;
// a torn read of a 64-bit counter cannot happen on x86-64/arm64 aligned stores.

/// The pipeline's nodes, for per-node cost accounting (VPP's `show runtime`).
public enum PipelineNode: Int, CaseIterable, Sendable {
    case ethernetInput = 0
    case flowLookup
    case routeLookup
    case rewrite
    case arp
    case icmp
    public var name: String {
        switch self {
        case .ethernetInput: "ethernet-input"
        case .flowLookup: "flow-lookup"
        case .routeLookup: "route-lookup"
        case .rewrite: "rewrite"
        case .arp: "arp-nd"
        case .icmp: "icmp-error"
        }
    }
}

/// Things that happened that are not drops.
public enum PipelineEvent: Int, CaseIterable, Sendable {
    case vxlanDecap = 0
    case mplsDecap
    case vxlanEncap
    case mplsEncap
    case localDelivery
    case flowHit
    case flowMiss
    case flowStale
    case flowInstalled
    case flowInstallFailed
    case arpReply
    case ndAdvertisement
    case icmpErrorSent
    case icmpErrorSuppressed
    case echoReply
    case fragmentsMade
    /// Packets that were split into fragments (each made `fragments_made` count of them).
    case packetsFragmented
    case mssClamped
    case punted
    /// Packets sent untunneled out of the fabric (IP-fabric forwarding, translated flows).
    case fabricForward
    /// Translated flows set up (a forward/reverse pair each).
    case natCreated
    /// Translated flows removed after aging out.
    case natExpired
    /// ICMP errors about translated flows, translated.
    case natICMPError
    /// Superframes sent whole to a tap that takes them.
    case superframesWhole
    /// Superframes cut into plain segments in software (a port without offloads, or
    /// segments too big for the path).
    case superframesSegmented
    /// Superframes segmented and encapsulated into a tunnel in one pass (one buffer per
    /// datagram, or UDP GSO trains).
    case superframesEncapsulated
    /// Segments made from superframes (plain, or encapsulated into a tunnel).
    case gsoSegments
    /// UDP GSO trains built for the fabric.
    case gsoTrains
    /// Segments coalesced into a superframe toward a tap (GRO).
    case groMerged
    /// Packets the fused fast path forwarded (parse to rewrite without the general nodes,
    /// on a flow hit or right after their new flow's install; every other packet took them).
    case fastPath
    public var name: String {
        switch self {
        case .vxlanDecap: "vxlan_decap"
        case .mplsDecap: "mpls_udp_decap"
        case .vxlanEncap: "vxlan_encap"
        case .mplsEncap: "mpls_udp_encap"
        case .localDelivery: "local_delivery"
        case .flowHit: "flow_hit"
        case .flowMiss: "flow_miss"
        case .flowStale: "flow_stale"
        case .flowInstalled: "flow_installed"
        case .flowInstallFailed: "flow_install_failed"
        case .arpReply: "arp_reply"
        case .ndAdvertisement: "nd_advertisement"
        case .icmpErrorSent: "icmp_error_sent"
        case .icmpErrorSuppressed: "icmp_error_rate_limited"
        case .echoReply: "echo_reply"
        case .fragmentsMade: "fragments_made"
        case .packetsFragmented: "packets_fragmented"
        case .mssClamped: "mss_clamped"
        case .punted: "punted"
        case .fabricForward: "fabric_forward"
        case .natCreated: "nat_created"
        case .natExpired: "nat_expired"
        case .natICMPError: "nat_icmp_error"
        case .superframesWhole: "superframes_whole"
        case .superframesSegmented: "superframes_segmented"
        case .superframesEncapsulated: "superframes_encapsulated"
        case .gsoSegments: "gso_segments"
        case .gsoTrains: "gso_trains"
        case .groMerged: "gro_merged"
        case .fastPath: "fast_path"
        }
    }
}

@frozen
public struct PortCounters: Sendable {
    public var rxPackets: UInt64 = 0
    public var rxBytes: UInt64 = 0
    public var txPackets: UInt64 = 0
    public var txBytes: UInt64 = 0
    /// Packets received on this port that were dropped (any reason).
    public var drops: UInt64 = 0
    public init() {}
}

@frozen
public struct NodeCounters: Sendable {
    public var frames: UInt64 = 0
    public var packets: UInt64 = 0
    public var nanoseconds: UInt64 = 0
    public init() {}
}

/// One worker's counters, as raw storage so the hot path pays one add per event.
@frozen
public struct Counters: @unchecked Sendable {  // Safe: written by one worker; others only read.
    public static let maxPorts = 4096

    public let drops: UnsafeMutablePointer<UInt64>
    public let events: UnsafeMutablePointer<UInt64>
    public let ports: UnsafeMutablePointer<PortCounters>
    public let nodes: UnsafeMutablePointer<NodeCounters>

    public static func allocate() -> Counters {
        let d = UnsafeMutablePointer<UInt64>.allocate(capacity: DropReason.count)
        d.initialize(repeating: 0, count: DropReason.count)
        let e = UnsafeMutablePointer<UInt64>.allocate(capacity: PipelineEvent.allCases.count)
        e.initialize(repeating: 0, count: PipelineEvent.allCases.count)
        let p = UnsafeMutablePointer<PortCounters>.allocate(capacity: maxPorts)
        p.initialize(repeating: PortCounters(), count: maxPorts)
        let n = UnsafeMutablePointer<NodeCounters>.allocate(capacity: PipelineNode.allCases.count)
        n.initialize(repeating: NodeCounters(), count: PipelineNode.allCases.count)
        return Counters(drops: d, events: e, ports: p, nodes: n)
    }

    public func deallocate() {
        drops.deallocate()
        events.deallocate()
        ports.deallocate()
        nodes.deallocate()
    }

    public func reset() {
        drops.update(repeating: 0, count: DropReason.count)
        events.update(repeating: 0, count: PipelineEvent.allCases.count)
        ports.update(repeating: PortCounters(), count: Self.maxPorts)
        nodes.update(repeating: NodeCounters(), count: PipelineNode.allCases.count)
    }

    @inlinable @inline(__always)
    public func count(_ e: PipelineEvent, _ n: UInt64 = 1) { events[e.rawValue] &+= n }

    @inlinable @inline(__always)
    public func drop(_ r: DropReason, port: UInt16) {
        drops[Int(r.rawValue)] &+= 1
        // Safe: rx ports are validated against the tables, which never exceed maxPorts.
        if Int(port) < Self.maxPorts { ports[Int(port)].drops &+= 1 }
    }

    public func dropCount(_ r: DropReason) -> UInt64 { drops[Int(r.rawValue)] }
    public func eventCount(_ e: PipelineEvent) -> UInt64 { events[e.rawValue] }
    public var totalDrops: UInt64 { (0..<DropReason.count).reduce(0) { $0 &+ drops[$1] } }
}
