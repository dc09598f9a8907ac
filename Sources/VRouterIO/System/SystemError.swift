// One error type for everything the live ports ask of the kernel: which call failed, on
// what (a device, a namespace, a path), and errno as text. Netlink failures carry the
// kernel's extended-ack message when it gives one ("Error: Nexthop has invalid gateway.").

import Glibc

public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The call or request that failed: "open", "ioctl(TUNSETIFF)", "RTM_NEWROUTE".
    public let call: String
    /// What it was done to: "tap vrt0", "netns vrtb", "/run/netns/vrtb", "link eth0 in netns vrtb".
    public let object: String
    /// errno (or the negated netlink error); 0 when the failure is not an errno.
    public let errno: Int32
    /// The kernel's netlink extended-ack text, or our own detail for non-errno failures.
    public let detail: String?

    public init(call: String, object: String, errno: Int32, detail: String? = nil) {
        self.call = call
        self.object = object
        self.errno = errno
        self.detail = detail
    }

    /// strerror's text for `errno` ("No such device").
    public var errnoText: String { Self.text(errno) }

    public var description: String {
        var s = "\(call) on \(object): "
        if errno != 0 {
            s += "\(Self.text(errno)) (errno \(errno)"
            if let name = Self.name(errno) { s += " \(name)" }
            s += ")"
        }
        if let detail {
            s += errno != 0 ? ": \(detail)" : detail
        }
        return s
    }

    static func text(_ e: Int32) -> String {
        guard let p = strerror(e) else { return "errno \(e)" }
        return String(cString: p)
    }

    /// Symbolic names for the errnos these paths actually produce; others print as numbers.
    static func name(_ e: Int32) -> String? {
        switch e {
        case EPERM: "EPERM"
        case ENOENT: "ENOENT"
        case EINTR: "EINTR"
        case EIO: "EIO"
        case EBADF: "EBADF"
        case EAGAIN: "EAGAIN"
        case ENOMEM: "ENOMEM"
        case EACCES: "EACCES"
        case EFAULT: "EFAULT"
        case EBUSY: "EBUSY"
        case EEXIST: "EEXIST"
        case ENODEV: "ENODEV"
        case ENOTDIR: "ENOTDIR"
        case EINVAL: "EINVAL"
        case ENFILE: "ENFILE"
        case EMFILE: "EMFILE"
        case ENOSPC: "ENOSPC"
        case ERANGE: "ERANGE"
        case ENOSYS: "ENOSYS"
        case EOPNOTSUPP: "EOPNOTSUPP"
        case EADDRNOTAVAIL: "EADDRNOTAVAIL"
        case ENETUNREACH: "ENETUNREACH"
        case ENOBUFS: "ENOBUFS"
        case ENXIO: "ENXIO"
        case ESRCH: "ESRCH"
        case EBADFD: "EBADFD"
        case ENETDOWN: "ENETDOWN"
        case EMSGSIZE: "EMSGSIZE"
        case EPROTONOSUPPORT: "EPROTONOSUPPORT"
        case EAFNOSUPPORT: "EAFNOSUPPORT"
        default: nil
        }
    }
}
