import Testing

@testable import VRouterCore

// The fused fast path against the general nodes: the same random frames (a seeded
// generator: the common shapes the fast path takes, and every near miss it must hand
// to the general path: TTL 0/1, DF and too big, SYN/FIN/RST, IP options, fragments,
// VLAN tags, padding, spoofed sources, multicast, unknown VNIs and labels, translated
// flows, ECMP, IPv6, ARP, flipped bytes and truncations) go through two pipelines, one
// with `fusedFastPath` and one without; every frame must give the same bytes on the
// same ports in the same order, and the same counters and drop reasons.

/// Random frames over the sample topology with fabric services.
private struct FrameGenerator {
    var rng: SplitMix64
    /// Frames sent before: half of all frames repeat one, so flows hit.
    var history: [([UInt8], UInt16)] = []

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

    mutating func frame() -> ([UInt8], UInt16) {
        if history.count > 8 && chance(55) { return pick(history) }
        let f = newFrame()
        if history.count < 256 { history.append(f) } else { history[int(256)] = f }
        return f
    }

    mutating func newFrame() -> ([UInt8], UInt16) {
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
        return (bytes, port)
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
    let h = PipelineHarness(config: c, topology: SampleTopology(fabricServices: true), poolSize: 8192)
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
            let a = fused.run(frame)
            let b = general.run(frame)
            let same =
                a.count == b.count
                && zip(a, b).allSatisfy { $0.port == $1.port && $0.bytes == $1.bytes }
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
}
