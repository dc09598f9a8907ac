// The tables part of the node: the forwarding model (VRFs and their routes, nexthops, MPLS
// labels, VNIs, every port's entry, remote nodes' tunnels) and its publication to the
// workers, the only part that publishes. Each change validates completely, then changes the
// model, builds and publishes once under one short lock, and queues its journal record in
// the same order; the caller waits for the record to be durable after the lock is gone.
//
// Ports are made in three steps so that no device work happens under the lock: `reservePorts`
// checks them and sets their ids and labels aside, the caller makes the devices and hands
// them to the workers, `commitPorts` enters them and publishes (or `release` forgets them).

import Synchronization
import VRouterAPI
import VRouterCore

/// The forwarding model as the tables part owns it.
struct TableModel: Sendable {
    var builder: TableBuilder
    var compiled: CompiledNode
    /// The node's VRFs and remote nodes as a config file has them (snapshots write them).
    var vrfs: [NodeConfig.VRF]
    var remoteNodes: [NodeConfig.RemoteNode]
    var vnis: [String: UInt32] = [:]
    /// The fabric interface and SNAT range of the node's config (for networks on the fabric).
    var setting: FabricSetting
    /// Ports set aside between `reservePorts` and `commitPorts`, by name.
    var reserved: [String: PortReservation] = [:]
    /// Ports taken out of the tables whose workers and devices are still letting go of them:
    /// their ids and names are not handed out again until then (a worker must not be given a
    /// new port under an id it still serves).
    var draining: [String: UInt16] = [:]

    var fabric: (name: String, port: UInt16)? {
        for (id, p) in builder.ports where p.kind == .fabric { return (p.name, id) }
        return nil
    }

    /// An id for a new nexthop: the lowest one no nexthop has (the search starts at
    /// `compiled.nextNexthop`, below which every id is in use). Ids of removed nexthops are
    /// handed out again: the tables' nexthop arrays are sized by the highest id and built
    /// again on every publication, so with ids never reused every pod ADD grew them for good
    /// (a node under pod churn grew its heap without end, and would have run out of ids).
    /// A flow that resolved to a removed nexthop cannot meet its successor: removing it
    /// took away its routes and labels first, which moved their VRFs' generations on.
    mutating func takeNexthop() -> UInt32 {
        while builder.nexthops[compiled.nextNexthop] != nil { compiled.nextNexthop += 1 }
        return compiled.nextNexthop
    }

    /// Removes a nexthop; its id is free for `takeNexthop`.
    mutating func removeNexthop(_ id: UInt32) throws(TableError) {
        try builder.removeNexthop(id)
        compiled.nextNexthop = min(compiled.nextNexthop, id)
    }
}

/// A port being made: its id, VRF, label and where its default route goes.
struct PortReservation: Sendable {
    var port: PodPort
    var id: UInt16
    var vrf: UInt16
    var label: UInt32?
    var gateways: (IPv4Address?, IPv6Address?)
}

final class Tables: @unchecked Sendable {  // Safe: the model is behind `model`; the publication is thread-safe.
    let publication: TablePublication
    private let model: Mutex<TableModel>
    let journal: Journal

    init(_ compiled: CompiledNode, config: NodeConfig, journal: Journal) {
        var builder = compiled.builder
        publication = TablePublication(builder.build())
        var vnis: [String: UInt32] = [:]
        for v in config.vrfs { if let n = v.vni { vnis[v.name] = n } }
        model = Mutex(
            TableModel(
                builder: builder,
                compiled: compiled,
                vrfs: config.vrfs,
                remoteNodes: config.remoteNodes,
                vnis: vnis,
                setting: FabricSetting(config)
            )
        )
        self.journal = journal
    }

    /// Reads the model under the lock (keep it short: every writer waits).
    func read<R: Sendable>(_ body: (borrowing TableModel) -> R) -> R { model.withLock { body($0) } }

    /// Changes the model, publishes the result once, and queues `record` for the journal.
    /// The body throws before changing anything, or changes everything.
    @discardableResult
    func change<R: Sendable>(
        _ record: StateRecord? = nil,
        _ body: (inout TableModel) throws(APIError) -> R
    ) throws(APIError) -> (R, Journal.Ticket) {
        try model.withLock { m throws(APIError) -> (R, Journal.Ticket) in
            let r = try body(&m)
            publication.publish(m.builder.build())
            return (r, record.map { journal.record($0) } ?? .none)
        }
    }

    // MARK: ports

    /// Checks pod ports against the model and sets their ids and labels aside. Nothing is
    /// published.
    func reservePorts(_ ports: [PodPort]) throws(PortFailure) -> [PortReservation] {
        try model.withLock { m throws(PortFailure) -> [PortReservation] in
            var out: [PortReservation] = []
            var ids = Set(m.reserved.values.map(\.id)).union(m.draining.values)
            var labels = Set(m.reserved.values.compactMap(\.label))
            for (i, p) in ports.enumerated() {
                do throws(APIError) {
                    try Self.reserve(p, &m, &ids, &labels, &out)
                } catch {
                    throw PortFailure(index: i, error: error)
                }
            }
            for r in out { m.reserved[r.port.name] = r }
            return out
        }
    }

    private static func reserve(
        _ p: PodPort,
        _ m: inout TableModel,
        _ ids: inout Set<UInt16>,
        _ labels: inout Set<UInt32>,
        _ out: inout [PortReservation]
    ) throws(APIError) {
        let name = p.name
        guard m.compiled.portIDs[name] == nil, m.reserved[name] == nil, !out.contains(where: { $0.port.name == name })
        else { throw .conflict("interface '\(name)' exists") }
        guard let vrfID = m.compiled.vrfIDs[p.vrf], let vrf = m.builder.vrfs[vrfID] else {
            throw .notFound("no VRF named '\(p.vrf)'")
        }
        let making = m.reserved.values.map(\.port) + out.map(\.port)
        if let a = p.ipv4?.address,
            vrf.routes4[IPv4Prefix(a, length: 32)!] != nil
                || making.contains(where: { $0.vrf == p.vrf && $0.ipv4?.address == a })
        {
            throw .conflict("\(a) is already routed in VRF '\(p.vrf)'")
        }
        if let a = p.ipv6?.address,
            vrf.routes6[IPv6Prefix(a, length: 128)!] != nil
                || making.contains(where: { $0.vrf == p.vrf && $0.ipv6?.address == a })
        {
            throw .conflict("\(a) is already routed in VRF '\(p.vrf)'")
        }
        var label: UInt32?
        switch p.label {
        case .none: break
        case .fixed(let l):
            guard m.builder.labels[l] == nil, !labels.contains(l) else { throw .conflict("label \(l) is taken") }
            label = l
        case .any(let preferred):
            // Labels index a dense table, so low ones are best; a re-ADD keeps its label
            // when it is still free.
            guard let l = Self.freeLabel(m.builder.labels, preferring: preferred, excluding: labels) else {
                throw .conflict("no free MPLS label left on this node")
            }
            label = l
        }
        guard
            let id = (UInt16(0)..<UInt16(Counters.maxPorts)).first(where: {
                m.builder.ports[$0] == nil && !ids.contains($0)
            })
        else {
            throw .conflict("no free port id")
        }
        ids.insert(id)
        if let l = label { labels.insert(l) }
        out.append(
            PortReservation(
                port: p,
                id: id,
                vrf: vrfID,
                label: label,
                gateways: (p.gateways.0 ?? vrf.gateway4, p.gateways.1 ?? vrf.gateway6)
            )
        )
    }

    /// Enters reserved ports (their devices made, the workers serving them): port, encap
    /// nexthop, /32 and /128 routes, label; publishes once and queues `record`.
    @discardableResult
    func commitPorts(_ ports: [PortReservation], record: StateRecord? = nil) throws(APIError) -> Journal.Ticket {
        try change(record) { m throws(APIError) in
            var entered: [(PortReservation, UInt32)] = []
            for r in ports {
                m.reserved[r.port.name] = nil
                let p = r.port
                let nh = m.takeNexthop()
                do {
                    try m.builder.setPort(
                        r.id,
                        PortConfig(
                            kind: .pod,
                            name: p.name,
                            vrf: r.vrf,
                            mac: p.mac,
                            mtu: p.mtu,
                            ipv4: p.ipv4?.address,
                            ipv6: p.ipv6?.address,
                            antiSpoofing: p.antiSpoofing,
                            offloads: p.offloads && p.tap != nil
                        )
                    )
                    try m.builder.setNexthop(nh, .encap(port: r.id, mac: p.mac))
                    if let a = p.ipv4?.address {
                        try m.builder.addRoute(vrf: r.vrf, IPv4Prefix(a, length: 32)!, RouteTarget(nexthop: nh))
                        // A forwarded network's pod is routed on the fabric too: the fabric reaches it.
                        if let u = m.underlayRoute(forPodIn: r.vrf) {
                            try m.builder.addRoute(vrf: u, IPv4Prefix(a, length: 32)!, RouteTarget(nexthop: nh))
                        }
                    }
                    if let a = p.ipv6?.address {
                        try m.builder.addRoute(vrf: r.vrf, IPv6Prefix(a, length: 128)!, RouteTarget(nexthop: nh))
                    }
                    if let l = r.label { try m.builder.setLabel(l, nexthop: nh) }
                } catch {
                    // Reserved and checked: reaching this is a bug; nothing of the batch stays.
                    Self.forget(p, r, nh, &m)
                    for (e, enh) in entered { Self.forget(e.port, e, enh, &m) }
                    for q in ports { m.reserved[q.port.name] = nil }
                    throw APIError(500, "interface '\(p.name)': \(error)")
                }
                m.compiled.portIDs[p.name] = r.id
                m.compiled.podNexthops[p.name] = nh
                entered.append((r, nh))
            }
        }.1
    }

    private static func forget(_ p: PodPort, _ r: PortReservation, _ nh: UInt32, _ m: inout TableModel) {
        if let a = p.ipv4?.address { try? m.builder.removeRoute(vrf: r.vrf, IPv4Prefix(a, length: 32)!) }
        if let a = p.ipv4?.address, let u = m.underlayRoute(forPodIn: r.vrf),
            m.builder.vrfs[u]?.routes4[IPv4Prefix(a, length: 32)!]?.nexthop == nh
        {
            try? m.builder.removeRoute(vrf: u, IPv4Prefix(a, length: 32)!)
        }
        if let a = p.ipv6?.address { try? m.builder.removeRoute(vrf: r.vrf, IPv6Prefix(a, length: 128)!) }
        if let l = r.label, m.builder.labels[l] == nh { try? m.builder.removeLabel(l) }
        try? m.removeNexthop(nh)
        try? m.builder.removePort(r.id)
        m.compiled.portIDs[p.name] = nil
        m.compiled.podNexthops[p.name] = nil
    }

    /// Forgets reservations whose ports were not made.
    func release(_ ports: [PortReservation]) {
        model.withLock { m in for r in ports { m.reserved[r.port.name] = nil } }
    }

    /// Takes pod ports out of the tables (every check first: each exists, is a pod port and
    /// no route but its own /32 and /128 points at it), publishes once and queues `record`.
    /// Returns their port ids, for the workers to let go of.
    func removePorts(_ names: [String], record: StateRecord? = nil) throws(APIError) -> ([UInt16], Journal.Ticket) {
        try change(record) { m throws(APIError) -> [UInt16] in
            var doomed: [(String, UInt16, UInt32, PortConfig)] = []
            for name in names {
                guard let port = m.compiled.portIDs[name], let pc = m.builder.ports[port] else {
                    throw .notFound("no interface named '\(name)'")
                }
                guard pc.kind == .pod, let nh = m.compiled.podNexthops[name] else {
                    throw .conflict("the fabric interface cannot be removed while running")
                }
                // Routes other than the interface's own /32 and /128 that point at it.
                let own4 = pc.ipv4.map { IPv4Prefix($0, length: 32)! }
                let own6 = pc.ipv6.map { IPv6Prefix($0, length: 128)! }
                var routed: [String] = []
                for v in m.builder.vrfs.values {
                    for (p, t) in v.routes4 where t.nexthop == nh && p != own4 { routed.append("\(v.name) \(p)") }
                    for (p, t) in v.routes6 where t.nexthop == nh && p != own6 { routed.append("\(v.name) \(p)") }
                }
                guard routed.isEmpty else {
                    throw .conflict(
                        "interface '\(name)' is the target of routes: \(routed.prefix(5).joined(separator: ", "))"
                    )
                }
                doomed.append((name, port, nh, pc))
            }
            for (name, port, nh, pc) in doomed {
                do {
                    if let a = pc.ipv4 { try m.builder.removeRoute(vrf: pc.vrf, IPv4Prefix(a, length: 32)!) }
                    if let a = pc.ipv4, let u = m.underlayRoute(forPodIn: pc.vrf) {
                        try m.builder.removeRoute(vrf: u, IPv4Prefix(a, length: 32)!)
                    }
                    if let a = pc.ipv6 { try m.builder.removeRoute(vrf: pc.vrf, IPv6Prefix(a, length: 128)!) }
                    for (l, target) in m.builder.labels where target == nh { try m.builder.removeLabel(l) }
                    try m.removeNexthop(nh)
                    try m.builder.removePort(port)
                } catch { throw APIError(500, "interface '\(name)': \(error)") }
                m.compiled.portIDs[name] = nil
                m.compiled.podNexthops[name] = nil
                m.draining[name] = port
            }
            return doomed.map(\.1)
        }
    }

    /// Ports removed by `removePorts` are gone from the workers and the kernel: their ids and
    /// names may be handed out again.
    func drained(_ names: [String]) {
        model.withLock { m in for n in names { m.draining[n] = nil } }
    }

    /// The lowest MPLS label in 16...maxLabel not bound in `labels` nor in `excluding`, or
    /// `preferring` when that one is free.
    static func freeLabel(_ labels: [UInt32: UInt32], preferring: UInt32?, excluding: Set<UInt32>) -> UInt32? {
        if let p = preferring, (16...TableBuilder.maxLabel).contains(p), labels[p] == nil, !excluding.contains(p) {
            return p
        }
        var l: UInt32 = 16
        while l <= TableBuilder.maxLabel {
            if labels[l] == nil, !excluding.contains(l) { return l }
            l += 1
        }
        return nil
    }

    // MARK: VRFs of networks

    /// Makes a vRouter network's VRF (a VNI from its name unless it pins one); returns the
    /// record with its VNI.
    func addNetworkVRF(_ wanted: NetworkRecord) throws(APIError) -> NetworkRecord {
        try change { m throws(APIError) -> NetworkRecord in try Self.addNetworkVRF(wanted, &m) }.0
    }

    static func addNetworkVRF(_ wanted: NetworkRecord, _ m: inout TableModel) throws(APIError) -> NetworkRecord {
        var rec = wanted
        guard rec.kind == .vrouter, let vrf = rec.vrf else { return rec }
        guard m.compiled.vrfIDs[vrf] == nil else { throw .conflict("network \(rec.key): a VRF named '\(vrf)' exists") }
        try m.checkFabricServices(rec)
        if let n = rec.vni {
            if let other = m.vnis.first(where: { $0.value == n }) {
                throw .conflict("network \(rec.key): VNI \(n) is taken by VRF '\(other.key)'")
            }
        } else {
            // A VNI from the name, so that nodes applying the same NADs in any order agree
            // (unless two names collide: the later one probes on, and `vrouter.io/vni` pins it).
            var h: UInt32 = 2_166_136_261
            for b in rec.key.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
            var n = 0x80_0000 | (h & 0x7F_FFFF)
            let taken = Set(m.vnis.values)
            while taken.contains(n) { n = n == 0xFF_FFFF ? 0x80_0000 : n + 1 }
            rec.vni = n
        }
        try m.addVRF(
            vrf,
            gateway4: rec.gateway.flatMap { IPv4Address($0) },
            gateway6: rec.gateway6.flatMap { IPv6Address($0) },
            vni: rec.vni,
            failure: { APIError(500, "network \(rec.key): \($0)") }
        )
        // Its way out through the fabric; nothing of the network stays when that fails.
        do throws(APIError) {
            try m.installFabricRoute(rec, vrf: m.compiled.vrfIDs[vrf]!)
        } catch {
            try? removeNetworkVRF(rec, &m)
            throw error
        }
        return rec
    }

    /// Removes a vRouter network's VRF (refused while interfaces are in it).
    func removeNetworkVRF(_ rec: NetworkRecord) throws(APIError) {
        try change { m throws(APIError) in try Self.removeNetworkVRF(rec, &m) }
    }

    static func removeNetworkVRF(_ rec: NetworkRecord, _ m: inout TableModel) throws(APIError) {
        guard rec.kind == .vrouter, let vrf = rec.vrf, let id = m.compiled.vrfIDs[vrf] else { return }
        let users = m.portNames(inVRF: id)
        guard users.isEmpty else {
            throw .conflict("network \(rec.key): VRF '\(vrf)' still has interfaces: \(users.joined(separator: ", "))")
        }
        if let n = m.vnis[vrf] { try? m.builder.removeVNI(n) }
        do { try m.builder.removeVRF(id) } catch { throw .conflict("network \(rec.key): \(error)") }
        m.compiled.vrfIDs[vrf] = nil
        m.vnis[vrf] = nil
        m.vrfs.removeAll { $0.name == vrf }
    }
}

extension TableModel {
    /// Makes a VRF with its gateways' receive routes (/32, /128) and its VNI. Nothing stays of
    /// it when the builder refuses (`failure` says how that is reported).
    mutating func addVRF(
        _ name: String,
        gateway4: IPv4Address?,
        gateway6: IPv6Address?,
        vni: UInt32?,
        failure: (TableError) -> APIError
    ) throws(APIError) {
        guard let id = (1...UInt16(65534)).first(where: { builder.vrfs[$0] == nil }) else {
            throw .conflict("no free VRF id")
        }
        do {
            try builder.setVRF(id, VRFConfig(name: name, gateway4: gateway4, gateway6: gateway6))
            let receive = RouteTarget(nexthop: NodeConfig.nexthopReceive)
            if let g = gateway4 { try builder.addRoute(vrf: id, IPv4Prefix(g, length: 32)!, receive) }
            if let g = gateway6 { try builder.addRoute(vrf: id, IPv6Prefix(g, length: 128)!, receive) }
            if let n = vni { try builder.setVNI(n, vrf: id) }
        } catch {
            try? builder.removeVRF(id)
            throw failure(error)
        }
        compiled.vrfIDs[name] = id
        if let n = vni { vnis[name] = n }
        vrfs.append(NodeConfig.VRF(name: name, id: id, vni: vni, gateway4: gateway4, gateway6: gateway6))
    }

    /// The ports in a VRF (entered or being made), by name.
    func portNames(inVRF id: UInt16) -> [String] {
        (builder.ports.values.filter { $0.vrf == id && $0.kind == .pod }.map(\.name)
            + reserved.values.filter { $0.vrf == id }.map(\.port.name)).sorted()
    }
}
