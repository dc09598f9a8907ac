// One test's bench: network namespaces and links named with a per-test `vrt` tag, programs
// started in their own process group with their output in files, and a cleanup that ends
// every process it started and deletes every namespace and host link carrying the tag, on
// every exit path (tests call it from `defer`, then check `leftovers()` is empty).
//
// Everything outside vrouterd is driven through the standard tools (ip, bridge, ping,
// iperf3, tshark), so the tests check vrouterd against the kernel's and those tools' view.

import Foundation
import Glibc

public final class Lab: @unchecked Sendable {  // Safe: used by the test that made it.
    public let tag: String
    public let dir: String
    private var namespaces: [String] = []
    fileprivate var children: [Child] = []

    /// `letter` tells the tests' tags apart in a listing ("vrt" + 4 hex digits + letter).
    public init(_ letter: String) throws {
        tag = "vrt" + String(UInt16.random(in: 0x1000...0xFFFF), radix: 16) + letter
        dir = Scratch.path("\(tag)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Readable by an unprivileged vrouterd too (the permission test).
        chmod(dir, 0o755)
    }

    /// "<tag><suffix>": interface names stay within 15 bytes with suffixes up to 7.
    public func name(_ suffix: String) -> String { tag + suffix }

    // MARK: programs

    /// Runs a program to completion (ended, and `timedOut` set, after `timeout` seconds).
    @discardableResult
    public func run(_ argv: [String], timeout: Double = 20) throws -> Finished {
        try VRouterTestSupport.run(argv, timeout: timeout, dir: dir)
    }

    /// Runs a program that must succeed.
    @discardableResult
    public func must(_ argv: [String], timeout: Double = 20) throws -> String {
        let r = try run(argv, timeout: timeout)
        guard r.ok else {
            throw Failure("\(argv.joined(separator: " ")) failed (\(r.status)): \(r.error)\(r.output)")
        }
        return r.output
    }

    /// `ip <args>` that must succeed.
    @discardableResult
    public func ip(_ args: String...) throws -> String { try must([Tool.ip] + args) }

    /// Runs `argv` inside namespace `ns`.
    public func inNS(_ ns: String, _ argv: [String]) -> [String] { [Tool.ip, "netns", "exec", ns] + argv }

    /// Starts a long-running program; `cleanup` ends it if the test has not.
    public func start(_ argv: [String], name: String) throws -> Child {
        let c = try Child(argv, name: name, dir: dir)
        children.append(c)
        return c
    }

    // MARK: namespaces and links

    /// A new namespace "<tag><suffix>" with its loopback up.
    @discardableResult
    public func namespace(_ suffix: String) throws -> String {
        let ns = name(suffix)
        try ip("netns", "add", ns)
        namespaces.append(ns)
        try ip("-n", ns, "link", "set", "lo", "up")
        return ns
    }

    /// A veth pair with one end in each namespace, both up.
    public func veth(_ a: String, in nsA: String, _ b: String, in nsB: String) throws {
        try ip("link", "add", a, "netns", nsA, "type", "veth", "peer", "name", b, "netns", nsB)
        try ip("-n", nsA, "link", "set", a, "up")
        try ip("-n", nsB, "link", "set", b, "up")
    }

    /// Writes a file into the scratch directory (world-readable) and returns its path.
    public func write(_ name: String, _ text: String) throws -> String {
        let p = "\(dir)/\(name)"
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        chmod(p, 0o644)
        return p
    }

    /// Ends every process started here, deletes the namespaces (with everything in them)
    /// and any host link carrying the tag, and removes the scratch directory.
    public func cleanup() {
        for c in children { c.end() }
        for ns in namespaces { _ = try? run([Tool.ip, "netns", "delete", ns], timeout: 10) }
        for l in hostLinks() { _ = try? run([Tool.ip, "link", "delete", l], timeout: 10) }
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Namespaces and host links with this test's tag that still exist.
    public func leftovers() -> [String] {
        let ns = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
        return ns.filter { $0.hasPrefix(tag) }.map { "netns \($0)" } + hostLinks().map { "link \($0)" }
    }

    /// Host links (this namespace) whose name starts with the tag.
    private func hostLinks() -> [String] {
        let out = (try? VRouterTestSupport.run([Tool.ip, "-o", "link", "show"], timeout: 10).output) ?? ""
        return out.split(separator: "\n").compactMap { line -> String? in
            // "7: name@peer: <...>"
            let f = line.split(separator: ":", maxSplits: 2)
            guard f.count >= 2 else { return nil }
            let n = f[1].trimmingCharacters(in: .whitespaces).split(separator: "@").first.map(String.init) ?? ""
            return n.hasPrefix(tag) ? n : nil
        }
    }
}

extension Lab {
    /// Ends `child` with the lab's cleanup.
    func adopt(_ child: Child) { children.append(child) }
}
