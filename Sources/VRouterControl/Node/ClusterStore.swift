// Where the cluster store plugs in. Alone (the embedded default) a node keeps its state in
// its local journal and hands out addresses from its own slice of each subnet; in a cluster
// (etcd, issue 15) the same points must agree with the other nodes. The node calls the store
// at exactly these points, always outside every part's lock, so a store that waits on the
// network never holds up a read or another request:
//   - pools:     the address blocks this node allocates from, per network (alone: slice K
//                of N of the config; in a cluster: blocks claimed with block affinity);
//   - claim:     before a pod's devices are made, its addresses (requested `ips` included)
//                claimed cluster-wide; a refusal undoes the plan and fails the ADD whole;
//   - publish/withdraw: after a pod's commit or release, its endpoints (network, addresses,
//                MPLS label, VNI, this node) for the other nodes' routes;
//   - apply/delete: a network applied on any node reaches every node; deleting one that a
//                pod on any node uses is refused (the store's transaction decides).
// Remote pods come the other way: the store's watch turns other nodes' endpoints into
// routes through one tunnel nexthop per remote node, with the node's existing calls
// (`addRemoteNode`, `changeRoutes`), which the tables part serialises with everything else
// (Cluster/ClusterAgent.swift; the etcd store is Cluster/EtcdStore.swift).

import VRouterAPI
import VRouterCore

protocol ClusterStore: Sendable {
    /// The pools this node allocates `network`'s addresses from; throws when a subnet of it
    /// leaves this node no address.
    func pools(for network: NetworkRecord) throws(APIError) -> NetworkPools
    /// Claims a planned pod's addresses (before its devices are made).
    func claim(_ pod: PodRecord) throws(CNIFailure)
    /// The pod is attached (committed): its endpoints are published.
    func publish(_ pod: PodRecord)
    /// The pod's vRouter attachments are released: their endpoints are withdrawn and their
    /// addresses unclaimed.
    func withdraw(_ pod: PodRecord)
    /// A network is about to be applied (checked locally); refusing keeps it off every node.
    func apply(_ network: NetworkRecord, nad: NetworkAttachmentDefinition) throws(APIError)
    /// A network is about to be deleted here (no local pod uses it, or forced).
    func delete(_ network: NetworkRecord) throws(APIError)
}

/// The embedded default: one node, its state in its journal, addresses from its static
/// slice of every subnet (`ipam: {slice: K, slices: N}`), nothing to agree with anyone.
struct LocalStore: ClusterStore {
    let slice: Int
    let slices: Int

    func pools(for n: NetworkRecord) throws(APIError) -> NetworkPools {
        var pools = NetworkPools()
        if let p = n.subnet.flatMap({ IPv4Prefix($0) }), let g = n.gateway.flatMap({ IPv4Address($0) }) {
            guard let pool = SubnetPool.v4(p, gateway: g, slice: slice, slices: slices) else {
                throw .badRequest(
                    "network \(n.key): subnet \(p) split in \(slices) slices leaves this node no addresses"
                )
            }
            pools.v4 = pool
        }
        if let p = n.subnet6.flatMap({ IPv6Prefix($0) }), let g = n.gateway6.flatMap({ IPv6Address($0) }) {
            guard let pool = SubnetPool.v6(p, gateway: g, slice: slice, slices: slices) else {
                throw .badRequest(
                    "network \(n.key): subnet \(p) split in \(slices) slices leaves this node no addresses"
                )
            }
            pools.v6 = pool
        }
        return pools
    }
    func claim(_ pod: PodRecord) throws(CNIFailure) {}
    func publish(_ pod: PodRecord) {}
    func withdraw(_ pod: PodRecord) {}
    func apply(_ network: NetworkRecord, nad: NetworkAttachmentDefinition) throws(APIError) {}
    func delete(_ network: NetworkRecord) throws(APIError) {}
}
