// Superframes and partial checksums through the pipeline: whole to a tap that takes them
// (one flow lookup), segmented and encapsulated toward a tunnel (trains or one buffer per
// datagram, as the fabric port says), cut into plain segments where neither applies, with
// the MTU, DF and ICMP behaviour of the segments the pod would otherwise have sent; and
// GRO toward taps that take superframes.

import Testing

@testable import VRouterCore

@Suite struct PipelineOffloadTests {
    typealias S = SampleTopology

    /// The sample node with offloads on blue-b's tap and, when asked, on the fabric.
    static func harness(fabricOffloads: Bool, blueBOffloads: Bool = true) -> PipelineHarness {
        var t = SampleTopology()
        try! t.builder.setPort(
            S.blueB,
            PortConfig(
                kind: .pod,
                name: "blue-b",
                vrf: S.blue,
                mac: S.blueBMAC,
                ipv4: S.blueBIP,
                ipv6: S.blueBIPv6,
                offloads: blueBOffloads
            )
        )
        try! t.builder.setPort(
            S.fabricPort,
            PortConfig(kind: .fabric, name: "fabric0", mac: S.nodeMAC, ipv4: S.underlay, offloads: fabricOffloads)
        )
        return PipelineHarness(topology: t, poolSize: 4096, bigBuffers: 16)
    }

    /// blue-a's TCP superframe toward `dst`, as its tap hands it over.
    static func spec(to dst: IPv4Address, payload: Int = 64_000, df: Bool = true) -> TCPSpec {
        var s = TCPSpec()
        s.src4 = hex("c0 00 02 0a")
        s.dst4 = [
            UInt8(dst.value >> 24), UInt8(dst.value >> 16 & 0xFF), UInt8(dst.value >> 8 & 0xFF),
            UInt8(dst.value & 0xFF),
        ]
        s.payload = pattern(payload)
        s.ipFlags = df ? 0x4000 : 0
        s.flags = 0x10
        return s
    }

    static func fromBlueA(_ h: PipelineHarness, _ bytes: [UInt8], gso: UInt8, mss: Int, partial: Bool = true) -> UInt32
    {
        let idx = h.pool.superframe(bytes, gsoType: gso, gsoSize: mss, partial: partial)
        h.pool.meta(idx).pointee.rxPort = S.blueA
        return idx
    }

    @Test func aSuperframeGoesWholeToATapThatTakesIt() {
        let h = Self.harness(fabricOffloads: true)
        let spec = Self.spec(to: S.blueBIP)
        let out = h.run(loaded: [Self.fromBlueA(h, spec.frame(), gso: VirtioNet.gsoTCPv4, mss: 1448)])
        #expect(out.count == 1)
        guard let o = out.first else { return }
        // One lookup, one TTL decrement, the L2 rewrite; the offload state goes with it.
        var want = spec
        want.ttl = 63
        want.dstMAC = hex("02 00 00 01 00 0b")
        want.srcMAC = T.vrouterMAC
        expectSameBytes(h.pool.array(o), want.frame(partial: true), "superframe to blue-b")
        let m = h.pool.meta(o)
        #expect(m.pointee.txPort == S.blueB)
        #expect(m.pointee.offload.gsoType == VirtioNet.gsoTCPv4 && m.pointee.offload.gsoSize == 1448)
        #expect(Int(m.pointee.offload.checksumStart) == Int(m.pointee.l4))
        #expect(h.events(.flowMiss) + h.events(.flowHit) == 1)
        #expect(h.events(.superframesWhole) == 1)
        h.pool.free(o)
    }

    @Test func aTapWithoutOffloadsGetsTheSegmentsThePodWouldHaveSent() {
        let h = Self.harness(fabricOffloads: true, blueBOffloads: false)
        let spec = Self.spec(to: S.blueBIP)
        let out = h.run(loaded: [Self.fromBlueA(h, spec.frame(), gso: VirtioNet.gsoTCPv4, mss: 1448)])
        var want = spec
        want.ttl = 63
        want.dstMAC = hex("02 00 00 01 00 0b")
        want.srcMAC = T.vrouterMAC
        let segs = OffloadSegmentationTests.expected(want)
        #expect(out.count == segs.count)
        for (k, idx) in out.enumerated() where k < segs.count {
            expectSameBytes(h.pool.array(idx), segs[k], "segment \(k)")
            #expect(h.pool.meta(idx).pointee.offload == PacketOffload())
            h.pool.free(idx)
        }
        #expect(h.events(.superframesSegmented) == 1 && h.events(.gsoSegments) == UInt64(segs.count))
        #expect(h.pool.bigAvailable == 16)
    }

    /// Toward a tunnel: trains when the fabric sends them, one buffer per datagram when not;
    /// cut apart, the trains are exactly the datagrams.
    @Test func aSuperframeIntoTheTunnelIsSegmentedAndEncapsulatedInOnePass() throws {
        let remote = IPv4Address(192, 0, 2, 130)
        let spec = Self.spec(to: remote)
        let plain = Self.harness(fabricOffloads: false)
        let datagrams = plain.run(loaded: [Self.fromBlueA(plain, spec.frame(), gso: VirtioNet.gsoTCPv4, mss: 1398)])
        #expect(datagrams.count == 46)
        let want = datagrams.map { plain.pool.array($0) }
        for d in datagrams {
            #expect(plain.pool.meta(d).pointee.txPort == S.fabricPort)
            plain.pool.free(d)
        }
        #expect(plain.events(.vxlanEncap) == 46 && plain.events(.gsoTrains) == 0)
        // Each datagram: the inner segment of the plain segmentation, behind VNI 1001.
        var inner = spec
        inner.ttl = 63
        let segs = OffloadSegmentationTests.expected(inner, mss: 1398)
        for (k, d) in want.enumerated() where k < segs.count {
            #expect(Array(d[50...]).dropFirst(14) == segs[k].dropFirst(14), "datagram \(k)")
            #expect(be32(d, 46) == 1001 << 8)
            #expect(d.count <= 1514)
        }

        let trains = Self.harness(fabricOffloads: true)
        let out = trains.run(loaded: [Self.fromBlueA(trains, spec.frame(), gso: VirtioNet.gsoTCPv4, mss: 1398)])
        #expect(out.count == 2)
        #expect(trains.events(.gsoTrains) == 2 && trains.events(.vxlanEncap) == 46)
        var cut: [[UInt8]] = []
        for t in out {
            let m = trains.pool.meta(t)
            #expect(m.pointee.txPort == S.fabricPort && m.pointee.offload.gsoType == VirtioNet.gsoUDPL4)
            let bytes = trains.pool.array(t)
            let size = Int(m.pointee.offload.gsoSize)
            let shape = try #require(
                bytes.withUnsafeBytes { UDPTrain.shape($0.baseAddress!, length: $0.count, segmentSize: size) }
            )
            var f = Frame.allocate(capacity: 64)
            defer { f.deallocate() }
            let ok = bytes.withUnsafeBytes { b in
                withUnsafeMutablePointer(to: &f) {
                    UDPTrain.split(
                        b.baseAddress!,
                        length: b.count,
                        l3: shape.l3,
                        l4: shape.l4,
                        count: shape.count,
                        segmentSize: size,
                        pool: trains.pool,
                        into: $0
                    )
                }
            }
            #expect(ok)
            cut += (0..<f.count).map { trains.pool.array(f[$0]) }
            trains.pool.free(&f)
            trains.pool.free(t)
        }
        #expect(cut.count == want.count)
        // The same datagrams, but for the outer identification (each harness counts its own).
        for k in 0..<min(cut.count, want.count) {
            var a = cut[k]
            var b = want[k]
            for i in [18, 19, 24, 25] {
                a[i] = 0
                b[i] = 0
            }
            expectSameBytes(a, b, "datagram \(k)")
        }
    }

    /// received + made - sent - punted - dropped over the port counters and events, as the
    /// metrics give them (tools/soak, docs/operating.md): made = ICMP errors, the fragments
    /// after each packet's first and the segments after each superframe's first.
    static func balance(_ h: PipelineHarness) -> Int64 {
        let c = h.counters
        var rx: UInt64 = 0
        var tx: UInt64 = 0
        for p in 0..<Counters.maxPorts {
            rx &+= c.ports[p].rxPackets
            tx &+= c.ports[p].txPackets
        }
        let made =
            h.events(.icmpErrorSent) &+ h.events(.fragmentsMade) &- h.events(.packetsFragmented)
            &+ h.events(.gsoSegments) &- h.events(.superframesSegmented) &- h.events(.superframesEncapsulated)
        return Int64(bitPattern: rx &+ made &- tx &- h.events(.punted) &- c.totalDrops)
    }

    /// Every offload path keeps the node's packet balance exact on its counters: a superframe
    /// whole or cut, into the tunnel as trains (the fabric counts their datagrams sent: it
    /// counted the trains, and the soak found its node 5,063 packets short) or one buffer per
    /// datagram, segments too big for the tunnel, and GRO toward a tap.
    @Test func thePacketBalanceHoldsOnTheCountersThroughEveryOffloadPath() {
        let remote = IPv4Address(192, 0, 2, 130)
        for offloads in [true, false] {
            let h = Self.harness(fabricOffloads: offloads, blueBOffloads: offloads)
            var out: [UInt32] = []
            for (dst, payload, df, mss) in [
                (S.blueBIP, 64_000, true, 1448), (remote, 64_000, true, 1398), (remote, 10 * 1448, true, 1448),
                (remote, 10 * 1448, false, 1448),
            ] {
                let sf = Self.spec(to: dst, payload: payload, df: df).frame()
                out += h.run(loaded: [Self.fromBlueA(h, sf, gso: VirtioNet.gsoTCPv4, mss: mss)])
            }
            for idx in out { h.pool.free(idx) }
            var spec = TCPSpec()
            spec.src4 = hex("c0 00 02 82")
            spec.dst4 = [192, 0, 2, UInt8(S.blueBIP.value & 0xFF)]
            spec.payload = pattern(20 * 1398)
            spec.flags = 0x10
            let segs = OffloadSegmentationTests.expected(spec, mss: 1398)
            _ = h.run(segs.map { (Packets.vxlan($0, vni: S.vniBlue), S.fabricPort) })
            #expect(h.events(offloads ? .gsoTrains : .superframesSegmented) > 0)
            #expect(h.events(offloads ? .groMerged : .fragmentsMade) > 0 && h.events(.icmpErrorSent) > 0)
            #expect(Self.balance(h) == 0, "offloads \(offloads)")
            #expect(h.pool.bigAvailable == 16)
        }
    }

    /// Segments too big for the tunnel: what the pod would have got for each of them —
    /// ICMP fragmentation-needed with DF, inner fragments without.
    @Test func segmentsTooBigForTheTunnelAreTreatedAsBefore() {
        let remote = IPv4Address(192, 0, 2, 130)
        let h = Self.harness(fabricOffloads: true)
        // 1448-byte segments: IP 1500 > 1450, the tunnel's inner MTU.
        let df = h.run(loaded: [
            Self.fromBlueA(h, Self.spec(to: remote, payload: 10 * 1448).frame(), gso: VirtioNet.gsoTCPv4, mss: 1448)
        ])
        #expect(h.drops(.mtuExceeded) == 10)
        #expect(df.count == 10)
        for idx in df {
            let m = h.pool.meta(idx)
            #expect(m.pointee.txPort == S.blueA)  // the ICMP errors, back to the pod
            let b = h.pool.array(idx)
            #expect(b[23] == 1 && b[34] == 3 && b[35] == 4 && be16(b, 40) == 1450)
            h.pool.free(idx)
        }
        let noDF = h.run(loaded: [
            Self.fromBlueA(
                h,
                Self.spec(to: remote, payload: 10 * 1448, df: false).frame(),
                gso: VirtioNet.gsoTCPv4,
                mss: 1448
            )
        ])
        #expect(noDF.count == 20)  // each segment in two inner fragments
        #expect(h.events(.fragmentsMade) == 20)
        for idx in noDF {
            #expect(h.pool.array(idx).count <= 1514)
            h.pool.free(idx)
        }
        #expect(h.pool.bigAvailable == 16)
    }

    /// Superframes whose segments are as big as a pod's 1500-byte MTU allows (IP 1500:
    /// 1448 bytes after TCP timestamps, 1472 of UDP), a single segment's worth or less, and
    /// segments that fit the tunnel, toward one VXLAN tunnel and toward the ECMP prefix (a
    /// VXLAN and an MPLS-over-UDP member): what the fabric gets, trains cut at their gso
    /// size or datagrams, fits its 1500-byte MTU, and the inner packets put back together
    /// give the payload exactly, but for the segments too big for the member with DF, each
    /// answered with fragmentation-needed instead.
    @Test(arguments: [false, true])
    func superframesTowardTunnelsFitTheFabric(trains: Bool) {
        let h = Self.harness(fabricOffloads: trains)
        var members: Set<UInt16> = []
        let vxlan = IPv4Address(192, 0, 2, 130)
        for dst in [vxlan, IPv4Address(203, 0, 113, 7)] {
            for sport in UInt16(41000)..<41006 {
                for (udp, gso) in [(false, 1448), (false, 1386), (true, 1472)] {
                    for payload in [700, gso, 3 * gso + 500] {
                        for df in [true, false] {
                            var s = Self.spec(to: dst, payload: payload, df: df)
                            s.sport = sport
                            let what = "\(dst) sport \(sport) \(udp ? "UDP" : "TCP") \(payload)/\(gso) DF \(df)"
                            let header = udp ? 28 : 52
                            h.now += 50  // ICMP error tokens refill
                            let out = h.run(arrivals: [Self.arrival(s, udp: udp, gso: gso)])
                            let inner = Self.innerPackets(out, what)
                            if let port = inner.port { members.insert(port) }
                            // The member's inner MTU: from the tunnel taken, or from the errors
                            // when every segment was too big for it.
                            let mtu =
                                inner.port.map { $0 == UDPPort.vxlan ? 1450 : 1468 }
                                ?? inner.errors.first.map { Int(be16($0, 14 + 20 + 6)) } ?? 0
                            #expect(mtu == 1450 || (mtu == 1468 && dst != vxlan), "\(what): MTU \(mtu)")
                            for e in inner.errors { #expect(Int(be16(e, 14 + 20 + 6)) == mtu, "\(what)") }
                            // With DF, fragmentation-needed to the pod for each segment too big for
                            // the member (all but a short last one); the rest goes through.
                            let tooBig = df && header + min(gso, payload) > mtu ? payload / gso : 0
                            #expect(inner.errors.count == tooBig, "\(what): \(inner.errors.count) errors")
                            let got = Self.reassembled(
                                inner.packets,
                                udp: udp,
                                seq: s.seq &+ UInt32(tooBig * gso),
                                what
                            )
                            #expect(
                                got == Array(s.payload[(tooBig * gso)...]),
                                "\(what): \(got.count) bytes put back together"
                            )
                        }
                    }
                }
            }
        }
        // Both kinds of tunnel were taken (the ECMP prefix spreads flows over both members).
        #expect(members == [UDPPort.vxlan, UDPPort.mplsOverUDP])
        #expect(h.pool.bigAvailable == 16)
    }

    /// blue-a's TCP or UDP superframe as its tap hands it over (the port layer's record of
    /// the virtio-net header).
    static func arrival(_ s: TCPSpec, udp: Bool, gso: Int) -> PipelineHarness.Arrival {
        var o = PacketOffload()
        o.flags = PacketOffload.needsChecksum
        o.gsoType = udp ? VirtioNet.gsoUDPL4 : VirtioNet.gsoTCPv4
        o.gsoSize = UInt16(gso)
        o.checksumStart = UInt16(PacketPool.headroom + 14 + 20)
        o.checksumOffset = udp ? 6 : 16
        return PipelineHarness.Arrival(bytes: udp ? s.udpFrame() : s.frame(), port: S.blueA, offload: o)
    }

    /// What the fabric's MTU must hold, checked on every datagram a frame's output puts on
    /// the wire (a train as the kernel cuts it: `gsoSize` bytes of UDP payload each but the
    /// last); returns their inner IP packets, the tunnel's UDP port, and the ICMP errors
    /// sent back to blue-a.
    static func innerPackets(
        _ out: [PipelineHarness.Sent],
        _ what: String
    ) -> (packets: [[UInt8]], port: UInt16?, errors: [[UInt8]]) {
        var packets: [[UInt8]] = []
        var errors: [[UInt8]] = []
        var port: UInt16?
        for o in out {
            if o.port == S.blueA {
                #expect(o.bytes[23] == 1 && o.bytes[34] == 3 && o.bytes[35] == 4, "\(what): not frag-needed")
                errors.append(o.bytes)
                continue
            }
            guard o.port == S.fabricPort, o.bytes.count > 42, be16(o.bytes, 12) == 0x0800 else {
                Issue.record("\(what): \(o)")
                continue
            }
            let payload = Array(o.bytes[42...])
            var size = payload.count
            if o.offload.gsoType == VirtioNet.gsoUDPL4 {
                size = Int(o.offload.gsoSize)
                // What the kernel or the NIC makes of the train: datagrams of this size.
                #expect(28 + size <= 1500, "\(what): a train of \(28 + size)-byte datagrams")
            } else {
                #expect(o.offload.gsoType == 0, "\(what): gso type \(o.offload.gsoType)")
            }
            guard size > 0 else { continue }
            let dport = be16(o.bytes, 36)
            if port == nil { port = dport }
            #expect(port == dport, "\(what): one flow, one ECMP member")
            for at in stride(from: 0, to: payload.count, by: size) {
                let datagram = payload[at..<min(at + size, payload.count)]
                #expect(28 + datagram.count <= 1500, "\(what): a \(28 + datagram.count)-byte datagram")
                // VXLAN header and inner Ethernet, or one MPLS label stack entry.
                let skip = dport == UDPPort.vxlan ? 8 + 14 : 4
                guard datagram.count > skip + 20 else {
                    Issue.record("\(what): a datagram of \(datagram.count) bytes")
                    continue
                }
                packets.append(Array(datagram.dropFirst(skip)))
            }
        }
        return (packets, port, errors)
    }

    /// The payload the inner packets carry, put back together: fragments by identification
    /// and offset, then TCP segments by sequence number (from `seq`) or UDP datagrams in
    /// the order sent.
    static func reassembled(_ packets: [[UInt8]], udp: Bool, seq: UInt32, _ what: String) -> [UInt8] {
        var order: [UInt16] = []
        var pieces: [UInt16: [(offset: Int, bytes: ArraySlice<UInt8>)]] = [:]
        for p in packets {
            let ihl = Int(p[0] & 0x0F) * 4
            let total = Int(be16(p, 2))
            guard total == p.count, ihl == 20 else {
                Issue.record("\(what): an inner packet of \(p.count) bytes says \(total), header \(ihl)")
                continue
            }
            let id = be16(p, 4)
            if pieces[id] == nil { order.append(id) }
            pieces[id, default: []].append((Int(be16(p, 6) & 0x1FFF) * 8, p[ihl...]))
        }
        var stream: [UInt32: [UInt8]] = [:]
        var datagrams: [[UInt8]] = []
        for id in order {
            var l4: [UInt8] = []
            for f in pieces[id]!.sorted(by: { $0.offset < $1.offset }) {
                #expect(f.offset == l4.count, "\(what): fragment at \(f.offset) after \(l4.count) bytes")
                l4 += f.bytes
            }
            if udp {
                datagrams.append(Array(l4.dropFirst(8)))
            } else {
                let doff = Int(l4[12] >> 4) * 4
                stream[be32(l4, 4) &- seq] = Array(l4[doff...])
            }
        }
        if udp { return datagrams.flatMap { $0 } }
        var payload: [UInt8] = []
        for (offset, bytes) in stream.sorted(by: { $0.key < $1.key }) {
            #expect(Int(offset) == payload.count, "\(what): a segment at \(offset) after \(payload.count) bytes")
            payload += bytes
        }
        return payload
    }

    @Test func partialChecksumsAreCompletedUnlessTheTapTakesThem() {
        let h = Self.harness(fabricOffloads: true)
        var spec = Self.spec(to: IPv4Address(192, 0, 2, 130), payload: 300)
        // Toward the tunnel: completed.
        let out = h.run(loaded: [Self.fromBlueA(h, spec.udpFrame(), gso: 0, mss: 0)])
        #expect(out.count == 1)
        if let d = out.first {
            let b = h.pool.array(d)
            let inner = Array(b[64...])  // 50 outer + 14 inner Ethernet
            spec.ttl = 63
            let full = spec.udpFrame(partial: false)
            #expect(inner == Array(full[14...]))
            #expect(h.pool.meta(d).pointee.offload == PacketOffload())
            h.pool.free(d)
        }
        // Toward blue-b's tap: kept partial, described by the offload state.
        var local = Self.spec(to: S.blueBIP, payload: 300)
        let kept = h.run(loaded: [Self.fromBlueA(h, local.udpFrame(), gso: 0, mss: 0)])
        #expect(kept.count == 1)
        if let d = kept.first {
            local.ttl = 63
            local.dstMAC = hex("02 00 00 01 00 0b")
            local.srcMAC = T.vrouterMAC
            #expect(h.pool.array(d) == local.udpFrame(partial: true))
            #expect(h.pool.meta(d).pointee.offload.flags == PacketOffload.needsChecksum)
            h.pool.free(d)
        }
    }

    @Test func offloadStateThatDoesNotMatchThePacketIsDropped() {
        let h = Self.harness(fabricOffloads: true)
        let spec = Self.spec(to: S.blueBIP, payload: 5000)
        // TCP GSO on a UDP packet.
        let out = h.run(loaded: [Self.fromBlueA(h, spec.udpFrame(), gso: VirtioNet.gsoTCPv4, mss: 1448)])
        #expect(out.isEmpty && h.drops(.offloadInvalid) == 1)
        #expect(h.pool.bigAvailable == 16)
    }

    /// VXLAN from the fabric toward blue-b's tap (offloads): one superframe; toward blue-a
    /// (no offloads): the segments as they came.
    @Test func segmentsFromTheFabricAreCoalescedForATapThatTakesSuperframes() {
        let h = Self.harness(fabricOffloads: true)
        for (dst, port, whole) in [(S.blueBIP, S.blueB, true), (S.blueAIP, S.blueA, false)] {
            var spec = TCPSpec()
            spec.src4 = hex("c0 00 02 82")  // 192.0.2.130, behind node A
            spec.dst4 = [192, 0, 2, UInt8(dst.value & 0xFF)]
            spec.payload = pattern(20 * 1398)
            spec.flags = 0x10
            let segs = OffloadSegmentationTests.expected(spec, mss: 1398)
            let frames = segs.map { (Packets.vxlan($0, vni: S.vniBlue), S.fabricPort) }
            let out = h.run(frames)
            if whole {
                #expect(out.count == 1)
                #expect(out.first.map { $0.port == port && $0.bytes.count == 14 + 20 + 32 + 20 * 1398 } == true)
            } else {
                #expect(out.count == 20)
            }
        }
        #expect(h.events(.groMerged) == 19)
    }

    /// The kernel's VXLAN hands a TCP superframe over a veth whole (tunnel GSO; AF_PACKET
    /// reports it as TCPv4 with the inner partial checksum): decapsulated, it is an inner
    /// superframe like a pod's — whole to a tap that takes it, segments to one that does not.
    @Test func aSuperframeInsideATunnelIsForwardedAsOne() {
        let h = Self.harness(fabricOffloads: true)
        for (dst, port) in [(S.blueBIP, S.blueB), (S.blueAIP, S.blueA)] {
            var spec = TCPSpec()
            spec.src4 = hex("c0 00 02 82")
            spec.dst4 = [192, 0, 2, UInt8(dst.value & 0xFF)]
            spec.payload = pattern(30 * 1398)
            spec.flags = 0x10
            let frame = Packets.vxlan(spec.frame(partial: true), vni: S.vniBlue)
            let idx = h.pool.allocBig()!
            frame.withUnsafeBytes { _ = h.pool.load(idx, bytes: $0) }
            let m = h.pool.meta(idx)
            m.pointee.rxPort = S.fabricPort
            let header = VirtioNet.Header(
                flags: VirtioNet.needsChecksum,
                gsoType: VirtioNet.gsoTCPv4,
                headerLength: 50 + 66,
                gsoSize: 1398,
                checksumStart: 50 + 34,
                checksumOffset: 16
            )
            #expect(VirtioNet.record(header, in: m))
            let out = h.run(loaded: [idx])
            if port == S.blueB {
                #expect(out.count == 1)
                if let o = out.first {
                    #expect(h.pool.meta(o).pointee.txPort == S.blueB)
                    #expect(h.pool.meta(o).pointee.offload.gsoSize == 1398)
                    #expect(h.pool.array(o).count == 14 + 20 + 32 + 30 * 1398)
                }
            } else {
                var want = spec
                want.dstMAC = hex("02 00 00 01 00 0a")
                want.srcMAC = T.vrouterMAC
                let segs = OffloadSegmentationTests.expected(want, mss: 1398)
                #expect(out.count == segs.count)
                for (k, o) in out.enumerated() where k < segs.count {
                    expectSameBytes(h.pool.array(o), segs[k], "segment \(k)")
                }
            }
            for o in out { h.pool.free(o) }
        }
        #expect(h.drops(.offloadInvalid) == 0)
    }
}
