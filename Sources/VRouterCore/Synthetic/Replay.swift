// Replaying a PacketSet through a pipeline: packets are copied into pool buffers a
// frame at a time (the RX side), processed, and each output frame is handed to the
// caller (the TX side), which transmits and frees its packets. Used by `vrouterd
// replay`/`bench`, the benchmarks and the tests, so all measure the same loop.

import CVRouterShims

public struct ReplayStats: Sendable {
    public var packets = 0
    public var outputs = 0
    /// Packets handed to the control plane (the punt frame; counted and freed here).
    public var punted = 0
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
        _ set: PacketSet,
        input: inout Frame,
        output: inout Frame,
        tables: UnsafePointer<ForwardingView>,
        now: UInt32?,
        frameSize: Int = Frame.defaultCapacity,
        transmit: (inout Frame) -> Void
    ) -> ReplayStats {
        var stats = ReplayStats()
        let pool = self.pool
        let size = min(frameSize, input.capacity)
        var punt = Frame.allocate(capacity: size)
        defer { punt.deallocate() }
        // Raw views of the capture's arrays, taken once: no bounds or uniqueness checks
        // per packet. Safe: every index below is < set.count, the length of each array.
        set.bytes.withUnsafeBytes { raw in
            set.offsets.withUnsafeBufferPointer { offsets in
                set.lengths.withUnsafeBufferPointer { lengths in
                    set.ports.withUnsafeBufferPointer { ports in
                        set.timestamps.withUnsafeBufferPointer { stamps in
                            let base = raw.baseAddress!
                            let maxLength = pool.maxFrameLength
                            var i = 0
                            while i < set.count {
                                let n = min(size, set.count &- i)
                                for k in 0..<n {
                                    let j = i &+ k
                                    // The capture is streamed from memory as a NIC's DMA would
                                    // land it: fetch a few packets ahead so the copy does not
                                    // wait on each one (the copy stalled ~half the RX time).
                                    if j &+ 8 < set.count { vrt_prefetch(base + offsets[j &+ 8]) }
                                    guard let idx = pool.alloc() else {
                                        // The caller holds every buffer (it did not free outputs): count, go on.
                                        counters.drop(.noMemory, port: ports[j])
                                        continue
                                    }
                                    let m = pool.meta(idx)
                                    // Frames larger than a buffer are cut, as a NIC with a smaller buffer would.
                                    let copy = min(Int(lengths[j]), maxLength)
                                    copyFrame(
                                        to: pool.buffer(idx) + PacketPool.headroom,
                                        from: base + offsets[j],
                                        count: copy
                                    )
                                    m.pointee.length = UInt16(truncatingIfNeeded: copy)
                                    m.pointee.rxPort = ports[j]
                                    m.pointee.timestamp = stamps[j]
                                    input.append(idx)
                                }
                                stats.packets &+= input.count
                                let clock = now ?? UInt32(truncatingIfNeeded: stamps[i] / 1_000_000)
                                process(&input, tables: tables, now: clock, output: &output, punt: &punt)
                                stats.outputs &+= output.count
                                stats.punted &+= punt.count
                                pool.free(&punt)
                                stats.frames &+= 1
                                transmit(&output)
                                output.removeAll()
                                i &+= n
                            }
                        }
                    }
                }
            }
        }
        return stats
    }
}

/// Copies a frame into a buffer. Small frames (the common case in a packet-rate test) are
/// moved with inline 8-byte loads and stores instead of a memmove call, as a NIC's DMA
/// would cost nothing to the CPU; the last store overlaps so any length ≥ 8 takes no tail loop.
@inlinable @inline(__always)
public func copyFrame(to dst: UnsafeMutableRawPointer, from src: UnsafeRawPointer, count: Int) {
    guard count >= 8 && count <= 256 else {
        dst.copyMemory(from: src, byteCount: count)
        return
    }
    var i = 0
    while i &+ 8 <= count {
        dst.storeBytes(of: src.loadUnaligned(fromByteOffset: i, as: UInt64.self), toByteOffset: i, as: UInt64.self)
        i &+= 8
    }
    let tail = count &- 8
    dst.storeBytes(of: src.loadUnaligned(fromByteOffset: tail, as: UInt64.self), toByteOffset: tail, as: UInt64.self)
}
