// vrouterd run carrying real traffic between pods made of network namespaces: on one
// node, across two nodes over VXLAN and MPLS over UDP (checked on the wire by tshark),
// and with the Linux kernel's own VXLAN device as the other end.
//
// The suite is serialized: iperf3 runs would otherwise share the machine's two cores with
// each other. Each test has its own tag, so they could run beside other suites' tests.

import Foundation
import Glibc
import Testing
import VRouterTestSupport

@Suite(
    .serialized,
    .enabled(if: isRoot, "needs root: makes network namespaces, veths and taps, runs vrouterd"),
    .enabled(
        if: Tool.trafficTools,
        "needs ip, bridge, ping, iperf3, tshark and ethtool (tools/bootstrap installs them)"
    ),
    .enabled(if: Binaries.path("vrouterd") != nil, "vrouterd is not built (swift build)")
)
struct NodeTrafficTests {

    // MARK: one node

    /// Two pods in one VRF reach each other (ping, 2 s of iperf3 TCP); a pod in another VRF
    /// is unreachable both ways and every such packet is counted as no_route.
    @Test func podsOnOneNodeTalkWithinAVRFAndNotAcross() throws {
        let lab = try Lab("o")
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let (p1, p2, p3) = (try lab.namespace("p1"), try lab.namespace("p2"), try lab.namespace("p3"))
        let config = try lab.write(
            "node.yaml",
            """
            vrfs:
              - { name: blue, gateway: 192.0.2.1 }
              - { name: red, gateway: 198.51.100.1 }
            interfaces:
              - { name: p1, kind: pod, vrf: blue, mac: "02:00:00:00:01:0a", ipv4: 192.0.2.10/24, tap: { name: \(lab.name("t1")), netns: \(p1), ifname: eth0 } }
              - { name: p2, kind: pod, vrf: blue, mac: "02:00:00:00:01:0b", ipv4: 192.0.2.11/24, tap: { name: \(lab.name("t2")), netns: \(p2), ifname: eth0 } }
              - { name: p3, kind: pod, vrf: red, mac: "02:00:00:00:02:0a", ipv4: 198.51.100.10/24, tap: { name: \(lab.name("t3")), netns: \(p3), ifname: eth0 } }
            """
        )
        let node = try Daemon(lab, config: config)
        try node.waitRunning()
        for ns in [p1, p2, p3] { try lab.waitForLink("eth0", in: ns) }
        try lab.waitForPing(from: p1, "192.0.2.1")

        #expect(try lab.ping(from: p1, "192.0.2.11") == 3)
        #expect(try lab.ping(from: p2, "192.0.2.10") == 3)
        let perf = try lab.iperf3(server: p2, client: p1, address: "192.0.2.11", seconds: 2)
        #expect(perf.status == 0)
        #expect(perf.error == nil)
        #expect(perf.bytes > 0)

        // Across VRFs: nothing gets through, in either direction.
        #expect(try lab.ping(from: p1, "198.51.100.10") == 0)
        #expect(try lab.ping(from: p3, "192.0.2.10") == 0)

        let stats = try node.stop()
        #expect(stats.reasons["no_route", default: 0] >= 6, "\(stats)")
        #expect(stats["p1", "rx"] > 0 && stats["p2", "tx"] > 0, "\(stats)")
        #expect(stats.dead.isEmpty, "\(stats)")
        // Non-persistent taps go with vrouterd.
        for ns in [p1, p2, p3] { #expect(!(try lab.run([Tool.ip, "-n", ns, "link", "show", "eth0"]).ok)) }
    }

    // MARK: two nodes

    enum Encap: String, CaseIterable, Sendable { case vxlan, mplsOverUDP }
    /// Segmentation offloads: on at both nodes (pods' taps hand over 64 KB superframes,
    /// the fabric sends UDP GSO trains), or off at n2 (taps and fabric without them).
    enum Offloads: String, CaseIterable, Sendable { case on, offAtN2 }

    /// Two node namespaces joined by a veth, one vrouterd each, a pod behind each: ping and
    /// iperf3 pod to pod, and the VNI or label checked on the wire in both directions.
    /// With offloads, n1's fabric veth has its checksum and segmentation offloads off
    /// (ethtool -K tx off), so the kernel cuts n1's UDP GSO trains and completes their
    /// checksums as a NIC would, and the capture at n2 shows the datagrams on the wire:
    /// each within the fabric's MTU, every checksum (outer IPv4 and UDP, inner IPv4 and
    /// TCP) valid. n2's trains cross the veth whole, as they do between vRouters on one
    /// machine, and n1 cuts them on receipt; iperf3 runs both ways (one TCP stream a to b,
    /// four b to a), then UDP a to b.
    @Test(arguments: Encap.allCases, Offloads.allCases)
    func podsOnTwoNodesTalkThroughTheTunnel(_ encap: Encap, _ offloads: Offloads) throws {
        let lab = try Lab((encap == .vxlan ? "v" : "m") + (offloads == .on ? "o" : "f"))
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let n1 = try lab.namespace("n1")
        let n2 = try lab.namespace("n2")
        let a = try lab.namespace("a")
        let b = try lab.namespace("b")
        let (f1, f2) = (lab.name("f1"), lab.name("f2"))
        try lab.veth(f1, in: n1, f2, in: n2)
        // Node n1 holds 192.0.2.0/25 (pod a, label 100), n2 192.0.2.128/25 (pod b, label 200).
        func nodeConfig(
            _ me: String,
            _ myAddress: String,
            _ device: String,
            _ mac: String,
            peer: String,
            peerAddress: String,
            peerPrefix: String,
            pod: String,
            podNS: String,
            podAddress: String,
            podMAC: String,
            myLabel: Int,
            peerLabel: Int,
            offloads: Bool
        ) -> String {
            let off = offloads ? "" : ", offloads: false"
            let enc = encap == .vxlan ? "vxlan" : "mpls-udp"
            let tag = encap == .vxlan ? "vni: 1001" : "label: \(peerLabel)"
            let podLabel = encap == .vxlan ? "" : "label: \(myLabel), "
            return """
                node: { name: \(me) }
                remoteNodes: [ { name: \(peer), address: \(peerAddress), encap: \(enc) } ]
                vrfs:
                  - name: blue
                    vni: 1001
                    gateway: 192.0.2.1
                    routes: [ { prefix: \(peerPrefix), via: \(peer), \(tag) } ]
                interfaces:
                  - { name: fabric, kind: fabric, device: \(device), address: \(myAddress)/24, mac: "\(mac)"\(off) }
                  - { name: \(pod), kind: pod, vrf: blue, mac: "\(podMAC)", ipv4: \(podAddress)/24, \(podLabel)tap: { name: \(lab.name("t" + pod)), netns: \(podNS), ifname: eth0 }\(off) }
                """
        }
        let c1 = try lab.write(
            "n1.yaml",
            nodeConfig(
                "n1",
                "198.18.0.1",
                f1,
                "02:00:00:00:00:01",
                peer: "n2",
                peerAddress: "198.18.0.2",
                peerPrefix: "192.0.2.128/25",
                pod: "a",
                podNS: a,
                podAddress: "192.0.2.10",
                podMAC: "02:00:00:00:01:0a",
                myLabel: 100,
                peerLabel: 200,
                offloads: true
            )
        )
        let c2 = try lab.write(
            "n2.yaml",
            nodeConfig(
                "n2",
                "198.18.0.2",
                f2,
                "02:00:00:00:00:02",
                peer: "n1",
                peerAddress: "198.18.0.1",
                peerPrefix: "192.0.2.0/25",
                pod: "b",
                podNS: b,
                podAddress: "192.0.2.130",
                podMAC: "02:00:00:00:01:0b",
                myLabel: 200,
                peerLabel: 100,
                offloads: offloads == .on
            )
        )
        let node1 = try Daemon(lab, config: c1, in: n1, name: "vrouterd-n1")
        let node2 = try Daemon(lab, config: c2, in: n2, name: "vrouterd-n2")
        try node1.waitRunning()
        try node2.waitRunning()
        try lab.waitForLink("eth0", in: a)
        try lab.waitForLink("eth0", in: b)
        // The first replies need both nodes to have resolved each other's underlay MAC.
        try lab.waitForPing(from: a, "192.0.2.130", timeout: 20)

        // vrouterd sends through its TX ring, which a capture on the sending side does not
        // see: each end's capture shows what the other node sent.
        let filter = "udp port 4789 or udp port 6635"
        let at2 = try lab.capture(in: n2, device: f2, filter: filter, name: "at-n2")
        let at1 = try lab.capture(in: n1, device: f1, filter: filter, name: "at-n1")
        #expect(try lab.ping(from: a, "192.0.2.130", count: 4) == 4)
        let fields = ["udp.srcport", "udp.dstport", "vxlan.vni", "mpls.label", "ip.src", "ip.dst", "icmp.seq"]
        let sentByN1 = try at2.stop(fields: fields)
        let sentByN2 = try at1.stop(fields: fields)

        func check(_ rows: [[String]], from: (String, String), to: (String, String), label: Int, _ what: String) {
            // The four echo requests (or replies), each once at least; nothing else is tunnelled meanwhile.
            #expect(rows.count >= 4, "\(what): \(rows)")
            #expect(
                Set(rows.compactMap { $0.count == 7 ? Int($0[6]) : nil }).isSuperset(of: [1, 2, 3, 4]),
                "\(what): \(rows)"
            )
            for r in rows where r.count == 7 {
                #expect(r[4] == "\(from.0),\(from.1)", "\(what): outer,inner source \(r)")
                #expect(r[5] == "\(to.0),\(to.1)", "\(what): outer,inner destination \(r)")
                // Entropy from the inner flow, in the dynamic range (RFC 7348/7510).
                #expect((Int(r[0]) ?? 0) >= 49152, "\(what): source port \(r)")
                switch encap {
                case .vxlan:
                    #expect(r[1] == "4789" && r[2] == "1001" && r[3].isEmpty, "\(what): \(r)")
                case .mplsOverUDP:
                    #expect(r[1] == "6635" && r[3] == "\(label)" && r[2].isEmpty, "\(what): \(r)")
                }
            }
        }
        check(sentByN1, from: ("198.18.0.1", "192.0.2.10"), to: ("198.18.0.2", "192.0.2.130"), label: 200, "n1 → n2")
        check(sentByN2, from: ("198.18.0.2", "192.0.2.130"), to: ("198.18.0.1", "192.0.2.10"), label: 100, "n2 → n1")

        // TCP both ways; the first 4000 frames n1 sends checked on the wire.
        try lab.must(lab.inNS(n1, [Tool.ethtool, "-K", f1, "tx", "off"]))
        let wire = try lab.capture(in: n2, device: f2, filter: filter, name: "tcp-at-n2", count: 4000)
        let perf = try lab.iperf3(server: b, client: a, address: "192.0.2.130", seconds: 2)
        let segments = try wire.stop(
            fields: ["frame.len", "ip.checksum.status", "udp.checksum.status", "tcp.checksum.status", "tcp.len"],
            validatingChecksums: true
        )
        let back = try lab.iperf3(server: a, client: b, address: "192.0.2.10", seconds: 2, streams: 4)
        let udp = try lab.iperf3(server: b, client: a, address: "192.0.2.130", seconds: 1, udpBitrate: "20M")
        for r in [perf, back, udp] {
            #expect(r.status == 0 && r.error == nil && r.bytes > 0, "\(r)")
            // No retransmission storm: at most 1 % of the segments sent again.
            #expect(r.retransmits * 1448 * 100 <= r.bytes, "\(r)")
        }
        #expect(udp.lostPercent < 5, "UDP: \(udp)")
        let data = segments.filter { $0.count == 5 && (Int($0[4]) ?? 0) > 0 }
        #expect(data.count > 1000, "TCP data segments seen at n2: \(data.count)")
        for r in data {
            // Outer Ethernet/IPv4/UDP/VXLAN (or MPLS) and the inner packet within 1500 + 14.
            #expect((Int(r[0]) ?? .max) <= 1514, "frame longer than the fabric's MTU: \(r)")
            // Each status is "1" (good) per layer: outer and inner IPv4, UDP, TCP.
            #expect(r[1] == "1,1" && (r[2] == "1" || r[2] == "3") && r[3] == "1", "checksums: \(r)")
            if (Int(r[0]) ?? .max) > 1514 || r[1] != "1,1" || !(r[2] == "1" || r[2] == "3") || r[3] != "1" { break }
        }
        #expect(try lab.ping(from: b, "192.0.2.10") == 3)

        // Pings of every size from 64 to 9000 bytes, DF clear and set, behave as they did
        // before offloads: what fits the tunnel (the pods' MTU of 1500 less the
        // encapsulation) is answered; a larger packet is fragmented inside the tunnel (DF
        // clear) or answered with frag-needed naming the tunnel's MTU (DF set); beyond the
        // pod's MTU its own kernel fragments (DF clear) or refuses to send (DF set).
        let fits = encap == .vxlan ? 1450 : 1468
        let clear = try lab.pingSweep(from: a, "192.0.2.130", sizes: 64...9000, dontFragment: false)
        #expect(clear == ["64-9000 reply"], "DF clear: \(clear)")
        let set = try lab.pingSweep(from: a, "192.0.2.130", sizes: 64...9000, dontFragment: true)
        let expected = ["64-\(fits) reply", "\(fits + 1)-1500 frag-needed:\(fits)", "1501-9000 local:EMSGSIZE"]
        #expect(set == expected, "DF set: \(set)")

        let s1 = try node1.stop()
        let s2 = try node2.stop()
        for s in [s1, s2] {
            #expect(s["fabric", "rx"] > 0 && s["fabric", "tx"] > 0, "\(s)")
            #expect(s.dead.isEmpty, "\(s)")
        }
        #expect(s1["a", "rx"] > 0 && s2["b", "tx"] > 0, "\(s1) / \(s2)")
    }

    // MARK: the kernel's VXLAN

    /// A pod behind vrouterd and the Linux kernel's VXLAN device ping each other both ways:
    /// the kernel decapsulates what vrouterd encapsulates and vrouterd what the kernel does.
    ///
    /// Underlay: one veth between the vrouterd node's namespace and the kernel node's (no
    /// bridge needed for two ends). The kernel node has 198.18.0.3 on its veth and vxlan0
    /// (VNI 1001, no learning) holding 192.0.2.200/24; its flood entry points at vrouterd's
    /// underlay address. vrouterd answers ARP on the underlay but not ARP carried inside
    /// VXLAN, so the kernel gets a static neighbour for the pod (the vRouter MAC), and
    /// vrouterd's remote-node entry carries vxlan0's MAC as the inner destination.
    @Test func podAndTheKernelsVXLANDeviceTalkBothWays() throws {
        let lab = try Lab("k")
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let n1 = try lab.namespace("n1")
        let k = try lab.namespace("k")
        let a = try lab.namespace("a")
        let (f1, fk) = (lab.name("f1"), lab.name("fk"))
        try lab.veth(f1, in: n1, fk, in: k)
        let vxlanMAC = "02:00:00:00:0e:01"
        try lab.ip("-n", k, "addr", "add", "198.18.0.3/24", "dev", fk)
        try lab.ip(
            "-n",
            k,
            "link",
            "add",
            "vxlan0",
            "type",
            "vxlan",
            "id",
            "1001",
            "dstport",
            "4789",
            "local",
            "198.18.0.3",
            "dev",
            fk,
            "nolearning"
        )
        try lab.ip("-n", k, "link", "set", "vxlan0", "address", vxlanMAC)
        try lab.must(
            lab.inNS(k, [Tool.bridge, "fdb", "append", "00:00:00:00:00:00", "dev", "vxlan0", "dst", "198.18.0.1"])
        )
        try lab.ip("-n", k, "addr", "add", "192.0.2.200/24", "dev", "vxlan0")
        try lab.ip("-n", k, "link", "set", "vxlan0", "up")
        try lab.ip(
            "-n",
            k,
            "neigh",
            "add",
            "192.0.2.10",
            "lladdr",
            "00:00:5e:00:01:00",
            "dev",
            "vxlan0",
            "nud",
            "permanent"
        )

        let config = try lab.write(
            "n1.yaml",
            """
            node: { name: n1 }
            remoteNodes: [ { name: k, address: 198.18.0.3, encap: vxlan, innerMAC: "\(vxlanMAC)" } ]
            vrfs:
              - name: blue
                vni: 1001
                gateway: 192.0.2.1
                routes: [ { prefix: 192.0.2.128/25, via: k, vni: 1001 } ]
            interfaces:
              - { name: fabric, kind: fabric, device: \(f1), address: 198.18.0.1/24, mac: "02:00:00:00:00:01" }
              - { name: a, kind: pod, vrf: blue, mac: "02:00:00:00:01:0a", ipv4: 192.0.2.10/24, tap: { name: \(lab.name("ta")), netns: \(a), ifname: eth0 } }
            """
        )
        let node = try Daemon(lab, config: config, in: n1)
        try node.waitRunning()
        try lab.waitForLink("eth0", in: a)
        try lab.waitForPing(from: a, "192.0.2.200", timeout: 20)

        #expect(try lab.ping(from: a, "192.0.2.200", count: 4) == 4)
        #expect(try lab.ping(from: k, "192.0.2.10", count: 4) == 4)
        // TCP both ways, vrouterd's pod with offloads: toward the kernel its superframes
        // leave as UDP GSO trains, which the kernel's UDP cuts for vxlan0; from the kernel
        // come vxlan0's own superframes (64 KB through the veth), decapsulated whole.
        for (server, client, address) in [(k, a, "192.0.2.200"), (a, k, "192.0.2.10")] {
            let r = try lab.iperf3(server: server, client: client, address: address, seconds: 2)
            #expect(r.status == 0 && r.error == nil && r.bytes > 0, "\(client) → \(address): \(r)")
            #expect(r.retransmits * 1448 * 100 <= r.bytes, "\(client) → \(address): \(r)")
        }
        // The kernel's side of it: vxlan0 took in (decapsulated) frames from vrouterd.
        let link = try lab.ip("-n", k, "-s", "-j", "link", "show", "vxlan0")
        let rx =
            ((try? JSONSerialization.jsonObject(with: Data(link.utf8))) as? [[String: Any]])?.first
            .flatMap { ($0["stats64"] as? [String: Any])?["rx"] as? [String: Any] }?["packets"] as? NSNumber
        #expect((rx?.intValue ?? 0) >= 8, "\(link)")

        let s = try node.stop()
        #expect(s["fabric", "rx"] >= 8 && s["a", "rx"] >= 8, "\(s)")
        #expect(s.dead.isEmpty, "\(s)")
    }
}
