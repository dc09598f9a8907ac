// The control API's resources, as JSON bodies. Names follow the config file's keys
// (camelCase); addresses are text. Requests decode strictly: an unknown field is an
// error naming it (see StrictJSON), so a typo never silently does nothing.

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
    public var defaultRoute: Bool?
    public var tap: TapSpec
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
}

public struct VRFSpec: Codable, Sendable, Equatable {
    public var name: String
    public var vni: UInt32?
    public var gateway: String?
    public var gateway6: String?
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
}

public struct RouteMember: Codable, Sendable, Equatable {
    public var via: String
    public var vni: UInt32?
    public var label: UInt32?
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
    public init(prefix: String, interface: String? = nil, via: String? = nil, vni: UInt32? = nil, label: UInt32? = nil,
                ecmp: [RouteMember]? = nil, discard: Bool? = nil) {
        self.prefix = prefix
        self.interface = interface
        self.via = via
        self.vni = vni
        self.label = label
        self.ecmp = ecmp
        self.discard = discard
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
}

public struct RouteChangeResult: Codable, Sendable, Equatable {
    public var added: Int
    public var deleted: Int
    public var tablesVersion: UInt64
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
}

public struct NexthopMember: Codable, Sendable, Equatable {
    public var nexthop: UInt32
    public var label: UInt32
}

public struct LabelInfo: Codable, Sendable, Equatable {
    public var label: UInt32
    public var nexthop: UInt32
    public var interface: String?
}

public struct VNIInfo: Codable, Sendable, Equatable {
    public var vni: UInt32
    public var vrf: String
}

public struct RemoteNodeSpec: Codable, Sendable, Equatable {
    public var name: String
    public var address: String
    public var encap: String
    public var mac: String?
    public var innerMAC: String?
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
}

public struct DropStatsInfo: Codable, Sendable, Equatable {
    public var total: UInt64
    public var reasons: [String: UInt64]
    public var ports: [String: UInt64]
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
}
