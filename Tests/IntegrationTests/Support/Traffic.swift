// vrouterd as a process, and the outside programs that carry and observe traffic.

import Foundation
import Glibc
import Testing

/// One `vrouterd run`, inside a node namespace or in the test's own.
final class Daemon: @unchecked Sendable {  // Safe: used by the test that started it.
    let child: Child
    let lab: Lab
    let socket: String

    init(_ lab: Lab, config: String, in ns: String? = nil, name: String = "vrouterd", extra: [String] = []) throws {
        guard let v = VRouterd.path else { throw Failure("vrouterd is not built (swift build)") }
        self.lab = lab
        // Each daemon its own control socket: several run at once (two nodes, parallel tests).
        let socket = (config as NSString).deletingPathExtension + "-\(name).sock"
        self.socket = socket
        let argv = [v, "run", "--config", config, "--socket", socket] + extra
        child = try lab.start(ns.map { lab.inNS($0, argv) } ?? argv, name: name)
    }

    /// Waits for the "vrouterd running" log line (every port made, workers started).
    func waitRunning(timeout: Double = 20) throws {
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

    /// SIGTERM, and the totals of its final `stopped:` line.
    func stop() throws -> StopStats {
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
}

/// vrouterd's final line: `stopped: <port> rx=N tx=N drop=N [io_...=N] [dead] ... <reason>=N ...`.
struct StopStats: CustomStringConvertible {
    static let portKeys: Set<String> = [
        "rx", "tx", "drop", "io_rx_drop", "io_rx_error", "io_tx_drop", "io_tx_error",
    ]
    var ports: [String: [String: UInt64]] = [:]
    var dead: Set<String> = []
    var reasons: [String: UInt64] = [:]
    let description: String

    init(line: String) {
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

    subscript(port: String, key: String) -> UInt64 { ports[port]?[key] ?? 0 }
}

extension Lab {
    /// `ping -c count` from namespace `ns`; how many replies came back.
    func ping(from ns: String, _ address: String, count: Int = 3, wait: Int = 1) throws -> Int {
        let r = try run(
            inNS(ns, [Tool.ping, "-c", "\(count)", "-i", "0.2", "-W", "\(wait)", "-n", address]),
            timeout: Double(count * wait + 10)
        )
        // "3 packets transmitted, 3 received, ..."
        guard let m = r.output.firstMatch(of: /(\d+) received/) else { return 0 }
        return Int(m.1) ?? 0
    }

    /// Pings once a second until a reply comes (underlay ARP, taps coming up) or `timeout`.
    func waitForPing(from ns: String, _ address: String, timeout: Double = 15) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try ping(from: ns, address, count: 1) == 1 { return }
        }
        throw Failure("no ping reply from \(address) in \(ns) after \(timeout) s")
    }

    /// Waits until `ifname` exists in namespace `ns` (vrouterd moved the tap in).
    func waitForLink(_ ifname: String, in ns: String, timeout: Double = 15) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try run([Tool.ip, "-n", ns, "link", "show", ifname], timeout: 5).ok { return }
            usleep(50_000)
        }
        throw Failure("\(ifname) did not appear in \(ns)")
    }

    /// An iperf3 TCP run of `seconds` from `clientNS` to the server in `serverNS` at
    /// `address`: the bytes the receiver got, or a failure with iperf3's own error.
    func iperf3(
        server serverNS: String,
        client clientNS: String,
        address: String,
        seconds: Int = 2
    ) throws -> IperfResult {
        let server = try start(
            inNS(serverNS, [Tool.iperf3, "-s", "-1", "--rcv-timeout", "10000", "--forceflush"]),
            name: "iperf3-server-\(serverNS)"
        )
        defer { server.end(grace: 2) }
        let deadline = Date().addingTimeInterval(10)
        while !server.stdout.contains("Server listening") {
            guard Date() < deadline, server.isRunning else {
                throw Failure("iperf3 server did not start: \(server.stderr)")
            }
            usleep(20_000)
        }
        let r = try run(
            inNS(clientNS, [Tool.iperf3, "-c", address, "-t", "\(seconds)", "--json", "--connect-timeout", "5000"]),
            timeout: Double(seconds + 20)
        )
        guard let obj = try? JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any] else {
            throw Failure("iperf3 printed no JSON (\(r.status)): \(r.output) \(r.error)")
        }
        let end = obj["end"] as? [String: Any]
        let received = end?["sum_received"] as? [String: Any]
        return IperfResult(
            status: r.status,
            error: obj["error"] as? String,
            bytes: (received?["bytes"] as? NSNumber)?.uint64Value ?? 0,
            bitsPerSecond: (received?["bits_per_second"] as? NSNumber)?.doubleValue ?? 0
        )
    }

    /// tshark on `device` in `ns`, writing a capture file, started and ready.
    func capture(in ns: String, device: String, filter: String, name: String) throws -> Capture {
        let file = "\(dir)/\(name).pcapng"
        let c = try start(
            inNS(ns, [Tool.tshark, "-n", "-i", device, "-f", filter, "-a", "duration:60", "-w", file]),
            name: "tshark-\(name)"
        )
        let deadline = Date().addingTimeInterval(20)
        while !c.stderr.contains("Capturing on") {
            guard Date() < deadline, c.isRunning else { throw Failure("tshark did not start: \(c.stderr)") }
            usleep(50_000)
        }
        // "Capturing on" comes a moment before the socket takes frames (seen: the first
        // echo reply missing from a capture started just before the ping).
        usleep(1_000_000)
        return Capture(lab: self, child: c, file: file)
    }
}

struct IperfResult {
    var status: Int32
    var error: String?
    var bytes: UInt64
    var bitsPerSecond: Double
}

/// A running capture; `stop()` ends it and decodes what it saw.
struct Capture {
    let lab: Lab
    let child: Child
    let file: String

    /// Stops tshark (SIGINT flushes the file) and returns one row per packet with the given
    /// fields, MPLS decoded on UDP 6635 (tshark has no default for RFC 7510's port).
    func stop(fields: [String]) throws -> [[String]] {
        // libpcap hands frames over a ring block at a time, a block when full or after its
        // timeout: a frame that arrived just before SIGINT may still be in the kernel's block
        // and is lost if dumpcap exits now (seen: the last echo request missing).
        usleep(1_500_000)
        child.signal(SIGINT)
        if child.wait(seconds: 10) == nil { child.end(grace: 1) }
        let out = try lab.must(
            [Tool.tshark, "-n", "-r", file, "-d", "udp.port==6635,mpls", "-T", "fields"]
                + fields.flatMap { ["-e", $0] }
        )
        return out.split(separator: "\n").map {
            $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        }
    }
}
