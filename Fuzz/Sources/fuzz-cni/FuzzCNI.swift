// The CNI plugin as a runtime runs it: the network config on stdin, CNI_ARGS and the pod's
// network annotation through CNIPlugin.main, talking to a running node through the control
// API in-process (ControlAPI.handle: the same handlers as over the socket). The node has
// the default network, a vRouter network default/net1 and a delegated one default/dnet
// (type bridge); CNI_PATH is an empty directory, so a delegation fails as it does when a
// plugin is missing, and the shim must undo the rest.
//
// Input: a command byte (ADD, DEL, CHECK, VERSION, STATUS, GC, by value mod 6), then fields
// separated by NUL bytes: stdin, CNI_ARGS, the k8s.v1.cni.cncf.io/networks annotation
// (set in the config's runtimeConfig pod annotations when stdin is a JSON object and the
// field is there), CNI_CONTAINERID (default c1), CNI_IFNAME (default eth0).
//
// Checked: never a crash; exit 0 with stdout a JSON object (for ADD a result with the
// config's cniVersion), or exit 1 with a CNI error object (a code and a message). A failed
// ADD leaves the node and the pod's namespace as they were; a successful ADD is undone by
// the DEL that follows it (the same stdin and environment): the node's lists as before,
// no link left in the pod's namespace or the node's.
//
// The node lives in namespaces of the target's own (FuzzNode; root needed). An input whose
// config puts the shim's stateDir outside the target's private /var/lib/cni or /dev/shm is
// skipped.

import Foundation
import FuzzNode
import FuzzSupport
import VRouterAPI
import VRouterCNI
import VRouterControl
import VRouterIO

let commands: [CNICommand] = [.add, .del, .check, .version, .status, .gc]
let emptyPath = "/dev/shm/vrt-fuzz-cni-path"

@_cdecl("LLVMFuzzerInitialize")
public func fuzzCNIInitialize(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    isolate()
    return 0
}

/// The shim's requests, answered by the node's API in-process.
struct InProcess: VRouterTransport {
    let api: ControlAPI
    func request(_ method: String, _ path: String, body: Data?) throws(TransportError) -> (status: Int, body: Data) {
        let r = api.handle(APIRequest(method: method, uri: path, body: body ?? Data()))
        return (r.status, r.body)
    }
}

func apply(_ api: ControlAPI, _ nad: String) {
    let r = api.handle(APIRequest(method: "POST", path: "/v1/networks", body: Data(nad.utf8)))
    require(r.status == 201, "applying a network: \(r.status) \(String(decoding: r.body, as: UTF8.self))")
}

/// Whether the shim's notes would go somewhere only the target sees.
func confinedStateDir(_ stdin: Data, _ command: CNICommand) -> Bool {
    guard let config = try? PluginConfig.parse(stdin, command: command) else { return true }
    let dir = config.stateDir
    return (dir.hasPrefix("/var/lib/cni/") || dir.hasPrefix("/dev/shm/")) && !dir.contains("/..")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCNI(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let all = UnsafeRawBufferPointer(start: data, count: size)
    let command = commands[Int(all[0]) % commands.count]
    let fields = all[1...].split(separator: 0, omittingEmptySubsequences: false).map { Data($0) }
    func field(_ i: Int) -> String? { i < fields.count ? String(decoding: fields[i], as: UTF8.self) : nil }
    var stdin = fields.first ?? Data()
    if let annotation = field(2), var config = try? JSONValue.parse(stdin), case .object(var o) = config {
        var runtime = o["runtimeConfig"]?.object ?? JSONObject()
        var annotations = runtime[NetworkAnnotation.podAnnotationsCapability]?.object ?? JSONObject()
        annotations[NetworkAnnotation.networksKey] = .string(annotation)
        runtime[NetworkAnnotation.podAnnotationsCapability] = .object(annotations)
        o["runtimeConfig"] = .object(runtime)
        config = .object(o)
        stdin = config.encoded()
    }
    guard confinedStateDir(stdin, command) else { return 0 }
    var env = [
        "CNI_COMMAND": command.rawValue, "CNI_CONTAINERID": field(3) ?? "c1", "CNI_IFNAME": field(4) ?? "eth0",
        "CNI_NETNS": NetworkNamespace.named(podNetns).path, "CNI_PATH": emptyPath,
    ]
    if let args = field(1) { env["CNI_ARGS"] = args }

    renewWorld()
    mkdir(emptyPath, 0o755)
    let service = startNode()
    defer { service.stop() }
    let api = ControlAPI(service: service)
    apply(
        api,
        #"{"metadata":{"name":"net1","namespace":"default","annotations":{"opencontrail.org/cidr":"203.0.113.0/24"}},"#
            + #""spec":{"config":"{\"cniVersion\":\"0.3.1\",\"type\":\"contrail-k8s-cni\"}"}}"#
    )
    apply(
        api,
        #"{"metadata":{"name":"dnet","namespace":"default"},"spec":{"config":"{\"cniVersion\":\"0.3.1\","#
            + #"\"type\":\"bridge\",\"bridge\":\"vrtfzbr0\"}"}}"#
    )
    let before = lists(api)
    let plugin = CNIPlugin(transport: { _ in InProcess(api: api) })

    func run(_ env: [String: String]) -> Int32 {
        let (code, out) = plugin.main(environment: env, stdin: stdin)
        let text = String(decoding: out, as: UTF8.self)
        if verbose { print("\(env["CNI_COMMAND"]!) -> \(code) \(text.prefix(400))") }
        let json = try? JSONValue.parse(out)
        if code == 0 {
            let isDelOrQuiet = [.del, .check, .status, .gc].contains(CNICommand(rawValue: env["CNI_COMMAND"]!))
            require(isDelOrQuiet ? out.isEmpty || json != nil : json?.object != nil, "exit 0 with stdout \(text)")
            if env["CNI_COMMAND"] == "ADD" {
                let version = (try? PluginConfig.parse(stdin, command: .add))?.cniVersion
                require(json?["cniVersion"]?.string == version, "an ADD result without the config's version: \(text)")
            }
        } else {
            require(code == 1, "exit \(code)")
            let code = json?["code"].flatMap { v -> Double? in if case .number(let n) = v { n } else { nil } }
            require(code != nil && !(json?["msg"]?.string ?? "").isEmpty, "a failure without a CNI error: \(text)")
        }
        return code
    }

    let code = run(env)
    guard command == .add else { return 0 }
    if code == 0 {
        var del = env
        del["CNI_COMMAND"] = "DEL"
        require(run(del) == 0, "the DEL after a successful ADD failed")
    }
    let after = lists(api)
    require(after == before, "ADD (exit \(code)) then DEL left the node changed: \(difference(before, after))")
    let left = links(.named(podNetns)) + links(.current)
    require(left.isEmpty, "ADD (exit \(code)) then DEL left links: \(left)")
    return 0
}
