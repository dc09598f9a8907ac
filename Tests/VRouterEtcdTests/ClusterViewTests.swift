// The cluster view alone (no etcd): intents from events and listings, mark and sweep, records
// skipped by version or shape, and no intent for an unchanged re-publication.

import Foundation
import Testing
import VRouterEtcd

@testable import VRouterCluster

struct ClusterViewTests {
    let keys = try! ClusterKeys(prefix: "/vrt")

    func kv(_ key: String, _ value: some Encodable, rev: Int64 = 1, lease: Int64 = 0) -> KeyValue {
        KeyValue(key: Array(key.utf8), value: RecordCodec.encode(value), modRevision: rev, version: 1, lease: lease)
    }

    func endpoint(_ node: String, _ pod: String, _ ip: String, label: UInt32 = 16) -> EndpointRecord {
        EndpointRecord(
            node: node,
            network: NetworkKey(namespace: "default", name: "blue"),
            pod: PodKey(namespace: "default", name: pod),
            interface: "eth0",
            addresses: [ip + "/32"],
            label: label,
            vni: 100
        )
    }

    func key(_ e: EndpointRecord) -> String { keys.endpoint(node: e.node, pod: e.pod, interface: e.interface) }

    @Test func keysRoundTripAndRejectWhatIsNotTheSchema() throws {
        let n = NetworkKey(namespace: "default", name: "blue")
        #expect(keys.parse(keys.block(n, "192.0.2.64/26")) == .block(n, cidr: "192.0.2.64/26"))
        #expect(keys.parse(keys.address(n, "2001:db8::5")) == .address(n, address: "2001:db8::5"))
        let pod = PodKey(namespace: "ns", name: "p")
        #expect(
            keys.parse(keys.endpoint(node: "a", pod: pod, interface: "net1"))
                == .endpoint(node: "a", pod: pod, interface: "net1")
        )
        #expect(keys.parse("/vrt/v1/nodes/a/extra") == nil)
        #expect(keys.parse("/vrt/v2/nodes/a") == nil)
        #expect(keys.parse("/vrt/v1/nodes/") == nil)
        #expect(throws: ClusterError.self) { try ClusterKeys(prefix: "vrt") }
        #expect(throws: ClusterError.self) { try ClusterKeys.check("a/b", "node name") }
    }

    @Test func listingsAndEventsBecomeIntentsAndOwnRecordsDoNot() {
        var view = ClusterView(keys: keys, localNode: "a")
        let nodeA = NodeRecord(name: "a", underlay: "198.18.0.1", encapsulations: ["vxlan"], bootID: "1")
        let nodeB = NodeRecord(name: "b", underlay: "198.18.0.2", encapsulations: ["vxlan", "mplsudp"], bootID: "1")
        let mine = endpoint("a", "p1", "192.0.2.2")
        let theirs = endpoint("b", "p2", "192.0.2.66")
        let first = view.replace(with: [
            kv(keys.node("a"), nodeA), kv(keys.node("b"), nodeB), kv(key(mine), mine), kv(key(theirs), theirs),
            kv(
                keys.block(theirs.network, "192.0.2.64/26"),
                BlockClaim(network: theirs.network, cidr: "192.0.2.64/26", node: "b")
            ),
        ])
        #expect(first == [.nodeUp(nodeB), .endpointUp(theirs)])
        #expect(view.remoteNodes == 1 && view.remoteEndpoints == 1)

        // The same records again under another lease and revision: nothing to do.
        let again = view.replace(with: [
            kv(keys.node("a"), nodeA, rev: 9, lease: 5), kv(keys.node("b"), nodeB, rev: 9, lease: 7),
            kv(key(mine), mine, rev: 9), kv(key(theirs), theirs, rev: 9, lease: 7),
        ])
        #expect(again.isEmpty)
        // ... but the view knows each node's lease now (vrouterctl node list shows it).
        #expect(view.nodeLeases == ["a": 5, "b": 7])

        // A changed label is an update; a delete is a withdrawal of the last known record.
        var relabelled = theirs
        relabelled.label = 17
        #expect(view.apply([WatchEvent(kind: .put, kv: kv(key(theirs), relabelled))]) == [.endpointUp(relabelled)])
        let gone = view.apply([WatchEvent(kind: .delete, kv: KeyValue(key: Array(key(theirs).utf8), value: []))])
        #expect(gone == [.endpointDown(relabelled)])
        #expect(view.remoteEndpoints == 0)

        // Mark and sweep: a listing without node b withdraws it; our own records never.
        let swept = view.replace(with: [kv(keys.node("a"), nodeA), kv(key(mine), mine)])
        #expect(swept == [.nodeDown(name: "b")])
        #expect(view.nodeLeases == ["a": 0])
        #expect(view.counters.nodesWithdrawn == 1 && view.counters.endpointsWithdrawn == 1)
    }

    @Test func newerAndGarbageRecordsAreSkippedCountedAndKeepWhatWasKnown() {
        var view = ClusterView(keys: keys, localNode: "a")
        let theirs = endpoint("b", "p2", "192.0.2.66")
        _ = view.replace(with: [kv(key(theirs), theirs)])
        var logged: [String] = []
        let log = { (m: String) in logged.append(m) }

        struct Future: Encodable {
            var version = 2
            var node = "b"
        }
        let events = [
            // The known endpoint overwritten by a newer writer: skipped, the old one stays.
            WatchEvent(kind: .put, kv: kv(key(theirs), Future())),
            WatchEvent(kind: .put, kv: KeyValue(key: Array(keys.node("c").utf8), value: Array("{not json".utf8))),
            WatchEvent(kind: .put, kv: kv(keys.node("d"), ["name": "d"])),  // no version
            WatchEvent(
                kind: .put,
                kv: kv(keys.node("e"), NodeRecord(name: "x", underlay: "198.18.0.9", encapsulations: [], bootID: ""))
            ),
            WatchEvent(kind: .put, kv: kv("/vrt/v1/unknown/thing", theirs)),
        ]
        #expect(view.apply(events, log: log).isEmpty)
        #expect(view.counters.skippedNewer == 1 && view.counters.skippedGarbage == 4)
        #expect(logged.count == 5)
        #expect(logged[0].contains("version 2 is newer"))
        #expect(view.endpoints[key(theirs)] == theirs)
        // A listing holding the same unreadable value keeps the endpoint too.
        #expect(view.replace(with: [kv(key(theirs), Future())], log: log).isEmpty)
        #expect(view.remoteEndpoints == 1)
    }
}
