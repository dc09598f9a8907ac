import Testing

@testable import VRouterCore

// The fused fast path against the general nodes: the same random frames (a seeded
// generator: the common shapes the fast path takes, and every near miss it must hand
// to the general path: TTL 0/1, DF and too big, SYN/FIN/RST, IP options, fragments,
// VLAN tags, padding, spoofed sources, multicast, unknown VNIs and labels, translated
// flows, ECMP, IPv6, ARP, flipped bytes and truncations, and packets with offload state:
// superframes, partial checksums, a virtio-net header the port could not honour) go
// through two pipelines, one with `fusedFastPath` and one without; every frame must give
// the same bytes and offload state on the same ports in the same order, and the same
// counters and drop reasons.

typealias Arrival = PipelineHarness.Arrival

/// Random frames over the sample topology with fabric services (blue-b's tap and the
/// fabric take offloads).
private struct FrameGenerator {
    var rng: SplitMix64
    /// Frames sent before: half of all frames repeat one, so flows hit.
    var history: [Arrival] = []

    mutating func int(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { int(100) < percent }
    mutating func pick<T>(_ xs: [T]) -> T { xs[int(xs.count)] }

    static func bytes(_ a: IPv4Address) -> [UInt8] {
        [UInt8(a.value >> 24), UInt8(a.value >> 16 & 0xFF), UInt8(a.value >> 8 & 0xFF), UInt8(a.value & 0xFF)]
    }
    static func bytes(_ m: MACAddress) -> [UInt8] { (0..<6).map { UInt8(m.value >> (40 - 8 * UInt64($0)) & 0xFF) } }

    /// Destinations a pod sends to: other pods, both tunnels, ECMP, the gateway, the
    /// world (SNAT for green), multicast and broadcast, and a VRF with no route.
    static let destinations: [IPv4Address] = [
        Topo.blueBIP, Topo.blueAIP, IPv4Address(192, 0, 2, 200), IPv4Address(192, 0, 2, 201),
        IPv4Address(203, 0, 113, 7), IPv4Address(203, 0, 113, 99), IPv4Address(198, 51, 100, 200),
        Topo.redAIP, Topo.blueGateway, Topo.world, Topo.greenBIP, Topo.purpleAIP, IPv4Address(198, 18, 2, 5),
        IPv4Address(224, 0, 0, 5), IPv4Address(255, 255, 255, 255), IPv4Address(100, 64, 0, 1),
    ]
    static let pods: [(UInt16, MACAddress, IPv4Address)] = [
        (Topo.blueA, Topo.blueAMAC, Topo.blueAIP), (Topo.blueB, Topo.blueBMAC, Topo.blueBIP),
        (Topo.redA, Topo.redAMAC, Topo.redAIP), (Topo.greenA, Topo.greenAMAC, Topo.greenAIP),
        (Topo.purpleA, Topo.purpleAMAC, Topo.purpleAIP),
    ]

    /// An IPv4 TCP/UDP/ICMP packet (no Ethernet); `clean` ones are the common case
    /// (TCP ACK or UDP, TTL 64, no options, unfragmented), the others anything.
    mutating func ipPacket(src: IPv4Address, dst: IPv4Address, clean: Bool) -> [UInt8] {
        if clean {
            let tcp = chance(50)
            let s = Self.bytes(src)
            let d = Self.bytes(dst)
            let payload = [UInt8](repeating: UInt8(int(256)), count: int(60))
            let sport = UInt16(40000 + int(6))
            let l4 =
                tcp
                ? Frames.tcp(
                    sport: sport,
                    dport: 80,
                    flags: pick([0x10, 0x18]),
                    payload: payload,
                    pseudo: pseudo4(s, d, proto: 6, length: 20 + payload.count)
                )
                : Frames.udp(
                    sport: sport,
                    dport: 53,
                    payload: payload,
                    pseudo: pseudo4(s, d, proto: 17, length: 8 + payload.count)
                )
            return Frames.ipv4(
                src: s,
                dst: d,
                proto: tcp ? 6 : 17,
                payload: l4.count,
                flags: chance(50) ? 0x4000 : 0
            ) + l4
        }
        let s = Self.bytes(src)
        let d = Self.bytes(dst)
        let big = chance(8)
        let payload = [UInt8](repeating: UInt8(int(256)), count: big ? 1380 + int(200) : int(40))
        let proto = pick([IPProtocol.udp, IPProtocol.udp, IPProtocol.tcp, IPProtocol.tcp, IPProtocol.icmp])
        let sport = UInt16(40000 + int(6))
        let dport = pick([53, 80, 9, 20000, 20001] as [UInt16])
        let l4: [UInt8]
        switch proto {
        case IPProtocol.tcp:
            let flags = pick([0x10, 0x10, 0x18, 0x10, 0x02, 0x12, 0x11, 0x04, 0x14] as [UInt8])
            let mss: [UInt8] = flags & 0x02 != 0 ? [2, 4, 0x05, 0xB4] : []
            l4 = Frames.tcp(
                sport: sport,
                dport: dport,
                flags: flags,
                options: mss,
                payload: payload,
                pseudo: pseudo4(s, d, proto: 6, length: 20 + mss.count + payload.count)
            )
        case IPProtocol.udp:
            l4 = Frames.udp(
                sport: sport,
                dport: dport,
                payload: payload,
                pseudo: pseudo4(s, d, proto: 17, length: 8 + payload.count)
            )
        default:
            l4 = Frames.icmp(type: pick([8, 0, 3]), rest: UInt32(sport) << 16 | 1, payload: Array(payload.prefix(28)))
        }
        let ttl = pick([64, 64, 64, 64, 2, 1, 0] as [UInt8])
        var flags: UInt16 = chance(50) ? 0x4000 : 0
        if chance(4) { flags |= pick([0x2000, 0x0010, 0x2010] as [UInt16]) }  // fragments
        let options: [UInt8] = chance(4) ? [1, 1, 1, 0] : []
        return Frames.ipv4(src: s, dst: d, proto: proto, payload: l4.count, options: options, ttl: ttl, flags: flags)
            + l4
    }

    mutating func podFrame() -> ([UInt8], UInt16) {
        let (port, mac, ip) = pick(Self.pods)
        let src = chance(3) ? IPv4Address(192, 0, 2, 99) : ip
        let tags: [(UInt16, UInt16)] = chance(3) ? [(UInt16(0x8100), UInt16(int(3)))] : []
        let clean = chance(70)
        let dst =
            clean
            ? pick(Self.destinations.prefix(7) + [Topo.redAIP, IPv4Address(198, 51, 100, 200)])
            : pick(Self.destinations)
        var frame =
            Frames.ethernet(dst: T.vrouterMAC, src: Self.bytes(mac), type: 0x0800, tags: clean ? [] : tags)
            + ipPacket(src: clean ? ip : src, dst: dst, clean: clean)
        if chance(5) { frame += [UInt8](repeating: 0, count: 1 + int(20)) }  // Ethernet padding
        return (frame, port)
    }

    mutating func vxlanFrame() -> ([UInt8], UInt16) {
        let (_, mac, ip) = pick(Self.pods)
        let innerSrc = pick([IPv4Address(192, 0, 2, 200), IPv4Address(198, 51, 100, 200), IPv4Address(203, 0, 113, 7)])
        let clean = chance(50)
        let inner =
            Frames.ethernet(
                dst: Self.bytes(mac),
                src: Self.bytes(Topo.nodeAMAC),
                type: !clean && chance(5) ? 0x86DD : 0x0800
            )
            + ipPacket(src: innerSrc, dst: chance(80) ? ip : pick(Self.destinations), clean: clean)
        let vni = clean ? (ip == Topo.redAIP ? Topo.vniRed : Topo.vniBlue) : pick([Topo.vniBlue, Topo.vniRed, 4242])
        return (Packets.vxlan(inner, vni: vni, to: chance(95) ? Topo.underlay : Topo.nodeC), Topo.fabricPort)
    }

    mutating func mplsFrame() -> ([UInt8], UInt16) {
        let (_, _, ip) = pick(Self.pods)
        let label = pick([Topo.labelToBlueA, Topo.labelToBlueB, Topo.labelToRedA, 99])
        let inner = ipPacket(src: IPv4Address(198, 51, 100, 200), dst: ip, clean: chance(50))
        return (Packets.mplsUDP(inner, label: label, ttl: pick([64, 64, 1, 0])), Topo.fabricPort)
    }

    /// From the world to the node (replies of translated flows) or to a local pod.
    mutating func worldFrame() -> ([UInt8], UInt16) {
        let dst = chance(70) ? Topo.underlay : Topo.purpleAIP
        let frame =
            Frames.ethernet(dst: Self.bytes(Topo.nodeMAC), src: Self.bytes(Topo.gatewayMAC), type: 0x0800)
            + ipPacket(src: Topo.world, dst: dst, clean: chance(50))
        return (frame, Topo.fabricPort)
    }

    /// A pod's TCP or UDP packet as its tap hands it over with offloads (virtio-net header):
    /// a superframe, a small packet whose checksum is left partial, a partial checksum
    /// somewhere other than the L4 checksum, or a header the port layer could not honour;
    /// all of them take the general path. With `active` false, a header that only says
    /// "checksum valid", which changes nothing and may take the fast path.
    mutating func offloadedPodArrival(active: Bool) -> Arrival {
        let (port, mac, ip) = pick(Self.pods)
        var s = TCPSpec()
        s.src4 = Self.bytes(ip)
        s.dst4 = Self.bytes(pick(Self.destinations.prefix(7) + [Topo.redAIP, Topo.world, Topo.greenBIP]))
        s.srcMAC = Self.bytes(mac)
        s.dstMAC = T.vrouterMAC
        s.sport = UInt16(41000 + int(4))
        s.seq = UInt32(truncatingIfNeeded: rng.next())
        s.ipFlags = chance(80) ? 0x4000 : 0
        s.flags = pick([0x10, 0x18, 0x10, 0x18, 0x02, 0x11])
        let udp = chance(30)
        let l4 = PacketPool.headroom + 14 + 20
        var o = PacketOffload()
        o.flags = PacketOffload.needsChecksum
        o.checksumStart = UInt16(l4)
        o.checksumOffset = udp ? 6 : 16
        let kind = active ? int(100) : 100
        switch kind {
        case 0..<45:
            // Mostly many segments; now and then less than one segment's worth.
            s.payload = pattern(chance(20) ? 100 + int(1300) : 1000 + int(5000), seed: int(256))
            o.gsoType = udp ? VirtioNet.gsoUDPL4 : VirtioNet.gsoTCPv4
            // Segments up to IP 1500 (a UDP superframe's 1472 bytes), often near the
            // tunnels' inner MTU (1450 VXLAN, 1468 MPLS) or beyond it.
            o.gsoSize = UInt16(chance(40) ? 1380 + int(93) : 400 + int(1073))
        case 45..<80:
            s.payload = pattern(int(300), seed: int(256))
        case 80..<92:
            // A partial checksum the rewrite cannot describe again: completed in software.
            s.payload = pattern(40 + int(100), seed: int(256))
            o.checksumStart = UInt16(l4 + 4)
            o.checksumOffset = 4
        case 92..<100:
            s.payload = pattern(int(100), seed: int(256))
            o.gsoType = 0xFF  // the port layer's mark for a header it could not honour
        default:
            s.payload = pattern(int(300), seed: int(256))
            o = PacketOffload()
            o.flags = PacketOffload.checksumValid
        }
        let partial = o.flags & PacketOffload.needsChecksum != 0
        return Arrival(bytes: udp ? s.udpFrame(partial: partial) : s.frame(partial: partial), port: port, offload: o)
    }

    /// A tunnel packet as the fabric's AF_PACKET socket hands it over: its outer UDP
    /// checksum left to an offload that never ran (a sender on this machine), or a whole
    /// inner TCP superframe (the kernel's VXLAN through a veth).
    mutating func offloadedFabricArrival() -> Arrival {
        let (_, mac, ip) = pick(Self.pods)
        var s = TCPSpec()
        s.src4 = Self.bytes(pick([IPv4Address(192, 0, 2, 200), IPv4Address(198, 51, 100, 200)]))
        s.dst4 = Self.bytes(ip)
        s.srcMAC = Self.bytes(Topo.nodeAMAC)
        s.dstMAC = Self.bytes(mac)
        s.sport = UInt16(42000 + int(4))
        s.flags = pick([0x10, 0x18])
        let vni = ip == Topo.redAIP ? Topo.vniRed : Topo.vniBlue
        var o = PacketOffload()
        o.flags = PacketOffload.needsChecksum
        if chance(60) {
            s.payload = pattern(int(200), seed: int(256))
            let frame = s.frame(partial: false)
            let outer: [UInt8]
            if chance(50) {
                outer = Packets.vxlan(frame, vni: vni)
            } else {
                let label = pick([Topo.labelToBlueA, Topo.labelToBlueB, Topo.labelToRedA])
                outer = Packets.mplsUDP(Array(frame.dropFirst(14)), label: label)
            }
            o.checksumStart = UInt16(PacketPool.headroom + 14 + 20)
            o.checksumOffset = 6
            return Arrival(bytes: outer, port: Topo.fabricPort, flags: .checksumPartial, offload: o)
        }
        s.payload = pattern(1000 + int(5000), seed: int(256))
        o.gsoType = VirtioNet.gsoTCPv4
        o.gsoSize = UInt16(400 + int(1000))
        o.checksumStart = UInt16(PacketPool.headroom + 50 + 14 + 20)
        o.checksumOffset = 16
        return Arrival(bytes: Packets.vxlan(s.frame(partial: true), vni: vni), port: Topo.fabricPort, offload: o)
    }

    mutating func frame() -> Arrival {
        if history.count > 8 && chance(55) { return pick(history) }
        let f = newFrame()
        if history.count < 256 { history.append(f) } else { history[int(256)] = f }
        return f
    }

    mutating func newFrame() -> Arrival {
        switch int(100) {
        case 0..<6: return offloadedPodArrival(active: !chance(20))
        case 6..<9: return offloadedFabricArrival()
        default: break
        }
        var (bytes, port): ([UInt8], UInt16)
        switch int(100) {
        case 0..<45: (bytes, port) = podFrame()
        case 45..<70: (bytes, port) = vxlanFrame()
        case 70..<80: (bytes, port) = mplsFrame()
        case 80..<90: (bytes, port) = worldFrame()
        case 90..<95:
            bytes = Packets.udp6(
                from: Topo.blueAMAC,
                Topo.blueAIPv6,
                pick([Topo.blueBIPv6, IPv6Address("2001:db8:1:1::5")!])
            )
            port = Topo.blueA
        default:
            bytes = Packets.arpRequest(from: Topo.blueAMAC, Topo.blueAIP, asking: Topo.blueGateway)
            port = Topo.blueA
        }
        // Near misses: a flipped byte anywhere in the headers, or a cut.
        if chance(8) {
            let i = int(min(bytes.count, 110))
            bytes[i] ^= UInt8(1 << int(8))
        }
        if chance(3) { bytes = Array(bytes.prefix(int(bytes.count) + 1)) }
        if chance(1) { port = UInt16(7 + int(3)) }  // no such port
        return Arrival(bytes: bytes, port: port)
    }
}

private func snapshot(_ h: PipelineHarness) -> [UInt64] {
    // Everything but the fast path's own count (zero on the general path).
    var v =
        DropReason.allCases.map { h.drops($0) } + PipelineEvent.allCases.filter { $0 != .fastPath }.map { h.events($0) }
    for p in 0..<16 {
        let c = h.counters.ports[p]
        v += [c.rxPackets, c.rxBytes, c.txPackets, c.txBytes, c.drops]
    }
    return v + [UInt64(h.pipeline.flows4.count), UInt64(h.pipeline.flows6.count)]
}

private func harness(fused: Bool, flowCapacity: Int) -> PipelineHarness {
    var c = PipelineConfig()
    c.snat = SNATPortRange(first: 20000, last: 20003)
    c.flowCapacity = flowCapacity
    c.icmpErrorBurst = 30
    c.icmpErrorsPerSecond = 50
    var t = SampleTopology(fabricServices: true)
    for id in [Topo.blueB, Topo.fabricPort] {
        var port = t.builder.ports[id]!
        port.offloads = true
        try! t.builder.setPort(id, port)
    }
    let h = PipelineHarness(config: c, topology: t, poolSize: 8192, bigBuffers: 64)
    h.pipeline.config.fusedFastPath = fused  // whatever VRT_PIPELINE_FUSED says
    return h
}

@Suite struct PipelineDifferentialTests {
    @Test(arguments: [1 as UInt64, 2, 3, 4])
    func fusedAndGeneralPathsAgree(seed: UInt64) {
        // A small flow table for some seeds, so installs evict and frames see misses later.
        let capacity = seed % 2 == 0 ? 1 << 12 : 256
        let fused = harness(fused: true, flowCapacity: capacity)
        let general = harness(fused: false, flowCapacity: capacity)
        var gen = FrameGenerator(rng: SplitMix64(seed: seed &* 0x9E37_79B9))
        var packets = 0
        for frameNumber in 0..<150 {
            let frame = (0..<(1 + gen.int(64))).map { _ in gen.frame() }
            packets += frame.count
            let a = fused.run(arrivals: frame)
            let b = general.run(arrivals: frame)
            let same =
                a.count == b.count
                && zip(a, b).allSatisfy { $0.port == $1.port && $0.bytes == $1.bytes && $0.offload == $1.offload }
            #expect(same, "seed \(seed) frame \(frameNumber): outputs differ (\(a.count) against \(b.count))")
            #expect(snapshot(fused) == snapshot(general), "seed \(seed) frame \(frameNumber): counters differ")
            if !same { return }
            // Time passes (ICMP tokens refill, flows age), and now and then routes change,
            // so installed flows go stale and are re-resolved.
            fused.now += UInt32(gen.int(400))
            general.now = fused.now
            if gen.chance(10) {
                #expect(
                    fused.pipeline.age(now: fused.now, maxScan: 1 << 20)
                        == general.pipeline.age(now: general.now, maxScan: 1 << 20)
                )
            }
            if gen.chance(5) {
                let target = RouteTarget(nexthop: gen.pick([Topo.nhNodeA, Topo.nhNodeB, Topo.nhBlueB]), label: 300)
                for h in [fused, general] {
                    try? h.topology.builder.addRoute(vrf: Topo.blue, IPv4Prefix("192.0.2.192/26")!, target)
                    h.rebuild()
                }
            }
        }
        #expect(packets > 4000)
        // Both paths were exercised: the fast path forwarded, the general nodes too.
        #expect(fused.events(.fastPath) > 250)
        #expect(fused.events(.flowHit) + fused.events(.flowMiss) > fused.events(.fastPath) + 2000)
        #expect(general.events(.fastPath) == 0)
    }

    /// Runs `frames` through both paths, each twice (the second time every flow hits), and
    /// checks they agree; returns the fused pipeline for what it counted.
    private func agree(_ frames: [[Arrival]], _ what: String) -> PipelineHarness {
        let fused = harness(fused: true, flowCapacity: 1 << 12)
        let general = harness(fused: false, flowCapacity: 1 << 12)
        for (n, frame) in (frames + frames).enumerated() {
            let a = fused.run(arrivals: frame)
            let b = general.run(arrivals: frame)
            #expect(a.count == b.count, "\(what) frame \(n): \(a.count) against \(b.count) outputs")
            for (x, y) in zip(a, b) {
                #expect(x.port == y.port && x.bytes == y.bytes && x.offload == y.offload, "\(what) frame \(n)")
            }
            #expect(snapshot(fused) == snapshot(general), "\(what) frame \(n): counters differ")
        }
        return fused
    }

    @Test func offloadMarkedPacketsTakeTheGeneralPathAndComeOutTheSame() {
        var gen = FrameGenerator(rng: SplitMix64(seed: 19))
        let frames = (0..<12).map { k in
            (0..<(8 + gen.int(24))).map { _ in
                k % 3 == 2 ? gen.offloadedFabricArrival() : gen.offloadedPodArrival(active: true)
            }
        }
        let fused = agree(frames, "offloads")
        #expect(fused.events(.flowHit) > 100)
        #expect(
            fused.events(.superframesWhole) + fused.events(.superframesSegmented)
                + fused.events(.superframesEncapsulated) > 10
        )
        #expect(fused.events(.fastPath) == 0)
        // A header that says only "checksum valid" asks nothing of us: the fast path takes it.
        let valid = agree([(0..<40).map { _ in gen.offloadedPodArrival(active: false) }], "checksum valid")
        #expect(valid.events(.fastPath) > 0)
    }

    @Test func mplsDecapsulatedIPv4TakesTheFastPath() {
        var gen = FrameGenerator(rng: SplitMix64(seed: 20))
        let frame = (0..<48).map { _ in
            // Not blue-b: its tap takes superframes, so TCP toward it is coalesced (general path).
            let ip = gen.pick([Topo.blueAIP, Topo.redAIP])
            let label = ip == Topo.blueAIP ? Topo.labelToBlueA : Topo.labelToRedA
            let inner = gen.ipPacket(src: IPv4Address(198, 51, 100, 200), dst: ip, clean: true)
            return Arrival(bytes: Packets.mplsUDP(inner, label: label), port: Topo.fabricPort)
        }
        let fused = agree([frame], "mpls")
        // Every packet is forwarded fused: in the first pass once its new flow is installed.
        #expect(fused.events(.mplsDecap) == 96)
        #expect(fused.events(.flowHit) == 48)
        #expect(fused.events(.fastPath) == 96)
    }
}
