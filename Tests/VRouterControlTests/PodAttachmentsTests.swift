import Testing
import VRouterAPI
import VRouterCore

@testable import VRouterControl

/// The attachments part alone (no root, no devices): plans reserve what they use, a
/// failing plan and an aborted one leave nothing held, concurrent plans never share an
/// address, and a replaced sandbox hands its addresses on.
@Suite struct PodAttachmentsTests {
    static let dn = NodeConfig.DefaultNetwork(
        name: "cluster",
        subnet4: IPv4Prefix("198.19.0.0/29"),
        gateway4: IPv4Address(198, 19, 0, 6)
    )

    static func attachments() throws -> PodAttachments {
        var a = PodAttachments()
        a.pools["cluster"] = NodeService.defaultPools(dn, NodeConfig())
        let nad = NetworkAttachmentDefinition(
            metadata: .init(name: "left", annotations: ["opencontrail.org/cidr": "192.0.2.0/24,2001:db8:1::/64"])
        )
        let rec = try NetworkRecord(validating: nad)
        a.finishApply(rec, pools: try LocalStore(slice: 0, slices: 1).pools(for: rec))
        return a
    }

    static func request(_ cid: String, pod: String, uid: String? = nil) -> CNIAddRequest {
        CNIAddRequest(
            containerID: cid,
            netns: "/run/netns/\(cid)",
            ifname: "eth0",
            pod: CNIPod(namespace: "default", name: pod, uid: uid),
            networks: []
        )
    }

    static func plan(
        _ a: inout PodAttachments,
        _ cid: String,
        pod: String,
        _ annotation: String = "left"
    ) throws -> PodPlan {
        let sel = try NetworkAnnotation.parse(annotation, podNamespace: "default")
        return try a.planAdd(request(cid, pod: pod), selections: sel, existing: ["lo"], defaultNetwork: dn)
    }

    @Test func aPlanReservesEverythingAndAbortReleasesIt() throws {
        var a = try Self.attachments()
        let p = try Self.plan(&a, "c1", pod: "web")
        #expect(p.attachments.map(\.ifname) == ["eth0", "net1"])
        #expect(p.attachments[0].ipv4?.description == "198.19.0.1/29")
        #expect(p.attachments[1].ipv4?.prefixLength == 24 && p.attachments[1].ipv6?.prefixLength == 64)
        #expect(p.attachments[1].gateway4 == IPv4Address(192, 0, 2, 254))
        #expect(p.attachments.allSatisfy { $0.interface != nil && $0.tap != nil && $0.mac != nil })
        #expect(a.users(of: "default/left") == ["default/web"], "a pod being added uses its networks")
        #expect(a.pools["default/left"]?.inUse == 2)
        // The same container again, or the same pod from another container, waits its turn.
        #expect(throws: CNIFailure.self) { try Self.plan(&a, "c1", pod: "web") }
        #expect(throws: CNIFailure.self) { try Self.plan(&a, "c2", pod: "web") }
        a.abortAdd(p)
        #expect(a.pools["default/left"]?.inUse == 0 && a.pools["cluster"]?.inUse == 0)
        #expect(a.adding.isEmpty && a.users(of: "default/left").isEmpty)
    }

    @Test func concurrentPlansNeverShareAnAddressAndAFullPoolFailsWhole() throws {
        var a = try Self.attachments()
        // The default network's /29 has five addresses besides its gateway.
        var plans: [PodPlan] = []
        for i in 0..<5 { plans.append(try Self.plan(&a, "c\(i)", pod: "p\(i)")) }
        let addresses = plans.map { $0.attachments[0].ipv4!.address }
        #expect(Set(addresses).count == 5)
        let left = a.pools["default/left"]!.inUse
        #expect { try Self.plan(&a, "c5", pod: "p5") } throws: {
            ($0 as? CNIFailure)?.message.contains("no free address left") == true
        }
        #expect(a.pools["default/left"]!.inUse == left, "the failed plan released what it had reserved")
        #expect(a.adding.count == 5)
    }

    @Test func requestedAddressesAreCheckedAndAReplacedSandboxHandsItsOwnOn() throws {
        var a = try Self.attachments()
        let p = try Self.plan(&a, "c1", pod: "db", #"[{"name":"left","ips":["192.0.2.7/24"]}]"#)
        let rec = a.commitAdd(p, labels: [16, 17])
        #expect(rec.attachments[1].ipv4?.description == "192.0.2.7/24")
        #expect(rec.attachments.map(\.label) == [16, 17])
        // Another pod may not have it.
        #expect { try Self.plan(&a, "c2", pod: "other", #"[{"name":"left","ips":["192.0.2.7"]}]"#) } throws: {
            ($0 as? CNIFailure)?.message.contains("taken by another pod") == true
        }
        // A new sandbox of the same pod gets it, and the old one's default address.
        let again = try Self.plan(&a, "c3", pod: "db", #"[{"name":"left","ips":["192.0.2.7"]}]"#)
        #expect(again.replacing?.containerID == "c1")
        #expect(again.attachments[1].ipv4 == rec.attachments[1].ipv4)
        #expect(again.attachments[0].ipv4 == rec.attachments[0].ipv4)
        #expect(again.previousLabels == [16, 17])
        #expect(a.finishReplacing(again) != nil)
        #expect(a.pods["c1"] == nil)
        _ = a.commitAdd(again, labels: [16, 17])
        #expect(a.pools["default/left"]!.inUse == 2, "192.0.2.7 and the IPv6 address, once each")
        // Released: every address comes back.
        #expect(try a.beginRelease("c3")?.vifs.count == 2)
        _ = a.finishRelease("c3", forget: false)
        #expect(a.pods["c3"] == nil)
        #expect(a.pools["default/left"]!.inUse == 0 && a.pools["cluster"]!.inUse == 0)
    }
}
