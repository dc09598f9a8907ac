// The control API's resources, as JSON bodies. Names follow the config file's keys
// (camelCase); addresses are text. Requests decode strictly: an unknown field is an
// error naming it (see StrictJSON), so a typo never silently does nothing. The request
// types therefore spell out their decoding (one keyed container, unknown keys refused).

import VRouterCore

/// An API failure: an HTTP status and a message naming the problem.
public struct APIError: Error, CustomStringConvertible, Sendable, Codable {
    public var status: Int
    public var message: String
    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }
    public var description: String { message }
    public static func badRequest(_ m: String) -> APIError { APIError(400, m) }
    public static func notFound(_ m: String) -> APIError { APIError(404, m) }
    public static func conflict(_ m: String) -> APIError { APIError(409, m) }
}

/// Every error answer's body.
public struct ErrorBody: Codable, Sendable {
    public var error: String
    public init(error: String) { self.error = error }
}

public struct TapSpec: Codable, Sendable, Equatable {
    public var name: String
    public var netns: String?
    public var ifname: String?
    public var persistent: Bool?
    public init(name: String, netns: String? = nil, ifname: String? = nil, persistent: Bool? = nil) {
        self.name = name
        self.netns = netns
        self.ifname = ifname
        self.persistent = persistent
    }
    enum CodingKeys: String, CodingKey { case name, netns, ifname, persistent }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        netns = try c.decodeIfPresent(String.self, forKey: .netns)
        ifname = try c.decodeIfPresent(String.self, forKey: .ifname)
        persistent = try c.decodeIfPresent(Bool.self, forKey: .persistent)
    }
}

/// A pod interface to add (the fabric comes from the config file only).
public struct InterfaceSpec: Codable, Sendable, Equatable {
    public var name: String
    public var vrf: String
    public var mac: String
    public var mtu: Int?
    /// "192.0.2.10" or "192.0.2.10/24" (the length the pod side gets).
    public var ipv4: String?
    public var ipv6: String?
    public var label: UInt32?
    public var antiSpoofing: Bool?
    /// The tap with a virtio-net header and TSO/USO (nil: on).
    public var offloads: Bool?
    public var defaultRoute: Bool?
    public var tap: TapSpec
    public init(
        name: String,
        vrf: String,
        mac: String,
        mtu: Int? = nil,
        ipv4: String? = nil,
        ipv6: String? = nil,
        label: UInt32? = nil,
        antiSpoofing: Bool? = nil,
        offloads: Bool? = nil,
        defaultRoute: Bool? = nil,
        tap: TapSpec
    ) {
        self.name = name
        self.vrf = vrf
        self.mac = mac
        self.mtu = mtu
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.label = label
        self.antiSpoofing = antiSpoofing
        self.offloads = offloads
        self.defaultRoute = defaultRoute
        self.tap = tap
    }
    enum CodingKeys: String, CodingKey {
        case name, vrf, mac, mtu, ipv4, ipv6, label, antiSpoofing, offloads, defaultRoute, tap
    }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        vrf = try c.decode(String.self, forKey: .vrf)
        mac = try c.decode(String.self, forKey: .mac)
        mtu = try c.decodeIfPresent(Int.self, forKey: .mtu)
        ipv4 = try c.decodeIfPresent(String.self, forKey: .ipv4)
        ipv6 = try c.decodeIfPresent(String.self, forKey: .ipv6)
        label = try c.decodeIfPresent(UInt32.self, forKey: .label)
        antiSpoofing = try c.decodeIfPresent(Bool.self, forKey: .antiSpoofing)
        offloads = try c.decodeIfPresent(Bool.self, forKey: .offloads)
        defaultRoute = try c.decodeIfPresent(Bool.self, forKey: .defaultRoute)
        tap = try c.decode(TapSpec.self, forKey: .tap)
    }
}

public struct InterfaceInfo: Codable, Sendable, Equatable {
    public var id: Int
    public var name: String
    public var kind: String
    public var vrf: String?
    public var mac: String
    public var mtu: Int
    public var ipv4: String?
    public var ipv6: String?
    public var label: UInt32?
    public var tap: TapSpec?
    public var device: String?
    public var rxPackets: UInt64
    public var rxBytes: UInt64
    public var txPackets: UInt64
    public var txBytes: UInt64
    public var drops: UInt64
    /// The fabric only: frames the kernel dropped before vrouterd read them (its AF_PACKET
    /// RX ring was full), PACKET_STATISTICS' tp_drops summed over the workers' sockets.
    public var ringDrops: UInt64?
    /// What the port negotiated (a tap's TUNSETOFFLOAD flags: csum, tso4...; the fabric's
    /// uso-rx, uso-tx); empty when off.
    public var offloads: [String]?
    public init(
        id: Int,
        name: String,
        kind: String,
        vrf: String? = nil,
        mac: String,
        mtu: Int,
        ipv4: String? = nil,
        ipv6: String? = nil,
        label: UInt32? = nil,
        tap: TapSpec? = nil,
        device: String? = nil,
        rxPackets: UInt64,
        rxBytes: UInt64,
        txPackets: UInt64,
        txBytes: UInt64,
        drops: UInt64,
        ringDrops: UInt64? = nil,
        offloads: [String]? = nil
    ) {
        self.id = id
        self.name = name
        self.kind = kind
        self.vrf = vrf
        self.mac = mac
        self.mtu = mtu
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.label = label
        self.tap = tap
        self.device = device
        self.rxPackets = rxPackets
        self.rxBytes = rxBytes
        self.txPackets = txPackets
        self.txBytes = txBytes
        self.drops = drops
        self.ringDrops = ringDrops
        self.offloads = offloads
    }
}

public struct VRFSpec: Codable, Sendable, Equatable {
    public var name: String
    public var vni: UInt32?
    public var gateway: String?
    public var gateway6: String?
    public init(name: String, vni: UInt32? = nil, gateway: String? = nil, gateway6: String? = nil) {
        self.name = name
        self.vni = vni
        self.gateway = gateway
        self.gateway6 = gateway6
    }
    enum CodingKeys: String, CodingKey { case name, vni, gateway, gateway6 }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        vni = try c.decodeIfPresent(UInt32.self, forKey: .vni)
        gateway = try c.decodeIfPresent(String.self, forKey: .gateway)
        gateway6 = try c.decodeIfPresent(String.self, forKey: .gateway6)
    }
}

public struct VRFInfo: Codable, Sendable, Equatable {
    public var id: Int
    public var name: String
    public var vni: UInt32?
    public var gateway: String?
    public var gateway6: String?
    public var ipv4Routes: Int
    public var ipv6Routes: Int
    public var fibBytes: Int
    public init(
        id: Int,
        name: String,
        vni: UInt32? = nil,
        gateway: String? = nil,
        gateway6: String? = nil,
        ipv4Routes: Int,
        ipv6Routes: Int,
        fibBytes: Int
    ) {
        self.id = id
        self.name = name
        self.vni = vni
        self.gateway = gateway
        self.gateway6 = gateway6
        self.ipv4Routes = ipv4Routes
        self.ipv6Routes = ipv6Routes
        self.fibBytes = fibBytes
    }
}

public struct RouteMember: Codable, Sendable, Equatable {
    public var via: String
    public var vni: UInt32?
    public var label: UInt32?
    public init(via: String, vni: UInt32? = nil, label: UInt32? = nil) {
        self.via = via
        self.vni = vni
        self.label = label
    }
    enum CodingKeys: String, CodingKey { case via, vni, label }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        via = try c.decode(String.self, forKey: .via)
        vni = try c.decodeIfPresent(UInt32.self, forKey: .vni)
        label = try c.decodeIfPresent(UInt32.self, forKey: .label)
    }
}

/// A route to add: exactly one of interface, via (with vni or label), ecmp, discard.
public struct RouteSpec: Codable, Sendable, Equatable {
    public var prefix: String
    public var interface: String?
    public var via: String?
    public var vni: UInt32?
    public var label: UInt32?
    public var ecmp: [RouteMember]?
    public var discard: Bool?
    public init(
        prefix: String,
        interface: String? = nil,
        via: String? = nil,
        vni: UInt32? = nil,
        label: UInt32? = nil,
        ecmp: [RouteMember]? = nil,
        discard: Bool? = nil
    ) {
        self.prefix = prefix
        self.interface = interface
        self.via = via
        self.vni = vni
        self.label = label
        self.ecmp = ecmp
        self.discard = discard
    }
    enum CodingKeys: String, CodingKey { case prefix, interface, via, vni, label, ecmp, discard }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        prefix = try c.decode(String.self, forKey: .prefix)
        interface = try c.decodeIfPresent(String.self, forKey: .interface)
        via = try c.decodeIfPresent(String.self, forKey: .via)
        vni = try c.decodeIfPresent(UInt32.self, forKey: .vni)
        label = try c.decodeIfPresent(UInt32.self, forKey: .label)
        ecmp = try c.decodeIfPresent([RouteMember].self, forKey: .ecmp)
        discard = try c.decodeIfPresent(Bool.self, forKey: .discard)
    }
}

/// A batch of route changes for one VRF, applied all or nothing.
public struct RouteChange: Codable, Sendable, Equatable {
    public var add: [RouteSpec]?
    public var delete: [String]?
    public init(add: [RouteSpec]? = nil, delete: [String]? = nil) {
        self.add = add
        self.delete = delete
    }
    enum CodingKeys: String, CodingKey { case add, delete }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        add = try c.decodeIfPresent([RouteSpec].self, forKey: .add)
        delete = try c.decodeIfPresent([String].self, forKey: .delete)
    }
}

public struct RouteChangeResult: Codable, Sendable, Equatable {
    public var added: Int
    public var deleted: Int
    public var tablesVersion: UInt64
    public init(
        added: Int,
        deleted: Int,
        tablesVersion: UInt64
    ) {
        self.added = added
        self.deleted = deleted
        self.tablesVersion = tablesVersion
    }
}

public struct RouteInfo: Codable, Sendable, Equatable {
    public var prefix: String
    public var nexthop: UInt32
    public var kind: String
    public var interface: String?
    public var via: String?
    public var vni: UInt32?
    public var label: UInt32?
    public var members: [RouteMember]?
    public init(
        prefix: String,
        nexthop: UInt32,
        kind: String,
        interface: String? = nil,
        via: String? = nil,
        vni: UInt32? = nil,
        label: UInt32? = nil,
        members: [RouteMember]? = nil
    ) {
        self.prefix = prefix
        self.nexthop = nexthop
        self.kind = kind
        self.interface = interface
        self.via = via
        self.vni = vni
        self.label = label
        self.members = members
    }
}

public struct NexthopInfo: Codable, Sendable, Equatable {
    public var id: UInt32
    public var kind: String
    public var interface: String?
    public var node: String?
    public var destination: String?
    public var underlayMAC: String?
    public var resolved: Bool?
    public var members: [NexthopMember]?
    public init(
        id: UInt32,
        kind: String,
        interface: String? = nil,
        node: String? = nil,
        destination: String? = nil,
        underlayMAC: String? = nil,
        resolved: Bool? = nil,
        members: [NexthopMember]? = nil
    ) {
        self.id = id
        self.kind = kind
        self.interface = interface
        self.node = node
        self.destination = destination
        self.underlayMAC = underlayMAC
        self.resolved = resolved
        self.members = members
    }
}

public struct NexthopMember: Codable, Sendable, Equatable {
    public var nexthop: UInt32
    public var label: UInt32
    public init(
        nexthop: UInt32,
        label: UInt32
    ) {
        self.nexthop = nexthop
        self.label = label
    }
}

public struct LabelInfo: Codable, Sendable, Equatable {
    public var label: UInt32
    public var nexthop: UInt32
    public var interface: String?
    public init(
        label: UInt32,
        nexthop: UInt32,
        interface: String? = nil
    ) {
        self.label = label
        self.nexthop = nexthop
        self.interface = interface
    }
}

public struct VNIInfo: Codable, Sendable, Equatable {
    public var vni: UInt32
    public var vrf: String
    public init(
        vni: UInt32,
        vrf: String
    ) {
        self.vni = vni
        self.vrf = vrf
    }
}

public struct RemoteNodeSpec: Codable, Sendable, Equatable {
    public var name: String
    public var address: String
    public var encap: String
    public var mac: String?
    public var innerMAC: String?
    public init(name: String, address: String, encap: String, mac: String? = nil, innerMAC: String? = nil) {
        self.name = name
        self.address = address
        self.encap = encap
        self.mac = mac
        self.innerMAC = innerMAC
    }
    enum CodingKeys: String, CodingKey { case name, address, encap, mac, innerMAC }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        address = try c.decode(String.self, forKey: .address)
        encap = try c.decode(String.self, forKey: .encap)
        mac = try c.decodeIfPresent(String.self, forKey: .mac)
        innerMAC = try c.decodeIfPresent(String.self, forKey: .innerMAC)
    }
}

/// A remote node as the node sees it: its tunnel nexthop and whether the underlay next
/// hop's MAC is known (resolved by ARP on the fabric, or given).
public struct RemoteNodeInfo: Codable, Sendable, Equatable {
    public var name: String
    public var address: String
    public var encap: String
    public var mac: String?
    public var innerMAC: String
    public var nexthop: UInt32
    public var underlayMAC: String?
    public var resolved: Bool
    public init(
        name: String,
        address: String,
        encap: String,
        mac: String? = nil,
        innerMAC: String,
        nexthop: UInt32,
        underlayMAC: String? = nil,
        resolved: Bool
    ) {
        self.name = name
        self.address = address
        self.encap = encap
        self.mac = mac
        self.innerMAC = innerMAC
        self.nexthop = nexthop
        self.underlayMAC = underlayMAC
        self.resolved = resolved
    }
}

public struct FlowInfo: Codable, Sendable, Equatable {
    public var worker: Int
    public var vrf: String
    public var proto: UInt8
    public var source: String
    public var sourcePort: UInt16
    public var destination: String
    public var destinationPort: UInt16
    public var nexthop: UInt32
    public var label: UInt32
    public var packets: UInt64
    public var bytes: UInt64
    public var idleMilliseconds: UInt32
    public var closing: Bool
    /// Fabric SNAT: "snat ADDRESS:PORT" on a translated flow's forward entry (what the
    /// source becomes), "dnat ADDRESS:PORT" on its reverse entry (what the destination
    /// becomes); nil for flows that are not translated.
    public var translation: String?
    public init(
        worker: Int,
        vrf: String,
        proto: UInt8,
        source: String,
        sourcePort: UInt16,
        destination: String,
        destinationPort: UInt16,
        nexthop: UInt32,
        label: UInt32,
        packets: UInt64,
        bytes: UInt64,
        idleMilliseconds: UInt32,
        closing: Bool,
        translation: String? = nil
    ) {
        self.worker = worker
        self.vrf = vrf
        self.proto = proto
        self.source = source
        self.sourcePort = sourcePort
        self.destination = destination
        self.destinationPort = destinationPort
        self.nexthop = nexthop
        self.label = label
        self.packets = packets
        self.bytes = bytes
        self.idleMilliseconds = idleMilliseconds
        self.closing = closing
        self.translation = translation
    }
}

public struct DropStatsInfo: Codable, Sendable, Equatable {
    public var total: UInt64
    public var reasons: [String: UInt64]
    public var ports: [String: UInt64]
    public init(
        total: UInt64,
        reasons: [String: UInt64],
        ports: [String: UInt64]
    ) {
        self.total = total
        self.reasons = reasons
        self.ports = ports
    }
}

public struct StatusInfo: Codable, Sendable, Equatable {
    public var node: String
    public var version: String
    public var uptimeSeconds: Double
    public var workers: Int
    public var interfaces: Int
    public var vrfs: Int
    public var routes: Int
    public var nexthops: Int
    public var flows: Int
    public var tablesVersion: UInt64
    public var stateDirectory: String?
    public var healthy: Bool
    /// Where the API and the metrics endpoint listen (filled in by the API server).
    public var socket: String?
    public var metrics: String?
    public init(
        node: String,
        version: String,
        uptimeSeconds: Double,
        workers: Int,
        interfaces: Int,
        vrfs: Int,
        routes: Int,
        nexthops: Int,
        flows: Int,
        tablesVersion: UInt64,
        stateDirectory: String? = nil,
        healthy: Bool,
        socket: String? = nil,
        metrics: String? = nil
    ) {
        self.node = node
        self.version = version
        self.uptimeSeconds = uptimeSeconds
        self.workers = workers
        self.interfaces = interfaces
        self.vrfs = vrfs
        self.routes = routes
        self.nexthops = nexthops
        self.flows = flows
        self.tablesVersion = tablesVersion
        self.stateDirectory = stateDirectory
        self.healthy = healthy
        self.socket = socket
        self.metrics = metrics
    }
}
