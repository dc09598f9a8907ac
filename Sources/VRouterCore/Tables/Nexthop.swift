// Nexthops, after Tungsten Fabric's (include/vr_nexthop.h): what a route or an MPLS label
// resolves to. A tunnel nexthop is shared by every route toward one remote node; the label
// or VNI pushed toward it lives in the route (RouteTarget), not in the nexthop.

/// What the control plane says a nexthop is.
public enum NexthopConfig: Hashable, Sendable {
    /// Drop (counted as `discard`).
    case discard
    /// Addressed to the vRouter itself (its gateway addresses): echo requests are answered,
    /// anything else is counted as `receive_no_listener`.
    case receive
    /// A local port (a pod's interface): rewrite the Ethernet header toward `mac`.
    case encap(port: UInt16, mac: MACAddress)
    /// A remote node over the fabric port. `underlayMAC` is the MAC of the underlay next hop
    /// (the remote node or the gateway), `innerMAC` the inner destination MAC for VXLAN
    /// (the remote router's MAC: 00:00:5e:00:01:00 for a vRouter peer, the device MAC of
    /// a Linux VXLAN interface), ignored for MPLS over UDP.
    case tunnel(
        TunnelEncap,
        port: UInt16,
        destination: IPv4Address,
        underlayMAC: MACAddress,
        innerMAC: MACAddress = .vrouter
    )
    /// ECMP over members, each with the label/VNI to push toward it; the member is chosen
    /// by the flow hash, so a flow stays on one member.
    case composite([RouteTarget])
    /// Out of the fabric port with no encapsulation (IP-fabric forwarding, and where
    /// translated traffic leaves): an L2 rewrite toward `mac`, the underlay next hop
    /// `via` (the underlay gateway, a remote node, a host on the fabric).
    case underlay(port: UInt16, via: IPv4Address, mac: MACAddress)
    /// Route the packet again in VRF `vrf` (Contrail's VRF-translate nexthop): a network
    /// whose pods reach the fabric untranslated points its default route at the underlay
    /// VRF with this. The second lookup's result is what the flow caches.
    case vrfTranslate(vrf: UInt16)
    /// Fabric SNAT: the source becomes the underlay address of fabric port `fabric` and a
    /// port from this worker's range, and the packet is routed in that port's underlay
    /// VRF (its result must leave by the fabric, an `underlay` nexthop). Replies come
    /// back to that address and port and are translated back to the pod.
    case sourceNAT(fabric: UInt16)
}

public enum TunnelEncap: UInt8, Hashable, Sendable {
    case vxlan = 1
    case mplsOverUDP = 2
    public var name: String { self == .vxlan ? "vxlan" : "mpls-udp" }
}

/// A route's forwarding target: a nexthop and the label (MPLS) or VNI (VXLAN) to push
/// when the nexthop is a tunnel.
@frozen
public struct RouteTarget: Hashable, Sendable {
    public var nexthop: UInt32
    public var label: UInt32
    @inlinable public init(nexthop: UInt32, label: UInt32 = 0) {
        self.nexthop = nexthop
        self.label = label
    }
}

@frozen
public enum NexthopKind: UInt8, Sendable {
    case invalid = 0
    case discard
    case receive
    case encap
    case tunnelVXLAN
    case tunnelMPLSoUDP
    case composite
    /// Untunneled out of the fabric (L2 rewrite toward an underlay next hop).
    case underlay
    /// Look up again in `vrf`.
    case vrfTranslate
    /// Translate the source, then look up again in `vrf` (the underlay VRF).
    case sourceNAT
}

/// The compiled nexthop the dataplane reads: one cache line.
@frozen
public struct Nexthop: Sendable {
    public var kind: NexthopKind
    public var flags: UInt8
    /// Output port (the pod port for encap, the fabric port for tunnels and underlay).
    public var port: UInt16
    /// The VRF of an encap nexthop's port (MPLS decapsulation puts the packet there); the
    /// VRF a VRF-translate or SNAT nexthop looks up in.
    public var vrf: UInt16
    /// Largest inner IP packet that fits: the port MTU, or the fabric MTU less the tunnel
    /// overhead that counts against it (outer IPv4 + UDP + VXLAN + inner Ethernet = 50,
    /// outer IPv4 + UDP + MPLS = 32).
    public var innerMTU: UInt16
    /// Encap: the pod's MAC. VXLAN: the inner destination MAC.
    public var dstMAC: UInt64
    /// Encap and VXLAN inner source: the vRouter MAC. Underlay: the fabric port's MAC.
    public var srcMAC: UInt64
    /// Tunnel: the MAC of the underlay next hop (outer destination MAC). Underlay: the
    /// same, also in dstMAC.
    public var underlayMAC: UInt64
    /// Tunnel: outer source (this node's underlay address) and destination. Underlay and
    /// SNAT: the node's underlay address (what translated sources become) and, for
    /// underlay, the next hop's address.
    public var tunnelSource: UInt32
    public var tunnelDestination: UInt32
    /// Composite: members are components[componentStart ..< componentStart + componentCount].
    public var componentStart: UInt32
    public var componentCount: UInt32
    /// Tunnel: the fabric port's VLAN (0 = untagged) for the outer header.
    public var vlan: UInt16
    public var reserved: UInt16
    /// Encap: the pod port's IPv4 address, what a translated reply's destination becomes.
    public var address: UInt32

    /// flags: the VXLAN template carries the inner Ethernet header too.
    public static let innerEthernetInTemplate: UInt8 = 1
    /// flags: the underlay next hop's MAC is not known yet; packets are dropped, counted.
    public static let unresolved: UInt8 = 2

    public static let invalid = Nexthop(
        kind: .invalid,
        flags: 0,
        port: 0,
        vrf: 0,
        innerMTU: 0,
        dstMAC: 0,
        srcMAC: 0,
        underlayMAC: 0,
        tunnelSource: 0,
        tunnelDestination: 0,
        componentStart: 0,
        componentCount: 0,
        vlan: 0,
        reserved: 0,
        address: 0
    )
}
