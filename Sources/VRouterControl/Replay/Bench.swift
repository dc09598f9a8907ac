// `vrouterd bench`: the captures are loaded into memory once, then replayed N times
// through one pipeline per worker (`--workers N`: N pinned threads, each with its own pool,
// pipeline and flow tables, over its share of the packets as an RSS hash on the outer
// headers would deal them; every pass starts on all workers at once and lasts until the
// slowest is done, so the aggregate is all packets over that time). The first pass runs with a cold flow cache (every flow is a
// miss that takes a route lookup and an install); later passes hit. Times cover the
// whole loop a live port would run: copy into a pool buffer (the RX DMA), every node,
// and handing the output frame back (TX), with no I/O. Per-node costs come from one
// extra pass with per-node timestamps on, so they never tax the headline figures.

import Foundation
import Glibc
import Synchronization
import VRouterCore
import VRouterIO

public struct BenchResult: Codable, Sendable {
    public var packets: Int
    public var repeats: Int
    public var mpps: Double
    public var ns_per_packet: Double
    /// The fastest warm pass (on a shared machine the mean carries every preemption).
    public var best_ns_per_packet: Double
    public var cold_mpps: Double
    public var cold_ns_per_packet: Double
    public var dropped: UInt64
    public var outputs: Int
    public var flow_hit_rate: Double
    public var flows_installed: UInt64
    public var routes: Int
    public var node_ns_per_packet: [String: Double]
    public var drops: [String: UInt64]
    public var workers: Int
    /// Each worker's packets per pass and its own warm Mpps (mean of its warm passes).
    public var worker_packets: [Int]
    public var worker_mpps: [Double]
}

/// One worker's share of a bench: its packets, pool, pipeline and frames, and the seconds
/// each pass took it.
final class BenchLane: @unchecked Sendable {  // Safe: one thread at a time; the barrier orders the hand-over.
    let inputs: PacketSet
    let pool: PacketPool
    var pipeline: Pipeline
    var input: Frame
    var output: Frame
    var seconds: [Double] = []
    var warmHits: UInt64 = 0
    var warmLookups: UInt64 = 0
    var dropsPerPass: UInt64 = 0
    var outputs = 0

    init(inputs: PacketSet, pool: PacketPool, pipeline: consuming Pipeline) {
        self.inputs = inputs
        self.pool = pool
        self.output = Frame.allocate(capacity: pipeline.config.outputCapacity)
        self.pipeline = pipeline
        self.input = Frame.allocate()
    }

    /// One pass over the lane's packets; records its time (and hit counts after the first).
    func pass(_ view: UnsafePointer<ForwardingView>) {
        let c = pipeline.counters
        let dropsBefore = c.totalDrops
        let hitsBefore = c.eventCount(.flowHit)
        let missesBefore = c.eventCount(.flowMiss) + c.eventCount(.flowStale)
        let clock = ContinuousClock()
        let pool = self.pool
        let t0 = clock.now
        let stats = pipeline.replay(inputs, input: &input, output: &output, tables: view, now: 1_000) {
            pool.free(&$0)
        }
        seconds.append((clock.now - t0).seconds)
        outputs = stats.outputs
        dropsPerPass = c.totalDrops - dropsBefore
        if seconds.count > 1 {
            let hits = c.eventCount(.flowHit) - hitsBefore
            warmHits += hits
            warmLookups += hits + c.eventCount(.flowMiss) + c.eventCount(.flowStale) - missesBefore
        }
    }

    deinit {
        input.deallocate()
        output.deallocate()
        pool.deallocate()  // the pipeline's deinit (after this) does not touch the pool
    }
}

/// A reusable spinning barrier for a few pinned threads (one per CPU: nobody waits long).
final class SpinBarrier: Sendable {
    let parties: Int
    let arrived = Atomic<Int>(0)
    let phase = Atomic<Int>(0)
    init(parties: Int) { self.parties = parties }

    func wait() {
        let p = phase.load(ordering: .acquiring)
        if arrived.add(1, ordering: .acquiringAndReleasing).newValue == parties {
            arrived.store(0, ordering: .relaxed)
            phase.store(p + 1, ordering: .releasing)
            return
        }
        while phase.load(ordering: .acquiring) == p { sched_yield() }
    }
}

extension PacketSet {
    /// Deals the packets to `n` sets by an RSS-style hash of the outer headers (addresses,
    /// protocol and ports), as a NIC's receive-side scaling spreads flows over queues.
    public func split(_ n: Int) -> [PacketSet] {
        guard n > 1 else { return [self] }
        var out = [PacketSet](repeating: PacketSet(), count: n)
        for i in 0..<count {
            withPacket(i) { p in
                out[Int(Self.rssHash(p) % UInt32(n))].append(p, port: ports[i], timestamp: timestamps[i])
            }
        }
        return out
    }

    /// A 5-tuple hash of an Ethernet frame (one VLAN tag skipped; IPv4 and IPv6; ports of
    /// TCP/UDP unless fragmented); anything else hashes its Ethernet addresses.
    static func rssHash(_ p: UnsafeRawBufferPointer) -> UInt32 {
        func word(_ o: Int, _ n: Int) -> UInt64 {
            var v: UInt64 = 0
            for k in 0..<n where o + k < p.count { v = v << 8 | UInt64(p[o + k]) }
            return v
        }
        var o = 12
        var type = word(o, 2)
        if type == 0x8100 {
            o += 4
            type = word(o, 2)
        }
        o += 2
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15
        func mix(_ v: UInt64) { h = (h ^ v) &* 0xBF58_476D_1CE4_E5B9 ^ (h >> 29) }
        var proto: UInt64 = 0
        var l4 = -1
        if type == 0x0800, p.count >= o + 20 {
            mix(word(o + 12, 8))
            proto = word(o + 9, 1)
            if word(o + 6, 2) & 0x3FFF == 0 { l4 = o + Int(word(o, 1) & 0xF) * 4 }
        } else if type == 0x86DD, p.count >= o + 40 {
            for k in stride(from: 8, to: 40, by: 8) { mix(word(o + k, 8)) }
            proto = word(o + 6, 1)
            l4 = o + 40
        } else {
            mix(word(0, 8))
            mix(word(8, 4))
        }
        mix(proto)
        if proto == 6 || proto == 17, l4 >= 0, p.count >= l4 + 4 { mix(word(l4, 4)) }
        return UInt32(truncatingIfNeeded: h ^ h >> 32)
    }
}

extension ReplayNode {
    /// Replays the captures `repeats` times on `workers` pinned threads (CPUs taken in order
    /// from the process's affinity mask; one worker runs on the calling thread, unpinned).
    public func bench(repeats: Int, workers: Int = 1, progress: (String) -> Void) throws(PcapError) -> BenchResult {
        let all = try loadInputs()
        guard !all.isEmpty else { throw PcapError("the configured captures hold no packets") }
        let passes = max(repeats, 1)
        let lanes = all.split(workers).map { share in
            let pool = makePool()
            return BenchLane(inputs: share, pool: pool, pipeline: makePipeline(pool))
        }
        let view = UnsafePointer(tables.viewPointer)
        let clock = ContinuousClock()
        let began = clock.now
        if lanes.count == 1 {
            let lane = lanes[0]
            for pass in 0..<passes {
                lane.pass(view)
                if (clock.now - began).seconds > 2 {
                    let mpps = Double(lane.inputs.count) / lane.seconds[pass] / 1e6
                    progress(String(format: "pass %d/%d: %.2f Mpps", pass + 1, passes, mpps))
                }
            }
        } else {
            let cpus = CPU.allowed
            let barrier = SpinBarrier(parties: lanes.count)
            let viewBits = UInt(bitPattern: view)
            var threads: [WorkerThread] = []
            for (w, lane) in lanes.enumerated() {
                do {
                    threads.append(
                        try WorkerThread.start(name: "vrt-bench\(w)", cpu: cpus.isEmpty ? nil : cpus[w % cpus.count]) {
                            // Safe: the tables outlive the threads (joined below).
                            let view = UnsafePointer<ForwardingView>(bitPattern: viewBits)!
                            for _ in 0..<passes {
                                barrier.wait()
                                lane.pass(view)
                            }
                        }
                    )
                } catch {
                    // A worker that cannot start would leave the others at the barrier.
                    preconditionFailure("bench: \(error)")
                }
            }
            for t in threads { t.join() }
        }
        // A pass lasts until its slowest worker is done.
        let seconds = (0..<passes).map { pass in lanes.map { $0.seconds[pass] }.max()! }
        let cold = seconds[0]
        let warmSeconds = passes > 1 ? Array(seconds[1...]) : [cold]
        let warm = warmSeconds.reduce(0, +) / Double(warmSeconds.count)
        let packets = all.count

        // Per-node costs from one more (warm) pass with node timestamps on (one worker only).
        var nodes: [String: Double] = [:]
        if lanes.count == 1 {
            let lane = lanes[0]
            let nodesBefore = (0..<PipelineNode.allCases.count).map { lane.pipeline.counters.nodes[$0] }
            lane.pipeline.config.measureNodes = true
            _ = lane.pipeline.replay(lane.inputs, input: &lane.input, output: &lane.output, tables: view, now: 1_000) {
                lane.pool.free(&$0)
            }
            lane.pipeline.config.measureNodes = false
            for node in PipelineNode.allCases {
                let now = lane.pipeline.counters.nodes[node.rawValue]
                let ns = now.nanoseconds - nodesBefore[node.rawValue].nanoseconds
                if now.packets > nodesBefore[node.rawValue].packets {
                    nodes[node.name] = Double(ns) / Double(packets)
                }
            }
        }
        var drops: [String: UInt64] = [:]
        for reason in DropReason.allCases {
            let n = lanes.reduce(0) { $0 + $1.pipeline.counters.dropCount(reason) }
            if n > 0 { drops[reason.name] = n }
        }
        let warmHits = lanes.reduce(0) { $0 + $1.warmHits }
        let warmLookups = lanes.reduce(0) { $0 + $1.warmLookups }
        let result = BenchResult(
            packets: packets,
            repeats: passes,
            mpps: Double(packets) / warm / 1e6,
            ns_per_packet: warm * 1e9 / Double(packets),
            best_ns_per_packet: warmSeconds.min()! * 1e9 / Double(packets),
            cold_mpps: Double(packets) / cold / 1e6,
            cold_ns_per_packet: cold * 1e9 / Double(packets),
            dropped: lanes.reduce(0) { $0 + $1.dropsPerPass },
            outputs: lanes.reduce(0) { $0 + $1.outputs },
            flow_hit_rate: warmLookups > 0 ? Double(warmHits) / Double(warmLookups) : 0,
            flows_installed: lanes.reduce(0) { $0 + $1.pipeline.counters.eventCount(.flowInstalled) },
            routes: compiled.routeCount,
            node_ns_per_packet: nodes,
            drops: drops,
            workers: lanes.count,
            worker_packets: lanes.map(\.inputs.count),
            worker_mpps: lanes.map { lane in
                let w = lane.seconds.count > 1 ? Array(lane.seconds[1...]) : lane.seconds
                return Double(lane.inputs.count) / (w.reduce(0, +) / Double(w.count)) / 1e6
            }
        )
        return result
    }
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}
