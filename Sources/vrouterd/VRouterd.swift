// vrouterd: the vRouter forwarder. `replay` and `bench` run the dataplane over pcap
// captures; `run` (the node service) drives live tap and AF_PACKET ports.

import ArgumentParser
import Foundation
import Glibc
import Logging
import VRouterControl
import VRouterCore
import VRouterIO

@main
struct VRouterd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vrouterd",
        abstract: "A userspace vRouter dataplane for Kubernetes nodes.",
        subcommands: [Run.self, Replay.self, Bench.self]
    )
}

/// Prints one clear error line and exits non-zero.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("vrouterd: \(message)\n".utf8))
    exit(1)
}

func loadNode(_ path: String) -> ReplayNode {
    do {
        return try ReplayNode(config: NodeConfig.load(path: path))
    } catch {
        fail(error.description)
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the configured node once over its pcap ports and write what each port transmitted."
    )

    @Option(name: .long, help: "Node config (YAML) whose interfaces name pcap inputs and outputs.")
    var config: String

    @Flag(name: .long, help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        let node = loadNode(config)
        let s: ReplaySummary
        do { s = try node.replay() } catch { fail(error.description) }
        if json {
            var obj: [String: Any] = [
                "packets": s.packets, "outputs": s.outputs, "punted": s.punted, "dropped": s.totalDrops,
                "drops": Dictionary(uniqueKeysWithValues: s.drops.map { ($0.0, $0.1) }),
                "events": Dictionary(uniqueKeysWithValues: s.events.map { ($0.0, $0.1) }),
            ]
            obj["ports"] = s.ports.map {
                ["name": $0.name, "in": $0.received, "out": $0.transmitted, "dropped": $0.dropped] as [String: Any]
            }
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print(
            "replayed \(s.packets) packets: \(s.outputs) transmitted, \(s.totalDrops) dropped, \(s.punted) to the control plane"
        )
        print("")
        print(
            pad("PORT", 16) + pad("IN", 12, right: true) + pad("OUT", 12, right: true) + pad("DROPPED", 12, right: true)
        )
        for p in s.ports {
            print(
                pad(p.name, 16) + pad("\(p.received)", 12, right: true) + pad("\(p.transmitted)", 12, right: true)
                    + pad("\(p.dropped)", 12, right: true)
            )
        }
        if !s.drops.isEmpty {
            print("")
            print(pad("DROP REASON", 28) + pad("PACKETS", 12, right: true))
            for (name, n) in s.drops { print(pad(name, 28) + pad("\(n)", 12, right: true)) }
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load the configured captures into memory and replay them N times, timing the dataplane."
    )

    @Option(name: .long, help: "Node config (YAML) whose interfaces name pcap inputs.")
    var config: String

    @Option(name: .long, help: "Passes over the captures (the first runs with a cold flow cache).")
    var `repeat`: Int = 10

    @Option(
        name: .long,
        help: "Pinned workers, each over its share of the packets (RSS-style hash); the figures are their aggregate."
    )
    var workers: Int = 1

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard `repeat` >= 1 && `repeat` <= 100_000 else { throw ValidationError("--repeat must be 1...100000") }
        guard workers >= 1 && workers <= 256 else { throw ValidationError("--workers must be 1...256") }
    }

    func run() throws {
        let node = loadNode(config)
        let r: BenchResult
        do {
            r = try node.bench(repeats: `repeat`, workers: workers) { line in
                FileHandle.standardError.write(Data("\(line)\n".utf8))
            }
        } catch { fail(error.description) }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(r), as: UTF8.self))
            return
        }
        print(String(format: "%d packets x %d passes, %d routes", r.packets, r.repeats, r.routes))
        print(
            String(
                format: "warm: %7.2f Mpps  %7.1f ns/packet   (flow-cache hit rate %.1f%%)",
                r.mpps,
                r.ns_per_packet,
                r.flow_hit_rate * 100
            )
        )
        print(
            String(
                format: "cold: %7.2f Mpps  %7.1f ns/packet   (first pass: %llu flows installed)",
                r.cold_mpps,
                r.cold_ns_per_packet,
                r.flows_installed
            )
        )
        print("dropped per pass: \(r.dropped)")
        if r.workers > 1 {
            for (w, (n, m)) in zip(r.worker_packets, r.worker_mpps).enumerated() {
                print(String(format: "worker %d: %d packets, warm %.2f Mpps on its own", w, n, m))
            }
        }
        print("")
        print(pad("NODE", 18) + pad("ns/packet", 12, right: true))
        for node in PipelineNode.allCases {
            if let v = r.node_ns_per_packet[node.name] {
                print(pad(node.name, 18) + pad(String(format: "%.2f", v), 12, right: true))
            }
        }
        if !r.drops.isEmpty {
            print("")
            print(pad("DROP REASON", 28) + pad("PACKETS", 12, right: true))
            for (k, v) in r.drops.sorted(by: { $0.key < $1.key }) { print(pad(k, 28) + pad("\(v)", 12, right: true)) }
        }
    }
}

func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
    s.count >= width
        ? s + " "
        : (right
            ? String(repeating: " ", count: width - s.count) + s : s + String(repeating: " ", count: width - s.count))
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the node service: forward between the configured tap and AF_PACKET ports until SIGTERM/SIGINT."
    )

    @Option(name: .long, help: "Node config (YAML) whose interfaces name taps (pods) and a device (fabric).")
    var config: String

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: "Keep the node's state here (snapshot + journal) and restore it on start.")
    var stateDir: String?

    @Option(name: .long, help: "Serve the control API (HTTP/JSON) on this Unix socket (mode 0600).")
    var socket: String = ControlSocket.defaultPath

    @Option(name: .long, help: "Serve Prometheus metrics at http://HOST:PORT/metrics (off unless given).")
    var metrics: String?

    func validate() throws {
        if let m = metrics, ControlServer.parseAddress(m) == nil {
            throw ValidationError("--metrics '\(m)' is not HOST:PORT (e.g. 127.0.0.1:9477)")
        }
    }

    func run() throws {
        guard let level = Logger.Level(rawValue: logLevel) else { fail("--log-level: '\(logLevel)' is not a level") }
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let log = Logger(label: "vrouterd")
        var nodeConfig: NodeConfig
        var saved: [StateRecord] = []
        var savedCNI: CNISnapshot?
        var persistence: StatePersistence?
        do {
            nodeConfig = try NodeConfig.load(path: config)
            // Refuse before touching anything without the privileges the config needs: the
            // state directory and the socket's directory may not exist yet, and making them
            // needs root too. (A restored config is checked again by NodeService.)
            try Privileges.check(for: nodeConfig)
            if let dir = stateDir {
                let p = try StatePersistence(directory: dir)
                persistence = p
                let loaded = try p.load()
                if let torn = p.droppedTail {
                    log.warning(
                        "state journal: torn last record dropped (a crash cut its write short; it was never acknowledged)",
                        metadata: ["line": "\(torn.line)", "bytes": "\(torn.bytes)", "directory": "\(dir)"]
                    )
                }
                if let (restored, records) = loaded {
                    log.info("restoring saved state", metadata: ["directory": "\(dir)", "changes": "\(records.count)"])
                    nodeConfig = restored
                    saved = records
                    savedCNI = try p.loadCNI()
                }
            }
        } catch let e as ConfigError {
            fail(e.description)
        } catch {
            fail("\(error)")
        }
        // Block the stop signals in every thread (workers inherit the mask); this thread
        // waits for them.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        // Refuse before touching any port when another vrouterd answers on the socket.
        do { try ControlSocket.prepare(socket) } catch { fail(error.description) }
        let service: NodeService
        let server: ControlServer
        do {
            service = try NodeService(config: nodeConfig, logger: log)
            service.persistence = persistence
            if let c = savedCNI { service.restoreCNI(c) }
            try service.start()
            service.replay(saved, adding: savedCNI?.adding ?? [])
            try service.saveSnapshot()
            service.startCluster()
        } catch {
            fail(error.description)
        }
        do {
            server = try ControlServer.start(service: service, socketPath: socket, metricsAddress: metrics)
        } catch {
            service.stop()
            fail(error.description)
        }
        var where_: Logger.Metadata = ["node": "\(nodeConfig.name)", "pid": "\(getpid())", "socket": "\(socket)"]
        if let m = server.metrics?.address { where_["metrics"] = "\(m)" }
        log.info("vrouterd running", metadata: where_)
        var sig: Int32 = 0
        var waited = 0
        while true {
            var timeout = timespec(tv_sec: 1, tv_nsec: 0)
            let r = sigtimedwait(&set, nil, &timeout)
            if r > 0 {
                sig = r
                break
            }
            waited += 1
            if waited % 10 == 0 { log.debug("\(service.statsLine())") }
        }
        log.info("stopping", metadata: ["signal": "\(sig == SIGTERM ? "SIGTERM" : "SIGINT")"])
        server.stop()
        service.stop()
        // Final totals, one line: per port rx/tx/drops and every drop reason seen.
        log.info("stopped: \(service.statsLine())")
    }
}
