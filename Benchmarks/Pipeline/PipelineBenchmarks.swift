// The whole pipeline on the sample node: frames of 64-byte UDP packets from a pod,
// routed over a table of BGP-like routes toward a remote node and VXLAN-encapsulated,
// with the flow cache warm (every flow installed by a first pass). Each benchmark
// iteration is one packet; a sample is 1,000 packets in frames of 250, copied into pool
// buffers (RX), processed, and freed (TX), so the time per iteration is ns/packet and
// the malloc count of a sample must not grow with the packets in it.
import Benchmark
import VRouterCore

final class PipelineFixture: @unchecked Sendable {
    let tables: ForwardingTables
    let pool: PacketPool
    var pipeline: Pipeline
    var input = Frame.allocate()
    var output: Frame
    var punt = Frame.allocate()
    let traffic: PacketSet
    var cursor = 0
    let frameSize = 250

    init(routes: Int, flows: Int, flowCapacity: Int) {
        var topo = SampleTopology()
        let rs = SyntheticRoutes.ipv4(count: routes, seed: 42)
        var prefixes: [IPv4Prefix] = []
        prefixes.reserveCapacity(rs.count)
        for (prefix, _) in rs {
            // Keep the sample's own prefixes; everything else goes to node A over VXLAN.
            try? topo.builder.addRoute(
                vrf: SampleTopology.blue,
                prefix,
                RouteTarget(nexthop: SampleTopology.nhNodeA, label: SampleTopology.vniBlue)
            )
            prefixes.append(prefix)
        }
        tables = topo.builder.build()
        pool = .allocate(count: 8192)
        var config = PipelineConfig()
        config.flowCapacity = flowCapacity
        pipeline = Pipeline(pool: pool, config: config)
        output = .allocate(capacity: config.outputCapacity)
        traffic = SyntheticTraffic.podFlows(
            port: SampleTopology.blueA,
            mac: SampleTopology.blueAMAC,
            source: SampleTopology.blueAIP,
            prefixes: prefixes,
            flows: flows,
            seed: 7
        )
        // Warm: one pass installs every flow.
        let pool = self.pool
        _ = pipeline.replay(traffic, input: &input, output: &output, tables: UnsafePointer(tables.viewPointer), now: 1)
        {
            pool.free(&$0)
        }
    }

    /// Forwards the next `frames` frames of the traffic, wrapping around.
    @inline(__always)
    func run(frames: Int) {
        let pool = self.pool
        let view = UnsafePointer(tables.viewPointer)
        traffic.bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress!
            for _ in 0..<frames {
                for _ in 0..<frameSize {
                    let idx = pool.alloc()!
                    let len = Int(traffic.lengths[cursor])
                    (pool.buffer(idx) + PacketPool.headroom).copyMemory(
                        from: base + traffic.offsets[cursor],
                        byteCount: len
                    )
                    pool.metas[Int(idx)].length = UInt16(len)
                    pool.metas[Int(idx)].rxPort = traffic.ports[cursor]
                    input.append(idx)
                    cursor += 1
                    if cursor == traffic.count { cursor = 0 }
                }
                pipeline.process(&input, tables: view, now: 2, output: &output, punt: &punt)
                pool.free(&output)
                pool.free(&punt)
            }
        }
    }
}

nonisolated(unsafe) var fixtures: [String: PipelineFixture] = [:]

func fixture(_ name: String, routes: Int, flows: Int, flowCapacity: Int) -> PipelineFixture {
    if let f = fixtures[name] { return f }
    let f = PipelineFixture(routes: routes, flows: flows, flowCapacity: flowCapacity)
    fixtures[name] = f
    return f
}

let benchmarks: @Sendable () -> Void = {
    let config = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .instructions],
        timeUnits: .nanoseconds,
        scalingFactor: .kilo,
        maxDuration: .seconds(5),
        maxIterations: 1_000_000
    )

    Benchmark("pipeline pod→VXLAN warm, 64K flows, 1M routes (ns/packet)", configuration: config) { b in
        let f = fixture("64k", routes: 1_000_000, flows: 65_536, flowCapacity: 1 << 17)
        b.startMeasurement()
        f.run(frames: b.scaledIterations.count / f.frameSize)
        b.stopMeasurement()
    }

    Benchmark("pipeline pod→VXLAN warm, 1M flows, 1M routes (ns/packet)", configuration: config) { b in
        let f = fixture("1m", routes: 1_000_000, flows: 1_000_000, flowCapacity: 1 << 21)
        b.startMeasurement()
        f.run(frames: b.scaledIterations.count / f.frameSize)
        b.stopMeasurement()
    }
}
