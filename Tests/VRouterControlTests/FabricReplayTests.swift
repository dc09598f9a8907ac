import Foundation
import Testing
import VRouterCore
import VRouterIO
import VRouterTestSupport

@testable import VRouterControl

/// Fabric SNAT and IP-fabric forwarding replayed through a node made from its config file,
/// both ways: pods' packets out to the world, the world's replies (and an ICMP error) back
/// in. What each port sent is compared byte for byte with golden captures kept next to
/// this file, and decoded by tshark as an outside check of the goldens themselves:
///   VRT_UPDATE_GOLDEN=1 swift test --filter FabricReplayTests   rewrites them.
@Suite(.serialized) struct FabricReplayTests {
    static let dir: String = {
        let d = Scratch.path("fabric-replay")
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")
        .path

    static let config = """
        snat: { ports: 20000-20099 }
        vrfs:
          - { name: green, gateway: 198.51.100.33, ipFabricSnat: true }
          - { name: purple, gateway: 198.18.1.1, ipFabricForwarding: true }
        interfaces:
          - name: fabric0
            kind: fabric
            address: 198.18.0.1/24
            mac: "02:00:00:00:00:01"
            gateway: 198.18.0.254
            gatewayMAC: "02:00:00:00:00:fe"
            pcap: { in: fabric-in.pcap, out: fabric-out.pcap }
          - name: green-a
            kind: pod
            vrf: green
            mac: "02:00:04:00:00:0a"
            ipv4: 198.51.100.34
            pcap: { in: green-in.pcap, out: green-out.pcap }
          - name: purple-a
            kind: pod
            vrf: purple
            mac: "02:00:05:00:00:0a"
            ipv4: 198.18.1.10
            pcap: { in: purple-in.pcap, out: purple-out.pcap }
        """

    static let node = IPv4Address(198, 18, 0, 1)
    static let nodeMAC = MACAddress(0x0200_0000_0001)
    static let gatewayMAC = MACAddress(0x0200_0000_00FE)
    static let gateway = IPv4Address(198, 18, 0, 254)
    static let world = IPv4Address(203, 0, 113, 200)
    static let green = IPv4Address(198, 51, 100, 34)
    static let greenMAC = MACAddress(0x0200_0004_000A)
    static let purple = IPv4Address(198, 18, 1, 10)
    static let purpleMAC = MACAddress(0x0200_0005_000A)

    /// Ethernet + IPv4 + `l4` (a transport header and payload written by `body`).
    static func frame(
        _ srcMAC: MACAddress,
        _ dstMAC: MACAddress,
        _ src: IPv4Address,
        _ dst: IPv4Address,
        proto: UInt8,
        ttl: UInt8 = 64,
        _ body: (UnsafeMutableRawPointer) -> Int
    ) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 1514)
        let n = b.withUnsafeMutableBytes { raw -> Int in
            let p = raw.baseAddress!
            let o = PacketBuilder.ethernet(p, destination: dstMAC, source: srcMAC, etherType: EtherType.ipv4)
            let l4 = body(p + o + 20)
            _ = PacketBuilder.ipv4(p + o, source: src, destination: dst, proto: proto, payloadLength: l4, ttl: ttl)
            return o + 20 + l4
        }
        return Array(b[0..<n])
    }

    static func udp(
        _ srcMAC: MACAddress,
        _ dstMAC: MACAddress,
        _ src: IPv4Address,
        _ dst: IPv4Address,
        _ sport: UInt16,
        _ dport: UInt16,
        ttl: UInt8 = 64
    ) -> [UInt8] {
        frame(srcMAC, dstMAC, src, dst, proto: IPProtocol.udp, ttl: ttl) { p in
            for i in 0..<20 { p.setU8(8 + i, UInt8(i)) }
            return PacketBuilder.udp(
                p,
                sourcePort: sport,
                destinationPort: dport,
                payloadLength: 20,
                checksum: .ipv4(source: src, destination: dst)
            ) + 20
        }
    }

    static func tcp(
        _ srcMAC: MACAddress,
        _ dstMAC: MACAddress,
        _ src: IPv4Address,
        _ dst: IPv4Address,
        _ sport: UInt16,
        _ dport: UInt16,
        _ flags: TCPFlags
    ) -> [UInt8] {
        frame(srcMAC, dstMAC, src, dst, proto: IPProtocol.tcp) { p in
            PacketBuilder.tcp(
                p,
                sourcePort: sport,
                destinationPort: dport,
                sequence: 1000,
                acknowledgment: flags.contains(.ack) ? 2000 : 0,
                flags: flags,
                window: 65535,
                mss: flags.contains(.syn) ? 1460 : nil,
                payloadLength: 0,
                pseudoHeader: .ipv4(source: src, destination: dst)
            )
        }
    }

    static func echo(
        _ srcMAC: MACAddress,
        _ dstMAC: MACAddress,
        _ src: IPv4Address,
        _ dst: IPv4Address,
        id: UInt16,
        reply: Bool
    ) -> [UInt8] {
        frame(srcMAC, dstMAC, src, dst, proto: IPProtocol.icmp) { p in
            let payload = [UInt8](repeating: 0x5A, count: 32)
            return payload.withUnsafeBytes {
                PacketBuilder.icmpEcho(p, isReply: reply, identifier: id, sequence: 1, payload: $0)
            }
        }
    }

    /// An ICMP time-exceeded from the gateway to the node quoting `quote` (an IP packet).
    static func timeExceeded(quoting quote: [UInt8]) -> [UInt8] {
        frame(gatewayMAC, nodeMAC, gateway, node, proto: IPProtocol.icmp) { p in
            p.setU8(0, ICMPv4Header.timeExceeded)
            p.setU8(1, 0)
            p.setBE32(4, 0)
            quote.withUnsafeBytes { (p + 8).copyMemory(from: $0.baseAddress!, byteCount: quote.count) }
            ICMPv4Header(p).updateChecksum(length: 8 + quote.count)
            return 8 + quote.count
        }
    }

    static func write(_ frames: [[UInt8]], _ name: String, from t0: UInt64) throws {
        let w = try PcapWriter(path: dir + "/" + name)
        for (i, f) in frames.enumerated() {
            f.withUnsafeBytes { w.write($0, timestamp: t0 + UInt64(i) * 1000) }
        }
        try w.close()
    }

    @Test func translatedAndForwardedTrafficMatchesTheGoldenCaptures() throws {
        let t0: UInt64 = 1_700_000_000_000_000_000
        // Out: UDP twice (two ports), TCP, ping from green-a; UDP from purple-a.
        try Self.write(
            [
                Self.udp(Self.greenMAC, .vrouter, Self.green, Self.world, 40000, 9, ttl: 2),
                Self.udp(Self.greenMAC, .vrouter, Self.green, Self.world, 40001, 9),
                Self.tcp(Self.greenMAC, .vrouter, Self.green, Self.world, 33000, 80, .syn),
                Self.echo(Self.greenMAC, .vrouter, Self.green, Self.world, id: 7, reply: false),
            ],
            "green-in.pcap",
            from: t0
        )
        try Self.write(
            [Self.udp(Self.purpleMAC, .vrouter, Self.purple, Self.world, 7000, 9)],
            "purple-in.pcap",
            from: t0 + 100
        )
        // In, later: the replies to the node's ports, the gateway's time-exceeded about
        // the first datagram (TTL 1 when it got there), a datagram to purple-a, and two
        // that match nothing.
        let firstOnWire = Array(Self.udp(Self.nodeMAC, Self.gatewayMAC, Self.node, Self.world, 20000, 9, ttl: 1)[14...])
        try Self.write(
            [
                Self.udp(Self.gatewayMAC, Self.nodeMAC, Self.world, Self.node, 9, 20000),
                Self.udp(Self.gatewayMAC, Self.nodeMAC, Self.world, Self.node, 9, 20001),
                Self.tcp(Self.gatewayMAC, Self.nodeMAC, Self.world, Self.node, 80, 20000, [.syn, .ack]),
                Self.echo(Self.gatewayMAC, Self.nodeMAC, Self.world, Self.node, id: 20000, reply: true),
                Self.timeExceeded(quoting: firstOnWire),
                Self.udp(Self.gatewayMAC, Self.nodeMAC, Self.world, Self.purple, 9, 7000),
                Self.udp(Self.gatewayMAC, Self.nodeMAC, Self.world, Self.node, 9, 20002),
                Self.tcp(Self.gatewayMAC, Self.nodeMAC, Self.world, Self.green, 80, 22, .syn),
            ],
            "fabric-in.pcap",
            from: t0 + 1_000_000
        )
        try Self.config.write(toFile: Self.dir + "/config.yaml", atomically: true, encoding: .utf8)

        let node = try ReplayNode(config: NodeConfig.load(path: Self.dir + "/config.yaml"))
        let summary = try node.replay()
        #expect(summary.packets == 13)
        #expect(summary.outputs == 11)
        #expect(summary.drops.map(\.0).sorted() == ["nat_no_mapping", "not_tunnel"])
        #expect(summary.events.first { $0.0 == "nat_created" }?.1 == 4)
        #expect(summary.events.first { $0.0 == "nat_icmp_error" }?.1 == 1)

        let update = ProcessInfo.processInfo.environment["VRT_UPDATE_GOLDEN"] != nil
        for name in ["fabric-out.pcap", "green-out.pcap", "purple-out.pcap"] {
            let got = try Data(contentsOf: URL(fileURLWithPath: Self.dir + "/" + name))
            let path = Self.golden + "/" + name
            if update {
                try FileManager.default.createDirectory(atPath: Self.golden, withIntermediateDirectories: true)
                try got.write(to: URL(fileURLWithPath: path))
            }
            let want = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect(got == want, "\(name) differs from \(path)")
        }
    }

    /// The goldens as an outside decoder reads them: every checksum good; out on the
    /// fabric only the node's address (and purple-a's own) as source; back at green-a
    /// its own ports and the quote of the ICMP error translated too.
    @Test func tsharkReadsTheGoldensAsTranslated() throws {
        let tshark = "/usr/bin/tshark"
        #expect(FileManager.default.isExecutableFile(atPath: tshark), "tshark is missing: run tools/bootstrap")
        func fields(_ file: String, _ f: [String]) throws -> [[String]] {
            let r = try run(
                [
                    tshark,
                    "-r", Self.golden + "/" + file, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                    "-o", "tcp.check_checksum:TRUE", "-T", "fields", "-E", "separator=;",
                ] + f.flatMap { ["-e", $0] }
            )
            #expect(r.status == 0)
            return r.output.split(separator: "\n").map {
                $0.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
            }
        }
        let out = try fields(
            "fabric-out.pcap",
            ["ip.src", "udp.srcport", "tcp.srcport", "icmp.ident", "ip.checksum.status"]
        )
        #expect(out.count == 5)
        #expect(out.filter { $0[0] == "198.18.0.1" }.count == 4)
        #expect(out.filter { $0[0] == "198.18.1.10" }.count == 1)
        #expect(out.map { $0[1] + $0[2] }.filter { !$0.isEmpty }.sorted() == ["20000", "20000", "20001", "7000"])
        #expect(out.allSatisfy { $0[4] == "1" })
        let back = try fields(
            "green-out.pcap",
            ["ip.dst", "udp.dstport", "tcp.dstport", "icmp.ident", "icmp.type", "ip.checksum.status"]
        )
        #expect(back.count == 5)
        #expect(back.allSatisfy { $0[0].hasPrefix("198.51.100.34") })
        // The time-exceeded quotes green-a's own datagram: source 198.51.100.34, port 40000.
        let q = try run(
            [
                tshark, "-r", Self.golden + "/green-out.pcap", "-Y", "icmp.type==11", "-T", "fields", "-e", "ip.src",
                "-e", "udp.srcport",
            ]
        )
        let quote = q.output
        #expect(q.status == 0)
        #expect(quote.contains("198.51.100.34") && quote.contains("40000"), "\(quote)")
        let e = try run(
            [
                tshark, "-r", Self.golden + "/green-out.pcap", "-o", "ip.check_checksum:TRUE", "-o",
                "udp.check_checksum:TRUE",
                "-o", "tcp.check_checksum:TRUE", "-q", "-z", "expert,warn",
            ]
        )
        let expert = e.output
        #expect(e.status == 0)
        #expect(!expert.lowercased().contains("bad checksum"), "\(expert)")
        #expect(!expert.contains("Malformed"))
    }
}
