// From a validated NodeConfig to the dataplane's tables: ports get dense ids in config
// order, each pod an encap nexthop (and its /32, /128 routes and incoming label), each
// remote node one shared tunnel nexthop (the label/VNI lives in the route), each
// distinct ECMP member set one composite.

import Foundation
import VRouterCore

public struct CompiledNode: Sendable {
    public var builder: TableBuilder
    public var portIDs: [String: UInt16]
    public var vrfIDs: [String: UInt16]
    public var nodeNexthops: [String: UInt32]
    public var podNexthops: [String: UInt32]
    public var ecmpSets: [[RouteTarget]: UInt32]
    /// Where the search for a free nexthop id starts: every id below it is in use
    /// (`TableModel.takeNexthop` hands out removed nexthops' ids again).
    public var nextNexthop: UInt32
    public var routeCount: Int
    /// The underlay VRF and the nexthops networks on the fabric use, when the node has them.
    public var fabric: FabricTables?
}

/// What IP-fabric forwarding and fabric SNAT use: the underlay VRF (the fabric port's),
/// the nexthop a translated network's default route takes, the one a forwarded network's
/// default route takes (route again in the underlay VRF), and the underlay gateway's.
public struct FabricTables: Sendable {
    public var vrf: UInt16
    public var port: UInt16
    public var snat: UInt32?
    public var toUnderlay: UInt32
    public var gateway: UInt32?
}

extension NodeConfig {
    public static let nexthopDiscard: UInt32 = 0
    public static let nexthopReceive: UInt32 = 1

    /// Builds the tables. `underlayMAC` gives each remote node's underlay MAC when the
    /// config does not (the node service resolves them by ARP), `gatewayMAC` the underlay
    /// gateway's; nil means unresolved.
    public func makeTables(
        underlayMAC: (RemoteNode) -> MACAddress? = { $0.mac },
        gatewayMAC: (IPv4Address) -> MACAddress? = { _ in nil }
    ) throws(ConfigError) -> CompiledNode {
        var b = TableBuilder()
        b.routerMAC = routerMAC
        var portIDs: [String: UInt16] = [:]
        var vrfIDs: [String: UInt16] = [:]
        var nodeNH: [String: UInt32] = [:]
        var podNH: [String: UInt32] = [:]
        var routeCount = 0
        func t<R>(_ what: String, _ body: () throws -> R) throws(ConfigError) -> R {
            do { return try body() } catch { throw ConfigError("\(what): \(error)") }
        }
        for v in vrfs {
            try t("vrfs.\(v.name)") {
                try b.setVRF(v.id, VRFConfig(name: v.name, gateway4: v.gateway4, gateway6: v.gateway6))
            }
            vrfIDs[v.name] = v.id
            if let vni = v.vni { try t("vrfs.\(v.name)") { try b.setVNI(vni, vrf: v.id) } }
        }
        try t("nexthops") {
            try b.setNexthop(Self.nexthopDiscard, .discard)
            try b.setNexthop(Self.nexthopReceive, .receive)
        }
        var nextNH: UInt32 = 2
        var fabricID: UInt16?
        for (i, itf) in interfaces.enumerated() {
            let id = UInt16(i)
            portIDs[itf.name] = id
            let vrf = itf.vrf.flatMap { vrfIDs[$0] } ?? 0
            try t("interfaces.\(itf.name)") {
                try b.setPort(
                    id,
                    PortConfig(
                        kind: itf.kind == .pod ? .pod : .fabric,
                        name: itf.name,
                        vrf: vrf,
                        mac: itf.mac,
                        mtu: itf.mtu,
                        ipv4: itf.ipv4,
                        ipv6: itf.ipv6,
                        vlan: itf.vlan,
                        antiSpoofing: itf.antiSpoofing,
                        offloads: itf.offloads && (itf.tap != nil || itf.device != nil)
                    )
                )
            }
            if itf.kind == .fabric { fabricID = id }
            guard itf.kind == .pod else { continue }
            let nh = nextNH
            nextNH += 1
            podNH[itf.name] = nh
            try t("interfaces.\(itf.name)") {
                try b.setNexthop(nh, .encap(port: id, mac: itf.mac))
                if let a = itf.ipv4 { try b.addRoute(vrf: vrf, IPv4Prefix(a, length: 32)!, RouteTarget(nexthop: nh)) }
                if let a = itf.ipv6 { try b.addRoute(vrf: vrf, IPv6Prefix(a, length: 128)!, RouteTarget(nexthop: nh)) }
                if let l = itf.label { try b.setLabel(l, nexthop: nh) }
            }
            routeCount += (itf.ipv4 != nil ? 1 : 0) + (itf.ipv6 != nil ? 1 : 0)
        }
        for node in remoteNodes {
            guard let fabric = fabricID else { throw ConfigError("remoteNodes: tunnels need a fabric interface") }
            let nh = nextNH
            nextNH += 1
            nodeNH[node.name] = nh
            let mac = underlayMAC(node) ?? .zero
            try t("remoteNodes.\(node.name)") {
                try b.setNexthop(
                    nh,
                    .tunnel(
                        node.encap,
                        port: fabric,
                        destination: node.address,
                        underlayMAC: mac,
                        innerMAC: node.innerMAC
                    )
                )
            }
        }
        var fabricTables: FabricTables?
        if needsUnderlayVRF, let port = fabricID, let f = interfaces.first(where: { $0.kind == .fabric }) {
            let ft = try Self.makeFabricTables(
                &b,
                port: port,
                fabric: f,
                snat: snat != nil,
                reservedVRFs: Set(vrfs.map(\.id)),
                nextNexthop: &nextNH,
                gatewayMAC: gatewayMAC
            )
            fabricTables = ft
            vrfIDs[Self.underlayVRFName] = ft.vrf
            // Pods of forwarded networks are routed in the underlay too: the fabric reaches them.
            for itf in interfaces where itf.kind == .pod {
                guard let a = itf.ipv4, vrfs.first(where: { $0.name == itf.vrf })?.ipFabricForwarding == true,
                    let nh = podNH[itf.name]
                else { continue }
                try t("interfaces.\(itf.name)") {
                    try b.addRoute(vrf: ft.vrf, IPv4Prefix(a, length: 32)!, RouteTarget(nexthop: nh))
                }
                routeCount += 1
            }
        }
        var ecmpSets: [[RouteTarget]: UInt32] = [:]
        for v in vrfs {
            let vid = v.id
            // A network on the fabric: what no overlay route covers leaves through it.
            if let f = fabricTables, v.ipFabricSnat || v.ipFabricForwarding,
                let nh = v.ipFabricSnat ? f.snat : f.toUnderlay
            {
                try t("vrfs.\(v.name)") {
                    try b.addRoute(vrf: vid, IPv4Prefix("0.0.0.0/0")!, RouteTarget(nexthop: nh))
                }
                routeCount += 1
            }
            if let g = v.gateway4 {
                try t("vrfs.\(v.name)") {
                    try b.addRoute(vrf: vid, IPv4Prefix(g, length: 32)!, RouteTarget(nexthop: Self.nexthopReceive))
                }
                routeCount += 1
            }
            if let g = v.gateway6 {
                try t("vrfs.\(v.name)") {
                    try b.addRoute(vrf: vid, IPv6Prefix(g, length: 128)!, RouteTarget(nexthop: Self.nexthopReceive))
                }
                routeCount += 1
            }
            var routes = v.routes
            if let f = v.routesFile { routes += try Self.loadRoutes(resolve(f), vrf: v.name) }
            for r in routes {
                let target: RouteTarget
                switch r.target {
                case .discard:
                    target = RouteTarget(nexthop: Self.nexthopDiscard)
                case .interface(let name):
                    guard let nh = podNH[name] else {
                        throw ConfigError("vrfs.\(v.name): route \(r.prefixText): no pod interface named '\(name)'")
                    }
                    target = RouteTarget(nexthop: nh)
                case .remote(let node, let tag):
                    guard let nh = nodeNH[node] else {
                        throw ConfigError("vrfs.\(v.name): route \(r.prefixText): no remote node named '\(node)'")
                    }
                    target = RouteTarget(nexthop: nh, label: tag)
                case .ecmp(let ms):
                    var members: [RouteTarget] = []
                    for m in ms {
                        guard let nh = nodeNH[m.node] else {
                            throw ConfigError("vrfs.\(v.name): route \(r.prefixText): no remote node named '\(m.node)'")
                        }
                        members.append(RouteTarget(nexthop: nh, label: m.tag))
                    }
                    if let nh = ecmpSets[members] {
                        target = RouteTarget(nexthop: nh)
                    } else {
                        let nh = nextNH
                        nextNH += 1
                        ecmpSets[members] = nh
                        try t("vrfs.\(v.name): route \(r.prefixText)") { try b.setNexthop(nh, .composite(members)) }
                        target = RouteTarget(nexthop: nh)
                    }
                }
                try t("vrfs.\(v.name)") {
                    if let p = r.prefix4 {
                        try b.addRoute(vrf: vid, p, target)
                    } else {
                        try b.addRoute(vrf: vid, r.prefix6!, target)
                    }
                }
                routeCount += 1
            }
        }
        return CompiledNode(
            builder: b,
            portIDs: portIDs,
            vrfIDs: vrfIDs,
            nodeNexthops: nodeNH,
            podNexthops: podNH,
            ecmpSets: ecmpSets,
            nextNexthop: nextNH,
            routeCount: routeCount,
            fabric: fabricTables
        )
    }

    /// The underlay VRF on the fabric port, with the underlay gateway as its default
    /// route, and the nexthops networks use to reach it (translated with `snat`, or not).
    /// Its id is the first free one not in `reservedVRFs`.
    static func makeFabricTables(
        _ b: inout TableBuilder,
        port: UInt16,
        fabric: Interface,
        snat: Bool,
        reservedVRFs: Set<UInt16>,
        nextNexthop: inout UInt32,
        gatewayMAC: (IPv4Address) -> MACAddress?
    ) throws(ConfigError) -> FabricTables {
        func t<R>(_ body: () throws -> R) throws(ConfigError) -> R {
            do { return try body() } catch { throw ConfigError("\(Self.underlayVRFName): \(error)") }
        }
        guard let id = (1...UInt16(65534)).first(where: { b.vrfs[$0] == nil && !reservedVRFs.contains($0) }) else {
            throw ConfigError("\(Self.underlayVRFName): no free VRF id")
        }
        var p = b.ports[port]!
        p.underlayVRF = id
        try t {
            try b.setVRF(id, VRFConfig(name: Self.underlayVRFName, gateway4: fabric.ipv4))
            try b.setPort(port, p)
        }
        func next() -> UInt32 {
            defer { nextNexthop += 1 }
            return nextNexthop
        }
        var tables = FabricTables(vrf: id, port: port, snat: nil, toUnderlay: next(), gateway: nil)
        try t { try b.setNexthop(tables.toUnderlay, .vrfTranslate(vrf: id)) }
        if snat {
            let nh = next()
            try t { try b.setNexthop(nh, .sourceNAT(fabric: port)) }
            tables.snat = nh
        }
        if let g = fabric.gateway {
            let nh = next()
            let mac = fabric.gatewayMAC ?? gatewayMAC(g) ?? .zero
            try t {
                try b.setNexthop(nh, .underlay(port: port, via: g, mac: mac))
                try b.addRoute(vrf: id, IPv4Prefix("0.0.0.0/0")!, RouteTarget(nexthop: nh))
            }
            tables.gateway = nh
        }
        return tables
    }

    /// A routes file: one route per line, `PREFIX via NODE vni N`, `PREFIX via NODE label N`,
    /// `PREFIX ecmp NODE vni|label N NODE vni|label N…`, `PREFIX interface NAME` or
    /// `PREFIX discard`; `#` starts a comment. Written for
    /// million-line files: no regular expressions, one pass.
    public static func loadRoutes(_ path: String, vrf: String) throws(ConfigError) -> [Route] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("vrfs.\(vrf).routesFile: cannot read \(path)")
        }
        var routes: [Route] = []
        var lineNo = 0
        var failure: ConfigError?
        data.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            var start = 0
            while start < bytes.count && failure == nil {
                var end = start
                while end < bytes.count && bytes[end] != 10 { end += 1 }
                lineNo += 1
                var line = Substring(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self))
                if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
                let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
                start = end + 1
                if f.isEmpty { continue }
                func bad(_ why: String) { failure = ConfigError("\(path):\(lineNo): \(why)") }
                var r = Route(prefix4: IPv4Prefix(f[0]), prefix6: nil, target: .discard)
                if r.prefix4 == nil {
                    r.prefix6 = IPv6Prefix(f[0])
                    if r.prefix6 == nil {
                        bad("'\(f[0])' is not a prefix")
                        continue
                    }
                }
                if f.count == 2 && f[1] == "discard" {
                    r.target = .discard
                } else if f.count == 3 && f[1] == "interface" {
                    r.target = .interface(String(f[2]))
                } else if f.count == 5 && f[1] == "via" && (f[3] == "vni" || f[3] == "label"), let n = UInt32(f[4]) {
                    r.target = .remote(node: String(f[2]), tag: n)
                } else if f.count >= 5 && f[1] == "ecmp" && (f.count - 2) % 3 == 0 {
                    // PREFIX ecmp NODE vni|label N [NODE vni|label N]...
                    var members: [(node: String, tag: UInt32)] = []
                    var k = 2
                    while k + 2 < f.count {
                        guard f[k + 1] == "vni" || f[k + 1] == "label", let n = UInt32(f[k + 2]) else { break }
                        members.append((String(f[k]), n))
                        k += 3
                    }
                    guard k == f.count else {
                        bad("expected 'PREFIX ecmp NODE vni|label N [NODE vni|label N]...'")
                        continue
                    }
                    r.target = .ecmp(members)
                } else {
                    bad("expected 'PREFIX via NODE vni|label N', 'PREFIX interface NAME' or 'PREFIX discard'")
                    continue
                }
                routes.append(r)
            }
        }
        if let failure { throw failure }
        return routes
    }
}
