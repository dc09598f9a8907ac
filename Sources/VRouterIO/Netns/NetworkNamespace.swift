// Network namespaces by name, the way iproute2 keeps them: /run/netns/NAME is a bind
// mount of a namespace's nsfs file, so `ip netns`, `ip -n NAME` and CNI runtimes see the
// same namespaces we make. Also any namespace by path (/proc/PID/ns/net, /var/run/netns/…).

import Glibc

public struct NetworkNamespace: Sendable, Hashable, CustomStringConvertible {
    public static let runDirectory = "/run/netns"

    /// The nsfs file naming the namespace.
    public let path: String
    /// NAME when the namespace lives at /run/netns/NAME.
    public let name: String?

    /// The namespace this process started in (its main thread's; no thread of ours but
    /// the short-lived namespace threads ever leaves it).
    public static let current = NetworkNamespace(path: "/proc/self/ns/net", name: nil)

    public init(path: String) {
        self.path = path
        let prefix = Self.runDirectory + "/"
        if path.hasPrefix(prefix), !path.dropFirst(prefix.count).contains("/") {
            name = String(path.dropFirst(prefix.count))
        } else {
            name = nil
        }
    }

    init(path: String, name: String?) {
        self.path = path
        self.name = name
    }

    /// The namespace /run/netns/NAME (not checked for existence; use `exists`).
    public static func named(_ name: String) -> NetworkNamespace {
        NetworkNamespace(path: "\(runDirectory)/\(name)", name: name)
    }

    /// A name (/run/netns/NAME) or a path (a CNI_NETNS such as /proc/PID/ns/net).
    public static func at(_ nameOrPath: String) -> NetworkNamespace {
        nameOrPath.hasPrefix("/") ? NetworkNamespace(path: nameOrPath) : .named(nameOrPath)
    }

    public var description: String {
        if let name { return "netns \(name)" }
        return self == .current ? "host netns" : "netns \(path)"
    }

    public var exists: Bool { access(path, F_OK) == 0 }

    /// Names under /run/netns, sorted.
    public static func list() -> [String] {
        guard let dir = opendir(runDirectory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// An O_RDONLY descriptor for setns or IFLA_NET_NS_FD; the caller closes it.
    public func open() throws(SystemError) -> CInt {
        try Sys.open(path, O_RDONLY, object: description)
    }

    /// Runs `body` on a short-lived thread inside this namespace and returns its result.
    /// Sockets and tap fds opened there stay in this namespace when used from other threads.
    public func run<R>(_ body: () throws(SystemError) -> R) throws(SystemError) -> R {
        let fd = try open()
        defer { Sys.close(fd) }
        return try NamespaceThread.run(.enter(fd, description), body)
    }

    /// Makes a new, empty namespace at /run/netns/NAME (like `ip netns add NAME`). Fails
    /// with EEXIST when the name is taken; leaves nothing behind on failure.
    @discardableResult
    public static func create(named name: String) throws(SystemError) -> NetworkNamespace {
        try checkName(name)
        let ns = NetworkNamespace.named(name)
        try prepareRunDirectory()
        let fd = try Sys.open(ns.path, O_RDONLY | O_CREAT | O_EXCL, mode: 0, object: ns.description)
        Sys.close(fd)
        do {
            try NamespaceThread.run(.fresh(ns.description)) { () throws(SystemError) in
                try Sys.mount("/proc/thread-self/ns/net", ns.path, "none", UInt(MS_BIND), object: ns.description)
            }
        } catch {
            try? Sys.unlink(ns.path)
            throw error
        }
        return ns
    }

    /// Removes /run/netns/NAME (like `ip netns delete`). The namespace itself goes away
    /// when nothing else holds it (no process inside, no open fd); its veth ends and taps
    /// are destroyed then, persistent or not.
    public func delete() throws(SystemError) {
        guard name != nil else {
            throw SystemError(
                call: "delete",
                object: description,
                errno: EINVAL,
                detail: "only namespaces under \(Self.runDirectory) can be deleted"
            )
        }
        do {
            try Sys.umount(path, detach: true, object: description)
        } catch  where error.errno == EINVAL {
            // Not a mount point (half-made by someone else): still remove the file.
        }
        try Sys.unlink(path)
    }

    static func checkName(_ name: String) throws(SystemError) {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), name.utf8.count < 256 else {
            throw SystemError(
                call: "create",
                object: "netns \"\(name)\"",
                errno: EINVAL,
                detail: "a namespace name is a single path component"
            )
        }
    }

    /// iproute2's setup: /run/netns is a shared mount point so that namespace mounts
    /// propagate to (and unmounts from) other mount namespaces.
    static func prepareRunDirectory() throws(SystemError) {
        if mkdir(runDirectory, 0o755) != 0 && errno != EEXIST {
            throw SystemError(call: "mkdir", object: runDirectory, errno: errno)
        }
        var madeMountPoint = false
        while true {
            do {
                try Sys.mount("", runDirectory, "none", UInt(MS_SHARED | MS_REC), object: runDirectory)
                return
            } catch  where error.errno == EINVAL && !madeMountPoint {
                try Sys.mount(runDirectory, runDirectory, "none", UInt(MS_BIND | MS_REC), object: runDirectory)
                madeMountPoint = true
            }
        }
    }
}
