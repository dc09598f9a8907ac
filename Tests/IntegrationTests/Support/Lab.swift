// The integration tests' bench: network namespaces and links named with a per-test `vrt`
// tag, programs started in their own process group with their output in files, and a
// cleanup that ends every process it started and deletes every namespace and host link
// carrying the tag, on every exit path (tests call it from `defer`).
//
// Everything outside vrouterd is driven through the standard tools (ip, bridge, ping,
// iperf3, tshark), so the tests check vrouterd against the kernel's and those tools' view.

import Foundation
import Glibc
import Testing

let isRoot = geteuid() == 0

/// A program on PATH-independent locations the tests rely on.
enum Tool {
    static let ip = "/usr/sbin/ip"
    static let bridge = "/usr/sbin/bridge"
    static let ping = "/usr/bin/ping"
    static let iperf3 = "/usr/bin/iperf3"
    static let tshark = "/usr/bin/tshark"
    static let setpriv = "/usr/bin/setpriv"

    static func exists(_ path: String) -> Bool { FileManager.default.isExecutableFile(atPath: path) }
    /// Everything the traffic tests need.
    static var trafficTools: Bool { [ip, bridge, ping, iperf3, tshark].allSatisfy(exists) }
}

/// The vrouterd that `swift build` put next to the tests: in the running test binary's
/// own directory (so a sanitizer build in its own scratch path runs its own vrouterd),
/// else debug first, as CI builds it.
enum VRouterd {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static var path: String? {
        let here = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).map {
            URL(fileURLWithPath: $0).deletingLastPathComponent()
        }
        let dirs =
            [here].compactMap { $0 } + [".build/debug", ".build/release"].map { root.appendingPathComponent($0) }
        for dir in dirs {
            let p = dir.appendingPathComponent("vrouterd").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A finished program.
struct Finished {
    var status: Int32  // exit code, or 128 + signal
    var output: String
    var error: String
    var timedOut = false
    var ok: Bool { status == 0 && !timedOut }
}

/// A program started with posix_spawn in a new process group (so the group can be ended
/// whole), stdin from /dev/null, stdout and stderr into files in `dir`.
final class Child: @unchecked Sendable {  // Safe: used by the test that started it.
    let pid: pid_t
    let name: String
    let outPath: String
    let errPath: String
    private(set) var status: Int32?

    init(_ argv: [String], name: String, dir: String) throws {
        self.name = name
        outPath = "\(dir)/\(name).out"
        errPath = "\(dir)/\(name).err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK))
        posix_spawnattr_setpgroup(&attr, 0)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var p: pid_t = 0
        let r = posix_spawn(&p, argv[0], &actions, &attr, &cargs, environ)
        guard r == 0 else { throw Failure("cannot start \(argv[0]): \(String(cString: strerror(r)))") }
        pid = p
    }

    var stdout: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

    /// Reaps the child if it has exited; true while it runs.
    var isRunning: Bool {
        if status != nil { return false }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        if r == pid {
            status = Self.decode(st)
            return false
        }
        return r == 0
    }

    static func decode(_ st: Int32) -> Int32 {
        let sig = st & 0x7f
        return sig == 0 ? (st >> 8) & 0xff : 128 + sig
    }

    /// Waits up to `seconds` for the child to exit; nil when it is still running.
    @discardableResult
    func wait(seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning {
            if Date() >= deadline { return nil }
            usleep(10_000)
        }
        return status
    }

    /// Signals the whole process group.
    func signal(_ sig: Int32) { if status == nil { kill(-pid, sig) } }

    /// SIGTERM to the group, SIGKILL if it has not gone after `grace` seconds; reaps it.
    func end(grace: Double = 5) {
        guard isRunning else { return }
        signal(SIGTERM)
        if wait(seconds: grace) == nil {
            signal(SIGKILL)
            wait(seconds: 5)
        }
    }
}

/// One test's world: its tag, scratch directory, namespaces and processes.
final class Lab: @unchecked Sendable {  // Safe: used by the test that made it.
    let tag: String
    let dir: String
    private var namespaces: [String] = []
    private var children: [Child] = []
    private var counter = 0

    /// `letter` tells the tests' tags apart in a listing ("vrt" + 4 hex digits + letter).
    init(_ letter: String) throws {
        tag = "vrt" + String(UInt16.random(in: 0x1000...0xFFFF), radix: 16) + letter
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(tag)-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Readable by an unprivileged vrouterd too (the permission test).
        chmod(dir, 0o755)
    }

    /// "<tag><suffix>": interface names stay within 15 bytes with suffixes up to 7.
    func name(_ suffix: String) -> String { tag + suffix }

    // MARK: programs

    /// Runs a program to completion (ended, and `timedOut` set, after `timeout` seconds).
    @discardableResult
    func run(_ argv: [String], timeout: Double = 20) throws -> Finished {
        counter += 1
        let c = try Child(argv, name: "cmd\(counter)", dir: dir)
        var timedOut = false
        if c.wait(seconds: timeout) == nil {
            timedOut = true
            c.end(grace: 1)
        }
        return Finished(status: c.status ?? -1, output: c.stdout, error: c.stderr, timedOut: timedOut)
    }

    /// Runs a program that must succeed.
    @discardableResult
    func must(_ argv: [String], timeout: Double = 20) throws -> String {
        let r = try run(argv, timeout: timeout)
        guard r.ok else {
            throw Failure("\(argv.joined(separator: " ")) failed (\(r.status)): \(r.error)\(r.output)")
        }
        return r.output
    }

    /// `ip <args>` that must succeed.
    @discardableResult
    func ip(_ args: String...) throws -> String { try must([Tool.ip] + args) }

    /// Runs `argv` inside namespace `ns`.
    func inNS(_ ns: String, _ argv: [String]) -> [String] { [Tool.ip, "netns", "exec", ns] + argv }

    /// Starts a long-running program; `cleanup` ends it if the test has not.
    func start(_ argv: [String], name: String) throws -> Child {
        let c = try Child(argv, name: name, dir: dir)
        children.append(c)
        return c
    }

    // MARK: namespaces and links

    /// A new namespace "<tag><suffix>" with its loopback up.
    @discardableResult
    func namespace(_ suffix: String) throws -> String {
        let ns = name(suffix)
        try ip("netns", "add", ns)
        namespaces.append(ns)
        try ip("-n", ns, "link", "set", "lo", "up")
        return ns
    }

    /// A veth pair with one end in each namespace, both up.
    func veth(_ a: String, in nsA: String, _ b: String, in nsB: String) throws {
        try ip("link", "add", a, "netns", nsA, "type", "veth", "peer", "name", b, "netns", nsB)
        try ip("-n", nsA, "link", "set", a, "up")
        try ip("-n", nsB, "link", "set", b, "up")
    }

    /// Writes a file into the scratch directory (world-readable) and returns its path.
    func write(_ name: String, _ text: String) throws -> String {
        let p = "\(dir)/\(name)"
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        chmod(p, 0o644)
        return p
    }

    /// Ends every process started here, deletes the namespaces (with everything in them)
    /// and any host link carrying the tag, and removes the scratch directory.
    func cleanup() {
        for c in children { c.end() }
        for ns in namespaces { _ = try? run([Tool.ip, "netns", "delete", ns], timeout: 10) }
        for l in hostLinks() { _ = try? run([Tool.ip, "link", "delete", l], timeout: 10) }
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Namespaces and host links with this test's tag that still exist.
    func leftovers() -> [String] {
        let ns = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
        return ns.filter { $0.hasPrefix(tag) }.map { "netns \($0)" } + hostLinks().map { "link \($0)" }
    }

    /// Host links (this namespace) whose name starts with the tag.
    private func hostLinks() -> [String] {
        let out = (try? run([Tool.ip, "-o", "link", "show"], timeout: 10).output) ?? ""
        return out.split(separator: "\n").compactMap { line -> String? in
            // "7: name@peer: <...>"
            let f = line.split(separator: ":", maxSplits: 2)
            guard f.count >= 2 else { return nil }
            let n = f[1].trimmingCharacters(in: .whitespaces).split(separator: "@").first.map(String.init) ?? ""
            return n.hasPrefix(tag) ? n : nil
        }
    }
}
