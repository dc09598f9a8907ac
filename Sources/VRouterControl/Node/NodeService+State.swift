// The node across restarts: the journal's records replayed after a snapshot, snapshots
// written (all three parts' locks held, in the one order: attachments, ports, tables, so the
// saved node is one moment of it), and the networks and pods of a snapshot's cni.json. A
// snapshot keeps networks and pods in cni.json beside config.yaml (which already holds their
// VRFs and pod interfaces, so a restore only reloads records and rebuilds the address pools);
// the journal's network/pod records, replayed after it, make what they describe when it is
// missing (VRFs; taps, re-attached when they survived).

import Foundation
import Logging
import VRouterAPI
import VRouterCore
import VRouterIO

/// cni.json in a state snapshot.
public struct CNISnapshot: Codable, Sendable {
    public var networks: [NetworkRecord]
    public var pods: [PodRecord]
    /// ADDs under way when the snapshot was taken (their devices may exist, their records
    /// do not yet): undone on restart unless the journal after it completes them.
    public var adding: [PodRecord]?
}

extension NodeService {
    // MARK: replay

    /// A container's last state in the journal.
    private enum PodState {
        case attached(PodRecord)
        case released
        /// An ADD that never completed: what it made goes.
        case adding(PodRecord)
    }

    /// Applies journal records saved before a restart (they were validated when made).
    /// `adding`: the ADDs under way at the snapshot (its cni.json).
    public func replay(_ records: [StateRecord], adding: [PodRecord] = []) {
        journal.suspended {
            // Pod records fold into each container's last state, applied after everything
            // else: a pod attached and released many times since the snapshot costs nothing,
            // instead of making and removing its devices once per journaled change.
            // Each container's last state, applied in the order those records were written:
            // sandboxes of one pod share interface names, so an older sandbox's release must
            // come before a newer one's attachment (which then re-makes what it removed).
            var pods: [String: (order: Int, state: PodState)] = [:]
            for p in adding { pods[p.containerID] = (-1, .adding(p)) }
            for (order, r) in records.enumerated() {
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
                    case .pod(let p): pods[p.containerID] = (order, .attached(p))
                    case .podReleased(let c): pods[c] = (order, .released)
                    case .podAdding(let p): pods[p.containerID] = (order, .adding(p))
                    }
                } catch {
                    log.error("a saved change no longer applies", metadata: ["change": "\(r)", "error": "\(error)"])
                }
            }
            for (cid, (_, state)) in pods.sorted(by: { $0.value.order < $1.value.order }) {
                switch state {
                case .attached(let p): replayPod(p)
                case .released: _ = release(cid, forget: true)
                case .adding(let p): undoAdd(p)
                }
            }
        }
    }

    func replayNetwork(_ rec: NetworkRecord) throws(APIError) {
        if let old = attachments.withLock({ $0.networks[rec.key] }) {
            try tables.removeNetworkVRF(old)
            attachments.withLock { $0.forgetNetwork(old.key) }
        }
        let pools = rec.kind == .vrouter ? try cluster.pools(for: rec) : nil
        var made = rec
        if !(rec.kind == .vrouter && rec.vrf.map { vrf in tables.read { $0.compiled.vrfIDs[vrf] != nil } } == true) {
            made = try tables.addNetworkVRF(rec)
        }  // else the VRF came back with the snapshot
        attachments.withLock { a in
            a.finishApply(made, pools: pools)
            for p in a.pods.values { a.markAddresses(p, used: true) }
        }
    }

    func replayDeleteNetwork(_ key: String) throws(APIError) {
        guard let rec = attachments.withLock({ $0.networks[key] }) else { return }
        try tables.removeNetworkVRF(rec)
        attachments.withLock { $0.forgetNetwork(key) }
    }

    /// A pod record as it was journaled: the interfaces it lists are made (re-attached when
    /// they survived) and those it marks released are removed.
    func replayPod(_ rec: PodRecord) {
        attachments.withLock { a in
            if let old = a.pods[rec.containerID] { a.markAddresses(old, used: false) }
            a.pods[rec.containerID] = rec
            a.markAddresses(rec, used: true)
        }
        for a in rec.attachments where a.delegate == nil {
            guard let vif = a.interface else { continue }
            let present = tables.read { $0.compiled.portIDs[vif] != nil }
            if a.detached == true {
                if present { releasePorts([vif], container: rec.containerID) }
            } else if !present {
                guard NetworkNamespace.at(rec.netns).exists else {
                    log.warning(
                        "pod namespace gone; its interface waits for DEL",
                        metadata: ["pod": "\(rec.key)", "interface": "\(vif)"]
                    )
                    continue
                }
                guard let port = a.port(netns: rec.netns) else { continue }
                do { _ = try makePorts([port], reattach: true) } catch {
                    log.error(
                        "pod interface not restored",
                        metadata: ["pod": "\(rec.key)", "interface": "\(vif)", "error": "\(error.error)"]
                    )
                }
            }
        }
    }

    /// An ADD cut short by a crash: it was never answered and left no record, so the
    /// interfaces it may have made go (taps in the pod's namespace under the names it was
    /// giving them, and ports a snapshot taken meanwhile saved), as its DEL would have
    /// removed them. A container that has a record (the ADD replaced nothing it had) keeps it.
    func undoAdd(_ rec: PodRecord) {
        guard attachments.withLock({ $0.pods[rec.containerID] == nil }) else { return }
        let vifs = rec.attachments.compactMap { $0.delegate == nil ? $0.interface : nil }
        releasePorts(vifs, container: rec.containerID)
        let ns = NetworkNamespace.at(rec.netns)
        for a in rec.attachments where a.delegate == nil && a.interface != nil {
            do { try TapPort.delete(name: a.ifname, in: ns) } catch {
                log.warning(
                    "an ADD cut short: its interface name is taken by a device that is not a tap, left alone",
                    metadata: ["container": "\(rec.containerID)", "ifname": "\(a.ifname)", "error": "\(error)"]
                )
            }
        }
        cluster.withdraw(rec)  // what the ADD may have claimed (addresses, with a cluster store)
        log.info(
            "an ADD cut short by a restart was undone",
            metadata: ["pod": "\(rec.key)", "container": "\(rec.containerID)"]
        )
    }

    /// Reloads the records of a snapshot (before `start` and the journal replay).
    public func restoreCNI(_ saved: CNISnapshot) {
        attachments.withLock { a in
            for rec in saved.networks {
                a.networks[rec.key] = rec
                a.pools[rec.key] = try? cluster.pools(for: rec)
            }
            for p in saved.pods {
                a.pods[p.containerID] = p
                a.markAddresses(p, used: true)
            }
        }
    }

    /// Pod interfaces of a saved config whose namespace is gone (the pod died while vrouterd
    /// was down): they cannot be re-made, and their records keep the addresses until DEL.
    static func droppingVanishedPods(_ c: NodeConfig, _ log: Logger) -> NodeConfig {
        var c = c
        c.interfaces.removeAll { itf in
            guard itf.kind == .pod, let t = itf.tap, t.persistent, let ns = t.netns, !NetworkNamespace.at(ns).exists
            else { return false }
            log.warning(
                "pod interface dropped: its network namespace is gone",
                metadata: ["interface": "\(itf.name)", "netns": "\(ns)"]
            )
            return true
        }
        return c
    }

    // MARK: snapshot

    /// Writes the whole node to the state directory (and empties the journal).
    public func saveSnapshot() throws(ServiceError) {
        try journal.snapshot(capture: capture, write: write)
    }

    /// A snapshot from inside the journal's writer (the journal has grown long).
    func writeSnapshot(locked p: StatePersistence) throws(ServiceError) {
        try journal.snapshotLocked(p, capture: capture, write: write)
    }

    /// One moment of the node, with the sequence of the last journal record it includes.
    struct Saved: Sendable {
        var config: NodeConfig
        var routes: [String: [String]]
        var cni: CNISnapshot
    }

    private func capture() -> (Saved, Int) {
        attachments.withLock { a in
            let cni = CNISnapshot(
                networks: a.networks.values.sorted { $0.key < $1.key },
                pods: a.pods.values.sorted { $0.containerID < $1.containerID },
                adding: a.adding.values.map { PodRecord($0) }.sorted { $0.containerID < $1.containerID }
            )
            return ports.withInterfaces { interfaces in
                tables.read { s in
                    var config = self.config
                    config.interfaces = interfaces
                    config.vrfs = s.vrfs
                    config.remoteNodes = s.remoteNodes
                    for k in config.vrfs.indices { config.vrfs[k].routes = [] }
                    return (Saved(config: config, routes: Self.routeLines(s, interfaces), cni: cni), journal.lastQueued)
                }
            }
        }
    }

    private func write(_ p: StatePersistence, _ saved: Saved, _ sequence: Int) throws(ServiceError) {
        let cni: Data
        do { cni = try JSONEncoder().encode(saved.cni) } catch { throw ServiceError("state snapshot: \(error)") }
        try p.snapshot(saved.config, routes: saved.routes, extra: ["cni.json": cni], sequence: sequence)
    }

    /// Every VRF's routes as routes-file lines, but for the ports' own /32 and /128 (the
    /// config file's interfaces make them) and the gateways' (their VRF makes them).
    static func routeLines(_ s: borrowing TableModel, _ interfaces: [NodeConfig.Interface]) -> [String: [String]] {
        var routes: [String: [String]] = [:]
        var auto4: Set<IPv4Prefix> = []
        var auto6: Set<IPv6Prefix> = []
        for i in interfaces {
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
            // Gateway routes come back with their VRF; fabric routes with the network's
            // properties.
            case .receive?, .underlay?, .vrfTranslate?, .sourceNAT?, nil: return nil
            }
        }
        for v in s.builder.vrfs.values {
            var lines: [String] = []
            for (p, t) in v.routes4 where !auto4.contains(p) { if let l = line(p.description, t) { lines.append(l) } }
            for (p, t) in v.routes6 where !auto6.contains(p) { if let l = line(p.description, t) { lines.append(l) } }
            if !lines.isEmpty { routes[v.name] = lines }
        }
        return routes
    }
}
