// Nodes in cluster mode (issue 15) with a real 3-member etcd the test starts: two vrouterd,
// each with a pod attached through the CNI API, learn each other's pods through etcd alone
// (no route given by hand) and ping across.
//   - Three nodes (their fabrics on one bridge), over VXLAN and over MPLS over UDP: a pod of
//     the default network and one of a network applied on one node only, on every node,
//     attached through the CNI shim (vrouter-cni run by cnirun, Debian's libcni, as
//     containerd runs it); every pod reaches every other pod of its network and none of the
//     other network.
//   - A network applied on one node reaches the other; its delete is refused while a pod on
//     the other node uses it (naming the pod and node).
//   - A node killed with -9 has its pods withdrawn on the other within its lease's TTL + 1 s;
//     restarted, it publishes them again with the same addresses and labels and the ping
//     resumes.
//   - etcd's faults (a member stopped, the leader killed, every member stopped for longer
//     than the lease's TTL and started again) while a ping runs between the pods: it loses
//     nothing and neither node withdraws or re-adds a route (counted); a vrouterd restarted
//     within its lease is seen by the other with no route change either.
//
// Both vrouterd run in the test's own network namespace (etcd listens on its loopback), each
// on one end of a veth pair that is their fabric; the pods are namespaces.

import Foundation
import Glibc
import Testing
import VRouterAPI
import VRouterTestSupport

@Suite(
    .serialized,
    .enabled(if: isRoot, "needs root: makes network namespaces and taps, runs vrouterd"),
    .enabled(if: Tool.trafficTools, "needs ip, ping (tools/bootstrap installs them)"),
    .enabled(if: Tool.exists("/usr/bin/etcd"), "needs etcd (tools/bootstrap installs etcd-server)"),
    .enabled(if: Binaries.path("vrouterd") != nil, "vrouterd is not built (swift build)"),
    .deadline(.seconds(150))
)
struct ClusterTests {
    static func config(
        _ lab: Lab,
        _ etcd: EtcdLab,
        node: String,
        device: String,
        address: String,
        mac: String,
        ttl: Int,
        encap: String = "mpls-udp"
    )
        -> String
    {
        """
        node: { name: \(node) }
        defaultNetwork: { name: podnet, subnet: 192.0.2.0/24, gateway: 192.0.2.254, vni: 1001 }
        interfaces:
          - { name: fabric, kind: fabric, device: \(device), address: \(address)/24, mac: "\(mac)" }
        cluster:
          etcd: { endpoints: [\(etcd.endpoints.joined(separator: ", "))], prefix: /\(lab.tag), leaseTTL: \(ttl)s }
          blocks: 4
          encap: \(encap)
        """
    }

    /// Two nodes on a 3-member etcd, pod a on n1 and pod b on n2, each having learned the
    /// other's pod through etcd and pinging it.
    struct TwoNodes {
        let lab: Lab
        let etcd: EtcdLab
        let n1: Daemon
        var n2: Daemon
        let pa: String
        let pb: String
        let a: (address: String, label: UInt32?)
        let b: (address: String, label: UInt32?)
        let config2: String
        let state2: String

        init(_ lab: Lab, _ etcd: EtcdLab, ttl: Int) throws {
            self.lab = lab
            self.etcd = etcd
            let (f1, f2) = (lab.name("f1"), lab.name("f2"))
            try ClusterTests.fabricVeth(lab, f1, f2)
            (pa, pb) = (try lab.namespace("pa"), try lab.namespace("pb"))
            let c1 = try lab.write(
                "n1.yaml",
                ClusterTests.config(
                    lab,
                    etcd,
                    node: "n1",
                    device: f1,
                    address: "198.18.0.1",
                    mac: "02:00:00:00:00:01",
                    ttl: ttl
                )
            )
            config2 = try lab.write(
                "n2.yaml",
                ClusterTests.config(
                    lab,
                    etcd,
                    node: "n2",
                    device: f2,
                    address: "198.18.0.2",
                    mac: "02:00:00:00:00:02",
                    ttl: ttl
                )
            )
            state2 = lab.dir + "/state-n2"
            n1 = try Daemon(lab, config: c1, name: "vrouterd-n1", extra: ["--metrics", "127.0.0.1:0"])
            n2 = try Daemon(lab, config: config2, name: "vrouterd-n2", extra: ["--state-dir", state2])
            try n1.waitRunning()
            try n2.waitRunning()

            a = try ClusterTests.addPod(n1, pa, name: "a")
            b = try ClusterTests.addPod(n2, pb, name: "b")
            // Addresses from each node's own block: unique across the cluster.
            #expect(a.address != b.address)
            // Learned through etcd only: each node has a /32 for the other's pod.
            let (pod1, pod2, m1, m2) = (a, b, n1, n2)
            let learned = try ClusterTests.within(10) {
                try ClusterTests.routes(m1).contains("\(pod2.address)/32")
                    && ClusterTests.routes(m2).contains("\(pod1.address)/32")
            }
            #expect(learned != nil, "routes: n1 \(try? ClusterTests.routes(m1)), n2 \(try? ClusterTests.routes(m2))")
            try lab.waitForPing(from: pa, b.address, timeout: 20)
            #expect(try lab.ping(from: pb, a.address) == 3)
        }

        /// Starts n2 again on its state (the one before must have ended).
        mutating func restartN2(_ name: String) throws {
            n2 = try Daemon(lab, config: config2, name: name, extra: ["--state-dir", state2])
            try n2.waitRunning()
        }

        /// b's MPLS label as n2 has it now.
        func labelOfB() throws -> UInt32? {
            let pods = try JSONDecoder().decode([PodInfo].self, from: Data(try n2.http("GET", "/v1/pods").1.utf8))
            return pods.first { $0.name == "b" }?.interfaces?.first?.label
        }
    }

    /// cnirun (tools/cnirun on Debian's libcni: the runtime side of CNI), built by tools/test
    /// before the tests, or here once for a test run on its own.
    static let cnirun: String? = {
        let bin = Binaries.root + "/.build-tools/cnirun"
        if !FileManager.default.isExecutableFile(atPath: bin) {
            _ = try? VRouterTestSupport.run(
                ["/bin/bash", "-c", ". \(Binaries.root)/tools/lib.sh && vrt_cnirun"],
                timeout: 300
            )
        }
        return FileManager.default.isExecutableFile(atPath: bin) ? bin : nil
    }()

    /// CNI ADD of pod `name` (namespace default) in `ns` on `node` through the CNI shim:
    /// vrouter-cni run by cnirun as containerd runs it, the pod's networks annotation in
    /// CAP_ARGS. The addresses (no length) of its interfaces by name, from the CNI result.
    static func cniAdd(
        _ lab: Lab,
        _ node: Daemon,
        _ ns: String,
        name: String,
        networks: String? = nil
    ) throws
        -> [String: String]
    {
        let cnirun = try #require(Self.cnirun, "cnirun did not build (tools/lib.sh vrt_cnirun)")
        let shim = try Binaries.require("vrouter-cni")
        let conflist = try lab.write(
            "\(node.child.name).conflist",
            """
            { "cniVersion": "1.0.0", "name": "vrouter", "plugins": [ { "type": "vrouter-cni",
              "socket": "\(node.socket)", "timeout": 10, "stateDir": "\(lab.dir)/cni-\(node.child.name)",
              "capabilities": { "io.kubernetes.cri.pod-annotations": true } } ] }
            """
        )
        var env = [
            "CNI_PATH=\((shim as NSString).deletingLastPathComponent)",
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=\(name);K8S_POD_INFRA_CONTAINER_ID=c-\(name);K8S_POD_UID=u-\(name)",
        ]
        if let networks {
            let cap = ["io.kubernetes.cri.pod-annotations": ["k8s.v1.cni.cncf.io/networks": networks]]
            env.append("CAP_ARGS=" + String(decoding: try JSONEncoder().encode(cap), as: UTF8.self))
        }
        let r = try lab.run(
            ["/usr/bin/env"] + env + [
                cnirun, "--cache-dir", lab.dir + "/cni-cache", "add", conflist, "c-\(name)", "/var/run/netns/\(ns)",
            ]
        )
        guard r.ok else { throw Failure("cnirun add \(name): \(r.status) \(r.error)\(r.output)") }
        // The CNI result: interfaces (those with a sandbox are the pod's) and ips naming them.
        let result = try #require(
            try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any],
            "cnirun add \(name): not a CNI result: \(r.output)"
        )
        let interfaces = result["interfaces"] as? [[String: Any]] ?? []
        var out: [String: String] = [:]
        for ip in result["ips"] as? [[String: Any]] ?? [] {
            guard let i = ip["interface"] as? Int, interfaces.indices.contains(i),
                let ifname = interfaces[i]["name"] as? String, let address = ip["address"] as? String
            else { continue }
            out[ifname] = address.split(separator: "/").first.map(String.init)
        }
        return out
    }

    /// CNI ADD of a pod through the API, as the shim sends it; the pod's address.
    static func addPod(_ node: Daemon, _ ns: String, name: String) throws -> (address: String, label: UInt32?) {
        let (status, text) = try node.http("POST", "/v1/cni/add", try addRequest(ns, name: name))
        guard status == 200 else { throw Failure("CNI ADD of \(name): \(status) \(text)") }
        let r = try JSONDecoder().decode(CNIAddResponse.self, from: Data(text.utf8))
        guard let ip = r.attachments.first?.ips?.first?.split(separator: "/").first else {
            throw Failure("CNI ADD of \(name) gave no address: \(text)")
        }
        let pods = try JSONDecoder().decode(
            [PodInfo].self,
            from: Data(try node.http("GET", "/v1/pods").1.utf8)
        )
        let label = pods.first { $0.name == name }?.interfaces?.first?.label
        return (String(ip), label)
    }

    static func addRequest(_ ns: String, name: String, networks: [NetworkSelection] = []) throws -> String {
        let req = CNIAddRequest(
            containerID: "c-\(name)",
            netns: "/var/run/netns/\(ns)",
            ifname: "eth0",
            pod: CNIPod(namespace: "default", name: name, uid: "u-\(name)"),
            networks: networks
        )
        return String(decoding: try JSONEncoder().encode(req), as: UTF8.self)
    }

    static func delPod(_ node: Daemon, _ ns: String, name: String) throws {
        let req = CNIDelRequest(
            containerID: "c-\(name)",
            netns: "/var/run/netns/\(ns)",
            ifname: "eth0",
            pod: CNIPod(namespace: "default", name: name, uid: "u-\(name)")
        )
        let body = String(decoding: try JSONEncoder().encode(req), as: UTF8.self)
        let (status, text) = try node.http("POST", "/v1/cni/del", body)
        guard status == 200 else { throw Failure("CNI DEL of \(name): \(status) \(text)") }
    }

    /// The address claims etcd holds for the default network (etcdctl, as an operator reads them).
    static func claimedAddresses(_ lab: Lab, _ etcd: EtcdLab) throws -> [String] {
        let out = try lab.must([
            "/usr/bin/etcdctl", "--endpoints", etcd.endpoints.joined(separator: ","), "get", "--prefix", "--keys-only",
            "/\(lab.tag)/v1/addresses/-/podnet/",
        ])
        return out.split(separator: "\n").compactMap { $0.split(separator: "/").last.map(String.init) }
    }

    static func routes(_ node: Daemon) throws -> [String] {
        let (status, text) = try node.http("GET", "/v1/vrfs/podnet/routes")
        guard status == 200 else { throw Failure("routes: \(status) \(text)") }
        return try JSONDecoder().decode([RouteInfo].self, from: Data(text.utf8)).map(\.prefix)
    }

    static func cluster(_ node: Daemon) throws -> ClusterInfo {
        let (status, text) = try node.http("GET", "/v1/cluster")
        guard status == 200 else { throw Failure("cluster: \(status) \(text)") }
        return try JSONDecoder().decode(ClusterInfo.self, from: Data(text.utf8))
    }

    /// Polls `done` every 50 ms for up to `seconds`; the time it took, nil if never.
    static func within(_ seconds: Double, _ done: () throws -> Bool) rethrows -> Double? {
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            if try done() { return Date().timeIntervalSince(start) }
            usleep(50_000)
        }
        return nil
    }

    /// Prometheus text → value per metric without labels.
    static func scrape(_ address: String) throws -> [String: Double] {
        let text = try run(["/usr/bin/curl", "-sS", "--max-time", "10", "http://\(address)/metrics"]).output
        var out: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.contains("{") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let v = Double(parts[1]) { out[String(parts[0])] = v }
        }
        return out
    }

    /// Routes learned and withdrawn since the node started.
    /// A veth pair for the fabric, both ends up, IPv6 off on them (no router solicitations
    /// or DAD in a node's fabric counters).
    static func fabricVeth(_ lab: Lab, _ a: String, _ b: String) throws {
        try lab.ip("link", "add", a, "type", "veth", "peer", "name", b)
        for l in [a, b] {
            _ = try? lab.run(["/usr/sbin/sysctl", "-qw", "net.ipv6.conf.\(l).disable_ipv6=1"])
            try lab.ip("link", "set", l, "up")
        }
    }

    static func routeChanges(_ node: Daemon) throws -> (learned: Int, withdrawn: Int) {
        let c = try cluster(node)
        return (c.routesLearned, c.routesWithdrawn)
    }

    @Test func podsLearnedThroughEtcdAloneAndADeadNodesPodsWithdrawnWithinItsTTL() throws {
        let ttl = 3
        let lab = try Lab("k")
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let etcd = try EtcdLab(members: 3)
        defer { etcd.cleanup() }
        var t = try TwoNodes(lab, etcd, ttl: ttl)
        let (n1, pa, b) = (t.n1, t.pa, t.b)
        let view = try Self.cluster(n1)
        #expect(view.connected && view.nodes.map(\.name) == ["n2"] && view.nodes.first?.programmed == true, "\(view)")
        let ctl = try n1.ctl(["cluster"])
        #expect(ctl.ok && ctl.output.contains("n2") && ctl.output.contains("198.18.0.2"), "\(ctl.output)\(ctl.error)")

        // A network applied on n1 reaches n2; a pod on n2 uses it; deleting it on n1 is refused
        // naming that pod and node, and goes through once the pod is gone.
        let blue = NetworkAttachmentDefinition(
            metadata: .init(
                name: "blue",
                namespace: "default",
                annotations: ["opencontrail.org/cidr": "198.51.100.0/24"]
            ),
            spec: .init(config: #"{"cniVersion":"0.3.1","type":"contrail-k8s-cni"}"#)
        )
        let applied = try n1.http(
            "POST",
            "/v1/networks",
            String(decoding: try JSONEncoder().encode(blue), as: UTF8.self)
        )
        #expect(applied.0 == 201, "apply on n1: \(applied)")
        let reached = try Self.within(10) { try t.n2.http("GET", "/v1/networks/default/blue").0 == 200 }
        #expect(reached != nil, "blue never reached n2")
        let pe = try lab.namespace("pe")
        let added = try t.n2.http(
            "POST",
            "/v1/cni/add",
            try Self.addRequest(pe, name: "e", networks: [NetworkSelection(name: "blue", namespace: "default")])
        )
        #expect(added.0 == 200 && added.1.contains("198.51.100."), "ADD on n2 with blue: \(added)")
        let refused = try n1.http("DELETE", "/v1/networks/default/blue")
        #expect(
            refused.0 == 409 && refused.1.contains("default/e") && refused.1.contains("n2"),
            "delete of blue in use on n2: \(refused)"
        )
        #expect(try t.n2.http("GET", "/v1/networks/default/blue").0 == 200)
        try Self.delPod(t.n2, pe, name: "e")
        let deleted = try n1.http("DELETE", "/v1/networks/default/blue")
        #expect(deleted.0 == 204, "delete of blue after e's DEL: \(deleted)")
        let goneOnN2 = try Self.within(10) { try t.n2.http("GET", "/v1/networks/default/blue").0 == 404 }
        #expect(goneOnN2 != nil, "blue still on n2")

        // kill -9: n1 withdraws b within the lease's TTL + 1 s.
        t.n2.child.signal(SIGKILL)
        let withdrawn = try Self.within(Double(ttl) + 5) { try !Self.routes(n1).contains("\(b.address)/32") }
        let took = try #require(withdrawn, "b's route never withdrawn on n1")
        #expect(took <= Double(ttl) + 1, "withdrawn \(took) s after kill -9 (TTL \(ttl) s)")
        #expect(try Self.cluster(n1).nodes.isEmpty)

        // Restarted on its state: b is published again with the same address and label.
        t.n2.child.wait(seconds: 5)
        try t.restartN2("vrouterd-n2b")
        let back = try Self.within(10) { try Self.routes(n1).contains("\(b.address)/32") }
        #expect(back != nil, "b not learned again after n2's restart")
        try lab.waitForPing(from: pa, b.address, timeout: 20)
        #expect(try t.labelOfB() == b.label)
    }

    @Test(arguments: ["vxlan", "mpls-udp"]) func threeNodesEveryPodReachesItsNetworkOnly(_ encap: String) throws {
        let lab = try Lab("t")
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let etcd = try EtcdLab(members: 3)
        defer { etcd.cleanup() }
        let bridge = lab.name("br")
        try lab.ip("link", "add", bridge, "type", "bridge")
        try lab.ip("link", "set", bridge, "up")
        var nodes: [Daemon] = []
        for i in 1...3 {
            let (f, port) = (lab.name("f\(i)"), lab.name("f\(i)p"))
            try Self.fabricVeth(lab, f, port)
            try lab.ip("link", "set", port, "master", bridge)
            let config = try lab.write(
                "n\(i).yaml",
                Self.config(
                    lab,
                    etcd,
                    node: "n\(i)",
                    device: f,
                    address: "198.18.0.\(i)",
                    mac: "02:00:00:00:00:0\(i)",
                    ttl: 5,
                    encap: encap
                )
            )
            nodes.append(try Daemon(lab, config: config, name: "vrouterd-n\(i)"))
        }
        for n in nodes { try n.waitRunning() }
        // blue is applied on n1 only; every node has it through etcd before its pod comes.
        let blue = NetworkAttachmentDefinition(
            metadata: .init(
                name: "blue",
                namespace: "default",
                annotations: ["opencontrail.org/cidr": "198.51.100.0/24", "vrouter.io/vni": "2001"]
            ),
            spec: .init(config: #"{"cniVersion":"0.3.1","type":"contrail-k8s-cni"}"#)
        )
        let applied = try nodes[0].http(
            "POST",
            "/v1/networks",
            String(decoding: try JSONEncoder().encode(blue), as: UTF8.self)
        )
        #expect(applied.0 == 201, "apply on n1: \(applied)")
        for n in nodes.dropFirst() {
            let reached = try Self.within(10) { try n.http("GET", "/v1/networks/default/blue").0 == 200 }
            #expect(reached != nil, "blue never reached \(n.child.name)")
        }
        // On every node, through the CNI shim: p (eth0 in podnet) and q (eth0 in podnet, net1
        // in blue, from the pod's networks annotation).
        var podnet: [(ns: String, address: String)] = []
        var bluePods: [(ns: String, address: String)] = []
        for (i, n) in nodes.enumerated() {
            let p = try lab.namespace("p\(i + 1)")
            let pAddresses = try Self.cniAdd(lab, n, p, name: "p\(i + 1)")
            podnet.append((p, try #require(pAddresses["eth0"], "p\(i + 1): \(pAddresses)")))
            let q = try lab.namespace("q\(i + 1)")
            let qAddresses = try Self.cniAdd(lab, n, q, name: "q\(i + 1)", networks: "blue")
            bluePods.append((q, try #require(qAddresses["net1"], "q\(i + 1) has no blue address: \(qAddresses)")))
        }
        #expect(
            Set(podnet.map(\.address)).count == 3 && Set(bluePods.map(\.address)).count == 3,
            "\(podnet) \(bluePods)"
        )
        // Every node learns the other two nodes' pods of both networks (no route by hand).
        for (i, n) in nodes.enumerated() {
            let learned = try Self.within(10) {
                let c = try Self.cluster(n)
                // p and q's eth0 of two nodes in podnet, q's net1 of two nodes in blue.
                return c.nodes.count == 2 && c.routesProgrammed == 6
            }
            #expect(learned != nil, "n\(i + 1): \(try? Self.cluster(n))")
        }
        for net in [podnet, bluePods] {
            for from in net {
                for to in net where to.address != from.address {
                    try lab.waitForPing(from: from.ns, to.address, timeout: 10)
                }
            }
        }
        // No way across networks: p1 (podnet only) to q2's and q3's blue addresses.
        for to in bluePods.dropFirst() {
            #expect(try lab.ping(from: podnet[0].ns, to.address, count: 2) == 0, "p1 reached blue \(to.address)")
        }
    }

    @Test func etcdFaultsAndARestartWithinTheLeaseFlapNoRoute() throws {
        let ttl = 5
        let lab = try Lab("q")
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let etcd = try EtcdLab(members: 3)
        defer { etcd.cleanup() }
        var t = try TwoNodes(lab, etcd, ttl: ttl)
        let (n1, pa, a, b) = (t.n1, t.pa, t.a, t.b)
        // d: deleted while etcd is away; c: added while etcd is away (refused), then after.
        let (pc, pd) = (try lab.namespace("pc"), try lab.namespace("pd"))
        let d = try Self.addPod(n1, pd, name: "d")
        let learnedD = try Self.within(10) { try Self.routes(t.n2).contains("\(d.address)/32") }
        #expect(learnedD != nil, "d not learned on n2")
        let before = (n1: try Self.routeChanges(n1), n2: try Self.routeChanges(t.n2))
        #expect(before.n1.withdrawn == 0 && before.n2.withdrawn == 0, "\(before)")

        // A ping between the pods through every fault.
        let ping = try lab.start(lab.inNS(pa, [Tool.ping, "-n", "-i", "0.2", "-W", "1", b.address]), name: "ping")
        // A follower stopped and started again.
        let leader = try etcd.leader()
        let follower = leader == 1 ? 2 : 1
        try etcd.stop(follower)
        sleep(2)
        try etcd.start(follower)
        // The leader killed (the other two elect one), started again.
        let second = try etcd.leader()
        try etcd.kill(second)
        sleep(UInt32(ttl))
        try etcd.start(second)
        // Every member stopped for longer than the nodes' leases, then started.
        try etcd.stopAll()
        let away = try Self.within(10) { try !Self.cluster(n1).connected }
        #expect(away != nil, "n1 never saw etcd go away")
        sleep(UInt32(ttl) + 1)
        #expect(try Self.routes(n1).contains("\(b.address)/32"), "b withdrawn on n1 while etcd was away")
        #expect(try Self.routes(t.n2).contains("\(a.address)/32"), "a withdrawn on n2 while etcd was away")
        // A pod ADD fails whole with a clear CNI error and leaves nothing; a DEL works here.
        let (status, text) = try n1.http("POST", "/v1/cni/add", try Self.addRequest(pc, name: "c"))
        let error = try? JSONDecoder().decode(CNIErrorBody.self, from: Data(text.utf8))
        #expect(
            status == 503 && error?.cniCode == 11 && text.contains("etcd"),
            "ADD while etcd is away: \(status) \(text)"
        )
        #expect(try lab.ip("-n", pc, "-o", "link").split(separator: "\n").count == 1, "a device left in pc")
        #expect(!(try n1.http("GET", "/v1/pods").1.contains("\"c\"")), "c recorded on n1")
        try Self.delPod(n1, pd, name: "d")
        #expect(try Self.routes(t.n2).contains("\(d.address)/32"), "d withdrawn on n2 without etcd")
        try etcd.startAll()
        // Both back: watching, their records written; then a lease's TTL more, so a lease
        // that had been lost would show as a withdrawal.
        for n in [n1, t.n2] {
            let back = try Self.within(30) {
                let c = try Self.cluster(n)
                return c.connected && c.publishPending == 0 && c.leaseID != nil
            }
            #expect(back != nil, "\(try? Self.cluster(n))")
        }
        sleep(UInt32(ttl) + 1)
        ping.signal(SIGINT)
        ping.wait(seconds: 5)
        let out = ping.stdout
        let m = try #require(out.firstMatch(of: /(\d+) packets transmitted, (\d+) received/), "ping: \(out)")
        let (sent, received) = (Int(m.1) ?? 0, Int(m.2) ?? -1)
        #expect(sent >= 50 && received == sent, "ping through etcd's faults: \(sent) sent, \(received) received")
        // d's DEL reached the store on its return: withdrawn on n2, its address claim released.
        let gone = try Self.within(10) {
            try !Self.routes(t.n2).contains("\(d.address)/32") && !Self.claimedAddresses(lab, etcd).contains(d.address)
        }
        #expect(gone != nil, "d: n2 routes \(try? Self.routes(t.n2)), claims \(try? Self.claimedAddresses(lab, etcd))")
        let after = (n1: try Self.routeChanges(n1), n2: try Self.routeChanges(t.n2))
        #expect(after.n1 == before.n1, "n1's routes changed: before \(before.n1), after \(after.n1)")
        #expect(
            after.n2 == (before.n2.learned, before.n2.withdrawn + 1),
            "n2's routes changed other than d's withdrawal: before \(before.n2), after \(after.n2)"
        )
        // The metrics say the same: the watch broke and came back, nothing was withdrawn.
        let info = try JSONDecoder().decode(StatusInfo.self, from: Data(try n1.http("GET", "/v1/status").1.utf8))
        let metrics = try Self.scrape(try #require(info.metrics))
        #expect(metrics["vrouter_cluster_connected"] == 1 && metrics["vrouter_cluster_nodes"] == 1, "\(metrics)")
        #expect(metrics["vrouter_cluster_routes"] == 1 && metrics["vrouter_cluster_routes_withdrawn_total"] == 0)
        #expect((metrics["vrouter_cluster_watch_restarts_total"] ?? 0) >= 1)
        #expect((metrics["vrouter_cluster_store_errors_total"] ?? 0) >= 1)
        #expect((metrics["vrouter_cluster_resyncs_total"] ?? 0) >= 1)
        // c can be added now.
        let c = try Self.addPod(n1, pc, name: "c")
        #expect(try Self.claimedAddresses(lab, etcd).contains(c.address))

        // n2 restarted (SIGTERM) and back within its lease: n1 sees no route change, and b
        // keeps its address and label.
        t.n2.terminate()
        try t.restartN2("vrouterd-n2b")
        let published = try Self.within(10) {
            let c = try Self.cluster(t.n2)
            return c.connected && c.publishPending == 0 && c.leaseID != nil
        }
        #expect(published != nil, "n2 did not publish again: \(try? Self.cluster(t.n2))")
        // The old lease has expired by now: nothing of n2's went with it.
        sleep(UInt32(ttl) + 1)
        #expect(try Self.routeChanges(n1) == before.n1, "n1's routes changed over n2's restart")
        #expect(try Self.routes(n1).contains("\(b.address)/32"))
        #expect(try t.labelOfB() == b.label)
        #expect(try Self.cluster(n1).nodes.map(\.name) == ["n2"])
        try lab.waitForPing(from: pa, b.address, timeout: 20)
    }
}
