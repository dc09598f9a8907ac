// Optional cross-check against an independent implementation: scapy (Debian's
// python3-scapy) decodes frames made by the builders and slow-path makers, recomputes the
// named checksums and lengths from scratch, and must rebuild the same bytes. Skipped when
// /usr/bin/python3 cannot import scapy.

import Foundation
import Testing
import VRouterTestSupport

@testable import VRouterCore

private let python = "/usr/bin/python3"

private let scapyAvailable: Bool = {
    guard FileManager.default.isExecutableFile(atPath: python) else { return false }
    return (try? run([python, "-c", "import scapy.all"]).status) == 0
}()

/// For each line "name hex field=Layer,...": decode with scapy, clear the listed fields
/// (checksums, lengths) of the listed layers so scapy recomputes them, rebuild, compare.
private let checker = """
    import sys, binascii
    from scapy.all import *
    from scapy.contrib.mpls import MPLS
    from scapy.layers.vxlan import VXLAN
    bind_layers(UDP, MPLS, dport=6635)
    for line in sys.stdin:
        name, h, spec = line.split()
        raw = binascii.unhexlify(h)
        p = Ether(raw)
        for item in spec.split(','):
            field, layer = item.split('=')
            l = p[globals()[layer]]
            setattr(l, field, None)
        out = bytes(p)
        print(name, 'OK' if out == raw else 'DIFF ' + p.summary() + ' ' + binascii.hexlify(out).decode())
    """

@Suite(.enabled(if: scapyAvailable, "scapy is not importable by /usr/bin/python3"))
struct HeadersScapyTests {
    func check(_ frames: [(String, [UInt8], String)]) throws {
        let text = frames.map { "\($0.0) \($0.1.map { String(format: "%02x", $0) }.joined()) \($0.2)\n" }.joined()
        let result = try run([python, "-c", checker], input: text).output
        let lines = result.split(separator: "\n")
        #expect(lines.count == frames.count)
        for line in lines { #expect(line.hasSuffix(" OK"), "\(line)") }
    }

    @Test func buildersAndMakersAgreeWithScapy() throws {
        var frames: [(String, [UInt8], String)] = []
        let inner = HeadersTunnelTests.innerFrame
        // Tunnels: outer IPv4 checksum and lengths recomputed by scapy; UDP checksum stays 0.
        let vx = VXLANEncap.template(
            sourceMAC: HeadersTunnelTests.outerSrcMAC,
            destinationMAC: HeadersTunnelTests.outerDstMAC,
            vlanTCI: 7,
            source: HeadersTunnelTests.ul1,
            destination: HeadersTunnelTests.ul2
        )
        let mp = MPLSoUDPEncap.template(
            sourceMAC: HeadersTunnelTests.outerSrcMAC,
            destinationMAC: HeadersTunnelTests.outerDstMAC,
            source: HeadersTunnelTests.ul1,
            destination: HeadersTunnelTests.ul2,
            trafficClass: 3
        )
        withPool { pool in
            let i = pool.loaded(inner)
            _ = vx.apply(pool: pool, i, sourcePort: 50123, labelOrVNI: 4242, identification: 99)
            frames.append(("vxlan", pool.array(i), "chksum=IP,len=IP,len=UDP"))
            let j = pool.loaded(Array(inner[14...]))
            _ = mp.apply(pool: pool, j, sourcePort: 60123, labelOrVNI: 777)
            frames.append(("mplsoudp", pool.array(j), "chksum=IP,len=IP,len=UDP"))

            // ICMP errors.
            let t = pool.loaded(Frames.udp4(payload: [UInt8](repeating: 3, count: 700)))
            #expect(ICMPv4Error.make(.timeExceeded, pool: pool, t, source: T.v4(T.ip4Gw)))
            frames.append(("icmp-time-exceeded", pool.array(t), "chksum=IP,len=IP,chksum=ICMP"))
            let f = pool.loaded(Frames.udp4(flags: 0x4000))
            #expect(ICMPv4Error.make(.fragmentationNeeded(mtu: 1400), pool: pool, f, source: T.v4(T.ip4Gw)))
            frames.append(("icmp-frag-needed", pool.array(f), "chksum=IP,chksum=ICMP"))
            let b = pool.loaded(Frames.udp6(payload: [UInt8](repeating: 9, count: 1400)))
            #expect(ICMPv6Error.make(.packetTooBig(mtu: 1280), pool: pool, b, source: T.v6(T.ip6Gw)))
            frames.append(("icmpv6-ptb", pool.array(b), "plen=IPv6,cksum=ICMPv6PacketTooBig"))
            let u = pool.loaded(Frames.udp6())
            #expect(ICMPv6Error.make(.noRoute, pool: pool, u, source: T.v6(T.ip6Gw)))
            frames.append(("icmpv6-unreach", pool.array(u), "cksum=ICMPv6DestUnreach"))

            // Responders.
            let n = pool.loaded(HeadersResponderTests.nsFrame())
            #expect(NeighborDiscoveryResponder.advertise(pool: pool, n, mac: .vrouter))
            frames.append(("na", pool.array(n), "plen=IPv6,cksum=ICMPv6ND_NA"))
            let e = pool.loaded(
                Frames.ethernet(type: 0x0800) + Frames.ipv4(dst: T.ip4Gw, proto: 1, payload: 12)
                    + Frames.icmp(type: 8, rest: 5, payload: [1, 2, 3, 4])
            )
            #expect(EchoResponder.reply(pool: pool, e))
            frames.append(("echo-reply", pool.array(e), "chksum=IP,chksum=ICMP"))

            // MSS clamp and fragments.
            let seg = Frames.tcp(
                sport: 1,
                dport: 2,
                flags: 2,
                options: [1, 2, 4, 0x23, 0x28, 1, 1, 0],
                pseudo: pseudo4(T.ip4A, T.ip4B, proto: 6, length: 28)
            )
            let s = pool.loaded(Frames.ethernet(type: 0x0800) + Frames.ipv4(proto: 6, payload: 28) + seg)
            #expect(MSSClamp.clamp(pool: pool, s, maximum: 1410))
            frames.append(("mss", pool.array(s), "chksum=TCP"))
            var out = Frame.allocate(capacity: 8)
            defer { out.deallocate() }
            let big = pool.loaded(Frames.udp4(payload: [UInt8](repeating: 5, count: 1200), options: [0x94, 4, 0, 0]))
            #expect(IPv4Fragmenter.fragment(pool: pool, big, l2Length: 14, mtu: 500, into: &out) == nil)
            for k in 0..<out.count { frames.append(("fragment\(k)", pool.array(out[k]), "chksum=IP,len=IP,ihl=IP")) }
        }
        // Builders.
        let tcp = scratch { p in
            var o = PacketBuilder.ethernet(
                p,
                destination: T.mac(T.macB),
                source: T.mac(T.macA),
                etherType: EtherType.ipv6
            )
            o += PacketBuilder.ipv6(
                p + o,
                source: T.v6(T.ip6A),
                destination: T.v6(T.ip6B),
                nextHeader: 6,
                payloadLength: 24
            )
            o += PacketBuilder.tcp(
                p + o,
                sourcePort: 5,
                destinationPort: 6,
                sequence: 7,
                acknowledgment: 8,
                flags: .syn,
                window: 100,
                mss: 1220,
                payloadLength: 0,
                pseudoHeader: .ipv6(source: T.v6(T.ip6A), destination: T.v6(T.ip6B))
            )
            return o
        }
        frames.append(("tcp6", tcp, "chksum=TCP,plen=IPv6"))
        try check(frames)
    }

    /// What fabric SNAT sends, both ways: every checksum its incremental updates left is
    /// the one scapy computes from scratch, inside ICMP quotes too.
    @Test func translatedPacketsAgreeWithScapy() throws {
        var c = PipelineConfig()
        c.snat = SNATPortRange(first: 20000, last: 20003)
        let h = PipelineHarness(config: c, topology: SampleTopology(fabricServices: true))
        typealias Topo = SampleTopology
        var frames: [(String, [UInt8], String)] = []
        func run(_ name: String, _ bytes: [UInt8], _ port: UInt16, _ spec: String) -> [UInt8] {
            let out = h.run(bytes, from: port)
            #expect(out.count == 1, "\(name)")
            let b = out.first?.bytes ?? []
            frames.append((name, b, spec))
            return b
        }
        let udp = run(
            "snat-udp",
            NATFrames.udp(Topo.greenAMAC, .vrouter, Topo.greenAIP, Topo.world, sport: 40000, dport: 33434, ttl: 2),
            Topo.greenA,
            "chksum=IP,chksum=UDP"
        )
        _ = run(
            "dnat-udp",
            NATFrames.udp(Topo.gatewayMAC, Topo.nodeMAC, Topo.world, Topo.underlay, sport: 33434, dport: 20000),
            Topo.fabricPort,
            "chksum=IP,chksum=UDP"
        )
        _ = run(
            "snat-tcp",
            NATFrames.tcp(Topo.greenAMAC, .vrouter, Topo.greenAIP, Topo.world, sport: 33000, dport: 80, flags: 0x02),
            Topo.greenA,
            "chksum=IP,chksum=TCP"
        )
        _ = run(
            "dnat-tcp",
            NATFrames.tcp(
                Topo.gatewayMAC,
                Topo.nodeMAC,
                Topo.world,
                Topo.underlay,
                sport: 80,
                dport: 20000,
                flags: 0x12
            ),
            Topo.fabricPort,
            "chksum=IP,chksum=TCP"
        )
        _ = run(
            "snat-echo",
            NATFrames.echo(Topo.greenAMAC, .vrouter, Topo.greenAIP, Topo.world, id: 0x1234),
            Topo.greenA,
            "chksum=IP,chksum=ICMP"
        )
        _ = run(
            "dnat-echo",
            NATFrames.echo(Topo.gatewayMAC, Topo.nodeMAC, Topo.world, Topo.underlay, reply: true, id: 20000),
            Topo.fabricPort,
            "chksum=IP,chksum=ICMP"
        )
        let error = NATFrames.error(
            Topo.gatewayMAC,
            Topo.nodeMAC,
            Topo.underlayGateway,
            Topo.underlay,
            type: 11,
            code: 0,
            quote: Array(udp[14...])
        )
        _ = run("dnat-icmp-error", error, Topo.fabricPort, "chksum=IP,chksum=ICMP,chksum=IPerror,chksum=UDPerror")
        let reply = NATFrames.udp(.vrouter, Topo.greenAMAC, Topo.world, Topo.greenAIP, sport: 33434, dport: 40000)
        let podError = NATFrames.podUnreachable(about: reply)
        _ = run("snat-icmp-error", podError, Topo.greenA, "chksum=IP,chksum=ICMP,chksum=IPerror,chksum=UDPerror")
        try check(frames)
    }
}
