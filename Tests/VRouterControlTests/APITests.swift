// The control API and vrouterctl against a running vrouterd over its real socket:
// every vrouterctl command once (its -o json parsed and checked), bad input refused
// with a message and no change, the socket closed to other users, and the metrics
// endpoint scraped. Needs root (namespaces, taps, a veth fabric, setpriv).

import Foundation
import Testing
import VRouterAPI
import VRouterControl
import VRouterTestSupport

@Suite(.serialized) struct APITests {
    static let tag = "\(getpid() % 100_000)"
    static let netns = "vrt-api-\(tag)"
    static let fabricLink = "vrtapi\(tag)f"
    static let tapName = "vrtapi\(tag)t"

    static func cleanup() {
        sh(
            "ip link del \(fabricLink) 2>/dev/null; ip link del \(tapName) 2>/dev/null; ip netns del \(netns) 2>/dev/null"
        )
    }

    @Test func everyCommandOnce() throws {
        guard isRoot else {
            Issue.record("needs root (network namespace, tap, veth fabric)")
            return
        }
        Self.cleanup()
        defer { Self.cleanup() }
        // The fabric: one end of a veth pair whose other end is in the test's namespace.
        sh(
            "ip netns add \(Self.netns) && ip link add \(Self.fabricLink) type veth peer name vrtapi\(Self.tag)u netns \(Self.netns)"
        )
        let yaml = """
            node: { name: vrt-api-node }
            vrfs: [ { name: blue, gateway: 192.0.2.1, vni: 100 } ]
            interfaces:
              - { name: fabric, kind: fabric, mac: "02:00:00:00:00:fe", ipv4: 198.18.0.1/24, device: \(Self.fabricLink) }
            """
        let d = try Daemon("every", yaml: yaml, extra: ["--metrics", "127.0.0.1:0"])
        defer { d.terminate() }

        // status
        let st = try #require(try d.json(["status"]) as? [String: Any])
        #expect(st["node"] as? String == "vrt-api-node")
        #expect(st["workers"] as? Int == 1)
        #expect(st["healthy"] as? Bool == true)
        #expect(st["socket"] as? String == d.socket)
        let metrics = try #require(st["metrics"] as? String)

        // vrf add / list
        let red = try #require(
            try d.json(["vrf", "add", "red", "--vni", "200", "--gateway", "198.51.100.1"]) as? [String: Any]
        )
        #expect(red["name"] as? String == "red")
        #expect(red["vni"] as? Int == 200)
        let vrfs = objects(try d.json(["vrf", "list"]))
        #expect(Set(vrfs.compactMap { $0["name"] as? String }) == ["blue", "red"])
        #expect(vrfs.first { $0["name"] as? String == "red" }?["ipv4Routes"] as? Int == 1)  // the gateway

        // node add / list
        _ = try d.json([
            "node", "add", "n1", "--address", "198.18.0.2", "--encap", "vxlan", "--mac", "02:00:00:00:00:02",
        ])
        _ = try d.json(["node", "add", "n2", "--address", "198.18.0.3", "--encap", "mpls-udp"])
        let nodes = objects(try d.json(["node", "list"]))
        #expect(nodes.count == 2)
        let n1 = try #require(nodes.first { $0["name"] as? String == "n1" })
        #expect(n1["encap"] as? String == "vxlan")
        #expect(n1["resolved"] as? Bool == true)
        #expect(n1["underlayMAC"] as? String == "02:00:00:00:00:02")

        // vif add (a tap moved into the pod's namespace) / list
        let vif = try #require(
            try d.json([
                "vif", "add", "pod1", "--vrf", "red", "--mac", "02:00:00:00:01:01", "--tap", Self.tapName, "--netns",
                Self.netns,
                "--ifname", "eth0", "--ipv4", "198.51.100.10/24", "--label", "100",
            ]) as? [String: Any]
        )
        #expect(vif["name"] as? String == "pod1")
        let vifs = objects(try d.json(["vif", "list"]))
        let pod = try #require(vifs.first { $0["name"] as? String == "pod1" })
        #expect(pod["vrf"] as? String == "red")
        #expect(pod["ipv4"] as? String == "198.51.100.10/24")
        #expect((pod["tap"] as? [String: Any])?["netns"] as? String == Self.netns)
        #expect(vifs.contains { $0["name"] as? String == "fabric" && $0["kind"] as? String == "fabric" })
        let inNS = try run(["/sbin/ip", "-n", Self.netns, "-o", "addr", "show", "dev", "eth0"]).output
        #expect(inNS.contains("198.51.100.10/24"), "the pod's eth0 in \(Self.netns): \(inNS)")

        // Traffic: the pod pings its gateway (the vRouter answers), so pod1 counts packets.
        let ping = try run([
            "/sbin/ip", "netns", "exec", Self.netns, "ping", "-c", "2", "-i", "0.2", "-W", "2", "198.51.100.1",
        ])
        let (pingStatus, pingOut) = (ping.status, ping.output)
        #expect(pingStatus == 0, "ping the gateway from the pod: \(pingOut)")
        let pinged = try #require(objects(try d.json(["vif", "list"])).first { $0["name"] as? String == "pod1" })
        let pingedRx = pinged["rxPackets"] as? Int ?? 0
        #expect(pingedRx >= 2)

        // route add / dump
        _ = try d.json(["route", "add", "red", "203.0.113.0/24", "--via", "n1", "--vni", "300"])
        _ = try d.json(["route", "add", "red", "192.0.2.0/25", "--via", "n2", "--label", "500"])
        _ = try d.json(["route", "add", "red", "2001:db8:1::/48", "--interface", "pod1"])
        _ = try d.json(["route", "add", "red", "203.0.113.128/25", "--discard"])
        var routes = objects(try d.json(["route", "dump", "red"]))
        func route(_ p: String) -> [String: Any]? { routes.first { $0["prefix"] as? String == p } }
        #expect(route("203.0.113.0/24")?["via"] as? String == "n1")
        #expect(route("203.0.113.0/24")?["vni"] as? Int == 300)
        #expect(route("192.0.2.0/25")?["label"] as? Int == 500)
        #expect(route("2001:db8:1::/48")?["interface"] as? String == "pod1")
        #expect(route("203.0.113.128/25")?["kind"] as? String == "discard")
        #expect(route("198.51.100.10/32")?["interface"] as? String == "pod1")  // the pod's own

        // nh, mpls, vxlan
        let nhs = objects(try d.json(["nh", "list"]))
        #expect(
            nhs.contains {
                $0["kind"] as? String == "tunnel-vxlan" && $0["node"] as? String == "n1"
                    && $0["destination"] as? String == "198.18.0.2"
            }
        )
        #expect(nhs.contains { $0["kind"] as? String == "encap" && $0["interface"] as? String == "pod1" })
        let labels = objects(try d.json(["mpls", "dump"]))
        #expect(labels.contains { $0["label"] as? Int == 100 && $0["interface"] as? String == "pod1" })
        let vnis = objects(try d.json(["vxlan", "dump"]))
        #expect(vnis.contains { $0["vni"] as? Int == 200 && $0["vrf"] as? String == "red" })
        #expect(vnis.contains { $0["vni"] as? Int == 100 && $0["vrf"] as? String == "blue" })

        // flow, dropstats
        let flows = try #require(try d.json(["flow", "list", "--vrf", "red", "--top", "5"]) as? [Any])
        #expect(flows.count <= 5)
        let drops = try #require(try d.json(["dropstats"]) as? [String: Any])
        let reasons = try #require(drops["reasons"] as? [String: Any])
        #expect(reasons["no_route"] != nil && reasons["discard"] != nil && reasons["ttl_expired"] != nil)
        #expect(Set((drops["ports"] as? [String: Any])?.keys.map { $0 } ?? []) == ["fabric", "pod1"])
        #expect(drops["total"] is Int)

        // Human output: aligned tables with headers.
        let vrfTable = try d.ctl(["vrf", "list"]).output
        let lines = vrfTable.split(separator: "\n")
        #expect(lines.first?.hasPrefix("ID  NAME") == true, "\(vrfTable)")
        #expect(lines.count == 3)
        #expect(lines.contains { $0.contains("red") && $0.contains("200") })
        let rt = try d.ctl(["route", "dump", "red"]).output
        #expect(rt.contains("via n1 vni 300"), "\(rt)")

        // Metrics: scraped and parsed, with the pod's real packet counts.
        let scrape = try Self.scrape(metrics)
        #expect(
            (scrape[#"vrouter_port_rx_packets_total{kind="pod",port="pod1"}"#] ?? 0) >= 2,
            "\(scrape.keys.sorted())"
        )
        #expect((scrape[#"vrouter_port_tx_packets_total{kind="pod",port="pod1"}"#] ?? 0) >= 2)
        #expect(scrape[#"vrouter_port_rx_bytes_total{kind="fabric",port="fabric"}"#] != nil)
        #expect(scrape[#"vrouter_vrf_routes{family="ipv4",vrf="red"}"#] == 5)  // gateway, pod, three added
        #expect(scrape[#"vrouter_vrf_routes{family="ipv6",vrf="red"}"#] == 1)
        #expect(scrape["vrouter_vrfs"] == 2)
        #expect(scrape["vrouter_ports"] == 2)
        #expect(scrape["vrouter_mpls_labels"] == 1)
        #expect(scrape[#"vrouter_drops_total{reason="no_route"}"#] != nil)
        #expect((scrape["vrouter_flow_capacity"] ?? 0) > 0)
        #expect(scrape["vrouter_flows"] != nil)
        #expect(scrape.keys.contains { $0.hasPrefix("vrouter_api_requests_total{") })

        // route del; node del refused while routed, then allowed
        _ = try d.json(["route", "del", "red", "203.0.113.0/24"])
        routes = objects(try d.json(["route", "dump", "red"]))
        #expect(route("203.0.113.0/24") == nil)
        let busyRun = try d.ctl(["node", "del", "n2"])
        let (busy, busyErr) = (busyRun.status, busyRun.error)
        #expect(busy == 1)
        #expect(busyErr.hasPrefix("vrouterctl: ") && busyErr.contains("n2"), "\(busyErr)")
        _ = try d.json(["route", "del", "red", "192.0.2.0/25"])
        _ = try d.json(["node", "del", "n2"])
        #expect(objects(try d.json(["node", "list"])).count == 1)

        // API errors: the API's message, exit 1.
        let missingRun = try d.ctl(["route", "add", "nope", "203.0.113.0/24", "--discard"])
        let (missing, missingErr) = (missingRun.status, missingRun.error)
        #expect(missing == 1)
        #expect(missingErr == "vrouterctl: no VRF named 'nope'\n", "\(missingErr)")

        // vif del removes the tap from the namespace; vrf del
        _ = try d.json(["route", "del", "red", "2001:db8:1::/48"])
        _ = try d.json(["vif", "del", "pod1"])
        let gone = try run(["/sbin/ip", "-n", Self.netns, "-o", "link", "show"]).output
        #expect(!gone.contains("eth0"), "\(gone)")
        // A new interface on the freed vif id starts its counters from zero, not from pod1's.
        _ = try d.json([
            "vif", "add", "pod2", "--vrf", "red", "--mac", "02:00:00:00:01:02", "--tap", Self.tapName, "--netns",
            Self.netns,
            "--ifname", "eth0", "--ipv4", "198.51.100.11/24",
        ])
        let pod2 = try #require(objects(try d.json(["vif", "list"])).first { $0["name"] as? String == "pod2" })
        #expect(pod2["id"] as? Int == pinged["id"] as? Int)
        #expect((pod2["rxPackets"] as? Int ?? .max) < pingedRx, "pod2 inherited pod1's counters: \(pod2)")
        _ = try d.json(["vif", "del", "pod2"])
        _ = try d.json(["vrf", "del", "red"])
        #expect(objects(try d.json(["vrf", "list"])).count == 1)

        // Daemon gone: one line naming the socket, exit 1.
        d.terminate()
        #expect(!FileManager.default.fileExists(atPath: d.socket), "the socket is removed on stop")
        let downRun = try d.ctl(["status"])
        let (down, downErr) = (downRun.status, downRun.error)
        #expect(down == 1)
        #expect(downErr == "vrouterctl: vrouterd is not running: no socket at \(d.socket)\n", "\(downErr)")
    }

    /// Prometheus text → value per "name{labels}" (labels as the exporter writes them, sorted).
    static func scrape(_ address: String) throws -> [String: Double] {
        let scraped = try run(["/usr/bin/curl", "-sS", "--max-time", "10", "http://\(address)/metrics"])
        let (st, text, err) = (scraped.status, scraped.output, scraped.error)
        #expect(st == 0, "curl \(address): \(err)")
        var out: [String: Double] = [:]
        var types: Set<String> = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") { types.insert(String(line.split(separator: " ")[2])) }
            if line.hasPrefix("#") { continue }
            guard let space = line.lastIndex(of: " "), let v = Double(line[line.index(after: space)...]) else {
                Issue.record("unparsable metrics line: \(line)")
                continue
            }
            var key = String(line[..<space])
            if let brace = key.firstIndex(of: "{") {
                // Normalise label order.
                let name = key[..<brace]
                let labels = key[key.index(after: brace)..<key.index(before: key.endIndex)].split(separator: ",")
                    .sorted()
                key = "\(name){\(labels.joined(separator: ","))}"
            }
            out[key] = v
        }
        #expect(types.contains("vrouter_port_rx_packets_total") && types.contains("vrouter_vrf_routes"))
        return out
    }

    /// Everything wrong gets a 4xx naming the problem, and nothing changes.
    @Test func badInputIsRefusedAndChangesNothing() throws {
        let d = try Daemon("bad", yaml: "vrfs: [ { name: blue, gateway: 192.0.2.1 } ]\n")
        defer { d.terminate() }
        let (_, ok) = try d.http(
            "POST",
            "/v1/vrfs/blue/routes",
            #"{"add":[{"prefix":"198.51.100.0/24","discard":true}]}"#
        )
        #expect(ok.contains("\"added\":1"), "\(ok)")
        func state() throws -> String {
            try d.http("GET", "/v1/vrfs").1 + d.http("GET", "/v1/vrfs/blue/routes").1
                + d.http("GET", "/v1/interfaces").1
                + d.http("GET", "/v1/remote-nodes").1
        }
        let before = try state()

        let big =
            "{\"add\":[" + String(repeating: #"{"prefix":"203.0.113.0/24","discard":true},"#, count: 430_000)
            + #"{"prefix":"203.0.113.0/24","discard":true}]}"#
        #expect(big.utf8.count > ControlServer.maxBody)
        let cases: [(String, String, String?, Int, String)] = [
            ("POST", "/v1/vrfs/blue/routes", #"{"add": [ {"prefix": "#, 400, "malformed JSON"),
            (
                "POST", "/v1/vrfs/blue/routes", #"{"add":[{"prefix":"203.0.113.0/24","discard":true,"colour":"red"}]}"#,
                400,
                "unknown field 'colour' in add[0]"
            ),
            ("POST", "/v1/vrfs", #"{"name":"red","vnii":5}"#, 400, "unknown field 'vnii'"),
            (
                "POST", "/v1/vrfs/blue/routes", #"{"add":[{"prefix":"203.0.113.1/24","discard":true}]}"#, 400,
                "'203.0.113.1/24' is not a prefix"
            ),
            (
                "POST", "/v1/vrfs/nope/routes", #"{"add":[{"prefix":"203.0.113.0/24","discard":true}]}"#, 404,
                "no VRF named 'nope'"
            ),
            // All or nothing: one bad route refuses the whole batch.
            (
                "POST", "/v1/vrfs/blue/routes",
                #"{"add":[{"prefix":"203.0.113.0/24","discard":true},{"prefix":"203.0.113.0/24","interface":"nope"}]}"#,
                404, "no pod interface named 'nope'"
            ),
            ("POST", "/v1/vrfs/blue/routes", #"{"add":[{"prefix":"203.0.113.0/24","via":"n1"}]}"#, 400, "needs a vni"),
            ("POST", "/v1/vrfs/blue/routes", #"{"add":[{"prefix":5}]}"#, 400, "add[0].prefix"),
            ("POST", "/v1/vrfs/blue/routes", "[]", 400, "expected"),
            ("POST", "/v1/vrfs/blue/routes", big, 413, "larger than"),
            ("POST", "/v1/vrfs", nil, 400, "needs a JSON body"),
            ("POST", "/v1/vrfs", #"{"name":"blue"}"#, 409, "VRF 'blue' exists"),
            // A VRF whose gateway pods cannot route through (found by schemathesis: its pods'
            // taps then failed with the kernel's EINVAL).
            ("POST", "/v1/vrfs", #"{"name":"zero","gateway":"0.0.0.0"}"#, 400, "not a unicast address"),
            ("POST", "/v1/vrfs", #"{"name":"zero","gateway6":"ff02::1"}"#, 400, "not a unicast address"),
            ("DELETE", "/v1/vrfs/blue/routes/198.51.100.0%2F25", nil, 404, "no route 198.51.100.0/25"),
            // In a batch the VRF addressed exists: the missing route is a conflict with it.
            ("POST", "/v1/vrfs/blue/routes", #"{"delete":["198.51.100.0/25"]}"#, 409, "no route 198.51.100.0/25"),
            ("POST", "/v1/remote-nodes", #"{"name":"n1","address":"198.18.0.2","encap":"gre"}"#, 400, "'gre'"),
            (
                "POST", "/v1/remote-nodes", #"{"name":"n1","address":"224.0.0.1","encap":"vxlan"}"#, 400,
                "'224.0.0.1' is not a unicast address"
            ),
            ("PUT", "/v1/vrfs", "{}", 405, "PUT is not allowed"),
            ("GET", "/v1/nothing", nil, 404, "no resource /v1/nothing"),
            ("GET", "/v1/flows?top=x", nil, 400, "top 'x'"),
            ("GET", "/v1/flows?top=", nil, 400, "top ''"),  // an integer, says the document
            // Found by schemathesis against docs/openapi.yaml (tools/test-api): a file that is
            // not a network namespace was a 500; a missing namespace, or none at a path, is a
            // missing object (404); names and MACs the kernel refuses are refused first, saying why.
            (
                "POST", "/v1/cni/add",
                #"{"containerID":"c1","netns":"/etc/hostname","ifname":"eth0","pod":{"name":"p"},"networks":[]}"#, 404,
                "'/etc/hostname' is not a network namespace"
            ),
            (
                "POST", "/v1/cni/add",
                #"{"containerID":"c1","netns":"vrt-gone","ifname":"eth0","pod":{"name":"p"},"networks":[]}"#, 404,
                "'vrt-gone' does not exist"
            ),
            (
                "POST", "/v1/interfaces",
                #"{"name":"p1","vrf":"blue","mac":"02:00:00:00:01:01","tap":{"name":"vrt-gone","netns":"vrt-gone"}}"#,
                404, "'vrt-gone' does not exist"
            ),
            (
                "POST", "/v1/interfaces", #"{"name":"p1","vrf":"blue","mac":"02:00:00:00:01:01","tap":{"name":"."}}"#,
                400, "tap name '.': interface name is . or .."
            ),
            (
                "POST", "/v1/interfaces",
                #"{"name":"p1","vrf":"blue","mac":"02:00:00:00:01:01","tap":{"name":"vrtx","ifname":"a/b"}}"#, 400,
                "tap ifname 'a/b'"
            ),
            (
                "POST", "/v1/interfaces",
                #"{"name":"p1","vrf":"blue","mac":"ff:ff:ff:ff:ff:ff","tap":{"name":"vrtx"}}"#,
                400, "not a unicast address"
            ),
            (
                "POST", "/v1/interfaces",
                #"{"name":"p1","vrf":"blue","mac":"02:00:00:00:01:01","mtu":1000,"ipv6":"2001:db8::a","tap":{"name":"vrtx"}}"#,
                400, "ipv6 needs an mtu of at least 1280"
            ),
            // A tap name another link has (the fabric's veth end here) is the node's state.
            (
                "POST", "/v1/interfaces",
                #"{"name":"p1","vrf":"blue","mac":"02:00:00:00:01:01","tap":{"name":"lo"}}"#, 409, "already exists"
            ),
        ]
        for (method, path, body, status, message) in cases {
            let (s, text) = try d.http(method, path, body)
            #expect(s == status, "\(method) \(path): \(s) \(text.prefix(300))")
            let err = try? JSONDecoder().decode(ErrorBody.self, from: Data(text.utf8))
            #expect(err?.error.contains(message) == true, "\(method) \(path): \(text.prefix(300))")
        }
        #expect(try state() == before)

        // Not root: the socket (0600, root's) refuses the connection.
        var st = stat()
        #expect(stat(d.socket, &st) == 0 && st.st_mode & 0o777 == 0o600 && st.st_uid == 0)
        if isRoot, let ctl = Binaries.path("vrouterctl") {
            let refused = try run(
                [
                    "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ctl, "status", "--socket",
                    d.socket,
                ]
            )
            let (code, err) = (refused.status, refused.error)
            #expect(code == 1)
            #expect(
                err == "vrouterctl: permission denied connecting to \(d.socket) (the control socket is root's)\n",
                "\(err)"
            )
            let curl = try run([
                "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/curl", "-sS",
                "--unix-socket", d.socket, "http://x/v1/status",
            ]).status
            #expect(curl == 7)  // couldn't connect
        }
        #expect(try state() == before)
    }

    /// A second vrouterd on a live socket is refused; a stale socket is replaced.
    @Test func liveSocketRefusedStaleReplaced() throws {
        let d = try Daemon("live", yaml: "vrfs: [ { name: blue } ]\n")
        defer { d.terminate() }
        guard let bin = Binaries.path("vrouterd") else { return }
        let second = try run([bin, "run", "--config", d.dir + "/config.yaml", "--socket", d.socket])
        let (st, err) = (second.status, second.error)
        #expect(st == 1)
        #expect(err.contains("another vrouterd is serving \(d.socket)"), "\(err)")
        #expect(ControlSocket.isLive(d.socket))
        // A stale socket: kill -9 leaves the file behind.
        d.child.signal(SIGKILL)
        d.child.wait(seconds: 10)
        #expect(FileManager.default.fileExists(atPath: d.socket))
        let again = try Daemon("live", yaml: "vrfs: [ { name: blue } ]\n")
        defer { again.terminate() }
        #expect(try again.http("GET", "/healthz").0 == 200)
    }
}
