// Every packet the dataplane does not transmit is counted under exactly one reason,
// the way Tungsten Fabric's dropstats does (include/vr_pkt_droplog.h). Counters are
// plain per-worker UInt64s; the control plane folds them across workers when asked.

@frozen
public enum DropReason: UInt8, CaseIterable, Sendable {
    /// Shorter than its headers say (Ethernet, VLAN, IP, L4, tunnel headers).
    case truncated = 0
    /// Header fields that cannot be right: IP version, IHL < 5, total length < header,
    /// bad extension-header chain, VXLAN without the I flag.
    case invalidPacket
    /// IPv4 header checksum does not verify.
    case badChecksum
    /// An EtherType or IP protocol this node does not forward (neither IPv4, IPv6 nor ARP).
    case unsupportedProtocol
    /// The VRF has no route to the destination (an ICMP unreachable was sent when allowed).
    case noRoute
    /// The route resolved to a discard nexthop.
    case discard
    /// TTL or hop limit reached zero (an ICMP time-exceeded was sent when allowed).
    case ttlExpired
    /// MPLS label not in the incoming label map.
    case invalidLabel
    /// VXLAN VNI not in the VNI table.
    case invalidVNI
    /// A pod port sent a packet whose source address is not the port's address.
    case spoofedSource
    /// A new flow could not be installed and the port drops new flows when the table is full.
    case flowTableFull
    /// Too big for the egress MTU with DF set / IPv6 (an ICMP frag-needed or packet-too-big was sent).
    case mtuExceeded
    /// ARP that is not an Ethernet/IPv4 request or reply, or for nobody we answer for.
    case invalidARP
    /// Received on a port the tables do not know, or a port that is down.
    case invalidInterface
    /// 802.1Q tag that the receiving port is not configured for.
    case vlanMismatch
    /// On the fabric: addressed to us but neither a tunnel packet, ARP, nor ICMP to us.
    case notTunnel
    /// The nexthop is invalid (a deleted port, an empty composite).
    case invalidNexthop
    /// Multicast or broadcast IP traffic, which this overlay does not carry.
    case multicast
    /// Neighbour discovery or ICMPv6 that the node does not answer (router solicitations…).
    case unhandledICMP
    /// The packet pool was empty when a fragment or ICMP error needed a buffer.
    case noMemory
    /// The output frame was full (a burst of fragments larger than the frame budget).
    case txQueueFull
    /// Fragmentation was needed and the packet cannot be fragmented (IPv4 options
    /// with a bad layout, or the pieces would not fit the buffers).
    case fragmentFailed
    /// Addressed to the node itself (receive nexthop) but no one takes it.
    case receiveNoListener
    /// The packet came back to the port it came from through a tunnel (a loop).
    case loop
    /// Outer IPv4 of a tunnel packet not addressed to this node, or a fragmented outer packet.
    case badTunnelOuter
    /// A host announcing or probing its own address (gratuitous ARP, ARP probe, IPv6 DAD,
    /// unsolicited neighbour advertisement): consumed, never answered.
    case selfAnnouncement
    /// The tunnel's underlay next hop has no resolved MAC yet (ARP pending or failing).
    case unresolvedNeighbour
    /// Fabric SNAT found no free port in this worker's share of the node's range (or the
    /// node has no range).
    case natPortsExhausted
    /// To the node's underlay address, untunneled, and no translated flow matches it: a
    /// reply after its flow aged out, an ICMP error about no translated flow, or someone
    /// on the fabric trying to open a connection.
    case natNoMapping
    /// Fabric SNAT cannot translate it: IPv6, a fragment, a protocol other than TCP, UDP
    /// and ICMP echo, port or identifier 0, or a source other than the pod port's address.
    case natUnsupported
    /// A tap's virtio-net header that does not describe the packet it came with (a GSO
    /// kind for another protocol, a partial checksum outside the packet).
    case offloadInvalid

    /// Name shown by `dropstats` and used as a metric label.
    public var name: String {
        switch self {
        case .truncated: "truncated"
        case .invalidPacket: "invalid_packet"
        case .badChecksum: "checksum_error"
        case .unsupportedProtocol: "unsupported_protocol"
        case .noRoute: "no_route"
        case .discard: "discard"
        case .ttlExpired: "ttl_expired"
        case .invalidLabel: "invalid_label"
        case .invalidVNI: "invalid_vni"
        case .spoofedSource: "spoofed_source"
        case .flowTableFull: "flow_table_full"
        case .mtuExceeded: "mtu_exceeded"
        case .invalidARP: "invalid_arp"
        case .invalidInterface: "invalid_interface"
        case .vlanMismatch: "vlan_mismatch"
        case .notTunnel: "not_tunnel"
        case .invalidNexthop: "invalid_nexthop"
        case .multicast: "multicast"
        case .unhandledICMP: "unhandled_icmp"
        case .noMemory: "no_memory"
        case .txQueueFull: "tx_queue_full"
        case .fragmentFailed: "fragment_failed"
        case .receiveNoListener: "receive_no_listener"
        case .loop: "loop"
        case .badTunnelOuter: "bad_tunnel_outer"
        case .selfAnnouncement: "self_announcement"
        case .unresolvedNeighbour: "unresolved_neighbour"
        case .natPortsExhausted: "nat_ports_exhausted"
        case .natNoMapping: "nat_no_mapping"
        case .natUnsupported: "nat_unsupported"
        case .offloadInvalid: "offload_invalid"
        }
    }

    public static let count = DropReason.allCases.count
}
