// A node for the fuzz targets that drive the control side (fuzz-api, fuzz-cni): a node
// service with its workers running, its state journaled, in network and mount namespaces of
// the process's own.
//
// The node makes real taps (interfaces, pods) and namespaces, and the CNI shim writes its
// notes: `isolate()` (once, at start; root needed) moves the process into new network and
// mount namespaces with private tmpfs on /run/netns, /dev/shm and /var/lib/cni, and
// `renewWorld()` (before each input) gives the node a new network namespace and the pods a
// new one, so nothing a target makes is seen outside or outlives it. `confined` tells
// whether a namespace an input names is one of these (a path such as /proc/1/ns/net is not).

import Foundation
import FuzzSupport
import Glibc
import Logging
import VRouterAPI
import VRouterControl
import VRouterIO

public let yaml = """
    node: { name: vrt-fuzz }
    snat: { ports: 20000-20999 }
    defaultNetwork: { name: cluster, subnet: 198.19.0.0/24, vni: 100 }
    remoteNodes:
      - { name: node-a, address: 198.18.0.2, mac: "02:00:00:00:00:02", encap: vxlan }
      - { name: node-b, address: 198.18.0.3, mac: "02:00:00:00:00:03", encap: mpls-udp }
    vrfs:
      - { name: blue, vni: 1001, gateway: 192.0.2.1 }
      - { name: red, gateway: 198.51.100.1 }
    interfaces:
      - { name: fabric0, kind: fabric, address: 198.18.0.1/24, mac: "02:00:00:00:00:01", gateway: 198.18.0.254, pcap: { in: none.pcap } }
    """

public let stateDir = "/dev/shm/vrt-fuzz-node"
/// VRT_FUZZ_VERBOSE=1: the targets print what each step answered.
public let verbose = getenv("VRT_FUZZ_VERBOSE") != nil
public let podNetns = "vrt-fuzz-pod"
let log = Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() }

// Glibc declares unshare(2) only with _GNU_SOURCE.
@_silgen_name("unshare")
func unshare(_ flags: CInt) -> CInt
let CLONE_NEWNS: CInt = 0x0002_0000
let CLONE_NEWNET: CInt = 0x4000_0000

func check(_ rc: CInt, _ what: String) {
    if rc != 0 { fatalError("fuzz: \(what): \(String(cString: strerror(errno))) (this target needs root)") }
}

/// Network and mount namespaces of the process's own, with private /run/netns, /dev/shm
/// and /var/lib/cni.
public func isolate() {
    check(unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare")
    check(mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil), "making mounts private")
    for dir in [NetworkNamespace.runDirectory, "/dev/shm", "/var/lib/cni"] {
        mkdir(dir, 0o755)
        check(mount("tmpfs", dir, "tmpfs", 0, "mode=0755"), "tmpfs on \(dir)")
    }
}

/// A fresh world for an input: a new network namespace for the node (the last one's taps
/// go with it), a new pod namespace, an empty state directory.
public func renewWorld() {
    check(unshare(CLONE_NEWNET), "unshare")
    try? NetworkNamespace.named(podNetns).delete()
    do { try NetworkNamespace.create(named: podNetns) } catch { fatalError("pod namespace: \(error)") }
    try? FileManager.default.removeItem(atPath: stateDir)
}

public let baseConfig: NodeConfig = {
    do {
        var c = try NodeConfig.parse(yaml)
        c.poolBuffers = 1024
        c.flowCapacity = 1024
        return c
    } catch {
        fatalError("the fuzzer's config is invalid: \(error)")
    }
}()

/// A running node as vrouterd starts one: the saved state when there is some, replayed.
public func startNode() -> NodeService {
    do {
        let p = try StatePersistence(directory: stateDir)
        var config = baseConfig
        var records: [StateRecord] = []
        var cni: CNISnapshot?
        if let (saved, journal) = try p.load() {
            config = saved
            records = journal
            cni = try p.loadCNI()
        }
        let s = try NodeService(config: config, logger: log, requireLivePorts: false)
        s.persistence = p
        if let cni { s.restoreCNI(cni) }
        try s.start()
        s.replay(records, adding: cni?.adding ?? [])
        try s.saveSnapshot()
        return s
    } catch {
        fatalError("invariant broken: the node does not start from its state directory: \(error)")
    }
}

/// Everything the API lists, as it serves it (but what changes by itself).
public func lists(_ api: ControlAPI) -> [String: String] {
    func get(_ path: String) -> String {
        let r = api.handle(APIRequest(method: "GET", path: path))
        require(r.status == 200, "GET \(path) answered \(r.status): \(String(decoding: r.body, as: UTF8.self))")
        return String(decoding: r.body, as: UTF8.self)
    }
    var all: [String: String] = [:]
    for path in [
        "/v1/interfaces", "/v1/vrfs", "/v1/nexthops", "/v1/labels", "/v1/vnis", "/v1/remote-nodes", "/v1/networks",
        "/v1/pods",
    ] {
        all[path] = stable(get(path))
    }
    let vrfs = try? JSONSerialization.jsonObject(with: Data(all["/v1/vrfs"]!.utf8)) as? [[String: Any]]
    for name in (vrfs ?? []).compactMap({ $0["name"] as? String }) {
        let encoded = name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? name
        all["/v1/vrfs/\(name)/routes"] = stable(get("/v1/vrfs/\(encoded)/routes"))
    }
    return all
}

/// What changes without any request: traffic counters (the kernel sends a pod's new tap
/// its router solicitations) and how much memory a FIB takes (it depends on its history).
public let volatile: Set = ["rxPackets", "rxBytes", "txPackets", "txBytes", "drops", "fibBytes"]

/// A list without its volatile fields.
public func stable(_ json: String) -> String {
    func strip(_ v: Any) -> Any {
        if let o = v as? [String: Any] { return o.filter { !volatile.contains($0.key) }.mapValues(strip) }
        if let a = v as? [Any] { return a.map(strip) }
        return v
    }
    guard let v = try? JSONSerialization.jsonObject(with: Data(json.utf8)),
        let d = try? JSONSerialization.data(withJSONObject: strip(v), options: [.sortedKeys])
    else { return json }
    return String(decoding: d, as: UTF8.self)
}

public func difference(_ a: [String: String], _ b: [String: String]) -> String {
    for key in Set(a.keys).union(b.keys).sorted() where a[key] != b[key] {
        return "\(key):\n  \(a[key] ?? "(absent)")\n  \(b[key] ?? "(absent)")"
    }
    return "none"
}

/// Whether `netns` (a name under /run/netns or a path) is one of the target's own: under
/// its private /run/netns.
public func confined(_ netns: String?) -> Bool {
    guard let netns else { return true }
    let name = NetworkNamespace.at(netns).name
    return name != nil && name != "." && name != ".."
}

/// The links in a namespace but its loopback.
public func links(_ ns: NetworkNamespace) -> [String] {
    do { return try ns.netlink().links().map(\.name).filter { $0 != "lo" }.sorted() } catch {
        fatalError("listing the links of \(ns): \(error)")
    }
}
