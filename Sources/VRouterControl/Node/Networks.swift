// Networks as vrouterd knows them: NetworkAttachmentDefinitions (k8s.cni.cncf.io/v1)
// applied by `vrouterctl apply -f`, and the pods attached through the CNI shim.
//
// A NAD is a vRouter network when its config's type is vrouter-cni or Contrail's
// contrail-k8s-cni, or when it has no config (the multi-net spec's "implementation-known
// network"): it gets a VRF and a VNI, its subnet from `opencontrail.org/cidr` (gateway:
// Contrail's last address but one), and vrouterd's IPAM. Any other type is delegated: the
// shim runs that plugin with the NAD's config, and vrouterd only records the result.

import VRouterCNI
import VRouterCore

/// The Kubernetes object as `vrouterctl apply` sends it (YAML turned into JSON).
public struct NetworkAttachmentDefinition: Codable, Sendable, Equatable {
    public struct Metadata: Codable, Sendable, Equatable {
        public var name: String
        public var namespace: String?
        public var annotations: [String: String]?
        public init(name: String, namespace: String? = nil, annotations: [String: String]? = nil) {
            self.name = name
            self.namespace = namespace
            self.annotations = annotations
        }
    }
    public struct Spec: Codable, Sendable, Equatable {
        public var config: String?
        public init(config: String? = nil) { self.config = config }
    }
    public var apiVersion: String?
    public var kind: String?
    public var metadata: Metadata
    public var spec: Spec?
    public init(
        apiVersion: String? = "k8s.cni.cncf.io/v1",
        kind: String? = "NetworkAttachmentDefinition",
        metadata: Metadata,
        spec: Spec? = nil
    ) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.metadata = metadata
        self.spec = spec
    }
    public static let apiVersionV1 = "k8s.cni.cncf.io/v1"
    public static let kindName = "NetworkAttachmentDefinition"
}

/// A network vrouterd knows (what `network show` prints and the state keeps).
public struct NetworkRecord: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case vrouter, delegated }
    public var namespace: String
    public var name: String
    public var kind: Kind
    /// The config's plugin type ("vrouter-cni", "contrail-k8s-cni", "bridge"…; "" for none).
    public var pluginType: String
    /// Delegated networks: the config run through the plugin (name and cniVersion set).
    public var config: JSONValue?
    public var subnet: String?
    public var subnet6: String?
    public var gateway: String?
    public var gateway6: String?
    public var vrf: String?
    public var vni: UInt32?
    public var ipFabricForwarding: Bool
    public var ipFabricSnat: Bool
    public var annotations: [String: String]
    public var key: String { "\(namespace)/\(name)" }
}

/// `network list` / `network show`.
public struct NetworkInfo: Codable, Sendable, Equatable {
    public var network: NetworkRecord
    public var isDefault: Bool
    /// Pods ("namespace/name", or the container ID when the runtime gave no pod name).
    public var pods: [String]
    public var addressesInUse: Int
    public var addressesFree: Int?
}

public struct NetworkApplyResult: Codable, Sendable, Equatable {
    public var network: String
    /// "created", "unchanged" or "configured" (kubectl's words).
    public var action: String
}

/// One pod's attachments for one sandbox (container ID), as recorded at ADD.
public struct PodRecord: Codable, Sendable, Equatable {
    public var containerID: String
    public var netns: String
    public var pod: CNIPod
    public var attachments: [PodAttachment]
    /// The delegates' results are in (the ADD completed).
    public var committed: Bool
    /// DEL released the vRouter attachments; the delegated ones are being DELeted.
    public var releasing: Bool?
    public var key: String { pod.key ?? containerID }
}

public struct PodAttachment: Codable, Sendable, Equatable {
    public var network: String
    public var ifname: String
    public var isDefault: Bool
    /// vRouter attachments: the node interface (vif), its VRF, host-side tap name and MTU,
    /// and what the pod sees.
    public var interface: String?
    public var vrf: String?
    public var tap: String?
    public var mtu: Int?
    /// The MPLS label other nodes put on MPLS-over-UDP packets for this interface.
    public var label: UInt32?
    public var mac: String?
    public var ipv4: String?
    public var ipv6: String?
    public var gateway4: String?
    public var gateway6: String?
    /// The pod's default route goes through this attachment.
    public var defaultRoute: Bool
    /// The gateways the selection asked for with `default-route`.
    public var requestedDefaultRoute: [String]?
    /// The network was force-deleted under the pod: nothing left to release.
    public var detached: Bool?
    public var delegate: CNIDelegate?

    init(network: String, ifname: String, isDefault: Bool, defaultRoute: Bool) {
        self.network = network
        self.ifname = ifname
        self.isDefault = isDefault
        self.defaultRoute = defaultRoute
    }

    var wire: CNIAttachment {
        var a = CNIAttachment(network: network, ifname: ifname, isDefault: isDefault)
        a.delegate = delegate
        guard delegate == nil else { return a }
        a.mac = mac
        a.ips = [ipv4, ipv6].compactMap { $0 }
        a.gateways = [ipv4 != nil ? gateway4 : nil, ipv6 != nil ? gateway6 : nil].compactMap { $0 }
        if defaultRoute {
            var routes: [CNIResult.Route] = []
            if ipv4 != nil, let g = gateway4 { routes.append(CNIResult.Route(dst: "0.0.0.0/0", gw: g)) }
            if ipv6 != nil, let g = gateway6 { routes.append(CNIResult.Route(dst: "::/0", gw: g)) }
            a.routes = routes
        }
        return a
    }

    /// This attachment's entry in the pod's network-status (multi-net spec §5).
    var status: NetworkStatusEntry? {
        if let d = delegate {
            guard let r = d.result, let result = try? CNIResult.read(r) else {
                return NetworkStatusEntry(name: network, interface: ifname, ips: nil, mac: nil, default: isDefault)
            }
            let (itf, ips) =
                result.sandboxInterface ?? (
                    CNIResult.Interface(name: ifname), result.ips.filter { $0.interface == nil }
                )
            return NetworkStatusEntry(
                name: network,
                interface: itf.name,
                ips: ips.map(\.address),
                mac: itf.mac,
                default: isDefault,
                defaultRoute: d.defaultRoute
            )
        }
        guard detached != true else { return nil }
        return NetworkStatusEntry(
            name: network,
            interface: ifname,
            ips: [ipv4, ipv6].compactMap { $0 },
            mac: mac,
            default: isDefault,
            defaultRoute: requestedDefaultRoute
        )
    }
}

/// `pod show` / `pod list`.
public struct PodInfo: Codable, Sendable, Equatable {
    public var namespace: String?
    public var name: String?
    public var uid: String?
    public var containerID: String
    public var netns: String
    public var networkStatus: [NetworkStatusEntry]
    /// The pod's annotations as vrouterd would set them (network-status as its JSON text).
    public var annotations: [String: String]
    /// The node side of each vRouter attachment: its vif, VRF and MPLS label.
    public var interfaces: [PodInterfaceInfo]?
}

public struct PodInterfaceInfo: Codable, Sendable, Equatable {
    public var ifname: String
    public var network: String
    public var interface: String
    public var vrf: String?
    public var label: UInt32?
    public var tap: String?
}

/// What vrouterd keeps for networks and pods (under the node's state lock).
struct CNIState {
    var networks: [String: NetworkRecord] = [:]
    /// By container ID.
    var pods: [String: PodRecord] = [:]
    /// Address pools by network key ("namespace/name", or the default network's name).
    var pools: [String: [SubnetPool]] = [:]

    func record(forPod key: String) -> PodRecord? { pods.values.first { $0.key == key } }

    /// Pods attached to a network, by pod key.
    func users(of network: String) -> [String] {
        pods.values.filter { p in p.attachments.contains { $0.network == network && $0.detached != true } }.map(\.key)
            .sorted()
    }
}
