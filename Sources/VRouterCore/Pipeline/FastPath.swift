// The fused fast path (issue 19), on unless PipelineConfig.fusedFastPath is off: the
// common case goes from parse to rewrite without passing through PacketMeta.
//
//   ethernet-input  (fastClassify) a straight-line parse for untagged pod IPv4 TCP/UDP and for
//                   VXLAN- or MPLSoUDP-decapsulated IPv4 TCP/UDP; what it learns (L3/L4 offsets, flags)
//                   is one word per packet in `fast4` next to the key and hash. Anything
//                   else, or anything it is unsure of, takes the general classify.
//   flow-lookup     the same batched lookup; then, in one loop, a hit whose action is a
//                   plain forward (tunnel or local pod, resolved, untranslated, fits the
//                   MTU, TTL left, no SYN/FIN/RST) is rewritten and emitted right there.
//   fallback        every other packet gets its PacketMeta filled exactly as the general
//                   ethernet-input would have (`materialize`) and goes on through the
//                   general nodes: other hits are rewritten by `rewriteOne` in the same
//                   loop, misses go to route-lookup.
//
// Both modes rewrite a frame's hits before its misses, in frame order, so outputs, ICMP
// errors and outer IPv4 identifications come out the same; the differential tests
// (PipelineDifferentialTests) run random frames through both and compare bytes, ports,
// counters and drop reasons.

import CVRouterShims

/// The fast parse's result for one IPv4 packet: L3 offset (bits 0–15), L4 offset
/// (16–31), the PacketFlags ethernet-input would set (32–47), and bit 63 so that a
/// fast-parsed packet's word is never 0.
@usableFromInline
enum FastParse {
    @inlinable static var present: UInt64 { 1 &<< 63 }

    @inlinable @inline(__always)
    static func word(l3: Int, l4: Int, flags: PacketFlags) -> UInt64 {
        present | UInt64(flags.rawValue) &<< 32 | UInt64(truncatingIfNeeded: l4) &<< 16
            | UInt64(truncatingIfNeeded: l3)
    }
    @inlinable @inline(__always)
    static func l3(_ w: UInt64) -> Int { Int(truncatingIfNeeded: w & 0xFFFF) }
    @inlinable @inline(__always)
    static func l4(_ w: UInt64) -> Int { Int(truncatingIfNeeded: w &>> 16 & 0xFFFF) }
    @inlinable @inline(__always)
    static func flags(_ w: UInt64) -> PacketFlags { PacketFlags(rawValue: UInt16(truncatingIfNeeded: w &>> 32)) }
}

extension Pipeline {
    /// Where a packet the general classify took stands in its family's arrays, for
    /// the fused flow-lookup (its fast word 0: not fast-parsed).
    @inline(__always)
    mutating func recordGeneralPosition(_ m: UnsafeMutablePointer<PacketMeta>) {
        if m.pointee.flags.contains(.ipv4) {
            // Safe: aux < count4 ≤ Frame.defaultCapacity, the size of fast4.
            fast4[Int(m.pointee.aux)] = 0
            ipPos[ipList.count] = m.pointee.aux
        } else {
            ipPos[ipList.count] = m.pointee.aux | 0x8000_0000
        }
    }

    /// The common shapes, parsed straight through; true when the packet is recorded
    /// (key, hash, fast word, counters). False leaves everything untouched for classify,
    /// which then decides (and counts) exactly as it would have alone.
    @inline(__always)
    mutating func fastClassify(_ idx: UInt32, _ view: ForwardingView) -> Bool {
        let m = pool.meta(idx)
        let rx = m.pointee.rxPort
        // Flags set by the port layer (a partial checksum, a VLAN) and a virtio-net header's
        // offload state (a superframe, a checksum left to the offload) need the general path.
        guard m.pointee.flags.rawValue == 0, !m.pointee.offload.isActive, Int(rx) < view.portCount else {
            return false
        }
        let port = view.ports + Int(rx)
        let pf = port.pointee.flags
        guard pf.contains(.up), port.pointee.vlan == 0 else { return false }
        let p = pool.buffer(idx)
        let off = Int(m.pointee.offset)
        let length = Int(m.pointee.length)
        var end = off &+ length
        guard length >= 14 &+ 20, p.be16(off &+ 12) == EtherType.ipv4 else { return false }
        let l3: Int
        var vrf: UInt16
        var flags: PacketFlags
        var forced = ForwardingView.noNexthop  // the nexthop an MPLS label names
        switch port.pointee.kind {
        case .pod:
            l3 = off &+ 14
            guard let f = fastIPv4(p, l3, &end) else { return false }
            flags = f
            let src = p.be32(l3 &+ 12)
            let dst = p.be32(l3 &+ 16)
            if dst >> 28 == 0xE || dst == 0xFFFF_FFFF { return false }
            if pf.contains(.antiSpoofing) && !(pf.contains(.hasIPv4) && src == port.pointee.ipv4) { return false }
            vrf = port.pointee.vrf
        case .fabric:
            // A tunnel packet to the node's underlay address: outer IPv4 (unfragmented) / UDP,
            // then VXLAN (4789) or one MPLS label (6635, or Contrail's 51234).
            let outer = off &+ 14
            guard fastIPv4(p, outer, &end) != nil,
                p.u8(outer &+ 9) == IPProtocol.udp, p.be32(outer &+ 16) == port.pointee.ipv4
            else { return false }
            let dport = p.be16(outer &+ 22)
            let tunnel = outer &+ 28
            if dport == UDPPort.vxlan {
                guard end &- tunnel >= 8 &+ 14 &+ 20, p.u8(tunnel) & 0x08 != 0 else { return false }
                vrf = view.vnis.lookup(p.be32(tunnel &+ 4) >> 8)
                guard vrf != VNITable.miss, view.vrf(vrf) != nil, p.be16(tunnel &+ 20) == EtherType.ipv4 else {
                    return false
                }
                l3 = tunnel &+ 22
                guard let f = fastIPv4(p, l3, &end) else { return false }
                flags = f
                flags.insert(.decapsulated)
            } else if dport == UDPPort.mplsOverUDP || dport == UDPPort.contrailMPLSOverUDP {
                // Bottom of stack, TTL left, a label that names a nexthop, then IPv4: the
                // label decapsulates straight to its nexthop, in the nexthop's VRF.
                guard end &- tunnel >= 4 &+ 20 else { return false }
                let entry = p.be32(tunnel)
                guard entry & 0x100 != 0, entry & 0xFF != 0, p.u8(tunnel &+ 4) >> 4 == 4 else { return false }
                let target = view.labelTarget(entry >> 12)
                guard target != ForwardingView.noNexthop, let nh = view.nexthop(target) else { return false }
                l3 = tunnel &+ 4
                guard let f = fastIPv4(p, l3, &end) else { return false }
                vrf = nh.pointee.vrf
                flags = f
                flags.insert([.decapsulated, .forcedNexthop])
                forced = target
            } else {
                return false
            }
            let dst = p.be32(l3 &+ 16)
            if dst >> 28 == 0xE || dst == 0xFFFF_FFFF { return false }
            if forced == ForwardingView.noNexthop {
                counters.count(.vxlanDecap)
            } else {
                // What route-lookup reads for a miss (materialize leaves both alone).
                m.pointee.nexthop = forced
                m.pointee.label = 0
                counters.count(.mplsDecap)
            }
        default:
            return false
        }
        // Recorded: from here on the packet is the fast path's.
        let pc = counters.ports + Int(rx)  // Safe: port ids are < Counters.maxPorts (TableBuilder).
        pc.pointee.rxPackets &+= 1
        pc.pointee.rxBytes &+= UInt64(length)
        if end &- off != length { m.pointee.length = UInt16(truncatingIfNeeded: end &- off) }
        let l4 = l3 &+ 20
        let ports = p.be32(l4)
        let key = IPv4FlowKey(
            vrf: vrf,
            proto: p.u8(l3 &+ 9),
            src: p.be32(l3 &+ 12),
            dst: p.be32(l3 &+ 16),
            sport: UInt16(truncatingIfNeeded: ports >> 16),
            dport: UInt16(truncatingIfNeeded: ports)
        )
        let pos = count4
        // Safe: pos < count4 + 1 ≤ packets in the frame ≤ Frame.defaultCapacity, the arrays' size.
        keys4[pos] = key
        hashes4[pos] = flows4.hash(key)
        fast4[pos] = FastParse.word(l3: l3, l4: l4, flags: flags)
        ipPos[ipList.count] = UInt32(truncatingIfNeeded: pos)
        count4 = pos &+ 1
        return true
    }

    /// An IPv4 header without options at `l3` carrying a whole (unfragmented, or first
    /// fragment for the outer header's caller to refuse) TCP or UDP packet whose header is
    /// all there: the flags ethernet-input's parseIPv4 would set, with `end` trimmed to the
    /// IP length. Nil for anything else (options, fragments, other protocols, bad sums).
    @inline(__always)
    func fastIPv4(_ p: UnsafeMutableRawPointer, _ l3: Int, _ end: inout Int) -> PacketFlags? {
        guard end &- l3 >= 20, p.u8(l3) == 0x45 else { return nil }
        let total = Int(p.be16(l3 &+ 2))
        guard total >= 20, l3 &+ total <= end, IPv4Header(p + l3).isChecksumValid else { return nil }
        let frag = p.be16(l3 &+ 6)
        guard frag & 0x3FFF == 0 else { return nil }
        var flags: PacketFlags = frag & 0x4000 != 0 ? [.ipv4, .dfSet] : .ipv4
        let l4 = l3 &+ 20
        switch p.u8(l3 &+ 9) {
        case IPProtocol.tcp:
            guard total >= 40 else { return nil }
            let tcpFlags = p.u8(l4 &+ 13)
            if tcpFlags & 0x02 != 0 { flags.insert(.tcpSyn) }
            if tcpFlags & 0x05 != 0 {
                flags.insert(.tcpClosing)
                if tcpFlags & 0x04 != 0 { flags.insert(.tcpReset) }
            }
        case IPProtocol.udp:
            guard total >= 28 else { return nil }
        default:
            return nil
        }
        end = l3 &+ total
        return flags
    }

    /// flow-lookup and, for hits, rewrite, in one loop over the frame's IP packets.
    @inline(__always)
    mutating func flowLookupFused(_ view: ForwardingView, now: UInt32, output: inout Frame) {
        let n = ipList.count
        guard n > 0 else { return }
        if count4 > 0 { flows4.lookup(keys: keys4, hashes: hashes4, count: count4, slots: slots4) }
        if count6 > 0 { flows6.lookup(keys: keys6, hashes: hashes6, count: count6, slots: slots6) }
        let pool = self.pool
        var hits: UInt64 = 0
        var stale: UInt64 = 0
        var fast: UInt64 = 0
        for i in 0..<n {
            if i &+ 2 < n {
                // The line the outer headers go into, ahead (as rewrite does).
                let ahead = ipList[i &+ 2]
                vrt_prefetch_write(pool.buffer(ahead) + (Int(pool.metas[Int(ahead)].offset) &- 50))
            }
            let idx = ipList[i]
            let m = pool.meta(idx)
            let where_ = ipPos[i]
            let v4 = where_ & 0x8000_0000 == 0
            let pos = Int(where_ & 0x7FFF_FFFF)
            let slot = v4 ? slots4[pos] : slots6[pos]
            let word = v4 ? fast4[pos] : 0
            if slot != PacketMeta.noFlow {
                let bytes = Int(m.pointee.length)
                let h = v4 ? flows4.hit(slot, bytes: bytes, now: now) : flows6.hit(slot, bytes: bytes, now: now)
                let vrf = word != 0 ? keys4[pos].vrf : m.pointee.vrf
                // Safe: the VRF came from a validated port, VNI or label of this snapshot.
                if h.generation == view.vrfs[Int(vrf)].generation {
                    hits &+= 1
                    if word != 0 {
                        if fusedForward(idx, m, word, pos, h, view, output: &output) {
                            fast &+= 1
                            continue
                        }
                        materialize(m, word, pos)
                    }
                    m.pointee.nexthop = h.nexthop
                    m.pointee.label = h.label
                    m.pointee.flow = slot
                    if m.pointee.flags.contains(.tcpClosing) { markClosing(slot, v4, m, view) }
                    rewriteOne(idx, view, output: &output)
                    continue
                }
                if word != 0 { materialize(m, word, pos) }
                m.pointee.flow = slot
                stale &+= 1
            } else {
                if word != 0 { materialize(m, word, pos) }
                m.pointee.flow = PacketMeta.noFlow
            }
            missList.append(idx)
        }
        ipList.removeAll()
        counters.count(.flowHit, hits)
        counters.count(.flowStale, stale)
        counters.count(.flowMiss, UInt64(n) &- hits &- stale)
        counters.count(.fastPath, fast)
    }

    /// rewrite for the frame's resolved misses, fused: a fast-parsed packet whose new flow
    /// is a plain forward goes out through fusedForward, as the flow's next packets will
    /// (the cold pass of new flows saves the general rewrite's re-reads of PacketMeta);
    /// every other packet through rewriteOne, in the same frame order.
    @inline(__always)
    mutating func rewriteResolvedFused(_ view: ForwardingView, output: inout Frame) {
        let pool = self.pool
        let n = ipList.count
        var fast: UInt64 = 0
        for i in 0..<n {
            if i &+ 2 < n {
                let ahead = ipList[i &+ 2]
                vrt_prefetch_write(pool.buffer(ahead) + (Int(pool.metas[Int(ahead)].l3) &- 64))
            }
            let idx = ipList[i]
            let m = pool.meta(idx)
            if m.pointee.flags.contains(.ipv4) {
                // Safe: aux is the packet's position in the IPv4 arrays (< Frame.defaultCapacity).
                let pos = Int(m.pointee.aux)
                let word = fast4[pos]
                if word != 0 {
                    let action = FlowHit(nexthop: m.pointee.nexthop, label: m.pointee.label, generation: 0)
                    if fusedForward(idx, m, word, pos, action, view, output: &output) {
                        fast &+= 1
                        continue
                    }
                }
            }
            rewriteOne(idx, view, output: &output)
        }
        ipList.removeAll()
        counters.count(.fastPath, fast)
    }

    /// A fast-parsed hit whose action is a plain forward: TTL, then the tunnel or L2
    /// header, emitted. False (nothing written) sends it to the general rewrite.
    @inline(__always)
    mutating func fusedForward(
        _ idx: UInt32,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ word: UInt64,
        _ pos: Int,
        _ h: FlowHit,
        _ view: ForwardingView,
        output: inout Frame
    ) -> Bool {
        guard let nh = view.nexthop(h.nexthop) else { return false }
        let kind = nh.pointee.kind
        guard kind == .tunnelVXLAN || kind == .tunnelMPLSoUDP || kind == .encap,
            nh.pointee.flags & Nexthop.unresolved == 0,
            h.label & FlowTranslation.translated == 0
        else { return false }
        // TCP toward a tap that takes superframes is coalesced at the frame's end (GRO),
        // which reads the packet's PacketMeta: the general path fills it.
        if kind == .encap && keys4[pos].proto == IPProtocol.tcp && takesOffloads(view, nh.pointee.port) {
            return false
        }
        let flags = FastParse.flags(word)
        // A SYN may need its MSS clamped, a FIN or RST marks the flow: the general path's.
        guard !flags.contains(.tcpSyn) && !flags.contains(.tcpClosing) else { return false }
        let p = pool.buffer(idx)
        let l3 = FastParse.l3(word)
        let ipLength = Int(p.be16(l3 &+ 2))
        guard ipLength <= Int(nh.pointee.innerMTU) else { return false }
        if flags.contains(.decapsulated) {
            guard p.u8(l3 &+ 8) != 0 else { return false }
        } else {
            let ttlProto = p.be16(l3 &+ 8)
            guard ttlProto > 0x1FF else { return false }
            let new = ttlProto &- 0x100
            p.setBE16(l3 &+ 8, new)
            p.setBE16(l3 &+ 10, Checksum.update(p.be16(l3 &+ 10), old: ttlProto, new: new))
        }
        writeHeaders(idx, m, p, l3, ipLength, true, nh, h.label, hash: hashes4[pos], view, output: &output)
        return true
    }

    /// Fills a fast-parsed packet's PacketMeta as the general ethernet-input would have,
    /// for the general nodes it goes on to.
    @inline(__always)
    func materialize(_ m: UnsafeMutablePointer<PacketMeta>, _ word: UInt64, _ pos: Int) {
        let key = keys4[pos]
        m.pointee.flags = FastParse.flags(word)
        m.pointee.l3 = UInt16(truncatingIfNeeded: FastParse.l3(word))
        m.pointee.l4 = UInt16(truncatingIfNeeded: FastParse.l4(word))
        m.pointee.proto = key.proto
        m.pointee.vrf = key.vrf
        m.pointee.hash = hashes4[pos]
        m.pointee.aux = UInt32(truncatingIfNeeded: pos)
    }
}
