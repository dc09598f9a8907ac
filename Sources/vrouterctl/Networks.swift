// vrouterctl's Kubernetes side: `apply -f` / `delete -f` for NetworkAttachmentDefinition
// manifests (kubectl's verbs and output), `delete network NS/NAME`, and the network and
// pod views (network-status as the CNI shim recorded it).

import ArgumentParser
import VRouterAPI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// "NS/NAME" or "NAME" (namespace default).
func namespaced(_ s: String) -> (String, String) {
    let parts = s.split(separator: "/", maxSplits: 1).map(String.init)
    return parts.count == 2 ? (parts[0], parts[1]) : ("default", s)
}

/// The NADs of manifest files (- for stdin), read by vrouterd (POST /v1/manifests) as kubectl
/// reads them.
func readManifests(_ files: [String], _ client: ControlClient) -> [NetworkAttachmentDefinition] {
    var out: [NetworkAttachmentDefinition] = []
    for f in files {
        let text: [UInt8]
        do { text = try readAll(f == "-" ? nil : f) } catch { fail("\(f): cannot read: \(error.description)") }
        do {
            out += try client.call(
                "POST",
                "/v1/manifests?file=\(ControlClient.query(f))",
                body: Data(text),
                contentType: "application/yaml",
                as: [NetworkAttachmentDefinition].self
            )
        } catch { fail(error.description) }
    }
    if out.isEmpty { fail("no NetworkAttachmentDefinition in \(files.joined(separator: ", "))") }
    return out
}

struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply NetworkAttachmentDefinition manifests (k8s.cni.cncf.io/v1), as kubectl apply does."
    )
    @OptionGroup var global: Global
    @Option(name: .shortAndLong, help: "Manifest file (YAML, several documents allowed; - for stdin). Repeatable.")
    var filename: [String]
    func run() {
        var results: [NetworkApplyResult] = []
        for nad in readManifests(filename, global.client) {
            do {
                results.append(try global.client.send("POST", "/v1/networks", nad, as: NetworkApplyResult.self))
            } catch {
                fail("network \(nad.metadata.namespace ?? "default")/\(nad.metadata.name): \(error.description)")
            }
        }
        if global.json {
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            writeOut((try? e.encode(results)) ?? Data())
            print()
            return
        }
        for r in results { print("networkattachmentdefinition.k8s.cni.cncf.io/\(r.network) \(r.action)") }
    }
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete networks: those of manifests (-f) or one by name (delete network NS/NAME).",
        discussion: "A network that pods use is not deleted (the pods are named) unless --force."
    )
    @OptionGroup var global: Global
    @Option(name: .shortAndLong, help: "Manifest file whose networks to delete. Repeatable.") var filename: [String] =
        []
    @Flag(help: "Delete even while pods use the network (their interfaces on it are removed).") var force = false
    @Argument(help: "network NS/NAME") var what: [String] = []
    func validate() throws {
        if filename.isEmpty {
            guard what.count == 2,
                ["network", "networks", "net-attach-def", "network-attachment-definition"].contains(what[0])
            else {
                throw ValidationError("give -f FILE or: network NAMESPACE/NAME")
            }
        } else if !what.isEmpty {
            throw ValidationError("give either -f FILE or network NAMESPACE/NAME, not both")
        }
    }
    func run() {
        var targets: [(String, String)] = []
        if filename.isEmpty {
            targets = [namespaced(what[1])]
        } else {
            targets = readManifests(filename, global.client).map {
                ($0.metadata.namespace ?? "default", $0.metadata.name)
            }
        }
        for (ns, name) in targets {
            let q = force ? "?force=true" : ""
            do { _ = try global.client.raw("DELETE", "/v1/networks/\(seg(ns))/\(seg(name))\(q)") } catch {
                fail("network \(ns)/\(name): \(error.description)")
            }
            if !global.json { print("networkattachmentdefinition.k8s.cni.cncf.io/\(ns)/\(name) deleted") }
        }
    }
}

struct NetworkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "network",
        abstract: "Networks: the default network and the applied NADs.",
        subcommands: [List.self, Show.self]
    )

    static func row(_ n: NetworkInfo) -> [String] {
        let r = n.network
        let subnet = [r.subnet, r.subnet6].compactMap { $0 }.joined(separator: ",")
        return [
            n.isDefault ? "\(r.name) (default)" : r.key, r.kind.rawValue,
            r.kind == .vrouter ? (subnet.isEmpty ? "-" : subnet) : r.pluginType,
            opt(r.gateway), opt(r.vrf), opt(r.vni), r.ipFabricForwarding ? "forwarding" : r.ipFabricSnat ? "snat" : "-",
            "\(n.pods.count)", "\(n.addressesInUse)", opt(n.addressesFree),
        ]
    }
    static let headers = [
        "NETWORK", "KIND", "SUBNET/PLUGIN", "GATEWAY", "VRF", "VNI", "FABRIC", "PODS", "IPS-IN-USE", "IPS-FREE",
    ]

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List networks with their use.")
        @OptionGroup var global: Global
        func run() {
            global.show("/v1/networks", as: [NetworkInfo].self) { nets in
                table(NetworkCommand.headers, nets.map(NetworkCommand.row))
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One network: its definition, flags and pods.")
        @OptionGroup var global: Global
        @Argument(help: "NAMESPACE/NAME (or the default network's name).") var name: String
        func run() {
            let (ns, n) = name.contains("/") ? namespaced(name) : ("-", name)
            global.show("/v1/networks/\(seg(ns))/\(seg(n))", as: NetworkInfo.self) { info in
                let r = info.network
                var rows: [(String, String)] = [
                    ("network", info.isDefault ? r.name : r.key), ("kind", r.kind.rawValue),
                    ("plugin", r.pluginType.isEmpty ? "-" : r.pluginType),
                ]
                if r.kind == .vrouter {
                    rows += [
                        ("subnet", opt(r.subnet)), ("gateway", opt(r.gateway)), ("subnet6", opt(r.subnet6)),
                        ("gateway6", opt(r.gateway6)),
                        ("vrf", opt(r.vrf)), ("vni", opt(r.vni)), ("ip_fabric_forwarding", "\(r.ipFabricForwarding)"),
                        ("ip_fabric_snat", "\(r.ipFabricSnat)"), ("addresses in use", "\(info.addressesInUse)"),
                        ("addresses free", opt(info.addressesFree)),
                    ]
                } else if let c = r.config {
                    rows.append(("config", String(decoding: c.encoded(), as: UTF8.self)))
                }
                rows.append(("pods", info.pods.isEmpty ? "-" : info.pods.joined(separator: ", ")))
                let w = rows.map(\.0.count).max() ?? 0
                for (k, v) in rows { print(k + ":" + String(repeating: " ", count: w - k.count + 1) + v) }
            }
        }
    }
}

struct PodCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pod",
        abstract: "Pods attached through vrouter-cni, with their network-status.",
        subcommands: [List.self, Show.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List attached pods.")
        @OptionGroup var global: Global
        func run() {
            global.show("/v1/pods", as: [PodInfo].self) { pods in
                table(
                    ["POD", "CONTAINER", "NETNS", "INTERFACES"],
                    pods.map { p in
                        [
                            p.name.map { "\(p.namespace ?? "default")/\($0)" } ?? "-", String(p.containerID.prefix(16)),
                            p.netns,
                            p.networkStatus.map { "\($0.interface ?? "?")=\($0.name)" }.joined(separator: " "),
                        ]
                    }
                )
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A pod's k8s.v1.cni.cncf.io/network-status (multi-net spec form) and interfaces."
        )
        @OptionGroup var global: Global
        @Argument(help: "NAMESPACE/NAME") var name: String
        func run() {
            let (ns, n) = namespaced(name)
            global.show("/v1/pods/\(seg(ns))/\(seg(n))", as: PodInfo.self) { p in
                print("pod:       \(ns)/\(n)\(p.uid.map { " (uid \($0))" } ?? "")")
                print("container: \(p.containerID)")
                print("netns:     \(p.netns)")
                print("")
                table(
                    ["INTERFACE", "NETWORK", "IPS", "MAC", "DEFAULT"],
                    p.networkStatus.map { s in
                        [
                            opt(s.interface), s.name, (s.ips ?? []).joined(separator: ","), opt(s.mac),
                            s.default ? "yes" : "",
                        ]
                    }
                )
                if let itfs = p.interfaces, !itfs.isEmpty {
                    print("")
                    table(
                        ["IFNAME", "NETWORK", "VIF", "VRF", "LABEL", "TAP"],
                        itfs.map {
                            [
                                $0.ifname, $0.network, $0.interface, opt($0.vrf), $0.label.map { "\($0)" } ?? "-",
                                opt($0.tap),
                            ]
                        }
                    )
                }
                print("")
                print("annotations:")
                for (k, v) in p.annotations.sorted(by: { $0.key < $1.key }) { print("  \(k): '\(v)'") }
            }
        }
    }
}
