import Foundation
import Logging
import Testing
import VRouterAPI
import VRouterCore
import VRouterTestSupport

@testable import VRouterControl

/// The control operations on a running node (no ports needed) and their persistence.
@Suite(.serialized) struct NodeServiceTests {
    static let yaml = """
        remoteNodes:
          - { name: node-a, address: 198.18.0.2, mac: "02:00:00:00:00:02", encap: vxlan }
          - { name: node-b, address: 198.18.0.3, mac: "02:00:00:00:00:03", encap: mpls-udp }
        vrfs:
          - { name: blue, vni: 1001, gateway: 192.0.2.1 }
        interfaces:
          - { name: fabric0, kind: fabric, address: 198.18.0.1/24, mac: "02:00:00:00:00:01", pcap: { in: none.pcap } }
        """

    func service(_ config: NodeConfig, state: StatePersistence? = nil) throws -> NodeService {
        var c = config
        c.poolBuffers = 1024
        c.flowCapacity = 1024
        // A fabric with a pcap port only: the service starts no AF_PACKET socket for it.
        c.interfaces = c.interfaces.map {
            var i = $0
            i.device = nil
            return i
        }
        let s = try NodeService(config: c, logger: Logger(label: "test"), requireLivePorts: false)
        s.persistence = state
        try s.start()
        return s
    }

    @Test func routeBatchesAreAllOrNothing() throws {
        let s = try service(NodeConfig.parse(Self.yaml))
        defer { s.stop() }
        let before = try s.routes(vrf: "blue")
        // One bad entry (unknown node) refuses the whole batch.
        do {
            _ = try s.changeRoutes(
                vrf: "blue",
                RouteChange(add: [
                    RouteSpec(prefix: "203.0.113.0/24", via: "node-a", vni: 1001),
                    RouteSpec(prefix: "198.51.100.0/24", via: "nowhere", vni: 7),
                ])
            )
            Issue.record("accepted a batch naming an unknown node")
        } catch {
            #expect(error.status == 404)
            #expect(error.message.contains("nowhere"))
        }
        #expect(try s.routes(vrf: "blue") == before)
        for bad in [
            RouteSpec(prefix: "203.0.113.1/24", via: "node-a", vni: 1),
            RouteSpec(prefix: "203.0.113.0/24", via: "node-a"),
            RouteSpec(prefix: "203.0.113.0/24", via: "node-b", vni: 5),
            RouteSpec(prefix: "203.0.113.0/24", interface: "x", discard: true),
        ] {
            #expect(throws: APIError.self) { try s.changeRoutes(vrf: "blue", RouteChange(add: [bad])) }
        }
        #expect(throws: APIError.self) { try s.changeRoutes(vrf: "green", RouteChange(add: [])) }
        #expect(throws: APIError.self) { try s.changeRoutes(vrf: "blue", RouteChange(delete: ["203.0.113.0/24"])) }
        #expect(try s.routes(vrf: "blue") == before)

        let r = try s.changeRoutes(
            vrf: "blue",
            RouteChange(add: [
                RouteSpec(prefix: "203.0.113.0/24", via: "node-a", vni: 1001),
                RouteSpec(
                    prefix: "198.51.100.0/25",
                    ecmp: [RouteMember(via: "node-a", vni: 1001), RouteMember(via: "node-b", label: 300)]
                ),
                RouteSpec(prefix: "2001:db8:9::/48", discard: true),
            ])
        )
        #expect(r.added == 3)
        let routes = try s.routes(vrf: "blue")
        #expect(routes.first { $0.prefix == "203.0.113.0/24" }?.via == "node-a")
        #expect(routes.first { $0.prefix == "198.51.100.0/25" }?.members?.count == 2)
        // The published tables route it.
        let view = s.publication.current.view
        #expect(view.vrfs[1].v4.lookup(IPv4Address(203, 0, 113, 7).value) != LPM.miss)
    }

    /// A second route over an ECMP set that already exists shares its nexthop (found by
    /// schemathesis: vrouterd trapped on it, unwrapping a placeholder only new sets have).
    @Test func ecmpSetsAreShared() throws {
        let s = try service(NodeConfig.parse(Self.yaml))
        defer { s.stop() }
        let set = [RouteMember(via: "node-a", vni: 1001), RouteMember(via: "node-b", label: 300)]
        _ = try s.changeRoutes(vrf: "blue", RouteChange(add: [RouteSpec(prefix: "198.51.100.0/25", ecmp: set)]))
        _ = try s.changeRoutes(vrf: "blue", RouteChange(add: [RouteSpec(prefix: "198.51.100.128/25", ecmp: set)]))
        _ = try s.changeRoutes(
            vrf: "blue",
            RouteChange(add: [
                RouteSpec(prefix: "203.0.113.0/25", ecmp: set), RouteSpec(prefix: "203.0.113.128/25", ecmp: set),
            ])
        )
        let nexthops = Set(try s.routes(vrf: "blue").filter { $0.members != nil }.map(\.nexthop))
        #expect(nexthops.count == 1)
        #expect(try s.routes(vrf: "blue").filter { $0.members != nil }.count == 4)
    }

    @Test func vrfsAndNodesValidateAndRefuseWhatIsInUse() throws {
        let s = try service(NodeConfig.parse(Self.yaml))
        defer { s.stop() }
        _ = try s.addVRF(VRFSpec(name: "red", vni: 1002, gateway: "198.51.100.1"))
        #expect(s.vrfs().map(\.name).sorted() == ["blue", "red"])
        #expect(throws: APIError.self) { try s.addVRF(VRFSpec(name: "red")) }
        #expect(throws: APIError.self) { try s.addVRF(VRFSpec(name: "green", vni: 1002)) }
        #expect(throws: APIError.self) { try s.addVRF(VRFSpec(name: "bad name")) }
        #expect(throws: APIError.self) { try s.addVRF(VRFSpec(name: "green", gateway: "300.1.1.1")) }
        _ = try s.changeRoutes(
            vrf: "red",
            RouteChange(add: [RouteSpec(prefix: "198.51.100.128/25", via: "node-b", label: 200)])
        )
        // node-b carries a route: it cannot go.
        #expect(throws: APIError.self) { try s.deleteRemoteNode("node-b") }
        _ = try s.changeRoutes(vrf: "red", RouteChange(delete: ["198.51.100.128/25"]))
        try s.deleteRemoteNode("node-b")
        try s.deleteVRF("red")
        #expect(s.vrfs().map(\.name) == ["blue"])
        try s.addRemoteNode(
            RemoteNodeSpec(name: "node-c", address: "198.18.0.4", encap: "vxlan", mac: "02:00:00:00:00:04")
        )
        #expect(s.nexthops().contains { $0.node == "node-c" && $0.resolved == true })
    }

    /// Nexthop ids of removed nexthops are handed out again: the published nexthop table,
    /// sized by the highest id, is back to its size after remote nodes came and went (as a
    /// cluster's nodes do), and a new node takes the lowest free id. With ids never reused it
    /// grew by one entry per node or pod that ever came (issue 18: a node's heap grew without
    /// end under cluster churn).
    @Test func nexthopIDsAreHandedOutAgain() throws {
        let s = try service(NodeConfig.parse(Self.yaml))
        defer { s.stop() }
        func spec(_ i: Int) -> RemoteNodeSpec {
            RemoteNodeSpec(
                name: "churn-\(i)",
                address: "198.18.0.\(10 + i)",
                encap: "vxlan",
                mac: "02:00:00:00:01:\(10 + i)"
            )
        }
        let ids = Set(s.nexthops().map(\.id))
        let size = s.publication.current.view.nexthopCount
        for round in 0..<20 {
            for i in 0..<3 { try s.addRemoteNode(spec(i)) }
            #expect(s.publication.current.view.nexthopCount <= size + 3, "round \(round)")
            for i in 0..<3 { try s.deleteRemoteNode("churn-\(i)") }
        }
        #expect(s.publication.current.view.nexthopCount <= size)
        #expect(Set(s.nexthops().map(\.id)) == ids)
        // A hole left by a node that went is filled first.
        for i in 0..<3 { try s.addRemoteNode(spec(i)) }
        let middle = try #require(s.nexthops().first { $0.node == "churn-1" }).id
        try s.deleteRemoteNode("churn-1")
        try s.addRemoteNode(spec(3))
        #expect(s.nexthops().first { $0.node == "churn-3" }?.id == middle)
    }

    /// The cluster store's hooks stay one call deep however often they are read: a pod's
    /// endpoint records read the VNI hook on every ADD and DEL, and a function kept bare in
    /// a Mutex came back from each read wrapped in two more thunks (measured: a stack 7
    /// frames deep at the first call, 128 and more after 1,000 reads), so the request
    /// threads' stacks grew without end (issue 18). The depth is counted inside the hook.
    @Test func clusterStoreHooksDoNotDeepenWithUse() throws {
        let c = try NodeConfig.parse(
            Self.yaml + "\ncluster: { etcd: { endpoints: [\"http://127.0.0.1:9\"], prefix: /vrt-hooks } }"
        )
        let store = try EtcdStore(
            try #require(c.cluster),
            node: NodeService.clusterRecord(c),
            log: Logger(label: "test")
        )
        store.vniOfVRF.withLock { $0 = Hook { _ in UInt32(Thread.callStackSymbols.count) } }
        var a = PodAttachment(network: "blue", ifname: "eth0", isDefault: true, defaultRoute: true)
        a.interface = "vif1"
        a.vrf = "blue"
        a.ipv4 = PodAddress(IPv4Address("192.0.2.5")!, prefixLength: 24)
        let pod = PodRecord(
            containerID: "c1",
            netns: "/var/run/netns/none",
            pod: CNIPod(namespace: "default", name: "p"),
            attachments: [a],
            committed: true
        )
        let depth = try #require(store.endpoints(pod).first?.vni)
        for _ in 0..<1000 { _ = store.endpoints(pod) }
        #expect(store.endpoints(pod).first?.vni == depth)
        store.client.close()
    }

    @Test func stateSurvivesARestart() throws {
        let dir = Scratch.path("state-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try NodeConfig.parse(Self.yaml)
        do {
            let p = try StatePersistence(directory: dir)
            #expect(try p.load() == nil)
            let s = try service(config, state: p)
            try s.saveSnapshot()
            _ = try s.addVRF(VRFSpec(name: "red", vni: 1002, gateway: "198.51.100.1"))
            try s.addRemoteNode(
                RemoteNodeSpec(name: "node-c", address: "198.18.0.4", encap: "mpls-udp", mac: "02:00:00:00:00:04")
            )
            var adds: [RouteSpec] = []
            for i in 0..<300 {
                adds.append(RouteSpec(prefix: "203.0.\(113 + i / 256).\(i % 256)/32", via: "node-a", vni: 1001))
            }
            _ = try s.changeRoutes(vrf: "blue", RouteChange(add: adds))
            _ = try s.changeRoutes(
                vrf: "red",
                RouteChange(add: [RouteSpec(prefix: "198.51.100.128/25", via: "node-c", label: 77)])
            )
            _ = try s.changeRoutes(vrf: "blue", RouteChange(delete: ["203.0.113.5/32"]))
            // No stop(): as after kill -9, only what was journaled is there.
            defer { s.stop() }
            let (routesBlue, routesRed, vrfs) = (try s.routes(vrf: "blue"), try s.routes(vrf: "red"), s.vrfs())

            let p2 = try StatePersistence(directory: dir)
            guard let (restored, records) = try p2.load() else {
                Issue.record("nothing saved")
                return
            }
            #expect(records.count == 5)
            let s2 = try service(restored, state: p2)
            s2.replay(records)
            defer { s2.stop() }
            #expect(try s2.routes(vrf: "blue") == routesBlue)
            #expect(try s2.routes(vrf: "red") == routesRed)
            #expect(s2.vrfs().map(\.name) == vrfs.map(\.name))
            // A snapshot folds the journal in; a third start needs no replay.
            try s2.saveSnapshot()
            let p3 = try StatePersistence(directory: dir)
            let (again, more) = try p3.load()!
            #expect(more.isEmpty)
            let s3 = try service(again, state: p3)
            defer { s3.stop() }
            #expect(try s3.routes(vrf: "blue") == routesBlue)
            #expect(try s3.routes(vrf: "red").count == routesRed.count)
        }
    }

    @Test func aCorruptOrNewerStateIsAnErrorNotAReset() throws {
        let dir = Scratch.path("state-bad-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = try StatePersistence(directory: dir)
        let s = try service(NodeConfig.parse(Self.yaml), state: p)
        try s.saveSnapshot()
        s.stop()
        let file = dir + "/current/config.yaml"
        let good = try String(contentsOfFile: file, encoding: .utf8)
        try good.replacingOccurrences(of: "stateVersion: 1", with: "stateVersion: 99").write(
            toFile: file,
            atomically: true,
            encoding: .utf8
        )
        do {
            _ = try StatePersistence(directory: dir).load()
            Issue.record("loaded a newer state")
        } catch { #expect(error.description.contains("newer vrouterd")) }
        try "vrfs: [ { name: ".write(toFile: file, atomically: true, encoding: .utf8)
        do {
            _ = try StatePersistence(directory: dir).load()
            Issue.record("loaded a corrupt state")
        } catch { #expect(error.description.contains("refusing to start")) }
    }

    /// A crash while a record is written leaves its line cut short (or, after a file system's
    /// crash, zeros or garbage after the last record): the complete records are kept, the torn
    /// tail is dropped and reported, cut off the file (the next append starts a line of its
    /// own), and the node starts. A damaged line with complete records after it is corruption.
    @Test func aTornJournalTailIsDroppedNotARefusal() throws {
        let dir = Scratch.path("state-torn-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try NodeConfig.parse(Self.yaml)
        let p = try StatePersistence(directory: dir)
        let s = try service(config, state: p)
        try s.saveSnapshot()
        for i in 0..<3 {
            _ = try s.changeRoutes(
                vrf: "blue",
                RouteChange(add: [RouteSpec(prefix: "203.0.113.\(i)/32", discard: true)])
            )
        }
        s.stop()
        let journal = dir + "/journal.jsonl"
        let whole = try #require(FileManager.default.contents(atPath: journal))
        let lines = whole.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast()
        #expect(lines.count == 3)
        let firstTwo = Data(lines.prefix(2).joined(separator: [UInt8(ascii: "\n")])) + Data("\n".utf8)
        let third = Data(lines[lines.startIndex + 2])

        /// Loads `data` as the journal; returns the prefixes replayed and what was dropped.
        func load(_ data: Data) throws -> ([String], StatePersistence.DroppedTail?) {
            try data.write(to: URL(fileURLWithPath: journal))
            let p = try StatePersistence(directory: dir)
            let (_, records) = try #require(try p.load())
            let prefixes = records.compactMap { r -> String? in
                guard case .routes(_, let c) = r else { return nil }
                return c.add?.first?.prefix
            }
            return (prefixes, p.droppedTail)
        }
        let all = ["203.0.113.0/32", "203.0.113.1/32", "203.0.113.2/32"]
        // Nothing damaged: nothing dropped.
        #expect(try load(whole) == (all, nil))
        // The last record cut short, at several points (its newline included).
        for cut in [1, third.count / 2, third.count] {
            let torn = firstTwo + third.prefix(cut)
            #expect(try load(torn) == (Array(all.prefix(2)), StatePersistence.DroppedTail(line: 3, bytes: cut)))
            // Cut off the file: exactly the complete records remain.
            #expect(FileManager.default.contents(atPath: journal) == firstTwo)
        }
        // Garbage after the last record: zeros, half a record, several broken lines.
        let garbage = [Data(repeating: 0, count: 512), third.prefix(20), Data("}{\n\u{1}x\nnot json".utf8)]
        for g in garbage {
            #expect(try load(whole + g) == (all, StatePersistence.DroppedTail(line: 4, bytes: g.count)))
            #expect(FileManager.default.contents(atPath: journal) == whole)
        }
        // After a recovery the node starts, and what it journals next reads back after the kept records.
        _ = try load(firstTwo + third.prefix(10))
        let p2 = try StatePersistence(directory: dir)
        let (restored, records) = try #require(try p2.load())
        let s2 = try service(restored, state: p2)
        s2.replay(records)
        _ = try s2.changeRoutes(vrf: "blue", RouteChange(add: [RouteSpec(prefix: "203.0.113.9/32", discard: true)]))
        s2.stop()
        let p3 = try StatePersistence(directory: dir)
        let (again, more) = try #require(try p3.load())
        #expect(p3.droppedTail == nil)
        let s3 = try service(again, state: p3)
        defer { s3.stop() }
        s3.replay(more)
        #expect(
            try s3.routes(vrf: "blue").map(\.prefix).filter { $0.hasPrefix("203.") }
                == ["203.0.113.0/32", "203.0.113.1/32", "203.0.113.9/32"]
        )
        // A damaged line followed by complete records is not a torn tail: refused, saying so.
        try (firstTwo.prefix(5) + Data("\n".utf8) + firstTwo).write(to: URL(fileURLWithPath: journal))
        do {
            _ = try StatePersistence(directory: dir).load()
            Issue.record("loaded a journal corrupt in the middle")
        } catch { #expect(error.description.contains("line 1 is corrupt")) }
    }
}

/// NADs with Contrail's fabric annotations on a running node (no ports needed).
@Suite(.serialized) struct FabricNetworkTests {
    static let yaml = """
        snat: { ports: 20000-20999 }
        defaultNetwork: { name: cluster, subnet: 198.19.0.0/24, ipFabricSnat: true }
        interfaces:
          - { name: fabric0, kind: fabric, address: 198.18.0.1/24, mac: "02:00:00:00:00:01", gateway: 198.18.0.254, pcap: { in: none.pcap } }
        """

    func service(_ yaml: String, state: StatePersistence? = nil) throws -> NodeService {
        var c = try NodeConfig.parse(yaml)
        c.poolBuffers = 1024
        c.flowCapacity = 1024
        let s = try NodeService(config: c, logger: Logger(label: "test"), requireLivePorts: false)
        s.persistence = state
        try s.start()
        return s
    }

    static func nad(_ name: String, _ ann: [String: String]) -> NetworkAttachmentDefinition {
        NetworkAttachmentDefinition(
            metadata: .init(name: name, annotations: ["opencontrail.org/cidr": "198.51.100.0/24"].merging(ann) { $1 })
        )
    }

    @Test func fabricAnnotationsGiveTheNetworkItsWayOut() throws {
        let dir = Scratch.path("fabric-state-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = try StatePersistence(directory: dir)
        let s = try service(Self.yaml, state: p)
        try s.saveSnapshot()
        _ = try s.applyNetwork(Self.nad("out", ["opencontrail.org/ip_fabric_snat": "true"]))
        _ = try s.applyNetwork(Self.nad("flat", ["opencontrail.org/ip_fabric_forwarding": "true"]))
        func defaultRoute(_ vrf: String, in s: NodeService) throws -> String? {
            try s.routes(vrf: vrf).first { $0.prefix == "0.0.0.0/0" }?.kind
        }
        #expect(try defaultRoute("default:out", in: s) == "snat")
        #expect(try defaultRoute("default:flat", in: s) == "vrf-translate")
        #expect(try defaultRoute("cluster", in: s) == "snat")
        #expect(try defaultRoute(NodeConfig.underlayVRFName, in: s) == "fabric")
        let nets = Dictionary(uniqueKeysWithValues: s.networks().map { ($0.network.name, $0.network) })
        #expect(nets["out"]?.ipFabricSnat == true && nets["flat"]?.ipFabricForwarding == true)
        #expect(nets["cluster"]?.ipFabricSnat == true)
        s.stop()
        // After a restart (state replayed), the same.
        let p2 = try StatePersistence(directory: dir)
        let (restored, records) = try #require(try p2.load())
        let s2 = try service(try restored.yaml(routeFiles: [], journalSequence: 0), state: p2)
        defer { s2.stop() }
        s2.replay(records)
        #expect(try defaultRoute("default:out", in: s2) == "snat")
        #expect(try defaultRoute("default:flat", in: s2) == "vrf-translate")
    }

    @Test func aNodeThatCannotCarryThemRefusesThem() throws {
        let bare = try service(
            """
            interfaces:
              - { name: fabric0, kind: fabric, address: 198.18.0.1/24, mac: "02:00:00:00:00:01", pcap: { in: none.pcap } }
            """
        )
        defer { bare.stop() }
        #expect {
            _ = try bare.applyNetwork(Self.nad("out", ["opencontrail.org/ip_fabric_snat": "true"]))
        } throws: { ($0 as? APIError)?.message.contains("needs this node's SNAT port range") == true }
        #expect(bare.networks().isEmpty)
        // Forwarding needs only the fabric: the underlay VRF is made for it.
        _ = try bare.applyNetwork(Self.nad("flat", ["opencontrail.org/ip_fabric_forwarding": "true"]))
        #expect(bare.vrfs().contains { $0.name == NodeConfig.underlayVRFName })
        let none = try service("vrfs: [ { name: a } ]")
        defer { none.stop() }
        #expect {
            _ = try none.applyNetwork(Self.nad("flat", ["opencontrail.org/ip_fabric_forwarding": "true"]))
        } throws: { ($0 as? APIError)?.message.contains("needs a fabric interface") == true }
    }
}
