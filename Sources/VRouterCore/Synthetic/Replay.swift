// Replaying a PacketSet through a pipeline: packets are copied into pool buffers a
// frame at a time (the RX side), processed, and each output frame is handed to the
// caller (the TX side), which transmits and frees its packets. Used by `vrouterd
// replay`/`bench`, the benchmarks and the tests, so all measure the same loop.

public struct ReplayStats: Sendable {
    public var packets = 0
    public var outputs = 0
    public var frames = 0
    public var nanoseconds: UInt64 = 0
    public init() {}
}

extension Pipeline {
    /// Feeds `set` once, in order, in frames of up to `frameSize` packets. `now` is the
    /// pipeline clock (ms) for the whole pass; nil runs the clock with the capture (each
    /// frame's `now` is its first packet's timestamp). `transmit` receives each output frame and
    /// must free every packet in it before returning (it may leave it non-empty only by
    /// freeing; the frame is emptied after the call).
    public mutating func replay(
        _ set: PacketSet, input: inout Frame, output: inout Frame, tables: UnsafePointer<ForwardingView>,
        now: UInt32?, frameSize: Int = Frame.defaultCapacity, transmit: (inout Frame) -> Void
    ) -> ReplayStats {
        var stats = ReplayStats()
        let pool = self.pool
        let size = min(frameSize, input.capacity)
        set.bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress!
            var i = 0
            while i < set.count {
                let n = min(size, set.count &- i)
                for k in 0..<n {
                    let j = i &+ k
                    guard let idx = pool.alloc() else {
                        // The caller holds every buffer (it did not free outputs): count, go on.
                        counters.drop(.noMemory, port: set.ports[j])
                        continue
                    }
                    let len = Int(set.lengths[j])
                    let m = pool.meta(idx)
                    // Frames larger than a buffer are cut, as a NIC with a smaller buffer would.
                    let copy = min(len, pool.maxFrameLength)
                    (pool.buffer(idx) + PacketPool.headroom).copyMemory(from: base + set.offsets[j], byteCount: copy)
                    m.pointee.length = UInt16(copy)
                    m.pointee.rxPort = set.ports[j]
                    m.pointee.timestamp = set.timestamps[j]
                    input.append(idx)
                }
                stats.packets &+= input.count
                let clock = now ?? UInt32(truncatingIfNeeded: set.timestamps[i] / 1_000_000)
                process(&input, tables: tables, now: clock, output: &output)
                stats.outputs &+= output.count
                stats.frames &+= 1
                transmit(&output)
                output.removeAll()
                i &+= n
            }
        }
        return stats
    }
}
