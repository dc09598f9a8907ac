// Applying and removing networks (NADs). Apply is idempotent (the same definition again is
// "unchanged"); a changed definition of a network pods use is refused, as is deleting one
// (naming the pods) unless forced: Contrail left the VN in place with RefsExistError, and
// a network that changes under running pods would give them addresses outside its subnet.

import Foundation
import VRouterAPI
import VRouterCore

extension NodeService {
    // MARK: apply, delete

    public func applyNetwork(_ nad: NetworkAttachmentDefinition) throws(APIError) -> NetworkApplyResult {
        let wanted = try NetworkRecord(validating: nad)
        return try state.withLock { s throws(APIError) -> NetworkApplyResult in
            let key = wanted.key
            if let dn = s.config.defaultNetwork, wanted.vrf == dn.name {
                throw .conflict("network \(key): its VRF name is the default network's")
            }
            var action = "created"
            if let old = s.cni.networks[key] {
                if Self.sameDefinition(old, wanted) { return NetworkApplyResult(network: key, action: "unchanged") }
                let users = s.cni.users(of: key)
                guard users.isEmpty else {
                    throw .conflict(
                        "network \(key) is used by pods (\(users.joined(separator: ", "))); delete them before changing it"
                    )
                }
                try removeNetwork(old, &s)
                action = "configured"
            }
            let rec = try installNetwork(wanted, &s)
            publication.publish(s.builder.build())
            journal(.network(rec), s)
            return NetworkApplyResult(network: key, action: action)
        }
    }

    /// Deletes a network; refused while pods use it unless `force` (their interfaces on it
    /// are then removed, and the rest of each pod stays).
    public func deleteNetwork(namespace: String, name: String, force: Bool) throws(APIError) {
        let key = "\(namespace)/\(name)"
        try state.withLock { s throws(APIError) in
            guard let rec = s.cni.networks[key] else { throw .notFound("no network \(key)") }
            let users = s.cni.users(of: key)
            if !users.isEmpty && !force {
                throw .conflict(
                    "network \(key) is used by pods: \(users.joined(separator: ", ")) (delete them first, or --force)"
                )
            }
            for (cid, var pod) in s.cni.pods {
                var changed = false
                for i in pod.attachments.indices
                where pod.attachments[i].network == key && pod.attachments[i].detached != true {
                    if pod.attachments[i].delegate == nil { releaseAttachment(pod.attachments[i], &s) }
                    if rec.kind == .vrouter { pod.attachments[i].detached = true }
                    changed = true
                }
                if changed {
                    s.cni.pods[cid] = pod
                    journal(.pod(pod), s)
                }
            }
            try removeNetwork(rec, &s)
            publication.publish(s.builder.build())
            journal(.deleteNetwork(key), s)
        }
    }

    static func sameDefinition(_ a: NetworkRecord, _ b: NetworkRecord) -> Bool {
        var x = a
        x.vni = nil
        var y = b
        y.vni = nil
        return x == y && (b.vni == nil || a.vni == b.vni)
    }

    /// Makes a network's VRF (vRouter networks) and pools, and records it. Checks every
    /// conflict before changing anything.
    @discardableResult
    func installNetwork(_ wanted: NetworkRecord, _ s: inout ControlState) throws(APIError) -> NetworkRecord {
        var rec = wanted
        guard rec.kind == .vrouter, let vrf = rec.vrf else {
            s.cni.networks[rec.key] = rec
            return rec
        }
        guard s.compiled.vrfIDs[vrf] == nil else { throw .conflict("network \(rec.key): a VRF named '\(vrf)' exists") }
        if let n = rec.vni {
            if let other = s.vnis.first(where: { $0.value == n }) {
                throw .conflict("network \(rec.key): VNI \(n) is taken by VRF '\(other.key)'")
            }
        } else {
            // A VNI from the name, so that nodes applying the same NADs in any order agree
            // (unless two names collide: the later one probes on, and `vrouter.io/vni` pins it).
            var h: UInt32 = 2_166_136_261
            for b in rec.key.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
            var n = 0x80_0000 | (h & 0x7F_FFFF)
            let taken = Set(s.vnis.values)
            while taken.contains(n) { n = n == 0xFF_FFFF ? 0x80_0000 : n + 1 }
            rec.vni = n
        }
        let g4 = rec.gateway.flatMap { IPv4Address($0) }
        let g6 = rec.gateway6.flatMap { IPv6Address($0) }
        var pools: [SubnetPool] = []
        let slice = s.config.ipamSlice
        let slices = s.config.ipamSlices
        if let p = rec.subnet.flatMap({ IPv4Prefix($0) }), let g = g4 {
            guard let pool = SubnetPool.v4(p, gateway: g, slice: slice, slices: slices) else {
                throw .badRequest(
                    "network \(rec.key): subnet \(p) split in \(slices) slices leaves this node no addresses"
                )
            }
            pools.append(pool)
        }
        if let p = rec.subnet6.flatMap({ IPv6Prefix($0) }), let g = g6 {
            guard let pool = SubnetPool.v6(p, gateway: g, slice: slice, slices: slices) else {
                throw .badRequest(
                    "network \(rec.key): subnet \(p) split in \(slices) slices leaves this node no addresses"
                )
            }
            pools.append(pool)
        }
        guard let id = (1...UInt16(65534)).first(where: { s.builder.vrfs[$0] == nil }) else {
            throw .conflict("no free VRF id")
        }
        do {
            try s.builder.setVRF(id, VRFConfig(name: vrf, gateway4: g4, gateway6: g6))
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
            try s.builder.setVNI(rec.vni!, vrf: id)
        } catch {
            try? s.builder.removeVRF(id)
            throw APIError(500, "network \(rec.key): \(error)")
        }
        s.compiled.vrfIDs[vrf] = id
        s.vnis[vrf] = rec.vni
        s.config.vrfs.append(NodeConfig.VRF(name: vrf, id: id, vni: rec.vni, gateway4: g4, gateway6: g6))
        s.cni.networks[rec.key] = rec
        s.cni.pools[rec.key] = pools
        return rec
    }

    func removeNetwork(_ rec: NetworkRecord, _ s: inout ControlState) throws(APIError) {
        if rec.kind == .vrouter, let vrf = rec.vrf, let id = s.compiled.vrfIDs[vrf] {
            let users = s.config.interfaces.filter { $0.vrf == vrf }.map(\.name)
            guard users.isEmpty else {
                throw .conflict(
                    "network \(rec.key): VRF '\(vrf)' still has interfaces: \(users.joined(separator: ", "))"
                )
            }
            if let n = s.vnis[vrf] { try? s.builder.removeVNI(n) }
            do { try s.builder.removeVRF(id) } catch { throw .conflict("network \(rec.key): \(error)") }
            s.compiled.vrfIDs[vrf] = nil
            s.vnis[vrf] = nil
            s.config.vrfs.removeAll { $0.name == vrf }
        }
        s.cni.networks[rec.key] = nil
        s.cni.pools[rec.key] = nil
    }

    // MARK: reads

    public func networks() -> [NetworkInfo] {
        state.withLock { s in
            var out: [NetworkInfo] = []
            if let d = s.config.defaultNetwork { out.append(defaultNetworkInfo(d, s)) }
            for rec in s.cni.networks.values.sorted(by: { $0.key < $1.key }) { out.append(info(rec, s)) }
            return out
        }
    }

    public func network(namespace: String, name: String) throws(APIError) -> NetworkInfo {
        try state.withLock { s throws(APIError) in
            if let d = s.config.defaultNetwork, name == d.name,
                namespace.isEmpty || namespace == "default" || namespace == "-"
            {
                return defaultNetworkInfo(d, s)
            }
            guard let rec = s.cni.networks["\(namespace)/\(name)"] else {
                throw .notFound("no network \(namespace)/\(name)")
            }
            return info(rec, s)
        }
    }

    private func info(_ rec: NetworkRecord, _ s: ControlState) -> NetworkInfo {
        let pools = s.cni.pools[rec.key] ?? []
        let users = s.cni.users(of: rec.key)
        let inUse = rec.kind == .vrouter ? pools.reduce(0) { $0 + $1.used.count } : users.count
        return NetworkInfo(
            network: rec,
            isDefault: false,
            pods: users,
            addressesInUse: inUse,
            addressesFree: rec.kind == .vrouter ? pools.first.map(\.free) : nil
        )
    }

    private func defaultNetworkInfo(_ d: NodeConfig.DefaultNetwork, _ s: ControlState) -> NetworkInfo {
        let rec = NetworkRecord(
            namespace: "",
            name: d.name,
            kind: .vrouter,
            pluginType: "vrouter-cni",
            config: nil,
            subnet: d.subnet4?.description,
            subnet6: d.subnet6?.description,
            gateway: d.gateway4?.description,
            gateway6: d.gateway6?.description,
            vrf: d.name,
            vni: s.vnis[d.name] ?? d.vni,
            ipFabricForwarding: false,
            ipFabricSnat: false,
            annotations: [:]
        )
        let pools = s.cni.pools[d.name] ?? []
        return NetworkInfo(
            network: rec,
            isDefault: true,
            pods: s.cni.users(of: d.name),
            addressesInUse: pools.reduce(0) { $0 + $1.used.count },
            addressesFree: pools.first.map(\.free)
        )
    }

    /// The default network's pools, made from the config (at start).
    static func defaultPools(_ c: NodeConfig) -> [String: [SubnetPool]] {
        guard let d = c.defaultNetwork else { return [:] }
        var pools: [SubnetPool] = []
        if let p = d.subnet4, let g = d.gateway4,
            let pool = SubnetPool.v4(p, gateway: g, slice: c.ipamSlice, slices: c.ipamSlices)
        {
            pools.append(pool)
        }
        if let p = d.subnet6, let g = d.gateway6,
            let pool = SubnetPool.v6(p, gateway: g, slice: c.ipamSlice, slices: c.ipamSlices)
        {
            pools.append(pool)
        }
        return [d.name: pools]
    }
}
