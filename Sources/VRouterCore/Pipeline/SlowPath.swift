// The pipeline's slow paths: packets answered or made by the node itself. They are rare
// (a pod's ARP once per neighbour, ICMP errors rate-limited), so clarity wins over speed
// here, but nothing allocates: replies are built in the request's buffer.

enum ICMPErrorKind {
    case timeExceeded
    case unreachable
    case tooBig(mtu: Int)

    var dropReason: DropReason {
        switch self {
        case .timeExceeded: .ttlExpired
        case .unreachable: .noRoute
        case .tooBig: .mtuExceeded
        }
    }
}

extension Pipeline {
    /// Counts the packet as dropped under the error's reason and, when allowed (not about
    /// an ICMP error, a later fragment or a multicast source; within the rate limit; the
    /// VRF has a gateway address to send from), turns its buffer into the ICMP error and
    /// queues that to be routed back to the source.
    @inline(never)
    mutating func icmpError(_ idx: UInt32, _ kind: ICMPErrorKind, view: ForwardingView, now: UInt32) {
        let m = pool.meta(idx)
        counters.drop(kind.dropReason, port: m.pointee.rxPort)
        guard !m.pointee.flags.contains(.generated) else {
            pool.free(idx)
            return
        }
        guard takeICMPToken(now: now) else {
            counters.count(.icmpErrorSuppressed)
            pool.free(idx)
            return
        }
        let vrf = view.vrfs[Int(m.pointee.vrf)]
        focusOnInnerPacket(idx, view)
        let made: Bool
        if m.pointee.flags.contains(.ipv4) {
            let k: ICMPv4ErrorKind
            switch kind {
            case .timeExceeded: k = .timeExceeded
            case .unreachable: k = .netUnreachable
            case .tooBig(let mtu): k = .fragmentationNeeded(mtu: UInt16(clamping: mtu))
            }
            made = vrf.hasGateway4 && ICMPv4Error.make(k, pool: pool, idx, source: IPv4Address(vrf.gateway4))
        } else {
            let k: ICMPv6ErrorKind
            switch kind {
            case .timeExceeded: k = .timeExceeded
            case .unreachable: k = .noRoute
            case .tooBig(let mtu): k = .packetTooBig(mtu: UInt32(clamping: mtu))
            }
            made = vrf.hasGateway6 && ICMPv6Error.make(k, pool: pool, idx, source: IPv6Address(vrf.gateway6))
        }
        guard made else {
            pool.free(idx)
            return
        }
        counters.count(.icmpErrorSent)
        generated.append(idx)
    }

    /// Makes the frame of buffer `idx` start with an Ethernet header right before its IP
    /// header, so the slow-path makers (which parse from the frame start) see the inner
    /// packet of a decapsulated frame, and cuts VLAN tags and padding away. The header's
    /// addresses are placeholders: whatever is sent gets a fresh L2 rewrite.
    @inline(__always)
    mutating func focusOnInnerPacket(_ idx: UInt32, _ view: ForwardingView) {
        let m = pool.meta(idx)
        let p = pool.buffer(idx)
        let l3 = Int(m.pointee.l3)
        let v4 = m.pointee.flags.contains(.ipv4)
        let ipLength = v4 ? Int(p.be16(l3 &+ 2)) : 40 &+ Int(p.be16(l3 &+ 4))
        let start = l3 &- 14
        if m.pointee.flags.contains(.decapsulated) || Int(m.pointee.offset) != start {
            p.setBE48(start, view.routerMAC)
            p.setBE48(start &+ 6, view.routerMAC)
        }
        p.setBE16(start &+ 12, v4 ? EtherType.ipv4 : EtherType.ipv6)
        m.pointee.offset = UInt16(truncatingIfNeeded: start)
        m.pointee.length = UInt16(truncatingIfNeeded: 14 &+ ipLength)
        m.pointee.flags.remove(.vlan)
    }

    @inline(__always)
    mutating func takeICMPToken(now: UInt32) -> Bool {
        let elapsed = now &- icmpRefilledAt
        if elapsed >= 1000 / max(config.icmpErrorsPerSecond, 1) || icmpTokens == 0 {
            let add = UInt64(elapsed) &* UInt64(config.icmpErrorsPerSecond) / 1000
            if add > 0 {
                icmpTokens = UInt32(min(UInt64(config.icmpErrorBurst), UInt64(icmpTokens) &+ add))
                icmpRefilledAt = now
            }
        }
        guard icmpTokens > 0 else { return false }
        icmpTokens &-= 1
        return true
    }

    /// Routes ICMP errors and echo replies made this frame back toward their destinations.
    @inline(__always)
    mutating func forwardGenerated(_ view: ForwardingView, output: inout Frame) {
        let list = generated
        var kept = 0
        for i in 0..<list.count {
            let idx = list[i]
            let m = pool.meta(idx)
            // Never translated: a made packet belongs to no translated flow.
            guard resolve(m, pool.buffer(idx), view), view.nexthop(m.pointee.nexthop)?.pointee.kind != .sourceNAT
            else {
                drop(idx, .noRoute)
                continue
            }
            list[kept] = idx
            kept &+= 1
        }
        generated.count = kept
        rewrite(generated: true, view, output: &output)
    }

    /// A packet for the vRouter's own address in a VRF: echo requests are answered,
    /// everything else has no listener.
    @inline(never)
    mutating func receive(_ idx: UInt32, _ view: ForwardingView) {
        let m = pool.meta(idx)
        guard !m.pointee.flags.contains(.generated) else {
            drop(idx, .receiveNoListener)
            return
        }
        let vrf = m.pointee.vrf
        let rx = m.pointee.rxPort
        focusOnInnerPacket(idx, view)
        guard EchoResponder.reply(pool: pool, idx) else {
            drop(idx, .receiveNoListener)
            return
        }
        m.pointee.vrf = vrf
        m.pointee.rxPort = rx
        counters.count(.echoReply)
        generated.append(idx)
    }

    /// Fragments an IPv4 packet (DF clear) that is too big for its nexthop, then writes the
    /// nexthop's headers on every fragment (inner fragmentation: the tunnel header is copied
    /// onto each piece, so the outer packets are never fragments).
    @inline(never)
    mutating func fragmentAndForward(
        _ idx: UInt32,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ nh: UnsafePointer<Nexthop>,
        _ label: UInt32,
        _ view: ForwardingView,
        output: inout Frame
    ) {
        focusOnInnerPacket(idx, view)
        fragments.removeAll()
        if let reason = IPv4Fragmenter.fragment(
            pool: pool,
            idx,
            l2Length: 14,
            mtu: Int(nh.pointee.innerMTU),
            into: &fragments
        ) {
            drop(idx, reason)
            return
        }
        counters.count(.packetsFragmented)
        counters.count(.fragmentsMade, UInt64(fragments.count))
        for i in 0..<fragments.count {
            let f = fragments[i]
            let fm = pool.meta(f)
            let p = pool.buffer(f)
            let l3 = Int(fm.pointee.l3)
            writeHeaders(
                f,
                fm,
                p,
                l3,
                Int(p.be16(l3 &+ 2)),
                true,
                nh,
                label,
                hash: fm.pointee.hash,
                view,
                output: &output
            )
        }
    }

    @inline(__always)
    mutating func clampMSS(_ p: UnsafeMutableRawPointer, _ m: UnsafeMutablePointer<PacketMeta>, mss: Int) -> Bool {
        let l4 = Int(m.pointee.l4)
        let l3 = Int(m.pointee.l3)
        let end =
            m.pointee.flags.contains(.ipv4)
            ? l3 &+ Int(p.be16(l3 &+ 2)) : l3 &+ 40 &+ Int(p.be16(l3 &+ 4))
        return MSSClamp.clamp(tcp: p + l4, available: end &- l4, maximum: UInt16(clamping: mss))
    }

    // MARK: arp-nd

    /// Proxy ARP and neighbour discovery: a pod asking for any address other than its own
    /// gets the vRouter MAC (every destination is routed); on the fabric, requests for the
    /// node's underlay address, and for local pods its underlay VRF routes to (IP-fabric
    /// forwarding), are answered with the fabric MAC, and replies go to the control plane
    /// (which resolves underlay neighbours).
    @inline(never)
    mutating func arpAndND(_ view: ForwardingView, output: inout Frame, punt: inout Frame) {
        let list = arpList
        for i in 0..<list.count {
            let idx = list[i]
            let m = pool.meta(idx)
            let port = view.ports[Int(m.pointee.rxPort)]  // Safe: ethernet-input validated the port.
            if m.pointee.flags.contains(.ipv6) {
                nd(idx, m, port, view, output: &output)
            } else {
                arp(idx, m, port, view, output: &output, punt: &punt)
            }
        }
        arpList.removeAll()
    }

    @inline(__always)
    mutating func arp(
        _ idx: UInt32,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ port: PortEntry,
        _ view: ForwardingView,
        output: inout Frame,
        punt: inout Frame
    ) {
        let p = pool.buffer(idx)
        let a = ARPHeader(p + Int(m.pointee.l3))
        guard a.isEthernetIPv4 else {
            drop(idx, .invalidARP)
            return
        }
        let op = a.operation
        let spa = a.senderIP.value
        let tpa = a.targetIP.value
        let answerMAC: UInt64
        if port.kind == .fabric {
            if op == ARPHeader.reply {
                self.punt(idx, &punt)
                return
            }
            guard op == ARPHeader.request, tpa == port.ipv4 || isLocalPod(tpa, underlayOf: port, view) else {
                drop(idx, .notTunnel)
                return
            }
            answerMAC = port.mac
        } else {
            guard op == ARPHeader.request else {
                // Unsolicited replies are announcements; we never asked a pod anything.
                drop(idx, op == ARPHeader.reply ? .selfAnnouncement : .invalidARP)
                return
            }
            if spa == tpa || spa == 0 || (port.flags.contains(.hasIPv4) && tpa == port.ipv4) {
                drop(idx, .selfAnnouncement)  // gratuitous ARP, ARP probe, or its own address
                return
            }
            answerMAC = view.routerMAC
        }
        // The reply, in place (RFC 826): back to the asker, "tpa is at answerMAC".
        guard ARPResponder.reply(pool: pool, idx, mac: MACAddress(answerMAC)) else {
            drop(idx, .invalidARP)
            return
        }
        m.pointee.txPort = m.pointee.rxPort
        counters.count(.arpReply)
        emit(idx, &output)
    }

    /// Whether the fabric port's underlay VRF routes `address` to a local pod.
    func isLocalPod(_ address: UInt32, underlayOf port: PortEntry, _ view: ForwardingView) -> Bool {
        guard port.flags.contains(.underlayVRF), let vrf = view.vrf(port.vrf) else { return false }
        let r = vrf.pointee.v4.lookup(address)
        guard r != LPM.miss, Int(r) < view.resultCount else { return false }
        return view.nexthop(view.results[Int(r)].nexthop)?.pointee.kind == .encap
    }

    @inline(__always)
    mutating func nd(
        _ idx: UInt32,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ port: PortEntry,
        _ view: ForwardingView,
        output: inout Frame
    ) {
        let p = pool.buffer(idx)
        let type = p.u8(Int(m.pointee.l4))
        switch type {
        case ICMPv6Header.neighborSolicitation:
            let target = p.be128(Int(m.pointee.l4) &+ 8)
            if port.flags.contains(.hasIPv6) && target == port.ipv6 {
                drop(idx, .selfAnnouncement)  // duplicate address detection for its own address
                return
            }
            guard NeighborDiscoveryResponder.advertise(pool: pool, idx, mac: MACAddress(view.routerMAC)) else {
                drop(idx, .invalidPacket)
                return
            }
            m.pointee.txPort = m.pointee.rxPort
            counters.count(.ndAdvertisement)
            emit(idx, &output)
        case ICMPv6Header.neighborAdvertisement:
            drop(idx, .selfAnnouncement)
        default:
            drop(idx, .unhandledICMP)  // router solicitations, redirects: we send no RAs
        }
    }
}
