// A capture file, as `vrouterd replay` and `bench` read one: through libpcap (pcap with
// micro- or nanosecond stamps, pcapng) into a PacketSet, then replayed through the
// pipeline on the sample topology, the clock following the capture's timestamps.
//
// Input: the file's bytes. It is written to a memory file and read through its path, as
// vrouterd reads one.
//
// Checked: a damaged file is an error naming the file, never a crash; the set holds what
// was read; the replay accounts for every packet (sent, or counted under one drop reason,
// the node's own packets included) and returns every buffer; ASan fences every buffer.

import FuzzSupport
import Glibc
import VRouterCore
import VRouterIO

/// The memory file inputs are written to.
let file = MemoryFile("pcap")
let path = file.path
let tables: ForwardingTables = {
    var topology = SampleTopology()
    return topology.builder.build()
}()

final class Rig {
    let fenced = FencedPool(count: 640, bufferSize: 2048, fill: 0)
    var pipeline: Pipeline
    init() {
        var config = PipelineConfig()
        config.flowCapacity = 256
        pipeline = Pipeline(pool: fenced.pool, config: config)
    }
}
nonisolated(unsafe) let rig = Rig()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPcap(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    file.replace(with: UnsafeRawBufferPointer(start: data, count: size))
    var set = PacketSet()
    let count: Int
    do {
        count = try PcapFile.read(path: path, port: SampleTopology.fabricPort, into: &set)
    } catch {
        require(error.description.hasPrefix(path), "an error that does not name the file: \(error)")
        return 0
    }
    require(count == set.count, "read says \(count) packets, the set holds \(set.count)")
    // Every other packet from a pod, so both sides of the pipeline see the capture.
    var mixed = PacketSet()
    for i in 0..<set.count {
        mixed.append(
            set.packet(i),
            port: i % 2 == 0 ? SampleTopology.fabricPort : SampleTopology.blueA,
            timestamp: set.timestamps[i]
        )
    }

    rig.fenced.renew(fill: 0)
    rig.pipeline.reset()
    let pool = rig.fenced.pool
    var input = Frame.allocate()
    var output = Frame.allocate(capacity: rig.pipeline.config.outputCapacity)
    defer {
        input.deallocate()
        output.deallocate()
    }
    let stats = rig.pipeline.replay(
        mixed,
        input: &input,
        output: &output,
        tables: UnsafePointer(tables.viewPointer),
        now: nil
    ) {
        pool.free(&$0)
    }
    let c = rig.pipeline.counters
    let made = c.eventCount(.icmpErrorSent) + c.eventCount(.fragmentsMade) - c.eventCount(.packetsFragmented)
    require(
        UInt64(mixed.count) + made == UInt64(stats.outputs + stats.punted) + c.totalDrops,
        "\(mixed.count) packets in and \(made) made, but \(stats.outputs) sent, \(stats.punted) punted "
            + "and \(c.totalDrops) dropped"
    )
    require(pool.available == pool.count, "\(pool.count - pool.available) buffers not returned after the replay")
    return 0
}
