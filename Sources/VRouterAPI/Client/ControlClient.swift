// The control API's typed calls over the one client: 2xx answers decode into the model's
// types, any other answer becomes the API's error (its status and message).

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public struct ControlClient: Sendable {
    public var http: UnixHTTPClient
    public init(socketPath: String, timeout: Double = 600) {
        http = UnixHTTPClient(socketPath: socketPath, timeout: timeout)
    }

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
    public func raw(
        _ method: String,
        _ path: String,
        body: Data? = nil,
        contentType: String = "application/json"
    ) throws(Failure) -> Data {
        let r: HTTPResult
        do { r = try http.request(method, path, body: body, contentType: contentType) } catch {
            throw .transport(error)
        }
        guard (200..<300).contains(r.status) else {
            let message =
                (try? JSONDecoder().decode(ErrorBody.self, from: r.body))?.error
                ?? "HTTP \(r.status): \(r.text.trimmingWhitespace())"
            throw .api(APIError(r.status, message))
        }
        return r.body
    }

    public func call<T: Decodable>(
        _ method: String,
        _ path: String,
        body: Data? = nil,
        contentType: String = "application/json",
        as: T.Type = T.self
    ) throws(Failure) -> T {
        let data = try raw(method, path, body: body, contentType: contentType)
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

    /// Percent-encodes one path segment (a VRF name, a prefix with its "/"): everything but
    /// RFC 3986's pchar characters, "/" included.
    public static func segment(_ s: String) -> String { percentEncoded(s, keeping: isPathChar) }

    /// Percent-encodes a query value: everything but RFC 3986's unreserved characters.
    public static func query(_ s: String) -> String { percentEncoded(s, keeping: isUnreserved) }

    static func percentEncoded(_ s: String, keeping keep: (UInt8) -> Bool) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out = ""
        for b in s.utf8 {
            if keep(b) {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b & 15)]))
            }
        }
        return out
    }

    /// ALPHA / DIGIT / "-" / "." / "_" / "~".
    static func isUnreserved(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "-._~".utf8.contains(b)
        }
    }

    /// unreserved / sub-delims / ":" / "@".
    static func isPathChar(_ b: UInt8) -> Bool { isUnreserved(b) || "!$&'()*+,;=:@".utf8.contains(b) }
}
