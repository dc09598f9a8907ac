// `vrouterd run`: the node service. It builds the tables from the config, makes each
// pod's tap (moved into the pod's namespace under the name the pod sees, with its MAC,
// MTU, addresses and default route), opens the fabric's AF_PACKET rings, and starts one
// pinned worker per configured core, each with a NUMA-local pool, its own io_uring loop,
// its own flow cache and a queue of every port. The control side resolves underlay
// neighbours by ARP and publishes new tables when they change. Everything set up is
// undone on a failed start and on stop.

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

public final class NodeService: @unchecked Sendable {  // Safe: mutable state is behind `state` or owned by one thread.
    public let config: NodeConfig
    let log: Logger
    public let publication: TablePublication
    let state: Mutex<ControlState>
    let portIDs: [String: UInt16]
    let stopping = Atomic<Bool>(false)
    private(set) var workers: [Worker] = []
    /// The workers' AF_PACKET sockets on the fabric, for their kernel-side drop counts.
    private(set) var fabricSockets: [AFPacketPort] = []
    let started = Date()
    /// The state directory's writer, when the node keeps state across restarts (set
    /// before `start`).
    public var persistence: StatePersistence?
    private var replaying = false

    /// Appends a change to the state journal (called with the state locked), and writes a
    /// new snapshot when the journal has grown long.
    func journal(_ record: StateRecord, _ s: ControlState) {
        guard let p = persistence, !replaying else { return }
        do {
            try p.append(record)
            if p.journalLength >= StatePersistence.compactAfter { try snapshot(s) }
        } catch {
            log.error("state not saved", metadata: ["error": "\(error)"])
        }
    }

    /// Applies journal records saved before a restart (they were validated when made).
    public func replay(_ records: [StateRecord]) {
        replaying = true
        defer { replaying = false }
        // Pod records fold into each container's last state, applied after everything
        // else: a pod attached and released many times since the snapshot costs nothing,
        // instead of making and removing its devices once per journaled change.
        var pods: [String: PodRecord?] = [:]
        for r in records {
            do {
                switch r {
                case .addVRF(let v): _ = try addVRF(v)
                case .deleteVRF(let n): try deleteVRF(n)
                case .routes(let vrf, let c): _ = try changeRoutes(vrf: vrf, c)
                case .addNode(let n): try addRemoteNode(n)
                case .deleteNode(let n): try deleteRemoteNode(n)
                case .addInterface(let i): _ = try addInterface(i)
                case .deleteInterface(let n): try deleteInterface(n)
                case .network(let n): try replayNetwork(n)
                case .deleteNetwork(let k): try replayDeleteNetwork(k)
                case .pod(let p): pods[p.containerID] = .some(p)
                case .podReleased(let c): pods[c] = .some(nil)
                }
            } catch {
                log.error("a saved change no longer applies", metadata: ["change": "\(r)", "error": "\(error)"])
            }
        }
        for (cid, p) in pods.sorted(by: { $0.key < $1.key }) {
            if let p { replayPod(p) } else { replayPodReleased(cid) }
        }
    }

    /// Writes the whole node to the state directory (and empties the journal).
    public func saveSnapshot() throws(ServiceError) {
        guard persistence != nil else { return }
        try state.withLock { s throws(ServiceError) in try snapshot(s) }
    }

    private func snapshot(_ s: ControlState) throws(ServiceError) {
        guard let p = persistence else { return }
        var routes: [String: [String]] = [:]
        var auto4: Set<IPv4Prefix> = []
        var auto6: Set<IPv6Prefix> = []
        for i in s.config.interfaces {
            if let a = i.ipv4 { auto4.insert(IPv4Prefix(a, length: 32)!) }
            if let a = i.ipv6 { auto6.insert(IPv6Prefix(a, length: 128)!) }
        }
        let pods = Dictionary(s.compiled.podNexthops.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a })
        let nodes = Dictionary(s.compiled.nodeNexthops.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a })
        func line(_ prefix: String, _ t: RouteTarget) -> String? {
            switch s.builder.nexthops[t.nexthop] {
            case .encap?: return pods[t.nexthop].map { "\(prefix) interface \($0)" }
            case .tunnel(let e, _, _, _, _)?:
                return nodes[t.nexthop].map { "\(prefix) via \($0) \(e == .vxlan ? "vni" : "label") \(t.label)" }
            case .composite(let ms)?:
                var l = "\(prefix) ecmp"
                for m in ms {
                    guard let n = nodes[m.nexthop], case .tunnel(let e, _, _, _, _)? = s.builder.nexthops[m.nexthop]
                    else { return nil }
                    l += " \(n) \(e == .vxlan ? "vni" : "label") \(m.label)"
                }
                return l
            case .discard?: return "\(prefix) discard"
            case .receive?, nil: return nil  // gateway routes come back with their VRF
            }
        }
        for v in s.builder.vrfs.values {
            var lines: [String] = []
            for (p, t) in v.routes4 where !auto4.contains(p) { if let l = line(p.description, t) { lines.append(l) } }
            for (p, t) in v.routes6 where !auto6.contains(p) { if let l = line(p.description, t) { lines.append(l) } }
            if !lines.isEmpty { routes[v.name] = lines }
        }
        var config = s.config
        for k in config.vrfs.indices { config.vrfs[k].routes = [] }
        let cni: Data
        do { cni = try JSONEncoder().encode(cniSnapshot(s)) } catch { throw ServiceError("state snapshot: \(error)") }
        try p.snapshot(config, routes: routes, extra: ["cni.json": cni])
    }
    private(set) var resolver: NeighbourResolver?
    /// The totals when the workers stopped (their counters go with them).
    private var finalStats: NodeStats?

    struct ControlState {
        var builder: TableBuilder
        var compiled: CompiledNode
        /// The node as it is now (the file's config plus every API change; routes live in
        /// the builder, not here).
        var config: NodeConfig
        var taps: [String: TapPort] = [:]
        var vnis: [String: UInt32] = [:]
        /// Networks (NADs), pods and their addresses.
        var cni = CNIState()
    }

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
        var builder = compiled.builder
        publication = TablePublication(builder.build())
        portIDs = compiled.portIDs
        var vnis: [String: UInt32] = [:]
        for v in config.vrfs { if let n = v.vni { vnis[v.name] = n } }
        var cni = CNIState()
        cni.pools = Self.defaultPools(config)
        state = Mutex(ControlState(builder: builder, compiled: compiled, config: config, vnis: vnis, cni: cni))
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

    // MARK: Ports

    private func startPorts() throws(ServiceError) {
        let queues = config.workers
        for itf in config.interfaces where itf.kind == .pod && itf.tap != nil {
            do {
                let tap = try makeTap(itf, queues: queues)
                state.withLock { $0.taps[itf.name] = tap }
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

    /// The pod's tap: a persistent one that survived a restart (or a crash) is re-attached
    /// inside the pod's namespace as it is; otherwise a new one is made and moved there.
    func makeTap(
        _ itf: NodeConfig.Interface,
        queues: Int,
        reattach: Bool = true,
        gateways: (IPv4Address?, IPv6Address?)? = nil
    )
        throws(SystemError) -> TapPort
    {
        let t = itf.tap!
        let ns = t.netns.map { NetworkNamespace.at($0) } ?? .current
        let ifname = t.ifname ?? t.name
        if t.persistent, reattach, let existing = try? TapPort.attach(name: ifname, in: ns, queues: queues) {
            log.info(
                "re-attached persistent tap",
                metadata: ["interface": "\(itf.name)", "netns": "\(ns)", "ifname": "\(ifname)"]
            )
            return existing
        }
        if !reattach, t.persistent, ns != .current {
            // A new pod interface (CNI ADD) is made in the pod's namespace under its final
            // name: moving a device between namespaces costs the kernel a synchronize_net()
            // (15-20 ms each here, measured with strace), which four interfaces made
            // the biggest part of an ADD. The tap's fd then keeps the namespace alive
            // until DEL closes it, as a re-attached tap's does after a restart.
            let tap = try TapPort.create(name: ifname, in: ns, persistent: true, queues: queues)
            do {
                try tap.configure(tapConfiguration(itf, name: ifname, gateways: gateways))
            } catch {
                try? tap.delete()
                throw error
            }
            log.debug("tap ready", metadata: ["interface": "\(itf.name)", "netns": "\(ns)", "ifname": "\(ifname)"])
            return tap
        }
        let tap = try TapPort.create(name: t.name, persistent: t.persistent, queues: queues)
        do {
            if ns == .current && ifname == t.name {
                try tap.configure(tapConfiguration(itf, name: ifname, gateways: gateways))
            } else {
                try tap.move(to: ns, tapConfiguration(itf, name: ifname, gateways: gateways))
            }
        } catch {
            // Only what we made goes: the tap by its fd (wherever the failed step left it).
            // A device of the pod's name that was there before (the move failed on it) stays.
            try? tap.delete()
            throw error
        }
        log.info("tap ready", metadata: ["interface": "\(itf.name)", "netns": "\(ns)", "ifname": "\(ifname)"])
        return tap
    }

    /// `gateways`: the default route's (the VRF's gateways from the config file otherwise).
    func tapConfiguration(
        _ itf: NodeConfig.Interface,
        name: String,
        gateways: (IPv4Address?, IPv6Address?)? = nil
    )
        -> TapPort.Configuration
    {
        var addresses: [InterfaceAddress] = []
        var routes: [Route] = []
        let fromConfig = config.vrfs.first { $0.name == itf.vrf }
        let vrf =
            (gateway4: gateways?.0 ?? fromConfig?.gateway4, gateway6: gateways?.1 ?? fromConfig?.gateway6)
            as (gateway4: IPv4Address?, gateway6: IPv6Address?)?
        if let a = itf.ipv4 { addresses.append(InterfaceAddress(.v4(a), prefixLength: itf.ipv4PrefixLength)) }
        if let a = itf.ipv6 { addresses.append(InterfaceAddress(.v6(a), prefixLength: itf.ipv6PrefixLength)) }
        if itf.defaultRoute {
            if itf.ipv4 != nil, let g = vrf?.gateway4 { routes.append(Route(.defaultIPv4, via: .v4(g), onlink: true)) }
            if itf.ipv6 != nil, let g = vrf?.gateway6 { routes.append(Route(.defaultIPv6, via: .v6(g), onlink: true)) }
        }
        return TapPort.Configuration(name: name, mac: itf.mac, mtu: itf.mtu, addresses: addresses, routes: routes)
    }

    // MARK: Workers

    private func startWorkers() throws(ServiceError) {
        let cpus = CPU.allowed
        let fabric = config.interfaces.first { $0.kind == .fabric }
        for w in 0..<config.workers {
            // Leave the first CPU to the control thread when there is more than one.
            let cpu = cpus.count > 1 ? cpus[(w + 1) % cpus.count] : cpus.first
            var tapQueues: [(UInt16, TapPort, Int)] = []
            for (name, tap) in state.withLock({ $0.taps }) { tapQueues.append((portIDs[name]!, tap, w)) }
            var af: (UInt16, AFPacketPort)?
            if let fabric, let device = fabric.device {
                do {
                    var c = AFPacketPort.Configuration()
                    if config.workers > 1 { c.fanoutGroup = UInt16(truncatingIfNeeded: getpid()) }
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
        log.info("forwarding", metadata: ["workers": "\(config.workers)", "ports": "\(portIDs.count)"])
    }

    private func startResolver() {
        guard let fabric = config.interfaces.first(where: { $0.kind == .fabric }), fabric.device != nil else { return }
        resolver = NeighbourResolver(service: self, fabric: fabric)
        resolver?.start()
    }

    /// Stops the workers and resolver, closes the ports, removes non-persistent taps.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        resolver?.stop()
        resolver = nil
        for w in workers { w.stop() }
        for w in workers { w.join() }
        if !workers.isEmpty { finalStats = collectStats() }
        workers.removeAll()
        fabricSockets.removeAll()
        let (taps, interfaces) = state.withLock { s in
            defer { s.taps.removeAll() }
            return (s.taps, s.config.interfaces)
        }
        for (name, tap) in taps {
            if interfaces.first(where: { $0.name == name })?.tap?.persistent == true {
                tap.close()
            } else {
                do { try tap.delete() } catch { log.warning("removing tap failed", metadata: ["error": "\(error)"]) }
            }
        }
    }

    /// Applies a change to the model and publishes the new tables to the workers.
    func update(_ change: (inout TableBuilder, CompiledNode) throws -> Void) rethrows {
        try state.withLock { s in
            try change(&s.builder, s.compiled)
            publication.publish(s.builder.build())
        }
    }

    /// Every worker's counters (read while they run: plain per-worker values).
    public var workerCounters: [Counters] { workers.map(\.counters) }

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
        let (interfaces, ids) = state.withLock { ($0.config.interfaces, $0.compiled.portIDs) }
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
