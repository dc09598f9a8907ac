// Releasing pods (CNI DEL, GC, a sandbox replaced) and networks (apply over an older
// definition, delete). Each release has two halves around the device work NodeService
// does outside the lock: `begin…` says which vifs go and marks the container busy;
// `finish…` frees the addresses and updates the record, returning what to journal.

import VRouterAPI
import VRouterCore

extension PodAttachments {
    // MARK: pods

    /// Starts releasing a container's vRouter attachments: the vifs to remove. Nil when there
    /// is no record (a repeated or stale DEL); throws when another operation on the container
    /// is in progress.
    mutating func beginRelease(_ containerID: String) throws(Busy) -> (record: PodRecord, vifs: [String])? {
        if busy.contains(containerID) || adding[containerID] != nil { throw Busy() }
        guard let p = pods[containerID] else { return nil }
        busy.insert(containerID)
        return (p, p.vifs)
    }

    struct Busy: Error {}

    /// The vifs are gone: frees the addresses and marks the attachments detached. The record
    /// goes when nothing delegated is left (or `forget`); otherwise it stays, releasing,
    /// until the shim has DELeted the delegates. Returns the record as it was and what to
    /// journal.
    mutating func finishRelease(_ containerID: String, forget: Bool) -> (PodRecord, StateRecord)? {
        busy.remove(containerID)
        guard var p = pods[containerID] else { return nil }
        for i in p.attachments.indices where p.attachments[i].isAttachedVRouterPort {
            releaseAddresses(p.attachments[i])
            p.attachments[i].detached = true
        }
        if forget || !p.attachments.contains(where: { $0.delegate != nil }) {
            pods[containerID] = nil
            return (p, .podReleased(containerID))
        }
        p.releasing = true
        pods[containerID] = p
        return (p, .pod(p))
    }

    // MARK: networks

    enum ApplyStep: Sendable {
        case unchanged
        case create
        /// A changed definition of a network no pod uses: the old one goes first.
        case replace(NetworkRecord)
    }

    /// Checks applying `wanted` against what is known and marks the network as changing.
    mutating func beginApply(_ wanted: NetworkRecord, defaultNetwork: String?) throws(APIError) -> ApplyStep {
        let key = wanted.key
        if let dn = defaultNetwork, wanted.vrf == dn {
            throw .conflict("network \(key): its VRF name is the default network's")
        }
        if changingNetworks.contains(key) {
            throw .conflict("network \(key) is being changed by another request; try again")
        }
        var step = ApplyStep.create
        if let old = networks[key] {
            if Self.sameDefinition(old, wanted) { return .unchanged }
            let users = users(of: key)
            guard users.isEmpty else {
                throw .conflict(
                    "network \(key) is used by pods (\(users.joined(separator: ", "))); delete them before changing it"
                )
            }
            step = .replace(old)
        }
        changingNetworks.insert(key)
        return step
    }

    /// Records a network made (its VRF in the tables when it is a vRouter network).
    mutating func finishApply(_ rec: NetworkRecord, pools: NetworkPools?) {
        changingNetworks.remove(rec.key)
        networks[rec.key] = rec
        self.pools[rec.key] = pools
    }

    /// Forgets a network (its VRF is gone).
    mutating func forgetNetwork(_ key: String) {
        changingNetworks.remove(key)
        networks[key] = nil
        pools[key] = nil
    }

    /// Starts deleting a network: refused while pods use it unless `force`; with `force`,
    /// the vifs of its vRouter attachments, to remove before `detachNetwork`.
    mutating func beginDelete(_ key: String, force: Bool) throws(APIError) -> (NetworkRecord, [String]) {
        guard let rec = networks[key], !changingNetworks.contains(key) else { throw .notFound("no network \(key)") }
        let users = users(of: key)
        if !users.isEmpty && (!force || adding.values.contains { $0.attachments.contains { $0.network == key } }) {
            throw .conflict(
                "network \(key) is used by pods: \(users.joined(separator: ", ")) (delete them first, or --force)"
            )
        }
        changingNetworks.insert(key)
        var vifs: [String] = []
        for p in pods.values {
            for a in p.attachments where a.network == key && a.isAttachedVRouterPort {
                if let v = a.interface { vifs.append(v) }
            }
        }
        return (rec, vifs)
    }

    /// The network's vifs are gone: every pod's attachments on it are released (and marked
    /// detached when it is a vRouter network). Returns the pod records to journal.
    mutating func detachNetwork(_ rec: NetworkRecord) -> [StateRecord] {
        var out: [StateRecord] = []
        for (cid, var pod) in pods {
            var changed = false
            for i in pod.attachments.indices
            where pod.attachments[i].network == rec.key && pod.attachments[i].detached != true {
                releaseAddresses(pod.attachments[i])
                if rec.kind == .vrouter { pod.attachments[i].detached = true }
                changed = true
            }
            if changed {
                pods[cid] = pod
                out.append(.pod(pod))
            }
        }
        return out
    }

    static func sameDefinition(_ a: NetworkRecord, _ b: NetworkRecord) -> Bool {
        var x = a
        x.vni = nil
        var y = b
        y.vni = nil
        return x == y && (b.vni == nil || a.vni == b.vni)
    }
}
