// Worker threads: plain pthreads pinned to one CPU (sched_setaffinity on the thread
// itself), named for top/perf ("vrt-w0"), running a body until it returns. The body
// typically creates its IOLoop and pipeline state on the thread (they are owned by it)
// and alternates rx → process → tx until told to stop.

import CVRouterShims
import Glibc
import Synchronization

public final class WorkerThread: Sendable {
    public let name: String
    public let cpu: Int?
    private let thread: Mutex<pthread_t?>

    private final class Start: @unchecked Sendable {  // Safe: handed to exactly one thread.
        let name: String
        let cpu: Int?
        let body: @Sendable () -> Void
        /// 0 while starting, then 1 (running) or -errno (pinning failed, thread ended).
        let status = Atomic<Int32>(0)
        init(name: String, cpu: Int?, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.cpu = cpu
            self.body = body
        }
    }

    private init(name: String, cpu: Int?, thread: pthread_t) {
        self.name = name
        self.cpu = cpu
        self.thread = Mutex(thread)
    }

    /// Starts `body` on a new thread pinned to `cpu` (unpinned when nil). Returns once the
    /// thread runs on its CPU; throws (and no thread remains) when pinning fails — a CPU
    /// outside the process's affinity mask, say.
    public static func start(
        name: String,
        cpu: Int?,
        body: @escaping @Sendable () -> Void
    ) throws(SystemError) -> WorkerThread {
        let start = Start(name: name, cpu: cpu, body: body)
        let retained = Unmanaged.passRetained(start)
        var tid = pthread_t()
        let rc = pthread_create(
            &tid,
            nil,
            { arg in
                let start = Unmanaged<Start>.fromOpaque(arg!).takeRetainedValue()
                _ = start.name.withCString { vrt_set_thread_name($0) }
                if let cpu = start.cpu, vrt_pin_current_thread(Int32(cpu)) != 0 {
                    start.status.store(-errno, ordering: .releasing)
                    return nil
                }
                start.status.store(1, ordering: .releasing)
                start.body()
                return nil
            },
            retained.toOpaque()
        )
        if rc != 0 {
            retained.release()
            throw SystemError(call: "pthread_create", object: "worker \(name)", errno: rc)
        }
        var status: Int32 = 0
        while true {
            status = start.status.load(ordering: .acquiring)
            if status != 0 { break }
            sched_yield()
        }
        if status < 0 {
            pthread_join(tid, nil)
            throw SystemError(call: "sched_setaffinity(cpu \(cpu!))", object: "worker \(name)", errno: -status)
        }
        return WorkerThread(name: name, cpu: cpu, thread: tid)
    }

    /// Waits for the body to return. Idempotent.
    public func join() {
        let t = thread.withLock { t in
            defer { t = nil }
            return t
        }
        if let t { pthread_join(t, nil) }
    }

    deinit {
        // A worker that was never joined keeps running detached rather than leaking a zombie.
        thread.withLock { t in
            if let t { pthread_detach(t) }
        }
    }
}
