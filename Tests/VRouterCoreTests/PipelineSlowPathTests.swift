import Testing

@testable import VRouterCore

@Suite struct PipelineSlowPathTests {
    @Test func ttlExpiryAnswersWithTimeExceededFromTheGateway() {
        let h = PipelineHarness()
        let pkt = Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, Topo.blueBIP, ttl: 1)
        let out = h.run(pkt, from: Topo.blueA)
        #expect(h.drops(.ttlExpired) == 1)
        #expect(out.count == 1)
        guard let o = out.first else { return }
        let p = o.parsed
        #expect(o.port == Topo.blueA)  // back to the sender
        #expect(Array(o.bytes[0..<6]) == [0x02, 0, 0, 0x01, 0, 0x0A])
        #expect(p.sourceIPv4 == Topo.blueGateway)
        #expect(p.destinationIPv4 == Topo.blueAIP)
        #expect(p.proto == IPProtocol.icmp)
        #expect(p.icmpType == 11 && p.icmpCode == 0)
        #expect(Packets.ipv4Checksum(o.bytes, at: 14))
        #expect(o.bytes.withUnsafeBytes { Checksum.sum($0.baseAddress! + 34, count: $0.count - 34) } == 0xFFFF)
        // The quote starts with the original IP header.
        #expect(Array(o.bytes[42..<62]) == Array(pkt[14..<34]))
        #expect(h.events(.icmpErrorSent) == 1)
        // TTL 1 on an ICMP error itself gets no error back.
    }

    @Test func noRouteAnswersWithNetUnreachable() {
        let h = PipelineHarness()
        let out = h.run(
            Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, IPv4Address(198, 51, 100, 77)),
            from: Topo.blueA
        )
        #expect(h.drops(.noRoute) == 1)
        #expect(out.count == 1)
        #expect(out.first?.parsed.icmpType == 3)
        #expect(out.first?.parsed.icmpCode == 0)
        #expect(out.first?.port == Topo.blueA)
    }

    @Test func icmpErrorsAreRateLimited() {
        var config = PipelineConfig()
        config.icmpErrorBurst = 5
        config.icmpErrorsPerSecond = 1
        let h = PipelineHarness(config: config)
        var frame: [([UInt8], UInt16)] = []
        for i in 0..<20 {
            frame.append(
                (Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, IPv4Address(198, 51, 100, UInt8(i + 2))), Topo.blueA)
            )
        }
        let out = h.run(frame)
        #expect(out.count == 5)
        #expect(h.drops(.noRoute) == 20)
        #expect(h.events(.icmpErrorSuppressed) == 15)
    }

    @Test func tooBigWithDFGetsFragmentationNeededWithTheTunnelMTU() {
        let h = PipelineHarness()
        // 1500-byte IP packet toward the VXLAN tunnel: it fits the pod MTU, not the tunnel's 1450.
        let pkt = Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, IPv4Address(192, 0, 2, 200), payload: 1472, df: true)
        let out = h.run(pkt, from: Topo.blueA)
        #expect(h.drops(.mtuExceeded) == 1)
        #expect(out.count == 1)
        guard let o = out.first else { return }
        #expect(o.parsed.icmpType == 3 && o.parsed.icmpCode == 4)
        #expect(Array(o.bytes[40..<42]) == [0x05, 0xAA])  // next-hop MTU 1450
        #expect(o.bytes.count <= 14 + 576)
    }

    @Test func tooBigWithoutDFIsFragmentedBeforeEncapsulation() {
        let h = PipelineHarness()
        let pkt = Packets.udp4(
            from: Topo.blueAMAC,
            Topo.blueAIP,
            IPv4Address(192, 0, 2, 200),
            payload: 1472,
            df: false,
            id: 0x4242
        )
        let out = h.run(pkt, from: Topo.blueA)
        #expect(out.count == 2)
        #expect(h.events(.fragmentsMade) == 2)
        var reassembled: [UInt8] = []
        for o in out {
            #expect(o.port == Topo.fabricPort)
            #expect(o.bytes.count - 14 <= 1500)  // the outer packet fits the fabric MTU
            #expect(o.bytes[20] & 0x20 == 0 && o.bytes[21] == 0)  // the outer packet is no fragment
            #expect(Packets.ipv4Checksum(o.bytes, at: 14))
            let inner = Array(o.bytes[64...])  // outer 50 + inner Ethernet 14
            #expect(Packets.ipv4Checksum(inner, at: 0))
            #expect(Array(inner[4..<6]) == [0x42, 0x42])
            let ihl = Int(inner[0] & 0xF) * 4
            reassembled += inner[ihl...]
        }
        #expect(reassembled == Array(pkt[34...]))
    }

    @Test func synsEnteringATunnelGetTheirMSSClamped() {
        let h = PipelineHarness()
        let syn = Packets.build(128) { p in
            var o = PacketBuilder.ethernet(p, destination: .vrouter, source: Topo.blueAMAC, etherType: EtherType.ipv4)
            let ip = o
            o += 20
            let n = PacketBuilder.tcp(
                p + o,
                sourcePort: 40000,
                destinationPort: 80,
                sequence: 1,
                acknowledgment: 0,
                flags: .syn,
                window: 65535,
                mss: 1460,
                payloadLength: 0,
                pseudoHeader: .ipv4(source: Topo.blueAIP, destination: IPv4Address(192, 0, 2, 200))
            )
            _ = PacketBuilder.ipv4(
                p + ip,
                source: Topo.blueAIP,
                destination: IPv4Address(192, 0, 2, 200),
                proto: IPProtocol.tcp,
                payloadLength: n
            )
            return o + n
        }
        let out = h.run(syn, from: Topo.blueA)
        #expect(out.count == 1)
        guard let o = out.first else { return }
        let tcp = 50 + 14 + 20
        #expect(Array(o.bytes[(tcp + 22)..<(tcp + 24)]) == [0x05, 0x82])  // 1450 - 40 = 1410
        let ipLen = o.bytes.count - 64
        let sum = o.bytes.withUnsafeBytes { raw -> UInt16 in
            let init32 = Checksum.pseudoHeaderIPv4(
                src: Topo.blueAIP.value,
                dst: IPv4Address(192, 0, 2, 200).value,
                proto: 6,
                length: ipLen - 20
            )
            return Checksum.sum(raw.baseAddress! + tcp, count: ipLen - 20, initial: init32)
        }
        #expect(sum == 0xFFFF)
        #expect(h.events(.mssClamped) == 1)
    }

    @Test func neighbourSolicitationsGetTheVRouterMAC() {
        let h = PipelineHarness()
        let linkLocal = IPv6Address("fe80::1:a")!
        let target = Topo.blueGateway6
        let ns = Packets.build(128) { p in
            // Solicited-node multicast destination ff02::1:ff00:1.
            let dst = IPv6Address("ff02::1:ff00:1")!
            var o = PacketBuilder.ethernet(
                p,
                destination: MACAddress(0x3333_FF00_0001),
                source: Topo.blueAMAC,
                etherType: EtherType.ipv6
            )
            let ip = o
            o += 40
            p.setU8(o, 135)
            p.setU8(o + 1, 0)
            p.setBE16(o + 2, 0)
            p.setBE32(o + 4, 0)
            p.setBE128(o + 8, target.value)
            p.setU8(o + 24, 1)
            p.setU8(o + 25, 1)
            p.setBE48(o + 26, Topo.blueAMAC.value)
            let len = 32
            _ = PacketBuilder.ipv6(
                p + ip,
                source: linkLocal,
                destination: dst,
                nextHeader: IPProtocol.icmpv6,
                payloadLength: len,
                hopLimit: 255
            )
            let c = Checksum.compute(
                p + o,
                count: len,
                initial: Checksum.pseudoHeaderIPv6(src: linkLocal.value, dst: dst.value, nextHeader: 58, length: len)
            )
            p.setBE16(o + 2, c)
            return o + len
        }
        let out = h.run(ns, from: Topo.blueA)
        #expect(out.count == 1)
        guard let o = out.first else { return }
        let p = o.parsed
        #expect(p.icmpType == 136)
        #expect(p.destinationIPv6 == linkLocal)
        #expect(Array(o.bytes[6..<12]) == [0x00, 0x00, 0x5E, 0x00, 0x01, 0x00])
        #expect(h.events(.ndAdvertisement) == 1)
    }

    @Test func echoToTheIPv6GatewayIsAnswered() {
        let h = PipelineHarness()
        let ping = Packets.build(128) { p in
            var o = PacketBuilder.ethernet(p, destination: .vrouter, source: Topo.blueAMAC, etherType: EtherType.ipv6)
            let ip = o
            o += 40
            let payload: [UInt8] = Array(0..<16)
            let n = payload.withUnsafeBytes {
                PacketBuilder.icmpv6Echo(
                    p + o,
                    isReply: false,
                    identifier: 9,
                    sequence: 1,
                    payload: $0,
                    source: Topo.blueAIPv6,
                    destination: Topo.blueGateway6
                )
            }
            _ = PacketBuilder.ipv6(
                p + ip,
                source: Topo.blueAIPv6,
                destination: Topo.blueGateway6,
                nextHeader: IPProtocol.icmpv6,
                payloadLength: n
            )
            return o + n
        }
        let out = h.run(ping, from: Topo.blueA)
        #expect(out.count == 1)
        #expect(out.first?.parsed.icmpType == 129)
        #expect(out.first?.parsed.sourceIPv6 == Topo.blueGateway6)
        #expect(out.first?.port == Topo.blueA)
    }

    @Test func fabricARPRepliesGoToTheControlPlane() {
        let h = PipelineHarness()
        let reply = Packets.build(64) { p in
            PacketBuilder.arpReplyFrame(
                p,
                senderMAC: Topo.nodeAMAC,
                senderIP: Topo.nodeA,
                targetMAC: Topo.nodeMAC,
                targetIP: Topo.underlay
            )
        }
        let out = h.run(reply, from: Topo.fabricPort)
        #expect(out.count == 1)
        #expect(out.first?.port == PacketMeta.puntPort)
        #expect(h.events(.punted) == 1)
    }

    @Test func aVRFQuotaKeepsOneVRFFromTakingTheWholeFlowTable() {
        var config = PipelineConfig()
        config.flowQuotaPerVRF = 10
        let h = PipelineHarness(config: config)
        var frame: [([UInt8], UInt16)] = []
        for i in 0..<40 {
            frame.append(
                (Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, Topo.blueBIP, sport: UInt16(1000 + i)), Topo.blueA)
            )
        }
        let out = h.run(frame)
        #expect(out.count == 40)  // still forwarded, just not cached
        #expect(h.events(.flowInstalled) == 10)
        #expect(h.events(.flowInstallFailed) == 30)
        #expect(h.pipeline.flows4.count(vrf: Topo.blue) == 10)
        // Another VRF still gets its flows.
        _ = h.run(Packets.udp4(from: Topo.redAMAC, Topo.redAIP, IPv4Address(198, 51, 100, 200)), from: Topo.redA)
        #expect(h.pipeline.flows4.count(vrf: Topo.red) == 1)
    }

    @Test func idleFlowsAgeOutAndClosingOnesFaster() {
        var config = PipelineConfig()
        config.flowIdleTimeout = 10_000
        config.flowClosingTimeout = 1_000
        let h = PipelineHarness(config: config)
        _ = h.run(Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, Topo.blueBIP, sport: 1), from: Topo.blueA)
        let fin = Packets.build(128) { p in
            var o = PacketBuilder.ethernet(p, destination: .vrouter, source: Topo.blueAMAC, etherType: EtherType.ipv4)
            let ip = o
            o += 20
            let n = PacketBuilder.tcp(
                p + o,
                sourcePort: 2,
                destinationPort: 80,
                sequence: 1,
                acknowledgment: 1,
                flags: [.fin, .ack],
                window: 100,
                payloadLength: 0,
                pseudoHeader: .ipv4(source: Topo.blueAIP, destination: Topo.blueBIP)
            )
            _ = PacketBuilder.ipv4(
                p + ip,
                source: Topo.blueAIP,
                destination: Topo.blueBIP,
                proto: IPProtocol.tcp,
                payloadLength: n
            )
            return o + n
        }
        _ = h.run(fin, from: Topo.blueA)
        #expect(h.pipeline.flows4.count == 2)
        #expect(h.pipeline.age(now: h.now + 2_000, maxScan: 1 << 20) == 1)  // the closing TCP flow
        #expect(h.pipeline.flows4.count == 1)
        #expect(h.pipeline.age(now: h.now + 20_000, maxScan: 1 << 20) == 1)  // the idle UDP flow
        #expect(h.pipeline.flows4.count == 0)
    }
}
