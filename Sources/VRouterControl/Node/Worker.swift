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
    /// The worker's translations (plain per-worker counts, read racily like `counters`).
    let nat: SourceNAT
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
    // Commands from the control thread, served between frames (the io_uring must only be
    // fed from this thread, and the flow table is only read here).
    private let inbox = Mutex<[WorkerCommand]>([])
    private let inboxCount = Atomic<Int>(0)

    static func start(
        index: Int,
        cpu: Int?,
        service: NodeService,
        taps: [(UInt16, TapPort, Int)],
        fabric: (UInt16, AFPacketPort)?
    ) throws(SystemError) -> Worker {
        let local = try LocalPacketPool(
            count: service.config.poolBuffers,
            bufferSize: service.config.bufferSize,
            nearCPU: cpu
        )
        let waker = try IOLoopWaker()
        var pc = PipelineConfig()
        pc.flowCapacity = service.config.flowCapacity
        pc.flowIdleTimeout = UInt32(min(service.config.flowIdleTimeout * 1000, Double(UInt32.max / 4)))
        // Each worker translates to its own share of the node's ports (the fabric's receive
        // steering sends replies to the share's owner).
        pc.snat = service.config.snat.map {
            SNATPortRange(first: $0.first, last: $0.last, slice: index, slices: service.config.workers)
        }
        guard let reader = service.publication.register() else {
            throw SystemError(call: "register", object: "table reader", errno: ENOSPC, detail: "too many workers")
        }
        let w = Worker(
            index: index,
            local: local,
            waker: waker,
            pipeline: Pipeline(pool: local.pool, config: pc),
            reader: reader
        )
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
        index: Int,
        local: LocalPacketPool,
        waker: IOLoopWaker,
        pipeline: consuming Pipeline,
        reader: consuming TableReader
    ) {
        self.index = index
        self.local = local
        self.waker = waker
        counters = pipeline.counters
        nat = pipeline.nat
        self.pipeline = pipeline
        self.reader = reader
    }

    func stop() {
        stopFlag.store(true, ordering: .releasing)
        waker.wake()
    }

    func join() { thread?.join() }

    /// Flows in this worker's cache (updated every few frames; read racily).
    var flowCount: Int { flowCountValue.load(ordering: .relaxed) }
    private let flowCountValue = Atomic<Int>(0)

    /// Runs `command` on the worker thread between frames and waits for it.
    func perform(_ command: WorkerCommand) {
        inbox.withLock { $0.append(command) }
        inboxCount.add(1, ordering: .releasing)
        waker.wake()
        command.done.wait()
    }

    private func serveCommands(_ loop: IOLoop) {
        let commands = inbox.withLock { q -> [WorkerCommand] in
            defer { q.removeAll() }
            return q
        }
        inboxCount.subtract(commands.count, ordering: .relaxed)
        let now = Self.nowMilliseconds()
        for c in commands {
            switch c.kind {
            case .addTap(let id, let tap, let queue):
                do throws(SystemError) {
                    try loop.add(tap, as: id, queue: queue)
                    portIDs.append(id)
                } catch { c.error = error }
            case .removePort(let id):
                loop.remove(port: id)
                portIDs.removeAll { $0 == id }
                // The id may be given to a new port: it starts from zero, not from the old
                // port's totals (this thread is the counters' only writer).
                counters.ports[Int(id)] = PortCounters()
            case .flows(let vrf, let limit):
                var out: [FlowRecord] = []
                func take<K: FlowKey>(_ t: FlowTable<K>, _ record: (K, FlowValue) -> FlowRecord) {
                    t.forEach(vrf: vrf) { _, k, v in
                        if out.count < limit { out.append(record(k, v)) }
                    }
                }
                take(pipeline.flows4) { k, v in
                    FlowRecord(
                        v6: false,
                        vrf: k.vrf,
                        proto: k.proto,
                        source: UInt128(k.src.value),
                        sport: k.sport,
                        destination: UInt128(k.dst.value),
                        dport: k.dport,
                        value: v,
                        idle: now &- v.lastSeen
                    )
                }
                take(pipeline.flows6) { k, v in
                    FlowRecord(
                        v6: true,
                        vrf: k.vrf,
                        proto: k.proto,
                        source: k.src.value,
                        sport: k.sport,
                        destination: k.dst.value,
                        dport: k.dport,
                        value: v,
                        idle: now &- v.lastSeen
                    )
                }
                c.flows = out
                c.flowCount = pipeline.flows4.count + pipeline.flows6.count
            case .flush(let vrf):
                // Through the pipeline: translated flows give their ports back.
                if let vrf { pipeline.removeFlows(vrf: vrf) } else { pipeline.removeAllFlows() }
            }
            c.done.signal()
        }
    }

    /// Milliseconds on the monotonic clock (the pipeline's `now`).
    @inline(__always) static func nowMilliseconds() -> UInt32 {
        UInt32(truncatingIfNeeded: vrt_monotonic_ns() / 1_000_000)
    }

    private func run(_ loop: IOLoop) {
        var rx = Frame.allocate()
        var tx = Frame.allocate(capacity: pipeline.config.outputCapacity)
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
            rx.deallocate()
            tx.deallocate()
            loop.close()
        }
        let pool = local.pool
        var lastAge = Self.nowMilliseconds()
        while !stopFlag.load(ordering: .relaxed) {
            if inboxCount.load(ordering: .acquiring) > 0 { serveCommands(loop) }
            if loop.rx(into: &rx, maxWait: .zero) == 0 {
                // A command that came during that poll had its wakeup reaped by it: serve it
                // now rather than sleep on a wakeup already taken (up to 100 ms per command).
                if inboxCount.load(ordering: .acquiring) > 0 { continue }
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
                flowCountValue.store(pipeline.flows4.count + pipeline.flows6.count, ordering: .relaxed)
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
    var ports: [UInt16: LoopPortCounters] = [:]
    var dead: Set<UInt16> = []
    var loop = LoopCounters()
    var poolAvailable = 0
}

/// A request to a worker, answered through `done`.
final class WorkerCommand: @unchecked Sendable {  // Safe: fields are written by the worker before `done` is signalled.
    enum Kind {
        case addTap(UInt16, TapPort, Int)
        case removePort(UInt16)
        case flows(vrf: UInt16?, limit: Int)
        case flush(vrf: UInt16?)
    }
    let kind: Kind
    let done = DispatchSemaphore(value: 0)
    var error: SystemError?
    var flows: [FlowRecord] = []
    var flowCount = 0
    init(_ kind: Kind) { self.kind = kind }
}

/// One flow as a worker reports it (addresses as UInt128; IPv4 in the low bits).
struct FlowRecord: Sendable {
    var v6: Bool
    var vrf: UInt16
    var proto: UInt8
    var source: UInt128
    var sport: UInt16
    var destination: UInt128
    var dport: UInt16
    var value: FlowValue
    var idle: UInt32
}
