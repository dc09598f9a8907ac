// vrouter-gen (tools/gen-traffic): writes a replay scenario — a node config, its route
// files and one input pcap per port — for `vrouterd replay` and `vrouterd bench`.
//
//   fabric0 198.18.0.1; remote node-a 198.18.0.2 (VXLAN), node-b 198.18.0.3 (MPLS over UDP)
//   VRF k has pods in its own subnet (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, then
//   198.19.k.0/24) and a share of the routes; traffic is pod → remote (encapsulated),
//   remote → pod (decapsulated) and pod → pod (local), in the shares asked for.
//   snat and fabric: the VRFs reach the world through the fabric (fabric SNAT to the
//   underlay address and ports 10000-50000, or IP-fabric forwarding, untranslated) via
//   the underlay gateway 198.18.0.254; the routes are only where destinations are drawn
//   from, and the ingress share is replies (after every request, so that the cold pass
//   has set up each translation its reply needs).
//   --ipv6: pods also have IPv6 addresses (2001:db8:k+1::10+j), the routes are IPv6 and
//   every generated packet (or inner packet) is IPv6/UDP; the underlay stays IPv4.

import ArgumentParser
import Foundation
import VRouterCore
import VRouterIO

@main
struct GenTraffic: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vrouter-gen",
        abstract: "Write a replay scenario: config.yaml, route files and input pcaps."
    )

    enum Scenario: String, ExpressibleByArgument, CaseIterable { case vxlan, mplsudp, mixed, snat, fabric }

    @Option(help: "vxlan | mplsudp | mixed | snat | fabric") var scenario: Scenario = .mixed
    @Option(help: "Distinct flows.") var flows: Int = 10_000
    @Option(help: "Routes toward the remote nodes, over all VRFs (BGP-like prefix mix).") var routes: Int = 1_000
    @Option(help: "VRFs.") var vrfs: Int = 2
    @Option(help: "Pods per VRF.") var pods: Int = 2
    @Option(help: "Packet size in bytes (60...1514), or 'imix' (7:4:1 of 64, 570, 1514).") var size: String = "64"
    @Option(help: "Packets per flow.") var packetsPerFlow: Int = 1
    @Option(help: "Share of flows from the remote nodes toward pods (0...1).") var ingressShare: Double = 0.5
    @Option(help: "Share of flows between pods of the node (0...1).") var localShare: Double = 0.0
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Flag(help: "IPv6 pods, routes and packets (inner packets, over the IPv4 underlay).") var ipv6 = false
    @Option(help: "Output directory.") var out: String

    func validate() throws {
        guard flows >= 1 && flows <= 50_000_000 else { throw ValidationError("--flows must be 1...50000000") }
        guard routes >= 0 && routes <= 5_000_000 else { throw ValidationError("--routes must be 0...5000000") }
        guard vrfs >= 1 && vrfs <= 200 else { throw ValidationError("--vrfs must be 1...200") }
        guard pods >= 1 && pods <= 200 else { throw ValidationError("--pods must be 1...200") }
        guard packetsPerFlow >= 1 && packetsPerFlow <= 1000 else {
            throw ValidationError("--packets-per-flow must be 1...1000")
        }
        guard (0...1).contains(ingressShare), (0...1).contains(localShare), ingressShare + localShare <= 1 else {
            throw ValidationError("--ingress-share and --local-share must be in 0...1 and sum to at most 1")
        }
        if scenario == .snat && flows > Self.snatPorts.count {
            throw ValidationError("--scenario snat translates at most \(Self.snatPorts.count) flows (one port each)")
        }
        if ipv6 && toWorld { throw ValidationError("--ipv6 is for the vxlan, mplsudp and mixed scenarios") }
        if size != "imix" {
            guard let s = Int(size), (60...1514).contains(s) else {
                throw ValidationError("--size must be 60...1514 or imix")
            }
        }
    }

    static let fabricMAC = MACAddress(0x0200_0000_0001)
    static let nodeAMAC = MACAddress(0x0200_0000_0002)
    static let nodeBMAC = MACAddress(0x0200_0000_0003)
    static let underlay = IPv4Address(198, 18, 0, 1)
    static let nodeA = IPv4Address(198, 18, 0, 2)
    static let nodeB = IPv4Address(198, 18, 0, 3)
    static let gateway = IPv4Address(198, 18, 0, 254)
    static let gatewayMAC = MACAddress(0x0200_0000_00FE)
    static let snatPorts: ClosedRange<UInt16> = 10000...50000
    var toWorld: Bool { scenario == .snat || scenario == .fabric }

    static func subnet(_ k: Int) -> IPv4Prefix {
        switch k {
        case 0: IPv4Prefix("192.0.2.0/24")!
        case 1: IPv4Prefix("198.51.100.0/24")!
        case 2: IPv4Prefix("203.0.113.0/24")!
        default: IPv4Prefix(IPv4Address(198, 19, UInt8(k - 3), 0), length: 24)!
        }
    }

    /// Ranges no generated packet may use, even in a capture: private, loopback and our own
    /// pod subnets and underlay (routes there would shadow the scenario's own).
    static let reserved: [IPv4Prefix] = [
        "0.0.0.0/8", "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16",
        "224.0.0.0/3", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15",
    ].map { IPv4Prefix($0)! }

    static func isReserved(_ p: IPv4Prefix) -> Bool {
        reserved.contains { r in
            let l = Int(min(r.length, p.length))
            return r.address.value & IPv4Prefix.mask(l) == p.address.value & IPv4Prefix.mask(l)
        }
    }

    func vni(_ k: Int) -> UInt32 { 1001 + UInt32(k) }
    func labelAtB(_ k: Int) -> UInt32 { 1000 + UInt32(k) }
    func podLabel(_ k: Int, _ j: Int) -> UInt32 { 16 + UInt32(k * pods + j) }
    func podIP(_ k: Int, _ j: Int) -> IPv4Address { IPv4Address(Self.subnet(k).address.value + 10 + UInt32(j)) }
    func podIP6(_ k: Int, _ j: Int) -> IPv6Address { IPv6Address(Self.doc6 | UInt128(k + 1) << 80 | UInt128(10 + j)) }
    func gateway6(_ k: Int) -> IPv6Address { IPv6Address(Self.doc6 | UInt128(k + 1) << 80 | 1) }
    /// 2001:db8::/32: pods only; IPv6 routes never overlap it.
    static let doc6: UInt128 = 0x2001_0db8 << 96
    func podMAC(_ k: Int, _ j: Int) -> MACAddress { MACAddress(0x0200_0100_0000 | UInt64(k) << 8 | UInt64(j)) }

    func run() throws {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: out + "/out", withIntermediateDirectories: true)
        var rng = SplitMix64(seed: seed)

        // Routes: a BGP-like table, minus reserved ranges, dealt round-robin to the VRFs.
        var table: [IPv4Prefix] = []
        var round: UInt64 = 0
        var seen = Set<IPv4Prefix>()
        while !ipv6 && table.count < routes {
            for (p, _) in SyntheticRoutes.ipv4(count: routes - table.count + routes / 50 + 16, seed: seed &+ round)
            where !Self.isReserved(p) && seen.insert(p).inserted {
                table.append(p)
                if table.count == routes { break }
            }
            round += 1
        }
        var perVRF = [[IPv4Prefix]](repeating: [], count: vrfs)
        var perVRF6 = [[IPv6Prefix]](repeating: [], count: vrfs)
        if ipv6 {
            var table6: [IPv6Prefix] = []
            var seen6 = Set<IPv6Prefix>()
            round = 0
            while table6.count < routes {
                for (p, _) in SyntheticRoutes.ipv6(count: routes - table6.count + routes / 50 + 16, seed: seed &+ round)
                where p.address.value >> 96 != Self.doc6 >> 96 && p.length >= 32 && seen6.insert(p).inserted {
                    table6.append(p)
                    if table6.count == routes { break }
                }
                round += 1
            }
            for (i, p) in table6.enumerated() { perVRF6[i % vrfs].append(p) }
        } else {
            for (i, p) in table.enumerated() { perVRF[i % vrfs].append(p) }
        }

        // Config.
        var y = "# Generated by tools/gen-traffic --scenario \(scenario) --flows \(flows) --routes \(routes)"
        y += " --vrfs \(vrfs) --pods \(pods) --size \(size) --seed \(seed)\n"
        y += "node:\n  name: gen-node\npool:\n  buffers: 16384\n"
        let entries = toWorld ? 2 * flows : flows
        y += "flows:\n  capacity: \(max(1 << 16, (entries * 5 / 4).nextPowerOf2))\n  idleTimeout: 300s\n"
        if scenario == .snat { y += "snat:\n  ports: \(Self.snatPorts.lowerBound)-\(Self.snatPorts.upperBound)\n" }
        y += "remoteNodes:\n"
        y += "  - { name: node-a, address: \(Self.nodeA), mac: \"\(Self.nodeAMAC)\", encap: vxlan }\n"
        y += "  - { name: node-b, address: \(Self.nodeB), mac: \"\(Self.nodeBMAC)\", encap: mpls-udp }\n"
        y += "vrfs:\n"
        for k in 0..<vrfs {
            let s = Self.subnet(k)
            y += "  - name: vrf\(k + 1)\n    vni: \(vni(k))\n    gateway: \(IPv4Address(s.address.value + 1))\n"
            if ipv6 { y += "    gateway6: \"\(gateway6(k))\"\n" }
            if toWorld {
                y += scenario == .snat ? "    ipFabricSnat: true\n" : "    ipFabricForwarding: true\n"
                continue
            }
            let file = "routes-vrf\(k + 1).txt"
            y += "    routesFile: \(file)\n"
            let prefixes = ipv6 ? perVRF6[k].map { "\($0)" } : perVRF[k].map { "\($0)" }
            var text = "# vrf\(k + 1): \(prefixes.count) routes\n"
            text.reserveCapacity(prefixes.count * 40)
            for (i, p) in prefixes.enumerated() {
                switch scenario {
                case .vxlan: text += "\(p) via node-a vni \(vni(k))\n"
                case .mplsudp: text += "\(p) via node-b label \(labelAtB(k))\n"
                case .mixed, .snat, .fabric:
                    text += i % 2 == 0 ? "\(p) via node-a vni \(vni(k))\n" : "\(p) via node-b label \(labelAtB(k))\n"
                }
            }
            try text.write(toFile: out + "/" + file, atomically: true, encoding: .utf8)
        }
        y += "interfaces:\n"
        y += "  - name: fabric0\n    kind: fabric\n    address: \(Self.underlay)\n    mac: \"\(Self.fabricMAC)\"\n"
        if toWorld { y += "    gateway: \(Self.gateway)\n    gatewayMAC: \"\(Self.gatewayMAC)\"\n" }
        y += "    pcap: { in: fabric0-in.pcap, out: out/fabric0.pcap }\n"
        for k in 0..<vrfs {
            for j in 0..<pods {
                let name = "pod\(k + 1)-\(j + 1)"
                y += "  - name: \(name)\n    kind: pod\n    vrf: vrf\(k + 1)\n    mac: \"\(podMAC(k, j))\"\n"
                y += "    ipv4: \(podIP(k, j))\n    label: \(podLabel(k, j))\n"
                if ipv6 { y += "    ipv6: \"\(podIP6(k, j))\"\n" }
                y += "    pcap: { in: \(name)-in.pcap, out: out/\(name).pcap }\n"
            }
        }
        try y.write(toFile: out + "/config.yaml", atomically: true, encoding: .utf8)

        // Traffic.
        let sizes: [Int] = size == "imix" ? [64, 64, 64, 64, 64, 64, 64, 570, 570, 570, 570, 1514] : [Int(size)!]
        var writers: [String: PcapWriter] = [:]
        func writer(_ port: String) throws -> PcapWriter {
            if let w = writers[port] { return w }
            let w = try PcapWriter(path: "\(out)/\(port)-in.pcap")
            writers[port] = w
            return w
        }
        _ = try writer("fabric0")
        for k in 0..<vrfs { for j in 0..<pods { _ = try writer("pod\(k + 1)-\(j + 1)") } }

        var buf = [UInt8](repeating: 0, count: 1600)
        var inner = [UInt8](repeating: 0, count: 1600)
        let t0: UInt64 = 1_700_000_000_000_000_000
        var packet = 0
        var translated = 0
        // Replies come after every request (the cold pass has made each translation first).
        let replyOffset = UInt64(flows * packetsPerFlow + 1) * 1000
        let ingressFlows = Int(Double(flows) * ingressShare)
        let localFlows = Int(Double(flows) * localShare)
        for f in 0..<flows {
            let k = Int(rng.next() % UInt64(vrfs))
            let j = Int(rng.next() % UInt64(pods))
            let sz = sizes[Int(rng.next() % UInt64(sizes.count))]
            // Flows differ by address and source port; the destination port is discard (9),
            // which decoders like tshark leave alone (random ports make them guess at
            // application protocols and report the payload as malformed).
            let sport = UInt16(truncatingIfNeeded: 1024 + (rng.next() % 64000))
            let dport: UInt16 = 9
            let kind =
                toWorld ? (f < localFlows ? 2 : 0) : (f < ingressFlows ? 1 : (f < ingressFlows + localFlows ? 2 : 0))
            // To the world: this flow's share of the ingress is the replies.
            let replied = toWorld && kind == 0 && f - localFlows < ingressFlows
            let port = Self.snatPorts.lowerBound &+ UInt16(truncatingIfNeeded: translated)
            if kind == 0 { translated += 1 }
            // A remote host: inside one of the VRF's routes (or the far half of another subnet).
            func remoteHost() -> IPv4Address {
                let rs = perVRF[k]
                guard !rs.isEmpty else { return IPv4Address(198, 19, 255, UInt8(truncatingIfNeeded: rng.next())) }
                let p = rs[Int(rng.next() % UInt64(rs.count))]
                let host = p.length == 32 ? 0 : UInt32(truncatingIfNeeded: rng.next()) & ~IPv4Prefix.mask(Int(p.length))
                return IPv4Address(p.address.value | host)
            }
            func remoteHost6() -> IPv6Address {
                let rs = perVRF6[k]
                guard !rs.isEmpty else { return IPv6Address(0x2a00 << 112 | UInt128(rng.next())) }
                let p = rs[Int(rng.next() % UInt64(rs.count))]
                let bits = UInt128(rng.next()) << 64 | UInt128(rng.next())
                return IPv6Address(p.address.value | bits & ~IPv6Prefix.mask(Int(p.length)))
            }
            let remote = ipv6 ? Host.v6(remoteHost6()) : Host.v4(remoteHost())
            func pod(_ k: Int, _ j: Int) -> Host { ipv6 ? .v6(podIP6(k, j)) : .v4(podIP(k, j)) }
            // The remote sender's tunnel source port: one per flow (from the inner flow's
            // hash, as senders do), so an RSS hash on the outer headers keeps a flow on one worker.
            let entropy = UInt32(truncatingIfNeeded: rng.next())
            let viaA: Bool = {
                switch scenario {
                case .vxlan: return true
                case .mplsudp: return false
                case .mixed: return rng.next() & 1 == 0
                case .snat, .fabric: return true  // unused: these flows leave untunneled
                }
            }()
            for r in 0..<packetsPerFlow {
                let ts = t0 + UInt64(packet) * 1000
                packet += 1
                let id = UInt16(truncatingIfNeeded: r)
                switch kind {
                case 0:  // pod → remote
                    let n = buf.withUnsafeMutableBytes {
                        Self.writeUDP(
                            $0.baseAddress!,
                            size: sz,
                            srcMAC: podMAC(k, j),
                            dstMAC: .vrouter,
                            source: pod(k, j),
                            destination: remote,
                            sport: sport,
                            dport: dport,
                            id: id
                        )
                    }
                    buf.withUnsafeBytes {
                        try! writer("pod\(k + 1)-\(j + 1)").write(
                            UnsafeRawBufferPointer(rebasing: $0[0..<n]),
                            timestamp: ts
                        )
                    }
                    guard replied else { break }
                    // The world's reply: to the node's address and the flow's port (SNAT:
                    // flows take the range's ports in the order they start), or to the pod.
                    let r = buf.withUnsafeMutableBytes {
                        SyntheticTraffic.writeUDP4(
                            $0.baseAddress!,
                            size: sz,
                            srcMAC: Self.gatewayMAC,
                            dstMAC: Self.fabricMAC,
                            source: remote.v4,
                            destination: scenario == .snat ? Self.underlay : podIP(k, j),
                            sport: dport,
                            dport: scenario == .snat ? port : sport,
                            id: id
                        )
                    }
                    buf.withUnsafeBytes {
                        try! writer("fabric0").write(
                            UnsafeRawBufferPointer(rebasing: $0[0..<r]),
                            timestamp: ts + replyOffset
                        )
                    }
                case 2:  // pod → pod in the same VRF
                    let j2 = pods > 1 ? (j + 1 + Int(rng.next() % UInt64(pods - 1))) % pods : j
                    let n = buf.withUnsafeMutableBytes {
                        Self.writeUDP(
                            $0.baseAddress!,
                            size: sz,
                            srcMAC: podMAC(k, j),
                            dstMAC: .vrouter,
                            source: pod(k, j),
                            destination: pod(k, j2),
                            sport: sport,
                            dport: dport,
                            id: id
                        )
                    }
                    buf.withUnsafeBytes {
                        try! writer("pod\(k + 1)-\(j + 1)").write(
                            UnsafeRawBufferPointer(rebasing: $0[0..<n]),
                            timestamp: ts
                        )
                    }
                default:  // remote → pod, tunnelled
                    let innerSize = max(sz - (viaA ? 50 : 32), 60)
                    let n = inner.withUnsafeMutableBytes {
                        Self.writeUDP(
                            $0.baseAddress!,
                            size: innerSize,
                            srcMAC: .vrouter,
                            dstMAC: .vrouter,
                            source: remote,
                            destination: pod(k, j),
                            sport: dport,
                            dport: sport,
                            id: id
                        )
                    }
                    let total = buf.withUnsafeMutableBytes { b -> Int in
                        let p = b.baseAddress!
                        var o = PacketBuilder.ethernet(
                            p,
                            destination: Self.fabricMAC,
                            source: viaA ? Self.nodeAMAC : Self.nodeBMAC,
                            etherType: EtherType.ipv4
                        )
                        let payload = viaA ? 16 + n : 12 + (n - 14)
                        o += PacketBuilder.ipv4(
                            p + o,
                            source: viaA ? Self.nodeA : Self.nodeB,
                            destination: Self.underlay,
                            proto: IPProtocol.udp,
                            payloadLength: payload
                        )
                        o += PacketBuilder.udp(
                            p + o,
                            sourcePort: TunnelTemplate.sourcePort(hash: entropy),
                            destinationPort: viaA ? UDPPort.vxlan : UDPPort.mplsOverUDP,
                            payloadLength: payload - 8,
                            checksum: nil
                        )
                        if viaA {
                            p.setBE32(o, 0x0800_0000)
                            p.setBE32(o + 4, vni(k) << 8)
                            o += 8
                            inner.withUnsafeBytes { (p + o).copyMemory(from: $0.baseAddress!, byteCount: n) }
                            return o + n
                        }
                        p.setBE32(o, podLabel(k, j) << 12 | 0x100 | 64)
                        o += 4
                        inner.withUnsafeBytes { (p + o).copyMemory(from: $0.baseAddress! + 14, byteCount: n - 14) }
                        return o + n - 14
                    }
                    buf.withUnsafeBytes {
                        try! writer("fabric0").write(UnsafeRawBufferPointer(rebasing: $0[0..<total]), timestamp: ts)
                    }
                }
            }
        }
        for w in writers.values { try w.close() }
        print(
            "\(out)/config.yaml: \(packet) packets, \(flows) flows, \(routes) routes in \(vrfs) VRFs, \(vrfs * pods) pods"
        )
    }
}

/// A generated packet's address: IPv4, or IPv6 with --ipv6.
enum Host {
    case v4(IPv4Address)
    case v6(IPv6Address)
    /// Only for the IPv4-only scenarios (snat, fabric).
    var v4: IPv4Address {
        guard case .v4(let a) = self else { preconditionFailure("an IPv4 scenario drew an IPv6 host") }
        return a
    }
}

extension GenTraffic {
    static func writeUDP(
        _ p: UnsafeMutableRawPointer,
        size: Int,
        srcMAC: MACAddress,
        dstMAC: MACAddress,
        source: Host,
        destination: Host,
        sport: UInt16,
        dport: UInt16,
        id: UInt16
    ) -> Int {
        switch (source, destination) {
        case (.v4(let s), .v4(let d)):
            return SyntheticTraffic.writeUDP4(
                p,
                size: size,
                srcMAC: srcMAC,
                dstMAC: dstMAC,
                source: s,
                destination: d,
                sport: sport,
                dport: dport,
                id: id
            )
        case (.v6(let s), .v6(let d)):
            return SyntheticTraffic.writeUDP6(
                p,
                size: size,
                srcMAC: srcMAC,
                dstMAC: dstMAC,
                source: s,
                destination: d,
                sport: sport,
                dport: dport
            )
        default: preconditionFailure("mixed address families in one packet")
        }
    }
}

extension Int {
    var nextPowerOf2: Int { self <= 1 ? 1 : 1 << (Int.bitWidth - (self - 1).leadingZeroBitCount) }
}
