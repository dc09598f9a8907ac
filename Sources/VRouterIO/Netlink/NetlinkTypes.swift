// What the netlink calls take and return: addresses of either family, interface
// addresses (address + prefix length, host bits kept), routes, and what a link dump says.

import VRouterCore

/// An IPv4 or IPv6 address.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    public init?(_ text: some StringProtocol) {
        if let a = IPv4Address(text) {
            self = .v4(a)
        } else if let a = IPv6Address(text) {
            self = .v6(a)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .v4(let a): a.description
        case .v6(let a): a.description
        }
    }

    public var isIPv4: Bool { if case .v4 = self { true } else { false } }
    var family: UInt8 { isIPv4 ? UInt8(AF_INET_VALUE) : UInt8(AF_INET6_VALUE) }
    var bitWidth: Int { isIPv4 ? 32 : 128 }

    /// Network byte order, as netlink carries it.
    var bytes: [UInt8] {
        switch self {
        case .v4(let a): withUnsafeBytes(of: a.value.bigEndian) { Array($0) }
        case .v6(let a): withUnsafeBytes(of: a.value.bigEndian) { Array($0) }
        }
    }

    init?(bytes p: UnsafeRawPointer, count: Int) {
        switch count {
        case 4: self = .v4(IPv4Address(p.loadUnaligned(as: UInt32.self).bigEndian))
        case 16: self = .v6(IPv6Address(p.loadUnaligned(as: UInt128.self).bigEndian))
        default: return nil
        }
    }
}

// AF_INET/AF_INET6 without importing Glibc's Int32 spellings everywhere.
let AF_INET_VALUE: Int32 = 2
let AF_INET6_VALUE: Int32 = 10

/// An IPv4 or IPv6 prefix in canonical form.
public enum IPPrefix: Hashable, Sendable, CustomStringConvertible {
    case v4(IPv4Prefix)
    case v6(IPv6Prefix)

    public static let defaultIPv4 = IPPrefix.v4(IPv4Prefix(.any, length: 0)!)
    public static let defaultIPv6 = IPPrefix.v6(IPv6Prefix(.any, length: 0)!)

    /// "198.51.100.0/24", "2001:db8::/32", or a bare address (a host route).
    public init?(_ text: some StringProtocol) {
        if let p = IPv4Prefix(text) {
            self = .v4(p)
        } else if let p = IPv6Prefix(text) {
            self = .v6(p)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .v4(let p): p.description
        case .v6(let p): p.description
        }
    }

    public var address: IPAddress {
        switch self {
        case .v4(let p): .v4(p.address)
        case .v6(let p): .v6(p.address)
        }
    }

    public var length: UInt8 {
        switch self {
        case .v4(let p): p.length
        case .v6(let p): p.length
        }
    }

    public var isIPv4: Bool { if case .v4 = self { true } else { false } }
}

/// An address on an interface: the address itself and its subnet's length
/// ("203.0.113.2/24" — host bits are the point here, unlike IPPrefix).
public struct InterfaceAddress: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var prefixLength: UInt8

    public init(_ address: IPAddress, prefixLength: Int) {
        precondition(
            prefixLength >= 0 && prefixLength <= address.bitWidth,
            "prefix length \(prefixLength) too long for \(address)"
        )
        self.address = address
        self.prefixLength = UInt8(prefixLength)
    }

    /// "203.0.113.2/24", "2001:db8::2/64"; a bare address means a host address (/32, /128).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let a = IPAddress(parts[0]) else { return nil }
        var length = a.bitWidth
        if parts.count == 2 {
            guard let l = Int(parts[1]), l >= 0, l <= a.bitWidth, parts[1].utf8.count <= 3 else { return nil }
            length = l
        }
        self.init(a, prefixLength: length)
    }

    public var description: String { "\(address)/\(prefixLength)" }
}

/// A route in one routing table. Added routes and listed routes use the same type, so a
/// test can add some and find them again in a dump.
public struct Route: Hashable, Sendable, CustomStringConvertible {
    public var destination: IPPrefix
    public var gateway: IPAddress?
    /// Output interface by name (the name in the namespace the route lives in).
    public var device: String?
    /// RTNH_F_ONLINK: the gateway is on the link even if no address's subnet covers it
    /// (pods route everything to a gateway outside their /32).
    public var onlink: Bool
    /// RTA_PREFSRC: the source address for locally originated packets.
    public var preferredSource: IPAddress?
    public var metric: UInt32?
    /// RT_TABLE_MAIN (254) unless said otherwise.
    public var table: UInt32
    /// Who made the route: RTPROT_STATIC (4) for ours, RTPROT_KERNEL (2) for connected routes.
    public var proto: UInt8

    public static let mainTable: UInt32 = 254
    public static let protoKernel: UInt8 = 2
    public static let protoStatic: UInt8 = 4

    public init(
        _ destination: IPPrefix,
        via gateway: IPAddress? = nil,
        device: String? = nil,
        onlink: Bool = false,
        preferredSource: IPAddress? = nil,
        metric: UInt32? = nil,
        table: UInt32 = Route.mainTable,
        proto: UInt8 = Route.protoStatic
    ) {
        self.destination = destination
        self.gateway = gateway
        self.device = device
        self.onlink = onlink
        self.preferredSource = preferredSource
        self.metric = metric
        self.table = table
        self.proto = proto
    }

    public var description: String {
        var s = destination.length == 0 ? "default" : destination.description
        if !destination.isIPv4 && destination.length == 0 { s = "default (IPv6)" }
        if let gateway { s += " via \(gateway)" }
        if let device { s += " dev \(device)" }
        if let preferredSource { s += " src \(preferredSource)" }
        if let metric { s += " metric \(metric)" }
        if table != Self.mainTable { s += " table \(table)" }
        if onlink { s += " onlink" }
        return s
    }
}

/// One interface as RTM_GETLINK reports it.
public struct LinkInfo: Hashable, Sendable, CustomStringConvertible {
    public var index: Int32
    public var name: String
    /// IFLA_INFO_KIND: "veth", "tun", "bridge"…; nil for physical devices and loopback.
    public var kind: String?
    public var mac: MACAddress?
    public var mtu: UInt32
    /// IFF_* flags (IFF_UP = 1).
    public var flags: UInt32
    /// IFLA_LINK: for a veth, its peer's index (in the peer's namespace); nil when the
    /// kernel leaves it out because it equals `index`.
    public var peerIndex: Int32?
    /// IFLA_PROMISCUITY: how many holders want the device promiscuous (PACKET_MR_PROMISC
    /// memberships count here; the IFF_PROMISC bit in `flags` is only `ip link set promisc`).
    public var promiscuity: UInt32 = 0
    /// IFLA_TXQLEN (for a tap: how many frames wait for the reader before drops).
    public var txQueueLength: UInt32 = 0
    /// IFLA_GROUP: the interface group (0, the default, unless someone set one).
    public var group: UInt32 = 0
    /// IFLA_STATS64, as the kernel counts for this device.
    public var statistics = LinkStatistics()

    public var isUp: Bool { flags & 1 != 0 }

    public var description: String {
        var s = "\(index): \(name)"
        if let kind { s += " (\(kind))" }
        if let mac { s += " \(mac)" }
        s += " mtu \(mtu) \(isUp ? "up" : "down")"
        return s
    }
}

/// The device counters from IFLA_STATS64 (rtnl_link_stats64's first eight fields).
public struct LinkStatistics: Hashable, Sendable {
    public var rxPackets: UInt64 = 0
    public var txPackets: UInt64 = 0
    public var rxBytes: UInt64 = 0
    public var txBytes: UInt64 = 0
    public var rxErrors: UInt64 = 0
    public var txErrors: UInt64 = 0
    public var rxDropped: UInt64 = 0
    public var txDropped: UInt64 = 0
    public init() {}
}

/// One address as RTM_GETADDR reports it.
public struct AddressInfo: Hashable, Sendable, CustomStringConvertible {
    public var interfaceIndex: Int32
    public var interface: String
    public var address: InterfaceAddress
    /// RT_SCOPE_*: 0 universe, 253 link, 254 host.
    public var scope: UInt8

    public var description: String { "\(interface): \(address) scope \(scope)" }
}
