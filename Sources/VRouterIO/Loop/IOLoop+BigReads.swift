// Reads of taps with offloads need room for a 64 KB superframe each, and a tap keeps
// `readsPerTap` reads outstanding: pinning a big buffer per outstanding read would cost
// 2 MiB per tap whether it is busy or idle. Instead the loop lends big buffers to the
// kernel through a provided-buffer ring (IORING_REGISTER_PBUF_RING, 5.19+): reads carry
// IOSQE_BUFFER_SELECT and no buffer, the kernel picks one from the ring only when a frame
// is there, and the completion names it (IORING_CQE_F_BUFFER, the buffer id in the upper
// 16 bits). The ring is refilled from the pool's big buffers after each reap; a frame
// small enough for a small buffer is copied into one and its big buffer goes straight
// back into the ring, so small packets never use up big ones.
//
// Ring layout (include/uapi/linux/io_uring.h): entries of 16 bytes {addr, len, bid,
// resv}, the tail overlaid on entry 0's resv; we publish entries with a release store of
// the tail (io_uring_buf_ring_advance).

import CURing
import CVRouterShims
import Glibc
import VRouterCore

struct BigReadRing {
    static let group: UInt16 = 1
    /// Bytes a read may fill: the header and the largest frame a 16-bit length describes,
    /// plus one so that a larger (truncated) frame shows as too long.
    static let readLength = VirtioNet.headerLength &+ 0xFFFF &+ 1

    let ring: UnsafeMutablePointer<io_uring_buf_ring>
    let mapLength: Int
    let entries: Int
    /// Buffers in the ring (published or about to be).
    var filled = 0
    /// Entries added since the last publication.
    var pending = 0
    /// Which big buffers (by buffer id) are in the ring, for returning them on close.
    let held: UnsafeMutablePointer<Bool>

    /// Registers a ring of up to `entries` (rounded down to a power of two, at most half the
    /// pool's big buffers) and fills it; nil when the pool has no big buffers or the
    /// kernel refuses.
    static func make(_ uring: UnsafeMutablePointer<io_uring>, pool: PacketPool, entries want: Int) -> BigReadRing? {
        let limit = min(want, pool.bigCount / 2, 32768)
        guard limit >= 1 else { return nil }
        var n = 1
        while n * 2 <= limit { n *= 2 }
        let bytes = max(n * MemoryLayout<io_uring_buf>.stride, Int(sysconf(Int32(_SC_PAGESIZE))))
        let mem = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let mem, mem != MAP_FAILED else { return nil }
        let br = mem.assumingMemoryBound(to: io_uring_buf_ring.self)
        io_uring_buf_ring_init(br)
        var reg = io_uring_buf_reg()
        reg.ring_addr = UInt64(UInt(bitPattern: mem))
        reg.ring_entries = UInt32(n)
        reg.bgid = group
        guard io_uring_register_buf_ring(uring, &reg, 0) == 0 else {
            munmap(mem, bytes)
            return nil
        }
        let held = UnsafeMutablePointer<Bool>.allocate(capacity: pool.bigCount)
        held.initialize(repeating: false, count: pool.bigCount)
        var r = BigReadRing(ring: br, mapLength: bytes, entries: n, held: held)
        r.refill(pool)
        return r
    }

    @inline(__always)
    func bid(_ pool: PacketPool, _ idx: UInt32) -> Int { Int(idx &- pool.bigStart) / pool.bigSpan }

    @inline(__always)
    func index(_ pool: PacketPool, _ bid: Int) -> UInt32 {
        pool.bigStart &+ UInt32(truncatingIfNeeded: bid &* pool.bigSpan)
    }

    /// Puts big buffer `idx` into the ring (published by the next `publish`).
    @inline(__always)
    mutating func put(_ pool: PacketPool, _ idx: UInt32) {
        let b = bid(pool, idx)
        // The frame lands at the headroom, its header just before it.
        let addr = pool.buffer(idx) + (PacketPool.headroom &- VirtioNet.headerLength)
        io_uring_buf_ring_add(
            ring,
            addr,
            UInt32(Self.readLength),
            UInt16(truncatingIfNeeded: b),
            Int32(entries &- 1),
            Int32(pending)
        )
        held[b] = true
        pending &+= 1
        filled &+= 1
    }

    /// The buffer a completion names; it is ours now.
    @inline(__always)
    mutating func take(_ pool: PacketPool, bid: Int) -> UInt32 {
        held[bid] = false
        filled &-= 1
        return index(pool, bid)
    }

    /// Tops the ring up from the pool and publishes what was added.
    @inline(__always)
    mutating func refill(_ pool: PacketPool) {
        while filled < entries, let idx = pool.allocBig() { put(pool, idx) }
        publish()
    }

    @inline(__always)
    mutating func publish() {
        guard pending > 0 else { return }
        io_uring_buf_ring_advance(ring, Int32(pending))
        pending = 0
    }

    /// Unregisters the ring and returns its buffers to the pool (every read must be done).
    func release(_ uring: UnsafeMutablePointer<io_uring>, pool: PacketPool) {
        _ = io_uring_unregister_buf_ring(uring, Int32(Self.group))
        for b in 0..<pool.bigCount where held[b] { pool.free(index(pool, b)) }
        held.deallocate()
        munmap(UnsafeMutableRawPointer(ring), mapLength)
    }
}

extension IOLoop {
    /// Queues a read on a tap with offloads: no buffer, the kernel picks one from the ring.
    /// A multishot read stays armed: each frame completes with IORING_CQE_F_MORE, and one
    /// wakeup of the tap reads every frame queued (while the ring has buffers).
    @inline(__always)
    func armBigRead(_ port: UInt16, _ slot: UnsafeMutablePointer<IOPortSlot>) -> Bool {
        guard let r = bigRing, r.filled > 0, let sqe = nextSQE() else { return false }
        if slot.pointee.multishot {
            // No address and no length: each read takes a whole ring buffer (readLength).
            io_uring_prep_rw(Int32(VRT_IORING_OP_READ_MULTISHOT), sqe, slot.pointee.fd, nil, 0, 0)
        } else {
            io_uring_prep_read(sqe, slot.pointee.fd, nil, UInt32(BigReadRing.readLength), 0)
        }
        sqe.pointee.flags |= UInt8(1 << IOSQE_BUFFER_SELECT_BIT)
        sqe.pointee.buf_group = BigReadRing.group
        io_uring_sqe_set_data64(sqe, UserData.make(.tapRead, port: port, buffer: 0))
        slot.pointee.readsOutstanding &+= 1
        return true
    }

    /// A read of a tap with offloads completed into the big buffer `bid` names: the frame
    /// (after its virtio-net header) goes into `frame`, in a small buffer when it fits one
    /// and is no superframe (the big buffer then goes straight back to the ring).
    @inline(__always)
    func completeBigRead(
        _ port: UInt16,
        _ slot: UnsafeMutablePointer<IOPortSlot>,
        _ res: Int32,
        _ flags: UInt32,
        into frame: UnsafeMutablePointer<Frame>
    ) {
        // A multishot read that goes on has not ended: it is still outstanding, and is
        // re-armed only once a completion without F_MORE ends it.
        let more = flags & IORING_CQE_F_MORE != 0
        if !more { slot.pointee.readsOutstanding &-= 1 }
        guard flags & IORING_CQE_F_BUFFER != 0 else {
            // No buffer taken: an error, or the ring was empty (ENOBUFS, re-armed once the
            // ring has buffers again).
            if res == -ENOBUFS && slot.pointee.state == .active {
                counters.readsRetried &+= 1
                slot.pointee.deficit &+= 1
                readDeficit &+= 1
            } else if slot.pointee.multishot && (res == -EINVAL || res == -EOPNOTSUPP) && slot.pointee.state == .active
            {
                // The kernel knows the opcode but refuses it for this file: single reads
                // from now on (not an error of the port).
                slot.pointee.multishot = false
                slot.pointee.readsTarget = Int32(configuration.readsPerTap)
                for _ in 0..<configuration.readsPerTap { rearm(port, slot) }
            } else {
                readFailed(port, slot, res)
            }
            return
        }
        let big = bigRing!.take(pool, bid: Int(flags >> UInt32(IORING_CQE_BUFFER_SHIFT)))
        guard res > 0 && slot.pointee.state == .active else {
            bigRing!.put(pool, big)
            if !more { readFailed(port, slot, res) }
            return
        }
        slot.pointee.consecutiveErrors = 0
        let length = Int(res) &- VirtioNet.headerLength
        slot.pointee.counters.rxPackets &+= 1
        slot.pointee.counters.rxBytes &+= UInt64(length)
        let base = pool.buffer(big)
        let header = VirtioNet.Header(reading: base + (PacketPool.headroom &- VirtioNet.headerLength))
        if length < 14 || length > 0xFFFF || frame.pointee.isFull {
            // Too short, truncated, or nowhere to put it.
            bigRing!.put(pool, big)
            slot.pointee.counters.rxDrops &+= 1
        } else if header.gsoType == VirtioNet.gsoNone && length <= pool.maxFrameLength, let small = pool.alloc() {
            // Safe: length ≤ maxFrameLength, the small buffer's room after the headroom.
            (pool.buffer(small) + PacketPool.headroom).copyMemory(from: base + PacketPool.headroom, byteCount: length)
            bigRing!.put(pool, big)
            deliver(small, length: length, header, port, into: frame)
        } else {
            pool.meta(big).pointee = PacketMeta.fresh
            superframesTaken &+= 1
            deliver(big, length: length, header, port, into: frame)
        }
        if !more { rearm(port, slot) }
    }

    @inline(__always)
    func deliver(
        _ idx: UInt32,
        length: Int,
        _ header: VirtioNet.Header,
        _ port: UInt16,
        into frame: UnsafeMutablePointer<Frame>
    ) {
        let m = pool.meta(idx)
        m.pointee.offset = UInt16(PacketPool.headroom)
        m.pointee.length = UInt16(truncatingIfNeeded: length)
        m.pointee.rxPort = port
        if header.flags | header.gsoType != 0 && !VirtioNet.record(header, in: m) {
            // A header we cannot honour: ethernet-input drops it as offload_invalid.
            m.pointee.offload.gsoType = 0xFF
        }
        frame.pointee.append(idx)
    }
}
