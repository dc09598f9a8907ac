// Fabric SNAT and IP-fabric forwarding through the whole pipeline, on the sample
// topology with its fabric services (SampleTopology.swift). Expected frames are
// assembled by hand (Frames, reference checksums computed from scratch), so every byte
// the incremental checksum updates produce is compared with a full recomputation.

import Testing

@testable import VRouterCore

private func bytes(_ a: IPv4Address) -> [UInt8] {
    [UInt8(a.value >> 24), UInt8(a.value >> 16 & 0xFF), UInt8(a.value >> 8 & 0xFF), UInt8(a.value & 0xFF)]
}

private func bytes(_ m: MACAddress) -> [UInt8] { (0..<6).map { UInt8(m.value >> (40 - 8 * $0) & 0xFF) } }

/// Frames of the NAT tests, from the test's own byte assembly.
enum NATFrames {
    static func udp(
        _ srcMAC: MACAddress,
        _ dstMAC: MACAddress,
        _ src: IPv4Address,
        _ dst: IPv4Address,
        sport: UInt16,
        dport: UInt16,
        ttl: UInt8 = 64,
        payload: [UInt8] = Array(0..<18),
        checksum: Bool = true
    ) -> [UInt8] {
        let s = bytes(src)
        let d = bytes(dst)
        let u = Frames.udp(
            sport: sport,
            dport: dport,
            payload: payload,
            pseudo: checksum ? pseudo4(s, d, proto: 17, length: 8 + payload.count) : nil
        )
        return Frames.ethernet(dst: bytes(dstMAC), src: bytes(srcMAC), type: 0x0800)
            + Frames.ipv4(src: s, dst: d, proto: 17, payload: u.count, ttl: ttl) + u
    }

    static func tcp(
        _ srcMAC: MACAddress,
        _ dstMAC: MACAddress,
        _ src: IPv4Address,
        _ dst: IPv4Address,
        sport: UInt16,
        dport: UInt16,
        flags: UInt8,
        ttl: UInt8 = 64,
        options: [UInt8] = []
    ) -> [UInt8] {
        let s = bytes(src)
        let d = bytes(dst)
        let t = Frames.tcp(
            sport: sport,
            dport: dport,
            flags: flags,
            options: options,
            pseudo: pseudo4(s, d, proto: 6, length: 20 + options.count)
        )
        return Frames.ethernet(dst: bytes(dstMAC), src: bytes(srcMAC), type: 0x0800)
            + Frames.ipv4(src: s, dst: d, proto: 6, payload: t.count, ttl: ttl) + t
    }

    static func echo(
        _ srcMAC: MACAddress,
        _ dstMAC: MACAddress,
        _ src: IPv4Address,
        _ dst: IPv4Address,
        reply: Bool = false,
        id: UInt16,
        seq: UInt16 = 1,
        ttl: UInt8 = 64
    ) -> [UInt8] {
        let i = Frames.icmp(type: reply ? 0 : 8, rest: UInt32(id) << 16 | UInt32(seq), payload: Array(0..<24))
        return Frames.ethernet(dst: bytes(dstMAC), src: bytes(srcMAC), type: 0x0800)
            + Frames.ipv4(src: bytes(src), dst: bytes(dst), proto: 1, payload: i.count, ttl: ttl) + i
    }

    /// Green-a's port-unreachable about `reply` (a frame the pipeline delivered to it).
    static func podUnreachable(about reply: [UInt8]) -> [UInt8] {
        error(Topo.greenAMAC, .vrouter, Topo.greenAIP, Topo.world, type: 3, code: 3, quote: Array(reply[14...]))
    }

    /// An ICMP error from `src` to `dst` quoting `quote` (an IPv4 packet, no Ethernet).
    static func error(
        _ srcMAC: MACAddress,
        _ dstMAC: MACAddress,
        _ src: IPv4Address,
        _ dst: IPv4Address,
        type: UInt8,
        code: UInt8,
        quote: [UInt8],
        ttl: UInt8 = 64
    ) -> [UInt8] {
        let i = Frames.icmp(type: type, code: code, payload: quote)
        return Frames.ethernet(dst: bytes(dstMAC), src: bytes(srcMAC), type: 0x0800)
            + Frames.ipv4(src: bytes(src), dst: bytes(dst), proto: 1, payload: i.count, ttl: ttl, tos: 0xC0) + i
    }
}

private typealias F = NATFrames

/// A datagram green-a sends to the world host.
private func fromGreenA(sport: UInt16 = 40000, dport: UInt16 = 53, ttl: UInt8 = 64) -> [UInt8] {
    F.udp(Topo.greenAMAC, .vrouter, Topo.greenAIP, Topo.world, sport: sport, dport: dport, ttl: ttl)
}

/// A datagram the world host sends to the node's address (through the gateway).
private func worldToNode(sport: UInt16 = 53, dport: UInt16 = 20000) -> [UInt8] {
    F.udp(Topo.gatewayMAC, Topo.nodeMAC, Topo.world, Topo.underlay, sport: sport, dport: dport)
}

/// The harness with fabric services and a small SNAT range (20000-20003).
private func natHarness(
    range: SNATPortRange = SNATPortRange(first: 20000, last: 20003),
    idle: UInt32 = 60_000
) -> PipelineHarness {
    var c = PipelineConfig()
    c.snat = range
    c.flowIdleTimeout = idle
    return PipelineHarness(config: c, topology: SampleTopology(fabricServices: true))
}

/// The NAT harness after green-a's first datagram to the world host (port 40000 to 53),
/// which set up its translation (to the node's port 20000).
private func openedNAT() -> PipelineHarness {
    let h = natHarness()
    _ = h.run(fromGreenA(sport: 40000, dport: 53), from: Topo.greenA)
    return h
}

@Suite struct PipelineNATTests {
    /// A pod's UDP datagram to a host beyond the underlay gateway, and the reply.
    @Test func udpLeavesWithTheNodesAddressAndTheReplyComesBack() {
        let h = natHarness()
        let out = h.run(
            fromGreenA(sport: 40000, dport: 53),
            from: Topo.greenA
        )
        #expect(out.count == 1)
        #expect(out.first?.port == Topo.fabricPort)
        // Untunneled, from the fabric MAC to the gateway's, the source translated, TTL - 1.
        let expected = F.udp(Topo.nodeMAC, Topo.gatewayMAC, Topo.underlay, Topo.world, sport: 20000, dport: 53, ttl: 63)
        #expect(out.first?.bytes == expected)
        #expect(h.events(.natCreated) == 1)
        #expect(h.events(.fabricForward) == 1)
        #expect(h.pipeline.nat.stats(proto: 17) == SNATProtocolStats(flows: 1, portsInUse: 1))

        let back = h.run(
            F.udp(Topo.gatewayMAC, Topo.nodeMAC, Topo.world, Topo.underlay, sport: 53, dport: 20000, ttl: 60),
            from: Topo.fabricPort
        )
        #expect(back.count == 1)
        #expect(back.first?.port == Topo.greenA)
        let toPod = F.udp(.vrouter, Topo.greenAMAC, Topo.world, Topo.greenAIP, sport: 53, dport: 40000, ttl: 59)
        #expect(back.first?.bytes == toPod)
        #expect(h.events(.flowHit) == 1)
        #expect(h.counters.totalDrops == 0)

        // Later packets of either direction are plain hits: nothing new is set up.
        _ = h.run(
            fromGreenA(sport: 40000, dport: 53),
            from: Topo.greenA
        )
        #expect(h.events(.natCreated) == 1)
        #expect(h.events(.flowHit) == 2)
    }

    /// A sender on the same machine leaves its checksum to an offload (AF_PACKET says
    /// TP_STATUS_CSUMNOTREADY): the field holds only the pseudo-header sum. It is completed
    /// before the translation, so the pod gets a datagram whose checksum verifies.
    @Test func aChecksumLeftToOffloadIsCompletedFirst() {
        let h = openedNAT()
        var reply = worldToNode(sport: 53, dport: 20000)
        reply[40] = 0x12  // not the checksum: what an offload would have replaced
        reply[41] = 0x34
        let back = h.run([(reply, Topo.fabricPort)], flags: .checksumPartial)
        #expect(
            back.first?.bytes
                == F.udp(.vrouter, Topo.greenAMAC, Topo.world, Topo.greenAIP, sport: 53, dport: 40000, ttl: 63)
        )
        // The same for a pod of a forwarded network, TCP.
        var syn = F.tcp(Topo.gatewayMAC, Topo.nodeMAC, Topo.world, Topo.purpleAIP, sport: 80, dport: 5000, flags: 0x12)
        syn[50] = 0
        syn[51] = 0
        let toPod = h.run([(syn, Topo.fabricPort)], flags: .checksumPartial)
        #expect(
            toPod.first?.bytes
                == F.tcp(
                    .vrouter,
                    Topo.purpleAMAC,
                    Topo.world,
                    Topo.purpleAIP,
                    sport: 80,
                    dport: 5000,
                    flags: 0x12,
                    ttl: 63
                )
        )
    }

    @Test func aDatagramWithoutChecksumStaysWithout() {
        let h = natHarness()
        let out = h.run(
            F.udp(Topo.greenAMAC, .vrouter, Topo.greenAIP, Topo.world, sport: 40000, dport: 53, checksum: false),
            from: Topo.greenA
        )
        let expected = F.udp(
            Topo.nodeMAC,
            Topo.gatewayMAC,
            Topo.underlay,
            Topo.world,
            sport: 20000,
            dport: 53,
            ttl: 63,
            checksum: false
        )
        #expect(out.first?.bytes == expected)
    }

    @Test func tcpIsTranslatedBothWaysWithItsChecksum() {
        let h = natHarness()
        let mss: [UInt8] = [2, 4, 0x05, 0xB4]  // 1460: fits the fabric, not clamped
        let out = h.run(
            F.tcp(
                Topo.greenAMAC,
                .vrouter,
                Topo.greenAIP,
                Topo.world,
                sport: 33000,
                dport: 80,
                flags: 0x02,
                options: mss
            ),
            from: Topo.greenA
        )
        let syn = F.tcp(
            Topo.nodeMAC,
            Topo.gatewayMAC,
            Topo.underlay,
            Topo.world,
            sport: 20000,
            dport: 80,
            flags: 0x02,
            ttl: 63,
            options: mss
        )
        #expect(out.first?.bytes == syn)
        let back = h.run(
            F.tcp(Topo.gatewayMAC, Topo.nodeMAC, Topo.world, Topo.underlay, sport: 80, dport: 20000, flags: 0x12),
            from: Topo.fabricPort
        )
        #expect(
            back.first?.bytes
                == F.tcp(
                    .vrouter,
                    Topo.greenAMAC,
                    Topo.world,
                    Topo.greenAIP,
                    sport: 80,
                    dport: 33000,
                    flags: 0x12,
                    ttl: 63
                )
        )
    }

    @Test func echoIdentifiersAreTranslated() {
        let h = natHarness()
        let out = h.run(F.echo(Topo.greenAMAC, .vrouter, Topo.greenAIP, Topo.world, id: 7), from: Topo.greenA)
        #expect(
            out.first?.bytes == F.echo(Topo.nodeMAC, Topo.gatewayMAC, Topo.underlay, Topo.world, id: 20000, ttl: 63)
        )
        #expect(h.pipeline.nat.stats(proto: 1).flows == 1)
        let back = h.run(
            F.echo(Topo.gatewayMAC, Topo.nodeMAC, Topo.world, Topo.underlay, reply: true, id: 20000),
            from: Topo.fabricPort
        )
        #expect(
            back.first?.bytes
                == F.echo(.vrouter, Topo.greenAMAC, Topo.world, Topo.greenAIP, reply: true, id: 7, ttl: 63)
        )
        // An echo request to the node itself is still the node's to answer.
        let ping = h.run(
            F.echo(Topo.gatewayMAC, Topo.nodeMAC, Topo.world, Topo.underlay, id: 20000),
            from: Topo.fabricPort
        )
        #expect(ping.first?.port == Topo.fabricPort)
        #expect(h.events(.echoReply) == 1)
    }

    @Test func twoPodsWithTheSameSourcePortGetDifferentPorts() {
        let h = natHarness()
        let a = h.run(
            fromGreenA(sport: 5000, dport: 53),
            from: Topo.greenA
        )
        let b = h.run(
            F.udp(Topo.greenBMAC, .vrouter, Topo.greenBIP, Topo.world, sport: 5000, dport: 53),
            from: Topo.greenB
        )
        let pa = a.first.map { be16($0.bytes, 34) }
        let pb = b.first.map { be16($0.bytes, 34) }
        #expect(pa == 20000)
        #expect(pb == 20001)
        // Each reply finds its own pod.
        let ra = h.run(
            worldToNode(sport: 53, dport: 20001),
            from: Topo.fabricPort
        )
        #expect(ra.first?.port == Topo.greenB)
        #expect(ra.first.map { be16($0.bytes, 36) } == 5000)
    }

    /// The ICMP error a router sends about a translated packet reaches the pod as if the
    /// pod's own packet had been quoted (RFC 5508 §4.2): outer destination, quoted
    /// source address and port, and all four checksums.
    @Test func icmpErrorsFromOutsideAreTranslatedBackToThePod() {
        let h = natHarness()
        let sent = h.run(
            F.udp(Topo.greenAMAC, .vrouter, Topo.greenAIP, Topo.world, sport: 40000, dport: 33434, ttl: 2),
            from: Topo.greenA
        )
        let onWire = Array(sent[0].bytes[14...])  // what the router got (TTL 1)
        let error = F.error(
            Topo.gatewayMAC,
            Topo.nodeMAC,
            Topo.underlayGateway,
            Topo.underlay,
            type: 11,
            code: 0,
            quote: onWire
        )
        let back = h.run(error, from: Topo.fabricPort)
        #expect(back.count == 1)
        #expect(back.first?.port == Topo.greenA)
        // As if the pod's datagram (with the TTL it had at the router) had been quoted.
        let podView = Array(
            F.udp(Topo.greenAMAC, .vrouter, Topo.greenAIP, Topo.world, sport: 40000, dport: 33434, ttl: 1)[14...]
        )
        let expected = F.error(
            .vrouter,
            Topo.greenAMAC,
            Topo.underlayGateway,
            Topo.greenAIP,
            type: 11,
            code: 0,
            quote: podView,
            ttl: 63
        )
        #expect(back.first?.bytes == expected)
        #expect(h.events(.natICMPError) == 1)

        // A quote of an echo request: the identifier goes back too.
        _ = h.run(F.echo(Topo.greenAMAC, .vrouter, Topo.greenAIP, Topo.world, id: 9), from: Topo.greenA)
        let echoOnWire = Array(
            F.echo(Topo.nodeMAC, Topo.gatewayMAC, Topo.underlay, Topo.world, id: 20000, ttl: 63)[14...]
        )
        let unreachable = F.error(
            Topo.gatewayMAC,
            Topo.nodeMAC,
            Topo.underlayGateway,
            Topo.underlay,
            type: 3,
            code: 1,
            quote: echoOnWire
        )
        let e = h.run(unreachable, from: Topo.fabricPort)
        let echoPodView = Array(F.echo(Topo.greenAMAC, .vrouter, Topo.greenAIP, Topo.world, id: 9, ttl: 63)[14...])
        #expect(
            e.first?.bytes
                == F.error(
                    .vrouter,
                    Topo.greenAMAC,
                    Topo.underlayGateway,
                    Topo.greenAIP,
                    type: 3,
                    code: 1,
                    quote: echoPodView,
                    ttl: 63
                )
        )
        // About nothing translated: dropped and counted.
        let stray = F.error(
            Topo.gatewayMAC,
            Topo.nodeMAC,
            Topo.underlayGateway,
            Topo.underlay,
            type: 3,
            code: 3,
            quote: Array(F.udp(Topo.nodeMAC, Topo.gatewayMAC, Topo.underlay, Topo.world, sport: 20003, dport: 9)[14...])
        )
        #expect(h.run(stray, from: Topo.fabricPort).isEmpty)
        #expect(h.drops(.natNoMapping) == 1)
    }

    /// A pod's port-unreachable about a reply it got leaves as the node's.
    @Test func icmpErrorsFromThePodAreTranslatedOutward() {
        let h = openedNAT()
        let reply = F.udp(.vrouter, Topo.greenAMAC, Topo.world, Topo.greenAIP, sport: 53, dport: 40000, ttl: 63)
        let podError = F.podUnreachable(about: reply)
        let out = h.run(podError, from: Topo.greenA)
        let wireReply = F.udp(
            Topo.gatewayMAC,
            Topo.nodeMAC,
            Topo.world,
            Topo.underlay,
            sport: 53,
            dport: 20000,
            ttl: 63
        )
        let expected = F.error(
            Topo.nodeMAC,
            Topo.gatewayMAC,
            Topo.underlay,
            Topo.world,
            type: 3,
            code: 3,
            quote: Array(wireReply[14...]),
            ttl: 63
        )
        #expect(out.first?.bytes == expected)
        #expect(h.pipeline.nat.stats(proto: 17).flows == 1)  // no translation made for it
        // About a flow that was never translated: dropped.
        let other = F.error(
            Topo.greenAMAC,
            .vrouter,
            Topo.greenAIP,
            Topo.world,
            type: 3,
            code: 3,
            quote: Array(F.udp(.vrouter, Topo.greenAMAC, Topo.world, Topo.greenAIP, sport: 53, dport: 41000)[14...])
        )
        #expect(h.run(other, from: Topo.greenA).isEmpty)
        #expect(h.drops(.natNoMapping) == 1)
    }

    @Test func nothingFromOutsideOpensAConnection() {
        let h = natHarness()
        // A SYN to the node's address on a port of the range, and one to the pod itself.
        let toNode = F.tcp(
            Topo.gatewayMAC,
            Topo.nodeMAC,
            Topo.world,
            Topo.underlay,
            sport: 80,
            dport: 20000,
            flags: 0x02
        )
        #expect(h.run(toNode, from: Topo.fabricPort).isEmpty)
        #expect(h.drops(.natNoMapping) == 1)
        let toPod = F.tcp(Topo.gatewayMAC, Topo.nodeMAC, Topo.world, Topo.greenAIP, sport: 80, dport: 22, flags: 0x02)
        #expect(h.run(toPod, from: Topo.fabricPort).isEmpty)
        #expect(h.drops(.notTunnel) == 1)
        // A reply from another port of the server than the one the flow went to.
        _ = h.run(
            fromGreenA(sport: 40000, dport: 53),
            from: Topo.greenA
        )
        let wrong = worldToNode(sport: 54, dport: 20000)
        #expect(h.run(wrong, from: Topo.fabricPort).isEmpty)
        #expect(h.drops(.natNoMapping) == 2)
    }

    @Test func portsRunOutIntoANamedDrop() {
        let h = natHarness()
        for sport in UInt16(1000)..<1004 {
            let o = h.run(
                fromGreenA(sport: sport, dport: 53),
                from: Topo.greenA
            )
            #expect(o.first.map { be16($0.bytes, 34) } == 20000 + sport - 1000)
        }
        // A fifth flow to the same server and port: every port already has one.
        #expect(
            h.run(fromGreenA(sport: 1004, dport: 53), from: Topo.greenA)
                .isEmpty
        )
        #expect(h.drops(.natPortsExhausted) == 1)
        #expect(h.pipeline.nat.stats(proto: 17) == SNATProtocolStats(flows: 4, portsInUse: 4))
        // To another port of that server a port can be shared: its reverse key differs.
        let shared = h.run(
            fromGreenA(sport: 1005, dport: 123),
            from: Topo.greenA
        )
        #expect(shared.count == 1)
        #expect(h.pipeline.nat.stats(proto: 17) == SNATProtocolStats(flows: 5, portsInUse: 4))
        // TCP and ICMP have ports of their own.
        #expect(h.run(F.echo(Topo.greenAMAC, .vrouter, Topo.greenAIP, Topo.world, id: 1), from: Topo.greenA).count == 1)
    }

    @Test func whatCannotBeTranslatedIsDroppedByName() {
        let h = natHarness()
        // Source port 0, and a protocol without ports (GRE).
        #expect(
            h.run(fromGreenA(sport: 0, dport: 53), from: Topo.greenA)
                .isEmpty
        )
        var gre = fromGreenA(sport: 1, dport: 2)
        gre[23] = 47
        gre[24] = 0
        gre[25] = 0
        let c = refChecksum(Array(gre[14..<34]))
        gre[24] = UInt8(c >> 8)
        gre[25] = UInt8(c & 0xFF)
        #expect(h.run(gre, from: Topo.greenA).isEmpty)
        #expect(h.drops(.natUnsupported) == 2)
        // No range on this worker: every port is "exhausted".
        let none = PipelineHarness(topology: SampleTopology(fabricServices: true))
        #expect(
            none.run(fromGreenA(sport: 9, dport: 53), from: Topo.greenA)
                .isEmpty
        )
        #expect(none.drops(.natPortsExhausted) == 1)
    }

    /// A pair ages as one: a one-way stream keeps it; once both directions are idle it
    /// goes, the port with it, and a late reply is dropped and counted.
    @Test func pairsAgeTogetherAndLateRepliesAreDropped() {
        let h = natHarness(idle: 1_000)
        let request = fromGreenA(sport: 40000, dport: 53)
        let reply = worldToNode(sport: 53, dport: 20000)
        _ = h.run(request, from: Topo.greenA)
        for _ in 0..<3 {
            h.now += 800
            _ = h.run(request, from: Topo.greenA)
            _ = h.pipeline.age(now: h.now, maxScan: 1 << 20)
        }
        #expect(h.pipeline.nat.stats(proto: 17).flows == 1)  // the reverse is 2.4 s idle, the forward not
        #expect(h.run(reply, from: Topo.fabricPort).count == 1)
        h.now += 1_500
        #expect(h.pipeline.age(now: h.now, maxScan: 1 << 20) == 2)
        #expect(h.events(.natExpired) == 1)
        #expect(h.pipeline.nat.stats(proto: 17) == SNATProtocolStats())
        #expect(h.pipeline.flows4.count == 0)
        #expect(h.run(reply, from: Topo.fabricPort).isEmpty)
        #expect(h.drops(.natNoMapping) == 1)
        // The port is not reused at once: the next translation takes the next port.
        let again = h.run(request, from: Topo.greenA)
        #expect(again.first.map { be16($0.bytes, 34) } == 20001)
    }

    /// TCP: closing needs both FINs, or one RST; then the pair goes on the short timeout.
    @Test func tcpPairsCloseOnBothFinsOrOneReset() {
        var c = PipelineConfig()
        c.snat = SNATPortRange(first: 20000, last: 20003)
        c.flowClosingTimeout = 100
        let h = PipelineHarness(config: c, topology: SampleTopology(fabricServices: true))
        func fromPod(_ sport: UInt16, _ flags: UInt8) -> [UInt8] {
            F.tcp(Topo.greenAMAC, .vrouter, Topo.greenAIP, Topo.world, sport: sport, dport: 80, flags: flags)
        }
        func fromWorld(_ dport: UInt16, _ flags: UInt8) -> [UInt8] {
            F.tcp(Topo.gatewayMAC, Topo.nodeMAC, Topo.world, Topo.underlay, sport: 80, dport: dport, flags: flags)
        }
        _ = h.run(fromPod(1, 0x02), from: Topo.greenA)  // port 20000
        _ = h.run(fromPod(2, 0x02), from: Topo.greenA)  // port 20001
        _ = h.run(fromPod(1, 0x11), from: Topo.greenA)  // FIN from the pod only: half closed
        _ = h.run(fromWorld(20001, 0x14), from: Topo.fabricPort)  // RST from the server
        h.now += 200
        _ = h.pipeline.age(now: h.now, maxScan: 1 << 20)
        #expect(h.pipeline.nat.stats(proto: 6).flows == 1)  // the reset one went, the half-closed stays
        _ = h.run(fromWorld(20000, 0x11), from: Topo.fabricPort)  // the other FIN
        h.now += 200
        _ = h.pipeline.age(now: h.now, maxScan: 1 << 20)
        #expect(h.pipeline.nat.stats(proto: 6).flows == 0)
    }

    /// Table changes bump generations; translated flows keep their ports through them.
    @Test func translationsSurviveTableChanges() {
        let h = natHarness()
        let request = fromGreenA(sport: 40000, dport: 53)
        let reply = worldToNode(sport: 53, dport: 20000)
        _ = h.run(request, from: Topo.greenA)
        // A port change bumps every VRF's generation.
        var p = h.topology.builder.ports[Topo.redA]!
        p.mtu = 1400
        try! h.topology.builder.setPort(Topo.redA, p)
        h.rebuild()
        #expect(h.run(reply, from: Topo.fabricPort).first?.port == Topo.greenA)
        #expect(h.run(request, from: Topo.greenA).first.map { be16($0.bytes, 34) } == 20000)
        #expect(h.events(.flowStale) == 2)
        #expect(h.events(.natCreated) == 1)
        // An overlay route now covers the server: the translation ends, the port returns.
        try! h.topology.builder.addRoute(
            vrf: Topo.green,
            IPv4Prefix("203.0.113.0/24")!,
            RouteTarget(nexthop: Topo.nhNodeA, label: 77)
        )
        h.rebuild()
        let now = h.run(request, from: Topo.greenA)
        #expect(now.first.map { be16($0.bytes, 36) } == 4789)  // VXLAN now
        #expect(h.pipeline.nat.stats(proto: 17) == SNATProtocolStats())
        #expect(h.run(reply, from: Topo.fabricPort).isEmpty)
    }

    @Test func flushingAVRFReleasesItsTranslations() {
        let h = natHarness()
        _ = h.run(fromGreenA(sport: 1, dport: 53), from: Topo.greenA)
        _ = h.run(fromGreenA(sport: 2, dport: 53), from: Topo.greenA)
        #expect(h.pipeline.flows4.count == 4)
        h.pipeline.removeFlows(vrf: Topo.green)
        #expect(h.pipeline.flows4.count == 0)
        #expect(h.pipeline.nat.stats(proto: 17) == SNATProtocolStats())
        _ = h.run(fromGreenA(sport: 1, dport: 53), from: Topo.greenA)
        // The underlay VRF's entries alone: the forward is an orphan aging removes.
        h.pipeline.removeFlows(vrf: Topo.underlayVRF)
        #expect(h.pipeline.flows4.count == 1)
        #expect(h.pipeline.age(now: h.now, maxScan: 1 << 20) == 1)
        #expect(h.pipeline.nat.stats(proto: 17) == SNATProtocolStats())
        _ = h.run(fromGreenA(sport: 1, dport: 53), from: Topo.greenA)
        h.pipeline.removeAllFlows()
        #expect(h.pipeline.nat.stats(proto: 17) == SNATProtocolStats())
    }

    @Test func translatedFlowsAreNeverEvicted() {
        var c = PipelineConfig()
        c.snat = SNATPortRange(first: 20000, last: 29999)
        c.flowCapacity = 64
        let h = PipelineHarness(config: c, topology: SampleTopology(fabricServices: true))
        for sport in UInt16(1)...16 {
            _ = h.run(
                fromGreenA(sport: sport, dport: 53),
                from: Topo.greenA
            )
        }
        // Far more plain flows than the table holds.
        for sport in UInt16(1)...400 {
            _ = h.run(Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, Topo.blueBIP, sport: sport), from: Topo.blueA)
        }
        #expect(h.pipeline.nat.stats(proto: 17).flows == 16)
        for sport in UInt16(1)...16 {
            let r = worldToNode(sport: 53, dport: 20000 + sport - 1)
            #expect(h.run(r, from: Topo.fabricPort).first?.port == Topo.greenA)
        }
    }
}

@Suite struct PipelineFabricForwardingTests {
    @Test func podsOfAnIPFabricNetworkLeaveUntunneledWithTheirOwnAddress() {
        let h = natHarness()
        let out = h.run(
            F.udp(Topo.purpleAMAC, .vrouter, Topo.purpleAIP, Topo.world, sport: 7, dport: 9),
            from: Topo.purpleA
        )
        #expect(out.first?.port == Topo.fabricPort)
        #expect(
            out.first?.bytes
                == F.udp(Topo.nodeMAC, Topo.gatewayMAC, Topo.purpleAIP, Topo.world, sport: 7, dport: 9, ttl: 63)
        )
        // To a pod of the network on node C: straight to node C, no tunnel.
        let remote = IPv4Address(198, 18, 2, 10)
        let c = h.run(F.udp(Topo.purpleAMAC, .vrouter, Topo.purpleAIP, remote, sport: 7, dport: 9), from: Topo.purpleA)
        #expect(
            c.first?.bytes == F.udp(Topo.nodeMAC, Topo.nodeCMAC, Topo.purpleAIP, remote, sport: 7, dport: 9, ttl: 63)
        )
        #expect(h.events(.natCreated) == 0)
    }

    @Test func theFabricReachesLocalPodsDirectly() {
        let h = natHarness()
        let `in` = F.udp(Topo.gatewayMAC, Topo.nodeMAC, Topo.world, Topo.purpleAIP, sport: 9, dport: 7)
        let out = h.run(`in`, from: Topo.fabricPort)
        #expect(out.first?.port == Topo.purpleA)
        #expect(
            out.first?.bytes
                == F.udp(.vrouter, Topo.purpleAMAC, Topo.world, Topo.purpleAIP, sport: 9, dport: 7, ttl: 63)
        )
        // Not to a pod here: never forwarded back out (no transit), nor into an overlay.
        for dst in [IPv4Address(198, 18, 2, 10), IPv4Address(203, 0, 113, 9), Topo.blueAIP] {
            #expect(
                h.run(F.udp(Topo.gatewayMAC, Topo.nodeMAC, Topo.world, dst, sport: 9, dport: 7), from: Topo.fabricPort)
                    .isEmpty
            )
        }
        #expect(h.drops(.notTunnel) == 3)
    }

    @Test func theNodeAnswersARPOnTheFabricForItsLocalPods() {
        let h = natHarness()
        let ask = Packets.arpRequest(from: Topo.gatewayMAC, Topo.underlayGateway, asking: Topo.purpleAIP)
        let out = h.run(ask, from: Topo.fabricPort)
        #expect(out.count == 1)
        #expect(out.first.map { Array($0.bytes[22..<28]) } == bytes(Topo.nodeMAC))  // sender: the fabric MAC
        #expect(out.first.map { Array($0.bytes[28..<32]) } == bytes(Topo.purpleAIP))
        // Not for pods of overlay networks, nor for remote ones.
        for target in [Topo.greenAIP, IPv4Address(198, 18, 2, 10)] {
            #expect(
                h.run(
                    Packets.arpRequest(from: Topo.gatewayMAC, Topo.underlayGateway, asking: target),
                    from: Topo.fabricPort
                ).isEmpty
            )
        }
    }
}

@Suite struct FabricTableTests {
    @Test func snatNeedsAFabricWithAnUnderlayVRF() {
        var b = SampleTopology().builder
        #expect(throws: TableError.self) { try b.setNexthop(99, .sourceNAT(fabric: Topo.fabricPort)) }
        #expect(throws: TableError.self) { try b.setNexthop(99, .sourceNAT(fabric: Topo.blueA)) }
        #expect(throws: TableError.self) { try b.setNexthop(99, .vrfTranslate(vrf: 42)) }
        #expect(throws: TableError.self) {
            try b.setNexthop(99, .underlay(port: Topo.fabricPort, via: IPv4Address(224, 0, 0, 1), mac: .zero))
        }
        var f = SampleTopology(fabricServices: true).builder
        #expect(throws: TableError.self) { try f.removeVRF(Topo.underlayVRF) }
        var fabric = f.ports[Topo.fabricPort]!
        fabric.underlayVRF = nil
        #expect(throws: TableError.self) { try f.setPort(Topo.fabricPort, fabric) }
        #expect(throws: TableError.self) {
            try f.setNexthop(99, .composite([RouteTarget(nexthop: Topo.nhSNAT)]))
        }
    }

    @Test func encapNexthopsCarryThePodAddress() {
        var b = SampleTopology(fabricServices: true).builder
        let t = b.build()
        #expect(t.view.nexthops[Int(Topo.nhGreenA)].address == Topo.greenAIP.value)
        let u = t.view.nexthops[Int(Topo.nhUnderlayGateway)]
        #expect(
            u.kind == NexthopKind.underlay && u.tunnelSource == Topo.underlay.value && u.dstMAC == Topo.gatewayMAC.value
        )
        #expect(t.view.ports[Int(Topo.fabricPort)].flags.contains(PortFlags.underlayVRF))
    }
}
