// Superframes and partial checksums in the pipeline. A pod's tap with offloads hands us
// TCP/UDP superframes (one flow lookup, one TTL decrement, one rewrite for up to 64 KB)
// and packets whose L4 checksum is only the pseudo-header sum. Where they go decides what
// becomes of them:
//   - a tap that takes offloads: whole, the offload state going with it (the tap write's
//     virtio-net header), when each segment would fit the port's MTU;
//   - a tunnel: segmented and encapsulated in one pass — UDP GSO trains when the fabric
//     port sends them (one buffer, one send for up to 64 datagrams), one buffer per
//     datagram otherwise;
//   - anything else (a port without offloads, segments too big for the path): cut into
//     the segments the pod's kernel would have sent without offloads, each then forwarded
//     like any packet (fragmentation, ICMP frag-needed, MSS clamping exactly as before).
// A partial checksum is completed in software unless the packet goes whole to a port
// that takes it.
//
// Toward taps that take superframes, TCP segments that arrived apart (from the fabric, or
// from a pod without offloads) are coalesced at the end of the frame (TCPCoalescer).

extension Pipeline {
    /// Whether port `id` takes superframes and partial checksums.
    @inline(__always)
    func takesOffloads(_ view: ForwardingView, _ id: UInt16) -> Bool {
        Int(id) < view.portCount && view.ports[Int(id)].flags.contains(.offloads)
    }

    /// ethernet-input's check of a pod packet's offload state against its headers: a
    /// partial checksum the rewrite cannot describe again (not the TCP/UDP checksum of the
    /// packet's L4 header) is completed now; a superframe whose kind does not match the
    /// packet is dropped.
    @inline(never)
    mutating func checkOffload(
        _ idx: UInt32,
        _ p: UnsafeMutableRawPointer,
        _ m: UnsafeMutablePointer<PacketMeta>
    ) -> DropReason? {
        let o = m.pointee.offload
        if o.flags & PacketOffload.needsChecksum != 0 {
            let l3 = Int(m.pointee.l3)
            let end = m.pointee.flags.contains(.ipv4) ? l3 &+ Int(p.be16(l3 &+ 2)) : l3 &+ 40 &+ Int(p.be16(l3 &+ 4))
            let start = Int(o.checksumStart)
            let proto = m.pointee.proto
            let expected =
                (proto == IPProtocol.tcp && o.checksumOffset == 16)
                || (proto == IPProtocol.udp && o.checksumOffset == 6)
            if start != Int(m.pointee.l4) || !expected || m.pointee.flags.contains(.fragment) {
                guard o.gsoType == 0, start > l3, start &+ Int(o.checksumOffset) &+ 2 <= end else {
                    return .offloadInvalid
                }
                Checksum.complete(
                    p,
                    start: start,
                    offset: Int(o.checksumOffset),
                    end: end,
                    udp: proto == IPProtocol.udp
                )
                m.pointee.offload = PacketOffload()
                return nil
            }
        }
        if o.gsoType != 0 && Superframe.parse(pool: pool, idx) == nil { return .offloadInvalid }
        return nil
    }

    /// The offload state of a tunnel packet from the fabric, after decapsulation: a partial
    /// checksum in the outer headers (a peer's short train the kernel did not segment)
    /// matters to no one now; one in the inner packet, or an inner superframe (the
    /// kernel's VXLAN, whole through a veth), is checked as a pod's would be.
    @inline(never)
    mutating func decapsulatedOffload(
        _ idx: UInt32,
        _ p: UnsafeMutableRawPointer,
        _ m: UnsafeMutablePointer<PacketMeta>
    ) -> DropReason? {
        let o = m.pointee.offload
        if o.flags & PacketOffload.needsChecksum != 0 && Int(o.checksumStart) < Int(m.pointee.l3) {
            guard o.gsoType == 0 else { return .offloadInvalid }
            m.pointee.offload = PacketOffload()
            return nil
        }
        return checkOffload(idx, p, m)
    }

    /// `forward` for a superframe or a packet with a partial checksum, after the hop.
    @inline(never)
    mutating func forwardOffloaded(
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
        let o = m.pointee.offload
        let mtu = Int(nh.pointee.innerMTU)
        let kind = nh.pointee.kind
        // A translated flow's packets are rewritten incrementally (forwardSized), which
        // needs complete checksums: superframes are cut, partial checksums completed.
        let translated = label & FlowTranslation.translated != 0
        if o.gsoType != 0 {
            guard let sf = Superframe.parse(pool: pool, idx) else {
                drop(idx, .offloadInvalid)
                return
            }
            if sf.segmentIPLength <= mtu && !translated {
                if kind == .encap && takesOffloads(view, nh.pointee.port) {
                    counters.count(.superframesWhole)
                    writeHeaders(
                        idx,
                        m,
                        p,
                        l3,
                        sf.payload &+ sf.payloadLength &- l3,
                        v4,
                        nh,
                        label,
                        hash: m.pointee.hash,
                        view,
                        output: &output
                    )
                    return
                }
                if kind == .tunnelVXLAN || kind == .tunnelMPLSoUDP {
                    encapsulateSuperframe(idx, m, sf, nh, label, view, output: &output)
                    return
                }
            }
            // As the pod's kernel would have sent it without offloads.
            segments.removeAll()
            if let r = Segmentation.segment(pool: pool, idx, sf, into: &segments) {
                drop(idx, r)
                return
            }
            counters.count(.superframesSegmented)
            counters.count(.gsoSegments, UInt64(segments.count))
            for i in 0..<segments.count {
                let s = segments[i]
                let sm = pool.meta(s)
                forwardSized(s, sm, pool.buffer(s), Int(sm.pointee.l3), v4, nh, label, view, output: &output)
            }
            segments.removeAll()
            return
        }
        // A partial checksum: kept for a port that takes it, completed for anything else.
        let ipLength = v4 ? Int(p.be16(l3 &+ 2)) : 40 &+ Int(p.be16(l3 &+ 4))
        if kind == .encap && ipLength <= mtu && !translated && takesOffloads(view, nh.pointee.port) {
            writeHeaders(idx, m, p, l3, ipLength, v4, nh, label, hash: m.pointee.hash, view, output: &output)
            return
        }
        Checksum.complete(
            p,
            start: Int(o.checksumStart),
            offset: Int(o.checksumOffset),
            end: l3 &+ ipLength,
            udp: m.pointee.proto == IPProtocol.udp
        )
        m.pointee.offload = PacketOffload()
        forwardSized(idx, m, p, l3, v4, nh, label, view, output: &output)
    }

    /// Segments a superframe into the tunnel toward `nh`: trains when its fabric port sends
    /// them, one buffer per datagram otherwise. The fabric port counts the datagrams sent,
    /// whether trains carry them or not (the wire's packets, what the peer counts received;
    /// as GRO's segments count sent one each before they are merged), so that a node's
    /// received + made = sent + punted + dropped holds on its port counters.
    @inline(never)
    mutating func encapsulateSuperframe(
        _ idx: UInt32,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ sf: Superframe,
        _ nh: UnsafePointer<Nexthop>,
        _ label: UInt32,
        _ view: ForwardingView,
        output: inout Frame
    ) {
        // Safe: nh points into view.nexthops, and templates has one slot per nexthop.
        let template = view.templates + (nh - view.nexthops)
        var tunnel = SegmentTunnel(
            template: template,
            labelOrVNI: label,
            sourcePort: TunnelTemplate.sourcePort(hash: m.pointee.hash)
        )
        let vxlan = nh.pointee.kind == .tunnelVXLAN
        if vxlan {
            if nh.pointee.flags & Nexthop.innerEthernetInTemplate != 0 {
                tunnel.templateHasInnerEthernet = true
            } else {
                tunnel.writesInnerEthernet = true
                tunnel.innerDestinationMAC = nh.pointee.dstMAC
                tunnel.innerSourceMAC = nh.pointee.srcMAC
            }
        }
        let port = nh.pointee.port
        let trains = takesOffloads(view, port)
        let first = output.count
        let failure =
            trains
            ? Segmentation.segmentIntoTrains(pool: pool, idx, sf, tunnel, identification: &outerID, into: &output)
            : Segmentation.segmentAndEncapsulate(pool: pool, idx, sf, tunnel, identification: &outerID, into: &output)
        if let failure {
            drop(idx, failure)
            return
        }
        let n = sf.segments
        counters.count(.superframesEncapsulated)
        counters.count(vxlan ? .vxlanEncap : .mplsEncap, UInt64(n))
        counters.count(.gsoSegments, UInt64(n))
        if trains { counters.count(.gsoTrains, UInt64(output.count &- first)) }
        let pc = Int(port) < Counters.maxPorts ? counters.ports + Int(port) : nil
        pc?.pointee.txPackets &+= UInt64(n)
        for i in first..<output.count {
            let om = pool.meta(output[i])
            om.pointee.txPort = port
            pc?.pointee.txBytes &+= UInt64(om.pointee.length)
        }
    }

    /// GRO over the output frame, when this frame sent TCP toward a tap that takes
    /// superframes.
    @inline(never)
    mutating func coalesceOutput(_ view: ForwardingView, output: inout Frame) {
        let merged = coalescer.coalesce(pool: pool, &output, ports: view.ports, portCount: view.portCount)
        if merged > 0 { counters.count(.groMerged, UInt64(merged)) }
    }
}
