// The CNI operations vrouterd serves to the shim (see VRouterAPI/CNI/Wire.swift): one ADD
// makes every vRouter interface of a pod (default network as eth0, then each network of the
// annotation) and hands the delegated ones back; DEL, CHECK and GC work from the pod
// records, which are journaled so that DEL works after a restart and with the netns gone.
//
// An ADD is planned under the attachments lock (every name chosen, every address reserved,
// nothing made), its devices are made with no lock held, and it is committed under the
// lock; a failure undoes the devices made and the reservations. So ADDs of different pods
// overlap, and reads never wait for one. Records are by container ID: a DEL for an older
// sandbox of the same pod touches only that sandbox's record (usually none: it was
// replaced), never the running one's.

import Foundation
import VRouterAPI
import VRouterCore
import VRouterIO

/// A CNI operation's failure: the HTTP status, the CNI code it means, and the message.
public struct CNIFailure: Error, Sendable, CustomStringConvertible {
    public var status: Int
    public var code: CNIError.Code
    public var message: String
    public init(_ status: Int, _ code: CNIError.Code, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }
    public var description: String { message }
}

extension NodeService {
    // MARK: ADD

    public func cniAdd(_ req: CNIAddRequest) throws(CNIFailure) -> CNIAddResponse {
        if let why = CNIEnvironment.invalidContainerID(req.containerID) {
            throw CNIFailure(400, .invalidEnvironment, "container ID '\(req.containerID)': \(why)")
        }
        if let why = CNIEnvironment.invalidInterfaceName(req.ifname) {
            throw CNIFailure(400, .invalidEnvironment, "interface '\(req.ifname)': \(why)")
        }
        let ns = NetworkNamespace.at(req.netns)
        guard req.netns.hasPrefix("/") || !req.netns.contains("/"), ns.exists else {
            throw CNIFailure(404, .invalidEnvironment, "network namespace '\(req.netns)' does not exist")
        }
        // What the pod already has in its namespace (a requested name must be free).
        let existing: Set<String>
        do { existing = Set(try ns.netlink().links().map(\.name)) } catch  where error.errno == EINVAL {
            // A file that is not a namespace (setns refuses it): there is no namespace there.
            throw CNIFailure(404, .invalidEnvironment, "'\(req.netns)' is not a network namespace")
        } catch {
            throw CNIFailure(500, .interfaceFailure, "cannot read the pod's network namespace \(req.netns): \(error)")
        }
        let podNamespace = req.pod.namespace ?? "default"
        var selections = req.networks
        do { try NetworkAnnotation.validate(&selections, podNamespace: podNamespace) } catch {
            throw CNIFailure(400, .invalidNetworkConfig, error.description)
        }
        if let clash = selections.first(where: { $0.interface == req.ifname }) {
            throw CNIFailure(
                400,
                .invalidNetworkConfig,
                "network \(clash.key): interface '\(req.ifname)' is the default network's (the runtime's CNI_IFNAME)"
            )
        }
        guard let dn = config.defaultNetwork, tables.read({ $0.compiled.vrfIDs[dn.name] != nil }) else {
            throw CNIFailure(503, .internalError, "vrouterd has no default network (defaultNetwork in its config)")
        }
        // 1. The plan, under the lock: names, MACs, addresses; nothing made.
        let plan = try attachments.withLock { a throws(CNIFailure) -> PodPlan in
            try a.planAdd(req, selections: selections, existing: existing, defaultNetwork: dn)
        }
        // Written ahead (and fsynced) before any device is made: a crash from here to the
        // record in step 4 leaves devices that no record names, and a restart removes them.
        sync(attachments.withLock { _ in journal.record(.podAdding(PodRecord(plan))) })
        let labels: [UInt32?]
        var claimed = false
        do throws(CNIFailure) {
            // 2. A new sandbox of a running pod replaces the old one: the old vRouter interfaces
            // go first (their addresses are handed on); its delegated attachments stay
            // recorded under the old container ID until its DEL releases them.
            if let old = plan.replacing {
                releasePorts(old.vifs, container: old.containerID)
                sync(attachments.withLock { a in a.finishReplacing(plan).map { journal.record($0) } ?? .none })
                cluster.withdraw(old)
                log.info("pod sandbox replaced", metadata: ["pod": "\(old.key)", "old": "\(old.containerID)"])
            }
            // 3. The devices and table entries, no lock of this part held.
            try cluster.claim(PodRecord(plan))
            claimed = true
            let vRouter = plan.attachments.indices.filter { plan.attachments[$0].delegate == nil }
            var batch: [PodPort] = []
            for i in vRouter {
                guard var port = plan.attachments[i].port(netns: req.netns) else { continue }
                port.label = .any(preferring: plan.previousLabels[i])
                batch.append(port)
            }
            let made: [PortReservation]
            do { (made, _) = try makePorts(batch, reattach: false) } catch {
                let a = plan.attachments[vRouter[error.index]]
                throw CNIFailure(
                    error.error.status == 409 ? 409 : 500,
                    .interfaceFailure,
                    "network \(a.network) (\(a.ifname)): \(error.error.message)"
                )
            }
            var byName: [String: UInt32] = [:]
            for r in made { byName[r.port.name] = r.label }
            labels = plan.attachments.map { a in a.interface.flatMap { byName[$0] } }
        } catch {
            // Its claims go too: a failed ADD leaves nothing claimed in the cluster either;
            // and nothing to remove on a restart any more (journaled with the next change).
            if claimed { cluster.withdraw(PodRecord(plan)) }
            attachments.withLock { a in
                a.abortAdd(plan)
                _ = journal.record(.podReleased(plan.containerID))
            }
            throw error
        }
        // 4. The record, under the lock, and journaled.
        let (rec, ticket) = attachments.withLock { a -> (PodRecord, Journal.Ticket) in
            let rec = a.commitAdd(plan, labels: labels)
            return (rec, journal.record(.pod(rec)))
        }
        sync(ticket)
        cluster.publish(rec)
        log.info(
            "pod attached",
            metadata: [
                "pod": "\(rec.key)", "container": "\(req.containerID)",
                "interfaces": "\(rec.attachments.map(\.ifname))",
            ]
        )
        return CNIAddResponse(attachments: rec.attachments.map(\.wire))
    }

    // MARK: commit (the delegates' results)

    public func cniCommit(_ req: CNICommitRequest) throws(CNIFailure) {
        let (netns, routes, ticket) = try attachments.withLock {
            a throws(CNIFailure) -> (String, [(String, Route)], Journal.Ticket) in
            guard var p = a.pods[req.containerID], p.releasing != true else {
                throw CNIFailure(404, .internalError, "no ADD in progress for container \(req.containerID)")
            }
            var routes: [(String, Route)] = []
            for r in req.results {
                guard let i = p.attachments.firstIndex(where: { $0.ifname == r.ifname && $0.delegate != nil }) else {
                    throw CNIFailure(
                        400,
                        .internalError,
                        "container \(req.containerID) has no delegated attachment \(r.ifname)"
                    )
                }
                p.attachments[i].delegate!.result = r.result
                for g in p.attachments[i].delegate!.defaultRoute ?? [] {
                    if let a = IPv4Address(g) { routes.append((r.ifname, Route(.defaultIPv4, via: .v4(a)))) }
                    if let a = IPv6Address(g) { routes.append((r.ifname, Route(.defaultIPv6, via: .v6(a)))) }
                }
            }
            p.committed = true
            a.pods[req.containerID] = p
            return (p.netns, routes, journal.record(.pod(p)))
        }
        sync(ticket)
        // A delegated network asked for the default route: through it, not eth0.
        guard !routes.isEmpty else { return }
        do {
            let nl = try NetworkNamespace.at(netns).netlink()
            for (dev, var r) in routes {
                r.device = dev
                try? nl.removeRoute(Route(r.destination))
                try nl.addRoute(r)
            }
        } catch {
            throw CNIFailure(500, .interfaceFailure, "default route through the delegated network: \(error)")
        }
    }

    // MARK: DEL, GC

    public func cniDel(_ req: CNIDelRequest) -> CNIDelegatesResponse {
        let cid = req.containerID
        guard let released = release(cid, forget: req.delegatesReleased == true) else {
            return CNIDelegatesResponse(found: false, delegates: [])
        }
        let (p, record) = released
        if case .podReleased = record {
            log.info("pod released", metadata: ["pod": "\(p.key)", "container": "\(cid)"])
            return CNIDelegatesResponse(found: true, netns: p.netns, delegates: [])
        }
        return CNIDelegatesResponse(
            found: true,
            netns: p.netns,
            delegates: p.attachments.filter { $0.delegate != nil }.map(\.wire)
        )
    }

    public func cniGC(_ req: CNIGCRequest) -> CNIGCResponse {
        let valid = Set(req.validAttachments.map(\.containerID))
        let stale = attachments.withLock { a in a.pods.keys.filter { !valid.contains($0) }.sorted() }
        var removed: [String] = []
        var delegates: [CNIStaleDelegate] = []
        for cid in stale {
            guard let (p, _) = release(cid, forget: true) else { continue }
            for a in p.attachments where a.delegate != nil {
                delegates.append(CNIStaleDelegate(containerID: cid, netns: p.netns, attachment: a.wire))
            }
            removed.append(cid)
        }
        if !removed.isEmpty { log.info("CNI GC released stale containers", metadata: ["containers": "\(removed)"]) }
        return CNIGCResponse(removed: removed, delegates: delegates)
    }

    /// Releases a container's vRouter attachments (waiting for an operation on it in
    /// progress): vifs, then addresses; the record goes (`forget`, or nothing delegated left)
    /// or stays releasing. Returns the record as released and what was journaled; nil when
    /// there is no record.
    func release(_ cid: String, forget: Bool) -> (PodRecord, StateRecord)? {
        var begun: (record: PodRecord, vifs: [String])?
        while true {
            do {
                begun = try attachments.withLock { a throws(PodAttachments.Busy) in try a.beginRelease(cid) }
                break
            } catch {
                usleep(2_000)  // an ADD or another DEL of this container is under way
            }
        }
        guard let begun else { return nil }
        releasePorts(begun.vifs, container: cid)
        let done = attachments.withLock { a -> (PodRecord, StateRecord, Journal.Ticket)? in
            guard let (p, r) = a.finishRelease(cid, forget: forget) else { return nil }
            return (p, r, journal.record(r))
        }
        guard let (p, r, ticket) = done else { return nil }
        sync(ticket)
        cluster.withdraw(begun.record)
        return (p, r)
    }

    // MARK: CHECK

    public func cniCheck(_ req: CNICheckRequest) throws(CNIFailure) -> CNIDelegatesResponse {
        let rec = attachments.withLock { $0.pods[req.containerID] }
        let open = ports.open
        guard let rec, rec.releasing != true else {
            throw CNIFailure(404, .unknownContainer, "vrouterd has no attachment for container \(req.containerID)")
        }
        guard rec.committed else {
            throw CNIFailure(409, .checkFailed, "the ADD of container \(req.containerID) did not complete")
        }
        if req.netns != rec.netns {
            throw CNIFailure(
                409,
                .checkFailed,
                "container \(req.containerID) was attached in \(rec.netns), not \(req.netns)"
            )
        }
        let ns = NetworkNamespace.at(rec.netns)
        guard ns.exists else { throw CNIFailure(409, .checkFailed, "the pod's network namespace \(rec.netns) is gone") }
        let links: [LinkInfo]
        let addresses: [AddressInfo]
        let routes: [Route]
        do {
            let nl = try ns.netlink()
            links = try nl.links()
            addresses = try nl.addresses()
            routes = try nl.routes()
        } catch {
            throw CNIFailure(500, .checkFailed, "reading the pod's network namespace: \(error)")
        }
        for a in rec.attachments where a.isAttachedVRouterPort {
            let what = "\(a.ifname) (\(a.network))"
            guard let vif = a.interface, open.contains(vif) else {
                throw CNIFailure(409, .checkFailed, "\(what): vrouterd has no open port for it")
            }
            guard let link = links.first(where: { $0.name == a.ifname }) else {
                throw CNIFailure(409, .checkFailed, "\(what): the interface is missing from the pod's namespace")
            }
            guard link.kind == "tun" else {
                throw CNIFailure(
                    409,
                    .checkFailed,
                    "\(what): the interface is a \(link.kind ?? "?"), not vRouter's tap"
                )
            }
            guard link.isUp else { throw CNIFailure(409, .checkFailed, "\(what): the interface is down") }
            if let m = a.mac, link.mac != m {
                throw CNIFailure(
                    409,
                    .checkFailed,
                    "\(what): MAC is \(link.mac?.description ?? "none"), attached with \(m)"
                )
            }
            var want: [InterfaceAddress] = []
            if let v4 = a.ipv4 { want.append(InterfaceAddress(.v4(v4.address), prefixLength: v4.prefixLength)) }
            if let v6 = a.ipv6 { want.append(InterfaceAddress(.v6(v6.address), prefixLength: v6.prefixLength)) }
            for ip in want {
                guard addresses.contains(where: { $0.interface == a.ifname && $0.address == ip }) else {
                    throw CNIFailure(409, .checkFailed, "\(what): address \(ip) is missing")
                }
            }
            if a.defaultRoute {
                let gateways: [(IPAddress?, IPPrefix)] = [
                    (a.ipv4 != nil ? a.gateway4.map { .v4($0) } : nil, .defaultIPv4),
                    (a.ipv6 != nil ? a.gateway6.map { .v6($0) } : nil, .defaultIPv6),
                ]
                for (gw, dst) in gateways {
                    guard let g = gw else { continue }
                    guard routes.contains(where: { $0.destination == dst && $0.gateway == g && $0.device == a.ifname })
                    else {
                        throw CNIFailure(409, .checkFailed, "\(what): the default route via \(g) is missing")
                    }
                }
            }
        }
        return CNIDelegatesResponse(
            found: true,
            netns: rec.netns,
            delegates: rec.attachments.filter { $0.delegate != nil }.map(\.wire)
        )
    }

    // MARK: STATUS

    public func cniStatus() -> CNIStatusResponse {
        if stopping.load(ordering: .relaxed) { return CNIStatusResponse(ready: false, message: "vrouterd is stopping") }
        guard let dn = config.defaultNetwork else {
            return CNIStatusResponse(ready: false, message: "no defaultNetwork in vrouterd's config")
        }
        guard tables.read({ $0.compiled.vrfIDs[dn.name] != nil }) else {
            return CNIStatusResponse(ready: false, message: "the default network's VRF '\(dn.name)' is missing")
        }
        return CNIStatusResponse(ready: true)
    }

    // MARK: reads

    public func pods() -> [PodInfo] {
        attachments.withLock { a in
            a.pods.values.filter { $0.releasing != true }.sorted { $0.key < $1.key }.map(Self.podInfo)
        }
    }

    public func pod(namespace: String, name: String) throws(APIError) -> PodInfo {
        try attachments.withLock { a throws(APIError) in
            guard let p = a.record(forPod: "\(namespace)/\(name)"), p.releasing != true else {
                throw .notFound("no pod \(namespace)/\(name) attached on this node")
            }
            return Self.podInfo(p)
        }
    }

    static func podInfo(_ p: PodRecord) -> PodInfo {
        let status = p.attachments.compactMap(\.status)
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let text = (try? e.encode(status)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
        return PodInfo(
            namespace: p.pod.namespace,
            name: p.pod.name,
            uid: p.pod.uid,
            containerID: p.containerID,
            netns: p.netns,
            networkStatus: status,
            annotations: [NetworkAnnotation.statusKey: text],
            interfaces: p.attachments.compactMap { a in
                guard a.isAttachedVRouterPort, let vif = a.interface else { return nil }
                return PodInterfaceInfo(
                    ifname: a.ifname,
                    network: a.network,
                    interface: vif,
                    vrf: a.vrf,
                    label: a.label,
                    tap: a.tap
                )
            }
        )
    }
}

extension PodRecord {
    /// A plan as the record it will be (before labels), for the cluster store's claim.
    init(_ plan: PodPlan) {
        self.init(
            containerID: plan.containerID,
            netns: plan.netns,
            pod: plan.pod,
            attachments: plan.attachments,
            committed: false
        )
    }
}
