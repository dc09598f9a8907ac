// A throwaway etcd cluster for the tests: the Swift face of tools/etcd-lab (one implementation
// of ports, certificates, flags and cleanup for tests, benchmarks and the demo). Each lab
// follows this test process's life: if the process dies, the next `etcd-lab start` sweeps it.
// Run tests that use it under the lab lock (`flock /tmp/vrt-lab.lock swift test ...`).
//
// Self-contained on purpose (Foundation only) so it can move into a shared test-support target.

import Foundation
import Glibc
import Testing
import VRouterEtcd

/// The suites that start etcd members, one test at a time (each holds a lab of its own, and
/// deadlines are checked against the clock).
@Suite(.serialized) enum LiveEtcd {}

struct EtcdLabError: Error, CustomStringConvertible {
    let description: String
}

final class EtcdLab: @unchecked Sendable {  // Safe: used by the test that made it.
    static let repoRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let script = repoRoot + "/tools/etcd-lab"

    let dir: String
    let members: Int
    /// Client URLs, member 1 first.
    let endpoints: [String]
    /// The client certificate etcd trusts (TLS labs).
    let tls: EtcdTLS?
    /// A certificate from another CA (etcd refuses it), and that CA.
    let rogueCert: String?
    let rogueKey: String?
    let rogueCA: String?
    private var cleaned = false

    init(members: Int = 3, tls: Bool = false) throws {
        self.members = members
        var args = ["start", "--members", String(members), "--owner", String(getpid())]
        if tls { args.append("--tls") }
        dir = try Self.run(args).trimmingCharacters(in: .whitespacesAndNewlines)
        let env = try String(contentsOfFile: dir + "/env", encoding: .utf8)
        var vars: [String: String] = [:]
        for line in env.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 2 { vars[kv[0]] = kv[1] }
        }
        endpoints = (vars["ETCD_ENDPOINTS"] ?? "").split(separator: ",").map(String.init)
        self.tls = tls ? EtcdTLS(caFile: vars["ETCD_CA"], certFile: vars["ETCD_CERT"], keyFile: vars["ETCD_KEY"]) : nil
        rogueCert = vars["ETCD_ROGUE_CERT"]
        rogueKey = vars["ETCD_ROGUE_KEY"]
        rogueCA = vars["ETCD_ROGUE_CA"]
    }

    deinit { cleanup() }

    /// A client of the whole cluster (or of the members named, 1-based).
    func client(
        members only: [Int]? = nil,
        timeout: Duration = .seconds(5),
        tls: EtcdTLS? = nil,
        configure: (inout EtcdConfiguration) -> Void = { _ in }
    ) throws -> EtcdClient {
        let urls = (only ?? Array(1...members)).map { endpoints[$0 - 1] }
        var c = try EtcdConfiguration(endpoints: urls, tls: tls ?? self.tls)
        c.requestTimeout = timeout
        configure(&c)
        return try EtcdClient(c)
    }

    /// SIGTERM to member n; returns when it has exited.
    func stop(_ n: Int) throws { try Self.run(["stop", dir, String(n)]) }
    /// SIGKILL to member n.
    func kill(_ n: Int) throws { try Self.run(["kill", dir, String(n)]) }
    /// Starts member n again on its data and waits until it is healthy.
    func start(_ n: Int) throws { try Self.run(["start-member", dir, String(n)]) }
    func stopAll() throws { try Self.run(["stop-all", dir]) }
    /// Starts every member again and waits until all are healthy.
    func startAll() throws { try Self.run(["start-all", dir]) }
    /// The member (1-based) that is the leader now.
    func leader() throws -> Int {
        let out = try Self.run(["leader", dir]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let n = Int(out) else { throw EtcdLabError(description: "etcd-lab leader said \(out)") }
        return n
    }

    /// Ends every member and removes the lab's directory (idempotent).
    func cleanup() {
        guard !cleaned else { return }
        cleaned = true
        _ = try? Self.run(["clean", dir])
    }

    /// Runs tools/etcd-lab; its standard output, or an error with its standard error.
    /// posix_spawn and waitpid on this thread (Foundation's Process can miss a child's exit
    /// when several run at once).
    @discardableResult
    static func run(_ args: [String]) throws -> String {
        let tmp =
            FileManager.default.temporaryDirectory.path
            + "/vrt-etcd-lab-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let outPath = tmp + ".out"
        let errPath = tmp + ".err"
        defer {
            unlink(outPath)
            unlink(errPath)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv = [script] + args
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let r = posix_spawn(&pid, script, &actions, nil, &cargs, environ)
        guard r == 0 else {
            throw EtcdLabError(description: "cannot run \(script): \(String(cString: strerror(r)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        guard status == 0 else {
            let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            throw EtcdLabError(description: "tools/etcd-lab \(args.joined(separator: " ")) failed: \(err)")
        }
        return out
    }
}
