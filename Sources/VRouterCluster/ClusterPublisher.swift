// This node's presence in the store: its node record and its pods' endpoints, all on one
// lease that it keeps alive (every TTL/3). The publisher holds the desired set of keys and
// makes the store match it (level-triggered, like the watcher): a change marks it dirty, a
// pass writes what differs in transactions of at most 64 operations, and a failure leaves it
// dirty for the next pass. So a pod added while etcd is away is published when it returns.
//
// A lease that is gone (expired while etcd or this node was away, or revoked) is replaced: a
// new grant, then every key put again on it (Cilium's lease manager; cilium#42596 kept using a
// dead lease for hours). On start it may resume the lease of its previous run if that is still
// alive, so a quick restart moves no key. Keys of ours the store holds but we no longer want
// (pods deleted while we were down) are deleted on the first pass after a lease is acquired.

import Logging
import VRouterEtcd

public struct ClusterPublisherStatus: Sendable, Equatable {
    public var leaseID: Int64?
    public var ttl: Int64
    /// Leases granted after the first (each after the previous one was lost).
    public var regrants = 0
    /// Keys wanted but not (yet) in the store as wanted.
    public var pending = 0
    /// Passes that failed (etcd away, a write with an unknown outcome), each tried again.
    public var errors = 0
    public var lastError: String?
}

public actor ClusterPublisher {
    public let client: EtcdClient
    public let keys: ClusterKeys
    public let ttl: Int64
    private let logger: Logger
    private var nodeName: String
    private var desired: [String: [UInt8]] = [:]
    /// What the store holds under the current lease, as far as this node knows.
    private var written: [String: [UInt8]] = [:]
    private var lease: Int64?
    private var resumeLease: Int64?
    private var dirty = true
    private var waiter: CheckedContinuation<Void, Never>?
    private var state: ClusterPublisherStatus
    private var grants = 0

    /// `ttl` in seconds (etcd raises anything under its minimum, 2 s by default).
    public init(
        client: EtcdClient,
        keys: ClusterKeys,
        node: NodeRecord,
        ttl: Int64,
        resumeLease: Int64? = nil,
        logger: Logger
    ) {
        self.client = client
        self.keys = keys
        self.ttl = ttl
        self.logger = logger
        self.resumeLease = resumeLease
        nodeName = node.name
        state = ClusterPublisherStatus(ttl: ttl)
        desired[keys.node(node.name)] = RecordCodec.encode(node)
    }

    public var status: ClusterPublisherStatus {
        var s = state
        s.leaseID = lease
        s.pending =
            desired.filter { written[$0.key] != $0.value }.count + written.keys.filter { desired[$0] == nil }.count
        return s
    }

    /// Before `run`: the lease of a previous run (from the node's state), kept if etcd says it
    /// is still alive, so a quick restart moves no key to a new lease.
    public func resume(lease id: Int64) {
        if lease == nil { resumeLease = id }
    }

    /// Every wanted key is in the store under the current lease.
    public var isPublished: Bool { lease != nil && desired == written }

    public func update(node: NodeRecord) {
        desired[keys.node(node.name)] = RecordCodec.encode(node)
        markDirty()
    }

    public func publish(_ endpoint: EndpointRecord) {
        desired[key(endpoint)] = RecordCodec.encode(endpoint)
        markDirty()
    }

    public func withdraw(pod: PodKey, interface: String) {
        desired.removeValue(forKey: keys.endpoint(node: nodeName, pod: pod, interface: interface))
        markDirty()
    }

    /// Replaces every endpoint (a restart republishing its local state).
    public func replaceEndpoints(_ endpoints: [EndpointRecord]) {
        desired = desired.filter { !$0.key.hasPrefix(keys.endpoints) }
        for e in endpoints { desired[key(e)] = RecordCodec.encode(e) }
        markDirty()
    }

    private func key(_ e: EndpointRecord) -> String {
        keys.endpoint(node: e.node, pod: e.pod, interface: e.interface)
    }

    /// Keeps the lease and the keys until the task is cancelled.
    public func run() async {
        var nextKeepAlive = ContinuousClock.now
        var pause = Duration.milliseconds(200)
        let interval = Duration.milliseconds(max(500, ttl * 1000 / 3))
        while !Task.isCancelled {
            do {
                if lease == nil {
                    try await acquireLease()
                    nextKeepAlive = .now + interval
                }
                if dirty { try await sync() }
                if ContinuousClock.now >= nextKeepAlive, let lease {
                    try await client.keepAliveOnce(lease, timeout: interval)
                    nextKeepAlive = .now + interval
                }
                state.lastError = nil
                pause = .milliseconds(200)
                await waitForWork(until: nextKeepAlive)
            } catch .leaseNotFound(let id) {
                logger.warning("cluster lease \(id) is gone; granting a new one and publishing again")
                lease = nil
                written = [:]
                dirty = true
            } catch .cancelled {
                break
            } catch {
                // Unreachable, or a write with an unknown outcome: try again soon (a put is
                // idempotent); nothing is withdrawn meanwhile.
                state.lastError = "\(error)"
                state.errors += 1
                logger.warning("cluster publisher: \(error)")
                dirty = true
                try? await Task.sleep(for: min(pause, interval))
                pause = min(pause * 2, interval)
            }
        }
    }

    /// Revokes the lease: peers withdraw this node and its pods at once (a graceful leave).
    public func leave() async {
        guard let id = lease else { return }
        lease = nil
        written = [:]
        try? await client.revokeLease(id, timeout: .seconds(2))
    }

    private func acquireLease() async throws(EtcdError) {
        if let id = resumeLease {
            resumeLease = nil
            if let ttlLeft = try? await client.keepAliveOnce(id), ttlLeft > 0 {
                lease = id
                logger.info("cluster lease \(id) of the previous run is alive; keeping it")
            }
        }
        if lease == nil {
            let granted = try await client.grantLease(ttl: ttl)
            lease = granted.id
            grants += 1
            if grants > 1 { state.regrants += 1 }
        }
        // What the store already holds of ours on this lease need not be written again; keys of
        // ours on another lease (a previous run's) are put again, and unwanted ones deleted.
        let mine =
            try await client.range(.prefix(keys.endpoints(of: nodeName))).kvs
            + client.range(.key(keys.node(nodeName))).kvs
        written = [:]
        for kv in mine {
            written[kv.keyString] = kv.lease == lease ? kv.value : []
        }
        dirty = true
    }

    /// Writes what differs between `desired` and `written`, 64 operations per transaction.
    private func sync() async throws(EtcdError) {
        guard let lease else { return }
        dirty = false
        var ops: [(String, TxnOp, [UInt8]?)] = []
        for (k, v) in desired where written[k] != v {
            ops.append((k, .put(key: Array(k.utf8), value: v, lease: lease), v))
        }
        for k in written.keys where desired[k] == nil {
            ops.append((k, .delete(.key(Array(k.utf8))), nil))
        }
        // The node record first: peers learn the node before its pods.
        let nodeKey = keys.node(nodeName)
        ops.sort { ($0.0 == nodeKey ? 0 : 1, $0.0) < ($1.0 == nodeKey ? 0 : 1, $1.0) }
        var i = 0
        while i < ops.count {
            let batch = ops[i..<min(i + 64, ops.count)]
            _ = try await client.txn([], success: batch.map(\.1))
            for (k, _, v) in batch {
                if let v { written[k] = v } else { written.removeValue(forKey: k) }
            }
            i += 64
        }
    }

    private func markDirty() {
        dirty = true
        wake()
    }

    private func wake() {
        waiter?.resume()
        waiter = nil
    }

    private func waitForWork(until deadline: ContinuousClock.Instant) async {
        guard !dirty, !Task.isCancelled else { return }
        let timer = Task { [weak self] in
            try? await Task.sleep(until: deadline)
            await self?.wake()
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { waiter = $0 }
        } onCancel: {
            Task { await self.wake() }
        }
        timer.cancel()
    }
}
