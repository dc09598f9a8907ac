// Changing a running node. Each operation checks everything first, then changes the
// model and publishes once; a failure after a partial change (only possible for steps
// that touch the kernel, like making a tap) undoes what was done.

import Foundation
import VRouterAPI
import VRouterCore
import VRouterIO

extension NodeService {
    /// Runs `body` on the control state, publishes the resulting tables, and journals `record`.
    private func mutate<R>(
        _ record: @autoclosure () -> StateRecord?,
        _ body: (inout ControlState) throws(APIError) -> R
    )
        throws(APIError) -> R
    {
        try state.withLock { s throws(APIError) -> R in
            let r = try body(&s)
            publication.publish(s.builder.build())
            if let rec = record() { journal(rec, s) }
            return r
        }
    }

    // MARK: VRFs

    public func addVRF(_ spec: VRFSpec) throws(APIError) -> VRFInfo {
        try validName(spec.name, "VRF")
        let g4 = try spec.gateway.map { g throws(APIError) in
            guard let a = IPv4Address(g) else { throw .badRequest("gateway '\(g)' is not an IPv4 address") }
            return a
        }
        let g6 = try spec.gateway6.map { g throws(APIError) in
            guard let a = IPv6Address(g) else { throw .badRequest("gateway6 '\(g)' is not an IPv6 address") }
            return a
        }
        if let n = spec.vni, !(1...TableBuilder.maxVNI).contains(n) {
            throw .badRequest("vni \(n) is outside 1...16777215")
        }
        try mutate(.addVRF(spec)) { s throws(APIError) in
            guard s.compiled.vrfIDs[spec.name] == nil else { throw .conflict("VRF '\(spec.name)' exists") }
            if let n = spec.vni, let other = s.vnis.first(where: { $0.value == n }) {
                throw .conflict("VNI \(n) is taken by VRF '\(other.key)'")
            }
            let id = (1...UInt16(65534)).first { s.builder.vrfs[$0] == nil }!
            do {
                try s.builder.setVRF(id, VRFConfig(name: spec.name, gateway4: g4, gateway6: g6))
                if let g = g4 {
                    try s.builder.addRoute(
                        vrf: id,
                        IPv4Prefix(g, length: 32)!,
                        RouteTarget(nexthop: NodeConfig.nexthopReceive)
                    )
                }
                if let g = g6 {
                    try s.builder.addRoute(
                        vrf: id,
                        IPv6Prefix(g, length: 128)!,
                        RouteTarget(nexthop: NodeConfig.nexthopReceive)
                    )
                }
                if let n = spec.vni { try s.builder.setVNI(n, vrf: id) }
            } catch { throw .badRequest("\(error)") }
            s.compiled.vrfIDs[spec.name] = id
            if let n = spec.vni { s.vnis[spec.name] = n }
            s.config.vrfs.append(NodeConfig.VRF(name: spec.name, id: id, vni: spec.vni, gateway4: g4, gateway6: g6))
        }
        return vrfs().first { $0.name == spec.name }!
    }

    public func deleteVRF(_ name: String) throws(APIError) {
        try mutate(.deleteVRF(name)) { s throws(APIError) in
            guard let id = s.compiled.vrfIDs[name] else { throw .notFound("no VRF named '\(name)'") }
            let users = s.config.interfaces.filter { $0.vrf == name }.map(\.name)
            guard users.isEmpty else {
                throw .conflict("VRF '\(name)' still has interfaces: \(users.sorted().joined(separator: ", "))")
            }
            if let n = s.vnis[name] { try? s.builder.removeVNI(n) }
            do { try s.builder.removeVRF(id) } catch { throw .conflict("\(error)") }
            s.compiled.vrfIDs[name] = nil
            s.vnis[name] = nil
            s.config.vrfs.removeAll { $0.name == name }
        }
    }

    // MARK: Routes

    /// Applies a batch of route changes to one VRF, all or nothing.
    public func changeRoutes(vrf name: String, _ change: RouteChange) throws(APIError) -> RouteChangeResult {
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
            parsedAdds.append((p4, p6, r))
        }
        var parsedDels: [(IPv4Prefix?, IPv6Prefix?)] = []
        for d in dels { parsedDels.append(try parsePrefix(d)) }
        let result = try mutate(.routes(name, change)) { s throws(APIError) -> RouteChangeResult in
            guard let id = s.compiled.vrfIDs[name], let v = s.builder.vrfs[id] else {
                throw .notFound("no VRF named '\(name)'")
            }
            // Check every delete names a route and every add resolves, before any change.
            for (p4, p6) in parsedDels {
                let present: Bool
                if let p = p4 { present = v.routes4[p] != nil } else { present = v.routes6[p6!] != nil }
                guard present else {
                    throw .notFound("VRF '\(name)' has no route \(p4?.description ?? p6!.description)")
                }
            }
            var targets: [RouteTarget] = []
            targets.reserveCapacity(parsedAdds.count)
            var newSets: [[RouteTarget]] = []
            for (_, _, r) in parsedAdds { targets.append(try target(r, s, &newSets)) }
            // Apply: new ECMP sets, deletes, adds.
            do {
                for set in newSets where s.compiled.ecmpSets[set] == nil {
                    let nh = s.compiled.nextNexthop
                    s.compiled.nextNexthop += 1
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
                    if r.ecmp != nil { t = RouteTarget(nexthop: s.compiled.ecmpSets[placeholderSet(t, newSets)]!) }
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
        _ s: ControlState,
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
            if encap == .vxlan {
                guard let n = vni, (1...TableBuilder.maxVNI).contains(n) else {
                    throw .badRequest("route \(r.prefix): node \(via) is VXLAN: give a vni in 1...16777215")
                }
                return RouteTarget(nexthop: nh, label: n)
            }
            guard let l = label, (16...TableBuilder.maxLabel).contains(l) else {
                throw .badRequest("route \(r.prefix): node \(via) is MPLS over UDP: give a label in 16...1048575")
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
        try mutate(.addNode(spec)) { s throws(APIError) in
            guard s.compiled.nodeNexthops[spec.name] == nil else {
                throw .conflict("remote node '\(spec.name)' exists")
            }
            guard let fabric = s.config.interfaces.first(where: { $0.kind == .fabric }),
                let port = s.compiled.portIDs[fabric.name]
            else {
                throw .conflict("this node has no fabric interface for tunnels")
            }
            let nh = s.compiled.nextNexthop
            do {
                try s.builder.setNexthop(
                    nh,
                    .tunnel(encap, port: port, destination: addr, underlayMAC: mac ?? .zero, innerMAC: inner)
                )
            } catch { throw .badRequest("\(error)") }
            s.compiled.nextNexthop += 1
            s.compiled.nodeNexthops[spec.name] = nh
            s.config.remoteNodes.append(
                NodeConfig.RemoteNode(name: spec.name, address: addr, mac: mac, encap: encap, innerMAC: inner)
            )
        }
        resolver?.watch()
    }

    public func deleteRemoteNode(_ name: String) throws(APIError) {
        try mutate(.deleteNode(name)) { s throws(APIError) in
            guard let nh = s.compiled.nodeNexthops[name] else { throw .notFound("no remote node named '\(name)'") }
            do { try s.builder.removeNexthop(nh) } catch { throw .conflict("remote node '\(name)': \(error)") }
            s.compiled.nodeNexthops[name] = nil
            s.config.remoteNodes.removeAll { $0.name == name }
        }
    }

    // MARK: Interfaces

    public func addInterface(_ spec: InterfaceSpec) throws(APIError) -> InterfaceInfo {
        try validName(spec.name, "interface")
        guard let mac = MACAddress(spec.mac) else { throw .badRequest("mac '\(spec.mac)' is not a MAC address") }
        var itf = NodeConfig.Interface(name: spec.name, kind: .pod, mac: mac)
        itf.vrf = spec.vrf
        if let m = spec.mtu {
            guard (68...9000).contains(m) else { throw .badRequest("mtu \(m) is outside 68...9000") }
            itf.mtu = m
        }
        if let a = spec.ipv4 {
            let (addr, len) = try addressWithLength(a, 32) { IPv4Address($0) }
            itf.ipv4 = addr
            itf.ipv4PrefixLength = len
        }
        if let a = spec.ipv6 {
            let (addr, len) = try addressWithLength(a, 128) { IPv6Address($0) }
            itf.ipv6 = addr
            itf.ipv6PrefixLength = len
        }
        if let l = spec.label, !(16...TableBuilder.maxLabel).contains(l) {
            throw .badRequest("label \(l) is outside 16...1048575")
        }
        itf.label = spec.label
        itf.antiSpoofing = spec.antiSpoofing ?? true
        itf.defaultRoute = spec.defaultRoute ?? true
        guard !spec.tap.name.isEmpty, spec.tap.name.utf8.count <= 15 else {
            throw .badRequest("tap name '\(spec.tap.name)' is not a valid interface name (1-15 bytes)")
        }
        itf.tap = NodeConfig.Tap(
            name: spec.tap.name,
            netns: spec.tap.netns,
            ifname: spec.tap.ifname,
            persistent: spec.tap.persistent ?? false
        )
        if let n = spec.tap.netns, !NetworkNamespace.at(n).exists {
            throw .badRequest("network namespace '\(n)' does not exist")
        }

        return try state.withLock { s throws(APIError) -> InterfaceInfo in
            let port = try installInterface(itf, &s)
            publication.publish(s.builder.build())
            journal(.addInterface(spec), s)
            return interfaceInfo(itf, port)
        }
    }

    /// Makes a pod interface (tap in its namespace, port, nexthop, /32 and /128 routes,
    /// label, the workers' queues) without publishing or journaling: callers publish once
    /// for a batch. `reattach`: a persistent tap already in the namespace is taken over (a
    /// restart) rather than refused.
    func installInterface(
        _ itf: NodeConfig.Interface,
        _ s: inout ControlState,
        reattach: Bool = true,
        gateways: (IPv4Address?, IPv6Address?)? = nil
    ) throws(APIError) -> UInt16 {
        let name = itf.name
        let vrfName = itf.vrf ?? ""
        guard s.compiled.portIDs[name] == nil else { throw .conflict("interface '\(name)' exists") }
        guard let vrfID = s.compiled.vrfIDs[vrfName], let vrf = s.builder.vrfs[vrfID] else {
            throw .notFound("no VRF named '\(vrfName)'")
        }
        if let a = itf.ipv4, vrf.routes4[IPv4Prefix(a, length: 32)!] != nil {
            throw .conflict("\(a) is already routed in VRF '\(vrfName)'")
        }
        if let a = itf.ipv6, vrf.routes6[IPv6Prefix(a, length: 128)!] != nil {
            throw .conflict("\(a) is already routed in VRF '\(vrfName)'")
        }
        if let l = itf.label, s.builder.labels[l] != nil { throw .conflict("label \(l) is taken") }
        guard let port = (UInt16(0)..<UInt16(Counters.maxPorts)).first(where: { s.builder.ports[$0] == nil }) else {
            throw .conflict("no free port id")
        }
        let mac = itf.mac
        // Kernel side first: the tap in the pod's namespace.
        let tap: TapPort
        do {
            tap = try makeTap(
                itf,
                queues: max(workers.count, 1),
                reattach: reattach,
                gateways: gateways ?? (vrf.gateway4, vrf.gateway6)
            )
        } catch {
            throw .badRequest("interface '\(name)': \(error)")
        }
        // Tables: the port, its nexthop, routes and label; then the workers' queues.
        let nh = s.compiled.nextNexthop
        do {
            try s.builder.setPort(
                port,
                PortConfig(
                    kind: .pod,
                    name: name,
                    vrf: vrfID,
                    mac: mac,
                    mtu: itf.mtu,
                    ipv4: itf.ipv4,
                    ipv6: itf.ipv6,
                    antiSpoofing: itf.antiSpoofing
                )
            )
            try s.builder.setNexthop(nh, .encap(port: port, mac: mac))
            if let a = itf.ipv4 {
                try s.builder.addRoute(vrf: vrfID, IPv4Prefix(a, length: 32)!, RouteTarget(nexthop: nh))
            }
            if let a = itf.ipv6 {
                try s.builder.addRoute(vrf: vrfID, IPv6Prefix(a, length: 128)!, RouteTarget(nexthop: nh))
            }
            if let l = itf.label { try s.builder.setLabel(l, nexthop: nh) }
        } catch {
            if let a = itf.ipv4 { try? s.builder.removeRoute(vrf: vrfID, IPv4Prefix(a, length: 32)!) }
            if let a = itf.ipv6 { try? s.builder.removeRoute(vrf: vrfID, IPv6Prefix(a, length: 128)!) }
            try? s.builder.removeNexthop(nh)
            try? s.builder.removePort(port)
            try? tap.delete()
            throw APIError(500, "interface '\(name)': \(error)")
        }
        s.compiled.nextNexthop += 1
        s.compiled.portIDs[name] = port
        s.compiled.podNexthops[name] = nh
        s.config.interfaces.append(itf)
        s.taps[name] = tap
        for (w, worker) in workers.enumerated() {
            let c = WorkerCommand(.addTap(port, tap, w))
            worker.perform(c)
            if let e = c.error { log.error("worker could not take the tap", metadata: ["error": "\(e)"]) }
        }
        return port
    }

    public func deleteInterface(_ name: String) throws(APIError) {
        try state.withLock { s throws(APIError) in
            try uninstallInterfaces([name], &s)
            journal(.deleteInterface(name), s)
        }
    }

    /// Removes pod interfaces: every check first, then their routes, nexthops and ports
    /// leave the tables (published once, so nothing routes to them), then the workers let
    /// go of them, then the devices go.
    func uninstallInterfaces(_ names: [String], _ s: inout ControlState) throws(APIError) {
        var doomed: [(String, UInt16, NodeConfig.Interface, UInt32)] = []
        for name in names {
            guard let port = s.compiled.portIDs[name], let itf = s.config.interfaces.first(where: { $0.name == name })
            else {
                throw .notFound("no interface named '\(name)'")
            }
            guard itf.kind == .pod else { throw .conflict("the fabric interface cannot be removed while running") }
            let nh = s.compiled.podNexthops[name]!
            // Routes other than the interface's own /32 and /128 that point at it.
            let own4 = itf.ipv4.map { IPv4Prefix($0, length: 32)! }
            let own6 = itf.ipv6.map { IPv6Prefix($0, length: 128)! }
            var routed: [String] = []
            for v in s.builder.vrfs.values {
                for (p, t) in v.routes4 where t.nexthop == nh && p != own4 { routed.append("\(v.name) \(p)") }
                for (p, t) in v.routes6 where t.nexthop == nh && p != own6 { routed.append("\(v.name) \(p)") }
            }
            guard routed.isEmpty else {
                throw .conflict(
                    "interface '\(name)' is the target of routes: \(routed.prefix(5).joined(separator: ", "))"
                )
            }
            doomed.append((name, port, itf, nh))
        }
        for (name, port, itf, nh) in doomed {
            let vrfID = s.builder.ports[port]!.vrf
            do {
                if let a = itf.ipv4 { try s.builder.removeRoute(vrf: vrfID, IPv4Prefix(a, length: 32)!) }
                if let a = itf.ipv6 { try s.builder.removeRoute(vrf: vrfID, IPv6Prefix(a, length: 128)!) }
                if let l = itf.label { try s.builder.removeLabel(l) }
                try s.builder.removeNexthop(nh)
                try s.builder.removePort(port)
            } catch { throw APIError(500, "interface '\(name)': \(error)") }
        }
        guard !doomed.isEmpty else { return }
        publication.publish(s.builder.build())
        var closing: [TapPort] = []
        for (name, port, _, _) in doomed {
            for w in workers { w.perform(WorkerCommand(.removePort(port))) }
            if let tap = s.taps.removeValue(forKey: name) { closing.append(tap) }
        }
        // Removing a device waits out RCU grace periods in the kernel (~35 ms a tap here);
        // a pod's taps are removed as one batch and share the wait.
        for error in TapPort.deleteAll(closing) {
            log.warning("removing tap failed", metadata: ["error": "\(error)"])
        }
        for (name, _, _, _) in doomed {
            s.compiled.portIDs[name] = nil
            s.compiled.podNexthops[name] = nil
            s.config.interfaces.removeAll { $0.name == name }
        }
    }

    func interfaceInfo(_ itf: NodeConfig.Interface, _ port: UInt16) -> InterfaceInfo {
        InterfaceInfo(
            id: Int(port),
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
            rxPackets: 0,
            rxBytes: 0,
            txPackets: 0,
            txBytes: 0,
            drops: 0
        )
    }

    // MARK: helpers

    private func validName(_ n: String, _ what: String) throws(APIError) {
        guard !n.isEmpty, n.utf8.count <= 63, n.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != UInt8(ascii: "/") })
        else {
            throw .badRequest("\(what) name '\(n)' must be 1-63 printable characters without spaces or '/'")
        }
    }

    private func addressWithLength<A>(
        _ text: String,
        _ max: Int,
        _ parse: (Substring) -> A?
    ) throws(APIError) -> (A, Int) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let a = parse(parts[0]) else { throw .badRequest("'\(text)' is not an address") }
        guard parts.count == 2 else { return (a, max) }
        guard let l = Int(parts[1]), (0...max).contains(l) else {
            throw .badRequest("'\(text)': prefix length must be 0...\(max)")
        }
        return (a, l)
    }
}

/// A change the state journal records, replayed after a restart.
public enum StateRecord: Codable, Sendable {
    case addVRF(VRFSpec)
    case deleteVRF(String)
    case routes(String, RouteChange)
    case addNode(RemoteNodeSpec)
    case deleteNode(String)
    case addInterface(InterfaceSpec)
    case deleteInterface(String)
    /// A network applied (its VRF made with it), or removed.
    case network(NetworkRecord)
    case deleteNetwork(String)
    /// A pod's record as it is now (its interfaces made with it), or released.
    case pod(PodRecord)
    case podReleased(String)
}
