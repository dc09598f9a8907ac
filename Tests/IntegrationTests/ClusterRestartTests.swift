// A node restarted in cluster mode forgets what went away while it was down. Its tables come
// back from its state with the routes it had learned; a pod deleted on another node meanwhile
// must be withdrawn by the first listing, not stay routed for good. (tools/soak found it: a
// node killed during pod churn kept routes to pods that no longer existed, to the end.)

import Foundation
import Glibc
import Testing
import VRouterAPI
import VRouterTestSupport

// In ClusterTests: its traits (root, tools, etcd, vrouterd built, deadline) and serialized
// with its other tests.
extension ClusterTests {
    @Test func aRestartedNodeWithdrawsThePodsDeletedWhileItWasDown() throws {
        let lab = try Lab("r")
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let etcd = try EtcdLab(members: 1)
        defer { etcd.cleanup() }
        // A TTL long enough that n2's restart comes back within it: its lease and records
        // stay, and only the listing can tell it that c went away.
        var t = try ClusterTests.TwoNodes(lab, etcd, ttl: 10)
        // Twice: the first restart starts from the journal, the second also from the snapshot
        // the first wrote (whose config lists n1 among the remote nodes, as learned ones are).
        for (round, pod) in ["c", "d"].enumerated() {
            let ns = try lab.namespace("p\(pod)")
            let c = try ClusterTests.addPod(t.n1, ns, name: pod)
            let n2 = t.n2
            let learned = try ClusterTests.within(10) { try ClusterTests.routes(n2).contains("\(c.address)/32") }
            #expect(learned != nil, "n2 never learned \(pod)")

            n2.child.signal(SIGKILL)
            n2.child.wait(seconds: 5)
            try ClusterTests.delPod(t.n1, ns, name: pod)
            try t.restartN2("vrouterd-n2-\(round)")
            let restarted = t.n2
            let withdrawn = try ClusterTests.within(10) {
                let routes = try ClusterTests.routes(restarted)
                return !routes.contains("\(c.address)/32") && routes.contains("\(t.a.address)/32")
            }
            let routes = try ClusterTests.routes(restarted)
            #expect(
                withdrawn != nil,
                "restart \(round + 1): n2 routes \(routes) (\(pod) \(c.address) was deleted, a is \(t.a.address))"
            )
            #expect(try ClusterTests.cluster(restarted).routesProgrammed == 1)
        }
        try lab.waitForPing(from: t.pb, t.a.address, timeout: 20)
    }
}

// A node's address claims in etcd follow its pods. A DEL is journaled first and released in
// etcd after: a kill between the two leaves a claim of the node's own for a pod it no longer
// has, and the address, free in the node's pool, was refused to the next pod offered it
// (tools/soak: "address 198.19.0.42 is held by pod default/churn-n1-0 (eth0) on node n1").
// Made here as the kill leaves it: the claim put back in etcd after the DEL, vrouterd killed.
extension ClusterTests {
    @Test func aNodeOffersNoAddressItsOwnStaleClaimHolds() throws {
        let lab = try Lab("s")
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let etcd = try EtcdLab(members: 1)
        defer { etcd.cleanup() }
        let (f1, f2) = (lab.name("f1"), lab.name("f2"))
        try Self.fabricVeth(lab, f1, f2)
        let config = try lab.write(
            "n1.yaml",
            Self.config(lab, etcd, node: "n1", device: f1, address: "198.18.0.1", mac: "02:00:00:00:00:01", ttl: 10)
        )
        let state = lab.dir + "/state-n1"
        var n1 = try Daemon(lab, config: config, name: "vrouterd-n1", extra: ["--state-dir", state])
        try n1.waitRunning()
        let etcdctl = ["/usr/bin/etcdctl", "--endpoints", etcd.endpoints.joined(separator: ",")]
        let claimKey = { (address: String) in "/\(lab.tag)/v1/addresses/-/podnet/\(address)" }
        let claims = { Set(try Self.claimedAddresses(lab, etcd)) }

        // c takes the first address of n1's block, e the next.
        let pc = try lab.namespace("pc")
        let c = try Self.addPod(n1, pc, name: "c")
        let e = try Self.addPod(n1, try lab.namespace("pe"), name: "e")
        let claimOfC = try lab.must(etcdctl + ["get", "--print-value-only", claimKey(c.address)])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try Self.delPod(n1, pc, name: "c")
        #expect(try claims() == [e.address])
        // Killed after c's DEL was journaled, before etcd released its claim.
        n1.child.signal(SIGKILL)
        n1.child.wait(seconds: 5)
        _ = try lab.must(etcdctl + ["put", claimKey(c.address), claimOfC])
        n1 = try Daemon(lab, config: config, name: "vrouterd-n1b", extra: ["--state-dir", state])
        try n1.waitRunning()
        // The restart released c's claim and kept e's; d is given c's address (the first free).
        #expect(try claims() == [e.address], "claims after the restart")
        let d = try Self.addPod(n1, try lab.namespace("pd"), name: "d")
        #expect(d.address == c.address)

        // Running: a claim of n1's own for a pod it does not have, on the address its
        // allocator offers next (the one after e's), as a DEL whose release in etcd is still
        // to come leaves it (or a restart while etcd was away): f is given it all the same.
        var ghost = try #require(
            try JSONSerialization.jsonObject(with: Data(claimOfC.utf8)) as? [String: Any],
            "claim of c: \(claimOfC)"
        )
        let parts = e.address.split(separator: ".")
        let next = parts.dropLast().joined(separator: ".") + ".\(Int(parts.last!)! + 1)"
        ghost["address"] = next
        ghost["pod"] = ["namespace": "default", "name": "ghost"]
        let ghostText = String(
            decoding: try JSONSerialization.data(withJSONObject: ghost, options: .sortedKeys),
            as: UTF8.self
        )
        _ = try lab.must(etcdctl + ["put", claimKey(next), ghostText])
        let f = try Self.addPod(n1, try lab.namespace("pf"), name: "f")
        #expect(f.address == next)
        let held = try lab.must(etcdctl + ["get", "--print-value-only", claimKey(next)])
        #expect(held.contains("\"f\"") && !held.contains("ghost"), "claim of \(next): \(held)")
        #expect(try claims() == [d.address, e.address, f.address])

        // Killed with a stale claim left, and started while etcd is away: the start cannot
        // list the claims; once etcd answers, the stale claim goes with no ADD meeting it.
        n1.child.signal(SIGKILL)
        n1.child.wait(seconds: 5)
        let later = parts.dropLast().joined(separator: ".") + ".\(Int(parts.last!)! + 9)"
        ghost["address"] = later
        let laterText = String(
            decoding: try JSONSerialization.data(withJSONObject: ghost, options: .sortedKeys),
            as: UTF8.self
        )
        _ = try lab.must(etcdctl + ["put", claimKey(later), laterText])
        try etcd.stopAll()
        n1 = try Daemon(lab, config: config, name: "vrouterd-n1c", extra: ["--state-dir", state])
        try n1.waitRunning()
        try etcd.startAll()
        let released = Self.within(15) { (try? claims()) == [d.address, e.address, f.address] }
        #expect(released != nil, "claims once etcd is back: \((try? claims()) ?? [])")
    }
}
