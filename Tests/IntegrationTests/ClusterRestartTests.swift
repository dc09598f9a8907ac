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
