// What the control API reads of a running node: each part's state under its own short lock
// (never two at once), and the workers' counters, which need none. A read never waits for a
// device being made or a journal record being written.

import Foundation
import VRouterAPI
import VRouterCore
import VRouterIO

extension NodeService {
    public func status() -> StatusInfo {
        let flows = flowCount()
        let (vrfs, routes, nexthops) = tables.read { s in
            (
                s.builder.vrfs.count, s.builder.vrfs.values.reduce(0) { $0 + $1.routes4.count + $1.routes6.count },
                s.builder.nexthops.count
            )
        }
        return StatusInfo(
            node: config.name,
            version: vrouterVersion,
            uptimeSeconds: Date().timeIntervalSince(started),
            workers: workers.count,
            interfaces: ports.interfaces.count,
            vrfs: vrfs,
            routes: routes,
            nexthops: nexthops,
            flows: flows,
            tablesVersion: publication.current.version,
            stateDirectory: persistence?.directory,
            healthy: !stopping.load(ordering: .relaxed)
        )
    }

    public func interfaces() -> [InterfaceInfo] {
        let cs = workerCounters
        let ringDrops =
            fabricSockets.isEmpty ? nil : fabricSockets.reduce(UInt64(0)) { $0 + ((try? $1.statistics().drops) ?? 0) }
        let ids = tables.read { $0.compiled.portIDs }
        return ports.interfaces.compactMap { itf in
            ids[itf.name].map { interfaceInfo(itf, $0, counters: cs, ringDrops: itf.kind == .fabric ? ringDrops : nil) }
        }
    }

    /// An interface as the API shows it; its counters summed over the workers' (none: zero).
    func interfaceInfo(
        _ itf: NodeConfig.Interface,
        _ id: UInt16,
        counters cs: [Counters] = [],
        ringDrops: UInt64? = nil
    ) -> InterfaceInfo {
        func sum(_ f: (PortCounters) -> UInt64) -> UInt64 { cs.reduce(0) { $0 + f($1.ports[Int(id)]) } }
        return InterfaceInfo(
            id: Int(id),
            name: itf.name,
            kind: itf.kind.rawValue,
            vrf: itf.vrf,
            mac: itf.mac.description,
            mtu: itf.mtu,
            ipv4: itf.ipv4.map { "\($0)/\(itf.ipv4PrefixLength)" },
            ipv6: itf.ipv6.map { "\($0)/\(itf.ipv6PrefixLength)" },
            label: itf.label,
            tap: itf.tap.map { TapSpec(name: $0.name, netns: $0.netns, ifname: $0.ifname, persistent: $0.persistent) },
            device: itf.device,
            rxPackets: sum(\.rxPackets),
            rxBytes: sum(\.rxBytes),
            txPackets: sum(\.txPackets),
            txBytes: sum(\.txBytes),
            drops: sum(\.drops),
            ringDrops: ringDrops,
            offloads: offloads(itf)
        )
    }

    /// What a port negotiated: a live tap's TUNSETOFFLOAD flags, the fabric's UDP GSO
    /// (trains from peers are always cut; sending them is the offload); nil for a port
    /// without a device.
    func offloads(_ itf: NodeConfig.Interface) -> [String]? {
        switch itf.kind {
        case .pod: ports.tap(itf.name).map(\.offloads.names)
        case .fabric: itf.device == nil ? nil : (itf.offloads ? ["uso-rx", "uso-tx"] : ["uso-rx"])
        }
    }

    public func vrfs() -> [VRFInfo] {
        let current = publication.current
        return tables.read { s in
            s.builder.vrfs.sorted { $0.key < $1.key }.map { id, v in
                let fib = current.fibs(vrf: id).map { $0.0.memoryBytes + $0.1.memoryBytes } ?? 0
                return VRFInfo(
                    id: Int(id),
                    name: v.name,
                    vni: s.vnis[v.name],
                    gateway: v.gateway4?.description,
                    gateway6: v.gateway6?.description,
                    ipv4Routes: v.routes4.count,
                    ipv6Routes: v.routes6.count,
                    fibBytes: fib
                )
            }
        }
    }

    public func routes(vrf name: String) throws(APIError) -> [RouteInfo] {
        let routes = tables.read { s -> [RouteInfo]? in
            guard let id = s.compiled.vrfIDs[name], let v = s.builder.vrfs[id] else { return nil }
            var out: [RouteInfo] = []
            out.reserveCapacity(v.routes4.count + v.routes6.count)
            for (p, t) in v.routes4.sorted(by: { $0.key < $1.key }) { out.append(describe(p.description, t, s)) }
            for (p, t) in v.routes6.sorted(by: { $0.key < $1.key }) { out.append(describe(p.description, t, s)) }
            return out
        }
        guard let routes else { throw .notFound("no VRF named '\(name)'") }
        return routes
    }

    private func describe(_ prefix: String, _ t: RouteTarget, _ s: borrowing TableModel) -> RouteInfo {
        var r = RouteInfo(prefix: prefix, nexthop: t.nexthop, kind: "discard")
        switch s.builder.nexthops[t.nexthop] {
        case .encap?:
            r.kind = "interface"
            r.interface = s.compiled.podNexthops.first { $0.value == t.nexthop }?.key
        case .tunnel(let encap, _, _, _, _)?:
            r.kind = encap.name
            r.via = s.compiled.nodeNexthops.first { $0.value == t.nexthop }?.key
            if encap == .vxlan { r.vni = t.label } else { r.label = t.label }
        case .composite(let members)?:
            r.kind = "ecmp"
            r.members = members.map { m in
                let node = s.compiled.nodeNexthops.first { $0.value == m.nexthop }?.key ?? "nexthop \(m.nexthop)"
                let vx: Bool = {
                    if case .tunnel(.vxlan, _, _, _, _)? = s.builder.nexthops[m.nexthop] { return true }
                    return false
                }()
                return RouteMember(via: node, vni: vx ? m.label : nil, label: vx ? nil : m.label)
            }
        case .underlay?:
            r.kind = "fabric"
        case .vrfTranslate(let vrf)?:
            r.kind = "vrf-translate"
            r.via = s.builder.vrfs[vrf]?.name
        case .sourceNAT?:
            r.kind = "snat"
        case .receive?:
            r.kind = "receive"
        case .discard?, nil:
            r.kind = "discard"
        }
        return r
    }

    public func nexthops() -> [NexthopInfo] {
        tables.read { s in
            s.builder.nexthops.sorted { $0.key < $1.key }.map { id, n in
                var info = NexthopInfo(id: id, kind: "discard")
                switch n {
                case .discard: info.kind = "discard"
                case .receive: info.kind = "receive"
                case .encap(_, let mac):
                    info.kind = "encap"
                    info.interface = s.compiled.podNexthops.first { $0.value == id }?.key
                    info.underlayMAC = mac.description
                case .tunnel(let encap, _, let dst, let mac, _):
                    info.kind = "tunnel-\(encap.name)"
                    info.node = s.compiled.nodeNexthops.first { $0.value == id }?.key
                    info.destination = dst.description
                    info.underlayMAC = mac.value == 0 ? nil : mac.description
                    info.resolved = mac.value != 0
                case .composite(let members):
                    info.kind = "composite"
                    info.members = members.map { NexthopMember(nexthop: $0.nexthop, label: $0.label) }
                case .underlay(_, let via, let mac):
                    info.kind = "fabric"
                    info.destination = via.description
                    info.underlayMAC = mac.value == 0 ? nil : mac.description
                    info.resolved = mac.value != 0
                case .vrfTranslate:
                    info.kind = "vrf-translate"
                case .sourceNAT:
                    info.kind = "snat"
                }
                return info
            }
        }
    }

    public func labels() -> [LabelInfo] {
        tables.read { s in
            s.builder.labels.sorted { $0.key < $1.key }.map { l, nh in
                LabelInfo(label: l, nexthop: nh, interface: s.compiled.podNexthops.first { $0.value == nh }?.key)
            }
        }
    }

    public func vniTable() -> [VNIInfo] {
        tables.read { s in
            s.builder.vnis.sorted { $0.key < $1.key }.map { vni, vrf in
                VNIInfo(vni: vni, vrf: s.builder.vrfs[vrf]?.name ?? "vrf \(vrf)")
            }
        }
    }

    public func remoteNodes() -> [RemoteNodeInfo] {
        tables.read { s in
            s.remoteNodes.compactMap { n -> RemoteNodeInfo? in
                guard let nh = s.compiled.nodeNexthops[n.name] else { return nil }
                var underlay: MACAddress?
                if case .tunnel(_, _, _, let mac, _)? = s.builder.nexthops[nh], mac.value != 0 { underlay = mac }
                return RemoteNodeInfo(
                    name: n.name,
                    address: n.address.description,
                    encap: n.encap.name,
                    mac: n.mac?.description,
                    innerMAC: n.innerMAC.description,
                    nexthop: nh,
                    underlayMAC: underlay?.description,
                    resolved: underlay != nil
                )
            }
        }
    }

    /// Table sizes for the metrics endpoint, without building the full listings.
    public func tableSizes() -> TableSizes {
        tables.read { s in
            var t = TableSizes(
                ports: s.builder.ports.count,
                nexthops: s.builder.nexthops.count,
                labels: s.builder.labels.count,
                vnis: s.builder.vnis.count,
                vrfs: []
            )
            t.vrfs.reserveCapacity(s.builder.vrfs.count)
            for v in s.builder.vrfs.values { t.vrfs.append((v.name, v.routes4.count, v.routes6.count)) }
            return t
        }
    }

    /// Flow-table slots over all workers (each has an IPv4 table of `flowCapacity` and an
    /// IPv6 table of `flowCapacity6`, by default as large, at least 1024; see Pipeline).
    public var flowCapacity: Int {
        workers.count * (config.flowCapacity + (config.flowCapacity6 ?? max(config.flowCapacity, 1024)))
    }

    public func dropStats() -> DropStatsInfo {
        let cs = workerCounters
        var reasons: [String: UInt64] = [:]
        for r in DropReason.allCases { reasons[r.name] = cs.reduce(0) { $0 + $1.dropCount(r) } }
        let ports = tables.read { $0.compiled.portIDs }.mapValues { id in
            cs.reduce(UInt64(0)) { $0 + $1.ports[Int(id)].drops }
        }
        return DropStatsInfo(total: reasons.values.reduce(0, +), reasons: reasons, ports: ports)
    }

    func flowCount() -> Int { workers.reduce(0) { $0 + $1.flowCount } }

    /// Flows of every worker (one VRF or all), the most active first, at most `top`.
    public func flows(vrf name: String?, top: Int) throws(APIError) -> [FlowInfo] {
        let (ids, names, addresses) = tables.read { s in
            (s.compiled.vrfIDs, s.builder.vrfs.mapValues(\.name), Self.translationAddresses(s.builder))
        }
        var vrfID: UInt16?
        if let name {
            guard let v = ids[name] else { throw .notFound("no VRF named '\(name)'") }
            vrfID = v
        }
        var out: [FlowInfo] = []
        for w in workers {
            let c = WorkerCommand(.flows(vrf: vrfID, limit: max(top, 1) * 4))
            w.perform(c)
            for f in c.flows {
                func text(_ a: UInt128) -> String {
                    f.v6 ? IPv6Address(a).description : IPv4Address(UInt32(truncatingIfNeeded: a)).description
                }
                out.append(
                    FlowInfo(
                        worker: w.index,
                        vrf: names[f.vrf] ?? "\(f.vrf)",
                        proto: f.proto,
                        source: text(f.source),
                        sourcePort: f.sport,
                        destination: text(f.destination),
                        destinationPort: f.dport,
                        nexthop: f.value.nexthop,
                        label: f.value.label,
                        packets: f.value.packets,
                        bytes: f.value.bytes,
                        idleMilliseconds: f.idle,
                        closing: f.value.flags.contains(.closing),
                        translation: f.v6 ? nil : Self.translation(f.value, addresses)
                    )
                )
            }
        }
        out.sort { $0.packets > $1.packets }
        return Array(out.prefix(max(top, 0)))
    }

    /// The address a translated flow's nexthop stands for: an underlay nexthop's source
    /// (the node's underlay address), an encap nexthop's pod.
    static func translationAddresses(_ b: TableBuilder) -> [UInt32: IPv4Address] {
        var out: [UInt32: IPv4Address] = [:]
        for (id, nh) in b.nexthops {
            switch nh {
            case .underlay(let port, _, _), .encap(let port, _): out[id] = b.ports[port]?.ipv4
            default: break
            }
        }
        return out
    }

    static func translation(_ v: FlowValue, _ addresses: [UInt32: IPv4Address]) -> String? {
        guard FlowTranslation.isTranslated(v.label) else { return nil }
        let address = addresses[v.nexthop]?.description ?? "?"
        let port = FlowTranslation.port(v.label)
        return FlowTranslation.isDestination(v.label) ? "dnat \(address):\(port)" : "snat \(address):\(port)"
    }
}

public let vrouterVersion = "0.1.0"

public struct TableSizes: Sendable {
    public var ports: Int
    public var nexthops: Int
    public var labels: Int
    public var vnis: Int
    /// Name, IPv4 routes, IPv6 routes.
    public var vrfs: [(String, Int, Int)]
}
