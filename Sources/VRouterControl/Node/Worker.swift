// One forwarding worker: a pinned thread owning an io_uring loop, a NUMA-local packet
// pool and a pipeline (with its own flow cache). It alternates rx → process → tx; when
// nothing arrived it goes offline for table reclamation and waits in the kernel.

import CVRouterShims
import Foundation
import Synchronization
import VRouterCore
import VRouterIO

final class Worker: @unchecked Sendable {  // Safe: loop, pool, pipeline and reader are used by the worker thread only.
    let index: Int
    let waker: IOLoopWaker
    let counters: Counters
    /// What the port layer did (writes the kernel refused, dead ports...), copied out of the
    /// loop every 100 ms and once more as the worker stops (the loop forgets its ports when
    /// it closes). One lock per 100 ms; the pipeline counters above need none.
    let io = Mutex(IOSnapshot())
    private var portIDs: [UInt16] = []
    private let stopFlag = Atomic<Bool>(false)
    private let local: LocalPacketPool
    private var pipeline: Pipeline
    private var reader: TableReader
    private var thread: WorkerThread?

    static func start(
        index: Int, cpu: Int?, service: NodeService, taps: [(UInt16, TapPort, Int)], fabric: (UInt16, AFPacketPort)?
    ) throws(SystemError) -> Worker {
        let local = try LocalPacketPool(
            count: service.config.poolBuffers, bufferSize: service.config.bufferSize, nearCPU: cpu)
        let waker = try IOLoopWaker()
        var pc = PipelineConfig()
        pc.flowCapacity = service.config.flowCapacity
        pc.flowIdleTimeout = UInt32(min(service.config.flowIdleTimeout * 1000, Double(UInt32.max / 4)))
        guard let reader = service.publication.register() else {
            throw SystemError(call: "register", object: "table reader", errno: ENOSPC, detail: "too many workers")
        }
        let w = Worker(index: index, local: local, waker: waker, pipeline: Pipeline(pool: local.pool, config: pc), reader: reader)
        w.portIDs = taps.map(\.0) + (fabric.map { [$0.0] } ?? [])
        // The io_uring is made, and every request submitted, on the worker thread itself:
        // completions are delivered as task work to the submitting thread, so a ring fed
        // from another thread would see its completions only when that thread next
        // entered the kernel.
        let ready = DispatchSemaphore(value: 0)
        let failure = Mutex<SystemError?>(nil)
        w.thread = try WorkerThread.start(name: "vrt-w\(index)", cpu: cpu) {
            let loop: IOLoop
            do throws(SystemError) {
                loop = try IOLoop(pool: local.pool, waker: waker)
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
        index: Int, local: LocalPacketPool, waker: IOLoopWaker, pipeline: consuming Pipeline,
        reader: consuming TableReader
    ) {
        self.index = index
        self.local = local
        self.waker = waker
        counters = pipeline.counters
        self.pipeline = pipeline
        self.reader = reader
    }

    func stop() {
        stopFlag.store(true, ordering: .releasing)
        waker.wake()
    }

    func join() { thread?.join() }

    /// Milliseconds on the monotonic clock (the pipeline's `now`).
    @inline(__always) static func nowMilliseconds() -> UInt32 { UInt32(truncatingIfNeeded: vrt_monotonic_ns() / 1_000_000) }

    private func run(_ loop: IOLoop) {
        var rx = Frame.allocate()
        var tx = Frame.allocate(capacity: pipeline.config.outputCapacity)
        defer {
            publishIO(loop)
            reader.goOffline()
            // Packets still held go back to the pool before the loop is closed (it waits for
            // every buffer of its ports to come home).
            local.pool.free(&rx)
            local.pool.free(&tx)
            rx.deallocate()
            tx.deallocate()
            loop.close()
        }
        let pool = local.pool
        var lastAge = Self.nowMilliseconds()
        while !stopFlag.load(ordering: .relaxed) {
            if loop.rx(into: &rx, maxWait: .zero) == 0 {
                // Idle: hold no table while waiting, so updates are reclaimed meanwhile.
                reader.goOffline()
                _ = loop.rx(into: &rx, maxWait: .milliseconds(100))
                _ = loop.takeWakeup()
            }
            let now = Self.nowMilliseconds()
            if rx.count > 0 {
                let tables = reader.beginFrame()
                pipeline.process(&rx, tables: tables, now: now, output: &tx)
                // Frames for the control plane (fabric ARP replies) are not transmitted:
                // the neighbour resolver reads ARP from its own socket.
                var kept = 0
                for i in 0..<tx.count {
                    let idx = tx[i]
                    if pool.metas[Int(idx)].txPort == PacketMeta.puntPort {
                        pool.free(idx)
                    } else {
                        tx[kept] = idx
                        kept &+= 1
                    }
                }
                tx.count = kept
            }
            loop.tx(&tx)
            if now &- lastAge >= 100 {
                _ = pipeline.age(now: now, maxScan: 8192)
                lastAge = now
                publishIO(loop)
            }
        }
    }

    private func publishIO(_ loop: IOLoop) {
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
struct IOSnapshot: Sendable {
    var ports: [UInt16: VRouterIO.PortCounters] = [:]
    var dead: Set<UInt16> = []
    var loop = LoopCounters()
    var poolAvailable = 0
}
