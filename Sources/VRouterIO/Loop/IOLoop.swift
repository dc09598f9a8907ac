// One worker's I/O: an io_uring instance driving that worker's tap queues (reads kept
// outstanding into pool buffers, writes from TX frames), its AF_PACKET ports (rings walked
// from user space; a poll through io_uring only when a ring is empty; TX ring kicks as
// 0-byte SENDs), and an eventfd for control-thread wakeups.
//
// Cost model (steady state, the caller alternating rx → pipeline → tx):
//   rx: reads completions from the CQ ring and walks the AF_PACKET rings — no syscall
//       when it finds packets; one io_uring_enter (submit + wait) when it finds none.
//   tx: queues tap writes and TX-ring frames, then one io_uring_submit for the whole
//       batch (the writes, the re-armed reads from rx, the ring kicks).
// So one syscall per batch, not per packet. Packet buffers are registered with io_uring
// (READ_FIXED/WRITE_FIXED) when the kernel allows, saving the per-I/O page pinning.
//
// Ownership: an IOLoop belongs to one thread (create it on that thread). It holds strong
// references to the ports added to it; a port must be removed (which waits for its
// in-flight I/O) before it is closed. A buffer handed to a tap write is freed when the
// write's completion arrives, never earlier.

import CURing
import CVRouterShims
import Glibc
import VRouterCore

public final class IOLoop {
    public struct Configuration: Sendable {
        /// Submission queue entries. The completion queue gets `completionEntries`.
        public var submissionEntries: Int = 1024
        public var completionEntries: Int = 8192
        /// Reads kept outstanding per tap queue (each holds one pool buffer). The loop takes
        /// taps while their reads fit in half the completion queue (128 taps by default);
        /// size the pool for taps × readsPerTap plus the frames in flight.
        public var readsPerTap: Int = 32
        /// Register the pool's memory with io_uring (READ_FIXED/WRITE_FIXED).
        public var registerBuffers: Bool = true
        /// Big buffers lent to the kernel for reads of taps with offloads (a provided-buffer
        /// ring: a read takes one only when a frame arrives, so idle taps hold none). At most
        /// half the pool's big buffers; a power of two.
        public var bigReadBuffers: Int = 64
        /// Taps with offloads keep one multishot read outstanding instead of `readsPerTap`
        /// single ones, where the kernel has it (6.7+). A wakeup then reads the queue dry
        /// in one pass: 32 single reads were 32 poll entries on the tap, and every frame
        /// that arrived at an idle tap woke all of them (31 found nothing and re-armed).
        public var multishotReads: Bool = true
        /// Superframes (big buffers) one `rx` takes at most: what the pipeline may cut into
        /// datagrams must fit its output frame (16 × 46 segments).
        public var superframesPerFrame: Int = 16
        /// Port ids accepted: 0..<maxPorts.
        public var maxPorts: Int = 4096
        public init() {}
    }

    public let pool: PacketPool
    public let configuration: Configuration
    public let waker: IOLoopWaker
    /// Whether the pool's memory is registered (fixed-buffer reads and writes in use).
    public private(set) var usesRegisteredBuffers = false
    /// Whether taps with offloads are read by one multishot read each (configured, and the
    /// kernel has IORING_OP_READ_MULTISHOT).
    public private(set) var usesMultishotReads = false
    public internal(set) var counters = LoopCounters()

    let ring: UnsafeMutablePointer<io_uring>
    let slots: UnsafeMutablePointer<IOPortSlot>
    let maxPorts: Int
    /// Ports in the loop, and the AF_PACKET ones among them (walked every rx).
    let portList: UnsafeMutablePointer<UInt16>
    var portCount = 0
    let afList: UnsafeMutablePointer<UInt16>
    var afCount = 0
    /// Packets received while a port removal drained the completion queue; rx hands them out first.
    let stash: UnsafeMutablePointer<Frame>
    /// SQEs prepared and not yet submitted.
    var pending = 0
    /// Tap reads that could not be re-armed (pool empty); retried every rx.
    var readDeficit = 0
    var wakePending = false
    var wakeArmed = false
    let wakeBuffer: UnsafeMutablePointer<UInt64>
    /// The provided-buffer ring of big buffers (nil when the pool has none, or the kernel
    /// refused it): see IOLoop+BigReads.
    var bigRing: BigReadRing?
    /// Superframes taken by the current `rx`.
    var superframesTaken = 0
    private var owners: [UInt16: AnyObject] = [:]
    private var closed = false
    var closing = false

    /// A loop over `pool` (whose buffers it reads into and frees). `waker` lets another
    /// thread interrupt a waiting `rx`; one is made when not given.
    public init(
        pool: PacketPool,
        waker: IOLoopWaker? = nil,
        configuration: Configuration = Configuration()
    ) throws(SystemError) {
        precondition(configuration.maxPorts > 0 && configuration.maxPorts <= 65535)
        guard configuration.completionEntries >= configuration.submissionEntries else {
            throw SystemError(
                call: "io_uring_queue_init",
                object: "IOLoop",
                errno: EINVAL,
                detail:
                    "completionEntries (\(configuration.completionEntries)) below submissionEntries (\(configuration.submissionEntries))"
            )
        }
        self.pool = pool
        self.configuration = configuration
        if let waker { self.waker = waker } else { self.waker = try IOLoopWaker() }
        ring = .allocate(capacity: 1)
        ring.initialize(to: io_uring())
        var params = io_uring_params()
        params.cq_entries = UInt32(configuration.completionEntries)
        // COOP_TASKRUN: completions are run when we next enter the kernel (which we do once
        // per batch anyway) instead of interrupting the worker; SUBMIT_ALL: one bad SQE does
        // not stop the rest of the batch. Both need 5.18+/5.19+; fall back without them.
        params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL
        var r = io_uring_queue_init_params(UInt32(configuration.submissionEntries), ring, &params)
        if r == -EINVAL {
            params = io_uring_params()
            params.cq_entries = UInt32(configuration.completionEntries)
            params.flags = IORING_SETUP_CQSIZE
            r = io_uring_queue_init_params(UInt32(configuration.submissionEntries), ring, &params)
        }
        if r < 0 {
            ring.deallocate()
            throw SystemError(
                call: "io_uring_queue_init",
                object: "IOLoop (\(configuration.submissionEntries) entries)",
                errno: -r
            )
        }
        // Saves an fget/fput per io_uring_enter (5.18+); harmless when refused.
        _ = io_uring_register_ring_fd(ring)
        if configuration.registerBuffers {
            var iov = iovec(iov_base: pool.base, iov_len: pool.regionLength)
            usesRegisteredBuffers = io_uring_register_buffers(ring, &iov, 1) == 0
        }
        bigRing = BigReadRing.make(ring, pool: pool, entries: configuration.bigReadBuffers)
        if configuration.multishotReads, let probe = io_uring_get_probe_ring(ring) {
            usesMultishotReads = io_uring_opcode_supported(probe, Int32(VRT_IORING_OP_READ_MULTISHOT)) != 0
            io_uring_free_probe(probe)
        }
        maxPorts = configuration.maxPorts
        slots = .allocate(capacity: maxPorts)
        slots.initialize(repeating: IOPortSlot(), count: maxPorts)
        portList = .allocate(capacity: maxPorts)
        afList = .allocate(capacity: maxPorts)
        stash = .allocate(capacity: 1)
        stash.initialize(to: Frame.allocate(capacity: Frame.defaultCapacity))
        wakeBuffer = .allocate(capacity: 1)
        wakeBuffer.initialize(to: 0)
        armWake()
        submit()
    }

    deinit {
        close()
        slots.deallocate()
        portList.deallocate()
        afList.deallocate()
        stash.pointee.deallocate()
        stash.deallocate()
        wakeBuffer.deallocate()
        ring.deallocate()
    }

    /// Removes every port (waiting for their I/O, returning every buffer to the pool) and
    /// tears the ring down. Idempotent; `deinit` calls it.
    public func close() {
        guard !closed else { return }
        closing = true
        while portCount > 0 { remove(port: portList[0]) }
        if wakeArmed {
            if let sqe = nextSQE() {
                io_uring_prep_cancel64(sqe, UserData.make(.wake, port: 0, buffer: 0), 0)
                io_uring_sqe_set_data64(sqe, UserData.make(.cancel, port: 0, buffer: 0))
            }
            while wakeArmed { waitAndReap(into: stash, dropping: true) }
        }
        pool.free(&stash.pointee)
        bigRing?.release(ring, pool: pool)
        bigRing = nil
        io_uring_queue_exit(ring)
        closed = true
    }

    /// True once after the waker fired (a control message may be waiting).
    public func takeWakeup() -> Bool {
        defer { wakePending = false }
        return wakePending
    }

    // MARK: ports

    /// Adds queue `queue` of `tap` as port `port`: reads start at once (`readsPerTap` of
    /// them, each holding a pool buffer). Received frames carry `rxPort = port`; frames
    /// with `txPort = port` are written to it.
    public func add(_ tap: TapPort, as port: UInt16, queue: Int = 0) throws(SystemError) {
        let fds = tap.fds
        guard queue < fds.count else {
            throw SystemError(
                call: "IOLoop.add",
                object: tap.object,
                errno: EBADF,
                detail: "no queue \(queue) (the port has \(fds.count))"
            )
        }
        try claim(port, object: tap.object)
        // Every outstanding read completes into the CQ: keep them within half of it so
        // writes and kicks of a full batch always fit too (overflow would only slow us, the
        // kernel keeps overflowed completions, but it means the loop is mis-sized).
        let reads = (0..<portCount).reduce(0) { $0 + Int(slots[Int(portList[$1])].readsTarget) }
        let cqSize = Int(ring.pointee.cq.ring_entries)
        guard reads + configuration.readsPerTap <= cqSize / 2 else {
            throw SystemError(
                call: "IOLoop.add",
                object: tap.object,
                errno: ENOSPC,
                detail: "\(reads) reads already outstanding; raise completionEntries (\(cqSize)) or lower readsPerTap"
            )
        }
        let vnet = tap.hasVirtioHeader
        if vnet && bigRing == nil {
            throw SystemError(
                call: "IOLoop.add",
                object: tap.object,
                errno: ENOBUFS,
                detail:
                    "a tap with offloads needs big buffers (the pool has \(pool.bigCount)) and a provided-buffer ring"
            )
        }
        let slot = slots + Int(port)
        slot.initialize(to: IOPortSlot())
        slot.pointee.kind = .tap
        slot.pointee.fd = fds[queue]
        slot.pointee.vnet = vnet
        slot.pointee.multishot = vnet && usesMultishotReads
        slot.pointee.readsTarget = slot.pointee.multishot ? 1 : Int32(configuration.readsPerTap)
        owners[port] = tap
        listAppend(port, isAF: false)
        for _ in 0..<slot.pointee.readsTarget {
            if !armRead(port) { readDeficit &+= 1 }
        }
        submit()
    }

    /// Adds an AF_PACKET port as `port` (its rings are walked every rx).
    public func add(_ af: AFPacketPort, as port: UInt16) throws(SystemError) {
        try claim(port, object: af.object)
        let slot = slots + Int(port)
        slot.initialize(to: IOPortSlot())
        slot.pointee.kind = .afPacket
        slot.pointee.fd = af.fd
        slot.pointee.trainFD = af.trainFD
        slot.pointee.rings = af.rings
        owners[port] = af
        listAppend(port, isAF: true)
    }

    private func claim(_ port: UInt16, object: String) throws(SystemError) {
        guard !closed else {
            throw SystemError(call: "IOLoop.add", object: object, errno: EBADF, detail: "loop is closed")
        }
        guard Int(port) < maxPorts else {
            throw SystemError(
                call: "IOLoop.add",
                object: object,
                errno: ERANGE,
                detail: "port id \(port) ≥ maxPorts \(maxPorts)"
            )
        }
        guard slots[Int(port)].kind == .none else {
            throw SystemError(call: "IOLoop.add", object: object, errno: EEXIST, detail: "port id \(port) is in use")
        }
    }

    private func listAppend(_ port: UInt16, isAF: Bool) {
        portList[portCount] = port
        portCount += 1
        if isAF {
            afList[afCount] = port
            afCount += 1
        }
    }

    private func listRemove(_ port: UInt16) {
        for i in 0..<portCount where portList[i] == port {
            portList[i] = portList[portCount - 1]
            portCount -= 1
            break
        }
        for i in 0..<afCount where afList[i] == port {
            afList[i] = afList[afCount - 1]
            afCount -= 1
            break
        }
    }

    /// Removes a port: cancels its reads/polls, waits until every I/O on it has completed
    /// (buffers back in the pool), and forgets it. Packets other ports receive meanwhile
    /// are kept for the next rx. Afterwards the port may be closed or deleted.
    public func remove(port: UInt16) {
        guard Int(port) < maxPorts, slots[Int(port)].kind != .none else { return }
        let slot = slots + Int(port)
        slot.pointee.state = .removing
        if let sqe = nextSQE() {
            io_uring_prep_cancel_fd(sqe, slot.pointee.fd, UInt32(IORING_ASYNC_CANCEL_ALL))
            io_uring_sqe_set_data64(sqe, UserData.make(.cancel, port: port, buffer: 0))
        }
        if slot.pointee.trainFD >= 0, let sqe = nextSQE() {
            io_uring_prep_cancel_fd(sqe, slot.pointee.trainFD, UInt32(IORING_ASYNC_CANCEL_ALL))
            io_uring_sqe_set_data64(sqe, UserData.make(.cancel, port: port, buffer: 0))
        }
        submit()
        while slot.pointee.inFlight > 0 { waitAndReap(into: stash, dropping: true) }
        readDeficit -= Int(slot.pointee.deficit)
        slot.pointee = IOPortSlot()
        listRemove(port)
        owners[port] = nil
    }

    /// Counters of `port` in this loop (zero for an unknown port).
    public func counters(port: UInt16) -> LoopPortCounters {
        Int(port) < maxPorts ? slots[Int(port)].counters : LoopPortCounters()
    }

    /// Whether `port` stopped: its device went away (the pod's namespace was deleted) or
    /// kept failing. It stays in the loop, idle, until removed.
    public func isDead(port: UInt16) -> Bool {
        Int(port) < maxPorts && slots[Int(port)].state == .dead
    }

    // MARK: submission

    /// A free SQE, submitting what is queued when the SQ is full.
    @inline(__always)
    func nextSQE() -> UnsafeMutablePointer<io_uring_sqe>? {
        if let s = io_uring_get_sqe(ring) {
            pending &+= 1
            return s
        }
        submit()
        guard let s = io_uring_get_sqe(ring) else { return nil }
        pending &+= 1
        return s
    }

    /// Submits queued SQEs (one io_uring_enter). A full completion queue (EBUSY) is
    /// drained into the stash and the submission retried.

    func submit() {
        guard pending > 0 else { return }
        var attempts = 0
        while true {
            counters.enters &+= 1
            let r = io_uring_submit(ring)
            if r >= 0 || attempts == 3 { break }
            if r == -EBUSY || r == -EAGAIN {
                reap(into: stash, dropping: true)
            } else if r != -EINTR {
                break
            }
            attempts += 1
        }
        pending = 0
    }

    /// Submits and waits up to `nanoseconds` for at least one completion, then reaps.

    func waitAndReap(into frame: UnsafeMutablePointer<Frame>, dropping: Bool, nanoseconds: Int64 = 1_000_000_000) {
        var ts = __kernel_timespec(tv_sec: nanoseconds / 1_000_000_000, tv_nsec: nanoseconds % 1_000_000_000)
        var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
        counters.enters &+= 1
        counters.waits &+= 1
        _ = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nil)
        pending = 0
        reap(into: frame, dropping: dropping)
    }

    func armWake() {
        guard let sqe = nextSQE() else { return }
        io_uring_prep_read(sqe, waker.fd, wakeBuffer, 8, 0)
        io_uring_sqe_set_data64(sqe, UserData.make(.wake, port: 0, buffer: 0))
        wakeArmed = true
    }
}

/// io_uring user_data: what completed, for which port, with which buffer.

enum UserData {

    enum Kind: UInt8 {
        case tapRead = 1
        case tapWrite
        case afPoll
        case afKick
        case wake
        case cancel
        case trainSend
    }

    @inline(__always)
    static func make(_ kind: Kind, port: UInt16, buffer: UInt32) -> UInt64 {
        UInt64(kind.rawValue) &<< 56 | UInt64(port) &<< 32 | UInt64(buffer)
    }
}

/// A port's state inside one loop: plain values, stored in a flat array indexed by port id.

struct IOPortSlot {
    enum Kind: UInt8 { case none, tap, afPacket }
    enum State: UInt8 { case active, removing, dead }

    var kind: Kind = .none
    var state: State = .active
    var fd: CInt = -1
    // tap
    /// Reads and writes carry a virtio-net header; reads take provided big buffers.
    var vnet = false
    /// Read by one multishot read (vnet taps, where the kernel has them).
    var multishot = false
    var readsTarget: Int32 = 0
    var readsOutstanding: Int32 = 0
    var writesOutstanding: Int32 = 0
    var deficit: Int32 = 0
    var consecutiveErrors: Int32 = 0
    // AF_PACKET
    var rings: AFPacketRings? = nil
    var rxBlock = 0
    /// Packets left in the block being walked (0: no block open).
    var rxLeft = 0
    var rxNext: UnsafeMutableRawPointer? = nil
    var txHead = 0
    var txQueued = 0
    var kickAgain = false
    var pollArmed = false
    var kicksOutstanding: Int32 = 0
    /// The socket for UDP GSO trains (-1: none), and trains sent and not completed.
    var trainFD: CInt = -1
    var trainsOutstanding: Int32 = 0
    var counters = LoopPortCounters()

    init() {}

    var inFlight: Int32 {
        readsOutstanding &+ writesOutstanding &+ kicksOutstanding &+ trainsOutstanding &+ (pollArmed ? 1 : 0)
    }
}
