// The pod annotation `k8s.v1.cni.cncf.io/networks` (multi-net spec §4.1) in both forms:
//   comma form  "left-network,extns/data-network@net5"   (the @ifname suffix is the
//               net-attach-def client's extension, which runtimes' users expect)
//   JSON list   [{"name":"network-a","interface":"a0","ips":["192.0.2.10/24"],...}]
// It is JSON when it contains '[', '{' or '"' (the reference parser's rule). Unlike the
// spec's "invalid means ignored", a bad annotation fails the ADD (as Multus does): a pod
// silently missing a network is worse than one that does not start.

import VRouterCore

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public struct NetworkSelection: Codable, Sendable, Equatable {
    public var name: String
    public var namespace: String?
    public var interface: String?
    public var ips: [String]?
    public var mac: String?
    public var defaultRoute: [String]?
    public var cniArgs: JSONObject?

    public init(
        name: String,
        namespace: String? = nil,
        interface: String? = nil,
        ips: [String]? = nil,
        mac: String? = nil,
        defaultRoute: [String]? = nil,
        cniArgs: JSONObject? = nil
    ) {
        self.name = name
        self.namespace = namespace
        self.interface = interface
        self.ips = ips
        self.mac = mac
        self.defaultRoute = defaultRoute
        self.cniArgs = cniArgs
    }

    enum CodingKeys: String, CodingKey {
        case name, namespace, interface, ips, mac
        case defaultRoute = "default-route"
        case cniArgs = "cni-args"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        namespace = try c.decodeIfPresent(String.self, forKey: .namespace)
        interface = try c.decodeIfPresent(String.self, forKey: .interface)
        ips = try c.decodeIfPresent([String].self, forKey: .ips)
        mac = try c.decodeIfPresent(String.self, forKey: .mac)
        defaultRoute = try c.decodeIfPresent([String].self, forKey: .defaultRoute)
        cniArgs = try c.decodeIfPresent(JSONValue.self, forKey: .cniArgs).flatMap { v in
            guard let o = v.object else {
                throw DecodingError.dataCorruptedError(
                    forKey: .cniArgs,
                    in: c,
                    debugDescription: "cni-args must be an object"
                )
            }
            return o
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encodeIfPresent(namespace, forKey: .namespace)
        try c.encodeIfPresent(interface, forKey: .interface)
        try c.encodeIfPresent(ips, forKey: .ips)
        try c.encodeIfPresent(mac, forKey: .mac)
        try c.encodeIfPresent(defaultRoute, forKey: .defaultRoute)
        try c.encodeIfPresent(cniArgs.map { JSONValue.object($0) }, forKey: .cniArgs)
    }

    /// "namespace/name" (the namespace filled in).
    public var key: String { "\(namespace ?? "")/\(name)" }
}

public enum NetworkAnnotation {
    public static let networksKey = "k8s.v1.cni.cncf.io/networks"
    public static let statusKey = "k8s.v1.cni.cncf.io/network-status"
    public static let podAnnotationsCapability = "io.kubernetes.cri.pod-annotations"

    /// Parses and checks the annotation. Every element gets its namespace (the pod's when
    /// absent). Errors name the element and what is wrong.
    public static func parse(_ value: String, podNamespace: String) throws(CNIError) -> [NetworkSelection] {
        let trimmed = value.trimmingWhitespace()
        if trimmed.isEmpty { return [] }
        var out: [NetworkSelection]
        if trimmed.utf8.contains(where: {
            $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "{") || $0 == UInt8(ascii: "\"")
        }) {
            do {
                out = try JSONDecoder().decode([NetworkSelection].self, from: Data(trimmed.utf8))
            } catch {
                throw CNIError(
                    .invalidNetworkConfig,
                    "annotation \(networksKey) is not a valid JSON list of networks",
                    details: describe(error)
                )
            }
        } else {
            out = []
            for item in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
                let text = item.trimmingWhitespace()
                guard !text.isEmpty else {
                    throw CNIError(
                        .invalidNetworkConfig,
                        "annotation \(networksKey): an empty network name in '\(value)'"
                    )
                }
                let slash = text.split(separator: "/", omittingEmptySubsequences: false)
                guard slash.count <= 2 else {
                    throw CNIError(
                        .invalidNetworkConfig,
                        "annotation \(networksKey): '\(text)' is not NAME, NAMESPACE/NAME or NAME@IFNAME"
                    )
                }
                let rest = slash.last!
                let at = rest.split(separator: "@", omittingEmptySubsequences: false)
                guard at.count <= 2 else {
                    throw CNIError(.invalidNetworkConfig, "annotation \(networksKey): '\(text)' has more than one '@'")
                }
                var sel = NetworkSelection(name: String(at[0]))
                if slash.count == 2 { sel.namespace = String(slash[0]) }
                if at.count == 2 { sel.interface = String(at[1]) }
                out.append(sel)
            }
        }
        try validate(&out, podNamespace: podNamespace)
        return out
    }

    /// The checks both forms share: names, interfaces (valid, unique, not eth0), ips, mac,
    /// at most one default-route.
    public static func validate(_ list: inout [NetworkSelection], podNamespace: String) throws(CNIError) {
        var interfaces: Set<String> = []
        var defaultRoutes = 0
        for i in list.indices {
            let what = "annotation \(networksKey): network \(i + 1)"
            guard isDNSLabel(list[i].name) else {
                throw CNIError(
                    .invalidNetworkConfig,
                    "\(what): '\(list[i].name)' is not a valid network name (a DNS-1123 label)"
                )
            }
            if let ns = list[i].namespace, !ns.isEmpty {
                guard isDNSLabel(ns) else {
                    throw CNIError(.invalidNetworkConfig, "\(what) (\(list[i].name)): '\(ns)' is not a valid namespace")
                }
            } else {
                list[i].namespace = podNamespace
            }
            if let ifname = list[i].interface {
                if let why = CNIEnvironment.invalidInterfaceName(ifname) {
                    throw CNIError(.invalidNetworkConfig, "\(what) (\(list[i].key)): interface '\(ifname)': \(why)")
                }
                guard interfaces.insert(ifname).inserted else {
                    throw CNIError(
                        .invalidNetworkConfig,
                        "\(what) (\(list[i].key)): interface '\(ifname)' is requested more than once"
                    )
                }
            }
            if let ips = list[i].ips {
                guard !ips.isEmpty else {
                    throw CNIError(.invalidNetworkConfig, "\(what) (\(list[i].key)): ips is empty")
                }
                for ip in ips where parseIP(ip) == nil {
                    throw CNIError(
                        .invalidNetworkConfig,
                        "\(what) (\(list[i].key)): '\(ip)' is not an IP address (optionally with /prefix)"
                    )
                }
            }
            if let m = list[i].mac {
                guard let mac = MACAddress(m), !mac.isMulticast, mac != .zero else {
                    throw CNIError(
                        .invalidNetworkConfig,
                        "\(what) (\(list[i].key)): mac '\(m)' is not a unicast Ethernet MAC address"
                    )
                }
            }
            if let gws = list[i].defaultRoute {
                defaultRoutes += 1
                guard defaultRoutes == 1 else {
                    throw CNIError(
                        .invalidNetworkConfig,
                        "annotation \(networksKey): more than one network asks for default-route"
                    )
                }
                for g in gws where IPv4Address(g) == nil && IPv6Address(g) == nil {
                    throw CNIError(
                        .invalidNetworkConfig,
                        "\(what) (\(list[i].key)): default-route '\(g)' is not an IP address"
                    )
                }
                guard gws.filter({ IPv4Address($0) != nil }).count <= 1,
                    gws.filter({ IPv6Address($0) != nil }).count <= 1
                else {
                    throw CNIError(
                        .invalidNetworkConfig,
                        "\(what) (\(list[i].key)): default-route has more than one IPv4 or IPv6 gateway"
                    )
                }
            }
        }
    }

    /// "a.b.c.d", "a.b.c.d/len", "v6", "v6/len": (is IPv6, address bits, prefix length or nil).
    public static func parseIP(_ text: String) -> (v6: Bool, value: UInt128, length: Int?)? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { return nil }
        var length: Int?
        if parts.count == 2 {
            guard let l = Int(parts[1]) else { return nil }
            length = l
        }
        if let a = IPv4Address(parts[0]) {
            if let l = length, !(0...32).contains(l) { return nil }
            return (false, UInt128(a.value), length)
        }
        if let a = IPv6Address(parts[0]) {
            if let l = length, !(0...128).contains(l) { return nil }
            return (true, a.value, length)
        }
        return nil
    }

    /// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 bytes.
    public static func isDNSLabel(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard !b.isEmpty, b.count <= 63 else { return false }
        func alnum(_ c: UInt8) -> Bool { (c >= 48 && c <= 57) || (c >= 97 && c <= 122) }
        guard alnum(b.first!), alnum(b.last!) else { return false }
        return b.allSatisfy { alnum($0) || $0 == UInt8(ascii: "-") }
    }

    package static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let k, let ctx):
            return "missing '\(k.stringValue)'\(path(ctx.codingPath))"
        case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx):
            return "wrong type\(path(ctx.codingPath)): \(ctx.debugDescription)"
        case DecodingError.dataCorrupted(let ctx):
            return "\(ctx.debugDescription)\(path(ctx.codingPath))"
        default:
            return "\(error)"
        }
    }

    static func path(_ p: [any CodingKey]) -> String {
        p.isEmpty ? "" : " at " + p.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }
}
