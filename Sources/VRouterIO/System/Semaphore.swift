// A counting semaphore for handing results between a worker thread and the control thread
// (a command answered, a worker's loop made). POSIX sem_t, so the dataplane module needs
// neither Foundation nor Dispatch; sem_post/sem_wait order the memory they guard (what one
// thread wrote before posting, the other sees after waiting).

import Glibc

public final class Semaphore: @unchecked Sendable {  // Safe: sem_t is made for sharing between threads.
    private let sem: UnsafeMutablePointer<sem_t>

    public init(value: UInt32 = 0) {
        sem = .allocate(capacity: 1)
        let r = sem_init(sem, 0, value)
        precondition(r == 0, "sem_init: errno \(errno)")
    }

    deinit {
        sem_destroy(sem)
        sem.deallocate()
    }

    public func signal() {
        let r = sem_post(sem)
        precondition(r == 0, "sem_post: errno \(errno)")  // only EOVERFLOW (2^31 posts) is possible
    }

    /// Waits for a `signal`, through signal interruptions.
    public func wait() {
        while sem_wait(sem) != 0 {
            precondition(errno == EINTR, "sem_wait: errno \(errno)")
        }
    }
}
