// Applying and removing networks (NADs). Apply is idempotent (the same definition again is
// "unchanged"); a changed definition of a network pods use is refused, as is deleting one
// (naming the pods) unless forced: Contrail left the VN in place with RefsExistError, and
// a network that changes under running pods would give them addresses outside its subnet.
// The record is checked by VRouterAPI (NetworkRecord(validating:)); here the attachments
// part checks it against the pods, the tables part makes its VRF.

import Foundation
import VRouterAPI
import VRouterCore

extension NodeService {
    // MARK: apply, delete

    /// `fromCluster`: the network comes from the cluster store (another node applied it), so
    /// it is not written back there.
    public func applyNetwork(
        _ nad: NetworkAttachmentDefinition,
        fromCluster: Bool = false
    ) throws(APIError) -> NetworkApplyResult {
        let wanted = try NetworkRecord(validating: nad)
        let key = wanted.key
        let step = try attachments.withLock { a throws(APIError) in
            try a.beginApply(wanted, defaultNetwork: config.defaultNetwork?.name)
        }
        var replaced: NetworkRecord?
        switch step {
        case .unchanged: return NetworkApplyResult(network: key, action: "unchanged")
        case .create: break
        case .replace(let old): replaced = old
        }
        do throws(APIError) {
            let pools = wanted.kind == .vrouter ? try cluster.pools(for: wanted) : nil
            if !fromCluster { try cluster.apply(wanted, nad: nad) }
            let rec = try tables.change { m throws(APIError) -> NetworkRecord in
                if let old = replaced { try Tables.removeNetworkVRF(old, &m) }
                do throws(APIError) { return try Tables.addNetworkVRF(wanted, &m) } catch {
                    if let old = replaced { _ = try? Tables.addNetworkVRF(old, &m) }
                    throw error
                }
            }.0
            sync(
                attachments.withLock { a in
                    a.finishApply(rec, pools: pools)
                    return journal.record(.network(rec))
                }
            )
            // The underlay gateway's MAC, if this network made the node route through it.
            if rec.ipFabricSnat || rec.ipFabricForwarding { resolver?.watch() }
        } catch {
            attachments.withLock { _ = $0.changingNetworks.remove(key) }
            throw error
        }
        return NetworkApplyResult(network: key, action: replaced == nil ? "created" : "configured")
    }

    /// Deletes a network; refused while pods use it unless `force` (their interfaces on it
    /// are then removed, and the rest of each pod stays). `fromCluster`: it is gone from the
    /// cluster store already.
    public func deleteNetwork(namespace: String, name: String, force: Bool, fromCluster: Bool = false) throws(APIError)
    {
        let key = "\(namespace)/\(name)"
        let (rec, vifs) = try attachments.withLock { a throws(APIError) in try a.beginDelete(key, force: force) }
        do throws(APIError) {
            if !fromCluster { try cluster.delete(rec) }
            releasePorts(vifs, container: key)
            sync(attachments.withLock { a in a.detachNetwork(rec).map { journal.record($0) }.last ?? .none })
            try tables.removeNetworkVRF(rec)
            sync(
                attachments.withLock { a in
                    a.forgetNetwork(key)
                    return journal.record(.deleteNetwork(key))
                }
            )
        } catch {
            attachments.withLock { _ = $0.changingNetworks.remove(key) }
            throw error
        }
    }

    // MARK: reads

    public func networks() -> [NetworkInfo] {
        let defaultVNI = config.defaultNetwork.flatMap { d in tables.read { $0.vnis[d.name] } }
        return attachments.withLock { a in
            var out: [NetworkInfo] = []
            if let d = config.defaultNetwork { out.append(defaultNetworkInfo(d, defaultVNI, a)) }
            for rec in a.networks.values.sorted(by: { $0.key < $1.key }) { out.append(info(rec, a)) }
            return out
        }
    }

    public func network(namespace: String, name: String) throws(APIError) -> NetworkInfo {
        if let d = config.defaultNetwork, name == d.name,
            namespace.isEmpty || namespace == "default" || namespace == "-"
        {
            let vni = tables.read { $0.vnis[d.name] }
            return attachments.withLock { a in defaultNetworkInfo(d, vni, a) }
        }
        return try attachments.withLock { a throws(APIError) in
            guard let rec = a.networks["\(namespace)/\(name)"] else {
                throw .notFound("no network \(namespace)/\(name)")
            }
            return info(rec, a)
        }
    }

    private func info(_ rec: NetworkRecord, _ a: borrowing PodAttachments) -> NetworkInfo {
        let pools = a.pools[rec.key]
        let users = a.users(of: rec.key)
        return NetworkInfo(
            network: rec,
            isDefault: false,
            pods: users,
            addressesInUse: rec.kind == .vrouter ? pools?.inUse ?? 0 : users.count,
            addressesFree: rec.kind == .vrouter ? pools?.free : nil
        )
    }

    private func defaultNetworkInfo(
        _ d: NodeConfig.DefaultNetwork,
        _ vni: UInt32?,
        _ a: borrowing PodAttachments
    ) -> NetworkInfo {
        let pools = a.pools[d.name]
        return NetworkInfo(
            network: Self.record(of: d, vni: vni ?? d.vni),
            isDefault: true,
            pods: a.users(of: d.name),
            addressesInUse: pools?.inUse ?? 0,
            addressesFree: pools?.free
        )
    }

    /// The default network as a record (as `network show` prints it).
    static func record(of d: NodeConfig.DefaultNetwork, vni: UInt32?) -> NetworkRecord {
        NetworkRecord(
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
            vni: vni,
            ipFabricForwarding: d.ipFabricForwarding,
            ipFabricSnat: d.ipFabricSnat,
            annotations: [:]
        )
    }

    /// The default network's pools, made from the config (at start): a family whose subnet
    /// leaves this node no address has none.
    static func defaultPools(_ d: NodeConfig.DefaultNetwork, _ c: NodeConfig) -> NetworkPools {
        var pools = NetworkPools()
        if let p = d.subnet4, let g = d.gateway4 {
            pools.v4 = SubnetPool.v4(p, gateway: g, slice: c.ipamSlice, slices: c.ipamSlices)
        }
        if let p = d.subnet6, let g = d.gateway6 {
            pools.v6 = SubnetPool.v6(p, gateway: g, slice: c.ipamSlice, slices: c.ipamSlices)
        }
        return pools
    }
}
