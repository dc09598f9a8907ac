// The order in which the node's changes reach the state directory. Each part queues the
// record of a change while it still holds its own lock, so records are numbered in the order
// the changes became visible; the request then waits, outside every lock, for its record to
// be written and fsynced. Concurrent requests share one write and one fsync (group commit).
// A snapshot (all parts' locks held, see NodeService+State) covers every record queued so
// far; the writer lock keeps the journal from being truncated under a write.

import Logging
import Synchronization
import VRouterAPI

/// A change the state journal records, replayed after a restart.
public enum StateRecord: Codable, Sendable {
    case addVRF(VRFSpec)
    case deleteVRF(String)
    case routes(String, RouteChange)
    case addNode(RemoteNodeSpec)
    case deleteNode(String)
    case addInterface(InterfaceSpec)
    case deleteInterface(String)
    /// A network applied (its VRF made with it), or removed.
    case network(NetworkRecord)
    case deleteNetwork(String)
    /// A pod's record as it is now (its interfaces made with it), or released.
    case pod(PodRecord)
    case podReleased(String)
    /// An ADD about to make these interfaces, written before it makes any: when no record
    /// of the container follows it, the ADD was cut short (a crash) and never answered, and
    /// whatever it made is removed on restart (CNI's DEL after a failed ADD finds no record).
    case podAdding(PodRecord)
}

// Safe (@unchecked Sendable): the queue is behind a mutex, writes behind `writer`, and
// `persistence` is set before the node serves.
final class Journal: @unchecked Sendable {
    /// What a request waits for: its record's sequence number (none: nothing was queued).
    struct Ticket: Sendable {
        let sequence: Int
        static let none = Ticket(sequence: 0)
    }

    private struct Queue {
        var pending: [JournalEntry] = []
        /// The sequence of the last record queued, and of the last one written.
        var queued = 0
        var written = 0
        /// Replaying a journal: its records are not journaled again.
        var suspended = false
    }
    private let queue = Mutex(Queue())
    /// Held while records or a snapshot are written (the journal is not truncated under a write).
    private let writer = Mutex(())
    let log: Logger

    init(log: Logger) { self.log = log }

    /// Where the records go, set before the node starts (never while requests run, so it is
    /// read without a lock); numbering goes on from what it loaded.
    var persistence: StatePersistence? {
        didSet {
            let start = persistence?.sequence ?? 0
            queue.withLock {
                $0.queued = start
                $0.written = start
                $0.pending = []
            }
        }
    }

    /// Queues a record (called with the changing part's lock held).
    func record(_ r: StateRecord) -> Ticket {
        guard persistence != nil else { return .none }  // the node keeps no state
        return queue.withLock { q in
            guard !q.suspended else { return .none }
            q.queued += 1
            q.pending.append(JournalEntry(sequence: q.queued, record: r))
            return Ticket(sequence: q.queued)
        }
    }

    /// Runs `body` (a replay) with journaling off.
    func suspended<R>(_ body: () throws -> R) rethrows -> R {
        queue.withLock { $0.suspended = true }
        defer { queue.withLock { $0.suspended = false } }
        return try body()
    }

    /// Returns once `ticket`'s record is written and fsynced (with whatever else is queued).
    /// A failure is logged, not thrown: the change is made and the node runs on it.
    /// `compact` writes a snapshot when the journal has grown long.
    func sync(_ ticket: Ticket, compact: (StatePersistence) throws(ServiceError) -> Void) {
        guard ticket.sequence > 0, let p = persistence else { return }
        writer.withLock { _ in
            let batch = queue.withLock { q -> [JournalEntry] in
                guard q.written < ticket.sequence else { return [] }
                defer {
                    q.written = q.queued
                    q.pending.removeAll(keepingCapacity: true)
                }
                return q.pending
            }
            guard !batch.isEmpty else { return }
            do {
                try p.append(batch)
                if p.journalLength >= StatePersistence.compactAfter { try compact(p) }
            } catch {
                log.error("state not saved", metadata: ["error": "\(error)"])
            }
        }
    }

    /// The sequence of the last record queued (read with every part's lock held, it is the
    /// sequence a snapshot of their state includes).
    var lastQueued: Int { queue.withLock { $0.queued } }

    /// Writes a snapshot: `capture` takes every part's lock and returns their state with
    /// `lastQueued`; `write` saves it. Records up to that sequence leave the queue (the
    /// snapshot holds them), and none is written meanwhile.
    func snapshot<S>(
        capture: () -> (S, Int),
        write: (StatePersistence, S, Int) throws(ServiceError) -> Void
    ) throws(ServiceError) {
        guard let p = persistence else { return }
        try writer.withLock { _ throws(ServiceError) in try snapshotLocked(p, capture: capture, write: write) }
    }

    /// As `snapshot`, from `sync`'s `compact` (the writer held already).
    func snapshotLocked<S>(
        _ p: StatePersistence,
        capture: () -> (S, Int),
        write: (StatePersistence, S, Int) throws(ServiceError) -> Void
    ) throws(ServiceError) {
        let (state, sequence) = capture()
        try write(p, state, sequence)
        queue.withLock { q in
            q.pending.removeAll { $0.sequence <= sequence }
            q.written = max(q.written, sequence)
        }
    }
}
