// What the shim and vrouterd say to each other (the /v1/cni/* endpoints of the control
// API). vrouterd owns networks, IPAM, taps and the pod's network-status; the shim owns the
// CNI protocol and runs delegated plugins (it has CNI_PATH and the runtime's environment).
//
//   ADD    POST /v1/cni/add     → every attachment, in interface order; vRouter ones are
//                                 made, delegated ones come back for the shim to run
//          POST /v1/cni/commit  ← the delegates' results (network-status complete)
//   DEL    POST /v1/cni/del     → vRouter attachments released; delegated ones come back
//                                 (with their results as prevResult) and stay recorded
//                                 until a second call with delegatesReleased: true
//   CHECK  POST /v1/cni/check   → vRouter attachments checked in the netns; delegated
//                                 ones come back to be CHECKed through their plugin
//   GC     POST /v1/cni/gc      → records of containers not in the valid list removed;
//                                 their delegated attachments come back to be DELeted
//   STATUS GET  /v1/cni/status

public struct CNIPod: Codable, Sendable, Equatable {
    public var namespace: String?
    public var name: String?
    public var uid: String?
    public init(namespace: String? = nil, name: String? = nil, uid: String? = nil) {
        self.namespace = namespace
        self.name = name
        self.uid = uid
    }
    /// "namespace/name" when the runtime said which pod this is.
    public var key: String? {
        guard let n = name, !n.isEmpty else { return nil }
        return "\(namespace ?? "default")/\(n)"
    }
}

public struct CNIAddRequest: Codable, Sendable, Equatable {
    public var containerID: String
    public var netns: String
    /// The runtime's CNI_IFNAME: the default network's interface (eth0).
    public var ifname: String
    public var pod: CNIPod
    public var networks: [NetworkSelection]
    public init(containerID: String, netns: String, ifname: String, pod: CNIPod, networks: [NetworkSelection]) {
        self.containerID = containerID
        self.netns = netns
        self.ifname = ifname
        self.pod = pod
        self.networks = networks
    }
}

/// One interface of the pod: made by vrouterd (mac, ips, routes) or delegated.
public struct CNIAttachment: Codable, Sendable, Equatable {
    /// "namespace/name" of the NAD, or the default network's name.
    public var network: String
    public var ifname: String
    public var isDefault: Bool
    public var mac: String?
    public var mtu: Int?
    /// "address/prefix-length".
    public var ips: [String]?
    /// The gateway of each IP family present ("192.0.2.254").
    public var gateways: [String]?
    public var routes: [CNIResult.Route]?
    public var delegate: CNIDelegate?
    public init(network: String, ifname: String, isDefault: Bool) {
        self.network = network
        self.ifname = ifname
        self.isDefault = isDefault
    }
}

/// A delegated attachment: the NAD's config, run through its plugin by the shim.
public struct CNIDelegate: Codable, Sendable, Equatable {
    /// The NAD's spec.config (a single plugin config or a conflist), with `name` set.
    public var config: JSONValue
    /// Capability arguments from the selection ("ips", "mac").
    public var runtimeConfig: JSONObject?
    /// The selection's cni-args (merged into the config's args.cni).
    public var cniArgs: JSONObject?
    /// The selection's default-route gateways, when it asked for the pod's default route.
    public var defaultRoute: [String]?
    /// The plugin's ADD result, once the shim reported it (prevResult for CHECK and DEL).
    public var result: JSONValue?
    public init(
        config: JSONValue,
        runtimeConfig: JSONObject? = nil,
        cniArgs: JSONObject? = nil,
        defaultRoute: [String]? = nil,
        result: JSONValue? = nil
    ) {
        self.config = config
        self.runtimeConfig = runtimeConfig
        self.cniArgs = cniArgs
        self.defaultRoute = defaultRoute
        self.result = result
    }
}

extension JSONObject: Codable {
    public init(from decoder: any Decoder) throws {
        guard case .object(let o) = try JSONValue(from: decoder) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "expected a JSON object")
            )
        }
        self = o
    }
    public func encode(to encoder: any Encoder) throws { try JSONValue.object(self).encode(to: encoder) }
}

public struct CNIAddResponse: Codable, Sendable, Equatable {
    public var attachments: [CNIAttachment]
    public init(attachments: [CNIAttachment]) { self.attachments = attachments }
}

public struct CNIDelegateResult: Codable, Sendable, Equatable {
    public var ifname: String
    public var result: JSONValue
    public init(ifname: String, result: JSONValue) {
        self.ifname = ifname
        self.result = result
    }
}

public struct CNICommitRequest: Codable, Sendable, Equatable {
    public var containerID: String
    public var results: [CNIDelegateResult]
    public init(containerID: String, results: [CNIDelegateResult]) {
        self.containerID = containerID
        self.results = results
    }
}

public struct CNIDelRequest: Codable, Sendable, Equatable {
    public var containerID: String
    public var netns: String?
    public var ifname: String
    public var pod: CNIPod
    /// The delegated attachments have been DELeted through their plugins: forget them.
    public var delegatesReleased: Bool?
    public init(containerID: String, netns: String?, ifname: String, pod: CNIPod, delegatesReleased: Bool? = nil) {
        self.containerID = containerID
        self.netns = netns
        self.ifname = ifname
        self.pod = pod
        self.delegatesReleased = delegatesReleased
    }
}

/// DEL and CHECK answers: the delegated attachments the shim must DEL or CHECK.
public struct CNIDelegatesResponse: Codable, Sendable, Equatable {
    /// False when vrouterd had no record of the container (a repeated or stale DEL).
    public var found: Bool
    public var netns: String?
    public var delegates: [CNIAttachment]
    public init(found: Bool, netns: String? = nil, delegates: [CNIAttachment]) {
        self.found = found
        self.netns = netns
        self.delegates = delegates
    }
}

public struct CNICheckRequest: Codable, Sendable, Equatable {
    public var containerID: String
    public var netns: String
    public var ifname: String
    public var pod: CNIPod
    public init(containerID: String, netns: String, ifname: String, pod: CNIPod) {
        self.containerID = containerID
        self.netns = netns
        self.ifname = ifname
        self.pod = pod
    }
}

public struct CNIAttachmentRef: Codable, Sendable, Equatable, Hashable {
    public var containerID: String
    public var ifname: String
    public init(containerID: String, ifname: String) {
        self.containerID = containerID
        self.ifname = ifname
    }
}

public struct CNIGCRequest: Codable, Sendable, Equatable {
    public var validAttachments: [CNIAttachmentRef]
    public init(validAttachments: [CNIAttachmentRef]) { self.validAttachments = validAttachments }
}

public struct CNIStaleDelegate: Codable, Sendable, Equatable {
    public var containerID: String
    public var netns: String?
    public var attachment: CNIAttachment
    public init(containerID: String, netns: String?, attachment: CNIAttachment) {
        self.containerID = containerID
        self.netns = netns
        self.attachment = attachment
    }
}

public struct CNIGCResponse: Codable, Sendable, Equatable {
    /// Container IDs whose attachments were released.
    public var removed: [String]
    public var delegates: [CNIStaleDelegate]
    public init(removed: [String], delegates: [CNIStaleDelegate]) {
        self.removed = removed
        self.delegates = delegates
    }
}

public struct CNIStatusResponse: Codable, Sendable, Equatable {
    public var ready: Bool
    public var message: String?
    public init(ready: Bool, message: String? = nil) {
        self.ready = ready
        self.message = message
    }
}

/// vrouterd's error body on the CNI endpoints: the message, and the CNI code it means.
public struct CNIErrorBody: Codable, Sendable, Equatable {
    public var error: String
    public var cniCode: Int?
    public init(error: String, cniCode: Int?) {
        self.error = error
        self.cniCode = cniCode
    }
}

/// One entry of `k8s.v1.cni.cncf.io/network-status` (multi-net spec §5).
public struct NetworkStatusEntry: Codable, Sendable, Equatable {
    public var name: String
    public var interface: String?
    public var ips: [String]?
    public var mac: String?
    public var `default`: Bool
    public var dns: JSONValue?
    public var defaultRoute: [String]?
    public init(
        name: String,
        interface: String?,
        ips: [String]?,
        mac: String?,
        default d: Bool,
        defaultRoute: [String]? = nil
    ) {
        self.name = name
        self.interface = interface
        self.ips = ips
        self.mac = mac
        self.default = d
        self.defaultRoute = defaultRoute
    }
    enum CodingKeys: String, CodingKey {
        case name, interface, ips, mac, `default`, dns
        case defaultRoute = "default-route"
    }
}
