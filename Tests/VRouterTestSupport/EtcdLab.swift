// A throwaway etcd cluster for tests: the Swift face of tools/etcd-lab (one implementation of
// ports, certificates, flags and cleanup for tests, benchmarks and the demo). Each lab follows
// this test process's life: the lab's reaper cleans it as soon as the process has exited,
// however it exited; a test cleans it itself from `defer`. Run tests that use it under the lab
// lock (`flock -o /tmp/vrt-lab.lock swift test ...`).

import Foundation
import Glibc

public final class EtcdLab: @unchecked Sendable {  // Safe: used by the test that made it.
    public static let script = Binaries.root + "/tools/etcd-lab"

    public let dir: String
    public let members: Int
    /// Client URLs, member 1 first.
    public let endpoints: [String]
    /// The lab's CA and the client certificate etcd trusts (TLS labs).
    public let caFile: String?
    public let certFile: String?
    public let keyFile: String?
    /// A client certificate from another CA (etcd refuses it), and that CA.
    public let rogueCert: String?
    public let rogueKey: String?
    public let rogueCA: String?
    private var cleaned = false

    public init(members: Int = 3, tls: Bool = false) throws {
        self.members = members
        var args = ["start", "--members", String(members), "--owner", String(getpid())]
        if tls { args.append("--tls") }
        dir = try Self.run(args, timeout: 60).trimmingCharacters(in: .whitespacesAndNewlines)
        let env = try String(contentsOfFile: dir + "/env", encoding: .utf8)
        var vars: [String: String] = [:]
        for line in env.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 2 { vars[kv[0]] = kv[1] }
        }
        endpoints = (vars["ETCD_ENDPOINTS"] ?? "").split(separator: ",").map(String.init)
        caFile = vars["ETCD_CA"]
        certFile = vars["ETCD_CERT"]
        keyFile = vars["ETCD_KEY"]
        rogueCert = vars["ETCD_ROGUE_CERT"]
        rogueKey = vars["ETCD_ROGUE_KEY"]
        rogueCA = vars["ETCD_ROGUE_CA"]
    }

    deinit { cleanup() }

    /// SIGTERM to member n; returns when it has exited.
    public func stop(_ n: Int) throws { try Self.run(["stop", dir, String(n)]) }
    /// SIGKILL to member n.
    public func kill(_ n: Int) throws { try Self.run(["kill", dir, String(n)]) }
    /// Starts member n again on its data and waits until it is healthy.
    public func start(_ n: Int) throws { try Self.run(["start-member", dir, String(n)], timeout: 60) }
    public func stopAll() throws { try Self.run(["stop-all", dir]) }
    /// Starts every member again and waits until all are healthy.
    public func startAll() throws { try Self.run(["start-all", dir], timeout: 60) }
    /// The member (1-based) that is the leader now.
    public func leader() throws -> Int {
        let out = try Self.run(["leader", dir]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let n = Int(out) else { throw Failure("etcd-lab leader said \(out)") }
        return n
    }

    /// Ends every member and removes the lab's directory (idempotent).
    public func cleanup() {
        guard !cleaned else { return }
        cleaned = true
        _ = try? Self.run(["clean", dir])
    }

    /// Runs tools/etcd-lab to its end (ended after `timeout` seconds); its standard output, or
    /// a failure with its standard error.
    @discardableResult
    static func run(_ args: [String], timeout: Double = 30) throws -> String {
        let r = try VRouterTestSupport.run([script] + args, timeout: timeout)
        guard r.ok else {
            let why = r.timedOut ? "did not finish within \(Int(timeout)) s" : "failed (\(r.status))"
            throw Failure("tools/etcd-lab \(args.joined(separator: " ")) \(why): \(r.error)")
        }
        return r.output
    }
}
