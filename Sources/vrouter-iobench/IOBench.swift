// vrouter-iobench: how fast the live ports move 64-byte frames on this machine, through
// VRouterIO's IOLoop and, with --ref, through a C program making the same kernel calls
// (tools/iobench/ref.c). Builds its own namespaces (vrtb…) and removes them.
//
//   vrouter-iobench [--seconds 5] [--runs 3] [--cpu 1] [--gen-cpu 0] [--ref PATH] [--reads N] [MODE...]
//   modes: tap-tx tap-rx tap-reflect af-rx af-tx af-tx-vnet, and tap-rx-drain tap-reflect-drain
//          af-rx-drain   (default: all)
//
// tap-tx       the loop writes frames to a tap; the pod's kernel receives (and drops) them
// tap-rx       a generator (AF_PACKET TX ring in the pod's namespace, on --gen-cpu) sends
//              into the pod's eth0; the loop reads them from the tap
// tap-reflect  as tap-rx, and the loop writes every frame back (RX+TX on one core)
// af-rx        generator on one veth end (namespace A), the loop's TPACKET_V3 RX ring on
//              the other (namespace B)
// af-tx        the loop's TPACKET_V3 TX ring on one veth end; the peer counts arrivals
// af-tx-vnet   as af-tx with a virtio-net header on the socket, as vrouterd's fabric has
//              (each frame copied whole into its skb instead of zero-copy ring pages,
//              which the veth then copies into a new page); no C reference
// *-drain      capacity of the measured core alone: the generator first fills the tap's
//              queue (50k frames) or the RX ring (40k) while the loop does not read, then
//              the loop drains it; rate and CPU run from "go" to the last frame.
// The measured side is pinned to --cpu. Rates are frames per second over the run; "cpu"
// is the measured thread's CPU seconds per wall second (user+sys, including the kernel
// work done in its context); "peer" is what the receiving device counted.

import CVRouterShims
import Glibc
import Synchronization
import VRouterCore
import VRouterIO

struct Options {
    var seconds = 5.0
    var runs = 3
    var cpu = 1
    var genCPU = 0
    var ref: String? = nil
    var reads = IOLoop.Configuration().readsPerTap
    var modes: [String] = []
}

struct Result {
    var packets: UInt64 = 0
    var seconds = 0.0
    var cpuSeconds = 0.0
    var enters: UInt64 = 0
    var peer: UInt64 = 0
    var generated: UInt64 = 0
    var mpps: Double { Double(packets) / seconds / 1e6 }
}

@main
struct IOBench {
    static let frame64: [UInt8] = {
        var f: [UInt8] = [0x02, 0x00, 0x5e, 0x99, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x99, 0x00, 0x02, 0x08, 0x00]
        f += [0x45, 0x00, 0x00, 0x32, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00, 198, 18, 0, 1, 198, 18, 0, 2]
        f += [0x9c, 0x40, 0x00, 0x09, 0x00, 0x1e, 0x00, 0x00]
        while f.count < 64 { f.append(0) }
        return f
    }()

    static func main() {
        var o = Options()
        var args = CommandLine.arguments.dropFirst()
        while let a = args.popFirst() {
            switch a {
            case "--seconds": o.seconds = Double(args.popFirst() ?? "") ?? o.seconds
            case "--runs": o.runs = Int(args.popFirst() ?? "") ?? o.runs
            case "--cpu": o.cpu = Int(args.popFirst() ?? "") ?? o.cpu
            case "--gen-cpu": o.genCPU = Int(args.popFirst() ?? "") ?? o.genCPU
            case "--ref": o.ref = args.popFirst()
            case "--reads": o.reads = Int(args.popFirst() ?? "") ?? o.reads
            case "-h", "--help":
                print(
                    "usage: vrouter-iobench [--seconds S] [--runs N] [--cpu C] [--gen-cpu G] [--ref PATH] [tap-tx tap-rx tap-reflect af-rx af-tx af-tx-vnet]"
                )
                return
            default: o.modes.append(a)
            }
        }
        if o.modes.isEmpty {
            o.modes = [
                "tap-tx", "tap-rx", "tap-reflect", "tap-rx-drain", "tap-reflect-drain", "af-rx", "af-rx-drain", "af-tx",
                "af-tx-vnet",
            ]
        }
        setvbufLineBuffered()
        print(
            "mode               impl  run    Mpps   cpu  ns/pkt(cpu)  enters/pkt  peer-Mpps    packets   seconds  generated"
        )
        for mode in o.modes {
            for impl in o.ref == nil || mode == "af-tx-vnet" ? ["swift"] : ["swift", "c"] {
                for run in 1...o.runs {
                    do {
                        let r = try measure(mode, impl: impl, o)
                        let nsPerPkt = r.packets > 0 ? r.cpuSeconds * 1e9 / Double(r.packets) : 0
                        let enters = impl == "swift" && r.packets > 0 ? Double(r.enters) / Double(r.packets) : .nan
                        print(
                            pad(mode, 18),
                            pad(impl, 5),
                            pad("\(run)", 3),
                            fmt(r.mpps, 7, 3),
                            fmt(r.cpuSeconds / r.seconds, 5, 2),
                            fmt(nsPerPkt, 12, 0),
                            fmt(enters, 11, 4),
                            fmt(Double(r.peer) / r.seconds / 1e6, 10, 3),
                            fmt(Double(r.packets), 10, 0),
                            fmt(r.seconds, 9, 3),
                            fmt(Double(r.generated), 10, 0)
                        )
                    } catch {
                        print("\(mode) \(impl): \(error)")
                    }
                }
            }
        }
    }

    static func pad(_ s: String, _ n: Int) -> String {
        s.count >= n ? s : s + String(repeating: " ", count: n - s.count)
    }
    static func fmt(_ v: Double, _ width: Int, _ decimals: Int) -> String {
        if v.isNaN { return String(repeating: " ", count: width - 1) + "-" }
        var p = 1.0
        for _ in 0..<decimals { p *= 10 }
        let r = (v * p).rounded() / p
        var s = decimals == 0 ? "\(Int(r))" : "\(r)"
        if decimals > 0, let dot = s.firstIndex(of: ".") {
            let have = s.distance(from: dot, to: s.endIndex) - 1
            if have < decimals { s += String(repeating: "0", count: decimals - have) }
        }
        return s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }

    static func setvbufLineBuffered() { _ = vrt_set_thread_name("vrt-iobench") }

    static func threadCPU() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func now() -> Double { Double(vrt_monotonic_ns()) / 1e9 }

    // MARK: environments

    static func measure(_ fullMode: String, impl: String, _ o: Options) throws -> Result {
        let drain = fullMode.hasSuffix("-drain")
        let mode = drain ? String(fullMode.dropLast(6)) : fullMode
        let tag = "vrtb" + String(UInt16(truncatingIfNeeded: getpid()), radix: 16)
        var namespaces: [NetworkNamespace] = []
        defer { for ns in namespaces { try? ns.delete() } }
        func makeNamespace(_ suffix: String) throws -> NetworkNamespace {
            let ns = try NetworkNamespace.create(named: tag + suffix)
            namespaces.append(ns)
            return ns
        }
        switch mode {
        case "tap-tx", "tap-rx", "tap-reflect":
            let pod = try makeNamespace("P")
            let tap = try TapPort.create(name: "eth0", in: pod, persistent: true)
            defer { try? tap.delete() }
            try tap.configure(.init(name: "eth0", mac: MACAddress("02:00:5e:99:00:05")!))
            let nl = try pod.netlink()
            try nl.setTxQueueLength("eth0", drain ? 60_000 : 4096)
            if drain {
                let fill = { () throws -> UInt64 in
                    try Generator.burst(50_000, interface: "eth0", in: pod, cpu: o.genCPU)
                }
                if impl == "swift" {
                    let port = tap
                    return try runDrain(cpu: o.cpu, reads: o.reads, reflect: mode == "tap-reflect", fill: fill) {
                        loop in
                        try loop.add(port, as: 1)
                    }
                }
                tap.close()
                return try runReferenceDrain(o.ref!, fullMode, "eth0", in: pod, o, fill: fill)
            }
            let generator = mode == "tap-tx" ? nil : try Generator(interface: "eth0", in: pod, cpu: o.genCPU)
            defer { generator?.stop() }
            let before = try nl.link("eth0").statistics
            var r: Result
            if impl == "swift" {
                let port = tap
                r = try runLoop(
                    cpu: o.cpu,
                    reads: o.reads,
                    seconds: o.seconds,
                    reflect: mode == "tap-reflect",
                    transmitOnly: mode == "tap-tx"
                ) { loop in
                    try loop.add(port, as: 1)
                }
            } else {
                tap.close()
                r = try runReference(o.ref!, mode, "eth0", in: pod, o)
            }
            r.generated = generator?.stop() ?? 0
            let after = try nl.link("eth0").statistics
            // Frames we wrote are "received" by the pod's eth0.
            r.peer = after.rxPackets &- before.rxPackets
            return r
        case "af-rx", "af-tx", "af-tx-vnet":
            let a = try makeNamespace("A")
            let b = try makeNamespace("B")
            let nlA = try a.netlink()
            let nlB = try b.netlink()
            try nlA.createVeth("vrtb-a", peer: "vrtb-b", peerNamespace: b)
            try nlA.setMAC("vrtb-a", MACAddress("02:00:5e:99:00:0a")!)
            try nlB.setMAC("vrtb-b", MACAddress("02:00:5e:99:00:01")!)
            try nlA.setUp("vrtb-a")
            try nlB.setUp("vrtb-b")
            if drain {
                let fill = { () throws -> UInt64 in
                    try Generator.burst(40_000, interface: "vrtb-a", in: a, cpu: o.genCPU)
                }
                if impl == "swift" {
                    return try runDrain(cpu: o.cpu, reads: o.reads, reflect: false, fill: fill) { loop in
                        // Blocks retire full, not on the 1 ms timer, so the burst fits.
                        var c = AFPacketPort.Configuration()
                        c.rxBlockTimeoutMilliseconds = 100
                        try loop.add(try AFPacketPort.open(interface: "vrtb-b", in: b, configuration: c), as: 1)
                    }
                }
                return try runReferenceDrain(o.ref!, fullMode, "vrtb-b", in: b, o, fill: fill)
            }
            let generator = mode == "af-rx" ? try Generator(interface: "vrtb-a", in: a, cpu: o.genCPU) : nil
            defer { generator?.stop() }
            let before = try nlA.link("vrtb-a").statistics
            var r: Result
            if impl == "swift" {
                r = try runLoop(
                    cpu: o.cpu,
                    reads: o.reads,
                    seconds: o.seconds,
                    reflect: false,
                    transmitOnly: mode != "af-rx"
                ) { loop in
                    var c = AFPacketPort.Configuration()
                    c.receives = mode == "af-rx"
                    c.vnetHeader = mode == "af-tx-vnet"
                    let port = try AFPacketPort.open(interface: "vrtb-b", in: b, configuration: c)
                    try loop.add(port, as: 1)
                }
            } else {
                r = try runReference(o.ref!, mode, "vrtb-b", in: b, o)
            }
            r.generated = generator?.stop() ?? 0
            let after = try nlA.link("vrtb-a").statistics
            r.peer = mode != "af-rx" ? after.rxPackets &- before.rxPackets : 0
            return r
        default:
            throw SystemError(call: "vrouter-iobench", object: "mode \(mode)", errno: EINVAL, detail: "unknown mode")
        }
    }

    /// The measured side: a pinned worker running an IOLoop with port 1 for `seconds`.
    static func runLoop(
        cpu: Int,
        reads: Int,
        seconds: Double,
        reflect: Bool,
        transmitOnly: Bool,
        setup: @escaping @Sendable (IOLoop) throws -> Void
    ) throws -> Result {
        let result = Mutex<Result?>(nil)
        let failure = Mutex<String?>(nil)
        let frame = frame64
        let worker = try WorkerThread.start(name: "vrt-bench", cpu: cpu) {
            do {
                let local = try LocalPacketPool(count: 8192, nearCPU: cpu)
                let pool = local.pool
                // Every buffer holds the test frame: transmit-only runs just set lengths.
                for i in 0..<pool.count {
                    frame.withUnsafeBytes {
                        (pool.buffer(UInt32(i)) + PacketPool.headroom).copyMemory(from: $0.baseAddress!, byteCount: 64)
                    }
                }
                var lc = IOLoop.Configuration()
                lc.readsPerTap = reads
                let loop = try IOLoop(pool: pool, configuration: lc)
                defer { loop.close() }
                try setup(loop)
                var rx = Frame.allocate()
                var tx = Frame.allocate()
                defer {
                    rx.deallocate()
                    tx.deallocate()
                }
                let c0 = threadCPU()
                let t0 = now()
                let end = t0 + seconds
                let e0 = loop.counters.enters
                var rounds = 0
                while true {
                    if rounds & 63 == 0 && now() >= end { break }
                    rounds &+= 1
                    if transmitOnly {
                        _ = loop.rx(into: &rx, maxWait: .zero)  // reaps write completions
                        pool.free(&rx)
                        let got = pool.alloc(into: &tx, upTo: tx.capacity)
                        for i in 0..<got {
                            let m = pool.meta(tx[i])
                            m.pointee.length = 64
                            m.pointee.txPort = 1
                        }
                        loop.tx(&tx)
                    } else {
                        _ = loop.rx(into: &rx, maxWait: .milliseconds(10))
                        if reflect {
                            for i in 0..<rx.count {
                                let idx = rx[i]
                                pool.meta(idx).pointee.txPort = 1
                                tx.append(idx)
                            }
                            rx.removeAll()
                        } else {
                            pool.free(&rx)
                        }
                        loop.tx(&tx)
                    }
                }
                let c = loop.counters(port: 1)
                var r = Result()
                r.seconds = now() - t0
                r.cpuSeconds = threadCPU() - c0
                r.packets = transmitOnly ? c.txPackets : c.rxPackets
                r.enters = loop.counters.enters - e0
                result.withLock { $0 = r }
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
        }
        worker.join()
        if let f = failure.withLock({ $0 }) {
            throw SystemError(call: "benchmark loop", object: "cpu \(cpu)", errno: 0, detail: f)
        }
        return result.withLock { $0! }
    }

    /// Capacity run: the loop's port is attached, `fill` queues a burst while the loop does
    /// not read, then the loop drains until 200 ms pass without a frame.
    static func runDrain(
        cpu: Int,
        reads: Int,
        reflect: Bool,
        fill: () throws -> UInt64,
        setup: @escaping @Sendable (IOLoop) throws -> Void
    ) throws -> Result {
        final class Gate: Sendable {
            let ready = Atomic<Int>(0)  // 1 ready, -1 failed
            let go = Atomic<Bool>(false)
            let result = Mutex<Result?>(nil)
            let failure = Mutex<String?>(nil)
        }
        let gate = Gate()
        let worker = try WorkerThread.start(name: "vrt-bench", cpu: cpu) {
            do {
                let local = try LocalPacketPool(count: 8192, nearCPU: cpu)
                let pool = local.pool
                var lc = IOLoop.Configuration()
                lc.readsPerTap = reads
                let loop = try IOLoop(pool: pool, configuration: lc)
                defer { loop.close() }
                try setup(loop)
                var rx = Frame.allocate()
                var tx = Frame.allocate()
                defer {
                    rx.deallocate()
                    tx.deallocate()
                }
                gate.ready.store(1, ordering: .releasing)
                while !gate.go.load(ordering: .acquiring) { usleep(1000) }
                let c0 = threadCPU()
                let t0 = now()
                let e0 = loop.counters.enters
                var last = t0
                var cLast = c0
                var eLast = e0
                var packets: UInt64 = 0
                while true {
                    let got = loop.rx(into: &rx, maxWait: .milliseconds(10))
                    if reflect {
                        for i in 0..<rx.count {
                            pool.meta(rx[i]).pointee.txPort = 1
                            tx.append(rx[i])
                        }
                        rx.removeAll()
                    } else {
                        pool.free(&rx)
                    }
                    loop.tx(&tx)
                    let t = now()
                    if got > 0 {
                        packets &+= UInt64(got)
                        last = t
                        cLast = threadCPU()
                        eLast = loop.counters.enters
                    } else if (packets > 0 && t - last > 0.2) || (packets == 0 && t - t0 > 5) {
                        break
                    }
                }
                var r = Result()
                r.packets = packets
                r.seconds = last - t0
                r.cpuSeconds = cLast - c0
                r.enters = eLast - e0
                gate.result.withLock { $0 = r }
            } catch {
                gate.failure.withLock { $0 = "\(error)" }
                gate.ready.store(-1, ordering: .releasing)
            }
        }
        while gate.ready.load(ordering: .acquiring) == 0 { usleep(1000) }
        var generated: UInt64 = 0
        if gate.ready.load(ordering: .acquiring) == 1 {
            generated = (try? fill()) ?? 0
            usleep(200_000)
        }
        gate.go.store(true, ordering: .releasing)
        worker.join()
        if let f = gate.failure.withLock({ $0 }) {
            throw SystemError(call: "benchmark loop", object: "cpu \(cpu)", errno: 0, detail: f)
        }
        var r = gate.result.withLock { $0! }
        r.generated = generated
        return r
    }

    /// The C reference's drain mode: it says "ready", we fill, we say "go".
    static func runReferenceDrain(
        _ path: String,
        _ mode: String,
        _ ifname: String,
        in ns: NetworkNamespace,
        _ o: Options,
        fill: () throws -> UInt64
    ) throws -> Result {
        let child = try Child(["/usr/sbin/ip", "netns", "exec", ns.name!, path, mode, ifname, "\(o.cpu)", "3600"])
        guard child.readLine() == "ready" else {
            throw SystemError(
                call: "reference",
                object: path,
                errno: 0,
                detail: "did not get ready: \(child.finish().1)"
            )
        }
        let generated = try fill()
        usleep(200_000)
        child.writeLine("go")
        let (status, text) = child.finish()
        var r = parseResult(text)
        r.generated = generated
        guard r.seconds > 0 else {
            throw SystemError(
                call: "reference",
                object: path,
                errno: 0,
                detail: "no result (exit status \(status)): \(text)"
            )
        }
        return r
    }

    static func parseResult(_ text: String) -> Result {
        var r = Result()
        for field in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let kv = field.split(separator: "=")
            guard kv.count == 2 else { continue }
            switch kv[0] {
            case "packets": r.packets = UInt64(kv[1]) ?? 0
            case "seconds": r.seconds = Double(kv[1]) ?? 0
            case "cpu": r.cpuSeconds = Double(kv[1]) ?? 0
            default: break
            }
        }
        return r
    }

    /// The C reference in the same namespace, same CPU.
    static func runReference(
        _ path: String,
        _ mode: String,
        _ ifname: String,
        in ns: NetworkNamespace,
        _ o: Options
    ) throws -> Result {
        let child = try Child([
            "/usr/sbin/ip", "netns", "exec", ns.name!, path, mode, ifname, "\(o.cpu)", "\(o.seconds)",
        ])
        let (status, text) = child.finish()
        let r = parseResult(text)
        guard r.seconds > 0 else {
            throw SystemError(
                call: "reference",
                object: path,
                errno: 0,
                detail: "no result (exit status \(status)): \(text)"
            )
        }
        return r
    }
}

/// A child process with its stdin and stdout on pipes.
final class Child {
    let pid: pid_t
    let stdinFD: Int32
    let stdoutFD: Int32
    private var buffered: [UInt8] = []

    init(_ argv: [String]) throws {
        var inPipe: [Int32] = [0, 0]
        var outPipe: [Int32] = [0, 0]
        guard pipe(&inPipe) == 0, pipe(&outPipe) == 0 else {
            throw SystemError(call: "pipe", object: argv[0], errno: errno)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_addclose(&actions, inPipe[1])
        posix_spawn_file_actions_addclose(&actions, outPipe[0])
        var pid: pid_t = 0
        let cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cargs, environ)
        posix_spawn_file_actions_destroy(&actions)
        close(inPipe[0])
        close(outPipe[1])
        guard rc == 0 else {
            close(inPipe[1])
            close(outPipe[0])
            throw SystemError(call: "posix_spawn", object: argv[0], errno: rc)
        }
        self.pid = pid
        stdinFD = inPipe[1]
        stdoutFD = outPipe[0]
    }

    func readLine() -> String? {
        var byte: UInt8 = 0
        var line: [UInt8] = []
        while read(stdoutFD, &byte, 1) == 1 {
            if byte == 10 { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
        return line.isEmpty ? nil : String(decoding: line, as: UTF8.self)
    }

    func writeLine(_ s: String) {
        let bytes = Array((s + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(stdinFD, $0.baseAddress, $0.count) }
    }

    /// Closes stdin, reads stdout to the end, waits. Returns (exit status, output).
    func finish() -> (Int32, String) {
        close(stdinFD)
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(stdoutFD, &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        close(stdoutFD)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return (status, String(decoding: out, as: UTF8.self))
    }
}

/// Sends 64-byte frames as fast as one pinned thread can through a transmit-only
/// AF_PACKET TX ring (qdisc bypass), until stopped.
final class Generator: Sendable {
    final class Shared: Sendable {
        let stop = Atomic<Bool>(false)
        let sent = Atomic<UInt64>(0)
    }
    let shared = Shared()
    let worker: WorkerThread
    let port: AFPacketPort

    init(interface: String, in ns: NetworkNamespace, cpu: Int) throws {
        var c = AFPacketPort.Configuration()
        c.receives = false
        c.txFrameCount = 4096
        let port = try AFPacketPort.open(interface: interface, in: ns, configuration: c)
        self.port = port
        let shared = shared
        let frame = IOBench.frame64
        worker = try WorkerThread.start(name: "vrt-gen", cpu: cpu) {
            guard let local = try? LocalPacketPool(count: 2048, nearCPU: cpu), let loop = try? IOLoop(pool: local.pool)
            else { return }
            defer { loop.close() }
            let pool = local.pool
            for i in 0..<pool.count {
                frame.withUnsafeBytes {
                    (pool.buffer(UInt32(i)) + PacketPool.headroom).copyMemory(from: $0.baseAddress!, byteCount: 64)
                }
            }
            try? loop.add(port, as: 0)
            var tx = Frame.allocate()
            var rx = Frame.allocate()
            while !shared.stop.load(ordering: .relaxed) {
                let got = pool.alloc(into: &tx, upTo: tx.capacity)
                for i in 0..<got {
                    let m = pool.meta(tx[i])
                    m.pointee.length = 64
                    m.pointee.txPort = 0
                }
                loop.tx(&tx)
                _ = loop.rx(into: &rx, maxWait: .zero)
                pool.free(&rx)
            }
            shared.sent.store(loop.counters(port: 0).txPackets, ordering: .relaxed)
            loop.remove(port: 0)
            tx.deallocate()
            rx.deallocate()
        }
    }

    /// Sends exactly `count` frames as fast as it can and returns when they are queued.
    static func burst(_ count: Int, interface: String, in ns: NetworkNamespace, cpu: Int) throws -> UInt64 {
        var c = AFPacketPort.Configuration()
        c.receives = false
        c.txFrameCount = 4096
        let port = try AFPacketPort.open(interface: interface, in: ns, configuration: c)
        defer { port.close() }
        let sent = Mutex<UInt64>(0)
        let frame = IOBench.frame64
        let worker = try WorkerThread.start(name: "vrt-gen", cpu: cpu) {
            guard let local = try? LocalPacketPool(count: 2048, nearCPU: cpu), let loop = try? IOLoop(pool: local.pool)
            else { return }
            defer { loop.close() }
            let pool = local.pool
            for i in 0..<pool.count {
                frame.withUnsafeBytes {
                    (pool.buffer(UInt32(i)) + PacketPool.headroom).copyMemory(from: $0.baseAddress!, byteCount: 64)
                }
            }
            try? loop.add(port, as: 0)
            var tx = Frame.allocate()
            var rx = Frame.allocate()
            var left = count
            var idle = 0
            // Frames the ring had no room for are counted as txDrops: send until `count`
            // frames were accepted into the ring.
            while left > 0 && idle < 100_000 {
                let before = loop.counters(port: 0).txPackets
                let got = pool.alloc(into: &tx, upTo: min(left, tx.capacity))
                for i in 0..<got {
                    let m = pool.meta(tx[i])
                    m.pointee.length = 64
                    m.pointee.txPort = 0
                }
                loop.tx(&tx)
                _ = loop.rx(into: &rx, maxWait: .zero)
                pool.free(&rx)
                let queued = Int(loop.counters(port: 0).txPackets - before)
                left -= queued
                idle = queued == 0 ? idle + 1 : 0
            }
            // Let the last kick finish.
            _ = loop.rx(into: &rx, maxWait: .milliseconds(50))
            pool.free(&rx)
            sent.withLock { $0 = loop.counters(port: 0).txPackets }
            loop.remove(port: 0)
            tx.deallocate()
            rx.deallocate()
        }
        worker.join()
        return sent.withLock { $0 }
    }

    /// Stops the generator (idempotent) and returns the frames it queued.
    @discardableResult
    func stop() -> UInt64 {
        if !shared.stop.exchange(true, ordering: .relaxed) {
            worker.join()
            port.close()
        }
        return shared.sent.load(ordering: .relaxed)
    }
}
