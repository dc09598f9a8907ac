// The cluster store on etcd (cluster mode): the node's seam (ClusterStore) answered by
// VRouterCluster's transactions, so that what one node does agrees with every other.
//   - pools: each subnet is cut in `blocks` blocks; the node claims one per family and network
//     (create-if-absent, unleased: a restarted node finds its block again and hands out the
//     same addresses), so two nodes never allocate from one block (Calico's block affinity);
//   - claim: every address of a pod is claimed cluster-wide before its devices are made (a
//     requested `ips` outside the node's block included); a refusal or an unreachable store
//     fails the ADD whole with a clear CNI error (nothing half-made: claims taken are
//     released again). A claim of this node that none of its pods holds is stale (a kill
//     between a DEL's journal record and its release in etcd leaves one): it is taken over,
//     not a refusal, and a start releases every such claim (`reconcileClaims`; a start while
//     etcd is away, once it answers);
//   - publish/withdraw: the pod's endpoints go to the publisher (on the node's lease; queued
//     while etcd is away and written on its return);
//   - apply/delete: a network goes through the store's transaction, so an apply on any node
//     reaches every node, and a delete is refused while a pod on any node holds an address of
//     it (naming the pods and nodes).
// The node calls these outside its locks, on its request threads; each etcd call has a
// deadline (the client's), so a call here waits that long at most.

import Dispatch
import Foundation
import Logging
import Synchronization
import VRouterAPI
import VRouterCluster
import VRouterCore
import VRouterEtcd

final class EtcdStore: ClusterStore {
    let settings: NodeConfig.Cluster
    let nodeName: String
    /// This node's underlay address, as it publishes it.
    let underlay: String
    let client: EtcdClient
    let store: VRouterCluster.ClusterStore
    let publisher: ClusterPublisher
    let keys: ClusterKeys
    let log: Logger
    /// Whether a pod of this node (attached, or an ADD under way) holds an address claim of
    /// this node (set by the node; until then every claim counts as held).
    let heldHere = Mutex<@Sendable (AddressClaim) -> Bool>({ _ in true })
    /// A VRF's VNI as this node decapsulates it (set by the node once its tables exist).
    let vniOfVRF = Mutex<@Sendable (String) -> UInt32?>({ _ in nil })
    /// Address claims of released pods that etcd could not be asked to release (it was away):
    /// released on its return (before the next claim, and by the agent every second).
    let unreleased = Mutex<[AddressClaim]>([])
    /// The start could not list this node's claims (etcd away): stale ones wait for
    /// `releaseStaleClaims`.
    let staleClaimsUnchecked = Atomic<Bool>(false)
    /// Calls to etcd from the node's requests that failed (claims, releases, networks).
    let errors = Atomic<Int>(0)
    /// The state directory's `cluster.json` (nil without a state directory): the lease and the
    /// releases etcd has not taken yet, so a restarted vrouterd resumes its lease and still
    /// releases those addresses. What it holds now, written under the lock.
    private let localState = Mutex<(path: String?, saved: ClusterLocalState?)>((nil, nil))

    init(_ settings: NodeConfig.Cluster, node: NodeRecord, log: Logger) throws(ServiceError) {
        self.settings = settings
        nodeName = node.name
        underlay = node.underlay
        self.log = log
        do {
            var c = try EtcdConfiguration(
                endpoints: settings.endpoints,
                tls: settings.caFile == nil && settings.certFile == nil
                    ? nil : EtcdTLS(caFile: settings.caFile, certFile: settings.certFile, keyFile: settings.keyFile)
            )
            c.requestTimeout = .seconds(3)
            client = try EtcdClient(c)
            keys = try ClusterKeys(prefix: settings.prefix)
        } catch {
            throw ServiceError("cluster: \(error)")
        }
        store = VRouterCluster.ClusterStore(client: client, keys: keys)
        publisher = ClusterPublisher(
            client: client,
            keys: keys,
            node: node,
            ttl: Int64(settings.leaseTTL),
            logger: log
        )
    }

    // MARK: the seam

    func pools(for n: NetworkRecord) throws(APIError) -> NetworkPools {
        try pools(
            network: Self.networkKey(n.key),
            subnet4: n.subnet.flatMap { IPv4Prefix($0) },
            gateway4: n.gateway.flatMap { IPv4Address($0) },
            subnet6: n.subnet6.flatMap { IPv6Prefix($0) },
            gateway6: n.gateway6.flatMap { IPv6Address($0) }
        )
    }

    /// The node's blocks of a network's subnets: the ones it holds already, else the first
    /// free ones (claimed in one transaction each; a block another node took in between is
    /// skipped).
    func pools(
        network: NetworkKey,
        subnet4: IPv4Prefix?,
        gateway4: IPv4Address?,
        subnet6: IPv6Prefix?,
        gateway6: IPv6Address?
    ) throws(APIError) -> NetworkPools {
        var pools = NetworkPools()
        let n = settings.blocks
        let held: [BlockClaim]
        do {
            held = try blocking { [store] () async throws(ClusterError) in try await store.blocks(of: network) }
        } catch {
            throw failed(503, "network \(network): cannot read its address blocks from etcd: \(error)")
        }
        func claim(_ family: String, _ make: (Int) -> SubnetPool?) throws(APIError) -> SubnetPool {
            let taken = Dictionary(held.map { ($0.cidr, $0.node) }, uniquingKeysWith: { a, _ in a })
            let order = (0..<n).map { "\(family)-\($0)-of-\(n)" }
            if let mine = order.firstIndex(where: { taken[$0] == nodeName }), let pool = make(mine) { return pool }
            for (k, cidr) in order.enumerated() where taken[cidr] == nil {
                guard let pool = make(k) else { continue }
                let claim = BlockClaim(network: network, cidr: cidr, node: nodeName)
                let r: VRouterCluster.ClusterStore.Claim<BlockClaim>
                do {
                    r = try blocking { [store] () async throws(ClusterError) in try await store.claimBlock(claim) }
                } catch {
                    throw failed(503, "network \(network): cannot claim an address block in etcd: \(error)")
                }
                switch r {
                case .claimed, .alreadyOurs:
                    log.info("address block claimed", metadata: ["network": "\(network)", "block": "\(cidr)"])
                    return pool
                case .taken: continue
                }
            }
            throw APIError(409, "network \(network): every \(family) block of its subnet is held by other nodes")
        }
        if let p = subnet4, let g = gateway4 {
            pools.v4 = try claim("v4") { SubnetPool.v4(p, gateway: g, slice: $0, slices: n) }
        }
        if let p = subnet6, let g = gateway6 {
            pools.v6 = try claim("v6") { SubnetPool.v6(p, gateway: g, slice: $0, slices: n) }
        }
        return pools
    }

    func claim(_ pod: PodRecord) throws(CNIFailure) {
        // A DEL while etcd was away may have left the address this pod was given claimed.
        if !unreleased.withLock({ $0.isEmpty }) { blocking { await self.retryReleases() } }
        var claimed: [AddressClaim] = []
        for c in addressClaims(pod) {
            let r: VRouterCluster.ClusterStore.Claim<AddressClaim>
            do { r = try claimAddress(c) } catch {
                errors.add(1, ordering: .relaxed)
                release(claimed)
                throw CNIFailure(
                    503,
                    .tryAgainLater,
                    "network \(c.network): cannot claim \(c.address) in the cluster store (etcd): \(error)"
                )
            }
            switch r {
            case .claimed, .alreadyOurs: claimed.append(c)
            case .taken(let by):
                release(claimed)
                throw CNIFailure(
                    409,
                    .addressUnavailable,
                    "network \(c.network): address \(c.address) is held by pod \(by.pod) (\(by.interface)) on node \(by.node)"
                )
            }
        }
    }

    /// Claims one address; a stale claim of this node on it is released and the claim made
    /// again. Stale: no pod of this node holds it, as a kill between a DEL's journaled release
    /// and its release in etcd leaves it (or a DEL whose release in etcd is still to come).
    /// Taking it over cannot race the node's own ADDs: the address is reserved for this ADD in
    /// the node's pool, so no other pod of the node can hold or claim it meanwhile; and the
    /// release compares pod and interface, so a late release of the stale claim is a no-op.
    private func claimAddress(_ c: AddressClaim) throws(ClusterError) -> VRouterCluster.ClusterStore.Claim<AddressClaim>
    {
        let r = try blocking { [store] () async throws(ClusterError) in try await store.claimAddress(c) }
        guard case .taken(let by) = r, by.node == nodeName, !heldHere.withLock({ $0 })(by) else { return r }
        log.info(
            "stale address claim of this node taken over",
            metadata: ["network": "\(c.network)", "address": "\(c.address)", "was": "\(by.pod) (\(by.interface))"]
        )
        try blocking { [store] () async throws(ClusterError) in
            do throws(ClusterError) {
                try await store.releaseAddress(by)
            } catch .conflict {
                // Changed since: the claim below says by whom.
            } catch { throw error }
        }
        return try blocking { [store] () async throws(ClusterError) in try await store.claimAddress(c) }
    }

    /// At start, before the node serves a request: this node's address claims in etcd made
    /// equal to its pods' (level-triggered, as the agent does with routes). A claim no pod of
    /// the node holds any more goes (a kill after a DEL was journaled and before etcd was told
    /// leaves one, and its address would be refused to the next pod offered it); a pod's claim
    /// that etcd lost is made again. With etcd away, the release of stale claims is left to
    /// the agent for when etcd answers (`releaseStaleClaims`); meanwhile `claim` takes a stale
    /// claim over when an ADD meets one.
    func reconcileClaims(of pods: [PodRecord]) {
        let wanted = Set(pods.flatMap(addressClaims))
        let held: [AddressClaim]
        do {
            held = try blocking { [store] () async throws(ClusterError) in try await store.addressClaims() }
                .filter { $0.node == nodeName }
        } catch {
            errors.add(1, ordering: .relaxed)
            staleClaimsUnchecked.store(true, ordering: .releasing)
            log.warning(
                "address claims not reconciled (etcd away): stale ones are released once it answers",
                metadata: ["error": "\(error)"]
            )
            return
        }
        let stale = held.filter { !wanted.contains($0) }
        if !stale.isEmpty {
            log.info(
                "address claims of pods no longer on this node released",
                metadata: ["addresses": "\(stale.map(\.address))"]
            )
            release(stale)
        }
        for c in wanted.subtracting(held).sorted(by: { $0.address < $1.address }) {
            do {
                switch try claimAddress(c) {
                case .claimed, .alreadyOurs:
                    log.info(
                        "address claim of a pod made again",
                        metadata: ["address": "\(c.address)", "pod": "\(c.pod)"]
                    )
                case .taken(let by):
                    log.error(
                        "address of a pod of this node claimed by another",
                        metadata: ["address": "\(c.address)", "pod": "\(c.pod)", "holder": "\(by.pod) on \(by.node)"]
                    )
                }
            } catch {
                errors.add(1, ordering: .relaxed)
                log.warning("address claim not made again", metadata: ["address": "\(c.address)", "error": "\(error)"])
            }
        }
    }

    /// The start's release of stale claims, done late: etcd did not answer at the start
    /// (the agent calls this every second; it does something only then, and until etcd
    /// answers). Listed first, checked after: a claim an ADD makes after the listing is not
    /// in it, and one in it is held by a pod or an ADD under way (`heldHere`) unless stale;
    /// a release compares pod and interface, so it never takes a claim made since.
    func releaseStaleClaims() async {
        guard staleClaimsUnchecked.load(ordering: .acquiring) else { return }
        let held: [AddressClaim]
        do { held = try await store.addressClaims().filter { $0.node == nodeName } } catch { return }
        let holds = heldHere.withLock { $0 }
        let stale = held.filter { !holds($0) }
        if !stale.isEmpty {
            log.info(
                "address claims of pods no longer on this node released (etcd is back)",
                metadata: ["addresses": "\(stale.map(\.address))"]
            )
            await releaseNow(stale, retrying: false)
        }
        staleClaimsUnchecked.store(false, ordering: .releasing)
    }

    /// Whether a pod among `pods` holds `claim`.
    func holds(_ pods: [PodRecord], _ claim: AddressClaim) -> Bool {
        pods.contains { addressClaims($0).contains(claim) }
    }

    // The publisher is an actor: these wait for it (no network) so that a pod's publish and
    // withdraw reach it in the order the node made them.
    func publish(_ pod: PodRecord) {
        let endpoints = self.endpoints(pod)
        blocking { [publisher] in for e in endpoints { await publisher.publish(e) } }
    }

    func withdraw(_ pod: PodRecord) {
        let podKey = Self.podKey(pod)
        let interfaces = pod.attachments.compactMap { $0.delegate == nil ? $0.ifname : nil }
        blocking { [publisher] in for i in interfaces { await publisher.withdraw(pod: podKey, interface: i) } }
        release(addressClaims(pod))
    }

    func apply(_ network: NetworkRecord, nad: NetworkAttachmentDefinition) throws(APIError) {
        let entry = NetworkEntry(nad: nad, appliedBy: nodeName)
        do { _ = try blocking { [store] () async throws(ClusterError) in try await store.applyNetwork(entry) } } catch {
            throw failed(503, "network \(network.key): the cluster store (etcd) did not take it: \(error)")
        }
    }

    func delete(_ network: NetworkRecord) throws(APIError) {
        let key = Self.networkKey(network.key)
        do {
            _ = try blocking { [store] () async throws(ClusterError) in try await store.deleteNetwork(key) }
        } catch .networkInUse(_, let claims) {
            let users = Set(claims.map { "\($0.pod) on node \($0.node)" }).sorted()
            throw .conflict("network \(network.key) is in use in the cluster by \(users.joined(separator: ", "))")
        } catch {
            throw failed(503, "network \(network.key): the cluster store (etcd) did not delete it: \(error)")
        }
    }

    /// An error answer for a call to etcd that failed, counted.
    private func failed(_ status: Int, _ message: String) -> APIError {
        errors.add(1, ordering: .relaxed)
        return APIError(status, message)
    }

    // MARK: records

    static func networkKey(_ key: String) -> NetworkKey {
        let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
        return parts.count == 2
            ? NetworkKey(namespace: parts[0], name: parts[1]) : NetworkKey(namespace: "-", name: key)
    }

    static func podKey(_ pod: PodRecord) -> PodKey {
        PodKey(namespace: pod.pod.namespace ?? "-", name: pod.pod.name ?? pod.containerID)
    }

    func addressClaims(_ pod: PodRecord) -> [AddressClaim] {
        let podKey = Self.podKey(pod)
        return pod.attachments.flatMap { a -> [AddressClaim] in
            guard a.delegate == nil, a.detached != true else { return [] }
            let addresses = [a.ipv4?.address.description, a.ipv6?.address.description].compactMap { $0 }
            return addresses.map {
                AddressClaim(
                    network: Self.networkKey(a.network),
                    address: $0,
                    node: nodeName,
                    pod: podKey,
                    interface: a.ifname
                )
            }
        }
    }

    /// The pod's vRouter interfaces as other nodes route to them.
    func endpoints(_ pod: PodRecord) -> [EndpointRecord] {
        let podKey = Self.podKey(pod)
        let vni = vniOfVRF.withLock { $0 }
        return pod.attachments.compactMap { a in
            guard a.delegate == nil, a.detached != true, a.interface != nil else { return nil }
            let addresses = [a.ipv4?.address.description, a.ipv6?.address.description].compactMap { $0 }
            guard !addresses.isEmpty else { return nil }
            return EndpointRecord(
                node: nodeName,
                network: Self.networkKey(a.network),
                pod: podKey,
                interface: a.ifname,
                addresses: addresses,
                mac: a.mac?.description,
                label: a.label,
                vni: a.vrf.flatMap(vni)
            )
        }
    }

    // MARK: local state

    /// Reads `cluster.json` of a previous run from `directory` (before the agent starts):
    /// its pending releases are retried, its lease resumed if still alive.
    func restoreLocalState(from directory: String) {
        let path = directory + "/cluster.json"
        var saved: ClusterLocalState?
        if let data = FileManager.default.contents(atPath: path) {
            do { saved = try JSONDecoder().decode(ClusterLocalState.self, from: data) } catch {
                log.warning(
                    "cluster state not read (a new lease is taken)",
                    metadata: ["file": "\(path)", "error": "\(error)"]
                )
            }
        }
        localState.withLock { $0 = (path, saved) }
        guard let saved else { return }
        unreleased.withLock { $0 += saved.unreleased }
        if !saved.unreleased.isEmpty {
            log.info("address releases of the previous run pending", metadata: ["count": "\(saved.unreleased.count)"])
        }
        if let lease = saved.lease { blocking { [publisher] in await publisher.resume(lease: lease) } }
    }

    /// Writes `cluster.json` when what it should hold changed (atomically: a crash leaves the
    /// old file or the new one).
    func saveLocalState() async {
        let lease = await publisher.status.leaseID
        localState.withLock { st in
            guard let path = st.path else { return }
            let now = ClusterLocalState(lease: lease, unreleased: unreleased.withLock { $0 })
            guard now != st.saved else { return }
            do {
                try JSONEncoder().encode(now).write(to: URL(fileURLWithPath: path), options: .atomic)
                st.saved = now
            } catch {
                log.warning("cluster state not saved", metadata: ["file": "\(path)", "error": "\(error)"])
            }
        }
    }

    /// Releases claims before returning (a sandbox that replaces another claims the same
    /// addresses next).
    private func release(_ claims: [AddressClaim]) {
        blocking { await self.releaseNow(claims, retrying: false) }
    }

    /// Releases the claims etcd could not be asked to release before.
    func retryReleases() async {
        let pending = unreleased.withLock { p in
            defer { p = [] }
            return p
        }
        if !pending.isEmpty { await releaseNow(pending, retrying: true) }
    }

    /// A claim that etcd could not be asked about is kept for `retryReleases`; one it refused
    /// (no longer this pod's) is logged: it costs an address, never a duplicate.
    private func releaseNow(_ claims: [AddressClaim], retrying: Bool) async {
        defer { if !claims.isEmpty { Task { await self.saveLocalState() } } }
        for c in claims {
            do {
                try await store.releaseAddress(c)
                if retrying { log.info("address claim released", metadata: ["address": "\(c.address)"]) }
            } catch .store(let error) {
                errors.add(1, ordering: .relaxed)
                unreleased.withLock { $0.append(c) }
                if !retrying {
                    log.warning(
                        "address claim kept until etcd is back",
                        metadata: ["network": "\(c.network)", "address": "\(c.address)", "error": "\(error)"]
                    )
                }
            } catch {
                log.warning(
                    "address claim not released",
                    metadata: ["network": "\(c.network)", "address": "\(c.address)", "error": "\(error)"]
                )
            }
        }
    }
}

/// Runs `op` to its end on the concurrency pool and waits for it on this thread (a request
/// thread or the start, never a task: the caller is synchronous). Every etcd call has a
/// deadline, so the wait is bounded.
@discardableResult
func blocking<T: Sendable, E: Error>(_ op: @escaping @Sendable () async throws(E) -> T) throws(E) -> T {
    let done = DispatchSemaphore(value: 0)
    let result = Mutex<Result<T, E>?>(nil)
    Task {
        let r: Result<T, E>
        do throws(E) { r = .success(try await op()) } catch { r = .failure(error) }
        result.withLock { $0 = r }
        done.signal()
    }
    done.wait()
    return try result.withLock { $0! }.get()
}

/// What a node keeps of the cluster in its state directory (`cluster.json`).
struct ClusterLocalState: Codable, Equatable {
    /// The node's lease when it was written.
    var lease: Int64?
    /// Address claims of released pods that etcd could not be asked to release yet.
    var unreleased: [AddressClaim]
}
