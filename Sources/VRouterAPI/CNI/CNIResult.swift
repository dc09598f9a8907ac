// The ADD result (types 100/040): interfaces, IPs pointing at them by index, routes, DNS.
// Written in the request's version: 0.3.x/0.4.0 IPs carry "version", 1.x do not. Results
// of delegated plugins are read in whatever version they came (0.3.0 up) and merged.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public struct CNIResult: Sendable, Equatable {
    public struct Interface: Codable, Sendable, Equatable {
        public var name: String
        public var mac: String?
        public var mtu: Int?
        public var sandbox: String?
        public init(name: String, mac: String? = nil, mtu: Int? = nil, sandbox: String? = nil) {
            self.name = name
            self.mac = mac
            self.mtu = mtu
            self.sandbox = sandbox
        }
    }
    public struct IP: Sendable, Equatable {
        public var address: String
        public var gateway: String?
        public var interface: Int?
        public init(address: String, gateway: String? = nil, interface: Int? = nil) {
            self.address = address
            self.gateway = gateway
            self.interface = interface
        }
        public var isIPv6: Bool { address.contains(":") }
    }
    public struct Route: Codable, Sendable, Equatable {
        public var dst: String
        public var gw: String?
        public init(dst: String, gw: String? = nil) {
            self.dst = dst
            self.gw = gw
        }
    }
    public var cniVersion: String
    public var interfaces: [Interface] = []
    public var ips: [IP] = []
    public var routes: [Route] = []
    public var dns: JSONValue?

    public init(cniVersion: String) { self.cniVersion = cniVersion }

    /// The result as `version` wants it.
    public func json(version: String? = nil) -> JSONValue {
        let v = version ?? cniVersion
        var o = JSONObject()
        o["cniVersion"] = .string(v)
        if !interfaces.isEmpty { o["interfaces"] = (try? JSONValue.from(interfaces)) ?? .array([]) }
        if !ips.isEmpty {
            o["ips"] = .array(
                ips.map { ip in
                    var x = JSONObject()
                    if CNIVersion.ipsCarryVersion(v) { x["version"] = .string(ip.isIPv6 ? "6" : "4") }
                    if let i = ip.interface { x["interface"] = .number(Double(i)) }
                    x["address"] = .string(ip.address)
                    if let g = ip.gateway { x["gateway"] = .string(g) }
                    return .object(x)
                }
            )
        }
        if !routes.isEmpty { o["routes"] = (try? JSONValue.from(routes)) ?? .array([]) }
        o["dns"] = dns ?? .object(JSONObject())
        return .object(o)
    }

    /// Reads a result of any version from 0.3.0 on (a delegate's output or a prevResult).
    public static func read(_ v: JSONValue) throws(CNIError) -> CNIResult {
        guard let o = v.object else { throw CNIError(.decodingFailure, "a CNI result must be a JSON object") }
        var r = CNIResult(cniVersion: o["cniVersion"]?.string ?? "1.0.0")
        if let list = o["interfaces"]?.array {
            for i in list {
                guard let name = i["name"]?.string else {
                    throw CNIError(.decodingFailure, "a result interface has no name")
                }
                var itf = Interface(name: name, mac: i["mac"]?.string, sandbox: i["sandbox"]?.string)
                if case .number(let m)? = i["mtu"] { itf.mtu = Int(exactly: m) }
                r.interfaces.append(itf)
            }
        }
        for ip in o["ips"]?.array ?? [] {
            guard let a = ip["address"]?.string else { throw CNIError(.decodingFailure, "a result IP has no address") }
            var x = IP(address: a, gateway: ip["gateway"]?.string)
            if case .number(let n)? = ip["interface"], n >= 0, n < 65536 { x.interface = Int(exactly: n) }
            r.ips.append(x)
        }
        for rt in o["routes"]?.array ?? [] {
            guard let d = rt["dst"]?.string else { throw CNIError(.decodingFailure, "a result route has no dst") }
            r.routes.append(Route(dst: d, gw: rt["gw"]?.string))
        }
        if let d = o["dns"], d != .object(JSONObject()) { r.dns = d }
        return r
    }

    /// Appends `other`'s interfaces, IPs (their indexes moved along) and routes.
    public mutating func append(_ other: CNIResult, keepDefaultRoutes: Bool) {
        let base = interfaces.count
        interfaces += other.interfaces
        for var ip in other.ips {
            if let i = ip.interface { ip.interface = i + base }
            ips.append(ip)
        }
        for r in other.routes where keepDefaultRoutes || (r.dst != "0.0.0.0/0" && r.dst != "::/0") { routes.append(r) }
    }

    /// The first interface with a sandbox and its IPs (the network-status of a delegate).
    public var sandboxInterface: (Interface, [IP])? {
        guard let i = interfaces.firstIndex(where: { !($0.sandbox ?? "").isEmpty }) else { return nil }
        return (interfaces[i], ips.filter { $0.interface == i })
    }
}

extension CNIResult.IP: Codable {
    enum CodingKeys: String, CodingKey { case address, gateway, interface }
}
