// What the cluster needs of the node (cluster mode; see ClusterStore.swift): its record for
// the others, the default network's block, the VRF a remote pod's network maps to here, and
// the view `vrouterctl cluster` shows.

import Foundation
import Logging
import VRouterAPI
import VRouterCluster
import VRouterCore

extension NodeService {
    /// This node as the others see it: its fabric address is its underlay.
    static func clusterRecord(_ config: NodeConfig) -> NodeRecord {
        let fabric = config.interfaces.first { $0.kind == .fabric }
        return NodeRecord(
            name: config.name,
            underlay: fabric?.ipv4?.description ?? "",
            mac: fabric?.mac.description,
            encapsulations: ["mpls-udp", "vxlan"],
            bootID: UUID().uuidString.lowercased()
        )
    }

    /// The default network's blocks, claimed at start; nil when the store cannot be reached
    /// (pod ADDs then fail with a clear error until it can; `ensureClusterPools` tries again).
    static func clusterPools(_ d: NodeConfig.DefaultNetwork, _ etcd: EtcdStore, _ log: Logger) -> NetworkPools? {
        do {
            return try etcd.pools(
                network: EtcdStore.networkKey(d.name),
                subnet4: d.subnet4,
                gateway4: d.gateway4,
                subnet6: d.subnet6,
                gateway6: d.gateway6
            )
        } catch {
            log.error("default network: no address block yet", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Claims the default network's blocks if the start could not (etcd was away).
    func ensureClusterPools() {
        guard let etcd, let d = config.defaultNetwork, attachments.withLock({ $0.pools[d.name] == nil }) else { return }
        guard let pools = Self.clusterPools(d, etcd, log) else { return }
        attachments.withLock { a in
            a.pools[d.name] = pools
            for p in a.pods.values { a.markAddresses(p, used: true) }
        }
    }

    /// Whether a pod of this node, attached or being added, holds an address claim: one
    /// of this node that none holds is stale (EtcdStore.claim takes it over).
    func holdsClaim(_ claim: AddressClaim) -> Bool {
        guard let etcd else { return true }
        let pods = attachments.withLock { a in Array(a.pods.values) + a.adding.values.map { PodRecord($0) } }
        return etcd.holds(pods, claim)
    }

    /// The VRF (and its VNI here) that a cluster network maps to on this node, and how
    /// this node tunnels to its pods on other nodes (the network's `vrouter.io/encap`, else
    /// `cluster.encap`); nil when this node does not have the network (its pods are then not
    /// routed here).
    func clusterVRF(of network: NetworkKey) -> (vrf: String, vni: UInt32?, encap: TunnelEncap)? {
        let encap = config.cluster?.encap ?? .mplsOverUDP
        let found: (String, String?)?
        if network.namespace == "-" {
            found = config.defaultNetwork?.name == network.name ? (network.name, nil) : nil
        } else {
            found = attachments.withLock { a in
                a.networks[network.description].flatMap { r in
                    r.vrf.map { ($0, r.annotations[NetworkRecord.encapAnnotation]) }
                }
            }
        }
        guard let (vrf, named) = found else { return nil }
        let e: TunnelEncap =
            switch named {
            case "vxlan": .vxlan
            case "mpls-udp": .mplsOverUDP
            default: encap
            }
        return (vrf, tables.read { $0.vnis[vrf] }, e)
    }

    public func clusterInfo() throws(APIError) -> ClusterInfo {
        guard let agent = clusterAgent else {
            throw .notFound("this node is not in cluster mode (no cluster: in its config)")
        }
        return blocking { () async -> ClusterInfo in await agent.info() }
    }
}
