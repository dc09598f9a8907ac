// The writes that can race, each one etcd transaction: claiming a block or an address
// (create-if-absent; the loser learns the owner in the same round trip), releasing only what is
// ours (compare the value we wrote), applying a network (create-if-absent, or compare-and-swap on
// the revision read) and deleting one only while no address of it is claimed anywhere (a range
// comparison in the same transaction, so a pod claiming an address at the same moment either
// lands first and blocks the delete, or finds the network gone).
//
// A write whose outcome is unknown (`.indeterminate`: the connection broke after sending) is
// settled by reading the key back: a claim that is ours is ours, whoever sent it.

import VRouterAPI
import VRouterEtcd

public struct ClusterStore: Sendable {
    public let client: EtcdClient
    public let keys: ClusterKeys

    public init(client: EtcdClient, keys: ClusterKeys) {
        self.client = client
        self.keys = keys
    }

    public enum Claim<Record: Sendable & Equatable>: Sendable, Equatable {
        /// Claimed now.
        case claimed
        /// It was already ours (the same record).
        case alreadyOurs
        /// Someone else holds it.
        case taken(by: Record)
    }

    // MARK: blocks

    public func claimBlock(_ claim: BlockClaim) async throws(ClusterError) -> Claim<BlockClaim> {
        try await createIfAbsent(keys.block(claim.network, claim.cidr), claim, ours: { $0.node == claim.node })
    }

    /// Releases a block only if `node` holds it.
    public func releaseBlock(_ network: NetworkKey, cidr: String, node: String) async throws(ClusterError) {
        try await deleteIfOurs(keys.block(network, cidr), BlockClaim.self) { $0.node == node }
    }

    /// Every block claim of a network (or of all networks).
    public func blocks(of network: NetworkKey? = nil) async throws(ClusterError) -> [BlockClaim] {
        try await list(network.map(keys.blocks(of:)) ?? keys.blocks, BlockClaim.self)
    }

    // MARK: addresses

    public func claimAddress(_ claim: AddressClaim) async throws(ClusterError) -> Claim<AddressClaim> {
        try await createIfAbsent(
            keys.address(claim.network, claim.address),
            claim,
            ours: { $0.node == claim.node && $0.pod == claim.pod && $0.interface == claim.interface }
        )
    }

    /// Releases an address only if this claim (its node, pod and interface) still holds it: a
    /// late release never frees an address another pod of the node has claimed since.
    public func releaseAddress(_ claim: AddressClaim) async throws(ClusterError) {
        try await deleteIfOurs(keys.address(claim.network, claim.address), AddressClaim.self) {
            $0.node == claim.node && $0.pod == claim.pod && $0.interface == claim.interface
        }
    }

    public func addressClaims(of network: NetworkKey? = nil) async throws(ClusterError) -> [AddressClaim] {
        try await list(network.map(keys.addresses(of:)) ?? keys.addresses, AddressClaim.self)
    }

    // MARK: networks

    public enum Applied: Sendable, Equatable {
        case created
        case updated
        case unchanged
    }

    /// Stores the network for every node. Two applies of one new network: exactly one creates
    /// it, the other updates it only if it read the created version (no lost update).
    public func applyNetwork(_ entry: NetworkEntry) async throws(ClusterError) -> Applied {
        let key = keys.network(entry.key)
        try ClusterKeys.check(entry.key.namespace, "namespace")
        try ClusterKeys.check(entry.key.name, "network name")
        let value = RecordCodec.encode(entry)
        for _ in 0..<5 {
            let r = try await txn(
                [.absent(Array(key.utf8))],
                success: [.put(key: Array(key.utf8), value: value)],
                failure: [.range(.key(Array(key.utf8)))]
            )
            if r.succeeded { return .created }
            guard let current = r.responses.first?.range?.kvs.first else { continue }
            if case .record(let old) = RecordCodec.decode(NetworkEntry.self, current.value), old.nad == entry.nad {
                return .unchanged
            }
            let swap = try await txn(
                [.unchanged(Array(key.utf8), since: current.modRevision)],
                success: [.put(key: Array(key.utf8), value: value)]
            )
            if swap.succeeded { return .updated }
        }
        throw .conflict("network \(entry.key) keeps changing under concurrent applies; try again")
    }

    public func networks() async throws(ClusterError) -> [NetworkEntry] {
        try await list(keys.networks, NetworkEntry.self)
    }

    /// Deletes a network unless an address of it is claimed by a pod anywhere (refused with
    /// those pods and nodes). Returns false when it did not exist.
    @discardableResult
    public func deleteNetwork(_ network: NetworkKey) async throws(ClusterError) -> Bool {
        let key = Array(keys.network(network).utf8)
        let claims = Array(keys.addresses(of: network).utf8)
        let claimsEnd = KeyRange.prefix(claims).rangeEnd
        for _ in 0..<5 {
            let r = try await txn(
                // No key in the claims range: every stored key has version >= 1.
                [Compare(key: claims, .version(0), .equal, rangeEnd: claimsEnd)],
                success: [.delete(.key(key))],
                failure: [.range(.prefix(claims), limit: 100)]
            )
            if r.succeeded {
                if case .delete(let d) = r.responses.first { return d.deleted > 0 }
                return true
            }
            let users = r.responses.first?.range?.kvs.compactMap { kv -> AddressClaim? in
                if case .record(let c) = RecordCodec.decode(AddressClaim.self, kv.value) { return c }
                return nil
            }
            if let users, !users.isEmpty { throw .networkInUse(network, users) }
        }
        throw .conflict("network \(network) keeps changing under concurrent writes; try again")
    }

    // MARK: helpers

    func txn(_ compare: [Compare], success: [TxnOp], failure: [TxnOp] = []) async throws(ClusterError) -> TxnResponse {
        do {
            return try await client.txn(compare, success: success, failure: failure)
        } catch {
            throw .store(error)
        }
    }

    /// Create-if-absent; an indeterminate outcome is settled by reading the key.
    func createIfAbsent<R: Codable & Sendable & Equatable>(
        _ key: String,
        _ record: R,
        ours: (R) -> Bool
    ) async throws(ClusterError) -> Claim<R> {
        let k = Array(key.utf8)
        let value = RecordCodec.encode(record)
        var response: TxnResponse?
        do {
            response = try await client.txn(
                [.absent(k)],
                success: [.put(key: k, value: value)],
                failure: [.range(.key(k))]
            )
        } catch .indeterminate {
            response = nil
        } catch {
            throw .store(error)
        }
        if let r = response, r.succeeded { return .claimed }
        let current: KeyValue?
        if let r = response {
            current = r.responses.first?.range?.kvs.first
        } else {
            do {
                current = try await client.range(.key(k)).kvs.first
            } catch {
                throw .store(error)
            }
            // Read back after an unknown outcome: absent means it did not apply.
            if current == nil { return try await createIfAbsent(key, record, ours: ours) }
        }
        guard let current else { return try await createIfAbsent(key, record, ours: ours) }
        switch RecordCodec.decode(R.self, current.value) {
        case .record(let held):
            if ours(held) { return response == nil ? .claimed : .alreadyOurs }
            return .taken(by: held)
        case .newer(let v):
            throw .conflict("\(key) holds a record of version \(v), newer than this node understands")
        case .garbage(let why):
            throw .conflict("\(key) holds an unreadable record (\(why)); remove it with etcdctl")
        }
    }

    /// Deletes `key` if its record satisfies `ours`, comparing the revision it was read at.
    func deleteIfOurs<R: Decodable>(_ key: String, _ type: R.Type, ours: (R) -> Bool) async throws(ClusterError) {
        let k = Array(key.utf8)
        for _ in 0..<5 {
            let current: KeyValue?
            do {
                current = try await client.range(.key(k)).kvs.first
            } catch {
                throw .store(error)
            }
            guard let current else { return }
            guard case .record(let held) = RecordCodec.decode(R.self, current.value), ours(held) else {
                throw .conflict("\(key) is not ours to release")
            }
            let r = try await txn([.unchanged(k, since: current.modRevision)], success: [.delete(.key(k))])
            if r.succeeded { return }
        }
        throw .conflict("\(key) keeps changing; not released")
    }

    func list<R: Decodable>(_ prefix: String, _ type: R.Type) async throws(ClusterError) -> [R] {
        let kvs: [KeyValue]
        do {
            kvs = try await client.range(.prefix(prefix)).kvs
        } catch {
            throw .store(error)
        }
        return kvs.compactMap {
            if case .record(let r) = RecordCodec.decode(R.self, $0.value) { return r }
            return nil
        }
    }
}
