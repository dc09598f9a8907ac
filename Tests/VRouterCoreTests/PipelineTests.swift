import Testing

@testable import VRouterCore

typealias Topo = SampleTopology

@Suite struct PipelineForwardingTests {
    @Test func localDeliveryRewritesL2AndTTL() {
        let h = PipelineHarness()
        let pkt = Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, Topo.blueBIP, ttl: 64)
        let out = h.run(pkt, from: Topo.blueA)
        #expect(out.count == 1)
        let o = out[0]
        #expect(o.port == Topo.blueB)
        #expect(Array(o.bytes[0..<6]) == [0x02, 0x00, 0x00, 0x01, 0x00, 0x0B])  // pod blue-b's MAC
        #expect(Array(o.bytes[6..<12]) == [0x00, 0x00, 0x5E, 0x00, 0x01, 0x00])  // vRouter MAC
        #expect(o.bytes[14 + 8] == 63)  // TTL decremented
        #expect(Packets.ipv4Checksum(o.bytes, at: 14))
        // Everything but TTL and checksum is unchanged.
        var expected = pkt
        expected[0..<12] = o.bytes[0..<12]
        expected[22] = 63
        expected[24] = o.bytes[24]
        expected[25] = o.bytes[25]
        #expect(o.bytes == expected)
        #expect(h.events(.localDelivery) == 1)
        #expect(h.events(.flowMiss) == 1)
        #expect(h.events(.flowInstalled) == 1)
        // The second packet of the flow hits the cache.
        _ = h.run(pkt, from: Topo.blueA)
        #expect(h.events(.flowHit) == 1)
        #expect(h.counters.totalDrops == 0)
        #expect(h.counters.ports[Int(Topo.blueA)].rxPackets == 2)
        #expect(h.counters.ports[Int(Topo.blueB)].txPackets == 2)
    }

    @Test func vxlanEncapsulationFollowsRFC7348() {
        let h = PipelineHarness()
        let pkt = Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, IPv4Address(192, 0, 2, 200), sport: 1234, dport: 5678)
        let out = h.run(pkt, from: Topo.blueA)
        #expect(out.count == 1)
        let o = out[0]
        #expect(o.port == Topo.fabricPort)
        #expect(o.bytes.count == pkt.count + 50)
        let outer = o.parsed
        #expect(outer.isValid)
        #expect(outer.sourceIPv4 == Topo.underlay)
        #expect(outer.destinationIPv4 == Topo.nodeA)
        #expect(outer.proto == IPProtocol.udp)
        #expect(outer.destinationPort == 4789)
        #expect(outer.sourcePort >= 49152)
        #expect(Packets.ipv4Checksum(o.bytes, at: 14))
        #expect(Array(o.bytes[0..<12]) == [0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01])
        #expect(o.bytes[20] & 0x40 == 0)  // outer DF clear
        #expect(o.bytes[22] == 64)  // outer TTL
        #expect(Array(o.bytes[40..<42]) == [0, 0])  // UDP checksum 0
        #expect(Array(o.bytes[42..<50]) == [0x08, 0, 0, 0, 0x00, 0x03, 0xE9, 0x00])  // I flag, VNI 1001
        // The inner frame: Ethernet to the remote router, the IP packet with TTL - 1.
        let inner = Array(o.bytes[50...])
        #expect(Array(inner[0..<6]) == [0x00, 0x00, 0x5E, 0x00, 0x01, 0x00])
        #expect(Array(inner[14...]).count == pkt.count - 14)
        var expectedIP = Array(pkt[14...])
        expectedIP[8] = 63
        expectedIP[10] = inner[24]
        expectedIP[11] = inner[25]
        #expect(Array(inner[14...]) == expectedIP)
        #expect(Packets.ipv4Checksum(inner, at: 14))
        // Decapsulating gives the inner frame back.
        let d = o.bytes.withUnsafeBytes { TunnelDecap.vxlan($0.baseAddress!, length: $0.count, udpOffset: 34) }
        #expect(d.dropReason == nil)
        #expect(d.labelOrVNI == Topo.vniBlue)
        #expect(Array(o.bytes[d.innerOffset..<d.innerOffset + d.innerLength]) == inner)
        #expect(h.events(.vxlanEncap) == 1)
    }

    @Test func mplsOverUDPEncapsulationFollowsRFC7510() {
        let h = PipelineHarness()
        let pkt = Packets.udp4(from: Topo.redAMAC, Topo.redAIP, IPv4Address(198, 51, 100, 200))
        let out = h.run(pkt, from: Topo.redA)
        #expect(out.count == 1)
        let o = out[0]
        #expect(o.port == Topo.fabricPort)
        #expect(o.bytes.count == pkt.count - 14 + 46)
        let outer = o.parsed
        #expect(outer.destinationIPv4 == Topo.nodeB)
        #expect(outer.destinationPort == 6635)
        #expect(outer.sourcePort >= 49152)
        #expect(Packets.ipv4Checksum(o.bytes, at: 14))
        // Label 200, TC 0, S 1, TTL 64.
        #expect(Array(o.bytes[42..<46]) == [0x00, 0x0C, 0x81, 0x40])
        let d = o.bytes.withUnsafeBytes { TunnelDecap.mplsOverUDP($0.baseAddress!, length: $0.count, udpOffset: 34) }
        #expect(d.labelOrVNI == Topo.labelAtNodeBRed)
        var expectedIP = Array(pkt[14...])
        expectedIP[8] = 63
        expectedIP[10] = o.bytes[46 + 10]
        expectedIP[11] = o.bytes[46 + 11]
        #expect(Array(o.bytes[d.innerOffset...]) == expectedIP)
        #expect(h.events(.mplsEncap) == 1)
    }

    @Test func vxlanAndMPLSDecapsulationDeliverToPods() {
        let h = PipelineHarness()
        // VXLAN VNI 1001 → VRF blue → route to blue-a.
        let inner = Packets.udp4(
            from: MACAddress(0x0200_0000_9999),
            to: .vrouter,
            IPv4Address(192, 0, 2, 130),
            Topo.blueAIP
        )
        let out1 = h.run(Packets.vxlan(inner, vni: Topo.vniBlue), from: Topo.fabricPort)
        #expect(out1.count == 1)
        #expect(out1.first?.port == Topo.blueA)
        if let o = out1.first {
            #expect(Array(o.bytes[0..<6]) == [0x02, 0, 0, 0x01, 0, 0x0A])
            #expect(Array(o.bytes[14...]) == Array(inner[14...]))  // not routed here: TTL unchanged
        }
        // MPLS label 18 → red-a directly (no route lookup).
        let ip = Array(Packets.udp4(from: .zero, IPv4Address(198, 51, 100, 130), Topo.redAIP)[14...])
        let out2 = h.run(Packets.mplsUDP(ip, label: Topo.labelToRedA), from: Topo.fabricPort)
        #expect(out2.count == 1)
        #expect(out2.first?.port == Topo.redA)
        if let o = out2.first {
            #expect(Array(o.bytes[0..<6]) == [0x02, 0, 0, 0x02, 0, 0x0A])
            #expect(Array(o.bytes[12..<14]) == [0x08, 0x00])
            #expect(Array(o.bytes[14...]) == ip)
        }
        #expect(h.events(.vxlanDecap) == 1)
        #expect(h.events(.mplsDecap) == 1)
        #expect(h.counters.totalDrops == 0)
    }

    @Test func badTunnelPacketsAreCounted() {
        let h = PipelineHarness()
        let inner = Packets.udp4(from: .zero, IPv4Address(192, 0, 2, 130), Topo.blueAIP)
        _ = h.run(Packets.vxlan(inner, vni: 4242), from: Topo.fabricPort)
        #expect(h.drops(.invalidVNI) == 1)
        let ip = Array(inner[14...])
        _ = h.run(Packets.mplsUDP(ip, label: 999), from: Topo.fabricPort)
        #expect(h.drops(.invalidLabel) == 1)
        _ = h.run(Packets.mplsUDP(ip, label: Topo.labelToBlueA, ttl: 0), from: Topo.fabricPort)
        #expect(h.drops(.ttlExpired) == 1)
        // Not addressed to our underlay address.
        _ = h.run(Packets.vxlan(inner, vni: Topo.vniBlue, to: IPv4Address(198, 18, 0, 99)), from: Topo.fabricPort)
        #expect(h.drops(.notTunnel) == 1)
    }

    @Test func ecmpSpreadsFlowsAndKeepsEachFlowOnOneMember() {
        let h = PipelineHarness()
        var perMember: [IPv4Address: Int] = [:]
        for flow in 0..<200 {
            let dst = IPv4Address(203, 0, 113, UInt8(flow % 250 + 1))
            let pkt = Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, dst, sport: UInt16(10000 + flow))
            var seen: Set<IPv4Address> = []
            for _ in 0..<3 {
                for o in h.run(pkt, from: Topo.blueA) { seen.insert(o.parsed.destinationIPv4) }
            }
            #expect(seen.count == 1, "flow \(flow) moved between members")
            perMember[seen.first!, default: 0] += 1
        }
        #expect(perMember.count == 2)
        #expect(perMember.values.allSatisfy { $0 > 50 })
        #expect(h.counters.totalDrops == 0)
    }

    @Test func vrfsAreIsolated() {
        let h = PipelineHarness()
        // blue-a cannot reach red-a: blue has no route to 198.51.100.10.
        let out = h.run(Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, Topo.redAIP), from: Topo.blueA)
        #expect(out.allSatisfy { $0.port != Topo.redA })
        #expect(h.drops(.noRoute) == 1)
    }

    @Test func spoofedSourcesAreDropped() {
        let h = PipelineHarness()
        let out = h.run(Packets.udp4(from: Topo.blueAMAC, IPv4Address(192, 0, 2, 99), Topo.blueBIP), from: Topo.blueA)
        #expect(out.isEmpty)
        #expect(h.drops(.spoofedSource) == 1)
        // blue-b's address from blue-a's port is also spoofed.
        _ = h.run(Packets.udp4(from: Topo.blueAMAC, Topo.blueBIP, Topo.blueAIP), from: Topo.blueA)
        #expect(h.drops(.spoofedSource) == 2)
        _ = h.run(Packets.udp6(from: Topo.blueAMAC, IPv6Address("2001:db8:1::99")!, Topo.blueBIPv6), from: Topo.blueA)
        #expect(h.drops(.spoofedSource) == 3)
    }

    /// What a pod's kernel sends on its own (DHCP from 0.0.0.0, MLD from ::) is multicast or
    /// broadcast, not spoofing: it is counted under the reason an operator would look for.
    @Test func multicastFromUnconfiguredSourcesIsMulticastNotSpoofing() {
        let h = PipelineHarness()
        _ = h.run(
            Packets.udp4(from: Topo.blueAMAC, IPv4Address(0, 0, 0, 0), IPv4Address(255, 255, 255, 255)),
            from: Topo.blueA
        )
        _ = h.run(
            Packets.udp4(from: Topo.blueAMAC, IPv4Address(0, 0, 0, 0), IPv4Address(224, 0, 0, 22)),
            from: Topo.blueA
        )
        _ = h.run(Packets.udp6(from: Topo.blueAMAC, IPv6Address("::")!, IPv6Address("ff02::16")!), from: Topo.blueA)
        #expect(h.drops(.multicast) == 3)
        #expect(h.drops(.spoofedSource) == 0)
    }

    @Test func ipv6LocalAndTunnel() {
        let h = PipelineHarness()
        let out = h.run(Packets.udp6(from: Topo.blueAMAC, Topo.blueAIPv6, Topo.blueBIPv6), from: Topo.blueA)
        #expect(out.count == 1)
        #expect(out.first?.port == Topo.blueB)
        #expect(out.first?.bytes[14 + 7] == 63)
        let out2 = h.run(
            Packets.udp6(from: Topo.blueAMAC, Topo.blueAIPv6, IPv6Address("2001:db8:1:1::5")!),
            from: Topo.blueA
        )
        #expect(out2.first?.port == Topo.fabricPort)
        #expect(out2.first?.parsed.destinationPort == 4789)
        #expect(out2.first.map { Array($0.bytes[62..<64]) } == [0x86, 0xDD])  // inner EtherType IPv6
        #expect(h.counters.totalDrops == 0)
    }

    @Test func aTaggedFabricCarriesTheVLANOnTheOuterHeader() throws {
        let h = PipelineHarness()
        try h.topology.builder.setPort(
            Topo.fabricPort,
            PortConfig(kind: .fabric, name: "fabric0", mac: Topo.nodeMAC, ipv4: Topo.underlay, vlan: 100)
        )
        h.rebuild()
        let pkt = Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, IPv4Address(192, 0, 2, 200))
        let out = h.run(pkt, from: Topo.blueA)
        #expect(out.count == 1)
        guard let o = out.first else { return }
        #expect(o.bytes.count == pkt.count + 54)
        #expect(Array(o.bytes[12..<18]) == [0x81, 0x00, 0x00, 0x64, 0x08, 0x00])
        #expect(Array(o.bytes[54..<60]) == [0x00, 0x00, 0x5E, 0x00, 0x01, 0x00])  // inner Ethernet to the remote router
        #expect(Array(o.bytes[66..<68]) == [0x08, 0x00])
        #expect(Packets.ipv4Checksum(o.bytes, at: 18))
        // Tunnel packets coming back tagged are decapsulated; untagged ones do not match the port.
        let inner = Packets.udp4(from: .zero, IPv4Address(192, 0, 2, 130), Topo.blueAIP)
        var tagged = Packets.vxlan(inner, vni: Topo.vniBlue)
        tagged.insert(contentsOf: [0x81, 0x00, 0x00, 0x64], at: 12)
        #expect(h.run(tagged, from: Topo.fabricPort).first?.port == Topo.blueA)
        _ = h.run(Packets.vxlan(inner, vni: Topo.vniBlue), from: Topo.fabricPort)
        #expect(h.drops(.vlanMismatch) == 1)
    }

    @Test func proxyARPAnswersWithTheVRouterMAC() {
        let h = PipelineHarness()
        let out = h.run(
            Packets.arpRequest(from: Topo.blueAMAC, Topo.blueAIP, asking: Topo.blueGateway),
            from: Topo.blueA
        )
        #expect(out.count == 1)
        if let o = out.first {
            #expect(o.port == Topo.blueA)
            let a = o.bytes.withUnsafeBytes { ARPHeader(UnsafeRawPointer($0.baseAddress! + 14)) }
            _ = a
            #expect(Array(o.bytes[0..<6]) == [0x02, 0, 0, 0x01, 0, 0x0A])
            #expect(Array(o.bytes[20..<22]) == [0, 2])  // reply
            #expect(Array(o.bytes[22..<28]) == [0x00, 0x00, 0x5E, 0x00, 0x01, 0x00])  // sender MAC = vRouter
            #expect(Array(o.bytes[28..<32]) == [192, 0, 2, 1])
            #expect(Array(o.bytes[32..<38]) == [0x02, 0, 0, 0x01, 0, 0x0A])
            #expect(Array(o.bytes[38..<42]) == [192, 0, 2, 10])
        }
        // Any address in the VRF, even one with no route, is answered (everything is routed).
        #expect(
            h.run(
                Packets.arpRequest(from: Topo.blueAMAC, Topo.blueAIP, asking: IPv4Address(192, 0, 2, 77)),
                from: Topo.blueA
            ).count == 1
        )
        // Gratuitous ARP and a probe for its own address are not answered.
        #expect(
            h.run(Packets.arpRequest(from: Topo.blueAMAC, Topo.blueAIP, asking: Topo.blueAIP), from: Topo.blueA).isEmpty
        )
        #expect(h.run(Packets.arpRequest(from: Topo.blueAMAC, .any, asking: Topo.blueAIP), from: Topo.blueA).isEmpty)
        #expect(h.drops(.selfAnnouncement) == 2)
        #expect(h.events(.arpReply) == 2)
        // On the fabric: our underlay address is answered with the fabric MAC.
        let f = h.run(Packets.arpRequest(from: Topo.nodeAMAC, Topo.nodeA, asking: Topo.underlay), from: Topo.fabricPort)
        #expect(f.count == 1)
        #expect(f.first.map { Array($0.bytes[22..<28]) } == [0x02, 0, 0, 0, 0, 0x01])
        #expect(
            h.run(Packets.arpRequest(from: Topo.nodeAMAC, Topo.nodeA, asking: Topo.nodeB), from: Topo.fabricPort)
                .isEmpty
        )
    }

    /// Found by the pipeline fuzzer: an ARP request with 1,800 bytes after the ARP message
    /// was answered with all of them sent back (bigger than the pod's MTU, and a reflection
    /// of whatever the asker put there). The reply ends with the ARP message now.
    @Test func anARPReplyDoesNotCarryWhatTheRequestHadAfterIt() {
        let h = PipelineHarness()
        let request = Packets.arpRequest(from: Topo.blueAMAC, Topo.blueAIP, asking: Topo.blueGateway)
        let padded = request + [UInt8](repeating: 0xEE, count: 1800)
        let out = h.run(padded, from: Topo.blueA)
        #expect(out.count == 1)
        #expect(out.first?.bytes.count == 60)
        #expect(out.first.map { Array($0.bytes[20..<22]) } == [0, 2])
        // A request shorter than the Ethernet minimum gets a reply of the ARP message's size.
        #expect(h.run(Array(request[0..<42]), from: Topo.blueA).first?.bytes.count == 42)
    }

    @Test func echoToTheGatewayAndToTheUnderlayIsAnswered() {
        let h = PipelineHarness()
        let out = h.run(Packets.echo4(from: Topo.blueAMAC, Topo.blueAIP, Topo.blueGateway), from: Topo.blueA)
        #expect(out.count == 1)
        if let o = out.first {
            let p = o.parsed
            #expect(o.port == Topo.blueA)
            #expect(p.sourceIPv4 == Topo.blueGateway)
            #expect(p.destinationIPv4 == Topo.blueAIP)
            #expect(p.icmpType == 0)
            #expect(Packets.ipv4Checksum(o.bytes, at: 14))
            #expect(o.bytes.withUnsafeBytes { Checksum.sum($0.baseAddress! + 34, count: $0.count - 34) } == 0xFFFF)
        }
        var ping = Packets.echo4(from: Topo.nodeAMAC, Topo.nodeA, Topo.underlay)
        ping[0..<6] = [0x02, 0, 0, 0, 0, 0x01]
        let f = h.run(ping, from: Topo.fabricPort)
        #expect(f.count == 1)
        #expect(f.first?.parsed.destinationIPv4 == Topo.nodeA)
        #expect(f.first?.parsed.icmpType == 0)
        #expect(h.events(.echoReply) == 2)
    }

    @Test func routeChangesInvalidateFlows() {
        let h = PipelineHarness()
        let dst = IPv4Address(192, 0, 2, 200)
        let pkt = Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, dst)
        #expect(h.run(pkt, from: Topo.blueA).first?.port == Topo.fabricPort)
        #expect(h.run(pkt, from: Topo.blueA).first?.port == Topo.fabricPort)
        #expect(h.events(.flowHit) == 1)
        // A more specific route now sends 192.0.2.200 to pod blue-b.
        try! h.topology.builder.addRoute(
            vrf: Topo.blue,
            IPv4Prefix(dst, length: 32)!,
            RouteTarget(nexthop: Topo.nhBlueB)
        )
        h.rebuild()
        #expect(h.run(pkt, from: Topo.blueA).first?.port == Topo.blueB)
        #expect(h.events(.flowStale) == 1)
        #expect(h.run(pkt, from: Topo.blueA).first?.port == Topo.blueB)
        #expect(h.events(.flowHit) == 2)
    }
}

@Suite struct PipelineRobustnessTests {
    @Test func truncationsAtEveryOffsetAreCountedNotCrashed() {
        let h = PipelineHarness()
        let samples: [([UInt8], UInt16)] = [
            (Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, Topo.blueBIP), Topo.blueA),
            (Packets.udp6(from: Topo.blueAMAC, Topo.blueAIPv6, Topo.blueBIPv6), Topo.blueA),
            (
                Packets.vxlan(Packets.udp4(from: .zero, IPv4Address(192, 0, 2, 130), Topo.blueAIP), vni: Topo.vniBlue),
                Topo.fabricPort
            ),
            (
                Packets.mplsUDP(
                    Array(Packets.udp4(from: .zero, IPv4Address(192, 0, 2, 130), Topo.blueAIP)[14...]),
                    label: Topo.labelToBlueA
                ), Topo.fabricPort
            ),
            (Packets.arpRequest(from: Topo.blueAMAC, Topo.blueAIP, asking: Topo.blueGateway), Topo.blueA),
        ]
        for (pkt, port) in samples {
            for cut in 0..<pkt.count {
                let before = h.counters.totalDrops
                let out = h.run(Array(pkt[0..<cut]), from: port)
                // A cut packet is either dropped (one reason) or, when only padding was cut, forwarded.
                #expect(out.count + Int(h.counters.totalDrops - before) == 1, "cut at \(cut) of \(pkt.count)")
            }
        }
        #expect(h.drops(.truncated) > 0)
        #expect(h.pool.available == h.pool.count)  // nothing leaked
    }

    @Test func garbageNeverCrashesAndEveryPacketIsAccounted() {
        let h = PipelineHarness()
        var rng = SplitMix64(seed: 2024)
        let base = [
            Packets.udp4(from: Topo.blueAMAC, Topo.blueAIP, Topo.blueBIP),
            Packets.vxlan(Packets.udp4(from: .zero, IPv4Address(192, 0, 2, 130), Topo.blueAIP), vni: Topo.vniBlue),
            Packets.udp6(from: Topo.blueAMAC, Topo.blueAIPv6, Topo.blueBIPv6),
        ]
        var total = 0
        var outputs = 0
        for round in 0..<400 {
            var frame: [([UInt8], UInt16)] = []
            for _ in 0..<32 {
                var pkt: [UInt8]
                if round % 2 == 0 {
                    pkt = base[Int(rng.next() % 3)]
                    for _ in 0..<(1 + Int(rng.next() % 4)) {
                        pkt[Int(rng.next() % UInt64(pkt.count))] = UInt8(truncatingIfNeeded: rng.next())
                    }
                } else {
                    pkt = (0..<Int(rng.next() % 200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                }
                frame.append((pkt, UInt16(rng.next() % 5)))
            }
            total += frame.count
            let before = h.counters.totalDrops
            let out = h.run(frame)
            outputs += out.count
            #expect(UInt64(out.count) + (h.counters.totalDrops - before) >= UInt64(frame.count) - 0)
        }
        #expect(h.pool.available == h.pool.count)
        #expect(total == 400 * 32)
        #expect(outputs > 0)
    }
}
