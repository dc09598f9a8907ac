// How the shim reaches vrouterd: one HTTP/1.1 request per connection on its Unix socket,
// every step bounded by a deadline (Tungsten Fabric's CNI waited on its agent forever).
// A seam (`VRouterTransport`) so tests can answer in-process.

import Glibc

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public protocol VRouterTransport: Sendable {
    /// Sends one request; returns the status and body. Throws `TransportError` when
    /// vrouterd cannot be reached or does not answer in time.
    func request(_ method: String, _ path: String, body: Data?) throws(TransportError) -> (status: Int, body: Data)
}

public struct TransportError: Error, Sendable, CustomStringConvertible {
    public var description: String
    /// True when nothing reached vrouterd (not running, socket missing): the request had
    /// no effect. False when it may have been received (timed out waiting for the answer).
    public var notSent: Bool
    public init(_ d: String, notSent: Bool) {
        description = d
        self.notSent = notSent
    }
}

/// HTTP over AF_UNIX, blocking, with a deadline for the whole exchange.
public struct UnixHTTPTransport: VRouterTransport {
    public let socketPath: String
    public let timeout: Double

    public init(socketPath: String, timeout: Double) {
        self.socketPath = socketPath
        self.timeout = timeout
    }

    public func request(
        _ method: String,
        _ path: String,
        body: Data?
    ) throws(TransportError) -> (status: Int, body: Data) {
        let deadline = Self.now() + timeout
        let fd = socket(
            AF_UNIX,
            Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
            0
        )
        guard fd >= 0 else { throw TransportError("socket: \(Self.errnoText())", notSent: true) }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw TransportError("socket path \(socketPath) is too long", notSent: true)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in pathBytes.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if rc != 0 {
            if errno == EINPROGRESS || errno == EAGAIN {
                try wait(fd, Int16(POLLOUT), deadline, "connecting to vrouterd at \(socketPath)", notSent: true)
                var err: Int32 = 0
                var len = socklen_t(4)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                if err != 0 {
                    throw TransportError("vrouterd at \(socketPath): \(String(cString: strerror(err)))", notSent: true)
                }
            } else {
                throw TransportError("vrouterd at \(socketPath): \(Self.errnoText())", notSent: true)
            }
        }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: vrouterd\r\nConnection: close\r\nAccept: application/json\r\n"
        let payload = body ?? Data()
        if body != nil { head += "Content-Type: application/json\r\n" }
        head += "Content-Length: \(payload.count)\r\n\r\n"
        var out = Array(head.utf8)
        out.append(contentsOf: payload)
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                try wait(fd, Int16(POLLOUT), deadline, "sending to vrouterd", notSent: sent == 0)
            } else {
                throw TransportError("sending to vrouterd: \(Self.errnoText())", notSent: sent == 0)
            }
        }
        var input: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n > 0 {
                input.append(contentsOf: buf[0..<n])
                if let r = Self.parse(input, complete: false) { return r }
            } else if n == 0 {
                break
            } else if errno == EAGAIN || errno == EINTR {
                try wait(fd, Int16(POLLIN), deadline, "waiting for vrouterd's answer", notSent: false)
            } else {
                throw TransportError("reading vrouterd's answer: \(Self.errnoText())", notSent: false)
            }
        }
        guard let r = Self.parse(input, complete: true) else {
            throw TransportError("vrouterd closed the connection without a complete HTTP answer", notSent: false)
        }
        return r
    }

    private func wait(
        _ fd: Int32,
        _ events: Int16,
        _ deadline: Double,
        _ what: String,
        notSent: Bool
    ) throws(TransportError) {
        while true {
            let left = deadline - Self.now()
            guard left > 0 else { throw TransportError("\(what): no answer within \(timeout)s", notSent: notSent) }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&p, 1, Int32(max(1, (left * 1000).rounded(.up))))
            if r > 0 { return }
            if r < 0 && errno != EINTR { throw TransportError("\(what): poll: \(Self.errnoText())", notSent: notSent) }
        }
    }

    /// (status, body) once `bytes` hold a whole answer (Content-Length, chunked, or EOF).
    static func parse(_ bytes: [UInt8], complete: Bool) -> (status: Int, body: Data)? {
        guard let end = find(bytes, [13, 10, 13, 10]) else { return nil }
        let head = String(decoding: bytes[0..<end], as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { return complete ? (0, Data()) : nil }
        var length: Int?
        var chunked = false
        for l in lines.dropFirst() {
            let kv = l.split(separator: ":", maxSplits: 1)
            guard kv.count == 2 else { continue }
            let k = kv[0].lowercased()
            let v = kv[1].trimmingWhitespace()
            if k == "content-length" { length = Int(v) }
            if k == "transfer-encoding" && v.lowercased().contains("chunked") { chunked = true }
        }
        let bodyStart = end + 4
        if let length {
            guard bytes.count - bodyStart >= length else { return nil }
            return (status, Data(bytes[bodyStart..<(bodyStart + length)]))
        }
        if chunked {
            var out: [UInt8] = []
            var i = bodyStart
            while true {
                guard let le = find(bytes, [13, 10], from: i) else { return nil }
                let sizeText =
                    String(decoding: bytes[i..<le], as: UTF8.self).split(separator: ";").first.map(String.init) ?? ""
                guard let size = Int(sizeText.trimmingWhitespace(), radix: 16) else {
                    return complete ? (status, Data(out)) : nil
                }
                if size == 0 { return (status, Data(out)) }
                let start = le + 2
                guard bytes.count >= start + size + 2 else { return nil }
                out.append(contentsOf: bytes[start..<(start + size)])
                i = start + size + 2
            }
        }
        return complete ? (status, Data(bytes[bodyStart...])) : nil
    }

    static func find(_ hay: [UInt8], _ needle: [UInt8], from: Int = 0) -> Int? {
        guard hay.count >= needle.count else { return nil }
        var i = from
        while i + needle.count <= hay.count {
            if hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle { return i }
            i += 1
        }
        return nil
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}
