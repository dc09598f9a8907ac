// Fabric SNAT in the pipeline. The translation lives in the flow cache as a pinned pair
// (FlowTranslation.swift): route-lookup sets a pair up on a pod's first packet to an
// address its VRF sends to an SNAT nexthop, every later packet of either direction is an
// ordinary hit whose label tells rewrite to translate, and aging removes both entries
// together once both directions are idle (TCP: on the short timeout once both sides
// closed, or either reset), and only then gives the port back.
//
// Who releases a port: whoever removes the forward entry (aging, a route change that
// ends the translation, flushing the pod's VRF). A reverse entry removed alone leaves
// its forward an orphan, which the next aging pass removes and releases.

extension Pipeline {
    // MARK: Setting up

    /// A pod's packet whose route is an SNAT nexthop (its flow missed or was stale):
    /// reuse the flow's translation if it has one, else allocate a port and install the
    /// pair, then queue the packet for rewrite like a hit. Slow path: once per flow.
    @inline(never)
    mutating func translateNew(
        _ idx: UInt32,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ view: ForwardingView,
        now: UInt32
    ) {
        let p = pool.buffer(idx)
        // Safe: routeLookup found this id to be an SNAT nexthop of this snapshot.
        let snat = view.nexthops + Int(m.pointee.nexthop)
        let flags = m.pointee.flags
        guard flags.contains(.ipv4), !flags.contains(.fragment) else {
            drop(idx, .natUnsupported)
            return
        }
        let l4 = Int(m.pointee.l4)
        let proto = m.pointee.proto
        if proto == IPProtocol.icmp && ICMPv4Header.isError(p.u8(l4)) {
            translatePodError(idx, m, view)
            return
        }
        let pos = Int(m.pointee.aux)
        let key = keys4[pos]
        let hash = hashes4[pos]
        guard let exit = underlayExit(m, p, snat, view), let out = view.nexthop(exit.nexthop) else {
            icmpError(idx, .unreachable, view: view, now: now)
            return
        }
        m.pointee.nexthop = exit.nexthop
        m.pointee.label = exit.label
        guard out.pointee.kind == .underlay else {
            // The underlay routes it somewhere other than out of the fabric (a local pod of
            // an IP-fabric network): forwarded untranslated, as an ordinary flow.
            if m.pointee.flow != PacketMeta.noFlow { untranslateStale(m) }
            install(m, view, now: now)
            ipList.append(idx)
            return
        }
        let generation = view.vrfs[Int(m.pointee.vrf)].generation
        let stale = m.pointee.flow != PacketMeta.noFlow
        let existing = flows4.find(key, hash: hash)
        if existing != FlowTable<IPv4FlowKey>.miss {
            let label = flows4.label(at: existing)
            if FlowTranslation.isTranslated(label) && !FlowTranslation.isDestination(label) {
                // Re-resolved after a route change, or set up by an earlier packet of this
                // frame: same translation, current exit.
                let value = FlowValue(
                    nexthop: exit.nexthop,
                    label: label,
                    generation: generation,
                    flags: flows4.flags(at: existing)
                )
                flows4.update(existing, value)
                if !stale { flows4.touch(existing, bytes: Int(m.pointee.length), now: now) }
                m.pointee.label = label
                m.pointee.flow = existing
                ipList.append(idx)
                return
            }
        }
        let isEcho = proto == IPProtocol.icmp && p.u8(l4) == ICMPv4Header.echoRequest
        guard proto == IPProtocol.tcp || proto == IPProtocol.udp || isEcho,
            isEcho ? key.dport != 0 : key.sport != 0 && key.dport != 0
        else {
            drop(idx, .natUnsupported)
            return
        }
        // Replies go to the pod's own encap nexthop, whose address they get back: the
        // source must be the receiving pod port's address.
        let src = key.src.value
        guard let podVRF = view.vrf(m.pointee.vrf) else {
            drop(idx, .natUnsupported)
            return
        }
        let r = podVRF.pointee.v4.lookup(src)
        guard r != LPM.miss, Int(r) < view.resultCount, let podNH = view.nexthop(view.results[Int(r)].nexthop),
            podNH.pointee.kind == .encap, podNH.pointee.port == m.pointee.rxPort, podNH.pointee.address == src
        else {
            drop(idx, .natUnsupported)
            return
        }
        let podNexthop = view.results[Int(r)].nexthop
        guard let underlay = view.vrf(snat.pointee.vrf) else {
            drop(idx, .natUnsupported)
            return
        }
        let nat = self.nat
        let table = flows4
        nat.learn(reverseVRF: snat.pointee.vrf, address: snat.pointee.tunnelSource)
        guard
            let port = nat.allocate(
                proto: proto,
                isFree: { port in
                    table.find(nat.reverseKey(key, port: port), hash: table.hash(nat.reverseKey(key, port: port)))
                        == FlowTable<IPv4FlowKey>.miss
                }
            )
        else {
            drop(idx, .natPortsExhausted)
            return
        }
        let reverse = nat.reverseKey(key, port: port)
        let podPort = proto == IPProtocol.icmp ? key.dport : key.sport
        let reverseValue = FlowValue(
            nexthop: podNexthop,
            label: FlowTranslation.destination(port: podPort),
            generation: underlay.pointee.generation,
            flags: .pinned
        )
        guard case .success = flows4.insert(reverse, value: reverseValue, now: now) else {
            nat.release(proto: proto, port: port)
            counters.count(.flowInstallFailed)
            drop(idx, .flowTableFull)
            return
        }
        let label = FlowTranslation.source(port: port)
        let forwardValue = FlowValue(
            nexthop: exit.nexthop,
            label: label,
            generation: generation,
            flags: flags.contains(.tcpClosing) ? [.pinned, .closing] : .pinned
        )
        guard case .success(let slot) = flows4.insert(key, hash: hash, value: forwardValue, now: now) else {
            flows4.remove(reverse)
            nat.release(proto: proto, port: port)
            counters.count(.flowInstallFailed)
            drop(idx, .flowTableFull)
            return
        }
        counters.count(.natCreated)
        counters.count(.flowInstalled)
        if !stale { flows4.touch(slot, bytes: Int(m.pointee.length), now: now) }
        m.pointee.label = label
        m.pointee.flow = slot
        ipList.append(idx)
    }

    /// Where a translated packet leaves: its destination's route in the SNAT nexthop's
    /// underlay VRF, an ECMP member chosen now by the flow hash (the flow caches the
    /// member; its label would otherwise replace the translation in rewrite).
    @inline(__always)
    func underlayExit(
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ p: UnsafeMutableRawPointer,
        _ snat: UnsafePointer<Nexthop>,
        _ view: ForwardingView
    ) -> RouteTarget? {
        guard let t = lookupRoute(vrf: snat.pointee.vrf, m, p, view), let nh = view.nexthop(t.nexthop) else {
            return nil
        }
        guard nh.pointee.kind == .composite else { return t }
        let k = Int((UInt64(m.pointee.hash) &* UInt64(nh.pointee.componentCount)) >> 32)
        return view.components[Int(nh.pointee.componentStart) &+ k]
    }

    /// An ICMP error a pod sends about a reply the node translated toward it (its quote:
    /// remote → pod): sent on as the translated flow's forward direction would be, with
    /// the quote translated too. Errors about nothing translated are dropped; errors
    /// never set up a translation.
    @inline(never)
    mutating func translatePodError(_ idx: UInt32, _ m: UnsafeMutablePointer<PacketMeta>, _ view: ForwardingView) {
        let p = pool.buffer(idx)
        let l3 = Int(m.pointee.l3)
        let inner = Int(m.pointee.l4) &+ 8
        guard let q = NATRewrite.quotedFlow(p, inner: inner, end: l3 &+ Int(p.be16(l3 &+ 2))) else {
            drop(idx, .natNoMapping)
            return
        }
        let icmp = q.proto == IPProtocol.icmp
        let key = IPv4FlowKey(
            vrf: m.pointee.vrf,
            proto: q.proto,
            src: q.dst,
            dst: q.src,
            sport: icmp ? 0 : q.dport,
            dport: icmp ? q.dport : q.sport
        )
        let slot = flows4.find(key, hash: flows4.hash(key))
        guard slot != FlowTable<IPv4FlowKey>.miss else {
            drop(idx, .natNoMapping)
            return
        }
        let label = flows4.label(at: slot)
        guard FlowTranslation.isTranslated(label), !FlowTranslation.isDestination(label),
            view.nexthop(flows4.nexthop(at: slot))?.pointee.kind == .underlay
        else {
            drop(idx, .natNoMapping)
            return
        }
        m.pointee.nexthop = flows4.nexthop(at: slot)
        m.pointee.label = label
        m.pointee.flags.insert(.natICMPError)
        m.pointee.scratch0 = UInt64(inner)
        ipList.append(idx)
    }

    // MARK: Keeping pairs whole

    /// A reply (or ICMP error) to the node's address that flow-lookup did not resolve.
    /// Its reverse entry may have been set up by a packet earlier in the same frame (a
    /// replay can hold a request and its reply): then it is a hit after all. Or it hit an
    /// entry whose VRF generation changed: still good if its pod nexthop is the same pod
    /// and the forward entry still translates to this port; then its generation is
    /// renewed and the packet goes on as a hit. Otherwise the reverse entry goes (its
    /// forward, if any, is an orphan for aging) and false is returned.
    @inline(never)
    mutating func resumeReverse(_ m: UnsafeMutablePointer<PacketMeta>, _ view: ForwardingView, now: UInt32) -> Bool {
        let pos = Int(m.pointee.aux)
        let key = keys4[pos]
        let slot = flows4.find(key, hash: hashes4[pos])
        guard slot != FlowTable<IPv4FlowKey>.miss, let v = flows4.value(at: slot) else { return false }
        guard FlowTranslation.isTranslated(v.label), FlowTranslation.isDestination(v.label),
            let underlay = view.vrf(key.vrf)
        else { return false }
        // Counted now if flow-lookup did not (it counted the packet as a miss).
        if m.pointee.flow == PacketMeta.noFlow { flows4.touch(slot, bytes: Int(m.pointee.length), now: now) }
        if v.generation == underlay.pointee.generation {
            m.pointee.nexthop = v.nexthop
            m.pointee.label = v.label
            m.pointee.flow = slot
            return true
        }
        if let nh = view.nexthop(v.nexthop), nh.pointee.kind == .encap, nh.pointee.address != 0 {
            let forward = SourceNAT.forwardKey(
                key,
                vrf: nh.pointee.vrf,
                pod: nh.pointee.address,
                port: FlowTranslation.port(v.label)
            )
            let f = flows4.find(forward, hash: flows4.hash(forward))
            if f != FlowTable<IPv4FlowKey>.miss && flows4.label(at: f) == FlowTranslation.source(port: key.dport) {
                flows4.update(
                    slot,
                    FlowValue(
                        nexthop: v.nexthop,
                        label: v.label,
                        generation: underlay.pointee.generation,
                        flags: v.flags
                    )
                )
                m.pointee.nexthop = v.nexthop
                m.pointee.label = v.label
                m.pointee.flow = slot
                return true
            }
        }
        flows4.remove(slot)
        return false
    }

    /// A stale forward entry is about to be replaced by an untranslated action: its
    /// translation ends (reverse entry removed, port released).
    @inline(never)
    mutating func untranslateStale(_ m: UnsafeMutablePointer<PacketMeta>) {
        let pos = Int(m.pointee.aux)
        let key = keys4[pos]
        let slot = flows4.find(key, hash: hashes4[pos])
        guard slot != FlowTable<IPv4FlowKey>.miss else { return }
        let label = flows4.label(at: slot)
        guard FlowTranslation.isTranslated(label), !FlowTranslation.isDestination(label) else { return }
        let port = FlowTranslation.port(label)
        flows4.remove(nat.reverseKey(key, port: port))
        nat.release(proto: key.proto, port: port)
    }

    /// The other entry of the translated pair at `slot`, or nil.
    func translationPartner(_ slot: UInt32, _ view: ForwardingView) -> UInt32? {
        guard let key = flows4.key(at: slot) else { return nil }
        let label = flows4.label(at: slot)
        guard FlowTranslation.isTranslated(label) else { return nil }
        let other: IPv4FlowKey
        if FlowTranslation.isDestination(label) {
            guard let nh = view.nexthop(flows4.nexthop(at: slot)), nh.pointee.kind == .encap else { return nil }
            other = SourceNAT.forwardKey(
                key,
                vrf: nh.pointee.vrf,
                pod: nh.pointee.address,
                port: FlowTranslation.port(label)
            )
        } else {
            other = nat.reverseKey(key, port: FlowTranslation.port(label))
        }
        let s = flows4.find(other, hash: flows4.hash(other))
        return s == FlowTable<IPv4FlowKey>.miss ? nil : s
    }

    // MARK: Aging and flushing

    /// Removes translated pairs idle in both directions (closing timeout once both
    /// directions saw FIN or RST, else the idle timeout) and forward entries whose reverse
    /// is gone, releasing their ports. Examines up to `maxScan` slots per call; returns
    /// the entries removed.
    public mutating func ageTranslations(now: UInt32, maxScan: Int) -> Int {
        let table = flows4
        let nat = self.nat
        guard nat.owned > 0 else { return 0 }
        let idle = config.flowIdleTimeout
        let closing = config.flowClosingTimeout
        var pairs = 0
        var entries = 0
        table.scanPinned(maxScan: maxScan) { slot in
            guard let key = table.key(at: slot), let v = table.value(at: slot),
                !FlowTranslation.isDestination(v.label)
            else { return }
            let port = FlowTranslation.port(v.label)
            let reverse = nat.reverseKey(key, port: port)
            let r = table.find(reverse, hash: table.hash(reverse))
            var expired = true
            if r != FlowTable<IPv4FlowKey>.miss, let rv = table.value(at: r) {
                let age = Swift.min(now &- v.lastSeen, now &- rv.lastSeen)
                let closed = v.flags.contains(.closing) && rv.flags.contains(.closing)
                expired = age > (closed ? closing : idle)
                if expired {
                    table.remove(r)
                    entries &+= 1
                }
            }
            guard expired else { return }
            table.remove(slot)
            nat.release(proto: key.proto, port: port)
            pairs &+= 1
            entries &+= 1
        }
        counters.count(.natExpired, UInt64(pairs))
        return entries
    }

    /// Removes every flow of `vrf` (a deleted VRF): translated pairs whose forward entry
    /// is in it go whole and release their ports; reverse entries in it (the underlay
    /// VRF) go alone, leaving their forwards to aging.
    public mutating func removeFlows(vrf: UInt16) {
        let table = flows4
        let nat = self.nat
        var s = 0
        while let slot = table.nextOccupied(from: s, vrf: vrf) {
            s = Int(slot) + 1
            guard table.flags(at: slot).contains(.pinned), let key = table.key(at: slot) else { continue }
            let label = table.label(at: slot)
            guard FlowTranslation.isTranslated(label), !FlowTranslation.isDestination(label) else { continue }
            let port = FlowTranslation.port(label)
            table.remove(nat.reverseKey(key, port: port))
            nat.release(proto: key.proto, port: port)
        }
        _ = flows4.removeAll(vrf: vrf)
        _ = flows6.removeAll(vrf: vrf)
    }

    /// Empties both flow tables and forgets every translation.
    public mutating func removeAllFlows() {
        flows4.removeAll()
        flows6.removeAll()
        nat.reset()
    }

    // MARK: Rewrite

    /// Translates a packet whose flow label says so (rewrite, after the TTL and DF checks
    /// and before fragmentation and the L2 header): the source becomes the node's
    /// address (underlay nexthop) or the destination the pod's (encap nexthop).
    @inline(__always)
    mutating func translate(
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ p: UnsafeMutableRawPointer,
        _ l3: Int,
        _ nh: UnsafePointer<Nexthop>,
        _ label: UInt32
    ) {
        let toPod = FlowTranslation.isDestination(label)
        let address = toPod ? nh.pointee.address : nh.pointee.tunnelSource
        if m.pointee.flags.contains(.natICMPError) {
            translateError(m, p, l3, toPod, address, FlowTranslation.port(label))
            return
        }
        NATRewrite.rewrite(
            p,
            l3: l3,
            l4: Int(m.pointee.l4),
            proto: m.pointee.proto,
            destination: toPod,
            address: address,
            port: FlowTranslation.port(label)
        )
    }

    @inline(never)
    mutating func translateError(
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ p: UnsafeMutableRawPointer,
        _ l3: Int,
        _ toPod: Bool,
        _ address: UInt32,
        _ port: UInt16
    ) {
        NATRewrite.rewriteError(
            p,
            l3: l3,
            l4: Int(m.pointee.l4),
            inner: Int(truncatingIfNeeded: m.pointee.scratch0),
            end: l3 &+ Int(p.be16(l3 &+ 2)),
            destination: toPod,
            address: address,
            port: port
        )
        counters.count(.natICMPError)
    }
}
