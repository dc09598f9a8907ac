// The node's side of the cluster, running beside the control API: it keeps the node's
// records on its lease (ClusterPublisher) and turns what the other nodes publish into this
// node's tables (ClusterWatcher's intents): one tunnel nexthop per remote node, one route per
// remote pod address in its network's VRF (with the pod's MPLS label, or the network's VNI on
// VXLAN), networks applied or deleted anywhere applied or deleted here.
//
// Level-triggered: intents update the wanted state (nodes, endpoints), then `reconcile`
// makes the tables equal to it, so a resync after a broken watch (which sweeps what went away)
// and a plain event take the same path, and a change that failed is tried again on the next
// update. Nothing is withdrawn because etcd is away: the watcher only reports deletions it has
// seen (a lease that expired, a record removed) or a listing that no longer holds a record.
//
// The tables are changed through the node's own calls (addRemoteNode, changeRoutes…), which
// block on the journal and on the store; they run on a serial queue of their own, never on
// the concurrency pool.

import Dispatch
import Foundation
import Logging
import Synchronization
import VRouterAPI
import VRouterCluster
import VRouterCore
import VRouterEtcd

final class ClusterAgent: @unchecked Sendable {  // Safe: mutable state only on `queue`.
    private weak var service: NodeService?
    let store: EtcdStore
    let watcher: ClusterWatcher
    private let log: Logger
    private let queue = DispatchQueue(label: "vrouterd.cluster")
    private var tasks: [Task<Void, Never>] = []

    // On `queue`: what the store says, and what is programmed.
    private var wantedNodes: [String: NodeRecord] = [:]
    private var wantedEndpoints: [String: EndpointRecord] = [:]
    private var programmedNodes: [String: NodeRecord] = [:]
    /// "vrf|prefix" → the route and the node it goes through.
    private var programmedRoutes: [String: ProgrammedRoute] = [:]
    private let counters = Mutex(ClusterRouteCounters())

    init(service: NodeService, store: EtcdStore, log: Logger) {
        self.service = service
        self.store = store
        self.log = log
        watcher = ClusterWatcher(client: store.client, keys: store.keys, localNode: store.nodeName, logger: log)
    }

    /// Publishes the node and its pods, and starts learning the others'.
    func start(localPods: [PodRecord]) {
        if let service { queue.sync { adopt(service) } }
        let endpoints = localPods.flatMap { store.endpoints($0) }
        let publisher = store.publisher
        tasks.append(
            Task {
                await publisher.replaceEndpoints(endpoints)
                await publisher.run()
            }
        )
        tasks.append(
            Task { [weak self] in
                guard let watcher = self?.watcher else { return }
                await watcher.run { update in await self?.deliver(update) }
            }
        )
        tasks.append(
            Task { [store] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    await store.retryReleases()
                }
            }
        )
    }

    /// Stops learning and publishing. The lease is left to expire (a restarted vrouterd takes
    /// its records over unchanged; a node that stays down is withdrawn after the TTL).
    func stop() {
        for t in tasks { t.cancel() }
        tasks = []
        store.client.close()
    }

    private func deliver(_ update: ClusterUpdate) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            queue.async {
                self.apply(update)
                done.resume()
            }
        }
    }

    // MARK: on the queue

    private func apply(_ update: ClusterUpdate) {
        guard let service else { return }
        service.ensureClusterPools()
        for intent in update.intents {
            switch intent {
            case .nodeUp(let n): wantedNodes[n.name] = n
            case .nodeDown(let name): wantedNodes[name] = nil
            case .endpointUp(let e): wantedEndpoints[Self.key(e)] = e
            case .endpointDown(let e): wantedEndpoints[Self.key(e)] = nil
            case .networkUp(let entry):
                do {
                    let r = try service.applyNetwork(entry.nad, fromCluster: true)
                    if r.action != "unchanged" {
                        log.info(
                            "network from the cluster",
                            metadata: ["network": "\(r.network)", "action": "\(r.action)"]
                        )
                    }
                } catch {
                    log.error(
                        "network from the cluster not applied",
                        metadata: ["network": "\(entry.key)", "error": "\(error)"]
                    )
                }
            case .networkDown(let key):
                do {
                    try service.deleteNetwork(namespace: key.namespace, name: key.name, force: false, fromCluster: true)
                    log.info("network deleted through the cluster", metadata: ["network": "\(key)"])
                } catch  where error.status == 404 {
                } catch {
                    log.error(
                        "network deleted in the cluster kept here",
                        metadata: ["network": "\(key)", "error": "\(error)"]
                    )
                }
            }
        }
        reconcile(service)
    }

    /// A restart: the tunnels and routes learned before it are in the tables again (the
    /// state journal and snapshot kept them). The host routes through a tunnel in a network's
    /// VRF, and the remote nodes they go through, are taken as programmed, so that the first
    /// listing withdraws those that went away while this node was down (a pod deleted, a
    /// node gone); nothing else would, and they stayed routed for good. (The snapshot's
    /// config lists learned nodes beside configured ones, so only their routes tell them.)
    private func adopt(_ service: NodeService) {
        let vrfs = Set(
            ([service.config.defaultNetwork?.name] + service.attachments.withLock { $0.networks.values.map(\.vrf) })
                .compactMap { $0 }
        )
        var routes: [ProgrammedRoute] = []
        for vrf in vrfs {
            for r in (try? service.routes(vrf: vrf)) ?? [] {
                guard let via = r.via, r.kind == "vxlan" || r.kind == "mpls-udp",
                    r.prefix.hasSuffix(r.prefix.contains(":") ? "/128" : "/32")
                else { continue }
                var spec = RouteSpec(prefix: r.prefix, via: via)
                if r.kind == "vxlan" { spec.vni = r.vni } else { spec.label = r.label }
                routes.append(ProgrammedRoute(vrf: vrf, spec: spec, node: via))
            }
        }
        let vias = Set(routes.map(\.node))
        for n in service.remoteNodes() where vias.contains(n.name) {
            programmedNodes[n.name] = NodeRecord(name: n.name, underlay: n.address, encapsulations: [], bootID: "")
        }
        for r in routes where programmedNodes[r.node] != nil { programmedRoutes["\(r.vrf)|\(r.spec.prefix)"] = r }
        counters.withLock { $0.programmed = programmedRoutes.count }
    }

    private func reconcile(_ service: NodeService) {
        // 1. Tunnel nexthops for the nodes wanted. Only the underlay matters: a restarted node
        // (a new boot id, the same address) changes nothing here.
        for (name, n) in wantedNodes where programmedNodes[name] == nil {
            let encap = store.settings.encap == .vxlan ? "vxlan" : "mpls-udp"
            do {
                try service.addRemoteNode(RemoteNodeSpec(name: name, address: n.underlay, encap: encap))
                programmedNodes[name] = n
                log.info("remote node learned", metadata: ["node": "\(name)", "underlay": "\(n.underlay)"])
            } catch  where error.status == 409 && error.message.contains("exists") {
                programmedNodes[name] = n
            } catch {
                log.error("remote node not added", metadata: ["node": "\(name)", "error": "\(error)"])
            }
        }
        // 2. The routes wanted: every address of every endpoint whose node's tunnel is made
        // toward its current underlay and whose network this node has.
        var wanted: [String: ProgrammedRoute] = [:]
        for e in wantedEndpoints.values {
            guard let n = programmedNodes[e.node], wantedNodes[e.node]?.underlay == n.underlay else { continue }
            guard let (vrf, localVNI) = service.clusterVRF(of: e.network) else { continue }
            for a in e.addresses {
                let prefix = a.contains(":") ? "\(a)/128" : "\(a)/32"
                var spec = RouteSpec(prefix: prefix, via: e.node)
                switch store.settings.encap {
                case .vxlan:
                    guard let vni = e.vni ?? localVNI else { continue }
                    spec.vni = vni
                case .mplsOverUDP:
                    guard let label = e.label else { continue }
                    spec.label = label
                }
                wanted["\(vrf)|\(prefix)"] = ProgrammedRoute(vrf: vrf, spec: spec, node: e.node)
            }
        }
        // 3. The difference, one batch per VRF (a failed batch is tried route by route).
        var byVRF: [String: (add: [RouteSpec], delete: [String])] = [:]
        for (k, w) in wanted where programmedRoutes[k] != w {
            byVRF[w.vrf, default: ([], [])].add.append(w.spec)
        }
        for (k, p) in programmedRoutes where wanted[k] == nil {
            byVRF[p.vrf, default: ([], [])].delete.append(p.spec.prefix)
        }
        for (vrf, batch) in byVRF.sorted(by: { $0.key < $1.key }) {
            if changeRoutes(service, vrf, RouteChange(add: batch.add, delete: batch.delete)) {
                record(vrf, batch.add, batch.delete, wanted)
                continue
            }
            for spec in batch.add where changeRoutes(service, vrf, RouteChange(add: [spec])) {
                record(vrf, [spec], [], wanted)
            }
            for prefix in batch.delete {
                // A route already gone is as good as deleted.
                _ = changeRoutes(service, vrf, RouteChange(delete: [prefix]))
                record(vrf, [], [prefix], wanted)
            }
        }
        // 4. Tunnel nexthops no route needs any more: nodes gone, or moved to a new underlay
        // (made again toward it on the next pass).
        let used = Set(programmedRoutes.values.map(\.node))
        var moved = false
        for (name, n) in programmedNodes where wantedNodes[name]?.underlay != n.underlay && !used.contains(name) {
            do {
                try service.deleteRemoteNode(name)
            } catch  where error.status == 404 {
            } catch {
                log.error("remote node not removed", metadata: ["node": "\(name)", "error": "\(error)"])
                continue
            }
            programmedNodes[name] = nil
            if wantedNodes[name] != nil { moved = true }
            log.info("remote node withdrawn", metadata: ["node": "\(name)"])
        }
        if moved { reconcile(service) }
    }

    private func changeRoutes(_ service: NodeService, _ vrf: String, _ c: RouteChange) -> Bool {
        do {
            _ = try service.changeRoutes(vrf: vrf, c)
            return true
        } catch {
            log.warning("cluster routes not changed", metadata: ["vrf": "\(vrf)", "error": "\(error)"])
            return false
        }
    }

    private func record(
        _ vrf: String,
        _ added: [RouteSpec],
        _ deleted: [String],
        _ wanted: [String: ProgrammedRoute]
    ) {
        for s in added { programmedRoutes["\(vrf)|\(s.prefix)"] = wanted["\(vrf)|\(s.prefix)"] }
        for p in deleted { programmedRoutes["\(vrf)|\(p)"] = nil }
        counters.withLock {
            $0.learned += added.count
            $0.withdrawn += deleted.count
            $0.programmed = programmedRoutes.count
        }
    }

    static func key(_ e: EndpointRecord) -> String { "\(e.node)/\(e.pod)/\(e.interface)" }

    // MARK: reading

    /// The cluster as this node sees it (for `vrouterctl cluster`).
    func info() async -> ClusterInfo {
        let w = watcher.status
        let p = await store.publisher.status
        let routes = counters.withLock { $0 }
        let nodes: [ClusterNodeInfo] = await withCheckedContinuation { done in
            queue.async {
                var perNode: [String: Int] = [:]
                for r in self.programmedRoutes.values { perNode[r.node, default: 0] += 1 }
                var endpoints: [String: Int] = [:]
                for e in self.wantedEndpoints.values { endpoints[e.node, default: 0] += 1 }
                done.resume(
                    returning: self.wantedNodes.values.sorted { $0.name < $1.name }.map { n in
                        ClusterNodeInfo(
                            name: n.name,
                            underlay: n.underlay,
                            bootID: n.bootID,
                            endpoints: endpoints[n.name] ?? 0,
                            routes: perNode[n.name] ?? 0,
                            programmed: self.programmedNodes[n.name]?.underlay == n.underlay
                        )
                    }
                )
            }
        }
        return ClusterInfo(
            node: store.nodeName,
            endpoints: store.settings.endpoints,
            prefix: store.keys.root,
            connected: w.connected,
            endpoint: w.endpoint,
            revision: w.revision,
            resyncs: w.resyncs,
            compactions: w.compactions,
            watchRestarts: w.restarts,
            storeErrors: p.errors + store.errors.load(ordering: .relaxed),
            lastError: w.lastError ?? p.lastError,
            leaseID: p.leaseID.map { String($0, radix: 16) },
            leaseTTL: Int(p.ttl),
            leaseRegrants: p.regrants,
            publishPending: p.pending,
            skippedRecords: w.view.skippedNewer + w.view.skippedGarbage,
            routesProgrammed: routes.programmed,
            routesLearned: routes.learned,
            routesWithdrawn: routes.withdrawn,
            nodes: nodes
        )
    }
}

struct ProgrammedRoute: Equatable {
    var vrf: String
    var spec: RouteSpec
    var node: String
}

struct ClusterRouteCounters: Sendable {
    var learned = 0
    var withdrawn = 0
    var programmed = 0
}
