import Foundation
import Testing
import VRouterAPI

@testable import VRouterCNI

@Suite struct AnnotationTests {
    @Test func commaFormWithNamespacesAndInterfaces() throws {
        let l = try NetworkAnnotation.parse(
            " left-network, blue-network ,right-network,extns/data-network@data0",
            podNamespace: "default"
        )
        #expect(
            l.map(\.key) == [
                "default/left-network", "default/blue-network", "default/right-network", "extns/data-network",
            ]
        )
        #expect(l.map(\.interface) == [nil, nil, nil, "data0"])
    }

    @Test func jsonListWithEveryKey() throws {
        let text = #"""
            [{"name":"network-a"},
             {"name":"network-b","namespace":"extns","interface":"b0","ips":["198.19.3.7/24"],"mac":"02:00:00:00:00:07",
              "default-route":["198.19.3.254"],"cni-args":{"x":"y"}}]
            """#
        let l = try NetworkAnnotation.parse(text, podNamespace: "team")
        #expect(l.count == 2)
        #expect(l[0].key == "team/network-a")
        #expect(l[1].key == "extns/network-b")
        #expect(l[1].ips == ["198.19.3.7/24"])
        #expect(l[1].mac == "02:00:00:00:00:07")
        #expect(l[1].defaultRoute == ["198.19.3.254"])
        #expect(l[1].cniArgs?["x"] == .string("y"))
    }

    @Test(arguments: [
        ("[{\"name\":\"a\"", "not a valid JSON list"),
        ("[{\"namespace\":\"x\"}]", "missing 'name'"),
        ("Bad_Name", "not a valid network name"),
        ("a,,b", "empty network name"),
        ("a/b/c", "is not NAME"),
        ("a@x@y", "more than one '@'"),
        ("a@net1,b@net1", "requested more than once"),
        ("a@this-name-is-too-long", "too long"),
        ("[{\"name\":\"a\",\"ips\":[\"300.1.2.3\"]}]", "is not an IP address"),
        ("[{\"name\":\"a\",\"mac\":\"01:00:5e:00:00:01\"}]", "not a unicast"),
        (
            "[{\"name\":\"a\",\"default-route\":[\"192.0.2.254\"]},{\"name\":\"b\",\"default-route\":[\"198.51.100.254\"]}]",
            "more than one network asks for default-route"
        ),
    ])
    func badAnnotationsFailNamingTheProblem(_ text: String, _ expected: String) {
        #expect {
            _ = try NetworkAnnotation.parse(text, podNamespace: "default")
        } throws: { e in
            guard let e = e as? CNIError else { return false }
            return e.code == 7 && e.description.contains(expected)
        }
    }

    @Test func emptyAnnotationMeansNoExtraNetworks() throws {
        #expect(try NetworkAnnotation.parse("  ", podNamespace: "default").isEmpty)
    }
}

@Suite struct ProtocolTests {
    @Test func environmentIsCheckedLikeSkel() throws {
        var env = [
            "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0",
            "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;X=a=b", "CNI_PATH": "/a:/b",
        ]
        let e = try CNIEnvironment.read(env)
        #expect(e.podName == "web-0" && e.podNamespace == "default" && e.args["X"] == "a=b" && e.path == ["/a", "/b"])
        env["CNI_IFNAME"] = "a-much-too-long-ifname"
        #expect(throws: CNIError.self) { try CNIEnvironment.read(env) }
        env["CNI_IFNAME"] = "eth0"
        env["CNI_NETNS"] = nil
        #expect { try CNIEnvironment.read(env) } throws: {
            ($0 as? CNIError)?.code == 4 && "\($0)".contains("CNI_NETNS")
        }
        env["CNI_COMMAND"] = "DEL"
        #expect(try CNIEnvironment.read(env).netns == "")
    }

    @Test func resultsAreWrittenInTheRequestsVersion() throws {
        var r = CNIResult(cniVersion: "1.0.0")
        r.interfaces = [CNIResult.Interface(name: "eth0", mac: "02:00:00:00:00:01", sandbox: "/run/netns/p")]
        r.ips = [
            CNIResult.IP(address: "198.19.0.5/24", gateway: "198.19.0.254", interface: 0),
            CNIResult.IP(address: "2001:db8::5/64", interface: 0),
        ]
        let old = r.json(version: "0.4.0")
        #expect(old["cniVersion"] == .string("0.4.0"))
        #expect(old["ips"]?.array?.map { $0["version"] } == [.string("4"), .string("6")])
        let new = r.json(version: "1.1.0")
        #expect(new["ips"]?.array?.allSatisfy { $0["version"] == nil } == true)
        #expect(new["ips"]?.array?.first?["interface"] == .number(0))
        // Round trip.
        #expect(try CNIResult.read(old).ips == r.ips)
    }

    @Test func mergingAResultMovesInterfaceIndexes() throws {
        var r = CNIResult(cniVersion: "1.0.0")
        r.interfaces = [CNIResult.Interface(name: "eth0", sandbox: "/x")]
        var d = CNIResult(cniVersion: "1.0.0")
        d.interfaces = [CNIResult.Interface(name: "br0"), CNIResult.Interface(name: "net1", sandbox: "/x")]
        d.ips = [CNIResult.IP(address: "198.19.32.2/24", gateway: "198.19.32.1", interface: 1)]
        d.routes = [CNIResult.Route(dst: "0.0.0.0/0", gw: "198.19.32.1"), CNIResult.Route(dst: "203.0.113.0/24")]
        r.append(d, keepDefaultRoutes: false)
        #expect(r.ips.first?.interface == 2)
        #expect(r.routes.map(\.dst) == ["203.0.113.0/24"])
        #expect(d.sandboxInterface?.0.name == "net1")
    }

    @Test func versionAndBadConfigs() {
        let p = CNIPlugin(transport: { _ in FakeTransport { _, _, _ in (500, Data()) } })
        let (rc, out) = p.main(environment: ["CNI_COMMAND": "VERSION"], stdin: Data(#"{"cniVersion":"0.4.0"}"#.utf8))
        #expect(rc == 0)
        let v = try? JSONValue.parse(out)
        #expect(v?["cniVersion"] == .string("0.4.0"))
        #expect(v?["supportedVersions"]?.array?.contains(.string("1.1.0")) == true)
        // No config at all (`CNI_COMMAND=VERSION plugin </dev/null`), as the reference plugins allow.
        let (rc2, out2) = p.main(environment: ["CNI_COMMAND": "VERSION"], stdin: Data("\n".utf8))
        #expect(rc2 == 0)
        #expect((try? JSONValue.parse(out2))?["cniVersion"] == .string("1.1.0"))
        // Garbage is still an error naming the problem.
        let (rc3, _) = p.main(environment: ["CNI_COMMAND": "VERSION"], stdin: Data("{".utf8))
        #expect(rc3 == 1)
        let env = ["CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"]
        func code(_ stdin: String) -> Int? {
            let (rc, out) = p.main(environment: env, stdin: Data(stdin.utf8))
            guard rc == 1 else { return nil }
            return (try? JSONDecoder().decode(CNIError.self, from: out))?.code
        }
        #expect(code(#"{"cniVersion":"1.0.0","name":"x""#) == 6)
        #expect(code(#"{"cniVersion":"1.0.0","type":"vrouter-cni"}"#) == 7)
        #expect(code(#"{"cniVersion":"0.2.0","name":"x"}"#) == 1)
    }
}

struct FakeTransport: VRouterTransport {
    let answer: @Sendable (String, String, Data?) -> (Int, Data)
    init(_ answer: @escaping @Sendable (String, String, Data?) -> (Int, Data)) { self.answer = answer }
    func request(_ method: String, _ path: String, body: Data?) throws(TransportError) -> (status: Int, body: Data) {
        let (s, b) = answer(method, path, body)
        if s == 0 { throw TransportError("down", notSent: true) }
        return (s, b)
    }
}
