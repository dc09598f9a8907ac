// Every way a call to etcd can fail, as one type whose description is a sentence an operator can
// act on (it names the endpoint, the deadline or the revision). Callers branch on the case: a
// compacted revision means re-list, a lost lease means grant again, an indeterminate write means
// read back before deciding.

public enum EtcdError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The configuration cannot work (bad endpoint, unreadable certificate).
    case invalidConfiguration(String)
    /// No endpoint could be reached; the last reason seen for each, in the order tried.
    case unreachable([EndpointFailure])
    /// The call's deadline passed while waiting for an answer.
    case deadlineExceeded(operation: String, timeout: Duration, endpoint: EtcdEndpoint?)
    /// A write was sent but the connection failed before the answer: it may or may not have
    /// been applied. Read the key back before retrying a conditional write.
    case indeterminate(operation: String, endpoint: EtcdEndpoint, reason: String)
    /// The TLS handshake failed (wrong CA, missing or refused client certificate, a plain
    /// endpoint behind an https URL).
    case tls(endpoint: EtcdEndpoint, reason: String)
    /// The revision asked for has been compacted away; `compactRevision` is the oldest one
    /// still kept when etcd says it (watches do, ranges do not).
    case compacted(requested: Int64, compactRevision: Int64?)
    /// The revision asked for is newer than the store's.
    case futureRevision(Int64)
    /// The lease does not exist (expired or revoked).
    case leaseNotFound(Int64)
    /// etcd refused the request: gRPC status code and etcd's message.
    case server(endpoint: EtcdEndpoint, code: Int, message: String)
    /// The answer is not what the gateway sends (not JSON, wrong shape, bad base64, unexpected
    /// HTTP status).
    case badResponse(endpoint: EtcdEndpoint, reason: String)
    /// The answer is larger than `maxResponseBytes`.
    case responseTooLarge(endpoint: EtcdEndpoint, limit: Int)
    /// etcd ended the watch without a compaction (for example the member lost its leader).
    case watchCanceled(endpoint: EtcdEndpoint, reason: String)
    /// The watch's stream ended or its connection broke.
    case watchClosed(endpoint: EtcdEndpoint, reason: String)
    /// The calling task was cancelled.
    case cancelled

    public struct EndpointFailure: Sendable, Equatable, CustomStringConvertible {
        public var endpoint: EtcdEndpoint
        public var reason: String
        public var description: String { "\(endpoint): \(reason)" }
    }

    public var description: String {
        switch self {
        case .invalidConfiguration(let s): return "etcd configuration: \(s)"
        case .unreachable(let failures):
            if failures.isEmpty { return "no etcd endpoint could be tried" }
            return "no etcd endpoint answered: " + failures.map(\.description).joined(separator: "; ")
        case .deadlineExceeded(let op, let t, let e):
            return "etcd \(op): no answer within \(t.seconds) s" + (e.map { " (last endpoint \($0))" } ?? "")
        case .indeterminate(let op, let e, let r):
            return "etcd \(op) at \(e): connection lost after the request was sent (\(r)); it may have been applied"
        case .tls(let e, let r): return "TLS with etcd at \(e) failed: \(r)"
        case .compacted(let req, let c):
            return "etcd revision \(req) has been compacted" + (c.map { " (oldest kept: \($0))" } ?? "")
        case .futureRevision(let r): return "etcd revision \(r) is in the future"
        case .leaseNotFound(let id): return "etcd lease \(id) not found (expired or revoked)"
        case .server(let e, let code, let m): return "etcd at \(e) refused the request: \(m) (gRPC code \(code))"
        case .badResponse(let e, let r): return "unexpected answer from etcd at \(e): \(r)"
        case .responseTooLarge(let e, let limit): return "answer from etcd at \(e) is larger than \(limit) bytes"
        case .watchCanceled(let e, let r): return "etcd at \(e) canceled the watch: \(r)"
        case .watchClosed(let e, let r): return "watch on etcd at \(e) ended: \(r)"
        case .cancelled: return "etcd call cancelled"
        }
    }
}

extension Duration {
    /// Seconds as a short decimal ("2", "0.25").
    var seconds: String {
        let (s, atto) = components
        if atto == 0 { return "\(s)" }
        let ms = Double(s) + Double(atto) / 1e18
        return String(ms.formatted3)
    }
}

extension Double {
    fileprivate var formatted3: String {
        var t = String(Int((self * 1000).rounded()))
        while t.count < 4 { t = "0" + t }
        var s = String(t.dropLast(3)) + "." + t.suffix(3)
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return s
    }
}
