// flow-lookup: the whole frame's IP packets are looked up in the flow cache at once
// (the table prefetches buckets ahead, so DRAM misses overlap). A hit whose VRF
// generation is current carries the resolved nexthop and label, and the packet skips
// route-lookup; anything else goes to route-lookup.

import CVRouterShims

extension Pipeline {
    /// Records the flow key and hash of an IP packet whose headers ethernet-input
    /// validated, at the next position of its family's arrays.
    @inline(__always)
    mutating func recordFlowKey(_ idx: UInt32) {
        let m = pool.meta(idx)
        let p = pool.buffer(idx)
        let l3 = Int(m.pointee.l3)
        let l4 = Int(m.pointee.l4)
        let proto = m.pointee.proto
        var ports: UInt32 = 0
        if !m.pointee.flags.contains(.fragment) {
            // Fragments key on addresses and protocol only, so every fragment of a packet
            // (only the first carries ports) follows the same flow.
            if proto == IPProtocol.tcp || proto == IPProtocol.udp {
                ports = p.be32(l4)
            } else if proto == IPProtocol.icmp || proto == IPProtocol.icmpv6 {
                if m.pointee.flags.contains(.natICMPError) {
                    recordQuotedFlowKey(idx)
                    return
                }
                // Echo requests and replies key on their identifier (as the destination
                // port); other messages (errors: bytes 4-5 are unused or a pointer) on 0,
                // so they never look like an echo flow.
                let type = p.u8(l4)
                let echo = proto == IPProtocol.icmp ? type & 0xF7 == 0 : type & 0xFE == 128
                if echo { ports = UInt32(p.be16(l4 &+ 4)) }
            }
        }
        let sport = UInt16(truncatingIfNeeded: ports >> 16)
        let dport = UInt16(truncatingIfNeeded: ports)
        if m.pointee.flags.contains(.ipv4) {
            let key = IPv4FlowKey(
                vrf: m.pointee.vrf,
                proto: proto,
                src: p.be32(l3 &+ 12),
                dst: p.be32(l3 &+ 16),
                sport: sport,
                dport: dport
            )
            record4(m, key)
        } else {
            let key = IPv6FlowKey(
                vrf: m.pointee.vrf,
                proto: proto,
                src: p.be128(l3 &+ 8),
                dst: p.be128(l3 &+ 24),
                sport: sport,
                dport: dport
            )
            let h = flows6.hash(key)
            keys6[count6] = key
            hashes6[count6] = h
            m.pointee.hash = h
            m.pointee.aux = UInt32(truncatingIfNeeded: count6)
            count6 &+= 1
        }
    }

    @inline(__always)
    mutating func record4(_ m: UnsafeMutablePointer<PacketMeta>, _ key: IPv4FlowKey) {
        let h = flows4.hash(key)
        keys4[count4] = key
        hashes4[count4] = h
        m.pointee.hash = h
        m.pointee.aux = UInt32(truncatingIfNeeded: count4)
        count4 &+= 1
    }

    /// An ICMP error from the fabric to the node's address is looked up under the key
    /// of the translated flow's reverse entry: its quote, a packet the node sent, turned
    /// around (ethernet-input checked that the quote holds one).
    @inline(never)
    mutating func recordQuotedFlowKey(_ idx: UInt32) {
        let m = pool.meta(idx)
        let p = pool.buffer(idx)
        let l3 = Int(m.pointee.l3)
        let end = l3 &+ Int(p.be16(l3 &+ 2))
        let q = NATRewrite.quotedFlow(p, inner: Int(truncatingIfNeeded: m.pointee.scratch0), end: end)
        let icmp = q?.proto == IPProtocol.icmp
        let key = IPv4FlowKey(
            vrf: m.pointee.vrf,
            proto: q?.proto ?? 0,
            src: q?.dst ?? 0,
            dst: q?.src ?? 0,
            sport: icmp ? 0 : q?.dport ?? 0,
            dport: icmp ? q?.dport ?? 0 : q?.sport ?? 0
        )
        record4(m, key)
    }

    @inline(__always)
    mutating func flowLookup(_ view: ForwardingView, now: UInt32) {
        let n = ipList.count
        guard n > 0 else { return }
        if count4 > 0 { flows4.lookup(keys: keys4, hashes: hashes4, count: count4, slots: slots4) }
        if count6 > 0 { flows6.lookup(keys: keys6, hashes: hashes6, count: count6, slots: slots6) }
        let pool = self.pool
        var hits: UInt64 = 0
        var stale: UInt64 = 0
        // Hits stay on ipList (compacted in place, order kept); misses move to missList.
        var kept = 0
        for i in 0..<n {
            let idx = ipList[i]
            let m = pool.meta(idx)
            let v4 = m.pointee.flags.contains(.ipv4)
            let slot = v4 ? slots4[Int(m.pointee.aux)] : slots6[Int(m.pointee.aux)]
            if slot != PacketMeta.noFlow {
                let bytes = Int(m.pointee.length)
                let h = v4 ? flows4.hit(slot, bytes: bytes, now: now) : flows6.hit(slot, bytes: bytes, now: now)
                // Safe: the VRF came from a validated port, VNI or label of this snapshot.
                if h.generation == view.vrfs[Int(m.pointee.vrf)].generation {
                    m.pointee.nexthop = h.nexthop
                    m.pointee.label = h.label
                    m.pointee.flow = slot
                    if m.pointee.flags.contains(.tcpClosing) { markClosing(slot, v4, m, view) }
                    hits &+= 1
                    ipList[kept] = idx
                    kept &+= 1
                    continue
                }
                // Built from routes that changed since: re-resolve, then overwrite in place.
                m.pointee.flow = slot
                stale &+= 1
            } else {
                m.pointee.flow = PacketMeta.noFlow
            }
            missList.append(idx)
        }
        ipList.count = kept
        counters.count(.flowHit, hits)
        counters.count(.flowStale, stale)
        counters.count(.flowMiss, UInt64(n) &- hits &- stale)
    }

    /// A TCP FIN or RST was seen: the flow ages out on the short timeout. An RST ends a
    /// translated flow in both directions: its partner entry is marked too.
    @inline(never)
    mutating func markClosing(
        _ slot: UInt32,
        _ v4: Bool,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ view: ForwardingView
    ) {
        guard v4 else {
            flows6.addFlags(slot, .closing)
            return
        }
        flows4.addFlags(slot, .closing)
        if m.pointee.flags.contains(.tcpReset) && flows4.flags(at: slot).contains(.pinned),
            let partner = translationPartner(slot, view)
        {
            flows4.addFlags(partner, .closing)
        }
    }
}
