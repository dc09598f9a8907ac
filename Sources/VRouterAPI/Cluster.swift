// The cluster as one node sees it (GET /v1/cluster, `vrouterctl cluster`): the store it
// talks to, its lease, what it has learned and programmed, and every other node.

public struct ClusterInfo: Codable, Sendable, Equatable {
    public var node: String
    /// This node's underlay (tunnel) address, as it publishes it.
    public var underlay: String?
    public var endpoints: [String]
    public var prefix: String
    /// The watch is open (a store that is away leaves what was learned in place).
    public var connected: Bool
    public var endpoint: String?
    /// The store's revision the node has seen last.
    public var revision: Int64
    public var resyncs: Int
    public var compactions: Int
    /// Watches that ended in an error and were started again.
    public var watchRestarts: Int
    /// Calls to etcd that failed: the publisher's passes, claims, releases, network changes.
    public var storeErrors: Int
    public var lastError: String?
    /// The node's lease (hex), nil while it has none.
    public var leaseID: String?
    public var leaseTTL: Int
    public var leaseRegrants: Int
    /// Records of this node not yet written (etcd away).
    public var publishPending: Int
    /// Records skipped: a newer version than this node reads, or garbage.
    public var skippedRecords: Int
    public var routesProgrammed: Int
    public var routesLearned: Int
    public var routesWithdrawn: Int
    public var nodes: [ClusterNodeInfo]

    public init(
        node: String,
        underlay: String? = nil,
        endpoints: [String],
        prefix: String,
        connected: Bool,
        endpoint: String?,
        revision: Int64,
        resyncs: Int,
        compactions: Int,
        watchRestarts: Int,
        storeErrors: Int,
        lastError: String?,
        leaseID: String?,
        leaseTTL: Int,
        leaseRegrants: Int,
        publishPending: Int,
        skippedRecords: Int,
        routesProgrammed: Int,
        routesLearned: Int,
        routesWithdrawn: Int,
        nodes: [ClusterNodeInfo]
    ) {
        self.node = node
        self.underlay = underlay
        self.endpoints = endpoints
        self.prefix = prefix
        self.connected = connected
        self.endpoint = endpoint
        self.revision = revision
        self.resyncs = resyncs
        self.compactions = compactions
        self.watchRestarts = watchRestarts
        self.storeErrors = storeErrors
        self.lastError = lastError
        self.leaseID = leaseID
        self.leaseTTL = leaseTTL
        self.leaseRegrants = leaseRegrants
        self.publishPending = publishPending
        self.skippedRecords = skippedRecords
        self.routesProgrammed = routesProgrammed
        self.routesLearned = routesLearned
        self.routesWithdrawn = routesWithdrawn
        self.nodes = nodes
    }
}

/// Another node of the cluster: its record (alive while its lease is) and what this node
/// routes through it.
public struct ClusterNodeInfo: Codable, Sendable, Equatable {
    public var name: String
    public var underlay: String
    public var bootID: String
    /// The lease its record lives on (hex): the record, and the node's pods, go when it ends.
    public var lease: String?
    /// Its pod interfaces published.
    public var endpoints: Int
    /// Routes this node has through it.
    public var routes: Int
    /// Its tunnel nexthop is made.
    public var programmed: Bool
    public init(
        name: String,
        underlay: String,
        bootID: String,
        lease: String? = nil,
        endpoints: Int,
        routes: Int,
        programmed: Bool
    ) {
        self.name = name
        self.underlay = underlay
        self.bootID = bootID
        self.lease = lease
        self.endpoints = endpoints
        self.routes = routes
        self.programmed = programmed
    }
}
