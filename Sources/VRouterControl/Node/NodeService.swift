// `vrouterd run`: the node service. It builds the tables from the config, makes each
// pod's tap (moved into the pod's namespace under the name the pod sees, with its MAC,
// MTU, addresses and default route), opens the fabric's AF_PACKET rings, and starts one
// pinned worker per configured core, each with a NUMA-local pool, its own io_uring loop,
// its own flow cache and a queue of every port. The control side resolves underlay
// neighbours by ARP and publishes new tables when they change. Everything set up is
// undone on a failed start and on stop.
//
// The node's state is in three parts, each with one lock and one writer (see ARCHITECTURE.md):
//   attachments  networks, pods and their addresses (PodAttachments: pure, no I/O)
//   ports        the set of interfaces and their devices (Ports: the only device I/O)
//   tables       the forwarding model and its publication (Tables: the only publisher)
// A request plans under a short lock, does slow work (devices, workers, the journal's
// fsync, the cluster store) outside every lock, and commits under a short lock; no code
// holds two parts' locks, except a snapshot (all three, in that order). So requests
// overlap, and reads never wait behind a device being made.

import CVRouterShims
import Foundation
import Logging
import Synchronization
import VRouterAPI
import VRouterCore
import VRouterIO

public struct ServiceError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

public final class NodeService: @unchecked Sendable {  // Safe: state is in the parts; workers are set before serving.
    public let config: NodeConfig
    let log: Logger
    let journal: Journal
    let tables: Tables
    let ports: Ports
    let attachments: Mutex<PodAttachments>
    /// Where the cluster store plugs in; alone, the embedded default.
    let cluster: any ClusterStore
    /// In cluster mode: the etcd store, and the agent that learns the other nodes.
    let etcd: EtcdStore?
    private(set) var clusterAgent: ClusterAgent?
    /// The config's ports by name (the fabric's id is fixed for the node's life).
    let portIDs: [String: UInt16]
    let stopping = Atomic<Bool>(false)
    private(set) var workers: [Worker] = []
    /// The workers' AF_PACKET sockets on the fabric, for their kernel-side drop counts.
    private(set) var fabricSockets: [AFPacketPort] = []
    let started = Date()
    private(set) var resolver: NeighbourResolver?
    /// The totals when the workers stopped (their counters go with them).
    private var finalStats: NodeStats?

    /// The state directory's writer, when the node keeps state across restarts (set before
    /// `start`).
    public var persistence: StatePersistence? {
        get { journal.persistence }
        set { journal.persistence = newValue }
    }

    /// The tables the workers see.
    public var publication: TablePublication { tables.publication }

    /// `requireLivePorts: false` lets a node without live ports run (tests, a control-only
    /// node): interfaces without a tap or device are modelled but not opened.
    public init(config: NodeConfig, logger: Logger, requireLivePorts: Bool = true) throws(ServiceError) {
        let config = Self.droppingVanishedPods(config, logger)
        self.config = config
        log = logger
        if requireLivePorts { try Privileges.check(for: config) }
        for itf in config.interfaces where requireLivePorts {
            switch itf.kind {
            case .pod where itf.tap == nil:
                throw ServiceError(
                    "interfaces.\(itf.name): a pod interface needs a tap (name, netns, ifname) to run live"
                )
            case .fabric where itf.device == nil:
                throw ServiceError("interfaces.\(itf.name): the fabric interface needs a device to run live")
            default: break
            }
            if let ns = itf.tap?.netns, !NetworkNamespace.at(ns).exists {
                throw ServiceError("interfaces.\(itf.name): network namespace '\(ns)' does not exist")
            }
            // Before any tap is made, so a wrong device name leaves nothing to undo.
            if itf.kind == .fabric, let device = itf.device {
                do {
                    _ = try NetworkNamespace.current.netlink().link(device)
                } catch  where error.errno == ENODEV {
                    throw ServiceError(
                        "interfaces.\(itf.name): device '\(device)' does not exist in this network namespace"
                    )
                } catch {
                    throw ServiceError("interfaces.\(itf.name): device \(device): \(error.description)")
                }
            }
        }
        let compiled: CompiledNode
        do { compiled = try config.makeTables() } catch { throw ServiceError(error.description) }
        journal = Journal(log: logger)
        tables = Tables(compiled, config: config, journal: journal)
        ports = Ports(config.interfaces, log: logger)
        portIDs = compiled.portIDs
        var a = PodAttachments()
        if let settings = config.cluster {
            let etcd = try EtcdStore(settings, node: Self.clusterRecord(config), log: logger)
            etcd.vniOfVRF.withLock { [tables] in $0 = Hook { vrf in tables.read { $0.vnis[vrf] } } }
            self.etcd = etcd
            cluster = etcd
            if let d = config.defaultNetwork { a.pools[d.name] = Self.clusterPools(d, etcd, logger) }
        } else {
            etcd = nil
            cluster = LocalStore(slice: config.ipamSlice, slices: config.ipamSlices)
            if let d = config.defaultNetwork { a.pools[d.name] = Self.defaultPools(d, config) }
        }
        attachments = Mutex(a)
        etcd?.heldHere.withLock { $0 = Hook { [weak self] claim in self?.holdsClaim(claim) ?? true } }
    }

    /// Makes the ports and starts the workers. On failure everything made is undone.
    public func start() throws(ServiceError) {
        do {
            try startPorts()
            try startWorkers()
            startResolver()
        } catch {
            stop()
            throw error
        }
    }

    /// In cluster mode: publishes this node and its pods and starts learning the others'
    /// (after `start` and the journal's replay, so the local state is whole).
    public func startCluster() {
        guard let etcd, clusterAgent == nil else { return }
        if let dir = persistence?.directory { etcd.restoreLocalState(from: dir) }
        let local = attachments.withLock { a in a.pods.values.filter { $0.releasing != true } }
        // Before the control API serves: no ADD can claim meanwhile.
        etcd.reconcileClaims(of: local)
        let agent = ClusterAgent(service: self, store: etcd, log: log)
        clusterAgent = agent
        agent.start(localPods: local)
    }

    /// Waits for a change's journal record to be durable (a snapshot when the journal has
    /// grown long).
    func sync(_ ticket: Journal.Ticket) {
        journal.sync(ticket) { p throws(ServiceError) in try writeSnapshot(locked: p) }
    }

    // MARK: Ports

    private func startPorts() throws(ServiceError) {
        let queues = config.workers
        for itf in config.interfaces where itf.kind == .pod && itf.tap != nil {
            guard let port = PodPort(itf) else { continue }
            let vrf = config.vrfs.first { $0.name == itf.vrf }
            do {
                let tap = try ports.makeTap(
                    port,
                    queues: queues,
                    reattach: true,
                    gateways: (vrf?.gateway4, vrf?.gateway6)
                )
                ports.adopt(itf.name, tap)
            } catch {
                throw ServiceError("interfaces.\(itf.name): \(error.description)")
            }
        }
        if let fabric = config.interfaces.first(where: { $0.kind == .fabric }), let device = fabric.device {
            do {
                let nl = try NetworkNamespace.current.netlink()
                let link = try nl.link(device)
                if link.mac != fabric.mac { try nl.setMAC(device, fabric.mac) }
                if link.mtu != UInt32(fabric.mtu) { try nl.setMTU(device, fabric.mtu) }
                try nl.setUp(device)
            } catch {
                throw ServiceError("interfaces.\(fabric.name): device \(device): \(error.description)")
            }
        }
    }

    // MARK: Workers

    private func startWorkers() throws(ServiceError) {
        let cpus = CPU.allowed
        let fabric = config.interfaces.first { $0.kind == .fabric }
        let ids = tables.read { $0.compiled.portIDs }
        for w in 0..<config.workers {
            // Leave the first CPU to the control thread when there is more than one.
            let cpu = cpus.count > 1 ? cpus[(w + 1) % cpus.count] : cpus.first
            var tapQueues: [(UInt16, TapPort, Int)] = []
            for (name, tap) in ports.taps { if let id = ids[name] { tapQueues.append((id, tap, w)) } }
            var af: (UInt16, AFPacketPort)?
            if let fabric, let device = fabric.device {
                do {
                    var c = AFPacketPort.Configuration()
                    if config.workers > 1 {
                        c.fanoutGroup = UInt16(truncatingIfNeeded: getpid())
                        // Replies of translated flows go to the worker that owns their port.
                        if let r = config.snat {
                            c.fanoutSteering = FanoutSteering.program(first: r.first, last: r.last)
                        }
                    }
                    // Trains from peers are always taken; sending them is the offload.
                    c.vnetHeader = true
                    c.sendsTrains = fabric.offloads
                    af = (portIDs[fabric.name]!, try AFPacketPort.open(interface: device, configuration: c))
                } catch {
                    throw ServiceError("interfaces.\(fabric.name): \(error.description)")
                }
            }
            do {
                let worker = try Worker.start(
                    index: w,
                    cpu: cpu,
                    service: self,
                    taps: tapQueues,
                    fabric: af
                )
                workers.append(worker)
                if let af { fabricSockets.append(af.1) }
            } catch {
                throw ServiceError("worker \(w): \(error.description)")
            }
        }
        log.info("forwarding", metadata: ["workers": "\(config.workers)", "ports": "\(ids.count)"])
    }

    private func startResolver() {
        guard let fabric = config.interfaces.first(where: { $0.kind == .fabric }), fabric.device != nil else { return }
        resolver = NeighbourResolver(service: self, fabric: fabric)
        resolver?.start()
    }

    /// Stops the workers and resolver, closes the ports, removes non-persistent taps.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        clusterAgent?.stop()
        clusterAgent = nil
        resolver?.stop()
        resolver = nil
        for w in workers { w.stop() }
        for w in workers { w.join() }
        if !workers.isEmpty { finalStats = collectStats() }
        workers.removeAll()
        fabricSockets.removeAll()
        for (tap, persistent) in ports.removeAll() {
            if persistent {
                tap.close()
            } else {
                do { try tap.delete() } catch { log.warning("removing tap failed", metadata: ["error": "\(error)"]) }
            }
        }
    }

    /// Applies a change to the model and publishes the new tables to the workers (the
    /// neighbour resolver's MACs: not journaled, they are learnt again).
    func update(_ change: (inout TableBuilder, CompiledNode) throws -> Void) throws(APIError) {
        try tables.change { m throws(APIError) in
            do { try change(&m.builder, m.compiled) } catch { throw APIError(500, "\(error)") }
        }
    }

    /// Every worker's counters (read while they run: plain per-worker values).
    public var workerCounters: [Counters] { workers.map(\.counters) }

    /// Fabric SNAT over the workers, by protocol (tcp, udp, icmp): translated flows alive
    /// and ports in use (a port counts once per worker; workers own disjoint ports).
    public func snatStats() -> [(String, SNATProtocolStats)] {
        [("tcp", IPProtocol.tcp), ("udp", IPProtocol.udp), ("icmp", IPProtocol.icmp)].map { name, proto in
            var total = SNATProtocolStats()
            for w in workers {
                let s = w.nat.stats(proto: proto)
                total.flows += s.flows
                total.portsInUse += s.portsInUse
            }
            return (name, total)
        }
    }

    /// Totals over the workers while they run; after `stop()`, the totals they stopped with.
    public func stats() -> NodeStats { finalStats ?? collectStats() }

    /// One line of totals per port and drop reason, summed over the workers (for logs).
    public func statsLine() -> String { stats().line }

    private func collectStats() -> NodeStats {
        // Pipeline counters are plain per-worker values read while they run (a torn read
        // costs one stale count in a log line); the port layer's come from each worker's
        // last snapshot.
        let cs = workers.map(\.counters)
        let io = workers.map { $0.io.withLock { $0 } }
        var stats = NodeStats()
        let interfaces = ports.interfaces
        let ids = tables.read { $0.compiled.portIDs }
        for itf in interfaces {
            guard let id = ids[itf.name] else { continue }
            var p = NodeStats.Port(name: itf.name)
            for c in cs {
                p.rx += c.ports[Int(id)].rxPackets
                p.tx += c.ports[Int(id)].txPackets
                p.drops += c.ports[Int(id)].drops
            }
            for s in io {
                guard let c = s.ports[id] else { continue }
                p.ioRxDrops += c.rxDrops
                p.ioRxErrors += c.rxErrors
                p.ioTxDrops += c.txDrops
                p.ioTxErrors += c.txErrors
                if s.dead.contains(id) { p.dead = true }
            }
            stats.ports.append(p)
        }
        for r in DropReason.allCases {
            let n = cs.reduce(UInt64(0)) { $0 + $1.dropCount(r) }
            if n > 0 { stats.drops.append((r.name, n)) }
        }
        stats.readsRetried = io.reduce(0) { $0 + $1.loop.readsRetried }
        return stats
    }
}

/// What the node did, summed over its workers.
public struct NodeStats: Sendable {
    public struct Port: Sendable {
        public var name: String
        /// The pipeline's view: frames received, frames it sent to this port, frames
        /// received here that it dropped (each also counted under its drop reason).
        public var rx: UInt64 = 0
        public var tx: UInt64 = 0
        public var drops: UInt64 = 0
        /// The port layer's view: frames that never reached the pipeline (too big, pool
        /// empty), failed reads, frames the pipeline sent that never reached the kernel
        /// (TX ring full, port dead), failed writes.
        public var ioRxDrops: UInt64 = 0
        public var ioRxErrors: UInt64 = 0
        public var ioTxDrops: UInt64 = 0
        public var ioTxErrors: UInt64 = 0
        /// The port stopped (its device went away, or its reads kept failing).
        public var dead = false
    }
    public var ports: [Port] = []
    /// Drop reasons seen (name, count), in DropReason order.
    public var drops: [(name: String, count: UInt64)] = []
    /// Tap reads io_uring completed with EAGAIN and the loop re-armed (load, not loss).
    public var readsRetried: UInt64 = 0

    /// `<port> rx=N tx=N drop=N [io_rx_drop=N io_rx_error=N io_tx_drop=N io_tx_error=N]
    /// [dead] ... <reason>=N ...`: the port-layer fields only where not zero.
    public var line: String {
        var parts: [String] = []
        for p in ports {
            var s = "\(p.name) rx=\(p.rx) tx=\(p.tx) drop=\(p.drops)"
            for (k, v) in [
                ("io_rx_drop", p.ioRxDrops), ("io_rx_error", p.ioRxErrors), ("io_tx_drop", p.ioTxDrops),
                ("io_tx_error", p.ioTxErrors),
            ] where v > 0 { s += " \(k)=\(v)" }
            if p.dead { s += " dead" }
            parts.append(s)
        }
        for (name, n) in drops { parts.append("\(name)=\(n)") }
        return parts.joined(separator: " ")
    }
}
