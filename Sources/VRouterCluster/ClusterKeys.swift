// Where each record lives in etcd. Everything is under one prefix and a schema version
// (`<prefix>/v1/`), so one watch sees the whole cluster and a later schema can live beside this
// one during an upgrade:
//
//   <prefix>/v1/nodes/<node>                                   NodeRecord, on the node's lease
//   <prefix>/v1/networks/<namespace>/<name>                    NetworkEntry (the NAD), no lease
//   <prefix>/v1/blocks/<namespace>/<name>/<cidr>               BlockClaim: block affinity, no lease
//   <prefix>/v1/addresses/<namespace>/<name>/<address>         AddressClaim, no lease
//   <prefix>/v1/endpoints/<node>/<pod ns>/<pod>/<ifname>       EndpointRecord, on the owner's lease
//
// A CIDR's "/" is written "_" (192.0.2.64_26). Blocks and address claims outlive the node's
// lease on purpose: a node killed and restarted keeps its pods' addresses (their taps survive),
// so nobody else may take them while it is away. Endpoints and the node record go with the
// lease, which is how peers forget a dead node's pods.

public struct ClusterKeys: Sendable, Hashable {
    /// The prefix with its schema version, ending in "/".
    public let root: String

    /// `prefix` like "/vrouter" or "/vrouter/prod"; a trailing "/" is ignored.
    public init(prefix: String) throws(ClusterError) {
        var p = prefix
        while p.hasSuffix("/") { p.removeLast() }
        guard p.hasPrefix("/"), !p.isEmpty else {
            throw .invalid("the cluster prefix must start with \"/\" (got \"\(prefix)\")")
        }
        guard !p.contains("//") else { throw .invalid("the cluster prefix \"\(prefix)\" has an empty segment") }
        root = p + "/v1/"
    }

    public var all: String { root }
    public var nodes: String { root + "nodes/" }
    public var networks: String { root + "networks/" }
    public var blocks: String { root + "blocks/" }
    public var addresses: String { root + "addresses/" }
    public var endpoints: String { root + "endpoints/" }

    public func node(_ name: String) -> String { nodes + name }
    public func network(_ key: NetworkKey) -> String { networks + key.description }
    public func blocks(of network: NetworkKey) -> String { blocks + network.description + "/" }
    public func block(_ network: NetworkKey, _ cidr: String) -> String {
        blocks(of: network) + cidr.replacingSlash
    }
    public func addresses(of network: NetworkKey) -> String { addresses + network.description + "/" }
    public func address(_ network: NetworkKey, _ address: String) -> String { addresses(of: network) + address }
    public func endpoints(of node: String) -> String { endpoints + node + "/" }
    public func endpoint(node: String, pod: PodKey, interface: String) -> String {
        endpoints(of: node) + pod.description + "/" + interface
    }

    /// What a key under the root names.
    public enum Parsed: Sendable, Hashable {
        case node(String)
        case network(NetworkKey)
        case block(NetworkKey, cidr: String)
        case address(NetworkKey, address: String)
        case endpoint(node: String, pod: PodKey, interface: String)
    }

    /// nil for keys outside the schema (they are skipped and counted).
    public func parse(_ key: String) -> Parsed? {
        guard key.hasPrefix(root) else { return nil }
        let parts = key.dropFirst(root.count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.allSatisfy({ !$0.isEmpty }) else { return nil }
        switch (parts.first, parts.count) {
        case ("nodes", 2): return .node(parts[1])
        case ("networks", 3): return .network(NetworkKey(namespace: parts[1], name: parts[2]))
        case ("blocks", 4):
            return .block(NetworkKey(namespace: parts[1], name: parts[2]), cidr: parts[3].restoringSlash)
        case ("addresses", 4): return .address(NetworkKey(namespace: parts[1], name: parts[2]), address: parts[3])
        case ("endpoints", 5):
            return .endpoint(node: parts[1], pod: PodKey(namespace: parts[2], name: parts[3]), interface: parts[4])
        default: return nil
        }
    }

    /// A name used as one key segment: non-empty, no "/", printable ASCII, at most 253 bytes.
    public static func check(_ segment: String, _ what: String) throws(ClusterError) {
        guard !segment.isEmpty, segment.utf8.count <= 253,
            segment.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "/") })
        else {
            throw .invalid("\(what) \"\(segment)\" cannot be a key segment (1-253 printable characters, no \"/\")")
        }
    }
}

/// namespace/name of a network (a NetworkAttachmentDefinition).
public struct NetworkKey: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public var namespace: String
    public var name: String
    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }
    public var description: String { "\(namespace)/\(name)" }
    public static func < (a: NetworkKey, b: NetworkKey) -> Bool { a.description < b.description }
}

/// namespace/name of a pod.
public struct PodKey: Hashable, Sendable, Codable, CustomStringConvertible {
    public var namespace: String
    public var name: String
    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }
    public var description: String { "\(namespace)/\(name)" }
}

extension String {
    fileprivate var replacingSlash: String { String(map { $0 == "/" ? "_" : $0 }) }
    fileprivate var restoringSlash: String { String(map { $0 == "_" ? "/" : $0 }) }
}
