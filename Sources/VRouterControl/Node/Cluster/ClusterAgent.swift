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
    /// Tunnel nexthops made, by name (one per remote node and encapsulation in use).
    private var programmedTunnels: [String: Tunnel] = [:]
    /// "vrf|prefix" → the route and the node it goes through.
    private var programmedRoutes: [String: ProgrammedRoute] = [:]
    private let counters = Mutex(ClusterRouteCounters())
    /// Intents delivered and not yet applied, and whether a drain is queued.
    private var pending: [ClusterIntent] = []
    private var draining = false

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
                await watcher.run { update in self?.deliver(update) }
            }
        )
        tasks.append(
            Task { [store] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    await store.retryReleases()
                    await store.releaseStaleClaims()
                    await store.saveLocalState()
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

    /// Queues a batch of intents. Batches that arrive while the tables are being changed are
    /// applied together, with one reconcile: a burst of records (a node with thousands of
    /// pods, a resync) costs a few passes over the wanted state, not one per watch message.
    private func deliver(_ update: ClusterUpdate) {
        queue.async {
            self.pending += update.intents
            guard !self.draining else { return }
            self.draining = true
            self.queue.async { self.drain() }
        }
    }

    // MARK: on the queue

    private func drain() {
        let intents = pending
        pending = []
        draining = false
        apply(intents)
    }

    private func apply(_ intents: [ClusterIntent]) {
        guard let service else { return }
        service.ensureClusterPools()
        for intent in intents {
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
                // `via` is a tunnel's name: the node's, or "node+encap" (tunnelName).
                let node = via.split(separator: "+", maxSplits: 1).first.map(String.init) ?? via
                routes.append(ProgrammedRoute(vrf: vrf, spec: spec, node: node))
            }
        }
        let vias = Set(routes.compactMap(\.spec.via))
        for n in service.remoteNodes() where vias.contains(n.name) {
            let encap: TunnelEncap = n.encap == TunnelEncap.mplsOverUDP.name ? .mplsOverUDP : .vxlan
            let node = n.name.split(separator: "+", maxSplits: 1).first.map(String.init) ?? n.name
            programmedTunnels[n.name] = Tunnel(node: node, underlay: n.address, encap: encap)
        }
        for r in routes where programmedTunnels[r.spec.via ?? ""] != nil {
            programmedRoutes["\(r.vrf)|\(r.spec.prefix)"] = r
        }
        counters.withLock { $0.programmed = programmedRoutes.count }
    }

    private func reconcile(_ service: NodeService) {
        // 1. The routes wanted: every address of every endpoint whose node is alive and whose
        // network this node has, through the node's tunnel of the network's encapsulation.
        let defaultEncap = store.settings.encap
        var wanted: [String: ProgrammedRoute] = [:]
        var tunnels: [String: Tunnel] = [:]
        for n in wantedNodes.values {
            tunnels[n.name] = Tunnel(node: n.name, underlay: n.underlay, encap: defaultEncap)
        }
        for e in wantedEndpoints.values {
            guard let n = wantedNodes[e.node] else { continue }
            guard let (vrf, localVNI, encap) = service.clusterVRF(of: e.network) else { continue }
            let tunnel = Self.tunnelName(e.node, encap, default: defaultEncap)
            tunnels[tunnel] = Tunnel(node: e.node, underlay: n.underlay, encap: encap)
            for a in e.addresses {
                let prefix = a.contains(":") ? "\(a)/128" : "\(a)/32"
                var spec = RouteSpec(prefix: prefix, via: tunnel)
                switch encap {
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
        // 2. Tunnel nexthops for them. Only the underlay matters: a restarted node (a new boot
        // id, the same address) changes nothing here.
        for (name, t) in tunnels.sorted(by: { $0.key < $1.key }) where programmedTunnels[name] == nil {
            do {
                try service.addRemoteNode(RemoteNodeSpec(name: name, address: t.underlay, encap: t.encap.name))
                programmedTunnels[name] = t
                log.info(
                    "remote node learned",
                    metadata: ["node": "\(t.node)", "tunnel": "\(name)", "underlay": "\(t.underlay)"]
                )
            } catch  where error.status == 409 && error.message.contains("exists") {
                programmedTunnels[name] = t
            } catch {
                log.error("remote node not added", metadata: ["tunnel": "\(name)", "error": "\(error)"])
            }
        }
        // Routes go only through a tunnel made toward the node's current underlay.
        wanted = wanted.filter { programmedTunnels[$0.value.spec.via ?? ""] == tunnels[$0.value.spec.via ?? ""] }
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
        // 4. Tunnel nexthops no route needs any more: nodes gone, networks of another
        // encapsulation gone, or moved to a new underlay (made again toward it on the next pass).
        let used = Set(programmedRoutes.values.compactMap(\.spec.via))
        var moved = false
        for (name, t) in programmedTunnels where tunnels[name] != t && !used.contains(name) {
            do {
                try service.deleteRemoteNode(name)
            } catch  where error.status == 404 {
            } catch {
                log.error("remote node not removed", metadata: ["tunnel": "\(name)", "error": "\(error)"])
                continue
            }
            programmedTunnels[name] = nil
            if tunnels[name] != nil { moved = true }
            log.info("remote node withdrawn", metadata: ["node": "\(t.node)", "tunnel": "\(name)"])
        }
        if moved { reconcile(service) }
    }

    /// A remote node's tunnel of one encapsulation: the node's name for this node's default
    /// (`cluster.encap`), "NODE+ENCAP" for a network that names the other one.
    static func tunnelName(_ node: String, _ encap: TunnelEncap, default d: TunnelEncap) -> String {
        encap == d ? node : "\(node)+\(encap.name)"
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
                            lease: w.nodeLeases[n.name].flatMap { $0 == 0 ? nil : String($0, radix: 16) },
                            endpoints: endpoints[n.name] ?? 0,
                            routes: perNode[n.name] ?? 0,
                            programmed: self.programmedTunnels[n.name]?.underlay == n.underlay
                        )
                    }
                )
            }
        }
        return ClusterInfo(
            node: store.nodeName,
            underlay: store.underlay,
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

struct Tunnel: Equatable {
    var node: String
    var underlay: String
    var encap: TunnelEncap
}

struct ClusterRouteCounters: Sendable {
    var learned = 0
    var withdrawn = 0
    var programmed = 0
}
