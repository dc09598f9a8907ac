// Networks as vrouterd knows them: NetworkAttachmentDefinitions (k8s.cni.cncf.io/v1)
// applied by `vrouterctl apply -f`, checked here completely (no state is looked at), and the
// views of networks and pods the API answers with.
//
// A NAD is a vRouter network when its config's type is vrouter-cni or Contrail's
// contrail-k8s-cni, or when it has no config (the multi-net spec's "implementation-known
// network"): it gets a VRF and a VNI, its subnet from `opencontrail.org/cidr` (gateway:
// Contrail's last address but one), and vrouterd's IPAM. Any other type is delegated: the
// shim runs that plugin with the NAD's config, and vrouterd only records the result.

import VRouterCore

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

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
    public init(
        namespace: String,
        name: String,
        kind: Kind,
        pluginType: String,
        config: JSONValue? = nil,
        subnet: String? = nil,
        subnet6: String? = nil,
        gateway: String? = nil,
        gateway6: String? = nil,
        vrf: String? = nil,
        vni: UInt32? = nil,
        ipFabricForwarding: Bool,
        ipFabricSnat: Bool,
        annotations: [String: String]
    ) {
        self.namespace = namespace
        self.name = name
        self.kind = kind
        self.pluginType = pluginType
        self.config = config
        self.subnet = subnet
        self.subnet6 = subnet6
        self.gateway = gateway
        self.gateway6 = gateway6
        self.vrf = vrf
        self.vni = vni
        self.ipFabricForwarding = ipFabricForwarding
        self.ipFabricSnat = ipFabricSnat
        self.annotations = annotations
    }
}

extension NetworkRecord {
    public static let vrouterTypes: Set<String> = ["", "vrouter-cni", "contrail-k8s-cni"]
    public static let cidrAnnotation = "opencontrail.org/cidr"
    public static let fabricForwardingAnnotation = "opencontrail.org/ip_fabric_forwarding"
    public static let fabricSnatAnnotation = "opencontrail.org/ip_fabric_snat"
    public static let contrailNetworkAnnotation = "opencontrail.org/network"
    public static let vniAnnotation = "vrouter.io/vni"
    /// In cluster mode, how other nodes tunnel to this network's pods: "vxlan" or "mpls-udp"
    /// (absent: the node's `cluster.encap`).
    public static let encapAnnotation = "vrouter.io/encap"
    public static let encapNames: Set<String> = ["vxlan", "mpls-udp"]

    /// The record a NAD makes, checked completely (no state is looked at).
    public init(validating nad: NetworkAttachmentDefinition) throws(APIError) {
        if let v = nad.apiVersion, v != NetworkAttachmentDefinition.apiVersionV1 {
            throw .badRequest("apiVersion '\(v)' is not \(NetworkAttachmentDefinition.apiVersionV1)")
        }
        if let k = nad.kind, k != NetworkAttachmentDefinition.kindName {
            throw .badRequest("kind '\(k)' is not \(NetworkAttachmentDefinition.kindName)")
        }
        let name = nad.metadata.name
        let ns = nad.metadata.namespace ?? "default"
        guard NetworkAnnotation.isDNSLabel(name) else {
            throw .badRequest("metadata.name '\(name)' is not a DNS-1123 label")
        }
        guard NetworkAnnotation.isDNSLabel(ns) else {
            throw .badRequest("metadata.namespace '\(ns)' is not a DNS-1123 label")
        }
        let where_ = "network \(ns)/\(name)"
        let ann = nad.metadata.annotations ?? [:]
        var config: JSONObject?
        var type = ""
        if let text = nad.spec?.config, !text.trimmingWhitespace().isEmpty {
            guard let v = try? JSONValue.parse(Data(text.utf8)), let o = v.object else {
                throw .badRequest("\(where_): spec.config is not a JSON object")
            }
            config = o
            if let t = o["type"] {
                guard let s = t.string else { throw .badRequest("\(where_): spec.config type is not a string") }
                type = s
            } else if let plugins = o["plugins"]?.array {
                guard let first = plugins.first?["type"]?.string else {
                    throw .badRequest("\(where_): spec.config is a conflist without plugins (or a plugin without type)")
                }
                type = first
            }
        }
        func flag(_ key: String) throws(APIError) -> Bool {
            guard let v = ann[key] else { return false }
            switch v.lowercased() {
            case "true": return true
            case "false": return false
            default: throw .badRequest("\(where_): \(key) must be \"true\" or \"false\", not '\(v)'")
            }
        }
        var r = NetworkRecord(
            namespace: ns,
            name: name,
            kind: Self.vrouterTypes.contains(type) ? .vrouter : .delegated,
            pluginType: type,
            config: nil,
            ipFabricForwarding: try flag(Self.fabricForwardingAnnotation),
            ipFabricSnat: try flag(Self.fabricSnatAnnotation),
            annotations: ann
        )
        switch r.kind {
        case .delegated:
            for k in [
                Self.cidrAnnotation, Self.contrailNetworkAnnotation, Self.fabricForwardingAnnotation,
                Self.fabricSnatAnnotation,
                Self.vniAnnotation, Self.encapAnnotation,
            ]
            where ann[k] != nil {
                throw .badRequest(
                    "\(where_): \(k) applies to vRouter networks; this one is delegated to the '\(type)' plugin"
                )
            }
            var c = config!
            if c["name"] == nil { c["name"] = .string(name) }
            if c["cniVersion"] == nil { c["cniVersion"] = .string("1.0.0") }
            if let n = c["name"]?.string, CNIEnvironment.invalidContainerID(n) != nil {
                throw .badRequest("\(where_): spec.config name '\(n)' is not a valid CNI network name")
            }
            r.config = .object(c)
        case .vrouter:
            if ann[Self.contrailNetworkAnnotation] != nil {
                throw .badRequest(
                    "\(where_): \(Self.contrailNetworkAnnotation) (mapping to an existing Contrail VN) is not supported; give \(Self.cidrAnnotation)"
                )
            }
            if r.ipFabricForwarding && r.ipFabricSnat {
                throw .badRequest(
                    "\(where_): \(Self.fabricForwardingAnnotation) and \(Self.fabricSnatAnnotation) exclude each other (a network routed on the fabric needs no translation)"
                )
            }
            guard let cidr = ann[Self.cidrAnnotation] else {
                throw .badRequest(
                    "\(where_): a vRouter network needs the \(Self.cidrAnnotation) annotation (its subnet)"
                )
            }
            for part in cidr.split(separator: ",").map({ $0.trimmingWhitespace() }) {
                if let p = IPv4Prefix(part) {
                    guard r.subnet == nil else {
                        throw .badRequest("\(where_): \(Self.cidrAnnotation) has two IPv4 subnets")
                    }
                    guard p.length <= 30 else {
                        throw .badRequest("\(where_): subnet \(p) has no room for pods (at most /30)")
                    }
                    r.subnet = p.description
                    r.gateway = IPv4Address(p.address.value | ~IPv4Prefix.mask(Int(p.length)) &- 1).description
                } else if let p = IPv6Prefix(part) {
                    guard r.subnet6 == nil else {
                        throw .badRequest("\(where_): \(Self.cidrAnnotation) has two IPv6 subnets")
                    }
                    guard p.length <= 126 else {
                        throw .badRequest("\(where_): subnet \(p) has no room for pods (at most /126)")
                    }
                    r.subnet6 = p.description
                    r.gateway6 = IPv6Address(p.address.value | ~IPv6Prefix.mask(Int(p.length)) &- 1).description
                } else {
                    throw .badRequest(
                        "\(where_): \(Self.cidrAnnotation) '\(part)' is not a prefix (address/length, host bits zero)"
                    )
                }
            }
            guard r.subnet != nil || r.subnet6 != nil else {
                throw .badRequest("\(where_): \(Self.cidrAnnotation) is empty")
            }
            r.vrf = "\(ns):\(name)"
            if let v = ann[Self.vniAnnotation] {
                guard let n = UInt32(v), (1...TableBuilder.maxVNI).contains(n) else {
                    throw .badRequest("\(where_): \(Self.vniAnnotation) '\(v)' is not a VNI (1...16777215)")
                }
                r.vni = n
            }
            if let e = ann[Self.encapAnnotation], !Self.encapNames.contains(e) {
                throw .badRequest("\(where_): \(Self.encapAnnotation) '\(e)' is not vxlan or mpls-udp")
            }
        }
        self = r
    }
}

/// `network list` / `network show`.
public struct NetworkInfo: Codable, Sendable, Equatable {
    public var network: NetworkRecord
    public var isDefault: Bool
    /// Pods ("namespace/name", or the container ID when the runtime gave no pod name).
    public var pods: [String]
    public var addressesInUse: Int
    public var addressesFree: Int?
    public init(
        network: NetworkRecord,
        isDefault: Bool,
        pods: [String],
        addressesInUse: Int,
        addressesFree: Int? = nil
    ) {
        self.network = network
        self.isDefault = isDefault
        self.pods = pods
        self.addressesInUse = addressesInUse
        self.addressesFree = addressesFree
    }
}

public struct NetworkApplyResult: Codable, Sendable, Equatable {
    public var network: String
    /// "created", "unchanged" or "configured" (kubectl's words).
    public var action: String
    public init(
        network: String,
        action: String
    ) {
        self.network = network
        self.action = action
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
    public init(
        namespace: String? = nil,
        name: String? = nil,
        uid: String? = nil,
        containerID: String,
        netns: String,
        networkStatus: [NetworkStatusEntry],
        annotations: [String: String],
        interfaces: [PodInterfaceInfo]? = nil
    ) {
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.containerID = containerID
        self.netns = netns
        self.networkStatus = networkStatus
        self.annotations = annotations
        self.interfaces = interfaces
    }
}

public struct PodInterfaceInfo: Codable, Sendable, Equatable {
    public var ifname: String
    public var network: String
    public var interface: String
    public var vrf: String?
    public var label: UInt32?
    public var tap: String?
    public init(
        ifname: String,
        network: String,
        interface: String,
        vrf: String? = nil,
        label: UInt32? = nil,
        tap: String? = nil
    ) {
        self.ifname = ifname
        self.network = network
        self.interface = interface
        self.vrf = vrf
        self.label = label
        self.tap = tap
    }
}
