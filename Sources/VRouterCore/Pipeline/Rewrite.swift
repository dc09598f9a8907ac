// rewrite: applies each packet's resolved nexthop. ECMP composites pick a member by the
// flow hash (so a flow stays on one path); routed packets from pods get their TTL/hop
// limit decremented (RFC 1624 incremental checksum); packets too big for the egress are
// fragmented (IPv4, DF clear: the inner packet, never the outer one) or answered with
// ICMP fragmentation-needed / packet-too-big; SYNs entering a tunnel get their MSS
// clamped; then the L2 rewrite toward a local pod, or the VXLAN / MPLS-over-UDP
// encapsulation toward a remote node, is written into the headroom in front of the IP
// header, and the packet is emitted to its output port.

import CVRouterShims

extension Pipeline {
    @inline(__always)
    mutating func rewrite(generated useGenerated: Bool, _ view: ForwardingView, output: inout Frame) {
        let pool = self.pool
        // A copy of the list's pointer and count: nodes called below may append to the
        // *other* list (an ICMP error made here joins `generated`), never to this one.
        let list = useGenerated ? generated : ipList
        let n = list.count
        for i in 0..<n {
            if i &+ 2 < n {
                let ahead = list[i &+ 2]
                vrt_prefetch_write(pool.buffer(ahead) + (Int(pool.metas[Int(ahead)].l3) &- 64))
            }
            rewriteOne(list[i], view, output: &output)
        }
        if useGenerated { generated.removeAll() } else { ipList.removeAll() }
    }

    /// rewrite for one packet whose meta.nexthop and label are resolved: emitted, dropped,
    /// or turned into an ICMP error on `generated`.
    @inline(__always)
    mutating func rewriteOne(_ idx: UInt32, _ view: ForwardingView, output: inout Frame) {
        let m = pool.meta(idx)
        guard var nh = view.nexthop(m.pointee.nexthop) else {
            drop(idx, .invalidNexthop)
            return
        }
        var label = m.pointee.label
        if nh.pointee.kind == .composite {
            let count = nh.pointee.componentCount
            // Multiply-shift maps the hash onto 0..<count without a division.
            let k = Int((UInt64(m.pointee.hash) &* UInt64(count)) >> 32)
            let member = view.components[Int(nh.pointee.componentStart) &+ k]
            guard let mnh = view.nexthop(member.nexthop), mnh.pointee.kind != .composite else {
                drop(idx, .invalidNexthop)
                return
            }
            nh = mnh
            label = member.label
        }
        switch nh.pointee.kind {
        case .encap, .tunnelVXLAN, .tunnelMPLSoUDP, .underlay:
            if nh.pointee.flags & Nexthop.unresolved != 0 {
                drop(idx, .unresolvedNeighbour)
                return
            }
            forward(idx, m, nh, label, view, output: &output)
        case .discard:
            drop(idx, .discard)
        case .receive:
            receive(idx, view)
        case .composite, .invalid, .vrfTranslate, .sourceNAT:
            drop(idx, .invalidNexthop)
        }
    }

    @inline(__always)
    mutating func forward(
        _ idx: UInt32,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ nh: UnsafePointer<Nexthop>,
        _ label: UInt32,
        _ view: ForwardingView,
        output: inout Frame
    ) {
        let p = pool.buffer(idx)
        let l3 = Int(m.pointee.l3)
        let flags = m.pointee.flags
        let v4 = flags.contains(.ipv4)
        if !flags.contains(.generated) {
            if !flags.contains(.decapsulated) {
                // This node routes the packet: one hop.
                if v4 {
                    let word = p.be16(l3 &+ 8)  // TTL | protocol
                    guard word > 0x1FF else {
                        icmpError(idx, .timeExceeded, view: view, now: lastNow)
                        return
                    }
                    let new = word &- 0x100
                    p.setBE16(l3 &+ 8, new)
                    p.setBE16(l3 &+ 10, Checksum.update(p.be16(l3 &+ 10), old: word, new: new))
                } else {
                    let hop = p.u8(l3 &+ 7)
                    guard hop > 1 else {
                        icmpError(idx, .timeExceeded, view: view, now: lastNow)
                        return
                    }
                    p.setU8(l3 &+ 7, hop &- 1)
                }
            } else if (v4 ? p.u8(l3 &+ 8) : p.u8(l3 &+ 7)) == 0 {
                drop(idx, .ttlExpired)
                return
            }
        }
        if m.pointee.offload.isActive {
            forwardOffloaded(idx, m, p, l3, v4, nh, label, view, output: &output)
            return
        }
        forwardSized(idx, m, p, l3, v4, nh, label, view, output: &output)
    }

    /// After the hop (TTL): the MTU (fragments or ICMP), MSS clamping, then the headers.
    @inline(__always)
    mutating func forwardSized(
        _ idx: UInt32,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ p: UnsafeMutableRawPointer,
        _ l3: Int,
        _ v4: Bool,
        _ nh: UnsafePointer<Nexthop>,
        _ label: UInt32,
        _ view: ForwardingView,
        output: inout Frame
    ) {
        let flags = m.pointee.flags
        let ipLength = v4 ? Int(p.be16(l3 &+ 2)) : 40 &+ Int(p.be16(l3 &+ 4))
        let mtu = Int(nh.pointee.innerMTU)
        let tooBig = ipLength > mtu
        if tooBig && !(v4 && !flags.contains(.dfSet)) {
            // The error quotes the packet as its sender sent it: before any translation.
            icmpError(idx, .tooBig(mtu: mtu), view: view, now: lastNow)
            return
        }
        // Translated flows (only IPv4 has them): the one test every other packet pays.
        if label & FlowTranslation.translated != 0 { translate(m, p, l3, nh, label) }
        if tooBig {
            fragmentAndForward(idx, m, nh, label, view, output: &output)
            return
        }
        if flags.contains(.tcpSyn) && config.clampMSS && nh.pointee.kind != .encap {
            if clampMSS(p, m, mss: mtu &- (v4 ? 40 : 60)) { counters.count(.mssClamped) }
        }
        writeHeaders(idx, m, p, l3, ipLength, v4, nh, label, hash: m.pointee.hash, view, output: &output)
    }

    /// Writes the L2 rewrite or the tunnel encapsulation in front of the IP header at `l3`
    /// and emits the packet.
    @inline(__always)
    mutating func writeHeaders(
        _ idx: UInt32,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ p: UnsafeMutableRawPointer,
        _ l3: Int,
        _ ipLength: Int,
        _ v4: Bool,
        _ nh: UnsafePointer<Nexthop>,
        _ label: UInt32,
        hash: UInt32,
        _ view: ForwardingView,
        output: inout Frame
    ) {
        let etherType = v4 ? EtherType.ipv4 : EtherType.ipv6
        var start: Int
        switch nh.pointee.kind {
        case .encap:
            start = l3 &- 14
            p.setBE48(start, nh.pointee.dstMAC)
            p.setBE48(start &+ 6, nh.pointee.srcMAC)
            p.setBE16(start &+ 12, etherType)
            counters.count(.localDelivery)
            // TCP toward a tap that takes superframes: GRO runs over the output frame.
            if m.pointee.proto == IPProtocol.tcp && takesOffloads(view, nh.pointee.port) { groPending = true }
        case .tunnelVXLAN:
            // Inner Ethernet toward the remote router, then outer Eth/IPv4/UDP/VXLAN.
            if nh.pointee.flags & Nexthop.innerEthernetInTemplate != 0 {
                start = encapsulate(p, l3, ipLength, hash, nh, label, view)
                if !v4 { p.setBE16(l3 &- 2, EtherType.ipv6) }
            } else {
                let inner = l3 &- 14
                p.setBE48(inner, nh.pointee.dstMAC)
                p.setBE48(inner &+ 6, nh.pointee.srcMAC)
                p.setBE16(inner &+ 12, etherType)
                start = encapsulate(p, inner, 14 &+ ipLength, hash, nh, label, view)
            }
            counters.count(.vxlanEncap)
        case .tunnelMPLSoUDP:
            start = encapsulate(p, l3, ipLength, hash, nh, label, view)
            counters.count(.mplsEncap)
        case .underlay:
            // Untunneled onto the fabric, 802.1Q-tagged when the fabric port is.
            if nh.pointee.vlan == 0 {
                start = l3 &- 14
            } else {
                start = l3 &- 18
                p.setBE16(start &+ 12, EtherType.vlan)
                p.setBE16(start &+ 14, nh.pointee.vlan)
            }
            p.setBE48(start, nh.pointee.dstMAC)
            p.setBE48(start &+ 6, nh.pointee.srcMAC)
            p.setBE16(l3 &- 2, etherType)
            counters.count(.fabricForward)
        default:
            drop(idx, .invalidNexthop)
            return
        }
        m.pointee.offset = UInt16(truncatingIfNeeded: start)
        m.pointee.length = UInt16(truncatingIfNeeded: l3 &+ ipLength &- start)
        m.pointee.txPort = nh.pointee.port
        emit(idx, &output)
    }

    /// Prepends the tunnel nexthop's outer headers (its precomputed template: outer
    /// Ethernet, IPv4 with DF clear and TTL 64, UDP with checksum 0 and source port 49152 +
    /// 14 bits of the inner flow hash, then the VNI or label) to the `length` bytes at
    /// `inner`; returns the new frame start. The outer identification is a per-worker
    /// counter, so outer packets are distinct if the underlay ever fragments them.
    @inline(__always)
    mutating func encapsulate(
        _ p: UnsafeMutableRawPointer,
        _ inner: Int,
        _ length: Int,
        _ hash: UInt32,
        _ nh: UnsafePointer<Nexthop>,
        _ label: UInt32,
        _ view: ForwardingView
    ) -> Int {
        // Safe: nh points into view.nexthops (view.nexthop(_:) returned it), so the
        // difference is its id, and templates has one slot per nexthop id.
        let template = view.templates + (nh - view.nexthops)
        outerID &+= 1
        let start = template.pointee.apply(
            to: p + inner,
            innerLength: length,
            sourcePort: TunnelTemplate.sourcePort(hash: hash),
            labelOrVNI: label,
            identification: outerID
        )
        return start - p
    }

    /// Appends a finished packet to the output frame (counting it on its port), or drops it
    /// when the frame is full.
    @inline(__always)
    mutating func emit(_ idx: UInt32, _ output: inout Frame) {
        guard output.count < output.capacity else {
            drop(idx, .txQueueFull)
            return
        }
        let m = pool.meta(idx)
        let tx = Int(m.pointee.txPort)
        if tx < Counters.maxPorts {
            counters.ports[tx].txPackets &+= 1
            counters.ports[tx].txBytes &+= UInt64(m.pointee.length)
        }
        output.append(idx)
    }

    /// Hands a packet to the control plane: into the punt frame, counted once.
    @inline(__always)
    mutating func punt(_ idx: UInt32, _ punt: inout Frame) {
        guard punt.count < punt.capacity else {
            drop(idx, .txQueueFull)
            return
        }
        counters.count(.punted)
        punt.append(idx)
    }
}
