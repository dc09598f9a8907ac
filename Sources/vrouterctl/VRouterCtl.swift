// vrouterctl: the operator's view of a running vrouterd, over its control API. Commands
// follow Tungsten Fabric's utilities (vif, rt --dump, nh, mpls, vxlan, flow, dropstats)
// in kubectl's shape (noun verb); tables for people, `-o json` (the API's JSON) for
// scripts. Every failure is one line on stderr and exit status 1.
// Kubernetes manifests (`apply -f`, `delete -f`) and the network and pod views are in
// Networks.swift.

import ArgumentParser
import Glibc
import VRouterAPI

// FoundationEssentials only (JSON, Data): with the Swift runtime linked statically, vrouterctl
// starts in ~3 ms of CPU instead of ~10 with Foundation's (it is run by scripts in loops).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

struct VRouterCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vrouterctl",
        abstract: "Inspect and program a running vrouterd through its control socket.",
        discussion: "The socket is --socket, else $VROUTER_SOCKET, else \(UnixHTTPClient.defaultSocket).",
        subcommands: [
            Status.self, Vif.self, VRFCommand.self, RouteCommand.self, NH.self, MPLS.self, VXLAN.self, NodeCommand.self,
            FlowCommand.self, Dropstats.self, Apply.self, Delete.self, NetworkCommand.self, PodCommand.self,
            ClusterCommand.self,
        ]
    )
}

extension VRouterCtl {
    /// Global options may come before the subcommand, as with kubectl
    /// (`vrouterctl -o json vrf list`); the parser wants them on the subcommand, so they
    /// are moved to the end.
    static func globalOptionsLast(_ args: [String]) -> [String] {
        var front: [String] = []
        var moved: [String] = []
        var i = 0
        while i < args.count {
            let a = args[i]
            if ["--socket", "-o", "--output"].contains(a), i + 1 < args.count {
                moved += [a, args[i + 1]]
                i += 2
            } else if a.hasPrefix("--socket=") || a.hasPrefix("--output=") {
                moved.append(a)
                i += 1
            } else if a.hasPrefix("-") && a != "-o" && !a.hasPrefix("--") && a.count > 2 && a.hasPrefix("-o") {
                moved.append(a)  // -ojson
                i += 1
            } else {
                front.append(contentsOf: args[i...])
                break
            }
        }
        return front + moved
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

struct Global: ParsableArguments {
    @Option(name: .long, help: "vrouterd's control socket.")
    var socket: String?

    @Option(name: [.customShort("o"), .long], help: "Output format: table or json.")
    var output: OutputFormat = .table

    var socketPath: String {
        socket ?? getenv("VROUTER_SOCKET").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
            ?? UnixHTTPClient.defaultSocket
    }
    var client: ControlClient { ControlClient(socketPath: socketPath) }
    var json: Bool { output == .json }
}

/// Prints one line on stderr and exits 1.
func fail(_ message: String) -> Never {
    write(2, Array("vrouterctl: \(message)\n".utf8))
    exit(1)
}

/// Writes bytes to stdout (after what `print` buffered).
func writeOut(_ data: Data) {
    fflush(nil)
    write(1, Array(data))
}

private func write(_ fd: Int32, _ bytes: [UInt8]) {
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, $0.count - off) }
        if n > 0 {
            off += n
        } else if n < 0 && errno == EINTR {
            continue
        } else {
            return
        }
    }
}

/// A file's bytes (stdin when `path` is nil); the error is strerror's.
func readAll(_ path: String?) throws(ReadError) -> [UInt8] {
    let fd = path.map { open($0, O_RDONLY | O_CLOEXEC) } ?? 0
    guard fd >= 0 else { throw ReadError(description: String(cString: strerror(errno))) }
    defer { if path != nil { close(fd) } }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n > 0 {
            out += buf[0..<n]
        } else if n == 0 {
            return out
        } else if errno != EINTR {
            throw ReadError(description: String(cString: strerror(errno)))
        }
    }
}

struct ReadError: Error, CustomStringConvertible { var description: String }

extension Global {
    /// A read: the API's JSON as is with -o json, else `render` of the decoded value.
    func show<T: Decodable>(_ path: String, as: T.Type, _ render: (T) -> Void) {
        let data: Data
        do { data = try client.raw("GET", path) } catch { fail(error.description) }
        if json {
            writeOut(data)
            return
        }
        do { render(try JSONDecoder().decode(T.self, from: data)) } catch {
            fail("unexpected answer to GET \(path): \(error)")
        }
    }

    /// A change: sends `body`, prints the API's JSON with -o json, else `done`.
    func change(_ method: String, _ path: String, _ body: (some Encodable)?, _ done: (Data) -> Void) {
        var payload: Data?
        if let body {
            do { payload = try JSONEncoder().encode(body) } catch { fail("encoding the request: \(error)") }
        }
        let data: Data
        do { data = try client.raw(method, path, body: payload) } catch { fail(error.description) }
        if json {
            writeOut(data.isEmpty ? Data("{}\n".utf8) : data)
            return
        }
        done(data)
    }
}

struct NoBody: Encodable {}

/// Aligned columns, two spaces apart; the header in capitals as TF's tools and kubectl do.
func table(_ headers: [String], _ rows: [[String]]) {
    var widths = headers.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        var s = ""
        for (i, c) in cells.enumerated() {
            s += i == cells.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count + 2)
        }
        return s
    }
    print(line(headers))
    for r in rows { print(line(r)) }
}

func seg(_ s: String) -> String { ControlClient.segment(s) }
func opt<T>(_ v: T?) -> String { v.map { "\($0)" } ?? "-" }

// MARK: status

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The node: version, uptime, workers, table sizes.")
    @OptionGroup var global: Global
    func run() {
        global.show("/v1/status", as: StatusInfo.self) { s in
            let rows: [(String, String)] = [
                ("node", s.node), ("version", s.version), ("healthy", "\(s.healthy)"),
                ("uptime", "\(Int(s.uptimeSeconds.rounded()))s"), ("workers", "\(s.workers)"),
                ("interfaces", "\(s.interfaces)"), ("vrfs", "\(s.vrfs)"), ("routes", "\(s.routes)"),
                ("nexthops", "\(s.nexthops)"), ("flows", "\(s.flows)"), ("tables version", "\(s.tablesVersion)"),
                ("state directory", opt(s.stateDirectory)), ("socket", opt(s.socket)), ("metrics", opt(s.metrics)),
            ]
            let w = rows.map(\.0.count).max() ?? 0
            for (k, v) in rows { print(k + ":" + String(repeating: " ", count: w - k.count + 1) + v) }
        }
    }
}

// MARK: cluster

struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "The cluster (etcd): the store, this node's lease, every other node and its routes."
    )
    @OptionGroup var global: Global
    func run() {
        global.show("/v1/cluster", as: ClusterInfo.self) { c in
            let rows: [(String, String)] = [
                ("node", c.node), ("store", c.endpoints.joined(separator: ",")), ("prefix", c.prefix),
                ("connected", c.connected ? "yes (\(opt(c.endpoint)))" : "no"), ("revision", "\(c.revision)"),
                ("resyncs", "\(c.resyncs)"), ("compactions", "\(c.compactions)"),
                ("watch restarts", "\(c.watchRestarts)"), ("store errors", "\(c.storeErrors)"),
                ("lease", "\(opt(c.leaseID)) (TTL \(c.leaseTTL)s, re-granted \(c.leaseRegrants))"),
                ("unpublished", "\(c.publishPending)"), ("skipped records", "\(c.skippedRecords)"),
                ("routes", "\(c.routesProgrammed) (learned \(c.routesLearned), withdrawn \(c.routesWithdrawn))"),
                ("last error", opt(c.lastError)),
            ]
            let w = rows.map(\.0.count).max() ?? 0
            for (k, v) in rows { print(k + ":" + String(repeating: " ", count: w - k.count + 1) + v) }
            print("")
            table(
                ["NODE", "UNDERLAY", "ENDPOINTS", "ROUTES", "TUNNEL", "BOOT"],
                c.nodes.map {
                    [
                        $0.name, $0.underlay, "\($0.endpoints)", "\($0.routes)", $0.programmed ? "up" : "pending",
                        $0.bootID,
                    ]
                }
            )
        }
    }
}

// MARK: vif

struct Vif: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Interfaces (vifs): the fabric and the pods' taps.",
        subcommands: [List.self, Add.self, Del.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List interfaces with their counters.")
        @OptionGroup var global: Global
        func run() {
            global.show("/v1/interfaces", as: [InterfaceInfo].self) { vifs in
                // IPv6 and the kernel's ring drops only when some vif has them.
                let v6 = vifs.contains { $0.ipv6 != nil }
                let ring = vifs.contains { $0.ringDrops != nil }
                table(
                    ["ID", "NAME", "KIND", "VRF", "MAC", "IPV4"] + (v6 ? ["IPV6"] : []) + [
                        "MTU", "LABEL", "DEVICE", "RX-PKTS", "TX-PKTS", "DROPS",
                    ]
                        + (ring ? ["RING-DROPS"] : []) + ["OFFLOADS"],
                    vifs.map { v in
                        let dev =
                            v.device ?? v.tap.map { t in "\(t.netns.map { "\($0)/" } ?? "")\(t.ifname ?? t.name)" }
                            ?? "-"
                        return ["\(v.id)", v.name, v.kind, opt(v.vrf), v.mac, opt(v.ipv4)] + (v6 ? [opt(v.ipv6)] : [])
                            + ["\(v.mtu)", opt(v.label), dev, "\(v.rxPackets)", "\(v.txPackets)", "\(v.drops)"]
                            + (ring ? [opt(v.ringDrops)] : [])
                            + [v.offloads.map { $0.isEmpty ? "off" : $0.joined(separator: ",") } ?? "-"]
                    }
                )
            }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a pod interface: a tap moved into the pod's namespace."
        )
        @OptionGroup var global: Global
        @Argument(help: "Interface name.") var name: String
        @Option(help: "VRF the pod belongs to.") var vrf: String
        @Option(help: "The pod's MAC address.") var mac: String
        @Option(help: "Name of the tap device to make.") var tap: String
        @Option(help: "Network namespace to move the tap into.") var netns: String?
        @Option(help: "Name the tap gets inside the namespace (e.g. eth0).") var ifname: String?
        @Option(help: "IPv4 address (A or A/LEN).") var ipv4: String?
        @Option(help: "IPv6 address (A or A/LEN).") var ipv6: String?
        @Option(help: "MTU.") var mtu: Int?
        @Option(help: "MPLS label that reaches this pod.") var label: UInt32?
        @Flag(help: "Keep the tap when vrouterd stops (re-attached on start).") var persistent = false
        @Flag(help: "No offloads on the tap: MTU-sized frames only, no virtio-net header.") var noOffloads = false
        func run() {
            let spec = InterfaceSpec(
                name: name,
                vrf: vrf,
                mac: mac,
                mtu: mtu,
                ipv4: ipv4,
                ipv6: ipv6,
                label: label,
                offloads: noOffloads ? false : nil,
                tap: TapSpec(name: tap, netns: netns, ifname: ifname, persistent: persistent ? true : nil)
            )
            global.change("POST", "/v1/interfaces", spec) { data in
                let v = try? JSONDecoder().decode(InterfaceInfo.self, from: data)
                print("added interface \(name) (vif \(v.map { "\($0.id)" } ?? "?"))")
            }
        }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a pod interface and its tap.")
        @OptionGroup var global: Global
        @Argument(help: "Interface name.") var name: String
        func run() {
            global.change("DELETE", "/v1/interfaces/\(seg(name))", NoBody?.none) { _ in
                print("deleted interface \(name)")
            }
        }
    }
}

// MARK: vrf

struct VRFCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vrf",
        abstract: "VRFs (one per virtual network).",
        subcommands: [List.self, Add.self, Del.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List VRFs with their route counts.")
        @OptionGroup var global: Global
        func run() {
            global.show("/v1/vrfs", as: [VRFInfo].self) { vrfs in
                table(
                    ["ID", "NAME", "VNI", "GATEWAY", "GATEWAY6", "IPV4-ROUTES", "IPV6-ROUTES", "FIB-BYTES"],
                    vrfs.map {
                        [
                            "\($0.id)", $0.name, opt($0.vni), opt($0.gateway), opt($0.gateway6), "\($0.ipv4Routes)",
                            "\($0.ipv6Routes)",
                            "\($0.fibBytes)",
                        ]
                    }
                )
            }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a VRF.")
        @OptionGroup var global: Global
        @Argument(help: "VRF name.") var name: String
        @Option(help: "VXLAN VNI that decapsulates into this VRF.") var vni: UInt32?
        @Option(help: "The vRouter's IPv4 address in this VRF (the pods' gateway).") var gateway: String?
        @Option(help: "The vRouter's IPv6 address in this VRF.") var gateway6: String?
        func run() {
            global.change("POST", "/v1/vrfs", VRFSpec(name: name, vni: vni, gateway: gateway, gateway6: gateway6)) {
                data in
                let v = try? JSONDecoder().decode(VRFInfo.self, from: data)
                print("added VRF \(name) (id \(v.map { "\($0.id)" } ?? "?"))")
            }
        }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a VRF (refused while interfaces use it).")
        @OptionGroup var global: Global
        @Argument(help: "VRF name.") var name: String
        func run() {
            global.change("DELETE", "/v1/vrfs/\(seg(name))", NoBody?.none) { _ in print("deleted VRF \(name)") }
        }
    }
}

// MARK: route

struct RouteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "route",
        abstract: "Routes of a VRF (TF: rt).",
        subcommands: [Dump.self, Add.self, Del.self]
    )

    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a VRF's routes.")
        @OptionGroup var global: Global
        @Argument(help: "VRF name.") var vrf: String
        func run() {
            global.show("/v1/vrfs/\(seg(vrf))/routes", as: [RouteInfo].self) { routes in
                table(
                    ["PREFIX", "NEXTHOP", "KIND", "TARGET"],
                    routes.map { r in
                        var target = "-"
                        if let i = r.interface { target = "interface \(i)" }
                        if let v = r.via {
                            target =
                                "via \(v)" + (r.vni.map { " vni \($0)" } ?? "") + (r.label.map { " label \($0)" } ?? "")
                        }
                        if let ms = r.members {
                            target = ms.map { m in
                                m.via + (m.vni.map { " vni \($0)" } ?? "") + (m.label.map { " label \($0)" } ?? "")
                            }
                            .joined(separator: ", ")
                        }
                        return [r.prefix, "\(r.nexthop)", r.kind, target]
                    }
                )
            }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add (or replace) a route: to a local interface, via a remote node, or discard."
        )
        @OptionGroup var global: Global
        @Argument(help: "VRF name.") var vrf: String
        @Argument(help: "Prefix (198.51.100.0/24, 2001:db8::/64).") var prefix: String
        @Option(help: "Local pod interface.") var interface: String?
        @Option(help: "Remote node (tunnel).") var via: String?
        @Option(help: "VNI, for a VXLAN node.") var vni: UInt32?
        @Option(help: "MPLS label, for an MPLS-over-UDP node.") var label: UInt32?
        @Flag(help: "Drop what matches.") var discard = false

        func validate() throws {
            let targets = [interface != nil, via != nil, discard].filter { $0 }.count
            guard targets == 1 else { throw ValidationError("give exactly one of --interface, --via, --discard") }
            if via != nil && (vni == nil) == (label == nil) {
                throw ValidationError("--via needs --vni (VXLAN) or --label (MPLS over UDP)")
            }
            if via == nil && (vni != nil || label != nil) { throw ValidationError("--vni and --label go with --via") }
        }

        func run() {
            let spec = RouteSpec(
                prefix: prefix,
                interface: interface,
                via: via,
                vni: vni,
                label: label,
                discard: discard ? true : nil
            )
            global.change("POST", "/v1/vrfs/\(seg(vrf))/routes", RouteChange(add: [spec])) { _ in
                print("added route \(prefix) in VRF \(vrf)")
            }
        }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a route.")
        @OptionGroup var global: Global
        @Argument(help: "VRF name.") var vrf: String
        @Argument(help: "Prefix.") var prefix: String
        func run() {
            global.change("DELETE", "/v1/vrfs/\(seg(vrf))/routes/\(seg(prefix))", NoBody?.none) { _ in
                print("deleted route \(prefix) in VRF \(vrf)")
            }
        }
    }
}

// MARK: nh, mpls, vxlan

struct NH: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "nh", abstract: "Nexthops.", subcommands: [List.self])
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List nexthops.")
        @OptionGroup var global: Global
        func run() {
            global.show("/v1/nexthops", as: [NexthopInfo].self) { nhs in
                table(
                    ["ID", "KIND", "TARGET", "DESTINATION", "UNDERLAY-MAC", "MEMBERS"],
                    nhs.map { n in
                        let target = n.interface.map { "interface \($0)" } ?? n.node.map { "node \($0)" } ?? "-"
                        let members =
                            n.members.map { $0.map { "\($0.nexthop)/\($0.label)" }.joined(separator: ",") } ?? "-"
                        return ["\(n.id)", n.kind, target, opt(n.destination), opt(n.underlayMAC), members]
                    }
                )
            }
        }
    }
}

struct MPLS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpls",
        abstract: "The MPLS label table.",
        subcommands: [Dump.self]
    )
    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print incoming labels and their nexthops.")
        @OptionGroup var global: Global
        func run() {
            global.show("/v1/labels", as: [LabelInfo].self) { ls in
                table(
                    ["LABEL", "NEXTHOP", "INTERFACE"],
                    ls.map { ["\($0.label)", "\($0.nexthop)", opt($0.interface)] }
                )
            }
        }
    }
}

struct VXLAN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vxlan",
        abstract: "The VNI table.",
        subcommands: [Dump.self]
    )
    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print VNIs and the VRFs they decapsulate into.")
        @OptionGroup var global: Global
        func run() {
            global.show("/v1/vnis", as: [VNIInfo].self) { vs in
                table(["VNI", "VRF"], vs.map { ["\($0.vni)", $0.vrf] })
            }
        }
    }
}

// MARK: node

struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Remote nodes (tunnel endpoints).",
        subcommands: [List.self, Add.self, Del.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List remote nodes; in cluster mode every node of the cluster, this one first.",
            discussion: """
                In cluster mode each node shows its underlay, the etcd lease its record lives on \
                and its health: up (record alive, tunnel made, underlay MAC resolved), \
                unresolved (no ARP answer from its underlay yet), pending (tunnel not made); \
                this node: up (published), publishing (records not yet written), etcd away. \
                Its tunnels (one per encapsulation in use) follow as remote nodes.
                """
        )
        @OptionGroup var global: Global
        func run() {
            global.show("/v1/remote-nodes", as: [RemoteNodeInfo].self) { ns in
                if let c = try? global.client.call("GET", "/v1/cluster", as: ClusterInfo.self) {
                    clusterNodes(c, ns)
                    print("")
                }
                table(
                    ["NAME", "ADDRESS", "ENCAP", "NEXTHOP", "UNDERLAY-MAC", "RESOLVED"],
                    ns.map { [$0.name, $0.address, $0.encap, "\($0.nexthop)", opt($0.underlayMAC), "\($0.resolved)"] }
                )
            }
        }

        /// Every node of the cluster with its underlay, lease and health (this one first).
        func clusterNodes(_ c: ClusterInfo, _ tunnels: [RemoteNodeInfo]) {
            let away = c.connected ? "" : " (etcd away: as last seen)"
            let mine =
                !c.connected ? "etcd away" : c.publishPending > 0 ? "publishing (\(c.publishPending) records)" : "up"
            var rows = [[c.node + " (this node)", opt(c.underlay), opt(c.leaseID), mine, "-", "-"]]
            for n in c.nodes {
                let own = tunnels.filter { $0.name == n.name || $0.name.hasPrefix(n.name + "+") }
                let health =
                    !n.programmed ? "pending" : own.allSatisfy(\.resolved) ? "up" : "unresolved"
                rows.append([
                    n.name, n.underlay, opt(n.lease), health + away, "\(n.endpoints)",
                    own.map(\.name).joined(separator: ","),
                ])
            }
            table(["NODE", "UNDERLAY", "LEASE", "HEALTH", "PODS", "TUNNELS"], rows)
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a remote node.")
        @OptionGroup var global: Global
        @Argument(help: "Node name.") var name: String
        @Option(help: "Its underlay IPv4 address.") var address: String
        @Option(help: "vxlan or mpls-udp.") var encap: String
        @Option(help: "Underlay next hop's MAC (else resolved by ARP).") var mac: String?
        @Option(help: "Inner destination MAC (VXLAN).") var innerMac: String?
        func run() {
            global.change(
                "POST",
                "/v1/remote-nodes",
                RemoteNodeSpec(name: name, address: address, encap: encap, mac: mac, innerMAC: innerMac)
            ) { _ in
                print("added remote node \(name)")
            }
        }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a remote node (refused while routes use it).")
        @OptionGroup var global: Global
        @Argument(help: "Node name.") var name: String
        func run() {
            global.change("DELETE", "/v1/remote-nodes/\(seg(name))", NoBody?.none) { _ in
                print("deleted remote node \(name)")
            }
        }
    }
}

// MARK: flow, dropstats

struct FlowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flow",
        abstract: "The flow tables.",
        subcommands: [List.self]
    )
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List flows, the most active first.")
        @OptionGroup var global: Global
        @Option(help: "Only this VRF.") var vrf: String?
        @Option(help: "At most this many.") var top: Int = 100
        func validate() throws { guard top >= 1 else { throw ValidationError("--top must be at least 1") } }
        func run() {
            var q = "/v1/flows?top=\(top)"
            if let v = vrf { q += "&vrf=\(ControlClient.query(v))" }
            global.show(q, as: [FlowInfo].self) { fs in
                table(
                    [
                        "WORKER", "VRF", "PROTO", "SOURCE", "SPORT", "DESTINATION", "DPORT", "NEXTHOP", "NAT",
                        "PACKETS", "BYTES", "IDLE-MS",
                    ],
                    fs.map {
                        [
                            "\($0.worker)", $0.vrf, "\($0.proto)", $0.source, "\($0.sourcePort)", $0.destination,
                            "\($0.destinationPort)",
                            "\($0.nexthop)", $0.translation ?? "-", "\($0.packets)", "\($0.bytes)",
                            "\($0.idleMilliseconds)",
                        ]
                    }
                )
            }
        }
    }
}

struct Dropstats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Drop counters by reason and by port (TF: dropstats).")
    @OptionGroup var global: Global
    @Flag(help: "Also list reasons that never happened.") var all = false
    func run() {
        global.show("/v1/dropstats", as: DropStatsInfo.self) { d in
            table(
                ["REASON", "PACKETS"],
                d.reasons.sorted { $0.key < $1.key }.filter { all || $0.value > 0 }.map { [$0.key, "\($0.value)"] }
            )
            print("")
            table(["PORT", "DROPS"], d.ports.sorted { $0.key < $1.key }.map { [$0.key, "\($0.value)"] })
            print("")
            print("total: \(d.total)")
        }
    }
}
