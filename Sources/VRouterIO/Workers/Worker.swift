// One forwarding worker: a pinned thread owning an io_uring loop, a NUMA-local packet
// pool and a pipeline (with its own flow cache). It alternates rx → process → tx; when
// nothing arrived it goes offline for table reclamation and waits in the kernel.
//
// Cost model: the loop below is per frame, not per packet; each turn reads two atomics
// (stop, inbox), the clock once, and the table epoch once (TableReader.beginFrame).
// Control-plane work (commands, the 100 ms counter snapshot) runs between frames in
// functions of its own, which tools/check-hotpath names as the only parts of this loop
// allowed to allocate.

import CVRouterShims
import Glibc
import Synchronization
import VRouterCore

/// What a worker is made with, besides its ports.
public struct WorkerConfiguration: Sendable {
    /// Packet buffers in the worker's pool, and their size (a power of two).
    public var poolBuffers: Int
    public var bufferSize: Int
    /// Big (64 KB) buffers for superframes: reads of taps with offloads, coalesced segments,
    /// UDP GSO trains (0: no offloads).
    public var bigBuffers: Int
    public var pipeline: PipelineConfig
    /// Taps with offloads read by one multishot read per queue (IOLoop.Configuration).
    public var multishotReads: Bool
    /// Times the worker, having just forwarded packets and finding none, yields its CPU
    /// (sched_yield) and looks again before it sleeps in the kernel. A sender on the same
    /// CPU (a pod, or the kernel's softirq for it) then runs and fills the next batch,
    /// where a sleeping worker is woken, and preempts it, for every frame. Each yield
    /// also runs the worker's pending io_uring task work (its completions). 0: sleep at
    /// once.
    public var idleYields: Int

    public init(
        poolBuffers: Int,
        bufferSize: Int,
        bigBuffers: Int = 0,
        pipeline: PipelineConfig,
        multishotReads: Bool = true,
        idleYields: Int = 0
    ) {
        self.poolBuffers = poolBuffers
        self.bufferSize = bufferSize
        self.bigBuffers = bigBuffers
        self.pipeline = pipeline
        self.multishotReads = multishotReads
        self.idleYields = idleYields
    }
}

// Safe (@unchecked Sendable): loop, pool, pipeline and reader are used by the worker thread only.
public final class Worker: @unchecked Sendable {
    public let index: Int
    public let waker: IOLoopWaker
    public let counters: Counters
    /// The worker's translations (plain per-worker counts, read racily like `counters`).
    public let nat: SourceNAT
    /// What the port layer did (writes the kernel refused, dead ports...), copied out of the
    /// loop every 100 ms and once more as the worker stops (the loop forgets its ports when
    /// it closes). One lock per 100 ms; the pipeline counters above need none.
    public let io = Mutex(IOSnapshot())
    var portIDs: [UInt16] = []
    private let stopFlag = Atomic<Bool>(false)
    let local: LocalPacketPool
    let idleYields: Int
    var pipeline: Pipeline
    private var reader: TableReader
    private var thread: WorkerThread?
    // Commands from the control thread, served between frames (the io_uring must only be
    // fed from this thread, and the flow table is only read here).
    let inbox = Mutex<[WorkerCommand]>([])
    let inboxCount = Atomic<Int>(0)

    /// Starts a worker on a thread pinned to `cpu`, serving tap queues (port id, tap,
    /// queue) and the fabric's AF_PACKET ring, reading tables from `publication`.
    public static func start(
        index: Int,
        cpu: Int?,
        configuration: WorkerConfiguration,
        publication: TablePublication,
        taps: [(UInt16, TapPort, Int)],
        fabric: (UInt16, AFPacketPort)?
    ) throws(SystemError) -> Worker {
        let local = try LocalPacketPool(
            count: configuration.poolBuffers,
            bufferSize: configuration.bufferSize,
            bigBuffers: configuration.bigBuffers,
            nearCPU: cpu
        )
        let waker = try IOLoopWaker()
        guard let reader = publication.register() else {
            throw SystemError(call: "register", object: "table reader", errno: ENOSPC, detail: "too many workers")
        }
        let w = Worker(
            index: index,
            local: local,
            waker: waker,
            pipeline: Pipeline(pool: local.pool, config: configuration.pipeline),
            reader: reader,
            idleYields: configuration.idleYields
        )
        w.portIDs = taps.map(\.0) + (fabric.map { [$0.0] } ?? [])
        // The io_uring is made, and every request submitted, on the worker thread itself:
        // completions are delivered as task work to the submitting thread, so a ring fed
        // from another thread would see its completions only when that thread next
        // entered the kernel.
        let ready = Semaphore()
        let failure = Mutex<SystemError?>(nil)
        w.thread = try WorkerThread.start(name: "vrt-w\(index)", cpu: cpu) {
            let loop: IOLoop
            do throws(SystemError) {
                var lc = IOLoop.Configuration()
                lc.multishotReads = configuration.multishotReads
                loop = try IOLoop(pool: local.pool, waker: waker, configuration: lc)
                do throws(SystemError) {
                    for (id, tap, queue) in taps { try loop.add(tap, as: id, queue: queue) }
                    if let (id, af) = fabric { try loop.add(af, as: id) }
                } catch {
                    loop.close()
                    throw error
                }
            } catch {
                failure.withLock { $0 = error }
                ready.signal()
                return
            }
            ready.signal()
            w.run(loop)
        }
        ready.wait()
        if let e = failure.withLock({ $0 }) {
            w.join()
            throw e
        }
        return w
    }

    private init(
        index: Int,
        local: LocalPacketPool,
        waker: IOLoopWaker,
        pipeline: consuming Pipeline,
        reader: consuming TableReader,
        idleYields: Int
    ) {
        self.idleYields = idleYields
        self.index = index
        self.local = local
        self.waker = waker
        counters = pipeline.counters
        nat = pipeline.nat
        self.pipeline = pipeline
        self.reader = reader
    }

    public func stop() {
        stopFlag.store(true, ordering: .releasing)
        waker.wake()
    }

    public func join() { thread?.join() }

    /// Flows in this worker's cache (updated every few frames; read racily).
    public var flowCount: Int { flowCountValue.load(ordering: .relaxed) }
    private let flowCountValue = Atomic<Int>(0)

    /// Milliseconds on the monotonic clock (the pipeline's `now`).
    @inline(__always) static func nowMilliseconds() -> UInt32 {
        UInt32(truncatingIfNeeded: vrt_monotonic_ns() / 1_000_000)
    }

    private func run(_ loop: IOLoop) {
        var rx = Frame.allocate()
        var tx = Frame.allocate(capacity: pipeline.config.outputCapacity)
        var punt = Frame.allocate()
        defer {
            // Commands that arrive while stopping are answered (with nothing done).
            for c in inbox.withLock({ q -> [WorkerCommand] in
                defer { q.removeAll() }
                return q
            }) { c.done.signal() }
            publishIO(loop)
            reader.goOffline()
            // Packets still held go back to the pool before the loop is closed (it waits for
            // every buffer of its ports to come home).
            local.pool.free(&rx)
            local.pool.free(&tx)
            local.pool.free(&punt)
            rx.deallocate()
            tx.deallocate()
            punt.deallocate()
            loop.close()
        }
        forward(loop, &rx, &tx, &punt)
    }

    /// The forwarding loop, until `stop`. tools/check-hotpath starts here: nothing it reaches
    /// may call the Swift runtime, except `serveCommands` and `publishIO` (control-plane
    /// work between frames).
    @inline(never)
    func forward(_ loop: IOLoop, _ rx: inout Frame, _ tx: inout Frame, _ punt: inout Frame) {
        let pool = local.pool
        var lastAge = Self.nowMilliseconds()
        // Yields left before sleeping: refilled by every frame with packets.
        var yields = 0
        while !stopFlag.load(ordering: .relaxed) {
            if inboxCount.load(ordering: .acquiring) > 0 { serveCommands(loop) }
            if loop.rx(into: &rx, maxWait: .zero) == 0 {
                // A command that came during that poll had its wakeup reaped by it: serve it
                // now rather than sleep on a wakeup already taken (up to 100 ms per command).
                if inboxCount.load(ordering: .acquiring) > 0 { continue }
                if yields > 0 {
                    yields &-= 1
                    sched_yield()
                    continue
                }
                // Idle: hold no table while waiting, so updates are reclaimed meanwhile.
                reader.goOffline()
                _ = loop.rx(into: &rx, maxWait: .milliseconds(100))
                _ = loop.takeWakeup()
            }
            let now = Self.nowMilliseconds()
            if rx.count > 0 {
                yields = idleYields
                let tables = reader.beginFrame()
                pipeline.process(&rx, tables: tables, now: now, output: &tx, punt: &punt)
                // The control plane's neighbour resolver reads the fabric's ARP from its own
                // socket: what the pipeline punts is done with here.
                if punt.count > 0 { pool.free(&punt) }
            }
            loop.tx(&tx)
            if now &- lastAge >= 100 {
                _ = pipeline.age(now: now, maxScan: 8192)
                flowCountValue.store(pipeline.flows4.count + pipeline.flows6.count, ordering: .relaxed)
                lastAge = now
                publishIO(loop)
            }
        }
    }

    @inline(never)
    func publishIO(_ loop: IOLoop) {
        var snap = IOSnapshot()
        snap.loop = loop.counters
        snap.poolAvailable = local.pool.available
        for id in portIDs {
            snap.ports[id] = loop.counters(port: id)
            if loop.isDead(port: id) { snap.dead.insert(id) }
        }
        io.withLock { $0 = snap }
    }
}

/// One worker's port-layer counters at one moment.
public struct IOSnapshot: Sendable {
    public var ports: [UInt16: LoopPortCounters] = [:]
    public var dead: Set<UInt16> = []
    public var loop = LoopCounters()
    public var poolAvailable = 0
    public init() {}
}
