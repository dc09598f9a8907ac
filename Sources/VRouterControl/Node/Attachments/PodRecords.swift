// What vrouterd keeps of the pods attached through the CNI shim: one record per sandbox
// (container ID), journaled, with every attachment as made at ADD. Addresses are typed
// from the annotation or the pool to the tap's configuration; the journal and cni.json
// keep them as text ("192.0.2.5/24"), as they always did.

import VRouterAPI
import VRouterCore

/// One pod's attachments for one sandbox (container ID), as recorded at ADD.
public struct PodRecord: Codable, Sendable, Equatable {
    public var containerID: String
    public var netns: String
    public var pod: CNIPod
    public var attachments: [PodAttachment]
    /// The delegates' results are in (the ADD completed).
    public var committed: Bool
    /// DEL released the vRouter attachments; the delegated ones are being DELeted.
    public var releasing: Bool?
    public var key: String { pod.key ?? containerID }

    /// The node interfaces (vifs) of its vRouter attachments still attached.
    var vifs: [String] { attachments.compactMap { $0.delegate == nil && $0.detached != true ? $0.interface : nil } }
}

public struct PodAttachment: Codable, Sendable, Equatable {
    public var network: String
    public var ifname: String
    public var isDefault: Bool
    /// vRouter attachments: the node interface (vif), its VRF, host-side tap name and MTU,
    /// and what the pod sees.
    public var interface: String?
    public var vrf: String?
    public var tap: String?
    public var mtu: Int?
    /// The MPLS label other nodes put on MPLS-over-UDP packets for this interface.
    public var label: UInt32?
    public var mac: MACAddress?
    public var ipv4: PodAddress<IPv4Address>?
    public var ipv6: PodAddress<IPv6Address>?
    public var gateway4: IPv4Address?
    public var gateway6: IPv6Address?
    /// The pod's default route goes through this attachment.
    public var defaultRoute: Bool
    /// The gateways the selection asked for with `default-route`.
    public var requestedDefaultRoute: [String]?
    /// The network was force-deleted under the pod: nothing left to release.
    public var detached: Bool?
    public var delegate: CNIDelegate?

    init(network: String, ifname: String, isDefault: Bool, defaultRoute: Bool) {
        self.network = network
        self.ifname = ifname
        self.isDefault = isDefault
        self.defaultRoute = defaultRoute
    }

    /// Still holds a vif and addresses of vrouterd's (not delegated, not detached).
    var isAttachedVRouterPort: Bool { delegate == nil && detached != true }

    /// The addresses as the pod sees them ("192.0.2.5/24").
    var ips: [String] { [ipv4?.description, ipv6?.description].compactMap { $0 } }

    var wire: CNIAttachment {
        var a = CNIAttachment(network: network, ifname: ifname, isDefault: isDefault)
        a.delegate = delegate
        guard delegate == nil else { return a }
        a.mac = mac?.description
        a.ips = ips
        a.gateways = [ipv4 != nil ? gateway4?.description : nil, ipv6 != nil ? gateway6?.description : nil]
            .compactMap { $0 }
        if defaultRoute {
            var routes: [CNIResult.Route] = []
            if ipv4 != nil, let g = gateway4 { routes.append(CNIResult.Route(dst: "0.0.0.0/0", gw: g.description)) }
            if ipv6 != nil, let g = gateway6 { routes.append(CNIResult.Route(dst: "::/0", gw: g.description)) }
            a.routes = routes
        }
        return a
    }

    /// The pod port this attachment is on the node: its tap in the pod's namespace under the
    /// name the pod sees, persistent (it outlives vrouterd), with the addresses, MAC, MTU, VRF
    /// and label planned at ADD. Nil for a delegated attachment.
    func port(netns: String) -> PodPort? {
        guard delegate == nil, let name = interface, let vrf, let mac, let tap else { return nil }
        return PodPort(
            name: name,
            vrf: vrf,
            mac: mac,
            mtu: mtu ?? 1500,
            ipv4: ipv4,
            ipv6: ipv6,
            defaultRoute: defaultRoute,
            label: label.map { .fixed($0) } ?? .none,
            tap: PodPort.Device(name: tap, netns: netns, ifname: ifname, persistent: true),
            gateways: (gateway4, gateway6)
        )
    }

    /// This attachment's entry in the pod's network-status (multi-net spec §5).
    var status: NetworkStatusEntry? {
        if let d = delegate {
            guard let r = d.result, let result = try? CNIResult.read(r) else {
                return NetworkStatusEntry(name: network, interface: ifname, ips: nil, mac: nil, default: isDefault)
            }
            let (itf, ips) =
                result.sandboxInterface ?? (
                    CNIResult.Interface(name: ifname), result.ips.filter { $0.interface == nil }
                )
            return NetworkStatusEntry(
                name: network,
                interface: itf.name,
                ips: ips.map(\.address),
                mac: itf.mac,
                default: isDefault,
                defaultRoute: d.defaultRoute
            )
        }
        guard detached != true else { return nil }
        return NetworkStatusEntry(
            name: network,
            interface: ifname,
            ips: ips,
            mac: mac?.description,
            default: isDefault,
            defaultRoute: requestedDefaultRoute
        )
    }
}

/// An address with the prefix length the pod's side of the interface gets: "192.0.2.5/24"
/// (as the journal, cni.json and the CNI result write it).
public struct PodAddress<A: PoolAddress>: Hashable, Sendable, CustomStringConvertible, Codable {
    public var address: A
    public var prefixLength: Int

    public init(_ address: A, prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    /// "a.b.c.d" or "a.b.c.d/len" (a bare address is a host address: /32, /128).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let a = A(parsing: parts[0]) else { return nil }
        var length = A.width
        if parts.count == 2 {
            guard let l = Int(parts[1]), (0...A.width).contains(l) else { return nil }
            length = l
        }
        self.init(a, prefixLength: length)
    }

    public var description: String { "\(address)/\(prefixLength)" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let text = try c.decode(String.self)
        guard let v = Self(text) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "'\(text)' is not an address/length")
        }
        self = v
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// IPv4 and IPv6 addresses as the address pools and pod records handle them: parsed from
/// text, and as the low bits of an integer the pools count with.
public protocol PoolAddress: Hashable, Sendable, CustomStringConvertible {
    /// Address bits: 32 or 128.
    static var width: Int { get }
    init?(parsing text: Substring)
    init(bits: UInt128)
    var bits: UInt128 { get }
}

extension IPv4Address: PoolAddress {
    public static var width: Int { 32 }
    public init?(parsing text: Substring) { self.init(text) }
    public init(bits: UInt128) { self.init(UInt32(truncatingIfNeeded: bits)) }
    public var bits: UInt128 { UInt128(value) }
}

extension IPv6Address: PoolAddress {
    public static var width: Int { 128 }
    public init?(parsing text: Substring) { self.init(text) }
    public init(bits: UInt128) { self.init(bits) }
    public var bits: UInt128 { value }
}
