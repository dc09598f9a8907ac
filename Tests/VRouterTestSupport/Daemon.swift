// One `vrouterd run` started by a test (the binary next to the tests), with its own control
// socket (several run at once: two nodes, parallel tests), its output in files, in its own
// process group; ended on every exit path by `terminate` or the lab's cleanup.

import Foundation
import Glibc
import VRouterAPI

public final class Daemon: @unchecked Sendable {  // Safe: used by the test that started it.
    public let child: Child
    public let socket: String
    /// Where its config, socket and output are.
    public let dir: String

    /// Starts `vrouterd run --config CONFIG --socket SOCKET EXTRA` (inside `ns` when given);
    /// `waitServing` or `waitRunning` wait for it.
    public init(
        config: String,
        socket: String,
        in ns: String? = nil,
        name: String = "vrouterd",
        extra: [String] = []
    )
        throws
    {
        let v = try Binaries.require("vrouterd")
        self.socket = socket
        dir = (config as NSString).deletingLastPathComponent
        var argv = [v, "run", "--config", config, "--socket", socket] + extra
        if let ns { argv = [Tool.ip, "netns", "exec", ns] + argv }
        child = try Child(argv, name: name, dir: dir)
    }

    /// A vrouterd of the lab (`cleanup` ends it), its socket beside the config:
    /// "<config without extension>-<name>.sock".
    public convenience init(
        _ lab: Lab,
        config: String,
        in ns: String? = nil,
        name: String = "vrouterd",
        extra: [String] = []
    ) throws {
        let socket = (config as NSString).deletingPathExtension + "-\(name).sock"
        try self.init(config: config, socket: socket, in: ns, name: name, extra: extra)
        lab.adopt(child)
    }

    /// A vrouterd on `yaml` in the scratch directory `vrouterd-NAME` (the same for the same
    /// name: a second one meets what the first left, a stale socket included), serving its
    /// socket when this returns.
    public convenience init(_ name: String, yaml: String, extra: [String] = []) throws {
        let dir = Scratch.path("vrouterd-\(name)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        try yaml.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        try self.init(config: dir + "/config.yaml", socket: dir + "/vrouterd.sock", extra: extra)
        do { try waitServing() } catch {
            terminate()
            throw error
        }
    }

    /// Waits until the control socket answers (the ports are made and the workers run by then).
    public func waitServing(timeout: Double = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if UnixHTTPClient.isLive(socket) { return }
            guard child.isRunning else {
                throw Failure("vrouterd exited (\(child.status ?? -1)) before serving \(socket): \(child.stderr)")
            }
            usleep(20_000)
        }
        throw Failure("vrouterd did not serve \(socket) within \(timeout) s: \(child.stderr)")
    }

    /// Waits for the "vrouterd running" log line (every port made, workers started, API up).
    public func waitRunning(timeout: Double = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if child.stderr.contains("vrouterd running") { return }
            guard child.isRunning else {
                throw Failure("vrouterd exited (\(child.status ?? -1)) while starting: \(child.stderr)")
            }
            usleep(20_000)
        }
        throw Failure("vrouterd not running after \(timeout) s: \(child.stderr)")
    }

    /// SIGTERM, and the totals of its final `stopped:` line; a failure when it does not stop
    /// cleanly.
    @discardableResult
    public func stop() throws -> StopStats {
        child.signal(SIGTERM)
        guard let status = child.wait(seconds: 20) else {
            child.end(grace: 1)
            throw Failure("vrouterd did not stop within 20 s of SIGTERM")
        }
        guard status == 0 else { throw Failure("vrouterd exited \(status): \(child.stderr)") }
        guard let line = child.stderr.split(separator: "\n").last(where: { $0.contains("stopped: ") }) else {
            throw Failure("no 'stopped:' line: \(child.stderr)")
        }
        return StopStats(line: String(line))
    }

    /// Ends it however it is (for `defer`): SIGTERM, SIGKILL after 10 s.
    public func terminate() { child.end(grace: 10) }

    /// What it logged.
    public var log: String { child.stderr }

    public var client: UnixHTTPClient { UnixHTTPClient(socketPath: socket) }
    public var api: ControlClient { ControlClient(socketPath: socket) }

    /// A raw HTTP request: status and body text.
    public func http(_ method: String, _ path: String, _ body: String? = nil) throws -> (Int, String) {
        let r = try client.request(method, path, body: body.map { Data($0.utf8) })
        return (r.status, r.text)
    }

    /// vrouterctl against this daemon.
    public func ctl(_ args: [String]) throws -> Finished {
        try run([try Binaries.require("vrouterctl")] + args + ["--socket", socket], timeout: 60)
    }
}

/// vrouterd's final line: `stopped: <port> rx=N tx=N drop=N [io_...=N] [dead] ... <reason>=N ...`.
public struct StopStats: CustomStringConvertible {
    static let portKeys: Set<String> = [
        "rx", "tx", "drop", "io_rx_drop", "io_rx_error", "io_tx_drop", "io_tx_error",
    ]
    public var ports: [String: [String: UInt64]] = [:]
    public var dead: Set<String> = []
    public var reasons: [String: UInt64] = [:]
    public let description: String

    public init(line: String) {
        description = line
        guard let r = line.range(of: "stopped: ") else { return }
        var port: String? = nil
        for token in line[r.upperBound...].split(separator: " ").map(String.init) {
            let kv = token.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 1 {
                if token == "dead", let p = port {
                    dead.insert(p)
                } else {
                    port = token
                    ports[token] = [:]
                }
            } else if let p = port, Self.portKeys.contains(kv[0]) {
                ports[p]![kv[0]] = UInt64(kv[1]) ?? 0
            } else {
                reasons[kv[0]] = UInt64(kv[1]) ?? 0
            }
        }
    }

    public subscript(port: String, key: String) -> UInt64 { ports[port]?[key] ?? 0 }
}
