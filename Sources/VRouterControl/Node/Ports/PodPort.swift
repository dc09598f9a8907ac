// A pod port as the node makes it: a tap (in the pod's namespace under the name the pod
// sees, or in the host) with its VRF, MAC, MTU, addresses, default route and MPLS label.
// From a config file's interface, the API's InterfaceSpec or a pod's attachment, typed all
// the way to the tap's configuration.

import VRouterCore
import VRouterIO

struct PodPort: Sendable {
    enum Label: Sendable, Equatable {
        case none
        /// This label, refused when taken.
        case fixed(UInt32)
        /// The lowest free one, `preferring` when it is free (a re-ADD keeps its label).
        case any(preferring: UInt32?)
    }

    struct Device: Sendable {
        /// The host-side name (the pod-side one when the tap is made in the pod's namespace).
        var name: String
        var netns: String?
        /// The name the pod sees (`name` when nil).
        var ifname: String?
        /// Survives vrouterd (TUNSETPERSIST): re-attached on start, kept on stop.
        var persistent: Bool
    }

    var name: String
    var vrf: String
    var mac: MACAddress
    var mtu = 1500
    var ipv4: PodAddress<IPv4Address>?
    var ipv6: PodAddress<IPv6Address>?
    /// Install a default route through the VRF's gateway (or `gateways`) inside the pod.
    var defaultRoute = true
    var label = Label.none
    var antiSpoofing = true
    /// The tap with a virtio-net header and TSO/USO (superframes in and out).
    var offloads = true
    /// Nil for a port that is modelled only (a node without live ports).
    var tap: Device?
    /// The default route's gateways, when not the VRF's.
    var gateways: (IPv4Address?, IPv6Address?) = (nil, nil)

    init(
        name: String,
        vrf: String,
        mac: MACAddress,
        mtu: Int = 1500,
        ipv4: PodAddress<IPv4Address>? = nil,
        ipv6: PodAddress<IPv6Address>? = nil,
        defaultRoute: Bool = true,
        label: Label = .none,
        antiSpoofing: Bool = true,
        offloads: Bool = true,
        tap: Device? = nil,
        gateways: (IPv4Address?, IPv6Address?) = (nil, nil)
    ) {
        self.name = name
        self.vrf = vrf
        self.mac = mac
        self.mtu = mtu
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.defaultRoute = defaultRoute
        self.label = label
        self.antiSpoofing = antiSpoofing
        self.offloads = offloads
        self.tap = tap
        self.gateways = gateways
    }

    /// A config file's pod interface (validated by the loader: it has a VRF).
    init?(_ itf: NodeConfig.Interface) {
        guard itf.kind == .pod, let vrf = itf.vrf else { return nil }
        self.init(
            name: itf.name,
            vrf: vrf,
            mac: itf.mac,
            mtu: itf.mtu,
            ipv4: itf.ipv4.map { PodAddress($0, prefixLength: itf.ipv4PrefixLength) },
            ipv6: itf.ipv6.map { PodAddress($0, prefixLength: itf.ipv6PrefixLength) },
            defaultRoute: itf.defaultRoute,
            label: itf.label.map { .fixed($0) } ?? .none,
            antiSpoofing: itf.antiSpoofing,
            offloads: itf.offloads,
            tap: itf.tap.map { Device(name: $0.name, netns: $0.netns, ifname: $0.ifname, persistent: $0.persistent) }
        )
    }

    /// The port as a config file writes it (snapshots, listings), with the label it got.
    func interface(label: UInt32?) -> NodeConfig.Interface {
        var itf = NodeConfig.Interface(name: name, kind: .pod, mac: mac)
        itf.vrf = vrf
        itf.mtu = mtu
        itf.ipv4 = ipv4?.address
        itf.ipv4PrefixLength = ipv4?.prefixLength ?? 32
        itf.ipv6 = ipv6?.address
        itf.ipv6PrefixLength = ipv6?.prefixLength ?? 128
        itf.defaultRoute = defaultRoute
        itf.label = label
        itf.antiSpoofing = antiSpoofing
        itf.offloads = offloads
        itf.tap = tap.map {
            NodeConfig.Tap(name: $0.name, netns: $0.netns, ifname: $0.ifname, persistent: $0.persistent)
        }
        return itf
    }

    /// How the device is configured in the pod: `name`, MAC, MTU, addresses and, when asked
    /// for, the default route through `gateways` (on-link: the gateway is the vRouter).
    func tapConfiguration(name: String, gateways: (IPv4Address?, IPv6Address?)) -> TapPort.Configuration {
        var addresses: [InterfaceAddress] = []
        var routes: [Route] = []
        if let a = ipv4 { addresses.append(InterfaceAddress(.v4(a.address), prefixLength: a.prefixLength)) }
        if let a = ipv6 { addresses.append(InterfaceAddress(.v6(a.address), prefixLength: a.prefixLength)) }
        if defaultRoute {
            if ipv4 != nil, let g = gateways.0 { routes.append(Route(.defaultIPv4, via: .v4(g), onlink: true)) }
            if ipv6 != nil, let g = gateways.1 { routes.append(Route(.defaultIPv6, via: .v6(g), onlink: true)) }
        }
        return TapPort.Configuration(name: name, mac: mac, mtu: mtu, addresses: addresses, routes: routes)
    }
}
