// Ports ("vifs" in Tungsten Fabric): where packets come from and go to. The dataplane
// knows a port by a dense UInt16 index; the control plane maps names and devices to it.

public enum PortKind: UInt8, Sendable {
    case none = 0
    /// A pod's interface (a tap). Packets from it are routed in its VRF.
    case pod
    /// The node's underlay port: tunnel packets in and out, ARP for the underlay address;
    /// with an underlay VRF also untunneled traffic for local pods (IP-fabric forwarding)
    /// and replies to translated flows.
    case fabric
}

/// What the control plane says a port is.
public struct PortConfig: Hashable, Sendable {
    public var kind: PortKind
    public var name: String
    /// VRF of a pod port (ignored for the fabric).
    public var vrf: UInt16
    /// The port's own MAC: the pod's MAC for a pod port, the node's MAC on the fabric.
    public var mac: MACAddress
    public var mtu: Int
    /// Pod: its addresses (source addresses it may use). Fabric: the node's underlay address.
    public var ipv4: IPv4Address?
    public var ipv6: IPv6Address?
    /// 802.1Q VLAN the port's frames carry (nil: untagged).
    public var vlan: UInt16?
    /// Drop packets whose source address is not the port's (on by default for pods).
    public var antiSpoofing: Bool
    /// Administrative state: a down port neither receives nor transmits.
    public var up: Bool
    /// Fabric: the VRF that routes the underlay itself (the IP fabric). With it, IPv4
    /// arriving untunneled is routed there (delivered only to local pods; to the underlay
    /// address only as a reply of a translated flow), ARP is answered for the local pods
    /// it routes to, and SNAT nexthops route translated packets there. Nil: the fabric
    /// carries tunnels only.
    public var underlayVRF: UInt16?
    /// The port takes superframes and partial checksums: a pod's tap opened with a
    /// virtio-net header and TSO/USO, a fabric that sends UDP GSO trains.
    public var offloads: Bool

    public init(
        kind: PortKind,
        name: String,
        vrf: UInt16 = 0,
        mac: MACAddress,
        mtu: Int = 1500,
        ipv4: IPv4Address? = nil,
        ipv6: IPv6Address? = nil,
        vlan: UInt16? = nil,
        antiSpoofing: Bool = true,
        up: Bool = true,
        underlayVRF: UInt16? = nil,
        offloads: Bool = false
    ) {
        self.kind = kind
        self.name = name
        self.vrf = vrf
        self.mac = mac
        self.mtu = mtu
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.vlan = vlan
        self.antiSpoofing = antiSpoofing
        self.up = up
        self.underlayVRF = underlayVRF
        self.offloads = offloads
    }
}

/// The compiled port the dataplane reads.
@frozen
public struct PortEntry: Sendable {
    public var kind: PortKind
    public var flags: PortFlags
    /// Pod: its VRF. Fabric: the underlay VRF (when `flags` has `underlayVRF`).
    public var vrf: UInt16
    public var mtu: UInt16
    /// VLAN id, 0 when untagged.
    public var vlan: UInt16
    public var mac: UInt64
    public var ipv4: UInt32
    public var ipv6: UInt128

    public static let absent = PortEntry(kind: .none, flags: [], vrf: 0, mtu: 0, vlan: 0, mac: 0, ipv4: 0, ipv6: 0)
}

@frozen
public struct PortFlags: OptionSet, Sendable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let up = PortFlags(rawValue: 1)
    public static let antiSpoofing = PortFlags(rawValue: 2)
    public static let hasIPv4 = PortFlags(rawValue: 4)
    public static let hasIPv6 = PortFlags(rawValue: 8)
    /// Fabric: untunneled IPv4 is routed in the underlay VRF (`vrf`).
    public static let underlayVRF = PortFlags(rawValue: 16)
    /// The port takes superframes and partial checksums (a tap with a virtio-net header
    /// and TSO, a fabric socket that sends UDP GSO trains): segmentation is left to it.
    public static let offloads = PortFlags(rawValue: 32)
}
