// The control plane changing a node that carries traffic: route churn must not cost the
// traffic a packet, and a vrouterd killed with -9 under traffic comes back with the
// same state and the pods' traffic resumes (their taps are persistent).

import Foundation
import Glibc
import Testing
import VRouterAPI
import VRouterTestSupport

@Suite(
    .serialized,
    .enabled(if: isRoot, "needs root: makes network namespaces and taps, runs vrouterd"),
    .enabled(if: Tool.trafficTools, "needs ip, ping, iperf3 (tools/bootstrap installs them)"),
    .enabled(if: Binaries.path("vrouterd") != nil, "vrouterd is not built (swift build)")
)
struct ControlPlaneTrafficTests {
    static func podsConfig(_ lab: Lab, _ p1: String, _ p2: String, persistent: Bool) -> String {
        """
        vrfs:
          - { name: blue, gateway: 192.0.2.1 }
        interfaces:
          - { name: p1, kind: pod, vrf: blue, mac: "02:00:00:00:01:0a", ipv4: 192.0.2.10/24, tap: { name: \(lab.name("t1")), netns: \(p1), ifname: eth0, persistent: \(persistent) } }
          - { name: p2, kind: pod, vrf: blue, mac: "02:00:00:00:01:0b", ipv4: 192.0.2.11/24, tap: { name: \(lab.name("t2")), netns: \(p2), ifname: eth0, persistent: \(persistent) } }
        """
    }

    /// 10,000 route adds and deletes (batches and single changes, in the same VRF, none
    /// covering the pods) while iperf3 sends UDP between two pods: iperf3 loses nothing
    /// but what the receiving kernel itself counts as lost (a starved receiver's socket
    /// buffer, a full backlog), and vrouterd counts no drop.
    @Test func routeChurnUnderTrafficLosesNothing() throws {
        let lab = try Lab("c")
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let (p1, p2) = (try lab.namespace("p1"), try lab.namespace("p2"))
        let config = try lab.write("node.yaml", Self.podsConfig(lab, p1, p2, persistent: false))
        let node = try Daemon(lab, config: config)
        try node.waitRunning()
        for ns in [p1, p2] { try lab.waitForLink("eth0", in: ns) }
        try lab.waitForPing(from: p1, "192.0.2.11")
        let api = ControlClient(socketPath: node.socket)

        // What the kernels lose on their own (a receiver starved of CPU overflows its socket
        // buffer; a full backlog queue drops) is counted there, not by vrouterd: read those
        // counters around the run so only loss nobody explains fails the test.
        func kernelLoss() throws -> Int {
            let snmp = try lab.must(lab.inNS(p2, ["cat", "/proc/net/snmp"])).split(separator: "\n")
            let udp = snmp.filter { $0.hasPrefix("Udp: ") }.map { $0.split(separator: " ") }
            var loss = 0
            if udp.count == 2, let i = udp[0].firstIndex(of: "RcvbufErrors"), let n = Int(udp[1][i]) { loss += n }
            // Second column of every CPU's line: packets dropped for a full backlog.
            for line in try String(contentsOfFile: "/proc/net/softnet_stat", encoding: .utf8).split(separator: "\n") {
                let cols = line.split(separator: " ")
                if cols.count > 1, let n = Int(cols[1], radix: 16) { loss += n }
            }
            return loss
        }
        let kernelLossBefore = try kernelLoss()

        let server = try lab.start(lab.inNS(p2, [Tool.iperf3, "-s", "-1", "--forceflush"]), name: "iperf3-s")
        defer { server.end(grace: 2) }
        var waited = 0
        while !server.stdout.contains("Server listening") && waited < 500 {
            usleep(20_000)
            waited += 1
        }
        // UDP, fixed rate, so a lost datagram shows (TCP would retransmit it).
        let client = try lab.start(
            lab.inNS(p1, [Tool.iperf3, "-c", "192.0.2.11", "-u", "-b", "20M", "-l", "1200", "-t", "8", "--json"]),
            name: "iperf3-c"
        )
        defer { client.end(grace: 2) }
        usleep(500_000)

        // 10,000 changes: 4,000 adds and 4,000 deletes in batches of 200, then 1,000 adds
        // and 1,000 deletes one at a time.
        var changes = 0
        func p(_ i: Int) -> String { "198.18.\(128 + i / 256).\(i % 256)/32" }
        for batch in 0..<20 {
            let adds = (0..<200).map { RouteSpec(prefix: p(batch * 200 + $0), discard: true) }
            let r: RouteChangeResult = try api.send("POST", "/v1/vrfs/blue/routes", RouteChange(add: adds))
            changes += r.added
        }
        for batch in 0..<20 {
            let dels = (0..<200).map { p(batch * 200 + $0) }
            let r: RouteChangeResult = try api.send("POST", "/v1/vrfs/blue/routes", RouteChange(delete: dels))
            changes += r.deleted
        }
        for i in 0..<1000 {
            let _: RouteChangeResult = try api.send(
                "POST",
                "/v1/vrfs/blue/routes",
                RouteChange(add: [RouteSpec(prefix: p(i), via: nil, discard: true)])
            )
            let _: RouteChangeResult = try api.send("POST", "/v1/vrfs/blue/routes", RouteChange(delete: [p(i)]))
            changes += 2
        }
        #expect(changes == 10_000)
        let routes: [RouteInfo] = try api.call("GET", "/v1/vrfs/blue/routes")
        #expect(routes.count == 3)  // the two pods and the gateway: every change undone

        guard client.wait(seconds: 30) == 0 else {
            Issue.record("iperf3 client failed: \(client.stdout) \(client.stderr)")
            return
        }
        guard let obj = try? JSONSerialization.jsonObject(with: Data(client.stdout.utf8)) as? [String: Any],
            let sum = (obj["end"] as? [String: Any])?["sum"] as? [String: Any]
        else {
            Issue.record("iperf3 printed no JSON: \(client.stdout)")
            return
        }
        let packets = (sum["packets"] as? NSNumber)?.intValue ?? 0
        let lost = (sum["lost_packets"] as? NSNumber)?.intValue ?? -1
        #expect(packets > 10_000, "\(sum)")
        let explained = try kernelLoss() - kernelLossBefore
        #expect(lost >= 0 && lost <= explained, "\(sum); the kernels counted \(explained) lost themselves")
        let drops: DropStatsInfo = try api.call("GET", "/v1/dropstats")
        let unexpected = drops.reasons.filter {
            $0.value > 0 && $0.key != "multicast" && $0.key != "spoofed_source" && $0.key != "unhandled_icmp"
        }
        #expect(unexpected.isEmpty, "\(unexpected)")
        _ = try node.stop()
    }

    /// kill -9 under traffic, restart on the same state directory: the API shows the same
    /// state (VRFs, routes, nexthops, interfaces) and ping resumes through the persistent taps.
    @Test func killDashNineAndRestartRestoresStateAndTraffic() throws {
        let lab = try Lab("k")
        defer {
            // Persistent taps outlive vrouterd by design: remove them with the namespaces.
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let (p1, p2) = (try lab.namespace("p1"), try lab.namespace("p2"))
        let config = try lab.write("node.yaml", Self.podsConfig(lab, p1, p2, persistent: true))
        let state = (config as NSString).deletingLastPathComponent + "/state"
        let first = try Daemon(lab, config: config, name: "first", extra: ["--state-dir", state])
        try first.waitRunning()
        for ns in [p1, p2] { try lab.waitForLink("eth0", in: ns) }
        try lab.waitForPing(from: p1, "192.0.2.11")
        let api = ControlClient(socketPath: first.socket)
        // Changes through the API, so the journal has something to replay.
        let _: VRFInfo = try api.send("POST", "/v1/vrfs", VRFSpec(name: "red", vni: 1002, gateway: "198.51.100.1"))
        let adds = (0..<50).map { RouteSpec(prefix: "203.0.113.\($0)/32", interface: "p2") }
        let _: RouteChangeResult = try api.send("POST", "/v1/vrfs/blue/routes", RouteChange(add: adds))
        func snapshot(_ c: ControlClient) throws -> String {
            var parts: [String] = []
            for path in [
                "/v1/vrfs", "/v1/vrfs/blue/routes", "/v1/vrfs/red/routes", "/v1/nexthops", "/v1/labels", "/v1/vnis",
            ] {
                parts.append(String(decoding: try c.raw("GET", path), as: UTF8.self))
            }
            let vifs: [InterfaceInfo] = try c.call("GET", "/v1/interfaces")
            parts.append(
                vifs.map {
                    "\($0.id) \($0.name) \($0.vrf ?? "") \($0.mac) \($0.ipv4 ?? "") \($0.label.map(String.init) ?? "")"
                }.joined(separator: ";")
            )
            return parts.joined(separator: "\n")
        }
        let before = try snapshot(api)

        // Traffic running, then kill -9.
        let ping = try lab.start(lab.inNS(p1, ["ping", "-i", "0.1", "-W", "1", "192.0.2.11"]), name: "ping")
        defer { ping.end(grace: 1) }
        usleep(500_000)
        kill(first.child.pid, SIGKILL)
        _ = first.child.wait(seconds: 5)
        // The pods keep their interfaces (persistent taps), addresses and routes.
        #expect(try lab.run([Tool.ip, "-n", p1, "addr", "show", "eth0"]).output.contains("192.0.2.10/24"))

        let second = try Daemon(lab, config: config, name: "second", extra: ["--state-dir", state])
        try second.waitRunning()
        let after = try snapshot(ControlClient(socketPath: second.socket))
        #expect(after == before)
        try lab.waitForPing(from: p1, "192.0.2.11", timeout: 10)
        #expect(try lab.ping(from: p1, "192.0.2.11") == 3)
        _ = try second.stop()
    }
}
