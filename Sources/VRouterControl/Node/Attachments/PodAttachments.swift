// The attachments part of the node: networks (NADs), the pods attached through the CNI shim
// and their addresses. Pure: no device, no table, no lock of its own. NodeService keeps one
// behind a short lock and calls it to plan (check everything, reserve addresses) before any
// device is made, and to commit or abort afterwards; tests use it as it is, without root.
//
// Every method either throws and changes nothing, or does all it says. Operations between
// plan and commit are recorded (`adding`, `busy`), so concurrent requests see them: a
// container being added or released is refused a second operation, a network being used by
// a pod still being added counts as used, and its addresses stay reserved.

import VRouterAPI
import VRouterCore

struct PodAttachments: Sendable {
    var networks: [String: NetworkRecord] = [:]
    /// Address pools by network key ("namespace/name", or the default network's name).
    var pools: [String: NetworkPools] = [:]
    /// By container ID.
    var pods: [String: PodRecord] = [:]
    /// ADDs planned and not yet committed or aborted, by container ID.
    var adding: [String: PodPlan] = [:]
    /// Containers whose record an operation is changing (DEL, GC, a sandbox being replaced).
    var busy: Set<String> = []
    /// Networks being applied or deleted.
    var changingNetworks: Set<String> = []

    func record(forPod key: String) -> PodRecord? { pods.values.first { $0.key == key } }

    /// Pods attached to a network (and ADDs in progress that attach it), by pod key.
    func users(of network: String) -> [String] {
        let attached = pods.values.filter { p in
            p.attachments.contains { $0.network == network && $0.detached != true }
        }
        let planned = adding.values.filter { p in p.attachments.contains { $0.network == network } }
        return (attached.map(\.key) + planned.map(\.key)).sorted()
    }

    /// Marks a pod's addresses in use (restoring from records) or free.
    mutating func markAddresses(_ p: PodRecord, used: Bool) {
        for a in p.attachments where a.isAttachedVRouterPort {
            if used {
                pools[a.network]?.markUsed(a.ipv4)
                pools[a.network]?.markUsed(a.ipv6)
            } else {
                releaseAddresses(a)
            }
        }
    }

    mutating func releaseAddresses(_ a: PodAttachment) {
        guard a.isAttachedVRouterPort else { return }
        pools[a.network]?.release(a.ipv4)
        pools[a.network]?.release(a.ipv6)
    }
}

/// A CNI ADD between plan and commit: every attachment as it will be recorded (addresses
/// reserved, names chosen; labels are the tables' and come at commit).
struct PodPlan: Sendable {
    var containerID: String
    var netns: String
    var pod: CNIPod
    var attachments: [PodAttachment]
    /// The label each attachment had in the sandbox it replaces (kept when still free).
    var previousLabels: [UInt32?]
    /// The running sandbox of the same pod this one replaces: its vRouter interfaces go
    /// before the new ones are made.
    var replacing: PodRecord?
    /// Addresses of `replacing` this plan took over ("network address"): not released when
    /// the replaced sandbox goes.
    var inherited: Set<String> = []

    var key: String { pod.key ?? containerID }

    static func inheritKey<A: PoolAddress>(_ network: String, _ a: A) -> String { "\(network) \(a)" }
}

// MARK: - ADD

extension PodAttachments {
    /// Plans a pod's ADD: the default network as `req.ifname`, then each selection, with
    /// names, MACs and addresses (requested ones checked and reserved). `existing`: the
    /// interface names already in the pod's namespace. Nothing is made.
    mutating func planAdd(
        _ req: CNIAddRequest,
        selections: [NetworkSelection],
        existing: Set<String>,
        defaultNetwork dn: NodeConfig.DefaultNetwork
    ) throws(CNIFailure) -> PodPlan {
        let cid = req.containerID
        if pods[cid] != nil || adding[cid] != nil || busy.contains(cid) {
            throw CNIFailure(409, .podConflict, "container \(cid) is attached already (DEL it first)")
        }
        // The plan: the default network, then each selection in order.
        var plan = [PodAttachment(network: dn.name, ifname: req.ifname, isDefault: true, defaultRoute: true)]
        let requestedNames = Set(selections.compactMap(\.interface))
        var counter = 1
        var records: [NetworkRecord?] = [nil]
        for sel in selections {
            guard let rec = networks[sel.key], !changingNetworks.contains(sel.key) else {
                throw CNIFailure(
                    404,
                    .unknownNetwork,
                    "network \(sel.key) is not known to vrouterd (apply its NetworkAttachmentDefinition first)"
                )
            }
            var ifname = sel.interface ?? ""
            if ifname.isEmpty {
                while requestedNames.contains("net\(counter)") || "net\(counter)" == req.ifname { counter += 1 }
                ifname = "net\(counter)"
                counter += 1
            }
            var a = PodAttachment(network: rec.key, ifname: ifname, isDefault: false, defaultRoute: false)
            a.requestedDefaultRoute = sel.defaultRoute
            if rec.kind == .delegated {
                var rc = JSONObject()
                if let ips = sel.ips { rc["ips"] = .array(ips.map { .string($0) }) }
                if let m = sel.mac { rc["mac"] = .string(m) }
                a.delegate = CNIDelegate(
                    config: rec.config ?? .object(JSONObject()),
                    runtimeConfig: rc.pairs.isEmpty ? nil : rc,
                    cniArgs: sel.cniArgs,
                    defaultRoute: sel.defaultRoute
                )
            } else if sel.defaultRoute != nil {
                a.defaultRoute = true
            }
            if sel.defaultRoute != nil { plan[0].defaultRoute = false }
            plan.append(a)
            records.append(rec)
        }
        for a in plan where existing.contains(a.ifname) {
            throw CNIFailure(
                409,
                .interfaceFailure,
                "interface \(a.ifname) already exists in the pod's namespace \(req.netns)"
            )
        }
        // A pod that runs already (a new sandbox for it, or a second ADD).
        var previous: PodRecord?
        if let key = req.pod.key {
            if let other = adding.values.first(where: { $0.key == key }) {
                throw CNIFailure(
                    409,
                    .podConflict,
                    "pod \(key) is being attached by container \(other.containerID) (try again when it is done)"
                )
            }
            if let prev = pods.values.first(where: { $0.key == key && $0.releasing != true }) {
                let samePod = prev.pod.uid == nil || req.pod.uid == nil || prev.pod.uid == req.pod.uid
                let had = prev.attachments.map { "\($0.network)@\($0.ifname)" }
                let wants = plan.map { "\($0.network)@\($0.ifname)" }
                if samePod && Set(had) != Set(wants) {
                    throw CNIFailure(
                        409,
                        .podConflict,
                        "pod \(key) is running with networks [\(had.joined(separator: ", "))]: networks cannot be added to or removed from a running pod (asked for [\(wants.joined(separator: ", "))])"
                    )
                }
                if busy.contains(prev.containerID) {
                    throw CNIFailure(
                        409,
                        .podConflict,
                        "pod \(key): container \(prev.containerID) is being released (try again when it is done)"
                    )
                }
                previous = prev
            }
        }
        // Addresses for the vRouter attachments (requested ones checked), all before any device;
        // the sandbox being replaced hands its addresses on.
        var p = PodPlan(
            containerID: cid,
            netns: req.netns,
            pod: req.pod,
            attachments: plan,
            previousLabels: Array(repeating: nil, count: plan.count),
            replacing: previous
        )
        for (i, sel) in ([nil] + selections.map { Optional($0) }).enumerated() where plan[i].delegate == nil {
            let before = previous?.attachments.first {
                $0.ifname == plan[i].ifname && $0.network == plan[i].network && $0.isAttachedVRouterPort
            }
            do throws(CNIFailure) {
                try assignAddresses(&p, i, sel, before)
            } catch {
                releaseReserved(p)
                throw error
            }
            let rec = records[i]
            var a = p.attachments[i]
            a.gateway4 = a.ipv4 != nil ? (rec.flatMap { $0.gateway.flatMap { IPv4Address($0) } } ?? dn.gateway4) : nil
            a.gateway6 = a.ipv6 != nil ? (rec.flatMap { $0.gateway6.flatMap { IPv6Address($0) } } ?? dn.gateway6) : nil
            // The selection's gateways replace the network's for the default route.
            for g in sel?.defaultRoute ?? [] {
                if let g4 = IPv4Address(g), a.ipv4 != nil { a.gateway4 = g4 }
                if let g6 = IPv6Address(g), a.ipv6 != nil { a.gateway6 = g6 }
            }
            a.mac = sel?.mac.flatMap { MACAddress($0) } ?? Self.randomMAC()
            a.vrf = rec?.vrf ?? dn.name
            a.mtu = dn.mtu
            a.tap = Self.tapName()
            a.interface = Self.vifName(req, a.ifname)
            p.attachments[i] = a
            p.previousLabels[i] = before?.label
        }
        adding[cid] = p
        if let prev = previous { busy.insert(prev.containerID) }
        return p
    }

    /// Reserves attachment `i`'s addresses: the selection's `ips`, then one of each family
    /// the network has, preferring what `before` (the replaced sandbox's) had.
    private mutating func assignAddresses(
        _ p: inout PodPlan,
        _ i: Int,
        _ sel: NetworkSelection?,
        _ before: PodAttachment?
    ) throws(CNIFailure) {
        let key = p.attachments[i].network
        var pools = self.pools[key] ?? NetworkPools()
        defer { if self.pools[key] != nil { self.pools[key] = pools } }
        // Any address of the replaced sandbox on this network may be asked for again.
        let inheritable = Set(
            (p.replacing?.attachments ?? []).filter { $0.network == key && $0.isAttachedVRouterPort }
                .flatMap { [$0.ipv4?.address.description, $0.ipv6?.address.description].compactMap { $0 } }
        )
        for ip in sel?.ips ?? [] {
            if let a = PodAddress<IPv4Address>(ip) {
                p.attachments[i].ipv4 = try reserve(&pools, a, p.attachments[i].ipv4, ip, key, inheritable, &p)
            } else if let a = PodAddress<IPv6Address>(ip) {
                p.attachments[i].ipv6 = try reserve(&pools, a, p.attachments[i].ipv6, ip, key, inheritable, &p)
            }
        }
        if p.attachments[i].ipv4 == nil, pools.v4 != nil {
            p.attachments[i].ipv4 = try allocate(&pools, before?.ipv4, key, &p)
        }
        if p.attachments[i].ipv6 == nil, pools.v6 != nil {
            p.attachments[i].ipv6 = try allocate(&pools, before?.ipv6, key, &p)
        }
    }

    private func reserve<A: PoolAddress>(
        _ pools: inout NetworkPools,
        _ a: PodAddress<A>,
        _ already: PodAddress<A>?,
        _ text: String,
        _ key: String,
        _ inheritable: Set<String>,
        _ p: inout PodPlan
    ) throws(CNIFailure) -> PodAddress<A> {
        guard let pool = pools[A.self] else {
            throw CNIFailure(
                400,
                .addressUnavailable,
                "network \(key): \(text): the network has no IPv\(A.width == 32 ? 4 : 6) subnet"
            )
        }
        if text.contains("/"), a.prefixLength != pool.length {
            throw CNIFailure(
                400,
                .addressUnavailable,
                "network \(key): \(text): the subnet's prefix length is /\(pool.length)"
            )
        }
        if already != nil {
            throw CNIFailure(400, .addressUnavailable, "network \(key): \(text): one address per family")
        }
        let inherit = PodPlan.inheritKey(key, a.address)
        if inheritable.contains(a.address.description), !p.inherited.contains(inherit) {
            p.inherited.insert(inherit)  // the replaced sandbox's own address, handed on as it is
        } else if let why = pools.reserve(a.address) {
            throw CNIFailure(409, .addressUnavailable, "network \(key): address \(a.address) is \(why)")
        }
        return PodAddress(a.address, prefixLength: pool.length)
    }

    private func allocate<A: PoolAddress>(
        _ pools: inout NetworkPools,
        _ before: PodAddress<A>?,
        _ key: String,
        _ p: inout PodPlan
    ) throws(CNIFailure) -> PodAddress<A> {
        if let old = before, p.inherited.insert(PodPlan.inheritKey(key, old.address)).inserted { return old }
        guard let a: PodAddress<A> = pools.allocate() else {
            let pool = pools[A.self]!
            throw CNIFailure(
                409,
                .addressUnavailable,
                "network \(key): no free address left in this node's part of \(A(bits: pool.network))/\(pool.length)"
            )
        }
        return a
    }

    /// Frees what a plan reserved (not what it inherited: that goes with the replaced sandbox).
    mutating func releaseReserved(_ plan: PodPlan) {
        for a in plan.attachments where a.delegate == nil {
            if let v4 = a.ipv4, !plan.inherited.contains(PodPlan.inheritKey(a.network, v4.address)) {
                pools[a.network]?.release(v4)
            }
            if let v6 = a.ipv6, !plan.inherited.contains(PodPlan.inheritKey(a.network, v6.address)) {
                pools[a.network]?.release(v6)
            }
        }
    }

    /// The replaced sandbox's vRouter interfaces are gone: its record is released (kept as
    /// releasing while delegated attachments wait for its DEL), its addresses that the new
    /// sandbox did not take over are freed. Returns what to journal.
    mutating func finishReplacing(_ plan: PodPlan) -> StateRecord? {
        guard let prev = plan.replacing, var p = pods[prev.containerID] else { return nil }
        busy.remove(prev.containerID)
        for i in p.attachments.indices where p.attachments[i].isAttachedVRouterPort {
            let a = p.attachments[i]
            if let v4 = a.ipv4, !plan.inherited.contains(PodPlan.inheritKey(a.network, v4.address)) {
                pools[a.network]?.release(v4)
            }
            if let v6 = a.ipv6, !plan.inherited.contains(PodPlan.inheritKey(a.network, v6.address)) {
                pools[a.network]?.release(v6)
            }
            p.attachments[i].detached = true
        }
        if p.attachments.contains(where: { $0.delegate != nil }) {
            p.releasing = true
            pods[prev.containerID] = p
            return .pod(p)
        }
        pods[prev.containerID] = nil
        return .podReleased(prev.containerID)
    }

    /// Records the pod (its devices and table entries made); `labels` per attachment.
    mutating func commitAdd(_ plan: PodPlan, labels: [UInt32?]) -> PodRecord {
        adding[plan.containerID] = nil
        var attachments = plan.attachments
        for i in attachments.indices { attachments[i].label = labels[i] }
        let rec = PodRecord(
            containerID: plan.containerID,
            netns: plan.netns,
            pod: plan.pod,
            attachments: attachments,
            committed: !attachments.contains { $0.delegate != nil }
        )
        pods[plan.containerID] = rec
        return rec
    }

    /// Forgets a plan whose devices could not be made: its reservations are released; a
    /// sandbox it was to replace and that is still there stays as it was.
    mutating func abortAdd(_ plan: PodPlan) {
        guard adding.removeValue(forKey: plan.containerID) != nil else { return }
        if let prev = plan.replacing, pods[prev.containerID].map({ !$0.vifs.isEmpty }) == true {
            busy.remove(prev.containerID)
            releaseReserved(plan)
        } else {
            // The replaced sandbox is gone: what it handed on is nobody's now.
            var all = plan
            all.inherited = []
            releaseReserved(all)
        }
    }

    static func randomMAC() -> MACAddress {
        // Locally administered, unicast.
        MACAddress((UInt64.random(in: 0...UInt64.max) & 0x00FF_FFFF_FFFF) | 0x0200_0000_0000)
    }

    /// The host-side name the tap has until it is moved into the pod (15 bytes).
    static func tapName() -> String {
        let v = UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF_FFFF
        let hex = String(v, radix: 16)
        return "vrt" + String(repeating: "0", count: 12 - hex.count) + hex
    }

    /// The node's name of a pod interface: NAMESPACE.POD.IFNAME, or a hash when too long.
    static func vifName(_ req: CNIAddRequest, _ ifname: String) -> String {
        let base = req.pod.name.map { "\(req.pod.namespace ?? "default").\($0)" } ?? req.containerID
        let full = "\(base).\(ifname)"
        if full.utf8.count <= 63 { return full }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in base.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return "pod-\(String(h, radix: 16)).\(ifname)"
    }
}
