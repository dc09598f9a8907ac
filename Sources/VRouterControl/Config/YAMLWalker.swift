// A typed walk over a YAML document that names the exact place of every problem
// ("interfaces[2].vrf: no VRF named 'blu'") and refuses keys it does not know, so a
// typo in a config is an error rather than a silently ignored setting.

import Foundation
import VRouterCore
import Yams

public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

struct YAMLWalker {
    let node: Node
    let path: String

    static func parse(_ text: String, file: String) throws(ConfigError) -> YAMLWalker {
        do {
            guard let n = try Yams.compose(yaml: text) else { throw ConfigError("\(file): the document is empty") }
            return YAMLWalker(node: n, path: "")
        } catch let e as ConfigError {
            throw e
        } catch {
            throw ConfigError("\(file): not valid YAML: \(error)")
        }
    }

    var where_: String { path.isEmpty ? "top level" : path }

    func fail(_ message: String) -> ConfigError {
        if let m = node.mark { return ConfigError("\(where_) (line \(m.line)): \(message)") }
        return ConfigError("\(where_): \(message)")
    }

    /// The mapping's entries; fails on unknown keys.
    func mapping(allowed: Set<String>) throws(ConfigError) -> [String: YAMLWalker] {
        guard case .mapping(let m) = node else { throw fail("expected a mapping (key: value)") }
        var out: [String: YAMLWalker] = [:]
        for (k, v) in m {
            guard let key = k.string else { throw fail("keys must be strings") }
            guard allowed.contains(key) else {
                throw fail("unknown key '\(key)' (known: \(allowed.sorted().joined(separator: ", ")))")
            }
            guard out[key] == nil else { throw fail("duplicate key '\(key)'") }
            out[key] = YAMLWalker(node: v, path: path.isEmpty ? key : "\(path).\(key)")
        }
        return out
    }

    func sequence() throws(ConfigError) -> [YAMLWalker] {
        guard case .sequence(let s) = node else { throw fail("expected a list") }
        return s.enumerated().map { YAMLWalker(node: $0.element, path: "\(path)[\($0.offset)]") }
    }

    func string() throws(ConfigError) -> String {
        guard case .scalar(let s) = node else { throw fail("expected a value, not a list or mapping") }
        return s.string
    }

    func int(_ range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let s = try string()
        guard let v = Int(s) else { throw fail("'\(s)' is not an integer") }
        guard range.contains(v) else { throw fail("\(v) is outside \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    func bool() throws(ConfigError) -> Bool {
        let s = try string()
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw fail("'\(s)' is not true or false")
        }
    }

    func ipv4() throws(ConfigError) -> IPv4Address {
        let s = try string()
        guard let a = IPv4Address(s) else { throw fail("'\(s)' is not an IPv4 address") }
        return a
    }

    func ipv6() throws(ConfigError) -> IPv6Address {
        let s = try string()
        guard let a = IPv6Address(s) else { throw fail("'\(s)' is not an IPv6 address") }
        return a
    }

    /// "ADDRESS" or "ADDRESS/LENGTH" (an interface address with its prefix length).
    func addressWithLength<A>(_ maxLength: Int, _ parse: (Substring) -> A?) throws(ConfigError) -> (A, Int) {
        let s = try string()
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let a = parse(parts[0]) else { throw fail("'\(s)' is not an address") }
        guard parts.count == 2 else { return (a, maxLength) }
        guard let len = Int(parts[1]), (0...maxLength).contains(len) else {
            throw fail("'\(s)': prefix length must be 0...\(maxLength)")
        }
        return (a, len)
    }

    func mac() throws(ConfigError) -> MACAddress {
        let s = try string()
        guard let a = MACAddress(s) else { throw fail("'\(s)' is not a MAC address (aa:bb:cc:dd:ee:ff)") }
        return a
    }

    /// Seconds, as a plain number or with a unit: "90", "90s", "5m", "250ms".
    func duration() throws(ConfigError) -> Double {
        let s = try string().trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (u, f) in units where s.hasSuffix(u) {
            if let v = Double(s.dropLast(u.count)), v >= 0 { return v * f }
        }
        if let v = Double(s), v >= 0 { return v }
        throw fail("'\(s)' is not a duration (e.g. 60s, 5m, 250ms)")
    }
}
