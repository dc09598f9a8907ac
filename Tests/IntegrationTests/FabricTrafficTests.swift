// Pods reaching beyond their overlay, with real traffic. Node n1's "green" network uses
// fabric SNAT (two workers, so replies must be steered to the worker owning their port)
// and its "purple" network is routed on the fabric (IP-fabric forwarding); node n2 holds
// the other half of purple. A router on the fabric is the underlay gateway (198.18.0.254)
// and a "world" host (192.0.2.2) sits behind it with a route back to n1's underlay
// address only (and, to reach purple pods, to purple). tshark on the router's fabric port
// says what the fabric carried.
//
//   p1, p2 (green)  q1 (purple)                                q2 (purple)
//            \  |  /                                                |
//              n1  198.18.0.1 ───┐                       ┌─── 198.18.0.2  n2
//                                └── fabric switch (fs) ─┘
//                                           │
//                                rt 198.18.0.254 ─ 192.0.2.1/30 ─ world 192.0.2.2

import Foundation
import Glibc
import Testing
import VRouterAPI
import VRouterTestSupport

@Suite(
    .serialized,
    .enabled(if: isRoot, "needs root: makes network namespaces, veths and taps, runs vrouterd"),
    .enabled(if: Tool.trafficTools, "needs ip, bridge, ping, iperf3 and tshark (tools/bootstrap installs them)"),
    .enabled(if: Binaries.path("vrouterd") != nil, "vrouterd is not built (swift build)")
)
struct FabricTrafficTests {
    static let python = "/usr/bin/python3"

    /// The namespaces, the fabric switch, the router and the world, and both nodes.
    final class Fabric {
        let lab: Lab
        let n1: String, n2: String, rt: String, world: String, p1: String, p2: String, q1: String, q2: String
        let rtFabric: String
        var node1: Daemon!
        var node2: Daemon!

        init(_ lab: Lab) throws {
            self.lab = lab
            n1 = try lab.namespace("n1")
            n2 = try lab.namespace("n2")
            rt = try lab.namespace("rt")
            world = try lab.namespace("w")
            p1 = try lab.namespace("p1")
            p2 = try lab.namespace("p2")
            q1 = try lab.namespace("q1")
            q2 = try lab.namespace("q2")
            let fs = try lab.namespace("fs")
            try lab.ip("-n", fs, "link", "add", "sw", "type", "bridge")
            try lab.ip("-n", fs, "link", "set", "sw", "up")
            rtFabric = lab.name("rf")
            for (end, ns, port) in [
                (lab.name("f1"), n1, lab.name("s1")), (lab.name("f2"), n2, lab.name("s2")),
                (rtFabric, rt, lab.name("s3")),
            ] {
                try lab.veth(end, in: ns, port, in: fs)
                try lab.ip("-n", fs, "link", "set", port, "master", "sw")
            }
            try lab.ip("-n", rt, "address", "add", "198.18.0.254/24", "dev", rtFabric)
            try lab.veth(lab.name("rw"), in: rt, lab.name("wr"), in: world)
            try lab.ip("-n", rt, "address", "add", "192.0.2.1/30", "dev", lab.name("rw"))
            try lab.ip("-n", world, "address", "add", "192.0.2.2/30", "dev", lab.name("wr"))
            // A router that forwards, and does not tell the nodes about shorter paths.
            for k in [
                "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.\(rtFabric).send_redirects=0",
            ] {
                try lab.must(lab.inNS(rt, ["/usr/sbin/sysctl", "-qw", k]))
            }
            // The fabric routes each node's half of purple to it (IP-fabric forwarding), and
            // would route green's overlay addresses to n1 if anyone tried them.
            try lab.ip("-n", rt, "route", "add", "198.19.1.0/25", "via", "198.18.0.1")
            try lab.ip("-n", rt, "route", "add", "198.19.1.128/25", "via", "198.18.0.2")
            try lab.ip("-n", rt, "route", "add", "198.51.100.0/24", "via", "198.18.0.1")
            try lab.ip("-n", world, "route", "add", "198.18.0.1/32", "via", "192.0.2.1")
            try lab.ip("-n", world, "route", "add", "198.19.1.0/24", "via", "192.0.2.1")
            try lab.ip("-n", world, "route", "add", "198.51.100.0/24", "via", "192.0.2.1")
        }

        func start() throws {
            let c1 = try lab.write(
                "n1.yaml",
                """
                node: { name: n1 }
                workers: 2
                flows: { idleTimeout: 3s }
                snat: { ports: 20000-20999 }
                vrfs:
                  - { name: green, gateway: 198.51.100.1, ipFabricSnat: true }
                  - { name: purple, gateway: 198.19.1.1, ipFabricForwarding: true }
                interfaces:
                  - { name: fabric, kind: fabric, device: \(lab.name("f1")), address: 198.18.0.1/24, mac: "02:00:00:00:00:01", gateway: 198.18.0.254 }
                  - { name: p1, kind: pod, vrf: green, mac: "02:00:00:00:01:0a", ipv4: 198.51.100.10/24, tap: { name: \(lab.name("t1")), netns: \(p1), ifname: eth0 } }
                  - { name: p2, kind: pod, vrf: green, mac: "02:00:00:00:01:0b", ipv4: 198.51.100.11/24, tap: { name: \(lab.name("t2")), netns: \(p2), ifname: eth0 } }
                  - { name: q1, kind: pod, vrf: purple, mac: "02:00:00:00:02:0a", ipv4: 198.19.1.10/24, tap: { name: \(lab.name("t3")), netns: \(q1), ifname: eth0 } }
                """
            )
            let c2 = try lab.write(
                "n2.yaml",
                """
                node: { name: n2 }
                vrfs:
                  - { name: purple, gateway: 198.19.1.1, ipFabricForwarding: true }
                interfaces:
                  - { name: fabric, kind: fabric, device: \(lab.name("f2")), address: 198.18.0.2/24, mac: "02:00:00:00:00:02", gateway: 198.18.0.254 }
                  - { name: q2, kind: pod, vrf: purple, mac: "02:00:00:00:02:0b", ipv4: 198.19.1.130/24, tap: { name: \(lab.name("t4")), netns: \(q2), ifname: eth0 } }
                """
            )
            node1 = try Daemon(lab, config: c1, in: n1, name: "n1")
            node2 = try Daemon(lab, config: c2, in: n2, name: "n2")
            try node1.waitRunning()
            try node2.waitRunning()
            for ns in [p1, p2, q1] { try lab.waitForLink("eth0", in: ns) }
            try lab.waitForLink("eth0", in: q2)
            // The gateway's MAC is resolved by ARP meanwhile.
            try lab.waitForPing(from: p1, "192.0.2.2", timeout: 20)
        }

        /// Python in namespace `ns` (for sockets with chosen ports).
        func python(_ ns: String, _ code: String, timeout: Double = 20) throws -> Finished {
            try lab.run(lab.inNS(ns, [FabricTrafficTests.python, "-c", code]), timeout: timeout)
        }

        /// A UDP echo server in the world on port 9999 that prints every peer it hears.
        func udpEcho() throws -> Child {
            let c = try lab.start(
                lab.inNS(
                    world,
                    [
                        FabricTrafficTests.python, "-u", "-c",
                        """
                        import socket
                        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        s.bind(('192.0.2.2', 9999))
                        print('ready', flush=True)
                        while True:
                            data, peer = s.recvfrom(2048)
                            print('%s:%d' % peer, flush=True)
                            s.sendto(data, peer)
                        """,
                    ]
                ),
                name: "udp-echo"
            )
            let deadline = Date().addingTimeInterval(10)
            while !c.stdout.contains("ready") {
                guard Date() < deadline, c.isRunning else { throw Failure("udp echo did not start: \(c.stderr)") }
                usleep(20_000)
            }
            return c
        }

        /// Sends one datagram from `ns` (bound to `port`) to the world's echo and returns
        /// whether the echo came back.
        func udpRoundTrip(from ns: String, port: Int) throws -> Bool {
            let r = try python(
                ns,
                """
                import socket
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(('0.0.0.0', \(port)))
                s.settimeout(3)
                s.sendto(b'hello', ('192.0.2.2', 9999))
                print(s.recvfrom(100)[0].decode())
                """
            )
            return r.ok && r.output.contains("hello")
        }

        func dropstats() throws -> [String: UInt64] {
            let d: DropStatsInfo = try node1.api.call("GET", "/v1/dropstats")
            return d.reasons
        }
    }

    /// ping, TCP and UDP from both SNAT pods reach the world; on the fabric only the
    /// node's underlay address shows; the same source port from two pods becomes two
    /// ports; a ping with TTL 2 gets the router's time-exceeded back; `flow list` shows
    /// the translations.
    @Test func snatPodsReachTheWorldAsTheNode() throws {
        let lab = try Lab("s")
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let f = try Fabric(lab)
        try f.start()
        // Every IP packet but TCP's bulk (its SYNs, FINs and RSTs stay): the capture stays
        // small enough to be read back whole.
        let cap = try lab.capture(
            in: f.rt,
            device: f.rtFabric,
            filter: "ip and not (tcp and tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) == 0)",
            name: "fabric"
        )

        #expect(try lab.ping(from: f.p1, "192.0.2.2") == 3)
        #expect(try lab.ping(from: f.p2, "192.0.2.2") == 3)
        let tcp = try lab.iperf3(server: f.world, client: f.p1, address: "192.0.2.2", seconds: 2)
        #expect(tcp.status == 0 && tcp.error == nil && tcp.bytes > 0, "\(tcp)")
        let server = try lab.start(lab.inNS(f.world, [Tool.iperf3, "-s", "-1", "--forceflush"]), name: "iperf3-udp")
        defer { server.end(grace: 2) }
        var waited = 0
        while !server.stdout.contains("Server listening") && waited < 500 {
            usleep(20_000)
            waited += 1
        }
        let udp = try lab.run(
            lab.inNS(f.p2, [Tool.iperf3, "-c", "192.0.2.2", "-u", "-b", "10M", "-t", "2", "--json"]),
            timeout: 30
        )
        let sent = (try? JSONSerialization.jsonObject(with: Data(udp.output.utf8)) as? [String: Any]).flatMap {
            (($0["end"] as? [String: Any])?["sum"] as? [String: Any])?["packets"] as? Int
        }
        #expect(udp.ok && (sent ?? 0) > 0, "\(udp.output) \(udp.error)")

        // Two pods, one source port, one server: two translated ports, both echoed back.
        let echo = try f.udpEcho()
        #expect(try f.udpRoundTrip(from: f.p1, port: 5555))
        #expect(try f.udpRoundTrip(from: f.p2, port: 5555))
        let peers = echo.stdout.split(separator: "\n").filter { $0.hasPrefix("198.") }
        #expect(peers.count == 2 && Set(peers).count == 2, "\(peers)")
        #expect(peers.allSatisfy { $0.hasPrefix("198.18.0.1:2") }, "\(peers)")

        // A small TTL: the router's time-exceeded comes back, translated to the pod.
        let ttl = try lab.run(lab.inNS(f.p1, [Tool.ping, "-c", "1", "-t", "2", "-W", "2", "-n", "192.0.2.2"]))
        #expect(ttl.output.contains("198.18.0.254") && ttl.output.contains("Time to live exceeded"), "\(ttl.output)")
        // And a traceroute's UDP probe: the error quotes the translated datagram, so the
        // pod's kernel hands it to the probing socket (IP_RECVERR) only if the quote was
        // translated back to the pod's address and port. Prints origin, type, offender.
        let probe = try f.python(
            f.p1,
            """
            import socket, select, struct
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_IP, 11, 1)  # IP_RECVERR
            s.setsockopt(socket.SOL_IP, socket.IP_TTL, 2)
            s.bind(('0.0.0.0', 33000))
            s.sendto(b'probe', ('192.0.2.2', 33434))
            p = select.poll(); p.register(s, select.POLLERR)
            if p.poll(3000):
                data, anc, _, _ = s.recvmsg(512, 512, socket.MSG_ERRQUEUE)
                for level, kind, e in anc:
                    if level == socket.SOL_IP and kind == 11:
                        print(e[4], e[5], socket.inet_ntoa(e[20:24]), data)
            """
        )
        // Origin 2 is ICMP, type 11 time exceeded; the quote's payload is the probe's.
        #expect(probe.output.contains("2 11 198.18.0.254 b'probe'"), "\(probe.output) \(probe.error)")

        let flows: [FlowInfo] = try f.node1.api.call("GET", "/v1/flows?top=1000")
        #expect(flows.contains { $0.translation?.hasPrefix("snat 198.18.0.1:2") == true })
        #expect(flows.contains { $0.translation?.hasPrefix("dnat 198.51.100.1") == true })

        let rows = try cap.stop(fields: ["ip.src", "ip.dst"])
        #expect(rows.count > 20)
        // Out on the fabric the pods never show: everything toward the world or the
        // router comes from the node's underlay address, from both pods' flows.
        #expect(!rows.contains { $0.contains { $0.hasPrefix("198.51.100.") } }, "\(rows.prefix(5))")
        let outward = rows.filter { $0.count == 2 && ($0[1] == "192.0.2.2" || $0[1] == "198.18.0.254") }
        #expect(outward.count > 10)
        #expect(outward.allSatisfy { $0[0] == "198.18.0.1" }, "\(outward.filter { $0[0] != "198.18.0.1" }.prefix(5))")
        let stats = try f.node1.stop()
        #expect(stats.reasons["nat_ports_exhausted", default: 0] == 0, "\(stats)")
        _ = try f.node2.stop()
    }

    /// Nothing from outside opens a connection to a SNAT pod, neither to the node's
    /// address nor to the pod's own; a reply after its flow aged out is dropped and counted.
    @Test func theWorldCannotReachSnatPods() throws {
        let lab = try Lab("i")
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let f = try Fabric(lab)
        try f.start()
        let listen = try lab.start(
            lab.inNS(
                f.p1,
                [
                    FabricTrafficTests.python, "-c",
                    "import socket; s=socket.create_server(('0.0.0.0', 8080)); s.accept()",
                ]
            ),
            name: "pod-listener"
        )
        _ = listen
        var before = try f.dropstats()
        for target in ["198.18.0.1", "198.51.100.10"] {
            let r = try f.python(
                f.world,
                "import socket; socket.create_connection(('\(target)', 8080), timeout=2); print('connected')"
            )
            #expect(!r.output.contains("connected"), "\(target)")
        }
        var after = try f.dropstats()
        #expect(after["nat_no_mapping", default: 0] > before["nat_no_mapping", default: 0])
        #expect(after["not_tunnel", default: 0] > before["not_tunnel", default: 0])

        // A flow out, its port as the world saw it; then silence past the idle timeout (3 s)
        // and a "reply" to that port: dropped and counted, the pod hears nothing.
        let echo = try f.udpEcho()
        #expect(try f.udpRoundTrip(from: f.p1, port: 6000))
        guard let peer = echo.stdout.split(separator: "\n").last(where: { $0.hasPrefix("198.18.0.1:") }),
            let port = peer.split(separator: ":").last
        else {
            Issue.record("the echo heard no one: \(echo.stdout)")
            return
        }
        echo.end(grace: 1)
        let waiting = try lab.start(
            lab.inNS(
                f.p1,
                [
                    FabricTrafficTests.python, "-c",
                    "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 6000)); s.settimeout(12); print(s.recvfrom(100))",
                ]
            ),
            name: "pod-waits"
        )
        sleep(6)
        before = after
        let late = try f.python(
            f.world,
            """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(('192.0.2.2', 9999))
            s.sendto(b'late', ('198.18.0.1', \(port)))
            """
        )
        #expect(late.ok, "\(late.error)")
        usleep(500_000)
        after = try f.dropstats()
        #expect(after["nat_no_mapping", default: 0] >= before["nat_no_mapping", default: 0] + 1)
        _ = waiting.wait(seconds: 10)
        #expect(!waiting.stdout.contains("late"), "\(waiting.stdout)")
        _ = try f.node1.stop()
        _ = try f.node2.stop()
    }

    /// IP-fabric forwarding: the world reaches q1 by its own address; q1 and q2 on the two
    /// nodes talk through the fabric untunneled (no VXLAN, no MPLS on the wire).
    @Test func forwardedPodsAreReachedOnTheFabric() throws {
        let lab = try Lab("f")
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let f = try Fabric(lab)
        try f.start()
        // TCP's bulk left out (iperf3's 2 s of it made a capture of hundreds of MB that
        // tshark could not always finish writing before it was stopped); a tunnel would
        // still show in the pings' and the handshake's packets.
        let cap = try lab.capture(
            in: f.rt,
            device: f.rtFabric,
            filter: "ip and not (tcp and tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) == 0)",
            name: "fabric"
        )
        try lab.waitForPing(from: f.world, "198.19.1.10", timeout: 15)
        #expect(try lab.ping(from: f.world, "198.19.1.10") == 3)
        try lab.waitForPing(from: f.q1, "198.19.1.130", timeout: 15)
        #expect(try lab.ping(from: f.q1, "198.19.1.130") == 3)
        #expect(try lab.ping(from: f.q2, "198.19.1.10") == 3)
        let perf = try lab.iperf3(server: f.q2, client: f.q1, address: "198.19.1.130", seconds: 2)
        #expect(perf.status == 0 && perf.bytes > 0, "\(perf)")
        let rows = try cap.stop(fields: ["ip.src", "ip.dst", "udp.dstport"])
        #expect(rows.contains { $0[0] == "198.19.1.10" && $0[1] == "198.19.1.130" })
        #expect(rows.contains { $0[0] == "198.19.1.130" && $0[1] == "198.19.1.10" })
        #expect(!rows.contains { $0.count > 2 && ($0[2] == "4789" || $0[2] == "6635") }, "tunnels on the fabric")
        _ = try f.node1.stop()
        _ = try f.node2.stop()
    }
}
