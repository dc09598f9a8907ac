// A minimal blocking HTTP/1.1 client over an AF_UNIX stream socket: what vrouterctl and
// the tests need to talk to vrouterd (Foundation's URLSession cannot reach a Unix socket
// on Linux). One request per connection ("Connection: close"); the response must carry
// a Content-Length or end with the connection.

import Foundation
import Glibc

/// Why a request got no HTTP answer.
public struct ClientError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public let errno: Int32
    init(_ d: String, errno: Int32 = 0) {
        description = d
        self.errno = errno
    }
}

public struct HTTPResult: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: Data
    public var text: String { String(decoding: body, as: UTF8.self) }
}

public struct UnixHTTPClient: Sendable {
    public let socketPath: String
    /// Seconds to wait for the answer (a large route batch or dump takes a while).
    public var timeout: Int = 600

    public init(socketPath: String) { self.socketPath = socketPath }

    /// Connects to the socket; errors say in one line what is wrong, naming the socket.
    public static func connect(_ path: String) throws(ClientError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClientError("socket: \(String(cString: strerror(errno)))", errno: errno) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw ClientError("socket path \(path) is too long")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard r == 0 else {
            let e = errno
            close(fd)
            switch e {
            case ENOENT: throw ClientError("vrouterd is not running: no socket at \(path)", errno: e)
            case ECONNREFUSED: throw ClientError("vrouterd is not running: nothing listens on \(path)", errno: e)
            case EACCES, EPERM:
                throw ClientError("permission denied connecting to \(path) (the control socket is root's)", errno: e)
            default: throw ClientError("cannot connect to \(path): \(String(cString: strerror(e)))", errno: e)
            }
        }
        return fd
    }

    /// One request; any HTTP status is a result, only a failure to talk is thrown.
    public func request(_ method: String, _ path: String, body: Data? = nil) throws(ClientError) -> HTTPResult {
        let fd = try Self.connect(socketPath)
        defer { close(fd) }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var head = "\(method) \(path) HTTP/1.1\r\nHost: vrouterd\r\nConnection: close\r\nAccept: application/json\r\n"
        if let body {
            head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n"
        } else if method == "POST" || method == "PUT" {
            head += "Content-Length: 0\r\n"
        }
        head += "\r\n"
        // A server that answers early (413) and stops reading makes a write fail; its
        // answer is still worth reading.
        var writeError: Int32 = 0
        if !writeAll(fd, Data(head.utf8), &writeError), writeError != EPIPE && writeError != ECONNRESET {
            throw ClientError("writing to \(socketPath): \(String(cString: strerror(writeError)))", errno: writeError)
        }
        if writeError == 0, let body, !body.isEmpty {
            _ = writeAll(fd, body, &writeError)
        }
        return try readResponse(fd)
    }

    private func writeAll(_ fd: Int32, _ data: Data, _ error: inout Int32) -> Bool {
        data.withUnsafeBytes { raw -> Bool in
            var off = 0
            while off < raw.count {
                let n = send(fd, raw.baseAddress! + off, raw.count - off, Int32(MSG_NOSIGNAL))
                if n < 0 {
                    if errno == EINTR { continue }
                    error = errno
                    return false
                }
                off += n
            }
            return true
        }
    }

    private func readResponse(_ fd: Int32) throws(ClientError) -> HTTPResult {
        var buf = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var headerEnd: Int?
        var contentLength: Int?
        var result = HTTPResult(status: 0, headers: [:], body: Data())
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    throw ClientError("no answer from \(socketPath) within \(timeout) s")
                }
                if errno == ECONNRESET && headerEnd == nil && buf.isEmpty {
                    throw ClientError("\(socketPath) closed the connection without an answer", errno: errno)
                }
                if errno != ECONNRESET {
                    throw ClientError("reading from \(socketPath): \(String(cString: strerror(errno)))", errno: errno)
                }
            }
            if n > 0 { buf.append(contentsOf: chunk[0..<n]) }
            if headerEnd == nil, let end = findHeaderEnd(buf) {
                headerEnd = end
                result = try parseHead(buf[0..<end])
                contentLength = result.headers["content-length"].flatMap { Int($0) }
            }
            if let h = headerEnd, let cl = contentLength, buf.count - (h + 4) >= cl {
                result.body = Data(buf[(h + 4)..<(h + 4 + cl)])
                return result
            }
            if n <= 0 {
                guard let h = headerEnd else {
                    throw ClientError("\(socketPath) closed the connection without an answer")
                }
                if contentLength != nil {
                    throw ClientError("\(socketPath) closed the connection in the middle of the answer")
                }
                result.body = Data(buf[(h + 4)...])
                return result
            }
        }
    }

    private func findHeaderEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i }
        return nil
    }

    private func parseHead(_ bytes: ArraySlice<UInt8>) throws(ClientError) -> HTTPResult {
        let text = String(decoding: bytes, as: UTF8.self)
        var lines = text.components(separatedBy: "\r\n")
        let status = lines.removeFirst().split(separator: " ")
        guard status.count >= 2, status[0].hasPrefix("HTTP/1."), let code = Int(status[1]) else {
            throw ClientError("\(socketPath) did not answer in HTTP")
        }
        var headers: [String: String] = [:]
        for l in lines {
            guard let colon = l.firstIndex(of: ":") else { continue }
            headers[l[..<colon].lowercased()] = l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return HTTPResult(status: code, headers: headers, body: Data())
    }
}

/// The API's typed calls over the client: 2xx answers decode into `T`, other answers
/// become the API's error (status and message).
public struct ControlClient: Sendable {
    public var http: UnixHTTPClient
    public init(socketPath: String) { http = UnixHTTPClient(socketPath: socketPath) }

    public enum Failure: Error, CustomStringConvertible, Sendable {
        case transport(ClientError)
        case api(APIError)
        public var description: String {
            switch self {
            case .transport(let e): e.description
            case .api(let e): e.message
            }
        }
    }

    /// The raw answer of a call (for `-o json`), after the status check.
    public func raw(_ method: String, _ path: String, body: Data? = nil) throws(Failure) -> Data {
        let r: HTTPResult
        do { r = try http.request(method, path, body: body) } catch { throw .transport(error) }
        guard (200..<300).contains(r.status) else {
            let message =
                (try? JSONDecoder().decode(ErrorBody.self, from: r.body))?.error
                ?? "HTTP \(r.status): \(r.text.trimmingCharacters(in: .whitespacesAndNewlines))"
            throw .api(APIError(r.status, message))
        }
        return r.body
    }

    public func call<T: Decodable>(
        _ method: String,
        _ path: String,
        body: Data? = nil,
        as: T.Type = T.self
    ) throws(Failure) -> T {
        let data = try raw(method, path, body: body)
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw .api(APIError(0, "unexpected answer to \(method) \(path): \(error)"))
        }
    }

    public func send<B: Encodable, T: Decodable>(
        _ method: String,
        _ path: String,
        _ body: B,
        as: T.Type = T.self
    ) throws(Failure) -> T {
        let data: Data
        do { data = try JSONEncoder().encode(body) } catch { throw .api(APIError(0, "encoding the request: \(error)")) }
        return try call(method, path, body: data)
    }

    /// Percent-encodes one path segment (a VRF name, a prefix with its "/").
    public static func segment(_ s: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove("/")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }
}
