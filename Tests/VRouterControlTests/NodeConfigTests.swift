import Foundation
import Testing
import VRouterCore
import VRouterTestSupport

@testable import VRouterControl

@Suite struct NodeConfigTests {
    static let good = """
        node: { name: n1 }
        flows: { capacity: 1024, idleTimeout: 90s }
        remoteNodes:
          - { name: node-a, address: 198.18.0.2, mac: "02:00:00:00:00:02", encap: vxlan }
          - { name: node-b, address: 198.18.0.3, mac: "02:00:00:00:00:03", encap: mpls-udp }
        vrfs:
          - name: blue
            vni: 1001
            gateway: 192.0.2.1
            gateway6: 2001:db8:1::1
            routes:
              - { prefix: 192.0.2.128/25, via: node-a, vni: 1001 }
              - { prefix: 203.0.113.0/24, ecmp: [ { via: node-a, vni: 1001 }, { via: node-b, label: 300 } ] }
              - { prefix: 2001:db8:1:1::/64, via: node-a, vni: 1001 }
              - { prefix: 198.51.100.0/24, discard: true }
          - name: red
            gateway: 198.51.100.1
        interfaces:
          - { name: fabric0, kind: fabric, address: 198.18.0.1, mac: "02:00:00:00:00:01" }
          - { name: blue-a, kind: pod, vrf: blue, mac: "02:00:00:01:00:0a", ipv4: 192.0.2.10, ipv6: "2001:db8:1::a", label: 16 }
          - { name: red-a, kind: pod, vrf: red, mac: "02:00:00:02:00:0a", ipv4: 198.51.100.10 }
        """

    @Test func aGoodConfigCompilesToTables() throws {
        let c = try NodeConfig.parse(Self.good)
        #expect(c.name == "n1")
        #expect(c.flowCapacity == 1024)
        #expect(c.flowCapacity6 == nil)  // as many as IPv4
        #expect(try NodeConfig.parse("flows: { capacity: 4096, capacity6: 512 }").flowCapacity6 == 512)
        #expect(c.flowIdleTimeout == 90)
        #expect(c.interfaces.count == 3)
        var compiled = try c.makeTables()
        #expect(compiled.portIDs["blue-a"] == 1)
        #expect(compiled.vrfIDs["red"] == 2)
        // pods' /32 and /128, gateways, and the four configured routes.
        #expect(compiled.routeCount == 3 + 3 + 4)
        let tables = compiled.builder.build()
        let view = tables.view
        let blue = view.vrfs[1]
        let r = blue.v4.lookup(IPv4Address(203, 0, 113, 9).value)
        #expect(r != LPM.miss)
        #expect(view.nexthops[Int(view.results[Int(r)].nexthop)].kind == .composite)
        #expect(view.labelTarget(16) != ForwardingView.noNexthop)
        #expect(view.vnis.lookup(1001) == 1)
    }

    /// The port layer's settings: multishot tap reads and yields before sleeping, with
    /// their defaults, kept by the snapshot, bad values refused.
    @Test func ioSettingsHaveDefaultsAndSurviveTheSnapshot() throws {
        let d = try NodeConfig.parse(Self.good)
        #expect(!d.multishotReads && d.idleYields == 0)
        let c = try NodeConfig.parse("io: { multishotReads: true, idleYields: 4 }\n" + Self.good)
        #expect(c.multishotReads && c.idleYields == 4)
        let again = try NodeConfig.parse(c.yaml(routeFiles: [], journalSequence: 1))
        #expect(again.multishotReads && again.idleYields == 4)
        Self.refused("io: { idleYields: 5000 }", "outside 0...1024")
        Self.refused("io: { multishot: true }", "multishot")
    }

    /// Offloads are on unless a port says otherwise; only ports with a device (a tap, a
    /// fabric NIC) take superframes; the snapshot keeps both settings.
    @Test func offloadsArePerPortAndSurviveTheSnapshot() throws {
        let c = try NodeConfig.parse(
            "pool: { bigBuffers: 128 }\n" + Self.good
                + "\n  - { name: blue-b, kind: pod, vrf: blue, mac: \"02:00:00:01:00:0b\", offloads: false, tap: { name: tb } }"
                + "\n  - { name: blue-c, kind: pod, vrf: blue, mac: \"02:00:00:01:00:0c\", tap: { name: tc } }"
        )
        #expect(c.bigBuffers == 128)
        #expect(c.interfaces.map(\.offloads) == [true, true, true, false, true])
        var compiled = try c.makeTables()
        let tables = compiled.builder.build()
        let ids = compiled.portIDs
        func takes(_ name: String) -> Bool { tables.view.ports[Int(ids[name]!)].flags.contains(PortFlags.offloads) }
        #expect(!takes("blue-a"), "no device: a modelled port never takes superframes")
        #expect(!takes("blue-b") && takes("blue-c"))
        let again = try NodeConfig.parse(c.yaml(routeFiles: [], journalSequence: 1))
        #expect(again.bigBuffers == 128)
        #expect(again.interfaces.map(\.offloads) == c.interfaces.map(\.offloads))
        Self.refused("pool: { bigBuffers: -1 }", "outside 0...65535")
        Self.refused(
            "vrfs: [ { name: a } ]\ninterfaces: [ { name: p, kind: pod, vrf: a, mac: \"02:00:00:00:00:01\", offloads: maybe } ]",
            "'maybe' is not true or false"
        )
    }

    @Test(arguments: [
        (
            "vrfs: [ { name: a } ]\ninterfaces: [ { name: p, kind: pod, vrf: b, mac: \"02:00:00:00:00:01\" } ]",
            "no VRF named 'b'"
        ),
        ("vrfs: [ { name: a, routes: [ { prefix: 192.0.2.1/24, discard: true } ] } ]", "not a prefix"),
        (
            "vrfs: [ { name: a, routes: [ { prefix: 192.0.2.0/24, via: nowhere, vni: 5 } ] } ]",
            "no remote node named 'nowhere'"
        ),
        ("vrfs: [ { name: a, colour: red } ]", "unknown key 'colour'"),
        ("interfaces: [ { name: f, kind: fabric, mac: \"02:00:00:00:00:01\" } ]", "needs the node's underlay address"),
        ("interfaces: [ { name: f, kind: pod, mac: \"zz:00:00:00:00:01\", vrf: a } ]", "not a MAC address"),
        ("vrfs: [ { name: a }, { name: a } ]", "duplicate VRF 'a'"),
        ("workers: 0", "outside 1...64"),
        ("flows: { idleTimeout: soon }", "not a duration"),
        ("flows: { capacity6: 8 }", "outside 16..."),
        ("vrfs: [ { name: a, routes: [ { prefix: 192.0.2.0/24 } ] } ]", "exactly one of"),
        (
            "vrfs: [ { name: a } ]\ninterfaces:\n  - { name: p, kind: pod, vrf: a, mac: \"02:00:00:00:00:01\", ipv4: 192.0.2.5 }\n  - { name: q, kind: pod, vrf: a, mac: \"02:00:00:00:00:02\", ipv4: 192.0.2.5 }",
            "both have address 192.0.2.5"
        ),
        ("key: [unclosed", "not valid YAML"),
        (
            "vrfs: [ { name: a, gateway: 192.0.2.1 } ]\ninterfaces:\n  - { name: p, kind: pod, vrf: a, mac: \"02:00:00:00:00:01\", ipv4: 192.0.2.1/24 }",
            "the gateway of VRF a"
        ),
        (
            "vrfs: [ { name: a } ]\ninterfaces:\n  - { name: p, kind: pod, vrf: a, mac: \"02:00:00:00:00:01\", tap: { name: t1 } }\n  - { name: q, kind: pod, vrf: a, mac: \"02:00:00:00:00:02\", tap: { name: t1 } }",
            "both use tap name 't1'"
        ),
        (
            "vrfs: [ { name: a } ]\ninterfaces:\n  - { name: p, kind: pod, vrf: a, mac: \"02:00:00:00:00:01\", tap: { name: t1, netns: pod, ifname: eth0 } }\n  - { name: q, kind: pod, vrf: a, mac: \"02:00:00:00:00:02\", tap: { name: t2, netns: pod, ifname: eth0 } }",
            "both 'eth0' in network namespace 'pod'"
        ),
    ])
    func badConfigsNameTheProblem(yaml: String, expected: String) {
        Self.refused(yaml, expected)
    }

    static let clusterFabric =
        "interfaces: [ { name: f, kind: fabric, address: 198.18.0.1/24, mac: \"02:00:00:00:00:01\" } ]\n"

    /// Cluster mode: parsed, written back by the state snapshot as read, and every bad value
    /// refused with its place named.
    @Test func clusterModeIsParsedWrittenBackAndCheckedClearly() throws {
        let yaml =
            Self.clusterFabric
            + "cluster: { etcd: { endpoints: [http://127.0.0.1:12379, \"http://[::1]:22379\"], prefix: /vrt/c1, leaseTTL: 5s }, blocks: 8, encap: vxlan }"
        let c = try NodeConfig.parse(yaml)
        let want = NodeConfig.Cluster(
            endpoints: ["http://127.0.0.1:12379", "http://[::1]:22379"],
            prefix: "/vrt/c1",
            leaseTTL: 5,
            blocks: 8,
            encap: .vxlan
        )
        #expect(c.cluster == want)
        #expect(try NodeConfig.parse(c.yaml(routeFiles: [], journalSequence: 0)).cluster == want)
        #expect(try NodeConfig.parse(Self.clusterFabric).cluster == nil)

        for (bad, expected) in [
            ("cluster: { }", "cluster needs etcd"),
            ("cluster: { etcd: { prefix: /x } }", "needs endpoints"),
            ("cluster: { etcd: { endpoints: [] } }", "at least one endpoint"),
            ("cluster: { etcd: { endpoints: [127.0.0.1:2379] } }", "not an etcd client URL"),
            ("cluster: { etcd: { endpoints: [http://h:99999] } }", "not an etcd client URL"),
            ("cluster: { etcd: { endpoints: [http://h:1], prefix: vrouter } }", "must be an absolute key path"),
            ("cluster: { etcd: { endpoints: [http://h:1], prefix: /v/ } }", "no trailing /"),
            ("cluster: { etcd: { endpoints: [http://h:1], leaseTTL: 1s } }", "leaseTTL must be whole seconds"),
            ("cluster: { etcd: { endpoints: [http://h:1], leaseTTL: 2.5s } }", "leaseTTL must be whole seconds"),
            ("cluster: { etcd: { endpoints: [http://h:1], tls: { ca: /nonexistent/ca.crt } } }", "cannot read"),
            ("cluster: { etcd: { endpoints: [http://h:1], tls: { } } }", "no endpoint is https"),
            ("cluster: { etcd: { endpoints: [http://h:1] }, encap: gre }", "vxlan or mpls-udp"),
            ("cluster: { etcd: { endpoints: [http://h:1] }, blocks: 0 }", "outside 1...4096"),
            ("cluster: { etcd: { endpoints: [http://h:1], user: x } }", "unknown key 'user'"),
        ] {
            Self.refused(Self.clusterFabric + bad, expected)
        }
        Self.refused("cluster: { etcd: { endpoints: [http://h:1] } }", "needs a fabric interface")
        Self.refused(
            Self.clusterFabric + "ipam: { slice: 1, slices: 2 }\ncluster: { etcd: { endpoints: [http://h:1] } }",
            "exclude each other"
        )
    }

    static func refused(_ yaml: String, _ expected: String) {
        do {
            _ = try NodeConfig.parse(yaml)
            Issue.record("accepted: \(yaml)")
        } catch {
            #expect(error.description.contains(expected), "\(error.description)")
        }
    }

    /// Found by the config fuzzer: a name holding line breaks (a plain scalar over several
    /// lines, or escapes) was written into the snapshot's double quotes as it was, and read
    /// back with each break folded into a space: another node after a restart. Every
    /// character YAML folds or refuses is written as an escape now.
    @Test func snapshotsKeepNamesWithLineBreaksAndControlCharacters() throws {
        let text = #"""
            interfaces:
              - { name: fabric0, kind: fabric, address: 198.18.0.1, mac: "04:00:00:00:00:01" }
            remoteNodes:
              - { name: "a\rb\nc\td\u0085e\u2028f\u2029g\u0001h\u007Fi\uFEFFj\"k\\l  m\r\n", address: 198.18.0.2, encap: vxlan }
            """#
        let parsed = try NodeConfig.parse(text)
        let name = "a\rb\nc\td\u{85}e\u{2028}f\u{2029}g\u{1}h\u{7F}i\u{FEFF}j\"k\\l  m\r\n"
        #expect(parsed.remoteNodes.map(\.name) == [name])
        let written = parsed.yaml(routeFiles: [], journalSequence: 1)
        let reread = try NodeConfig.parse(written)
        #expect(reread.remoteNodes.map(\.name) == [name], "\(written)")
        #expect(reread.yaml(routeFiles: [], journalSequence: 1) == written)
    }

    /// Found by the config fuzzer: the snapshot of a node wrote a relative capture path
    /// resolved against "." ("./in.pcap"), which read back and written again became
    /// "././in.pcap", one more "./" per restart; and a config loaded by a relative path put
    /// paths relative to the working directory into a snapshot that is read back from the
    /// state directory, so they named other files.
    @Test func snapshotsNameCapturesTheSameFilesEveryTime() throws {
        let text = """
            vrfs: [ { name: a } ]
            interfaces:
              - { name: p, kind: pod, vrf: a, mac: "02:00:00:00:00:01", pcap: { in: in.pcap, out: out/p.pcap } }
            """
        let parsed = try NodeConfig.parse(text)
        let written = parsed.yaml(routeFiles: [], journalSequence: 1)
        #expect(written.contains("in: \"in.pcap\", out: \"out/p.pcap\""))
        #expect(try NodeConfig.parse(written).yaml(routeFiles: [], journalSequence: 1) == written)

        let file = Scratch.path("relative.yaml")
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let cwd = FileManager.default.currentDirectoryPath
        let up = String(repeating: "../", count: cwd.split(separator: "/").count)
        let loaded = try NodeConfig.load(path: up + file.dropFirst())
        let dir = (file as NSString).deletingLastPathComponent
        #expect(loaded.resolve("in.pcap") == dir + "/in.pcap")
        #expect(loaded.yaml(routeFiles: [], journalSequence: 1).contains("in: \"\(dir)/in.pcap\""))
    }

    @Test func routeFilesAreParsedAndCheckedLineByLine() throws {
        let path = Scratch.path("routes.txt")
        try "# comment\n198.18.4.0/22 via node-a vni 7\n2001:db8:9::/48 discard\n\n198.18.8.0/24 interface blue-a\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let routes = try NodeConfig.loadRoutes(path, vrf: "blue")
        #expect(routes.count == 3)
        try "198.18.4.0/22 via node-a vni 7\n198.18.4.0/33 discard\n".write(
            toFile: path,
            atomically: true,
            encoding: .utf8
        )
        #expect(throws: ConfigError.self) { try NodeConfig.loadRoutes(path, vrf: "blue") }
        do { _ = try NodeConfig.loadRoutes(path, vrf: "blue") } catch { #expect(error.description.contains(":2:")) }
    }

    static let fabric =
        "  - { name: f, kind: fabric, address: 198.18.0.1/24, mac: \"02:00:00:00:00:01\", gateway: 198.18.0.254 }"

    @Test(arguments: [
        ("snat: { ports: 4000-5000 }\ninterfaces:\n\(fabric)", "overlaps the VXLAN port 4789"),
        ("snat: { ports: 51000-52000 }\ninterfaces:\n\(fabric)", "overlaps Contrail's MPLS-over-UDP port 51234"),
        ("snat: { ports: 9000-8000 }", "is not a port range"),
        ("snat: { ports: 0-100 }", "is not a port range"),
        ("snat: { ports: 20000 }", "is not a port range"),
        ("workers: 4\nsnat: { ports: 20000-20002 }", "fewer ports than workers (4)"),
        ("snat: { ports: 20000-20099 }", "there is no fabric interface with one"),
        ("vrfs: [ { name: a, ipFabricSnat: true } ]\ninterfaces:\n\(fabric)", "needs the node's port range"),
        ("vrfs: [ { name: a, ipFabricSnat: true } ]\nsnat: { ports: 20000-20099 }", "needs a fabric interface"),
        ("vrfs: [ { name: a, ipFabricForwarding: true } ]", "needs a fabric interface"),
        (
            "vrfs: [ { name: a, ipFabricSnat: true, ipFabricForwarding: true } ]\nsnat: { ports: 20000-20099 }\ninterfaces:\n\(fabric)",
            "exclude each other"
        ),
        (
            "defaultNetwork: { name: pods, subnet: 192.0.2.0/24, ipFabricSnat: true }\ninterfaces:\n\(fabric)",
            "defaultNetwork: ipFabricSnat needs the node's port range"
        ),
        (
            "vrfs: [ { name: ip-fabric } ]\nsnat: { ports: 20000-20099 }\ninterfaces:\n\(fabric)",
            "name of the node's underlay VRF"
        ),
    ])
    func badFabricServicesNameTheProblem(yaml: String, expected: String) {
        Self.refused(yaml, expected)
    }

    /// A translated network and a forwarded one: their default routes, the underlay VRF
    /// on the fabric, the forwarded pod reachable in it.
    @Test func fabricServicesCompileToTheUnderlayVRF() throws {
        let c = try NodeConfig.parse(
            """
            snat: { ports: 20000-20099 }
            defaultNetwork: { name: pods, subnet: 192.0.2.0/24, ipFabricSnat: true }
            vrfs: [ { name: purple, gateway: 198.18.1.1, ipFabricForwarding: true } ]
            interfaces:
            \(Self.fabric)
              - { name: p, kind: pod, vrf: purple, mac: "02:00:00:00:00:05", ipv4: 198.18.1.10 }
            """
        )
        #expect(c.snat == NodeConfig.SNATRange(first: 20000, last: 20099))
        var compiled = try c.makeTables()
        let f = try #require(compiled.fabric)
        let tables = compiled.builder.build()
        let view = tables.view
        #expect(view.ports[Int(f.port)].flags.contains(.underlayVRF) && view.ports[Int(f.port)].vrf == f.vrf)
        func route(_ vrf: UInt16, _ a: IPv4Address) -> Nexthop? {
            let r = view.vrfs[Int(vrf)].v4.lookup(a.value)
            return r == LPM.miss ? nil : view.nexthops[Int(view.results[Int(r)].nexthop)]
        }
        let world = IPv4Address(203, 0, 113, 9)
        #expect(route(compiled.vrfIDs["pods"]!, world)?.kind == .sourceNAT)
        #expect(route(compiled.vrfIDs["purple"]!, world)?.kind == .vrfTranslate)
        #expect(route(f.vrf, world)?.kind == .underlay)
        #expect(route(f.vrf, IPv4Address(198, 18, 1, 10))?.kind == .encap)
        #expect(
            route(f.vrf, IPv4Address(192, 0, 2, 10)) == nil
                || route(f.vrf, IPv4Address(192, 0, 2, 10))?.kind == .underlay
        )
        // Written back and read again, the same.
        let again = try NodeConfig.parse(c.yaml(routeFiles: [], journalSequence: 0))
        #expect(again.snat == c.snat)
        #expect(again.defaultNetwork?.ipFabricSnat == true)
        #expect(again.vrfs.first { $0.name == "purple" }?.ipFabricForwarding == true)
    }
}
