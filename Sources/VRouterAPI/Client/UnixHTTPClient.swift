// The one client of vrouterd's control socket (vrouterctl, the CNI shim, the tests): HTTP/1.1
// over an AF_UNIX stream socket, one request per connection ("Connection: close"), blocking,
// and every step (connect, send, each wait for the answer) bounded by one deadline for the
// whole exchange: Tungsten Fabric's CNI waited on its agent forever. URLSession cannot reach
// a Unix socket on Linux, and the shim must not pay for an event loop per exec.
//
// The answer may carry a Content-Length, be chunked, or end with the connection. A server
// that answers early (413 for a body too large) and stops reading makes the send fail; its
// answer is still read.

import Glibc

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Why a request got no HTTP answer.
public struct ClientError: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// The errno behind it (0 when none: a deadline, a malformed answer).
    public let errno: Int32
    /// True when nothing reached vrouterd (not running, socket missing): the request had
    /// no effect. False when it may have been received (timed out waiting for the answer).
    public let notSent: Bool
    public init(_ description: String, errno: Int32 = 0, notSent: Bool) {
        self.description = description
        self.errno = errno
        self.notSent = notSent
    }
}

public struct HTTPResult: Sendable {
    public var status: Int
    /// Header names in lower case.
    public var headers: [String: String]
    public var body: Data
    public var text: String { String(decoding: body, as: UTF8.self) }
}

public struct UnixHTTPClient: Sendable {
    /// vrouterd's control socket unless told otherwise (vrouterctl --socket, the shim's
    /// `socket` key, vrouterd run --socket).
    public static let defaultSocket = "/run/vrouter/vrouterd.sock"

    public let socketPath: String
    /// Seconds the whole exchange may take (a large route batch or dump takes a while).
    public var timeout: Double

    public init(socketPath: String, timeout: Double = 600) {
        self.socketPath = socketPath
        self.timeout = timeout
    }

    /// One request; any HTTP status is a result, only a failure to talk is thrown.
    public func request(
        _ method: String,
        _ path: String,
        body: Data? = nil,
        contentType: String = "application/json"
    ) throws(ClientError) -> HTTPResult {
        let deadline = Self.now() + timeout
        let fd = try Self.connect(socketPath, deadline: deadline, timeout: timeout)
        defer { close(fd) }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: vrouterd\r\nConnection: close\r\nAccept: application/json\r\n"
        if let body {
            head += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
        } else if method == "POST" || method == "PUT" {
            head += "Content-Length: 0\r\n"
        }
        head += "\r\n"
        var out = Array(head.utf8)
        if let body { out.append(contentsOf: body) }
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                try wait(fd, Int16(POLLOUT), deadline, "sending to vrouterd at \(socketPath)", notSent: sent == 0)
            } else if n < 0 && (errno == EPIPE || errno == ECONNRESET) && sent > 0 {
                break  // an early answer: read it
            } else {
                let e = errno
                throw ClientError("writing to \(socketPath): \(Self.text(e))", errno: e, notSent: sent == 0)
            }
        }
        return try readAnswer(fd, deadline)
    }

    private func readAnswer(_ fd: Int32, _ deadline: Double) throws(ClientError) -> HTTPResult {
        var input: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n > 0 {
                input.append(contentsOf: buf[0..<n])
                if let r = try parse(input, complete: false) { return r }
            } else if n == 0 || errno == ECONNRESET {
                break
            } else if errno == EAGAIN || errno == EINTR {
                try wait(fd, Int16(POLLIN), deadline, "waiting for vrouterd's answer on \(socketPath)", notSent: false)
            } else {
                let e = errno
                throw ClientError("reading from \(socketPath): \(Self.text(e))", errno: e, notSent: false)
            }
        }
        if input.isEmpty {
            throw ClientError("\(socketPath) closed the connection without an answer", notSent: false)
        }
        guard let r = try parse(input, complete: true) else {
            throw ClientError("\(socketPath) closed the connection in the middle of the answer", notSent: false)
        }
        return r
    }

    /// The answer once `bytes` hold all of it (Content-Length, chunked, or the connection's
    /// end when `complete`); nil while more is needed.
    func parse(_ bytes: [UInt8], complete: Bool) throws(ClientError) -> HTTPResult? {
        guard let end = Self.find(bytes, [13, 10, 13, 10]) else {
            if complete { throw ClientError("\(socketPath) did not answer in HTTP", notSent: false) }
            return nil
        }
        let lines = String(decoding: bytes[0..<end], as: UTF8.self).split(separator: "\r\n")
        let status = lines.first?.split(separator: " ") ?? []
        guard status.count >= 2, status[0].hasPrefix("HTTP/1."), let code = Int(status[1]) else {
            throw ClientError("\(socketPath) did not answer in HTTP", notSent: false)
        }
        var headers: [String: String] = [:]
        for l in lines.dropFirst() {
            guard let colon = l.firstIndex(of: ":") else { continue }
            headers[l[..<colon].lowercased()] = l[l.index(after: colon)...].trimmingWhitespace()
        }
        var result = HTTPResult(status: code, headers: headers, body: Data())
        let start = end + 4
        if let length = headers["content-length"].flatMap({ Int($0) }) {
            guard bytes.count - start >= length else { return nil }
            result.body = Data(bytes[start..<(start + length)])
            return result
        }
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            var body: [UInt8] = []
            var i = start
            while true {
                guard let le = Self.find(bytes, [13, 10], from: i) else { return nil }
                let sizeText = String(decoding: bytes[i..<le], as: UTF8.self).split(separator: ";").first ?? ""
                guard let size = Int(sizeText.trimmingWhitespace(), radix: 16) else {
                    throw ClientError("\(socketPath) sent a malformed chunk", notSent: false)
                }
                if size == 0 {
                    result.body = Data(body)
                    return result
                }
                guard bytes.count >= le + 2 + size + 2 else { return nil }
                body.append(contentsOf: bytes[(le + 2)..<(le + 2 + size)])
                i = le + 2 + size + 2
            }
        }
        guard complete else { return nil }
        result.body = Data(bytes[start...])
        return result
    }

    /// Connects to the socket before `deadline`; errors say in one line what is wrong,
    /// naming the socket (vrouterd not running, no permission).
    public static func connect(_ path: String, deadline: Double, timeout: Double) throws(ClientError) -> Int32 {
        let fd = socket(
            AF_UNIX,
            Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
            0
        )
        guard fd >= 0 else {
            let e = errno
            throw ClientError("socket: \(text(e))", errno: e, notSent: true)
        }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw ClientError("socket path \(path) is too long", notSent: true)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        var e = r == 0 ? 0 : errno
        if e == EINPROGRESS || e == EAGAIN {
            // A full listen backlog: wait for it to take us, within the deadline.
            do {
                try UnixHTTPClient(socketPath: path, timeout: timeout)
                    .wait(fd, Int16(POLLOUT), deadline, "connecting to vrouterd at \(path)", notSent: true)
            } catch {
                close(fd)
                throw error
            }
            var err: Int32 = 0
            var len = socklen_t(4)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            e = err
        }
        guard e == 0 else {
            close(fd)
            switch e {
            case ENOENT: throw ClientError("vrouterd is not running: no socket at \(path)", errno: e, notSent: true)
            case ECONNREFUSED:
                throw ClientError("vrouterd is not running: nothing listens on \(path)", errno: e, notSent: true)
            case EACCES, EPERM:
                throw ClientError(
                    "permission denied connecting to \(path) (the control socket is root's)",
                    errno: e,
                    notSent: true
                )
            default: throw ClientError("cannot connect to \(path): \(text(e))", errno: e, notSent: true)
            }
        }
        return fd
    }

    /// Whether something accepts connections on the socket at `path` (within a second).
    public static func isLive(_ path: String) -> Bool {
        guard let fd = try? connect(path, deadline: now() + 1, timeout: 1) else { return false }
        close(fd)
        return true
    }

    private func wait(
        _ fd: Int32,
        _ events: Int16,
        _ deadline: Double,
        _ what: String,
        notSent: Bool
    ) throws(ClientError) {
        while true {
            let left = deadline - Self.now()
            guard left > 0 else { throw ClientError("\(what): no answer within \(timeout) s", notSent: notSent) }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&p, 1, Int32(min(max(1, (left * 1000).rounded(.up)), Double(Int32.max))))
            if r > 0 { return }
            if r < 0 && errno != EINTR {
                let e = errno
                throw ClientError("\(what): poll: \(Self.text(e))", errno: e, notSent: notSent)
            }
        }
    }

    static func find(_ hay: [UInt8], _ needle: [UInt8], from: Int = 0) -> Int? {
        guard hay.count >= needle.count, from <= hay.count - needle.count else { return nil }
        for i in from...(hay.count - needle.count) where hay[i] == needle[0] {
            if hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
        }
        return nil
    }

    /// Seconds on the monotonic clock.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func text(_ e: Int32) -> String { String(cString: strerror(e)) }
}
