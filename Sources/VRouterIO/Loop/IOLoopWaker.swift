// Waking a worker's IOLoop from another thread (a control message is waiting, or stop):
// an eventfd that the loop always has an io_uring read pending on. The fd belongs to this
// object, so a waker kept by the control side stays valid after the loop is gone.

import Glibc

public final class IOLoopWaker: Sendable {
    let fd: CInt

    /// A waker the control side can keep; hand it to `IOLoop.init(pool:waker:)`.
    public init() throws(SystemError) {
        fd = try Sys.eventfd(object: "IOLoop waker")
    }

    deinit { Sys.close(fd) }

    /// Makes the loop's current or next `rx` return promptly with `takeWakeup()` true.
    /// Any thread; never blocks (the eventfd counter saturates harmlessly).
    public func wake() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }
}
