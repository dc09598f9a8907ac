// One helper per libc call family, in the manner of swift-nio's System.swift and
// swift-system's Syscalls.swift: retry EINTR, turn -1 into a SystemError that names the
// call and the object. These run on control paths (port setup, namespaces); the packet
// path makes no syscalls of its own (io_uring submissions are in IOLoop).

import CVRouterShims
import Glibc

enum Sys {
    /// Runs `body` until it returns something other than -1/EINTR.
    @inline(__always)
    static func retrying<T: FixedWidthInteger>(
        _ call: @autoclosure () -> String,
        _ object: @autoclosure () -> String,
        _ body: () -> T
    ) throws(SystemError) -> T {
        while true {
            let r = body()
            if r != -1 { return r }
            let e = errno
            if e == EINTR { continue }
            throw SystemError(call: call(), object: object(), errno: e)
        }
    }

    static func open(
        _ path: String,
        _ flags: Int32,
        mode: mode_t = 0,
        object: String? = nil
    ) throws(SystemError) -> CInt {
        try retrying("open", object ?? path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// Linux releases the descriptor even when close reports EINTR, so it is never retried.
    /// EBADF means we closed something twice, a bug that could close another owner's fd.
    static func close(_ fd: CInt) {
        let r = Glibc.close(fd)
        precondition(r == 0 || errno != EBADF, "close(\(fd)): EBADF, descriptor closed twice")
    }

    static func ioctl(
        _ fd: CInt,
        _ request: UInt,
        _ arg: UnsafeMutableRawPointer,
        call: String,
        object: String
    ) throws(SystemError) {
        _ = try retrying(call, object) { Glibc.ioctl(fd, request, arg) }
    }

    static func ioctl(_ fd: CInt, _ request: UInt, _ value: CInt, call: String, object: String) throws(SystemError) {
        _ = try retrying(call, object) { Glibc.ioctl(fd, request, value) }
    }

    static func socket(_ domain: Int32, _ type: Int32, _ proto: Int32, object: String) throws(SystemError) -> CInt {
        // SOCK_CLOEXEC is O_CLOEXEC on Linux; its enum spelling is hidden from Swift when
        // linux/net.h (through the shims) is visible too, so a clean build cannot see it.
        try retrying("socket", object) { Glibc.socket(domain, type | O_CLOEXEC, proto) }
    }

    static func setsockopt<T: BitwiseCopyable>(
        _ fd: CInt,
        _ level: Int32,
        _ name: Int32,
        _ value: T,
        call: String,
        object: String
    ) throws(SystemError) {
        var v = value
        _ = try retrying("setsockopt(\(call))", object) {
            Glibc.setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<T>.size))
        }
    }

    static func getsockopt<T: BitwiseCopyable>(
        _ fd: CInt,
        _ level: Int32,
        _ name: Int32,
        _ value: inout T,
        call: String,
        object: String
    ) throws(SystemError) {
        var len = socklen_t(MemoryLayout<T>.size)
        _ = try retrying("getsockopt(\(call))", object) { Glibc.getsockopt(fd, level, name, &value, &len) }
    }

    static func bind<A: BitwiseCopyable>(_ fd: CInt, _ address: A, object: String) throws(SystemError) {
        var a = address
        _ = try retrying("bind", object) {
            withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd, $0, socklen_t(MemoryLayout<A>.size))
                }
            }
        }
    }

    static func mmap(
        _ length: Int,
        _ prot: Int32,
        _ flags: Int32,
        _ fd: CInt,
        object: String
    ) throws(SystemError) -> UnsafeMutableRawPointer {
        let p = Glibc.mmap(nil, length, prot, flags, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw SystemError(call: "mmap(\(length) bytes)", object: object, errno: errno)
        }
        return p
    }

    static func munmap(_ p: UnsafeMutableRawPointer, _ length: Int) {
        _ = Glibc.munmap(p, length)
    }

    static func read(
        _ fd: CInt,
        _ buf: UnsafeMutableRawPointer,
        _ count: Int,
        object: String
    ) throws(SystemError) -> Int {
        try retrying("read", object) { Glibc.read(fd, buf, count) }
    }

    static func write(_ fd: CInt, _ buf: UnsafeRawPointer, _ count: Int, object: String) throws(SystemError) -> Int {
        try retrying("write", object) { Glibc.write(fd, buf, count) }
    }

    static func eventfd(object: String) throws(SystemError) -> CInt {
        try retrying("eventfd", object) { vrt_eventfd(0) }
    }

    static func mount(
        _ source: String,
        _ target: String,
        _ type: String?,
        _ flags: UInt,
        object: String
    ) throws(SystemError) {
        _ = try retrying("mount", object) { Glibc.mount(source, target, type, flags, nil) }
    }

    static func umount(_ target: String, detach: Bool, object: String) throws(SystemError) {
        _ = try retrying("umount", object) { Glibc.umount2(target, detach ? Int32(MNT_DETACH) : 0) }
    }

    static func mkdir(_ path: String, _ mode: mode_t) throws(SystemError) {
        _ = try retrying("mkdir", path) { Glibc.mkdir(path, mode) }
    }

    static func unlink(_ path: String) throws(SystemError) {
        _ = try retrying("unlink", path) { Glibc.unlink(path) }
    }

    static func setnsNet(_ fd: CInt, object: String) throws(SystemError) {
        _ = try retrying("setns(CLONE_NEWNET)", object) { vrt_setns_net(fd) }
    }

    static func unshareNet(object: String) throws(SystemError) {
        _ = try retrying("unshare(CLONE_NEWNET)", object) { vrt_unshare_net() }
    }

    /// fcntl(F_SETFL) adding O_NONBLOCK.
    static func setNonBlocking(_ fd: CInt, object: String) throws(SystemError) {
        let flags = try retrying("fcntl(F_GETFL)", object) { fcntl(fd, F_GETFL) }
        _ = try retrying("fcntl(F_SETFL)", object) { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    /// An interface name as the kernel wants it in ifreq/IFLA_IFNAME: 1...15 bytes, no '/'
    /// or whitespace (dev_valid_name). Checked here so the error names the bad name.
    static func checkInterfaceName(_ name: String, call: String) throws(SystemError) {
        let bytes = Array(name.utf8)
        let ok =
            !bytes.isEmpty && bytes.count < Int(IFNAMSIZ) && name != "." && name != ".."
            && !bytes.contains { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") || $0 <= 0x20 || $0 == 0x7F }
        guard ok else {
            throw SystemError(
                call: call,
                object: "interface name \"\(name)\"",
                errno: EINVAL,
                detail: "an interface name is 1 to \(IFNAMSIZ - 1) bytes without '/', ':' or whitespace"
            )
        }
    }
}
