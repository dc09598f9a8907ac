import Foundation
import Synchronization
import Testing
import VRouterAPI

@testable import VRouterCNI

/// The shim's side of ADD and DEL against an in-process vrouterd stand-in.
@Suite struct ShimTests {
    static let env = [
        "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/p", "CNI_IFNAME": "eth0",
        "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0", "CNI_PATH": "/nonexistent",
    ]
    static func conf(_ version: String, _ annotation: String) -> Data {
        Data(
            #"{"cniVersion":"\#(version)","name":"vrouter","type":"vrouter-cni","stateDir":"\#(FileManager.default.temporaryDirectory.path)/vrt-shim-test","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"k8s.v1.cni.cncf.io/networks":"\#(annotation)"}}}"#
                .utf8
        )
    }

    @Test func addBuildsTheResultFromEveryAttachment() throws {
        let seen = Mutex<[String]>([])
        let p = CNIPlugin(transport: { _ in
            FakeTransport { method, path, body in
                seen.withLock { $0.append(path) }
                let req = try! JSONDecoder().decode(CNIAddRequest.self, from: body!)
                #expect(req.networks.map(\.key) == ["default/left-network"] && req.pod.key == "default/web-0")
                var a0 = CNIAttachment(network: "cluster", ifname: "eth0", isDefault: true)
                a0.mac = "02:00:00:00:00:01"
                a0.ips = ["198.19.0.5/24"]
                a0.gateways = ["198.19.0.254"]
                a0.routes = [CNIResult.Route(dst: "0.0.0.0/0", gw: "198.19.0.254")]
                var a1 = CNIAttachment(network: "default/left-network", ifname: "net1", isDefault: false)
                a1.mac = "02:00:00:00:00:02"
                a1.ips = ["192.0.2.5/24", "2001:db8:1::5/64"]
                a1.gateways = ["192.0.2.254", "2001:db8:1::fffe"]
                return (200, try! JSONEncoder().encode(CNIAddResponse(attachments: [a0, a1])))
            }
        })
        let (rc, out) = p.main(environment: Self.env, stdin: Self.conf("0.4.0", "left-network"))
        #expect(rc == 0, "\(String(decoding: out, as: UTF8.self))")
        let r = try CNIResult.read(JSONValue.parse(out))
        #expect(r.cniVersion == "0.4.0")
        #expect(
            r.interfaces.map(\.name) == ["eth0", "net1"] && r.interfaces.allSatisfy { $0.sandbox == "/run/netns/p" }
        )
        #expect(r.ips.map(\.interface) == [0, 1, 1])
        #expect(r.ips.map(\.gateway) == ["198.19.0.254", "192.0.2.254", "2001:db8:1::fffe"])
        #expect(r.routes == [CNIResult.Route(dst: "0.0.0.0/0", gw: "198.19.0.254")])
        #expect(
            try JSONValue.parse(out)["ips"]?.array?.map { $0["version"] } == [.string("4"), .string("4"), .string("6")]
        )
        #expect(seen.withLock { $0 } == ["/v1/cni/add"])
    }

    @Test func vrouterdErrorsBecomeCNIErrorsWithTheirCodes() throws {
        let p = CNIPlugin(transport: { _ in
            FakeTransport { _, _, _ in
                (404, try! JSONEncoder().encode(CNIErrorBody(error: "network default/x is not known", cniCode: 100)))
            }
        })
        let (rc, out) = p.main(environment: Self.env, stdin: Self.conf("1.0.0", "x"))
        let e = try JSONDecoder().decode(CNIError.self, from: out)
        #expect(rc == 1 && e.code == 100 && e.msg.contains("default/x") && e.cniVersion == "1.0.0")
        let down = CNIPlugin(transport: { _ in FakeTransport { _, _, _ in (0, Data()) } })
        let (rc2, out2) = down.main(environment: Self.env, stdin: Self.conf("1.0.0", ""))
        let e2 = try JSONDecoder().decode(CNIError.self, from: out2)
        #expect(rc2 == 1 && e2.code == 11)
        // A bad annotation never reaches vrouterd.
        let (rc3, out3) = down.main(environment: Self.env, stdin: Self.conf("1.0.0", "a,,b"))
        let e3 = try JSONDecoder().decode(CNIError.self, from: out3)
        #expect(rc3 == 1 && e3.code == 7)
    }

    @Test func delegatesFailingUndoTheAttachment() throws {
        let paths = Mutex<[String]>([])
        let p = CNIPlugin(transport: { _ in
            FakeTransport { _, path, _ in
                paths.withLock { $0.append(path) }
                if path == "/v1/cni/add" {
                    var d = CNIAttachment(network: "default/br", ifname: "net1", isDefault: false)
                    d.delegate = CNIDelegate(
                        config: .object(
                            JSONObject([
                                ("cniVersion", .string("1.0.0")), ("name", .string("br")),
                                ("type", .string("vrt-missing")),
                            ])
                        )
                    )
                    return (
                        200,
                        try! JSONEncoder().encode(
                            CNIAddResponse(attachments: [
                                CNIAttachment(network: "cluster", ifname: "eth0", isDefault: true), d,
                            ])
                        )
                    )
                }
                return (200, try! JSONEncoder().encode(CNIDelegatesResponse(found: true, delegates: [])))
            }
        })
        let (rc, out) = p.main(environment: Self.env, stdin: Self.conf("1.0.0", "br"))
        let e = try JSONDecoder().decode(CNIError.self, from: out)
        #expect(rc == 1 && e.msg.contains("vrt-missing"))
        #expect(paths.withLock { $0 } == ["/v1/cni/add", "/v1/cni/del"], "vrouterd's part is released")
    }

    @Test func aPrevResultThatDoesNotReadFailsBeforeAnythingIsMade() throws {
        let paths = Mutex<[String]>([])
        let p = CNIPlugin(transport: { _ in
            FakeTransport { _, path, _ in
                paths.withLock { $0.append(path) }
                let a = CNIAttachment(network: "cluster", ifname: "eth0", isDefault: true)
                return (200, try! JSONEncoder().encode(CNIAddResponse(attachments: [a])))
            }
        })
        var conf = try JSONValue.parse(Self.conf("1.0.0", "")).object!
        conf["prevResult"] = try JSONValue.parse(Data(#"{"cniVersion":"1.0.0","ips":[{"gateway":"192.0.2.1"}]}"#.utf8))
        let (rc, out) = p.main(environment: Self.env, stdin: JSONValue.object(conf).encoded())
        let e = try JSONDecoder().decode(CNIError.self, from: out)
        #expect(rc == 1 && e.msg.contains("no address"), "\(e.msg)")
        #expect(paths.withLock { $0 }.isEmpty, "nothing asked of vrouterd, so nothing to undo")
        // Numbers out of range in a result are left out, not a crash.
        let big = try CNIResult.read(
            JSONValue.parse(
                Data(
                    #"{"interfaces":[{"name":"a","mtu":1e300}],"ips":[{"address":"192.0.2.5/24","interface":1e19}]}"#
                        .utf8
                )
            )
        )
        #expect(big.interfaces.first?.mtu == nil && big.ips.first?.interface == nil)
    }
}
