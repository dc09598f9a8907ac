// Shared by the live-port tests (root, network namespaces): unique vrt-prefixed names per
// test made through VRouterIO itself, and cleanup on every exit path. Outside programs run
// through VRouterTestSupport.

import Foundation
import Glibc
import VRouterCore
import VRouterTestSupport

@testable import VRouterIO

let hasScapy = Tool.hasScapy

/// Everything one test makes: namespaces and host links whose names start with `tag`
/// ("vrt" + 4 hex digits + a letter for the test). `cleanup()` removes them all; tests call
/// it from `defer` and then check `leftovers()` is empty.
final class Scratch {
    let tag: String
    private(set) var namespaces: [NetworkNamespace] = []

    init(_ letter: String) {
        var rng = SystemRandomNumberGenerator()
        tag = "vrt" + String(UInt16.random(in: 0x1000...0xFFFF, using: &rng), radix: 16) + letter
    }

    /// A new namespace "<tag><suffix>".
    func namespace(_ suffix: String) throws -> NetworkNamespace {
        let ns = try NetworkNamespace.create(named: tag + suffix)
        namespaces.append(ns)
        return ns
    }

    func name(_ suffix: String) -> String { tag + suffix }

    func cleanup() {
        for ns in namespaces where ns.exists { try? ns.delete() }
        if let nl = try? Netlink() {
            for l in (try? nl.links()) ?? [] where l.name.hasPrefix(tag) { try? nl.deleteLink(l.name) }
        }
    }

    /// Namespaces and host links of this test still present.
    func leftovers() -> [String] {
        var left = NetworkNamespace.list().filter { $0.hasPrefix(tag) }.map { "netns \($0)" }
        if let nl = try? Netlink() {
            left += ((try? nl.links()) ?? []).filter { $0.name.hasPrefix(tag) }.map { "link \($0.name)" }
        }
        return left
    }
}

/// `ip netns exec NAME` + argv.
func inNamespace(_ ns: NetworkNamespace, _ argv: [String]) -> [String] {
    ["netns", "exec", ns.name!] + argv
}

let ipTool = Tool.ip
let systemPython = Tool.python3
