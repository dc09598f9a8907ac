// Nodes in cluster mode (issue 15) with a real 3-member etcd the test starts: two vrouterd,
// each with a pod attached through the CNI API, learn each other's pods through etcd alone
// (no route given by hand) and ping across; a node killed with -9 has its pods withdrawn on
// the other within its lease's TTL + 1 s; restarted, it publishes them again with the same
// addresses and labels and the ping resumes.
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
    static let ttl = 3

    static func config(
        _ lab: Lab,
        _ etcd: EtcdLab,
        node: String,
        device: String,
        address: String,
        mac: String
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
        """
    }

    /// CNI ADD of a pod through the API, as the shim sends it; the pod's address.
    static func addPod(_ node: Daemon, _ ns: String, name: String) throws -> (address: String, label: UInt32?) {
        let req = CNIAddRequest(
            containerID: "c-\(name)",
            netns: "/var/run/netns/\(ns)",
            ifname: "eth0",
            pod: CNIPod(namespace: "default", name: name, uid: "u-\(name)"),
            networks: []
        )
        let body = String(decoding: try JSONEncoder().encode(req), as: UTF8.self)
        let (status, text) = try node.http("POST", "/v1/cni/add", body)
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

    @Test func podsLearnedThroughEtcdAloneAndADeadNodesPodsWithdrawnWithinItsTTL() throws {
        let lab = try Lab("k")
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let etcd = try EtcdLab(members: 3)
        defer { etcd.cleanup() }
        let (f1, f2) = (lab.name("f1"), lab.name("f2"))
        try lab.ip("link", "add", f1, "type", "veth", "peer", "name", f2)
        for f in [f1, f2] {
            _ = try? lab.run(["/usr/sbin/sysctl", "-qw", "net.ipv6.conf.\(f).disable_ipv6=1"])
            try lab.ip("link", "set", f, "up")
        }
        let (pa, pb) = (try lab.namespace("pa"), try lab.namespace("pb"))
        let c1 = try lab.write(
            "n1.yaml",
            Self.config(lab, etcd, node: "n1", device: f1, address: "198.18.0.1", mac: "02:00:00:00:00:01")
        )
        let c2 = try lab.write(
            "n2.yaml",
            Self.config(lab, etcd, node: "n2", device: f2, address: "198.18.0.2", mac: "02:00:00:00:00:02")
        )
        let state2 = lab.dir + "/state-n2"
        let n1 = try Daemon(lab, config: c1, name: "vrouterd-n1")
        var n2 = try Daemon(lab, config: c2, name: "vrouterd-n2", extra: ["--state-dir", state2])
        try n1.waitRunning()
        try n2.waitRunning()

        let a = try Self.addPod(n1, pa, name: "a")
        let b = try Self.addPod(n2, pb, name: "b")
        // Addresses from each node's own block: unique across the cluster.
        #expect(a.address != b.address)
        // Learned through etcd only: each node has a /32 for the other's pod.
        let learned = try Self.within(10) {
            try Self.routes(n1).contains("\(b.address)/32") && Self.routes(n2).contains("\(a.address)/32")
        }
        let (r1, r2) = (try Self.routes(n1), try Self.routes(n2))
        #expect(learned != nil, "routes: n1 \(r1), n2 \(r2)")
        try lab.waitForPing(from: pa, b.address, timeout: 20)
        #expect(try lab.ping(from: pb, a.address) == 3)
        let view = try Self.cluster(n1)
        #expect(view.connected && view.nodes.map(\.name) == ["n2"] && view.nodes.first?.programmed == true, "\(view)")
        let ctl = try n1.ctl(["cluster"])
        #expect(ctl.ok && ctl.output.contains("n2") && ctl.output.contains("198.18.0.2"), "\(ctl.output)\(ctl.error)")

        // kill -9: n1 withdraws b within the lease's TTL + 1 s.
        n2.child.signal(SIGKILL)
        let withdrawn = try Self.within(Double(Self.ttl) + 5) { try !Self.routes(n1).contains("\(b.address)/32") }
        let took = try #require(withdrawn, "b's route never withdrawn on n1")
        #expect(took <= Double(Self.ttl) + 1, "withdrawn \(took) s after kill -9 (TTL \(Self.ttl) s)")
        #expect(try Self.cluster(n1).nodes.isEmpty)

        // Restarted on its state: b is published again with the same address and label.
        n2.child.wait(seconds: 5)
        n2 = try Daemon(lab, config: c2, name: "vrouterd-n2b", extra: ["--state-dir", state2])
        try n2.waitRunning()
        let back = try Self.within(10) { try Self.routes(n1).contains("\(b.address)/32") }
        #expect(back != nil, "b not learned again after n2's restart")
        try lab.waitForPing(from: pa, b.address, timeout: 20)
        let pods = try JSONDecoder().decode([PodInfo].self, from: Data(try n2.http("GET", "/v1/pods").1.utf8))
        #expect(pods.first { $0.name == "b" }?.interfaces?.first?.label == b.label)
    }
}
