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
}

/// The compiled nexthop the dataplane reads: one cache line.
@frozen
public struct Nexthop: Sendable {
    public var kind: NexthopKind
    public var flags: UInt8
    /// Output port (the pod port for encap, the fabric port for tunnels).
    public var port: UInt16
    /// The VRF of an encap nexthop's port (MPLS decapsulation puts the packet there).
    public var vrf: UInt16
    /// Largest inner IP packet that fits: the port MTU, or the fabric MTU less the tunnel
    /// overhead that counts against it (outer IPv4 + UDP + VXLAN + inner Ethernet = 50,
    /// outer IPv4 + UDP + MPLS = 32).
    public var innerMTU: UInt16
    /// Encap: the pod's MAC. VXLAN: the inner destination MAC.
    public var dstMAC: UInt64
    /// Encap and VXLAN inner source: the vRouter MAC.
    public var srcMAC: UInt64
    /// Tunnel: the MAC of the underlay next hop (outer destination MAC).
    public var underlayMAC: UInt64
    /// Tunnel: outer source (this node's underlay address) and destination.
    public var tunnelSource: UInt32
    public var tunnelDestination: UInt32
    /// Composite: members are components[componentStart ..< componentStart + componentCount].
    public var componentStart: UInt32
    public var componentCount: UInt32
    /// Tunnel: the fabric port's VLAN (0 = untagged) for the outer header.
    public var vlan: UInt16
    public var reserved: UInt16
    public var reserved2: UInt32

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
        reserved2: 0
    )
}
