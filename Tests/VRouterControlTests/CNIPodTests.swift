import Foundation
import Logging
import Synchronization
import Testing
import VRouterAPI
import VRouterCore
import VRouterIO
import VRouterTestSupport

@testable import VRouterControl

@Suite struct IPAMTests {
    @Test func allocatesNextFitSkippingGatewayAndReserved() throws {
        var p = try #require(
            SubnetPool.v4(IPv4Prefix("192.0.2.0/29")!, gateway: IPv4Address(192, 0, 2, 6), slice: 0, slices: 1)
        )
        // Hosts .1-.6, gateway .6: five addresses.
        #expect(p.free == 5)
        #expect(p.reserve(UInt128(IPv4Address(192, 0, 2, 3).value)) == nil)
        var got: [UInt128] = []
        while let a = p.allocate() { got.append(a & 0xFF) }
        #expect(got == [1, 2, 4, 5])
        #expect(p.reserve(UInt128(IPv4Address(192, 0, 2, 3).value))?.contains("taken") == true)
        #expect(p.reserve(UInt128(IPv4Address(192, 0, 2, 6).value))?.contains("gateway") == true)
        #expect(p.reserve(UInt128(IPv4Address(192, 0, 2, 7).value))?.contains("broadcast") == true)
        #expect(p.reserve(UInt128(IPv4Address(192, 0, 2, 9).value))?.contains("outside") == true)
        // A released address is not the next one handed out.
        p.release(UInt128(IPv4Address(192, 0, 2, 2).value))
        p.release(UInt128(IPv4Address(192, 0, 2, 5).value))
        #expect(p.allocate().map { $0 & 0xFF } == 2)
    }

    @Test func slicesSplitTheHostRangeWithoutOverlap() throws {
        let net = IPv4Prefix("198.51.100.0/24")!
        let g = IPv4Address(198, 51, 100, 254)
        var seen: Set<UInt128> = []
        for k in 0..<3 {
            var p = try #require(SubnetPool.v4(net, gateway: g, slice: k, slices: 3))
            while let a = p.allocate() { #expect(seen.insert(a).inserted) }
        }
        // 254 hosts less the gateway, all handed out once across the three nodes.
        #expect(seen.count == 253)
        #expect(
            SubnetPool.v4(IPv4Prefix("192.0.2.0/31")!, gateway: IPv4Address(192, 0, 2, 0), slice: 0, slices: 1) == nil
        )
        var v6 = try #require(
            SubnetPool.v6(
                IPv6Prefix("2001:db8:1::/64")!,
                gateway: IPv6Address("2001:db8:1::ffff:ffff:ffff:fffe")!,
                slice: 1,
                slices: 2
            )
        )
        #expect(v6.allocate() == IPv6Address("2001:db8:1:0:7fff:ffff:ffff:ffff")!.value + 1)
    }
}

@Suite struct NetworkDefinitionTests {
    func nad(
        _ name: String,
        ns: String? = nil,
        _ ann: [String: String],
        config: String? = nil
    ) -> NetworkAttachmentDefinition {
        NetworkAttachmentDefinition(
            metadata: .init(name: name, namespace: ns, annotations: ann),
            spec: config.map { .init(config: $0) }
        )
    }

    @Test func contrailManifestsAreVRouterNetworks() throws {
        let r = try NetworkRecord(
            validating:
                nad(
                    "right-network",
                    [
                        "opencontrail.org/cidr": "198.51.100.0/24", "opencontrail.org/ip_fabric_forwarding": "false",
                        "opencontrail.org/ip_fabric_snat": "False",
                    ],
                    config: #"{ "cniVersion": "0.3.0", "type": "contrail-k8s-cni" }"#
                )
        )
        #expect(r.kind == .vrouter && r.key == "default/right-network")
        #expect(r.subnet == "198.51.100.0/24" && r.gateway == "198.51.100.254" && r.vrf == "default:right-network")
        // vrouter.io/encap (cluster mode: how other nodes tunnel to its pods) is vxlan or mpls-udp.
        let mpls = try NetworkRecord(
            validating: nad("r", ["opencontrail.org/cidr": "198.51.100.0/24", "vrouter.io/encap": "mpls-udp"])
        )
        #expect(mpls.annotations["vrouter.io/encap"] == "mpls-udp")
        #expect(throws: APIError.self) {
            try NetworkRecord(
                validating: nad("r", ["opencontrail.org/cidr": "198.51.100.0/24", "vrouter.io/encap": "gre"])
            )
        }
        let none = try NetworkRecord(
            validating:
                nad("data-network", ns: "extns", ["opencontrail.org/cidr": "198.19.16.0/24,2001:db8:16::/64"])
        )
        #expect(
            none.kind == .vrouter && none.subnet6 == "2001:db8:16::/64"
                && none.gateway6 == "2001:db8:16:0:ffff:ffff:ffff:fffe"
        )
        let d = try NetworkRecord(
            validating:
                nad("br", [:], config: #"{"type":"bridge","bridge":"vrtbr0","ipam":{"type":"host-local"}}"#)
        )
        #expect(
            d.kind == .delegated && d.config?["name"] == .string("br") && d.config?["cniVersion"] == .string("1.0.0")
        )
    }

    @Test(arguments: [
        (
            [
                "opencontrail.org/cidr": "198.51.100.0/24", "opencontrail.org/ip_fabric_forwarding": "true",
                "opencontrail.org/ip_fabric_snat": "true",
            ],
            "exclude each other"
        ),
        (
            ["opencontrail.org/cidr": "198.51.100.0/24", "opencontrail.org/ip_fabric_snat": "yes"],
            "must be \"true\" or \"false\""
        ),
        ([:], "needs the opencontrail.org/cidr"),
        (["opencontrail.org/cidr": "198.51.100.1/24"], "not a prefix"),
        (["opencontrail.org/cidr": "198.51.100.0/31"], "no room"),
    ])
    func badDefinitionsAreRefusedAtApply(_ ann: [String: String], _ expected: String) {
        #expect { _ = try NetworkRecord(validating: nad("n", ann)) } throws: {
            ($0 as? APIError)?.message.contains(expected) == true
        }
    }
}

/// Pods attached through the CNI operations, on a running node with real taps in
/// namespaces this test makes (root).
@Suite(.serialized) struct CNIPodTests {
    static let yaml = """
        defaultNetwork: { name: cluster, subnet: 198.19.0.0/24, vni: 100 }
        interfaces:
          - { name: fabric0, kind: fabric, address: 198.18.0.1/24, mac: "02:00:00:00:00:01", pcap: { in: none.pcap } }
        """

    func service(state: StatePersistence? = nil) throws -> NodeService {
        var c = try NodeConfig.parse(Self.yaml)
        c.poolBuffers = 1024
        c.flowCapacity = 1024
        let s = try NodeService(config: c, logger: Logger(label: "test"), requireLivePorts: false)
        s.persistence = state
        try s.start()
        return s
    }

    static func nad(_ name: String, ns: String = "default", _ cidr: String) -> NetworkAttachmentDefinition {
        NetworkAttachmentDefinition(
            metadata: .init(name: name, namespace: ns, annotations: ["opencontrail.org/cidr": cidr]),
            spec: .init(config: #"{"cniVersion":"0.3.1","type":"contrail-k8s-cni"}"#)
        )
    }

    final class Netns {
        let ns: NetworkNamespace
        init(_ tag: String) throws {
            let name = "vrt-cu\(getpid() % 100000)-\(tag)"
            try? NetworkNamespace.named(name).delete()
            ns = try NetworkNamespace.create(named: name)
        }
        var path: String { ns.path }
        func remove() { try? ns.delete() }
        deinit { remove() }
        func links() throws -> [String] { try ns.netlink().links().map(\.name).filter { $0 != "lo" }.sorted() }
        func addresses(_ dev: String) throws -> [String] {
            try ns.netlink().addresses(of: dev).map(\.address.description).filter { !$0.hasPrefix("fe80") }
        }
        func defaultRoutes() throws -> [String] {
            try ns.netlink().routes().filter { $0.destination.length == 0 }.map {
                "\($0.device ?? "?") via \($0.gateway?.description ?? "-")"
            }
        }
    }

    /// The node as vrouterd restarts it from `dir`: snapshot, journal replayed, a new snapshot.
    func restarted(from dir: String) throws -> NodeService {
        let p = try StatePersistence(directory: dir)
        let (config, records) = try #require(try p.load())
        var c = config
        c.poolBuffers = 1024
        c.flowCapacity = 1024
        let s = try NodeService(config: c, logger: Logger(label: "test"), requireLivePorts: false)
        s.persistence = p
        let cni = try p.loadCNI()
        if let cni { s.restoreCNI(cni) }
        try s.start()
        s.replay(records, adding: cni?.adding ?? [])
        try s.saveSnapshot()
        return s
    }

    func add(
        _ s: NodeService,
        _ cid: String,
        _ ns: Netns,
        pod: String,
        uid: String? = nil,
        _ annotation: String
    ) throws -> CNIAddResponse {
        let sel = try NetworkAnnotation.parse(annotation, podNamespace: "default")
        return try s.cniAdd(
            CNIAddRequest(
                containerID: cid,
                netns: ns.path,
                ifname: "eth0",
                pod: CNIPod(namespace: "default", name: pod, uid: uid),
                networks: sel
            )
        )
    }

    @Test func podWithThreeNetworksThenDelete() throws {
        let s = try service()
        defer { s.stop() }
        for (n, c) in [
            ("left-network", "192.0.2.0/24"), ("right-network", "198.51.100.0/24"), ("blue-network", "203.0.113.0/24"),
        ] {
            #expect(try s.applyNetwork(Self.nad(n, c)).action == "created")
        }
        #expect(try s.applyNetwork(Self.nad("left-network", "192.0.2.0/24")).action == "unchanged")
        let pod = try Netns("a")
        let r = try add(s, "c-a", pod, pod: "web", "left-network,blue-network@blue0,right-network")
        #expect(r.attachments.map(\.ifname) == ["eth0", "net1", "blue0", "net2"])
        #expect(
            r.attachments.map(\.network) == [
                "cluster", "default/left-network", "default/blue-network", "default/right-network",
            ]
        )
        #expect(try pod.links() == ["blue0", "eth0", "net1", "net2"])
        #expect(try pod.addresses("net1") == [r.attachments[1].ips![0]])
        #expect(r.attachments[1].ips![0].hasPrefix("192.0.2.") && r.attachments[1].ips![0].hasSuffix("/24"))
        #expect(r.attachments[0].gateways == ["198.19.0.254"])
        #expect(try pod.defaultRoutes() == ["eth0 via 198.19.0.254"])
        let info = try s.pod(namespace: "default", name: "web")
        #expect(
            info.networkStatus.map(\.name) == [
                "cluster", "default/left-network", "default/blue-network", "default/right-network",
            ]
        )
        #expect(info.networkStatus.filter(\.default).map(\.interface) == ["eth0"])
        #expect(info.annotations["k8s.v1.cni.cncf.io/network-status"]?.contains("\"default\":true") == true)
        // Each interface has its own MPLS label, bound to its nexthop, for MPLS-over-UDP from other nodes.
        let labels = (info.interfaces ?? []).compactMap(\.label)
        #expect(labels.count == 4 && Set(labels).count == 4 && labels.allSatisfy { $0 >= 16 })
        #expect(Set(s.labels().compactMap(\.interface)) == Set((info.interfaces ?? []).map(\.interface)))
        #expect(Set(s.interfaces().filter { $0.kind == "pod" }.compactMap(\.label)) == Set(labels))
        // A network in use cannot go (and the error names the pod); CHECK passes.
        #expect { try s.deleteNetwork(namespace: "default", name: "left-network", force: false) } throws: {
            ($0 as? APIError)?.message.contains("default/web") == true
        }
        _ = try s.cniCheck(
            CNICheckRequest(
                containerID: "c-a",
                netns: pod.path,
                ifname: "eth0",
                pod: CNIPod(namespace: "default", name: "web")
            )
        )
        // DEL releases everything; a second DEL finds nothing and succeeds.
        let del = CNIDelRequest(
            containerID: "c-a",
            netns: pod.path,
            ifname: "eth0",
            pod: CNIPod(namespace: "default", name: "web")
        )
        #expect(s.cniDel(del).found)
        #expect(try pod.links() == [])
        #expect(!s.cniDel(del).found)
        #expect(s.networks().allSatisfy { $0.addressesInUse == 0 && $0.pods.isEmpty })
        #expect(s.interfaces().filter { $0.kind == "pod" }.isEmpty)
        #expect(s.labels().isEmpty, "DEL releases the labels")
        try s.deleteNetwork(namespace: "default", name: "left-network", force: false)
    }

    @Test func failuresUndoEverything() throws {
        let s = try service()
        defer { s.stop() }
        _ = try s.applyNetwork(Self.nad("left-network", "192.0.2.0/24"))
        _ = try s.applyNetwork(Self.nad("right-network", "198.51.100.0/24"))
        let pod = try Netns("b")
        let cases: [(String, Int)] = [
            ("left-network,nosuch-network", 100),
            (#"[{"name":"left-network","ips":["198.51.100.7"]}]"#, 101),
            (#"[{"name":"left-network","ips":["192.0.2.254/24"]}]"#, 101),
            (#"[{"name":"left-network","ips":["192.0.2.7/25"]}]"#, 101),
            (#"[{"name":"left-network","interface":"eth0"}]"#, 7),
        ]
        for (annotation, code) in cases {
            #expect {
                _ = try add(s, "c-b", pod, pod: "db", annotation)
            } throws: { e in
                (e as? CNIFailure)?.code.rawValue == code
            }
            #expect(try pod.links() == [], "left something behind after \(annotation)")
        }
        #expect(s.networks().allSatisfy { $0.addressesInUse == 0 })
        // A taken address: the second pod's ADD fails whole.
        let other = try Netns("c")
        let r = try add(s, "c-c", other, pod: "cache", #"[{"name":"left-network","ips":["192.0.2.7"]}]"#)
        #expect(r.attachments[1].ips == ["192.0.2.7/24"])
        #expect {
            _ = try add(
                s,
                "c-b",
                pod,
                pod: "db",
                #"[{"name":"right-network"},{"name":"left-network","ips":["192.0.2.7"]}]"#
            )
        } throws: {
            ($0 as? CNIFailure)?.message.contains("taken") == true
        }
        #expect(try pod.links() == [])
        #expect(s.networks().map(\.addressesInUse) == [1, 1, 0])
        // The running pod may not change its networks; the same set is a sandbox replacement.
        let again = try Netns("d")
        #expect { _ = try add(s, "c-c2", again, pod: "cache", "right-network") } throws: {
            ($0 as? CNIFailure)?.message.contains("cannot be added to or removed from a running pod") == true
        }
        let r2 = try add(s, "c-c2", again, pod: "cache", #"[{"name":"left-network","ips":["192.0.2.7"]}]"#)
        #expect(r2.attachments[0].ips == r.attachments[0].ips, "the new sandbox keeps the pod's address")
        #expect(try other.links() == [])
        // The old sandbox's DEL is stale: nothing of the running one goes.
        #expect(
            !s.cniDel(
                CNIDelRequest(
                    containerID: "c-c",
                    netns: other.path,
                    ifname: "eth0",
                    pod: CNIPod(namespace: "default", name: "cache")
                )
            ).found
        )
        #expect(try again.links() == ["eth0", "net1"])
        // DEL with the namespace gone.
        again.remove()
        #expect(s.cniDel(CNIDelRequest(containerID: "c-c2", netns: nil, ifname: "eth0", pod: CNIPod())).found)
        #expect(s.networks().allSatisfy { $0.addressesInUse == 0 })
        #expect(s.interfaces().filter { $0.kind == "pod" }.isEmpty)
    }

    @Test func podsSurviveARestart() throws {
        let dir = Scratch.path("cni-state-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p1 = try StatePersistence(directory: dir)
        var s = try service(state: p1)
        try s.saveSnapshot()
        _ = try s.applyNetwork(Self.nad("left-network", "192.0.2.0/24"))
        let pod = try Netns("e")
        let r = try add(s, "c-e", pod, pod: "api", "left-network")
        let labels = try s.pod(namespace: "default", name: "api").interfaces?.map(\.label)
        s.stop()
        #expect(try pod.links() == ["eth0", "net1"], "persistent taps outlive vrouterd")
        // Restart from the journal, then from a snapshot.
        for round in 0..<2 {
            s = try restarted(from: dir)
            let info = try s.pod(namespace: "default", name: "api")
            #expect(info.networkStatus.map(\.ips) == r.attachments.map(\.ips), "round \(round)")
            #expect(info.interfaces?.map(\.label) == labels && s.labels().count == 2, "labels survive, round \(round)")
            #expect(s.networks().first { $0.network.name == "left-network" }?.addressesInUse == 1)
            _ = try s.cniCheck(
                CNICheckRequest(
                    containerID: "c-e",
                    netns: pod.path,
                    ifname: "eth0",
                    pod: CNIPod(namespace: "default", name: "api")
                )
            )
            if round == 0 { s.stop() }
        }
        defer { s.stop() }
        #expect(
            s.cniDel(
                CNIDelRequest(
                    containerID: "c-e",
                    netns: pod.path,
                    ifname: "eth0",
                    pod: CNIPod(namespace: "default", name: "api")
                )
            ).found
        )
        #expect(try pod.links() == [])
    }
}

extension CNIPodTests {
    /// What tools/journal-kill found. (1) An ADD cut short after making its taps and before
    /// its record left them behind: no record, so neither the restart nor the runtime's DEL
    /// removed them (the pod's next ADD then failed on "eth0 exists"). Now an ADD journals
    /// its intent first and a restart undoes it. (2) Pod records were replayed by container
    /// ID, so an older sandbox's release (here "c-z") ran after a newer one's attachment
    /// ("c-a", same interface names) and took its tap. Now in the order they were written.
    @Test func aRestartUndoesAnAddCutShortAndReplaysSandboxesInOrder() throws {
        let dir = Scratch.path("cni-cut-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var s = try service(state: try StatePersistence(directory: dir))
        try s.saveSnapshot()
        let web = try Netns("g")
        _ = try add(s, "c-z", web, pod: "web", "")
        try s.saveSnapshot()  // the old sandbox is in the snapshot, the rest in the journal
        let del = CNIDelRequest(
            containerID: "c-z",
            netns: web.path,
            ifname: "eth0",
            pod: CNIPod(namespace: "default", name: "web")
        )
        #expect(s.cniDel(del).found)
        let r = try add(s, "c-a", web, pod: "web", "")
        let cut = try Netns("h")
        _ = try add(s, "c-cut", cut, pod: "cut", "")
        s.stop()  // as kill -9 leaves it: persistent taps stay
        // The crash came after c-cut's taps and before its record: the journal's last line goes.
        let journal = dir + "/journal.jsonl"
        var lines = try String(contentsOfFile: journal, encoding: .utf8).split(separator: "\n")
        #expect(lines.last?.contains("c-cut") == true && lines.dropLast().last?.contains("podAdding") == true)
        lines.removeLast()
        try (lines.joined(separator: "\n") + "\n").write(toFile: journal, atomically: true, encoding: .utf8)
        #expect(try cut.links() == ["eth0"])

        s = try restarted(from: dir)
        defer { s.stop() }
        #expect(try cut.links() == [], "the ADD cut short is undone")
        #expect(s.pods().map(\.containerID) == ["c-a"])
        #expect(try web.links() == ["eth0"], "the newer sandbox keeps its tap")
        #expect(try web.addresses("eth0") == r.attachments[0].ips!)
        #expect(s.networks().map(\.addressesInUse) == [1])
        _ = try s.cniCheck(
            CNICheckRequest(
                containerID: "c-a",
                netns: web.path,
                ifname: "eth0",
                pod: CNIPod(namespace: "default", name: "web")
            )
        )
    }
}

/// ADDs of different pods at once (a kubelet starting many pods): each is planned, made and
/// committed on its own, so they overlap; none shares an address or a label, and DELs at
/// once leave nothing behind.
@Suite(.serialized) struct CNIConcurrencyTests {
    /// Pods ADDed and DELeted again and again leave the tables as they found them: the
    /// published nexthop table (sized by the highest nexthop id, built again on every change)
    /// stays its size, as the pod's nexthop id is handed out again (issue 18: it grew by one
    /// entry per pod ever attached, and the node's heap with it).
    @Test func podChurnLeavesTheTablesTheirSize() throws {
        let s = try CNIPodTests().service()
        defer { s.stop() }
        _ = try s.applyNetwork(CNIPodTests.nad("left-network", "192.0.2.0/24"))
        let pod = try CNIPodTests.Netns("n")
        func cycle(_ i: Int) throws {
            _ = try CNIPodTests().add(s, "c-n\(i)", pod, pod: "churn", "left-network")
            #expect(
                s.cniDel(CNIDelRequest(containerID: "c-n\(i)", netns: pod.path, ifname: "eth0", pod: CNIPod())).found
            )
        }
        try cycle(0)
        let size = s.publication.current.view.nexthopCount
        let ids = Set(s.nexthops().map(\.id))
        for i in 1...10 { try cycle(i) }
        #expect(s.publication.current.view.nexthopCount == size)
        #expect(Set(s.nexthops().map(\.id)) == ids)
        #expect(try pod.links() == [])
    }

    @Test func podsAddedAndDeletedAtOnceGetDistinctAddressesAndLeaveNothing() throws {
        let s = try CNIPodTests().service()
        defer { s.stop() }
        _ = try s.applyNetwork(CNIPodTests.nad("left-network", "192.0.2.0/24"))
        let n = 8
        let pods = try (0..<n).map { try CNIPodTests.Netns("m\($0)") }
        let paths = pods.map(\.path)
        let results = Mutex<[Int: Result<CNIAddResponse, CNIFailure>]>([:])
        DispatchQueue.concurrentPerform(iterations: n) { i in
            let r = Result { () throws(CNIFailure) -> CNIAddResponse in
                try s.cniAdd(
                    CNIAddRequest(
                        containerID: "c-m\(i)",
                        netns: paths[i],
                        ifname: "eth0",
                        pod: CNIPod(namespace: "default", name: "m\(i)"),
                        networks: [NetworkSelection(name: "left-network", namespace: "default")]
                    )
                )
            }
            results.withLock { $0[i] = r }
        }
        let added = try results.withLock { r in try (0..<n).map { try r[$0]!.get() } }
        let ips = added.flatMap { $0.attachments.flatMap { $0.ips ?? [] } }
        #expect(ips.count == 2 * n && Set(ips).count == 2 * n)
        #expect(Set(s.labels().compactMap(\.label)).count == 2 * n)
        for (i, pod) in pods.enumerated() { #expect(try pod.links() == ["eth0", "net1"], "pod \(i)") }
        DispatchQueue.concurrentPerform(iterations: n) { i in
            _ = s.cniDel(CNIDelRequest(containerID: "c-m\(i)", netns: paths[i], ifname: "eth0", pod: CNIPod()))
        }
        for pod in pods { #expect(try pod.links() == []) }
        #expect(s.networks().allSatisfy { $0.addressesInUse == 0 && $0.pods.isEmpty })
        #expect(s.interfaces().filter { $0.kind == "pod" }.isEmpty && s.labels().isEmpty)
    }
}
