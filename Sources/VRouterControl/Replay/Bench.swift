// `vrouterd bench`: the captures are loaded into memory once, then replayed N times
// through one pipeline. The first pass runs with a cold flow cache (every flow is a
// miss that takes a route lookup and an install); later passes hit. Times cover the
// whole loop a live port would run: copy into a pool buffer (the RX DMA), every node,
// and handing the output frame back (TX), with no I/O. Per-node costs come from one
// extra pass with per-node timestamps on, so they never tax the headline figures.

import Foundation
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
}

extension ReplayNode {
    public func bench(repeats: Int, progress: (String) -> Void) throws(PcapError) -> BenchResult {
        let inputs = try loadInputs()
        guard !inputs.isEmpty else { throw PcapError("the configured captures hold no packets") }
        let pool = makePool()
        var pipeline = makePipeline(pool)
        var input = Frame.allocate()
        var output = Frame.allocate(capacity: pipeline.config.outputCapacity)
        defer {
            input.deallocate()
            output.deallocate()
        }
        let view = UnsafePointer(tables.viewPointer)
        let clock = ContinuousClock()
        var cold = 0.0
        var warmTotal = 0.0
        var warmBest = Double.infinity
        var warmPasses = 0
        var outputs = 0
        var dropsPerPass: UInt64 = 0
        var warmHits: UInt64 = 0
        var warmLookups: UInt64 = 0
        let began = clock.now
        for pass in 0..<max(repeats, 1) {
            let dropsBefore = pipeline.counters.totalDrops
            let hitsBefore = pipeline.counters.eventCount(.flowHit)
            let missesBefore = pipeline.counters.eventCount(.flowMiss) + pipeline.counters.eventCount(.flowStale)
            let t0 = clock.now
            let stats = pipeline.replay(inputs, input: &input, output: &output, tables: view, now: 1_000) {
                pool.free(&$0)
            }
            let seconds = (clock.now - t0).seconds
            outputs = stats.outputs
            dropsPerPass = pipeline.counters.totalDrops - dropsBefore
            if pass == 0 {
                cold = seconds
            } else {
                warmTotal += seconds
                warmBest = min(warmBest, seconds)
                warmPasses += 1
                warmHits += pipeline.counters.eventCount(.flowHit) - hitsBefore
                warmLookups +=
                    pipeline.counters.eventCount(.flowHit) - hitsBefore + pipeline.counters.eventCount(.flowMiss)
                    + pipeline.counters.eventCount(.flowStale) - missesBefore
            }
            if (clock.now - began).seconds > 2 {
                let mpps = Double(inputs.count) / seconds / 1e6
                progress(String(format: "pass %d/%d: %.2f Mpps", pass + 1, repeats, mpps))
            }
        }
        // Per-node costs from one more (warm) pass with node timestamps on.
        let nodesBefore = (0..<PipelineNode.allCases.count).map { pipeline.counters.nodes[$0] }
        pipeline.config.measureNodes = true
        _ = pipeline.replay(inputs, input: &input, output: &output, tables: view, now: 1_000) { pool.free(&$0) }
        pipeline.config.measureNodes = false
        var nodes: [String: Double] = [:]
        for node in PipelineNode.allCases {
            let now = pipeline.counters.nodes[node.rawValue]
            let ns = now.nanoseconds - nodesBefore[node.rawValue].nanoseconds
            if now.packets > nodesBefore[node.rawValue].packets {
                nodes[node.name] = Double(ns) / Double(inputs.count)
            }
        }
        let warm = warmPasses > 0 ? warmTotal / Double(warmPasses) : cold
        let drops = Dictionary(
            uniqueKeysWithValues: DropReason.allCases.map { ($0.name, pipeline.counters.dropCount($0)) }.filter {
                $0.1 > 0
            }
        )
        let result = BenchResult(
            packets: inputs.count,
            repeats: max(repeats, 1),
            mpps: Double(inputs.count) / warm / 1e6,
            ns_per_packet: warm * 1e9 / Double(inputs.count),
            best_ns_per_packet: (warmPasses > 0 ? warmBest : cold) * 1e9 / Double(inputs.count),
            cold_mpps: Double(inputs.count) / cold / 1e6,
            cold_ns_per_packet: cold * 1e9 / Double(inputs.count),
            dropped: dropsPerPass,
            outputs: outputs,
            flow_hit_rate: warmLookups > 0 ? Double(warmHits) / Double(warmLookups) : 0,
            flows_installed: pipeline.counters.eventCount(.flowInstalled),
            routes: compiled.routeCount,
            node_ns_per_packet: nodes,
            drops: drops
        )
        _ = consume pipeline
        pool.deallocate()
        return result
    }
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}
