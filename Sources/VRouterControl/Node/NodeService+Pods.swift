// The CNI operations vrouterd serves to the shim (see VRouterCNI/Wire.swift): one ADD makes
// every vRouter interface of a pod (default network as eth0, then each network of the
// annotation) and hands the delegated ones back; DEL, CHECK and GC work from the pod
// records, which are journaled so that DEL works after a restart and with the netns gone.
//
// All or nothing: everything is resolved and every address reserved before the first
// device is made; a failing device undoes the devices made before it and the reservations.
// Records are by container ID: a DEL for an older sandbox of the same pod touches only
// that sandbox's record (usually none: it was replaced), never the running one's.

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
    init(_ e: APIError, _ code: CNIError.Code) { self.init(e.status, code, e.message) }
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
            throw CNIFailure(400, .invalidEnvironment, "network namespace '\(req.netns)' does not exist")
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
        // What the pod already has in its namespace (a requested name must be free).
        let existing: Set<String>
        do { existing = Set(try ns.netlink().links().map(\.name)) } catch {
            throw CNIFailure(500, .interfaceFailure, "cannot read the pod's network namespace \(req.netns): \(error)")
        }
        return try state.withLock { s throws(CNIFailure) -> CNIAddResponse in
            guard let dn = s.config.defaultNetwork, s.compiled.vrfIDs[dn.name] != nil else {
                throw CNIFailure(503, .internalError, "vrouterd has no default network (defaultNetwork in its config)")
            }
            if s.cni.pods[req.containerID] != nil {
                throw CNIFailure(409, .podConflict, "container \(req.containerID) is attached already (DEL it first)")
            }
            // The plan: the default network, then each selection in order.
            var plan = [PodAttachment(network: dn.name, ifname: req.ifname, isDefault: true, defaultRoute: true)]
            plan[0].interface = nil
            let requestedNames = Set(selections.compactMap(\.interface))
            var counter = 1
            var records: [NetworkRecord?] = [nil]
            for sel in selections {
                guard let rec = s.cni.networks[sel.key] else {
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
                    plan[0].defaultRoute = false
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
            if let key = req.pod.key,
                let prev = s.cni.pods.values.first(where: { $0.key == key && $0.releasing != true })
            {
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
                previous = prev
            }
            if let prev = previous { replaceSandbox(prev, &s) }
            // Addresses for the vRouter attachments (requested ones checked), all before any device.
            var reserved: [(String, Int, UInt128)] = []
            func undoReservations(_ s: inout ControlState) {
                for (k, i, a) in reserved { s.cni.pools[k]?[i].release(a) }
            }
            for (i, sel) in ([nil] + selections.map { Optional($0) }).enumerated() where plan[i].delegate == nil {
                let key = plan[i].network
                let pools = s.cni.pools[key] ?? []
                let before = previous?.attachments.first { $0.ifname == plan[i].ifname && $0.network == key }
                do throws(CNIFailure) {
                    for ip in sel?.ips ?? [] {
                        let (v6, value, length) = NetworkAnnotation.parseIP(ip)!
                        guard let pi = pools.firstIndex(where: { $0.v6 == v6 }) else {
                            throw CNIFailure(
                                400,
                                .addressUnavailable,
                                "network \(key): \(ip): the network has no IPv\(v6 ? 6 : 4) subnet"
                            )
                        }
                        if let l = length, l != pools[pi].length {
                            throw CNIFailure(
                                400,
                                .addressUnavailable,
                                "network \(key): \(ip): the subnet's prefix length is /\(pools[pi].length)"
                            )
                        }
                        if reserved.contains(where: { $0.0 == key && $0.1 == pi && $0.2 == value })
                            || (v6 ? plan[i].ipv6 : plan[i].ipv4) != nil
                        {
                            throw CNIFailure(400, .addressUnavailable, "network \(key): \(ip): one address per family")
                        }
                        if let why = s.cni.pools[key]![pi].reserve(value) {
                            throw CNIFailure(
                                409,
                                .addressUnavailable,
                                "network \(key): address \(pools[pi].text(value)) is \(why)"
                            )
                        }
                        reserved.append((key, pi, value))
                        if v6 {
                            plan[i].ipv6 = "\(pools[pi].text(value))/\(pools[pi].length)"
                        } else {
                            plan[i].ipv4 = "\(pools[pi].text(value))/\(pools[pi].length)"
                        }
                    }
                    for pi in pools.indices where (pools[pi].v6 ? plan[i].ipv6 : plan[i].ipv4) == nil {
                        let old = (pools[pi].v6 ? before?.ipv6 : before?.ipv4).flatMap {
                            NetworkAnnotation.parseIP($0)?.value
                        }
                        guard let value = s.cni.pools[key]![pi].allocate(preferring: old) else {
                            throw CNIFailure(
                                409,
                                .addressUnavailable,
                                "network \(key): no free address left in this node's part of \(pools[pi].text(pools[pi].network))/\(pools[pi].length)"
                            )
                        }
                        reserved.append((key, pi, value))
                        let text = "\(pools[pi].text(value))/\(pools[pi].length)"
                        if pools[pi].v6 { plan[i].ipv6 = text } else { plan[i].ipv4 = text }
                    }
                } catch {
                    undoReservations(&s)
                    throw error
                }
                let rec = records[i]
                plan[i].gateway4 = plan[i].ipv4 != nil ? (rec?.gateway ?? dn.gateway4?.description) : nil
                plan[i].gateway6 = plan[i].ipv6 != nil ? (rec?.gateway6 ?? dn.gateway6?.description) : nil
                if let gws = sel?.defaultRoute {
                    // The selection's gateways replace the network's for the default route.
                    for g in gws {
                        if IPv4Address(g) != nil, plan[i].ipv4 != nil { plan[i].gateway4 = g }
                        if IPv6Address(g) != nil, plan[i].ipv6 != nil { plan[i].gateway6 = g }
                    }
                }
                plan[i].mac = sel?.mac.flatMap { MACAddress($0) }?.description ?? Self.randomMAC().description
                plan[i].vrf = rec?.vrf ?? dn.name
                plan[i].mtu = dn.mtu
                plan[i].tap = Self.tapName()
                plan[i].interface = Self.vifName(req, plan[i].ifname)
                // An MPLS label, so other nodes can reach the interface over MPLS-over-UDP;
                // a re-ADD keeps the label it had when it is still free.
                let taken = Set(plan.compactMap(\.label))
                guard let label = Self.freeLabel(s.builder.labels, preferring: before?.label, excluding: taken) else {
                    undoReservations(&s)
                    throw CNIFailure(409, .interfaceFailure, "network \(key): no free MPLS label left on this node")
                }
                plan[i].label = label
            }
            // Devices, one by one; the first failure undoes the others.
            var made: [String] = []
            for a in plan where a.delegate == nil {
                do throws(APIError) {
                    _ = try installInterface(
                        Self.nodeInterface(a, netns: req.netns),
                        &s,
                        reattach: false,
                        gateways: (a.gateway4.flatMap { IPv4Address($0) }, a.gateway6.flatMap { IPv6Address($0) })
                    )
                    made.append(a.interface!)
                } catch {
                    try? uninstallInterfaces(made, &s)
                    undoReservations(&s)
                    throw CNIFailure(
                        error.status == 409 ? 409 : 500,
                        .interfaceFailure,
                        "network \(a.network) (\(a.ifname)): \(error.message)"
                    )
                }
            }
            let rec = PodRecord(
                containerID: req.containerID,
                netns: req.netns,
                pod: req.pod,
                attachments: plan,
                committed: !plan.contains { $0.delegate != nil }
            )
            s.cni.pods[req.containerID] = rec
            publication.publish(s.builder.build())
            journal(.pod(rec), s)
            log.info(
                "pod attached",
                metadata: [
                    "pod": "\(rec.key)", "container": "\(req.containerID)", "interfaces": "\(plan.map(\.ifname))",
                ]
            )
            return CNIAddResponse(attachments: plan.map(\.wire))
        }
    }

    /// A new sandbox of a running pod replaces the old one: the old vRouter interfaces go
    /// (their addresses are offered to the new sandbox); old delegated attachments stay
    /// recorded under the old container ID until its DEL releases them.
    private func replaceSandbox(_ prev: PodRecord, _ s: inout ControlState) {
        releaseVRouterAttachments(prev.containerID, &s)
        guard var p = s.cni.pods[prev.containerID] else { return }
        if p.attachments.contains(where: { $0.delegate != nil }) {
            p.releasing = true
            s.cni.pods[prev.containerID] = p
            journal(.pod(p), s)
        } else {
            s.cni.pods[prev.containerID] = nil
            journal(.podReleased(prev.containerID), s)
        }
        log.info("pod sandbox replaced", metadata: ["pod": "\(prev.key)", "old": "\(prev.containerID)"])
    }

    /// Removes a record's vRouter interfaces (those still there) and frees their addresses.
    func releaseVRouterAttachments(_ containerID: String, _ s: inout ControlState) {
        guard var p = s.cni.pods[containerID] else { return }
        var names: [String] = []
        for i in p.attachments.indices where p.attachments[i].delegate == nil && p.attachments[i].detached != true {
            if let n = p.attachments[i].interface, s.compiled.portIDs[n] != nil { names.append(n) }
            releaseAddresses(p.attachments[i], &s)
            p.attachments[i].detached = true
        }
        do { try uninstallInterfaces(names, &s) } catch {
            log.error("releasing pod interfaces", metadata: ["container": "\(containerID)", "error": "\(error)"])
            for n in names where s.compiled.portIDs[n] != nil { try? uninstallInterfaces([n], &s) }
        }
        s.cni.pods[containerID] = p
    }

    /// Releases one attachment's interface and addresses (network force-deleted).
    func releaseAttachment(_ a: PodAttachment, _ s: inout ControlState) {
        if let n = a.interface, s.compiled.portIDs[n] != nil {
            do { try uninstallInterfaces([n], &s) } catch {
                log.error("releasing \(n)", metadata: ["error": "\(error)"])
            }
        }
        releaseAddresses(a, &s)
    }

    private func releaseAddresses(_ a: PodAttachment, _ s: inout ControlState) {
        guard a.delegate == nil, a.detached != true else { return }
        for ip in [a.ipv4, a.ipv6].compactMap({ $0 }) {
            guard let (v6, value, _) = NetworkAnnotation.parseIP(ip),
                let pi = s.cni.pools[a.network]?.firstIndex(where: { $0.v6 == v6 })
            else {
                continue
            }
            s.cni.pools[a.network]![pi].release(value)
        }
    }

    // MARK: commit (the delegates' results)

    public func cniCommit(_ req: CNICommitRequest) throws(CNIFailure) {
        let (netns, routes) = try state.withLock { s throws(CNIFailure) -> (String, [(String, Route)]) in
            guard var p = s.cni.pods[req.containerID], p.releasing != true else {
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
            s.cni.pods[req.containerID] = p
            journal(.pod(p), s)
            return (p.netns, routes)
        }
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

    // MARK: DEL

    public func cniDel(_ req: CNIDelRequest) -> CNIDelegatesResponse {
        state.withLock { s -> CNIDelegatesResponse in
            guard var p = s.cni.pods[req.containerID] else {
                return CNIDelegatesResponse(found: false, delegates: [])
            }
            releaseVRouterAttachments(req.containerID, &s)
            p = s.cni.pods[req.containerID]!
            let delegates = p.attachments.filter { $0.delegate != nil }
            if delegates.isEmpty || req.delegatesReleased == true {
                s.cni.pods[req.containerID] = nil
                publication.publish(s.builder.build())
                journal(.podReleased(req.containerID), s)
                log.info("pod released", metadata: ["pod": "\(p.key)", "container": "\(req.containerID)"])
                return CNIDelegatesResponse(found: true, netns: p.netns, delegates: [])
            }
            p.releasing = true
            s.cni.pods[req.containerID] = p
            journal(.pod(p), s)
            return CNIDelegatesResponse(found: true, netns: p.netns, delegates: delegates.map(\.wire))
        }
    }

    // MARK: CHECK

    public func cniCheck(_ req: CNICheckRequest) throws(CNIFailure) -> CNIDelegatesResponse {
        let (rec, open) = state.withLock { s in
            (s.cni.pods[req.containerID], Set(s.taps.filter { $0.value.isOpen }.map(\.key)))
        }
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
        for a in rec.attachments where a.delegate == nil && a.detached != true {
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
            if let m = a.mac, link.mac?.description != m {
                throw CNIFailure(
                    409,
                    .checkFailed,
                    "\(what): MAC is \(link.mac?.description ?? "none"), attached with \(m)"
                )
            }
            for ip in [a.ipv4, a.ipv6].compactMap({ $0 }) {
                guard addresses.contains(where: { $0.interface == a.ifname && $0.address.description == ip }) else {
                    throw CNIFailure(409, .checkFailed, "\(what): address \(ip) is missing")
                }
            }
            if a.defaultRoute {
                for (gw, dst) in [(a.gateway4, IPPrefix.defaultIPv4), (a.gateway6, IPPrefix.defaultIPv6)] {
                    guard let g = gw, (dst.isIPv4 ? a.ipv4 : a.ipv6) != nil else { continue }
                    guard
                        routes.contains(where: {
                            $0.destination == dst && $0.gateway?.description == g && $0.device == a.ifname
                        })
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

    // MARK: GC, STATUS

    public func cniGC(_ req: CNIGCRequest) -> CNIGCResponse {
        let valid = Set(req.validAttachments.map(\.containerID))
        return state.withLock { s -> CNIGCResponse in
            var removed: [String] = []
            var delegates: [CNIStaleDelegate] = []
            for cid in s.cni.pods.keys.sorted() where !valid.contains(cid) {
                releaseVRouterAttachments(cid, &s)
                let p = s.cni.pods.removeValue(forKey: cid)!
                for a in p.attachments where a.delegate != nil {
                    delegates.append(CNIStaleDelegate(containerID: cid, netns: p.netns, attachment: a.wire))
                }
                journal(.podReleased(cid), s)
                removed.append(cid)
            }
            if !removed.isEmpty {
                publication.publish(s.builder.build())
                log.info("CNI GC released stale containers", metadata: ["containers": "\(removed)"])
            }
            return CNIGCResponse(removed: removed, delegates: delegates)
        }
    }

    public func cniStatus() -> CNIStatusResponse {
        if stopping.load(ordering: .relaxed) { return CNIStatusResponse(ready: false, message: "vrouterd is stopping") }
        return state.withLock { s in
            guard let dn = s.config.defaultNetwork else {
                return CNIStatusResponse(ready: false, message: "no defaultNetwork in vrouterd's config")
            }
            guard s.compiled.vrfIDs[dn.name] != nil else {
                return CNIStatusResponse(ready: false, message: "the default network's VRF '\(dn.name)' is missing")
            }
            return CNIStatusResponse(ready: true)
        }
    }

    // MARK: reads

    public func pods() -> [PodInfo] {
        state.withLock { s in
            s.cni.pods.values.filter { $0.releasing != true }.sorted { $0.key < $1.key }.map(Self.podInfo)
        }
    }

    public func pod(namespace: String, name: String) throws(APIError) -> PodInfo {
        try state.withLock { s throws(APIError) in
            guard let p = s.cni.record(forPod: "\(namespace)/\(name)"), p.releasing != true else {
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
                guard a.delegate == nil, a.detached != true, let vif = a.interface else { return nil }
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

    // MARK: names

    /// The lowest MPLS label in 16...maxLabel not bound in `labels` nor in `excluding`, or
    /// `preferring` when that one is free. Labels index a dense table, so low ones are best.
    static func freeLabel(_ labels: [UInt32: UInt32], preferring: UInt32?, excluding: Set<UInt32>) -> UInt32? {
        if let p = preferring, (16...TableBuilder.maxLabel).contains(p), labels[p] == nil, !excluding.contains(p) {
            return p
        }
        var l: UInt32 = 16
        while l <= TableBuilder.maxLabel {
            if labels[l] == nil, !excluding.contains(l) { return l }
            l += 1
        }
        return nil
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

    static func nodeInterface(_ a: PodAttachment, netns: String) -> NodeConfig.Interface {
        var itf = NodeConfig.Interface(name: a.interface!, kind: .pod, mac: MACAddress(a.mac!)!)
        itf.vrf = a.vrf
        itf.mtu = a.mtu ?? 1500
        if let t = a.ipv4, let (_, v, l) = NetworkAnnotation.parseIP(t) {
            itf.ipv4 = IPv4Address(UInt32(truncatingIfNeeded: v))
            itf.ipv4PrefixLength = l ?? 32
        }
        if let t = a.ipv6, let (_, v, l) = NetworkAnnotation.parseIP(t) {
            itf.ipv6 = IPv6Address(v)
            itf.ipv6PrefixLength = l ?? 128
        }
        itf.defaultRoute = a.defaultRoute
        itf.label = a.label
        itf.tap = NodeConfig.Tap(name: a.tap!, netns: netns, ifname: a.ifname, persistent: true)
        return itf
    }
}
