// vrouterd's configuration: the node, its interfaces (pcap, tap or AF_PACKET ports),
// VRFs with their routes, and the remote nodes tunnels go to. `NodeConfig.load` parses
// and validates a YAML file completely before anything is built, so a bad config is
// one clear error and no side effects.

import Foundation
import VRouterCore

public struct NodeConfig: Sendable {
    public var name: String = "node"
    public var routerMAC: MACAddress = .vrouter
    public var workers: Int = 1
    public var poolBuffers: Int = 16384
    public var bufferSize: Int = 2048
    /// 64 KB buffers per worker for superframes (offloads): tap reads lend 64 of them to
    /// the kernel, the rest hold superframes, coalesced segments and UDP GSO trains.
    public var bigBuffers: Int = 256
    /// Taps with offloads read by one multishot read per queue (where the kernel has it).
    /// Off by default: in tools/compare-kernel it did not pay (BENCHMARKS.md, small packets).
    public var multishotReads = false
    /// Times a worker that just forwarded packets yields its CPU and looks again before it
    /// sleeps (0: sleeps at once). 0 by default, for the same reason.
    public var idleYields = 0
    public var flowCapacity: Int = 1 << 16
    /// IPv6 flow-cache entries per worker; nil: as many as IPv4.
    public var flowCapacity6: Int?
    public var flowIdleTimeout: Double = 60
    public var interfaces: [Interface] = []
    public var vrfs: [VRF] = []
    public var remoteNodes: [RemoteNode] = []
    /// Where the file was (relative paths in it are resolved against this directory).
    public var directory: String = "."
    /// In a state snapshot: the last journal record it includes.
    public var journalSequence = 0
    /// The cluster-wide network every pod's first interface (eth0) is attached to by the
    /// CNI shim; nil on a node that serves no pods through CNI.
    public var defaultNetwork: DefaultNetwork?
    /// The node's fabric SNAT port range (TCP, UDP and ICMP identifiers each); nil: no
    /// network may use fabric SNAT.
    public var snat: SNATRange?
    /// Which part of every pod subnet this node allocates from (see IPAM.swift).
    public var ipamSlice = 0
    public var ipamSlices = 1
    /// Cluster mode: pods, networks and routes shared with the other nodes through etcd;
    /// nil: the node works alone (the embedded default).
    public var cluster: Cluster?
    /// The state format this vrouterd writes and the newest it reads.
    public static let stateVersion = 1

    public struct Interface: Sendable {
        public enum Kind: String, Sendable { case pod, fabric }
        public var name: String
        public var kind: Kind
        public var vrf: String?
        public var mac: MACAddress
        public var mtu: Int = 1500
        public var ipv4: IPv4Address?
        public var ipv6: IPv6Address?
        /// Prefix lengths the pod side gets with its addresses ("192.0.2.10/24"); /32 and
        /// /128 when not given. Every destination is routed by the vRouter either way.
        public var ipv4PrefixLength = 32
        public var ipv6PrefixLength = 128
        /// Fabric: the underlay gateway (remote nodes outside the fabric's subnet are
        /// reached through it, and so is everything pods reach untunneled: IP-fabric
        /// forwarding and fabric SNAT).
        public var gateway: IPv4Address?
        /// Fabric: the gateway's MAC when it is not to be resolved by ARP (replays).
        public var gatewayMAC: MACAddress?
        /// Pod: install a default route through the VRF's gateway inside the pod.
        public var defaultRoute = true
        public var vlan: UInt16?
        /// Incoming MPLS label that reaches this pod.
        public var label: UInt32?
        public var antiSpoofing = true
        /// Segmentation and checksum offloads: a pod's tap with a virtio-net header and
        /// TSO/USO (superframes in and out), the fabric sending UDP GSO trains. Off: MTU-sized
        /// frames only, as a tap without IFF_VNET_HDR (for debugging, and for peers
        /// that need it).
        public var offloads = true
        public var pcapIn: String?
        public var pcapOut: String?
        /// Live ports (the node service): an existing device for AF_PACKET, or a tap.
        public var device: String?
        public var tap: Tap?
    }

    public struct Tap: Sendable {
        public var name: String
        public var netns: String?
        public var ifname: String?
        /// Survives vrouterd (TUNSETPERSIST): re-attached on start, kept on stop.
        public var persistent = false
    }

    public struct VRF: Sendable {
        public var name: String
        public var id: UInt16
        public var vni: UInt32?
        public var gateway4: IPv4Address?
        public var gateway6: IPv6Address?
        public var routes: [Route] = []
        public var routesFile: String?
        /// Pods reach the fabric untunneled with their own addresses, and the fabric
        /// reaches them (Contrail's `ip_fabric_forwarding`).
        public var ipFabricForwarding = false
        /// Pods reach the fabric with their source translated to the node's underlay
        /// address (Contrail's `ip_fabric_snat`).
        public var ipFabricSnat = false
    }

    /// `snat: { ports: FIRST-LAST }`.
    public struct SNATRange: Sendable, Equatable {
        public var first: UInt16
        public var last: UInt16
        public var count: Int { Int(last) - Int(first) + 1 }
        public var description: String { "\(first)-\(last)" }
        /// The ports a fabric reply must never be taken for (tunnel packets are recognised
        /// by their destination port before anything else).
        static let tunnelPorts: [(UInt16, String)] = [
            (UDPPort.vxlan, "the VXLAN port"), (UDPPort.mplsOverUDP, "the MPLS-over-UDP port"),
            (UDPPort.contrailMPLSOverUDP, "Contrail's MPLS-over-UDP port"),
        ]
    }

    public struct Route: Sendable {
        public enum Target: Sendable {
            case interface(String)
            case remote(node: String, tag: UInt32)
            case ecmp([(node: String, tag: UInt32)])
            case discard
        }
        public var prefix4: IPv4Prefix?
        public var prefix6: IPv6Prefix?
        public var target: Target
        public var prefixText: String { prefix4?.description ?? prefix6!.description }
    }

    /// `defaultNetwork:` — the cluster-wide default network (multi-net spec §6). Its VRF is
    /// the VRF of that name in `vrfs:` when there is one (made otherwise); the gateway is
    /// that VRF's, else the subnet's last address but one (Contrail's choice: .254 of a /24).
    public struct DefaultNetwork: Sendable {
        public var name: String
        public var subnet4: IPv4Prefix?
        public var subnet6: IPv6Prefix?
        public var gateway4: IPv4Address?
        public var gateway6: IPv6Address?
        public var vni: UInt32?
        /// MTU of every pod interface vrouterd makes.
        public var mtu = 1500
        public var ipFabricForwarding = false
        public var ipFabricSnat = false
    }

    /// `cluster: { etcd: { endpoints: [URL…], prefix, leaseTTL, tls: { ca, cert, key } },
    /// blocks, encap }`.
    public struct Cluster: Sendable, Equatable {
        /// etcd client URLs (http:// or https://).
        public var endpoints: [String]
        /// Every key of the cluster lives under "<prefix>/v1/".
        public var prefix = "/vrouter"
        /// Seconds the node's records outlive it (its lease): how long a dead node's pods stay
        /// routed on the others.
        public var leaseTTL = 10
        public var caFile: String?
        public var certFile: String?
        public var keyFile: String?
        /// Each pod subnet is cut in this many blocks; a node claims one (block affinity).
        public var blocks = 16
        /// How this node tunnels to the others.
        public var encap: TunnelEncap = .mplsOverUDP
    }

    public struct RemoteNode: Sendable {
        public var name: String
        public var address: IPv4Address
        public var mac: MACAddress?
        public var encap: TunnelEncap
        public var innerMAC: MACAddress = .vrouter
    }

    public init() {}
}

extension NodeConfig {
    public static func load(path: String) throws(ConfigError) -> NodeConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError("\(path): cannot read: \((error as NSError).localizedDescription)")
        }
        var c = try parse(text, file: path)
        // Absolute, so that a relative path in the file names the same file wherever it is
        // read again: the state snapshot, written in the state directory, names it resolved.
        let directory = (path as NSString).deletingLastPathComponent
        let absolute =
            directory.hasPrefix("/")
            ? directory : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(directory)
        c.directory = (absolute as NSString).standardizingPath
        return c
    }

    /// Resolves a path from the config relative to the config's directory (a config that
    /// was parsed from text, not loaded from a file, has none: its paths stay as written).
    public func resolve(_ path: String) -> String {
        path.hasPrefix("/") || directory == "." ? path : (directory as NSString).appendingPathComponent(path)
    }

    public static func parse(_ text: String, file: String = "config") throws(ConfigError) -> NodeConfig {
        let root = try YAMLWalker.parse(text, file: file)
        let top = try root.mapping(allowed: [
            "node", "workers", "pool", "flows", "interfaces", "vrfs", "remoteNodes", "stateVersion", "journalSequence",
            "defaultNetwork", "ipam", "snat", "cluster", "io",
        ])
        var c = NodeConfig()
        if let v = top["stateVersion"] {
            let n = try v.int(1...Int.max)
            guard n <= Self.stateVersion else {
                throw v.fail(
                    "this state was written by a newer vrouterd (state version \(n); this one reads up to \(Self.stateVersion))"
                )
            }
        }
        if let v = top["journalSequence"] { c.journalSequence = try v.int(0...Int.max) }
        if let n = top["node"] {
            let m = try n.mapping(allowed: ["name", "routerMAC"])
            if let v = m["name"] { c.name = try v.string() }
            if let v = m["routerMAC"] { c.routerMAC = try v.mac() }
        }
        if let v = top["workers"] { c.workers = try v.int(1...64) }
        if let p = top["pool"] {
            let m = try p.mapping(allowed: ["buffers", "bufferSize", "bigBuffers"])
            if let v = m["buffers"] { c.poolBuffers = try v.int(1024...(1 << 24)) }
            if let v = m["bigBuffers"] { c.bigBuffers = try v.int(0...65535) }
            if let v = m["bufferSize"] {
                c.bufferSize = try v.int(512...65536)
                guard c.bufferSize.nonzeroBitCount == 1 else { throw v.fail("bufferSize must be a power of two") }
            }
        }
        if let p = top["io"] {
            let m = try p.mapping(allowed: ["multishotReads", "idleYields"])
            if let v = m["multishotReads"] { c.multishotReads = try v.bool() }
            if let v = m["idleYields"] { c.idleYields = try v.int(0...1024) }
        }
        if let f = top["flows"] {
            let m = try f.mapping(allowed: ["capacity", "capacity6", "idleTimeout"])
            if let v = m["capacity"] { c.flowCapacity = try v.int(16...(1 << 26)) }
            if let v = m["capacity6"] { c.flowCapacity6 = try v.int(16...(1 << 26)) }
            if let v = m["idleTimeout"] { c.flowIdleTimeout = try v.duration() }
        }
        var vrfIDs: Set<UInt16> = []
        for (i, v) in try (top["vrfs"]?.sequence() ?? []).enumerated() {
            let m = try v.mapping(allowed: [
                "name", "id", "vni", "gateway", "gateway6", "routes", "routesFile", "ipFabricForwarding",
                "ipFabricSnat",
            ])
            guard let nameNode = m["name"] else { throw v.fail("a VRF needs a name") }
            let name = try nameNode.string()
            guard !c.vrfs.contains(where: { $0.name == name }) else { throw nameNode.fail("duplicate VRF '\(name)'") }
            let id = try m["id"].map { n throws(ConfigError) in UInt16(try n.int(1...65534)) } ?? UInt16(i + 1)
            guard vrfIDs.insert(id).inserted else { throw v.fail("VRF id \(id) is used twice") }
            var vrf = VRF(name: name, id: id)
            if let n = m["vni"] { vrf.vni = UInt32(try n.int(1...(1 << 24) - 1)) }
            if let n = m["gateway"] { vrf.gateway4 = try n.ipv4() }
            if let n = m["gateway6"] { vrf.gateway6 = try n.ipv6() }
            for r in try m["routes"]?.sequence() ?? [] { vrf.routes.append(try parseRoute(r)) }
            if let n = m["routesFile"] { vrf.routesFile = try n.string() }
            if let n = m["ipFabricForwarding"] { vrf.ipFabricForwarding = try n.bool() }
            if let n = m["ipFabricSnat"] { vrf.ipFabricSnat = try n.bool() }
            c.vrfs.append(vrf)
        }
        if let d = top["defaultNetwork"] { try c.parseDefaultNetwork(d) }
        for v in try top["remoteNodes"]?.sequence() ?? [] {
            let m = try v.mapping(allowed: ["name", "address", "mac", "encap", "innerMAC"])
            guard let nameNode = m["name"], let addr = m["address"], let enc = m["encap"] else {
                throw v.fail("a remote node needs name, address and encap")
            }
            let name = try nameNode.string()
            guard !c.remoteNodes.contains(where: { $0.name == name }) else {
                throw nameNode.fail("duplicate remote node '\(name)'")
            }
            let encName = try enc.string()
            let encap: TunnelEncap
            switch encName {
            case "vxlan": encap = .vxlan
            case "mpls-udp", "mplsoudp", "mpls-over-udp": encap = .mplsOverUDP
            default: throw enc.fail("encap '\(encName)' is not vxlan or mpls-udp")
            }
            var node = RemoteNode(name: name, address: try addr.ipv4(), mac: try m["mac"]?.mac(), encap: encap)
            if let n = m["innerMAC"] { node.innerMAC = try n.mac() }
            c.remoteNodes.append(node)
        }
        for v in try top["interfaces"]?.sequence() ?? [] {
            let m = try v.mapping(allowed: [
                "name", "kind", "vrf", "mac", "mtu", "ipv4", "ipv6", "address", "vlan", "label", "antiSpoofing",
                "pcap", "device", "tap", "gateway", "gatewayMAC", "defaultRoute", "offloads",
            ])
            guard let nameNode = m["name"], let kindNode = m["kind"], let macNode = m["mac"] else {
                throw v.fail("an interface needs name, kind and mac")
            }
            let name = try nameNode.string()
            guard !c.interfaces.contains(where: { $0.name == name }) else {
                throw nameNode.fail("duplicate interface '\(name)'")
            }
            guard let kind = Interface.Kind(rawValue: try kindNode.string()) else {
                throw kindNode.fail("kind must be pod or fabric")
            }
            var itf = Interface(name: name, kind: kind, mac: try macNode.mac())
            if let n = m["vrf"] {
                let vn = try n.string()
                guard c.vrfs.contains(where: { $0.name == vn }) else { throw n.fail("no VRF named '\(vn)'") }
                itf.vrf = vn
            }
            if let n = m["mtu"] { itf.mtu = try n.int(68...65000) }
            for key in ["ipv4", "address"] {
                guard let n = m[key] else { continue }
                let (a, len) = try n.addressWithLength(32) { IPv4Address($0) }
                itf.ipv4 = a
                itf.ipv4PrefixLength = len
            }
            if let n = m["ipv6"] {
                let (a, len) = try n.addressWithLength(128) { IPv6Address($0) }
                itf.ipv6 = a
                itf.ipv6PrefixLength = len
            }
            if let n = m["gateway"] { itf.gateway = try n.ipv4() }
            if let n = m["gatewayMAC"] { itf.gatewayMAC = try n.mac() }
            if let n = m["defaultRoute"] { itf.defaultRoute = try n.bool() }
            if let n = m["vlan"] { itf.vlan = UInt16(try n.int(1...4094)) }
            if let n = m["label"] { itf.label = UInt32(try n.int(16...(1 << 20) - 1)) }
            if let n = m["antiSpoofing"] { itf.antiSpoofing = try n.bool() }
            if let n = m["offloads"] { itf.offloads = try n.bool() }
            if let n = m["device"] { itf.device = try n.string() }
            if let p = m["pcap"] {
                let pm = try p.mapping(allowed: ["in", "out"])
                itf.pcapIn = try pm["in"]?.string()
                itf.pcapOut = try pm["out"]?.string()
            }
            if let t = m["tap"] {
                let tm = try t.mapping(allowed: ["name", "netns", "ifname", "persistent"])
                guard let tn = tm["name"] else { throw t.fail("a tap needs a name") }
                let tapName = try tn.string()
                guard !tapName.isEmpty, tapName.utf8.count <= 15 else {
                    throw tn.fail("'\(tapName)' is not a valid interface name (1-15 bytes)")
                }
                itf.tap = Tap(
                    name: tapName,
                    netns: try tm["netns"]?.string(),
                    ifname: try tm["ifname"]?.string(),
                    persistent: try tm["persistent"]?.bool() ?? false
                )
            }
            switch kind {
            case .pod:
                guard itf.vrf != nil else { throw v.fail("pod interface '\(name)' needs a vrf") }
            case .fabric:
                guard itf.ipv4 != nil else {
                    throw v.fail("fabric interface '\(name)' needs the node's underlay address")
                }
                guard itf.vrf == nil else { throw v.fail("the fabric interface belongs to no VRF") }
            }
            c.interfaces.append(itf)
        }
        if let s = top["snat"] { c.snat = try parseSNAT(s, workers: c.workers) }
        if let i = top["ipam"] {
            let m = try i.mapping(allowed: ["slice", "slices"])
            if let v = m["slices"] { c.ipamSlices = try v.int(1...4096) }
            if let v = m["slice"] { c.ipamSlice = try v.int(0...4095) }
            guard c.ipamSlice < c.ipamSlices else {
                throw i.fail("ipam.slice must be below ipam.slices (\(c.ipamSlices))")
            }
        }
        if let v = top["cluster"] { c.cluster = try parseCluster(v, c) }
        guard c.interfaces.count <= Counters.maxPorts else {
            throw root.fail("\(c.interfaces.count) interfaces is more than the limit of \(Counters.maxPorts)")
        }
        try c.checkReferences()
        return c
    }

    static func parseCluster(_ v: YAMLWalker, _ c: NodeConfig) throws(ConfigError) -> Cluster {
        let m = try v.mapping(allowed: ["etcd", "blocks", "encap"])
        guard let e = m["etcd"] else { throw v.fail("cluster needs etcd: { endpoints: [URL, …] }") }
        let em = try e.mapping(allowed: ["endpoints", "prefix", "leaseTTL", "tls"])
        guard let eps = em["endpoints"] else { throw e.fail("etcd needs endpoints: [http://HOST:PORT, …]") }
        var cluster = Cluster(endpoints: [])
        for u in try eps.sequence() {
            let url = try u.string()
            let rest = url.hasPrefix("http://") ? url.dropFirst(7) : url.hasPrefix("https://") ? url.dropFirst(8) : nil
            guard let rest, let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
                (1...65535).contains(port), colon != rest.startIndex
            else { throw u.fail("'\(url)' is not an etcd client URL (http://HOST:PORT or https://HOST:PORT)") }
            cluster.endpoints.append(url)
        }
        guard !cluster.endpoints.isEmpty else { throw eps.fail("etcd needs at least one endpoint") }
        if let p = em["prefix"] {
            let text = try p.string()
            guard text.hasPrefix("/"), !text.contains("//"), text.count > 1, !text.hasSuffix("/") else {
                throw p.fail("prefix '\(text)' must be an absolute key path such as /vrouter (no trailing /)")
            }
            cluster.prefix = text
        }
        if let t = em["leaseTTL"] {
            let d = try t.duration()
            // etcd grants at least 1.5 election timeouts (2 s by default; it raises shorter ones).
            guard d >= 2, d <= 86400, d == d.rounded() else {
                throw t.fail("leaseTTL must be whole seconds between 2s and 24h")
            }
            cluster.leaseTTL = Int(d)
        }
        if let t = em["tls"] {
            let tm = try t.mapping(allowed: ["ca", "cert", "key"])
            func file(_ k: String) throws(ConfigError) -> String? {
                guard let f = tm[k] else { return nil }
                let path = c.resolve(try f.string())
                guard FileManager.default.isReadableFile(atPath: path) else { throw f.fail("cannot read \(path)") }
                return path
            }
            cluster.caFile = try file("ca")
            cluster.certFile = try file("cert")
            cluster.keyFile = try file("key")
            guard (cluster.certFile == nil) == (cluster.keyFile == nil) else {
                throw t.fail("a client certificate needs both cert and key")
            }
            guard cluster.endpoints.contains(where: { $0.hasPrefix("https://") }) else {
                throw t.fail("tls is given but no endpoint is https://")
            }
        }
        if let b = m["blocks"] { cluster.blocks = try b.int(1...4096) }
        if let x = m["encap"] {
            switch try x.string() {
            case "vxlan": cluster.encap = .vxlan
            case "mpls-udp", "mplsoudp", "mpls-over-udp": cluster.encap = .mplsOverUDP
            default: throw x.fail("encap must be vxlan or mpls-udp")
            }
        }
        guard c.interfaces.contains(where: { $0.kind == .fabric }) else {
            throw v.fail("cluster mode needs a fabric interface (its address is the node's underlay address)")
        }
        guard c.ipamSlices == 1 else {
            throw v.fail("ipam slices and cluster mode exclude each other: in a cluster, nodes claim blocks")
        }
        return cluster
    }

    static func parseRoute(_ r: YAMLWalker) throws(ConfigError) -> Route {
        let m = try r.mapping(allowed: ["prefix", "interface", "via", "vni", "label", "ecmp", "discard"])
        guard let p = m["prefix"] else { throw r.fail("a route needs a prefix") }
        let text = try p.string()
        var route = Route(prefix4: IPv4Prefix(text), prefix6: nil, target: .discard)
        if route.prefix4 == nil {
            route.prefix6 = IPv6Prefix(text)
            guard route.prefix6 != nil else {
                throw p.fail("'\(text)' is not a prefix (address/length, host bits zero)")
            }
        }
        func member(_ mm: [String: YAMLWalker], _ at: YAMLWalker) throws(ConfigError) -> (String, UInt32) {
            guard let via = mm["via"] else { throw at.fail("a tunnel route needs 'via: NODE'") }
            if let v = mm["vni"] { return (try via.string(), UInt32(try v.int(1...(1 << 24) - 1))) }
            if let l = mm["label"] { return (try via.string(), UInt32(try l.int(16...(1 << 20) - 1))) }
            throw at.fail("a tunnel route needs a vni (VXLAN) or a label (MPLS)")
        }
        let targets = ["interface", "via", "ecmp", "discard"].filter { m[$0] != nil }
        guard targets.count == 1 else { throw r.fail("a route needs exactly one of interface, via, ecmp, discard") }
        if let i = m["interface"] {
            route.target = .interface(try i.string())
        } else if m["via"] != nil {
            let (node, tag) = try member(m, r)
            route.target = .remote(node: node, tag: tag)
        } else if let e = m["ecmp"] {
            var members: [(node: String, tag: UInt32)] = []
            for x in try e.sequence() {
                let xm = try x.mapping(allowed: ["via", "vni", "label"])
                let (node, tag) = try member(xm, x)
                members.append((node, tag))
            }
            guard (1...64).contains(members.count) else { throw e.fail("ECMP needs 1 to 64 members") }
            route.target = .ecmp(members)
        } else if let d = m["discard"] {
            guard try d.bool() else { throw d.fail("discard: true is the only meaning") }
        }
        return route
    }

    static func parseSNAT(_ s: YAMLWalker, workers: Int) throws(ConfigError) -> SNATRange {
        let m = try s.mapping(allowed: ["ports"])
        guard let p = m["ports"] else { throw s.fail("snat needs ports: FIRST-LAST") }
        let text = try p.string()
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let first = UInt16(parts[0].trimmingCharacters(in: .whitespaces)),
            let last = UInt16(parts[1].trimmingCharacters(in: .whitespaces)), first >= 1, first <= last
        else {
            throw p.fail("snat.ports '\(text)' is not a port range FIRST-LAST within 1-65535")
        }
        let r = SNATRange(first: first, last: last)
        for (port, what) in SNATRange.tunnelPorts where (first...last).contains(port) {
            throw p.fail(
                "snat.ports \(r.description) overlaps \(what) \(port): replies to it would be taken for tunnel packets"
            )
        }
        guard r.count >= workers else {
            throw p.fail(
                "snat.ports \(r.description) has fewer ports than workers (\(workers)): each worker needs its own"
            )
        }
        return r
    }

    mutating func parseDefaultNetwork(_ d: YAMLWalker) throws(ConfigError) {
        let m = try d.mapping(allowed: [
            "name", "subnet", "subnet6", "gateway", "gateway6", "vni", "mtu", "ipFabricForwarding", "ipFabricSnat",
        ])
        guard let nameNode = m["name"] else { throw d.fail("defaultNetwork needs a name (its VRF's)") }
        var n = DefaultNetwork(name: try nameNode.string())
        guard !n.name.isEmpty, !n.name.contains("/"), n.name.utf8.count <= 63 else {
            throw nameNode.fail("'\(n.name)' is not a VRF name (1-63 characters, no '/')")
        }
        if let v = m["subnet"] {
            let t = try v.string()
            guard let p = IPv4Prefix(t), p.length <= 30 else {
                throw v.fail("subnet '\(t)' is not an IPv4 prefix of length 30 or less")
            }
            n.subnet4 = p
        }
        if let v = m["subnet6"] {
            let t = try v.string()
            guard let p = IPv6Prefix(t), p.length <= 126 else {
                throw v.fail("subnet6 '\(t)' is not an IPv6 prefix of length 126 or less")
            }
            n.subnet6 = p
        }
        guard n.subnet4 != nil || n.subnet6 != nil else {
            throw d.fail("defaultNetwork needs a subnet (and/or subnet6)")
        }
        if let v = m["gateway"] { n.gateway4 = try v.ipv4() }
        if let v = m["gateway6"] { n.gateway6 = try v.ipv6() }
        if let v = m["vni"] { n.vni = UInt32(try v.int(1...(1 << 24) - 1)) }
        if let v = m["mtu"] { n.mtu = try v.int(576...9000) }
        if let v = m["ipFabricForwarding"] { n.ipFabricForwarding = try v.bool() }
        if let v = m["ipFabricSnat"] { n.ipFabricSnat = try v.bool() }
        if let i = vrfs.firstIndex(where: { $0.name == n.name }) {
            // The VRF exists: it decides the gateway and VNI unless they are given here too.
            if n.gateway4 == nil { n.gateway4 = vrfs[i].gateway4 }
            if n.gateway6 == nil { n.gateway6 = vrfs[i].gateway6 }
            if n.vni == nil { n.vni = vrfs[i].vni }
            guard vrfs[i].gateway4 == nil || vrfs[i].gateway4 == n.gateway4, vrfs[i].vni == nil || vrfs[i].vni == n.vni
            else {
                throw d.fail("defaultNetwork: its gateway/vni differ from VRF '\(n.name)'s")
            }
        }
        if n.gateway4 == nil, let p = n.subnet4 {
            n.gateway4 = IPv4Address(p.address.value | ~IPv4Prefix.mask(Int(p.length)) &- 1)
        }
        if n.gateway6 == nil, let p = n.subnet6 {
            n.gateway6 = IPv6Address(p.address.value | ~IPv6Prefix.mask(Int(p.length)) &- 1)
        }
        if let g = n.gateway4, let p = n.subnet4, !p.contains(g) {
            throw d.fail("defaultNetwork: gateway \(g) is outside \(p)")
        }
        if let g = n.gateway6, let p = n.subnet6, !p.contains(g) {
            throw d.fail("defaultNetwork: gateway6 \(g) is outside \(p)")
        }
        if let i = vrfs.firstIndex(where: { $0.name == n.name }) {
            vrfs[i].gateway4 = n.gateway4
            vrfs[i].gateway6 = n.gateway6
            vrfs[i].vni = n.vni
            vrfs[i].ipFabricForwarding = vrfs[i].ipFabricForwarding || n.ipFabricForwarding
            vrfs[i].ipFabricSnat = vrfs[i].ipFabricSnat || n.ipFabricSnat
        } else {
            let id = (1...UInt16(65534)).first { id in !vrfs.contains { $0.id == id } }!
            var v = VRF(name: n.name, id: id, vni: n.vni, gateway4: n.gateway4, gateway6: n.gateway6)
            v.ipFabricForwarding = n.ipFabricForwarding
            v.ipFabricSnat = n.ipFabricSnat
            vrfs.append(v)
        }
        defaultNetwork = n
    }

    /// Cross-references that single entries cannot check.
    func checkReferences() throws(ConfigError) {
        let fabrics = interfaces.filter { $0.kind == .fabric }
        guard fabrics.count <= 1 else { throw ConfigError("interfaces: only one fabric interface is supported") }
        if !remoteNodes.isEmpty && fabrics.isEmpty {
            throw ConfigError("remoteNodes: tunnels need a fabric interface")
        }
        var labels: [UInt32: String] = [:]
        var addrs: [String: String] = [:]
        var tapNames: [String: String] = [:]
        var podNames: [String: String] = [:]
        for i in interfaces {
            // Caught here rather than half-way through making the taps ("File exists").
            if let t = i.tap {
                if let other = tapNames[t.name] {
                    throw ConfigError("interfaces: \(other) and \(i.name) both use tap name '\(t.name)'")
                }
                tapNames[t.name] = i.name
                let key = "\(t.netns ?? "")/\(t.ifname ?? t.name)"
                if let other = podNames[key], t.netns != nil {
                    throw ConfigError(
                        "interfaces: \(other) and \(i.name) are both '\(t.ifname ?? t.name)' in network namespace '\(t.netns!)'"
                    )
                }
                podNames[key] = i.name
            }
            if i.kind == .pod, let vrf = vrfs.first(where: { $0.name == i.vrf }) {
                // The pod would answer for its own gateway and reach nothing beyond it.
                if let a = i.ipv4, a == vrf.gateway4 {
                    throw ConfigError("interfaces: \(i.name) has address \(a), the gateway of VRF \(vrf.name)")
                }
                if let a = i.ipv6, a == vrf.gateway6 {
                    throw ConfigError("interfaces: \(i.name) has address \(a), the gateway of VRF \(vrf.name)")
                }
            }
            if let l = i.label {
                if let other = labels[l] {
                    throw ConfigError("interfaces: label \(l) is given to both \(other) and \(i.name)")
                }
                labels[l] = i.name
            }
            for a in [i.ipv4?.description, i.ipv6?.description].compactMap({ $0 }) {
                let key = "\(i.vrf ?? "-")/\(a)"
                if let other = addrs[key] {
                    throw ConfigError("interfaces: \(i.name) and \(other) both have address \(a)")
                }
                addrs[key] = i.name
            }
        }
        try checkFabricServices(fabrics.first)
        var vnis: Set<UInt32> = []
        for v in vrfs {
            if let n = v.vni, !vnis.insert(n).inserted { throw ConfigError("vrfs: VNI \(n) is given to two VRFs") }
            for r in v.routes {
                switch r.target {
                case .interface(let n):
                    guard let itf = interfaces.first(where: { $0.name == n }) else {
                        throw ConfigError("vrfs.\(v.name): route \(r.prefixText): no interface named '\(n)'")
                    }
                    guard itf.kind == .pod else {
                        throw ConfigError("vrfs.\(v.name): route \(r.prefixText): '\(n)' is not a pod interface")
                    }
                case .remote(let node, _):
                    try checkNode(node, v, r)
                case .ecmp(let ms):
                    for m in ms { try checkNode(m.node, v, r) }
                case .discard: break
                }
            }
        }
    }

    /// The name of the VRF that routes the underlay itself (made when anything needs it).
    public static let underlayVRFName = "ip-fabric"

    /// Whether the node routes untunneled traffic on the fabric (an underlay VRF).
    public var needsUnderlayVRF: Bool {
        snat != nil || vrfs.contains { $0.ipFabricForwarding || $0.ipFabricSnat }
    }

    /// IP-fabric forwarding and fabric SNAT: what they need from the rest of the config.
    func checkFabricServices(_ fabric: Interface?) throws(ConfigError) {
        for v in vrfs where v.ipFabricSnat || v.ipFabricForwarding {
            let what = v.name == defaultNetwork?.name ? "defaultNetwork" : "vrfs.\(v.name)"
            if v.ipFabricSnat && v.ipFabricForwarding {
                throw ConfigError(
                    "\(what): ipFabricForwarding and ipFabricSnat exclude each other (a network routed on the fabric needs no translation)"
                )
            }
            let key = v.ipFabricSnat ? "ipFabricSnat" : "ipFabricForwarding"
            guard fabric?.ipv4 != nil else {
                throw ConfigError("\(what): \(key) needs a fabric interface with the node's underlay address")
            }
            if v.ipFabricSnat && snat == nil {
                throw ConfigError("\(what): ipFabricSnat needs the node's port range (snat: { ports: FIRST-LAST })")
            }
        }
        if let r = snat, fabric?.ipv4 == nil {
            throw ConfigError(
                "snat: the ports \(r.description) translate to the node's underlay address; there is no fabric interface with one"
            )
        }
        if needsUnderlayVRF, vrfs.contains(where: { $0.name == Self.underlayVRFName }) {
            throw ConfigError("vrfs: '\(Self.underlayVRFName)' is the name of the node's underlay VRF")
        }
    }

    func checkNode(_ node: String, _ v: VRF, _ r: Route) throws(ConfigError) {
        guard remoteNodes.contains(where: { $0.name == node }) else {
            throw ConfigError("vrfs.\(v.name): route \(r.prefixText): no remote node named '\(node)'")
        }
    }
}
