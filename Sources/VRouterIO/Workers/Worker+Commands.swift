// Requests from the control thread to a worker: add or remove a port, list or flush flows.
// The worker serves them between frames (its io_uring must only be fed from its own thread,
// and its flow table is only read there); the caller waits for the answer.

import Synchronization
import VRouterCore

/// A request to a worker, answered through `done`.
// Safe (@unchecked Sendable): fields are written by the worker before `done` is signalled.
public final class WorkerCommand: @unchecked Sendable {
    public enum Kind {
        case addTap(UInt16, TapPort, Int)
        case removePort(UInt16)
        case flows(vrf: UInt16?, limit: Int)
        case flush(vrf: UInt16?)
    }
    public let kind: Kind
    public let done = Semaphore()
    public var error: SystemError?
    public var flows: [FlowRecord] = []
    public var flowCount = 0
    public init(_ kind: Kind) { self.kind = kind }
}

/// One flow as a worker reports it (addresses as UInt128; IPv4 in the low bits).
public struct FlowRecord: Sendable {
    public var v6: Bool
    public var vrf: UInt16
    public var proto: UInt8
    public var source: UInt128
    public var sport: UInt16
    public var destination: UInt128
    public var dport: UInt16
    public var value: FlowValue
    public var idle: UInt32
}

extension Worker {
    /// Runs `command` on the worker thread between frames and waits for it.
    public func perform(_ command: WorkerCommand) {
        inbox.withLock { $0.append(command) }
        inboxCount.add(1, ordering: .releasing)
        waker.wake()
        command.done.wait()
    }

    @inline(never)
    func serveCommands(_ loop: IOLoop) {
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
}
