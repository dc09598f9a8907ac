// A node fed from pcap files instead of live ports: `vrouterd replay` runs it once and
// writes what each port transmitted; `vrouterd bench` loads the captures into memory
// once and replays them N times through the same pipeline, timing each pass.

import Foundation
import VRouterCore
import VRouterIO

public struct PortSummary: Sendable, Codable {
    public var name: String
    public var received: UInt64
    public var transmitted: UInt64
    public var dropped: UInt64
}

public struct ReplaySummary: Sendable {
    public var packets: Int
    public var outputs: Int
    public var punted: Int
    public var ports: [PortSummary]
    public var drops: [(String, UInt64)]
    public var events: [(String, UInt64)]
    public var totalDrops: UInt64
}

public final class ReplayNode {
    public let config: NodeConfig
    public let compiled: CompiledNode
    public let tables: ForwardingTables
    let portNames: [String]

    public init(config: NodeConfig) throws(ConfigError) {
        self.config = config
        for n in config.remoteNodes where n.mac == nil {
            throw ConfigError("remoteNodes.\(n.name): a replay needs the node's underlay mac")
        }
        if config.needsUnderlayVRF, let f = config.interfaces.first(where: { $0.kind == .fabric }), f.gateway != nil,
            f.gatewayMAC == nil
        {
            throw ConfigError("interfaces.\(f.name): a replay needs the underlay gateway's mac (gatewayMAC)")
        }
        var c = try config.makeTables()
        compiled = c
        tables = c.builder.build()
        portNames = config.interfaces.map(\.name)
    }

    /// Reads every interface's input capture, merged in timestamp order.
    public func loadInputs() throws(PcapError) -> PacketSet {
        var sets: [PacketSet] = []
        for (i, itf) in config.interfaces.enumerated() {
            guard let path = itf.pcapIn else { continue }
            var s = PacketSet()
            try PcapFile.read(path: config.resolve(path), port: UInt16(i), into: &s)
            sets.append(s)
        }
        return PacketSet.merged(sets)
    }

    func makePool() -> PacketPool {
        PacketPool.allocate(count: config.poolBuffers, bufferSize: config.bufferSize)
    }

    func makePipeline(_ pool: PacketPool) -> Pipeline {
        var pc = PipelineConfig()
        pc.flowCapacity = config.flowCapacity
        pc.flowCapacity6 = config.flowCapacity6
        pc.flowIdleTimeout = UInt32(min(config.flowIdleTimeout * 1000, Double(UInt32.max / 2)))
        pc.snat = config.snat.map { SNATPortRange(first: $0.first, last: $0.last) }
        return Pipeline(pool: pool, config: pc)
    }

    /// Runs the inputs once, writing each port's transmissions to its output capture.
    public func replay() throws(PcapError) -> ReplaySummary {
        let inputs = try loadInputs()
        var writers: [Int: PcapWriter] = [:]
        for (i, itf) in config.interfaces.enumerated() {
            if let out = itf.pcapOut { writers[i] = try PcapWriter(path: config.resolve(out)) }
        }
        let pool = makePool()
        var pipeline = makePipeline(pool)
        var input = Frame.allocate()
        var output = Frame.allocate(capacity: pipeline.config.outputCapacity)
        defer {
            input.deallocate()
            output.deallocate()
        }
        let stats = pipeline.replay(
            inputs,
            input: &input,
            output: &output,
            tables: UnsafePointer(tables.viewPointer),
            now: nil
        ) { out in
            for k in 0..<out.count {
                let idx = out[k]
                let m = pool.metas[Int(idx)]
                writers[Int(m.txPort)]?.write(pool.bytes(idx), timestamp: m.timestamp)
                pool.free(idx)
            }
            out.removeAll()
        }
        for w in writers.values { try w.close() }
        let summary = summarize(pipeline.counters, packets: inputs.count, outputs: stats.outputs, punted: stats.punted)
        _ = consume pipeline
        pool.deallocate()
        return summary
    }

    func summarize(_ c: Counters, packets: Int, outputs: Int, punted: Int) -> ReplaySummary {
        let ports = portNames.enumerated().map { i, name in
            PortSummary(
                name: name,
                received: c.ports[i].rxPackets,
                transmitted: c.ports[i].txPackets,
                dropped: c.ports[i].drops
            )
        }
        let drops = DropReason.allCases.map { ($0.name, c.dropCount($0)) }.filter { $0.1 > 0 }
        let events = PipelineEvent.allCases.map { ($0.name, c.eventCount($0)) }.filter { $0.1 > 0 }
        return ReplaySummary(
            packets: packets,
            outputs: outputs,
            punted: punted,
            ports: ports,
            drops: drops,
            events: events,
            totalDrops: c.totalDrops
        )
    }
}
