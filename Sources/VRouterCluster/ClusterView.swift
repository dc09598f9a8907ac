// What this node knows of the rest of the cluster, and the narrow stream of intents that
// changes to it produce (as felix's calculation graph turns datastore updates into dataplane
// intent). Pure and synchronous: fed watch events or a whole listing, it answers with intents.
//
// Level-triggered: a listing replaces the view by mark and sweep (records seen are kept or
// updated, records not seen are withdrawn, records unchanged produce nothing), so a missed
// event costs one resync, never a wrong route and never a flush. Equality is on the record's
// content, not on etcd's revisions or lease: a node that restarts and re-publishes the same
// pods under a new lease changes nothing for its peers.
//
// Unreadable values (newer version, garbage, unknown keys) are skipped, counted and reported
// to `log`; what was known under such a key stays as it was.

import VRouterEtcd

public enum ClusterIntent: Sendable, Hashable {
    /// A remote node appeared or changed (underlay, MAC, encapsulations, boot id).
    case nodeUp(NodeRecord)
    /// A remote node's record went (its lease ended or it left).
    case nodeDown(name: String)
    /// A remote pod interface appeared or changed.
    case endpointUp(EndpointRecord)
    /// A remote pod interface went; the record as last known.
    case endpointDown(EndpointRecord)
    /// A network was applied or changed (on any node, this one included).
    case networkUp(NetworkEntry)
    case networkDown(NetworkKey)
}

/// Counters for the operator (`vrouterctl cluster`, metrics).
public struct ClusterViewCounters: Sendable, Equatable {
    /// Records of a schema version newer than this node's.
    public var skippedNewer = 0
    /// Values that are not records, and keys outside the schema.
    public var skippedGarbage = 0
    public var endpointsLearned = 0
    public var endpointsWithdrawn = 0
    public var nodesLearned = 0
    public var nodesWithdrawn = 0
}

public struct ClusterView: Sendable {
    public let keys: ClusterKeys
    /// This node: its own records are not intents.
    public let localNode: String

    public private(set) var nodes: [String: NodeRecord] = [:]
    public private(set) var endpoints: [String: EndpointRecord] = [:]
    public private(set) var networks: [String: NetworkEntry] = [:]
    /// The lease each node's record is on (this node's included), by node name.
    public private(set) var nodeLeases: [String: Int64] = [:]
    public private(set) var counters = ClusterViewCounters()
    /// Nodes and endpoints of other nodes now known.
    public private(set) var remoteNodes = 0
    public private(set) var remoteEndpoints = 0

    public init(keys: ClusterKeys, localNode: String) {
        self.keys = keys
        self.localNode = localNode
    }

    private enum Item {
        case node(NodeRecord)
        case endpoint(EndpointRecord)
        case network(NetworkEntry)
        /// A key of the schema that yields no intent (blocks, address claims).
        case silent
        /// Skipped: counted and logged.
        case unreadable
    }

    private mutating func read(_ kv: KeyValue, log: (String) -> Void) -> Item {
        let key = kv.keyString
        guard let parsed = keys.parse(key) else {
            counters.skippedGarbage += 1
            log("skipped \(key): not a key of the cluster schema")
            return .unreadable
        }
        func decode<T: Decodable>(_ t: T.Type) -> T? {
            switch RecordCodec.decode(T.self, kv.value) {
            case .record(let r): return r
            case .newer(let v):
                counters.skippedNewer += 1
                log("skipped \(key): record version \(v) is newer than this node's \(clusterRecordVersion)")
            case .garbage(let why):
                counters.skippedGarbage += 1
                log("skipped \(key): \(why)")
            }
            return nil
        }
        switch parsed {
        case .node(let name):
            guard let r = decode(NodeRecord.self) else { return .unreadable }
            guard r.name == name else {
                counters.skippedGarbage += 1
                log("skipped \(key): names node \(r.name)")
                return .unreadable
            }
            return .node(r)
        case .endpoint(let node, let pod, let interface):
            guard let r = decode(EndpointRecord.self) else { return .unreadable }
            guard r.node == node, r.pod == pod, r.interface == interface else {
                counters.skippedGarbage += 1
                log("skipped \(key): the record names \(r.node)/\(r.pod)/\(r.interface)")
                return .unreadable
            }
            return .endpoint(r)
        case .network(let k):
            guard let r = decode(NetworkEntry.self) else { return .unreadable }
            guard r.key == k else {
                counters.skippedGarbage += 1
                log("skipped \(key): the record names network \(r.key)")
                return .unreadable
            }
            return .network(r)
        case .block, .address:
            return .silent
        }
    }

    /// Applies watch events in order; returns the intents they produce.
    public mutating func apply(_ events: [WatchEvent], log: (String) -> Void = { _ in }) -> [ClusterIntent] {
        var out: [ClusterIntent] = []
        for e in events {
            let key = e.kv.keyString
            switch e.kind {
            case .put:
                switch read(e.kv, log: log) {
                case .node(let r): setNode(key, r, lease: e.kv.lease, &out)
                case .endpoint(let r): setEndpoint(key, r, &out)
                case .network(let r): setNetwork(key, r, &out)
                case .silent, .unreadable: break
                }
            case .delete:
                remove(key, &out)
            }
        }
        return out
    }

    /// Replaces the view with a full listing (mark and sweep); returns the intents that bring
    /// a consumer holding the old view to the new one. Keys listed but unreadable keep what
    /// was known under them.
    public mutating func replace(with listing: [KeyValue], log: (String) -> Void = { _ in }) -> [ClusterIntent] {
        var out: [ClusterIntent] = []
        var seen = Set<String>()
        for kv in listing {
            let key = kv.keyString
            seen.insert(key)
            switch read(kv, log: log) {
            case .node(let r): setNode(key, r, lease: kv.lease, &out)
            case .endpoint(let r): setEndpoint(key, r, &out)
            case .network(let r): setNetwork(key, r, &out)
            case .silent, .unreadable: break
            }
        }
        // Sweep: withdraw what the listing no longer has, endpoints before their nodes.
        for key in endpoints.keys.sorted() where !seen.contains(key) { remove(key, &out) }
        for key in nodes.keys.sorted() where !seen.contains(key) { remove(key, &out) }
        for key in networks.keys.sorted() where !seen.contains(key) { remove(key, &out) }
        return out
    }

    private mutating func setNode(_ key: String, _ r: NodeRecord, lease: Int64, _ out: inout [ClusterIntent]) {
        if nodeLeases[r.name] != lease { nodeLeases[r.name] = lease }
        guard nodes[key] != r else { return }
        let isNew = nodes.updateValue(r, forKey: key) == nil
        guard r.name != localNode else { return }
        if isNew { remoteNodes += 1 }
        counters.nodesLearned += 1
        out.append(.nodeUp(r))
    }

    private mutating func setEndpoint(_ key: String, _ r: EndpointRecord, _ out: inout [ClusterIntent]) {
        guard endpoints[key] != r else { return }
        let isNew = endpoints.updateValue(r, forKey: key) == nil
        guard r.node != localNode else { return }
        if isNew { remoteEndpoints += 1 }
        counters.endpointsLearned += 1
        out.append(.endpointUp(r))
    }

    private mutating func setNetwork(_ key: String, _ r: NetworkEntry, _ out: inout [ClusterIntent]) {
        guard networks[key] != r else { return }
        let changed = networks[key]?.nad != r.nad
        networks[key] = r
        if changed { out.append(.networkUp(r)) }
    }

    private mutating func remove(_ key: String, _ out: inout [ClusterIntent]) {
        if let r = endpoints.removeValue(forKey: key) {
            if r.node != localNode {
                remoteEndpoints -= 1
                counters.endpointsWithdrawn += 1
                out.append(.endpointDown(r))
            }
        } else if let r = nodes.removeValue(forKey: key) {
            nodeLeases[r.name] = nil
            if r.name != localNode {
                remoteNodes -= 1
                counters.nodesWithdrawn += 1
                out.append(.nodeDown(name: r.name))
            }
        } else if let r = networks.removeValue(forKey: key) {
            out.append(.networkDown(r.key))
        }
    }
}
