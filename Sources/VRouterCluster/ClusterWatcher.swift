// List, then watch from the list's revision; on any break (connection lost, member gone,
// leader lost, compaction, garbage on the stream) list again, diff against what was delivered
// (ClusterView's mark and sweep) and watch from the new revision. Never a loop on the same
// revision (each round starts from a fresh listing: flannel#2470, calico#4109) and never a
// flush (the view only withdraws what a successful listing no longer has). While etcd cannot
// be reached nothing is delivered, so nothing is withdrawn; the pauses between attempts grow
// from 100 ms to 5 s, so a dead store costs a few requests a second.
//
// Intents reach the consumer in batches through `deliver`, awaited before the next watch
// message is read: a slow consumer slows the watch (bounded memory), it never loses intents.

import Logging
import Synchronization
import VRouterEtcd

/// One batch of intents.
public struct ClusterUpdate: Sendable {
    public var intents: [ClusterIntent]
    /// The store revision the view now reflects.
    public var revision: Int64
    /// This batch ends a full listing: after it the consumer's state equals the store's.
    public var resynced: Bool
}

/// What the watcher reports to the operator.
public struct ClusterWatchStatus: Sendable, Equatable {
    public var connected = false
    /// Endpoint of the current watch.
    public var endpoint: String?
    public var revision: Int64 = 0
    /// Full listings after the first (each after a break or a compaction).
    public var resyncs = 0
    public var compactions = 0
    /// Watches (or listings) that ended in an error and were started again.
    public var restarts = 0
    public var lastError: String?
    public var view = ClusterViewCounters()
    public var remoteNodes = 0
    public var remoteEndpoints = 0
    public var networks = 0
    /// The lease each node's record is on, by node name.
    public var nodeLeases: [String: Int64] = [:]
}

public final class ClusterWatcher: Sendable {
    public let client: EtcdClient
    public let keys: ClusterKeys
    public let localNode: String
    /// Page size of listings (bounds one answer's size).
    public let pageSize: Int64
    private let logger: Logger
    private let state = Mutex(ClusterWatchStatus())

    public init(client: EtcdClient, keys: ClusterKeys, localNode: String, pageSize: Int64 = 2000, logger: Logger) {
        self.client = client
        self.keys = keys
        self.localNode = localNode
        self.pageSize = pageSize
        self.logger = logger
    }

    public var status: ClusterWatchStatus { state.withLock { $0 } }

    /// Runs until the task is cancelled.
    public func run(deliver: (ClusterUpdate) async -> Void) async {
        var view = ClusterView(keys: keys, localNode: localNode)
        var pause = Duration.milliseconds(100)
        var listings = 0
        while !Task.isCancelled {
            do {
                let (listing, revision) = try await list()
                let log = { (m: String) in self.logger.warning("\(m)") }
                let intents = view.replace(with: listing, log: log)
                listings += 1
                record(view, revision: revision, resync: listings > 1)
                await deliver(ClusterUpdate(intents: intents, revision: revision, resynced: true))
                pause = .milliseconds(100)
                try await client.watch(
                    WatchRequest(.prefix(keys.all), startRevision: revision + 1, progressNotify: true)
                ) { stream in
                    state.withLock {
                        $0.connected = true
                        $0.endpoint = stream.endpoint.description
                        $0.lastError = nil
                    }
                    for try await response in stream {
                        let intents = view.apply(response.events, log: log)
                        record(view, revision: response.header.revision, resync: false)
                        if !intents.isEmpty {
                            await deliver(
                                ClusterUpdate(intents: intents, revision: response.header.revision, resynced: false)
                            )
                        }
                    }
                }
            } catch is CancellationError {
                break
            } catch {
                if case .cancelled = error as? EtcdError { break }
                if Task.isCancelled { break }
                let compacted: Bool
                if case .compacted = error as? EtcdError { compacted = true } else { compacted = false }
                state.withLock {
                    $0.connected = false
                    $0.lastError = "\(error)"
                    $0.restarts += 1
                    if compacted { $0.compactions += 1 }
                }
                logger.warning("cluster watch ended, listing again: \(error)")
                // A compaction needs no pause: the next listing is at a new revision. Otherwise
                // the pause doubles up to a second, so etcd back is listed within a second (an
                // attempt against a member that is down costs one refused connection).
                if !compacted {
                    try? await Task.sleep(for: pause)
                    pause = min(pause * 2, .seconds(1))
                }
            }
        }
        state.withLock { $0.connected = false }
    }

    /// The whole prefix at one revision, in pages.
    func list() async throws -> ([KeyValue], Int64) {
        var all: [KeyValue] = []
        var start = Array(keys.all.utf8)
        let end = KeyRange.prefix(keys.all).rangeEnd ?? [0]
        var revision: Int64 = 0
        while true {
            let page = try await client.range(.range(from: start, to: end), revision: revision, limit: pageSize)
            if revision == 0 { revision = page.header.revision }
            all += page.kvs
            guard page.more, let last = page.kvs.last else { break }
            start = last.key + [0]
        }
        return (all, revision)
    }

    private func record(_ view: ClusterView, revision: Int64, resync: Bool) {
        state.withLock {
            $0.revision = revision
            if resync { $0.resyncs += 1 }
            $0.view = view.counters
            $0.remoteNodes = view.remoteNodes
            $0.remoteEndpoints = view.remoteEndpoints
            $0.networks = view.networks.count
            $0.nodeLeases = view.nodeLeases
        }
    }
}
