import Foundation
import Testing
import VRouterCore
import VRouterIO
import VRouterTestSupport

@testable import VRouterControl

/// Replays generated captures through a configured node and checks the output captures
/// packet by packet, and with tshark as an outside decoder.
@Suite(.serialized) struct ReplayTests {
    static let dir: String = {
        let d = Scratch.path("replay")
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    static let config = """
        remoteNodes:
          - { name: node-a, address: 198.18.0.2, mac: "02:00:00:00:00:02", encap: vxlan }
          - { name: node-b, address: 198.18.0.3, mac: "02:00:00:00:00:03", encap: mpls-udp }
        vrfs:
          - name: blue
            vni: 1001
            gateway: 192.0.2.1
            routes: [ { prefix: 192.0.2.128/25, via: node-a, vni: 1001 } ]
          - name: red
            gateway: 198.51.100.1
            routes: [ { prefix: 198.51.100.128/25, via: node-b, label: 200 } ]
        interfaces:
          - name: fabric0
            kind: fabric
            address: 198.18.0.1
            mac: "02:00:00:00:00:01"
            pcap: { in: fabric-in.pcap, out: fabric-out.pcap }
          - name: blue-a
            kind: pod
            vrf: blue
            mac: "02:00:01:00:00:0a"
            ipv4: 192.0.2.10
            label: 16
            pcap: { in: blue-in.pcap, out: blue-out.pcap }
          - name: red-a
            kind: pod
            vrf: red
            mac: "02:00:02:00:00:0a"
            ipv4: 198.51.100.10
            label: 18
            pcap: { in: red-in.pcap, out: red-out.pcap }
        """

    static func write(_ set: PacketSet, _ name: String) throws {
        let w = try PcapWriter(path: dir + "/" + name)
        for i in 0..<set.count { set.withPacket(i) { w.write($0, timestamp: set.timestamps[i]) } }
        try w.close()
    }

    static func read(_ name: String) throws -> PacketSet {
        var s = PacketSet()
        try PcapFile.read(path: dir + "/" + name, port: 0, into: &s)
        return s
    }

    /// The blue pod's flows toward the remote half of its network.
    static func fromBlue(flows: Int, size: Int = 64, seed: UInt64) -> PacketSet {
        SyntheticTraffic.podFlows(
            port: 1,
            mac: MACAddress("02:00:01:00:00:0a")!,
            source: IPv4Address(192, 0, 2, 10),
            prefixes: [IPv4Prefix("192.0.2.128/25")!],
            flows: flows,
            size: size,
            seed: seed
        )
    }

    /// VXLAN (VNI 1001) from node-a toward the blue pod.
    static func vxlanToBlue(flows: Int, seed: UInt64) -> PacketSet {
        SyntheticTraffic.vxlanToPods(
            fabricPort: 0,
            nodeMAC: MACAddress("02:00:00:00:00:01")!,
            underlay: IPv4Address(198, 18, 0, 1),
            peerMAC: MACAddress("02:00:00:00:00:02")!,
            peer: IPv4Address(198, 18, 0, 2),
            vni: 1001,
            remote: IPv4Prefix("192.0.2.128/25")!,
            pods: [IPv4Address(192, 0, 2, 10)],
            flows: flows,
            seed: seed
        )
    }

    /// The replay node over these captures (each port's input file and the config written).
    static func node(blue: PacketSet, red: PacketSet, fabric: PacketSet) throws -> ReplayNode {
        try write(blue, "blue-in.pcap")
        try write(red, "red-in.pcap")
        try write(fabric, "fabric-in.pcap")
        try config.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        return try ReplayNode(config: NodeConfig.load(path: dir + "/config.yaml"))
    }

    @Test func replayWritesExactlyWhatEachPortTransmitted() throws {
        let blue = Self.fromBlue(flows: 50, size: 100, seed: 1)
        let red = SyntheticTraffic.podFlows(
            port: 2,
            mac: MACAddress("02:00:02:00:00:0a")!,
            source: IPv4Address(198, 51, 100, 10),
            prefixes: [IPv4Prefix("198.51.100.128/25")!],
            flows: 40,
            size: 64,
            seed: 2
        )
        var fabric = Self.vxlanToBlue(flows: 30, seed: 3)
        fabric.append(
            contentsOf: SyntheticTraffic.mplsToPods(
                fabricPort: 0,
                nodeMAC: MACAddress("02:00:00:00:00:01")!,
                underlay: IPv4Address(198, 18, 0, 1),
                peerMAC: MACAddress("02:00:00:00:00:03")!,
                peer: IPv4Address(198, 18, 0, 3),
                labels: [18],
                remote: IPv4Prefix("198.51.100.128/25")!,
                pods: [IPv4Address(198, 51, 100, 10)],
                flows: 20,
                seed: 4
            )
        )
        let node = try Self.node(blue: blue, red: red, fabric: fabric)
        let summary = try node.replay()
        #expect(summary.packets == 140)
        #expect(summary.outputs == 140)
        #expect(summary.totalDrops == 0)
        #expect(summary.ports.map(\.received) == [50, 50, 40])
        #expect(summary.ports.map(\.transmitted) == [90, 30, 20])

        // Fabric output: every pod packet encapsulated, in order, inner IP unchanged but TTL/checksum.
        let out = try Self.read("fabric-out.pcap")
        #expect(out.count == 90)
        var vx = 0
        var mp = 0
        for i in 0..<out.count {
            let o = out.packet(i)
            let parsed = o.withUnsafeBytes { PacketParser.parse($0.baseAddress!, length: $0.count) }
            let original: [UInt8]
            let innerIP: [UInt8]
            if parsed.destinationPort == 4789 {
                original = blue.packet(vx)
                vx += 1
                #expect(Array(o[46..<49]) == [0x00, 0x03, 0xE9])  // VNI 1001
                innerIP = Array(o[64...])
            } else {
                original = red.packet(mp)
                mp += 1
                #expect(parsed.destinationPort == 6635)
                #expect(Array(o[42..<45]) == [0x00, 0x0C, 0x81])  // label 200, S
                innerIP = Array(o[46...])
            }
            var expected = Array(original[14...])
            expected[8] -= 1
            expected[10] = innerIP[10]
            expected[11] = innerIP[11]
            #expect(innerIP == expected)
        }
        #expect(vx == 50 && mp == 40)
        // Decapsulated toward the pods: the inner IP packets as sent.
        let toBlue = try Self.read("blue-out.pcap")
        #expect(toBlue.count == 30)
        for i in 0..<30 {
            let inner = Array(fabric.packet(i)[(14 + 20 + 8 + 8 + 14)...])
            #expect(Array(toBlue.packet(i)[14...]) == inner)
        }
        let toRed = try Self.read("red-out.pcap")
        #expect(toRed.count == 20)
        #expect(Array(toRed.packet(0)[0..<6]) == [0x02, 0x00, 0x02, 0x00, 0x00, 0x0A])
    }

    /// `bench --workers 2`: the packets are dealt by flow (every packet once, a flow's
    /// packets to one worker) and the two workers forward all of them.
    @Test func benchWorkersShareThePacketsByFlow() throws {
        var blue = Self.fromBlue(flows: 200, seed: 5)
        blue.append(contentsOf: blue)  // every flow twice
        let fabric = Self.vxlanToBlue(flows: 100, seed: 6)
        let shares = blue.split(2)
        #expect(shares.map(\.count).reduce(0, +) == blue.count)
        #expect(shares.allSatisfy { $0.count > 0 })
        for share in shares {
            var seen: [[UInt8]: Int] = [:]
            for i in 0..<share.count { seen[share.packet(i), default: 0] += 1 }
            #expect(seen.values.allSatisfy { $0 == 2 }, "a flow's two packets went to different workers")
        }
        let node = try Self.node(blue: blue, red: PacketSet(), fabric: fabric)
        let r = try node.bench(repeats: 3, workers: 2) { _ in }
        #expect(r.workers == 2)
        #expect(r.packets == 500)
        #expect(r.worker_packets.reduce(0, +) == 500)
        #expect(r.outputs == 500)
        #expect(r.dropped == 0)
        #expect(r.flow_hit_rate == 1)
    }

    @Test func tsharkDecodesOurEncapsulationsCleanly() throws {
        let tshark = "/usr/bin/tshark"
        #expect(FileManager.default.isExecutableFile(atPath: tshark), "tshark is missing: run tools/bootstrap")
        if !FileManager.default.fileExists(atPath: Self.dir + "/fabric-out.pcap") {
            try replayWritesExactlyWhatEachPortTransmitted()
        }
        let file = Self.dir + "/fabric-out.pcap"
        let decoded = try run(
            [
                tshark,
                "-r", file, "-d", "udp.port==6635,mpls", "-o", "ip.check_checksum:TRUE", "-T", "fields",
                "-E", "separator=;", "-e", "vxlan.vni", "-e", "mpls.label", "-e", "ip.checksum.status",
            ]
        )
        let (status, fields) = (decoded.status, decoded.output)
        #expect(status == 0)
        let lines = fields.split(separator: "\n")
        #expect(lines.count == 90)
        #expect(lines.filter { $0.hasPrefix("1001;") }.count == 50)
        #expect(lines.filter { $0.hasPrefix(";200;") }.count == 40)
        // Outer and inner IPv4 checksums both verify ("1" is good in tshark's status enum).
        #expect(lines.allSatisfy { $0.hasSuffix(";1,1") })
        let warned = try run(
            [
                tshark,
                "-r", file, "-d", "udp.port==6635,mpls", "-d", "udp.port==9,data", "-o", "ip.check_checksum:TRUE", "-q",
                "-z",
                "expert,warn",
            ]
        )
        let (s2, expert) = (warned.status, warned.output)
        #expect(s2 == 0)
        #expect(!expert.contains("Malformed"))
        #expect(!expert.lowercased().contains("bad checksum"))
        #expect(!expert.contains("Errors ("))
        #expect(!expert.contains("Warns ("), "\(expert)")
        // The inner packets' payload is opaque data to port 9 (discard): nothing else to decode.
    }
}
