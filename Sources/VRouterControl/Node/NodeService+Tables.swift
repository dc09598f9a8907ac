// Changing the node's forwarding model through the API: VRFs, routes, remote nodes. Each
// operation checks everything first (parsing outside the lock), then the tables part changes
// the model, publishes once and queues the journal record under its lock; the answer waits
// for the record to be durable after the lock is released.

import Foundation
import VRouterAPI
import VRouterCore

extension NodeService {
    // MARK: VRFs

    public func addVRF(_ spec: VRFSpec) throws(APIError) -> VRFInfo {
        try validName(spec.name, "VRF")
        let g4 = try spec.gateway.map { g throws(APIError) in
            guard let a = IPv4Address(g) else { throw .badRequest("gateway '\(g)' is not an IPv4 address") }
            // Pods get a default route through it: the kernel refuses one via 0.0.0.0.
            guard a.value != 0, !a.isMulticast, !a.isBroadcast else {
                throw .badRequest("gateway '\(g)' is not a unicast address")
            }
            return a
        }
        let g6 = try spec.gateway6.map { g throws(APIError) in
            guard let a = IPv6Address(g) else { throw .badRequest("gateway6 '\(g)' is not an IPv6 address") }
            guard a.value > 1, !a.isMulticast else { throw .badRequest("gateway6 '\(g)' is not a unicast address") }
            return a
        }
        if let n = spec.vni, !(1...TableBuilder.maxVNI).contains(n) {
            throw .badRequest("vni \(n) is outside 1...16777215")
        }
        sync(
            try tables.change(.addVRF(spec)) { s throws(APIError) in
                guard s.compiled.vrfIDs[spec.name] == nil else { throw .conflict("VRF '\(spec.name)' exists") }
                if let n = spec.vni, let other = s.vnis.first(where: { $0.value == n }) {
                    throw .conflict("VNI \(n) is taken by VRF '\(other.key)'")
                }
                try s.addVRF(spec.name, gateway4: g4, gateway6: g6, vni: spec.vni) { .badRequest("\($0)") }
            }.1
        )
        return vrfs().first { $0.name == spec.name }!
    }

    public func deleteVRF(_ name: String) throws(APIError) {
        let (_, ticket) = try tables.change(.deleteVRF(name)) { s throws(APIError) in
            guard let id = s.compiled.vrfIDs[name] else { throw .notFound("no VRF named '\(name)'") }
            let users = s.portNames(inVRF: id)
            guard users.isEmpty else {
                throw .conflict("VRF '\(name)' still has interfaces: \(users.joined(separator: ", "))")
            }
            if let n = s.vnis[name] { try? s.builder.removeVNI(n) }
            do { try s.builder.removeVRF(id) } catch { throw .conflict("\(error)") }
            s.compiled.vrfIDs[name] = nil
            s.vnis[name] = nil
            s.vrfs.removeAll { $0.name == name }
        }
        sync(ticket)
    }

    // MARK: Routes

    /// Applies a batch of route changes to one VRF, all or nothing.
    /// A delete naming a route the VRF does not have is refused with `missingRoute`: 409 in a
    /// batch (the VRF addressed exists; the batch conflicts with it), 404 for DELETE of one route
    /// (the route is the object addressed).
    public func changeRoutes(
        vrf name: String,
        _ change: RouteChange,
        missingRoute: Int = 409
    ) throws(APIError) -> RouteChangeResult {
        let adds = change.add ?? []
        let dels = change.delete ?? []
        // Parse outside the lock: text to prefixes, specs to targets-to-be.
        var parsedAdds: [(IPv4Prefix?, IPv6Prefix?, RouteSpec)] = []
        parsedAdds.reserveCapacity(adds.count)
        for r in adds {
            let (p4, p6) = try parsePrefix(r.prefix)
            let targets = [r.interface != nil, r.via != nil, r.ecmp != nil, r.discard == true].filter { $0 }.count
            guard targets == 1 else {
                throw .badRequest("route \(r.prefix): give exactly one of interface, via, ecmp, discard")
            }
            if r.via != nil && (r.vni == nil) == (r.label == nil) {
                throw .badRequest("route \(r.prefix): a route via a node needs a vni (VXLAN) or a label (MPLS)")
            }
            // Ranges wherever given (a vni or label a route does not use is still checked).
            if let n = r.vni, !(1...TableBuilder.maxVNI).contains(n) {
                throw .badRequest("route \(r.prefix): vni \(n) is outside 1...16777215")
            }
            if let l = r.label, !(16...TableBuilder.maxLabel).contains(l) {
                throw .badRequest("route \(r.prefix): label \(l) is outside 16...1048575")
            }
            for (i, m) in (r.ecmp ?? []).enumerated() where (m.vni == nil) == (m.label == nil) {
                throw .badRequest("route \(r.prefix): ecmp[\(i)] needs a vni (VXLAN) or a label (MPLS), not both")
            }
            parsedAdds.append((p4, p6, r))
        }
        var parsedDels: [(IPv4Prefix?, IPv6Prefix?)] = []
        for d in dels { parsedDels.append(try parsePrefix(d)) }
        let (result, ticket) = try tables.change(.routes(name, change)) { s throws(APIError) -> RouteChangeResult in
            guard let id = s.compiled.vrfIDs[name], let v = s.builder.vrfs[id] else {
                throw .notFound("no VRF named '\(name)'")
            }
            // Check every delete names a route and every add resolves, before any change.
            for (p4, p6) in parsedDels {
                let present: Bool
                if let p = p4 { present = v.routes4[p] != nil } else { present = v.routes6[p6!] != nil }
                guard present else {
                    throw APIError(missingRoute, "VRF '\(name)' has no route \(p4?.description ?? p6!.description)")
                }
            }
            var targets: [RouteTarget] = []
            targets.reserveCapacity(parsedAdds.count)
            var newSets: [[RouteTarget]] = []
            for (_, _, r) in parsedAdds { targets.append(try target(r, s, &newSets)) }
            // Apply: new ECMP sets, deletes, adds.
            do {
                for set in newSets where s.compiled.ecmpSets[set] == nil {
                    let nh = s.takeNexthop()
                    try s.builder.setNexthop(nh, .composite(set))
                    s.compiled.ecmpSets[set] = nh
                }
                for (p4, p6) in parsedDels {
                    if let p = p4 {
                        try s.builder.removeRoute(vrf: id, p)
                    } else {
                        try s.builder.removeRoute(vrf: id, p6!)
                    }
                }
                for (i, (p4, p6, r)) in parsedAdds.enumerated() {
                    var t = targets[i]
                    // A set made by this change is a placeholder until now; a known one is already its nexthop.
                    if r.ecmp != nil && t.nexthop & 0x8000_0000 != 0 {
                        t = RouteTarget(nexthop: s.compiled.ecmpSets[placeholderSet(t, newSets)]!)
                    }
                    if let p = p4 {
                        try s.builder.addRoute(vrf: id, p, t)
                    } else {
                        try s.builder.addRoute(vrf: id, p6!, t)
                    }
                }
            } catch {
                // Validated above; reaching this is a bug, and the model may be partly changed.
                throw APIError(500, "route change failed half way: \(error)")
            }
            return RouteChangeResult(added: parsedAdds.count, deleted: parsedDels.count, tablesVersion: 0)
        }
        sync(ticket)
        return RouteChangeResult(
            added: result.added,
            deleted: result.deleted,
            tablesVersion: publication.current.version
        )
    }

    private func parsePrefix(_ text: String) throws(APIError) -> (IPv4Prefix?, IPv6Prefix?) {
        if let p = IPv4Prefix.plain(text) ?? IPv4Prefix(text) { return (p, nil) }
        if let p = IPv6Prefix(text) { return (nil, p) }
        throw .badRequest("'\(text)' is not a prefix (address/length with the host bits zero)")
    }

    /// The target of a route spec. ECMP sets not yet known are added to `newSets`, and the
    /// returned target's nexthop is then the set's index there with the top bit set.
    private func target(
        _ r: RouteSpec,
        _ s: borrowing TableModel,
        _ newSets: inout [[RouteTarget]]
    ) throws(APIError) -> RouteTarget {
        if r.discard == true { return RouteTarget(nexthop: NodeConfig.nexthopDiscard) }
        if let i = r.interface {
            guard let nh = s.compiled.podNexthops[i] else {
                throw .notFound("route \(r.prefix): no pod interface named '\(i)'")
            }
            return RouteTarget(nexthop: nh)
        }
        func member(_ via: String, _ vni: UInt32?, _ label: UInt32?) throws(APIError) -> RouteTarget {
            guard let nh = s.compiled.nodeNexthops[via] else {
                throw .notFound("route \(r.prefix): no remote node named '\(via)'")
            }
            guard case .tunnel(let encap, _, _, _, _)? = s.builder.nexthops[nh] else {
                throw APIError(500, "node \(via) has no tunnel")
            }
            // Which of the two a node takes is the node's state (409); the range is the request's (400).
            if encap == .vxlan {
                guard let n = vni else {
                    throw .conflict("route \(r.prefix): node \(via) is VXLAN: give a vni, not a label")
                }
                guard (1...TableBuilder.maxVNI).contains(n) else {
                    throw .badRequest("route \(r.prefix): vni \(n) is outside 1...16777215")
                }
                return RouteTarget(nexthop: nh, label: n)
            }
            guard let l = label else {
                throw .conflict("route \(r.prefix): node \(via) is MPLS over UDP: give a label, not a vni")
            }
            guard (16...TableBuilder.maxLabel).contains(l) else {
                throw .badRequest("route \(r.prefix): label \(l) is outside 16...1048575")
            }
            return RouteTarget(nexthop: nh, label: l)
        }
        if let via = r.via { return try member(via, r.vni, r.label) }
        let ms = r.ecmp ?? []
        guard (1...64).contains(ms.count) else { throw .badRequest("route \(r.prefix): ECMP needs 1 to 64 members") }
        var set: [RouteTarget] = []
        for m in ms { set.append(try member(m.via, m.vni, m.label)) }
        if let nh = s.compiled.ecmpSets[set] { return RouteTarget(nexthop: nh) }
        if let i = newSets.firstIndex(of: set) { return RouteTarget(nexthop: 0x8000_0000 | UInt32(i)) }
        newSets.append(set)
        return RouteTarget(nexthop: 0x8000_0000 | UInt32(newSets.count - 1))
    }

    private func placeholderSet(_ t: RouteTarget, _ newSets: [[RouteTarget]]) -> [RouteTarget] {
        t.nexthop & 0x8000_0000 != 0 ? newSets[Int(t.nexthop & 0x7FFF_FFFF)] : []
    }

    // MARK: Remote nodes

    public func addRemoteNode(_ spec: RemoteNodeSpec) throws(APIError) {
        try validName(spec.name, "remote node")
        guard let addr = IPv4Address(spec.address) else {
            throw .badRequest("address '\(spec.address)' is not an IPv4 address")
        }
        guard addr.value != 0, !addr.isMulticast, !addr.isBroadcast else {
            throw .badRequest("address '\(spec.address)' is not a unicast address (a tunnel's far end must be one)")
        }
        let encap: TunnelEncap
        switch spec.encap {
        case "vxlan": encap = .vxlan
        case "mpls-udp", "mplsoudp", "mpls-over-udp": encap = .mplsOverUDP
        default: throw .badRequest("encap '\(spec.encap)' is not vxlan or mpls-udp")
        }
        let mac = try spec.mac.map { m throws(APIError) in
            guard let v = MACAddress(m) else { throw .badRequest("mac '\(m)' is not a MAC address") }
            return v
        }
        let inner =
            try spec.innerMAC.map { m throws(APIError) in
                guard let v = MACAddress(m) else { throw .badRequest("innerMAC '\(m)' is not a MAC address") }
                return v
            } ?? .vrouter
        let (_, ticket) = try tables.change(.addNode(spec)) { s throws(APIError) in
            guard s.compiled.nodeNexthops[spec.name] == nil else {
                throw .conflict("remote node '\(spec.name)' exists")
            }
            guard let port = s.fabric?.port else {
                throw .conflict("this node has no fabric interface for tunnels")
            }
            let nh = s.takeNexthop()
            do {
                try s.builder.setNexthop(
                    nh,
                    .tunnel(encap, port: port, destination: addr, underlayMAC: mac ?? .zero, innerMAC: inner)
                )
            } catch { throw .badRequest("\(error)") }
            s.compiled.nodeNexthops[spec.name] = nh
            s.remoteNodes.append(
                NodeConfig.RemoteNode(name: spec.name, address: addr, mac: mac, encap: encap, innerMAC: inner)
            )
        }
        sync(ticket)
        resolver?.watch()
    }

    public func deleteRemoteNode(_ name: String) throws(APIError) {
        let (_, ticket) = try tables.change(.deleteNode(name)) { s throws(APIError) in
            guard let nh = s.compiled.nodeNexthops[name] else { throw .notFound("no remote node named '\(name)'") }
            do { try s.removeNexthop(nh) } catch { throw .conflict("remote node '\(name)': \(error)") }
            s.compiled.nodeNexthops[name] = nil
            s.remoteNodes.removeAll { $0.name == name }
        }
        sync(ticket)
    }
}
