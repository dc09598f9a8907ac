// Work "inside" a network namespace happens on a dedicated, short-lived thread that
// enters the namespace (setns or unshare CLONE_NEWNET) and then exits, so no other
// thread of the process ever leaves its namespace: worker threads and the control
// thread stay in the host's. Sockets (netlink, AF_PACKET) and tap fds opened on that
// thread keep belonging to the namespace they were opened in, and can be used from any
// thread afterwards. A thread costs ~20-50 µs; this is control-path only.

import CVRouterShims
import Glibc

enum NamespaceThread {
    enum Entry {
        /// setns into the namespace whose fd this is (the caller keeps and closes it).
        case enter(CInt, String)
        /// unshare(CLONE_NEWNET): a brand-new namespace (for `NetworkNamespace.create`).
        case fresh(String)
    }

    private final class Box {
        let entry: Entry
        let body: () throws(SystemError) -> Void
        var error: SystemError?
        init(entry: Entry, body: @escaping () throws(SystemError) -> Void) {
            self.entry = entry
            self.body = body
        }
        func main() {
            do {
                switch entry {
                case .enter(let fd, let object): try Sys.setnsNet(fd, object: object)
                case .fresh(let object): try Sys.unshareNet(object: object)
                }
                try body()
            } catch {
                self.error = error
            }
        }
    }

    /// Runs `body` on a new thread inside the namespace and waits for it. The body may
    /// capture local state: the caller is blocked until the thread has ended.
    static func run<R>(_ entry: Entry, _ body: () throws(SystemError) -> R) throws(SystemError) -> R {
        var result: R? = nil
        let error: SystemError? = withoutActuallyEscaping(body) { body in
            // Safe: the escaping copy only lives until pthread_join below returns.
            let box = Box(entry: entry) { () throws(SystemError) in result = try body() }
            var tid = pthread_t()
            let rc = pthread_create(
                &tid,
                nil,
                { arg in
                    // Safe: the creator holds the box until after pthread_join.
                    let box = Unmanaged<Box>.fromOpaque(arg!).takeUnretainedValue()
                    _ = vrt_set_thread_name("vrt-netns")
                    box.main()
                    return nil
                },
                Unmanaged.passUnretained(box).toOpaque()
            )
            if rc != 0 {
                return SystemError(call: "pthread_create", object: "namespace thread", errno: rc)
            }
            pthread_join(tid, nil)
            return withExtendedLifetime(box) { box.error }
        }
        if let error { throw error }
        return result!
    }
}
