// An etcd v3 client over the JSON gateway of etcd 3.4 (`POST /v3/...`). Every call has a
// deadline (the configuration's, or its own) that covers all the endpoints it tries. A call
// goes to the endpoint that answered last; when that one cannot be reached it moves on to the
// next, waiting a growing pause (50 ms up to 1 s) only after every endpoint has failed in a row,
// so a dead cluster costs a few connection attempts a second, never a spin.
//
// Reads are sent again elsewhere after any failure. A write is sent again only when it surely
// never reached etcd (no connection, TLS refused, a member without a leader refusing it);
// otherwise the caller gets `.indeterminate` and decides, because replaying a conditional write
// that did apply would report a lost race that was in fact won.

import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

public final class EtcdClient: Sendable {
    public let configuration: EtcdConfiguration
    let transport: EtcdTransport
    /// Index of the endpoint to try first (the last that answered).
    private let preferred = NIOLockedValueBox(0)

    public init(
        _ configuration: EtcdConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws(EtcdError) {
        guard !configuration.endpoints.isEmpty else { throw .invalidConfiguration("no etcd endpoints given") }
        self.configuration = configuration
        transport = try EtcdTransport(configuration: configuration, group: eventLoopGroup)
    }

    /// Closes the connections kept for reuse. Calls and watches in progress are not affected.
    public func close() { transport.closeIdle() }

    deinit { transport.closeIdle() }

    /// The endpoint that answered last (calls go there first).
    public var currentEndpoint: EtcdEndpoint {
        configuration.endpoints[preferred.withLockedValue { $0 }]
    }

    // MARK: KV

    /// Keys in `range`, at `revision` (0: the latest), at most `limit` (0: all).
    public func range(
        _ range: KeyRange,
        revision: Int64 = 0,
        limit: Int64 = 0,
        keysOnly: Bool = false,
        countOnly: Bool = false,
        timeout: Duration? = nil
    ) async throws(EtcdError) -> RangeResponse {
        let request = RangeRequestJSON(
            range,
            limit: limit,
            revision: revision,
            keysOnly: keysOnly,
            countOnly: countOnly
        )
        return try await call("kv/range", request, write: false, revision: revision, timeout: timeout)
    }

    /// The value of one key, nil when absent.
    public func get(_ key: String, timeout: Duration? = nil) async throws(EtcdError) -> KeyValue? {
        try await range(.key(key), timeout: timeout).kvs.first
    }

    @discardableResult
    public func put(
        _ key: [UInt8],
        _ value: [UInt8],
        lease: Int64 = 0,
        prevKV: Bool = false,
        timeout: Duration? = nil
    ) async throws(EtcdError) -> PutResponse {
        let request = PutRequestJSON(key: key, value: value, lease: lease, prevKV: prevKV)
        return try await call("kv/put", request, write: true, lease: lease, timeout: timeout)
    }

    @discardableResult
    public func put(
        _ key: String,
        _ value: String,
        lease: Int64 = 0,
        prevKV: Bool = false,
        timeout: Duration? = nil
    ) async throws(EtcdError) -> PutResponse {
        try await put(Array(key.utf8), Array(value.utf8), lease: lease, prevKV: prevKV, timeout: timeout)
    }

    @discardableResult
    public func delete(
        _ range: KeyRange,
        prevKV: Bool = false,
        timeout: Duration? = nil
    ) async throws(EtcdError)
        -> DeleteResponse
    {
        try await call("kv/deleterange", DeleteRequestJSON(range: range, prevKV: prevKV), write: true, timeout: timeout)
    }

    /// Runs `success` when every comparison holds, else `failure`, atomically. This is how
    /// every write that can race is made (create-if-absent, compare-and-swap on modRevision,
    /// update only while the key is on our lease).
    public func txn(
        _ compare: [Compare],
        success: [TxnOp],
        failure: [TxnOp] = [],
        timeout: Duration? = nil
    ) async throws(EtcdError) -> TxnResponse {
        let request = TxnRequestJSON(
            compare: compare.map(CompareJSON.init),
            success: success.map(TxnOpJSON.init),
            failure: failure.map(TxnOpJSON.init)
        )
        let leases = (success + failure).compactMap { op -> Int64? in
            if case .put(_, _, let lease, _) = op, lease != 0 { return lease }
            return nil
        }
        let write = (success + failure).contains {
            if case .range = $0 { return false }
            return true
        }
        return try await call("kv/txn", request, write: write, lease: leases.first ?? 0, timeout: timeout)
    }

    /// Drops history before `revision`; watches and reads at older revisions then fail with
    /// `.compacted`.
    @discardableResult
    public func compact(
        _ revision: Int64,
        physical: Bool = false,
        timeout: Duration? = nil
    ) async throws(EtcdError)
        -> ResponseHeader
    {
        let r: EmptyResponseJSON = try await call(
            "kv/compaction",
            CompactionJSON(revision: revision, physical: physical),
            write: true,
            revision: revision,
            timeout: timeout
        )
        return r.header
    }

    // MARK: leases

    /// A new lease of `ttl` seconds (`id` 0: etcd picks one).
    public func grantLease(ttl: Int64, id: Int64 = 0, timeout: Duration? = nil) async throws(EtcdError) -> Lease {
        let r: LeaseGrantResponseJSON = try await call(
            "lease/grant",
            LeaseGrantJSON(ttl: ttl, id: id),
            write: true,
            timeout: timeout
        )
        guard r.error.isEmpty else {
            throw .server(endpoint: currentEndpoint, code: 0, message: r.error)
        }
        return Lease(id: r.id, ttl: r.ttl)
    }

    /// Renews the lease once; returns its TTL. `.leaseNotFound` when it has expired or was
    /// revoked (etcd answers with no TTL then).
    @discardableResult
    public func keepAliveOnce(_ id: Int64, timeout: Duration? = nil) async throws(EtcdError) -> Int64 {
        // A streaming call on the gateway: the answer is `{"result": …}`. Renewing twice is
        // harmless, so it is retried like a read.
        let r: LeaseTTLResponseJSON = try await call(
            "lease/keepalive",
            LeaseIDJSON(id: id),
            write: false,
            streamed: true,
            lease: id,
            timeout: timeout
        )
        guard r.ttl > 0 else { throw .leaseNotFound(id) }
        return r.ttl
    }

    /// Ends the lease now; its keys are deleted. Revoking a lease that is gone is not an error.
    public func revokeLease(_ id: Int64, timeout: Duration? = nil) async throws(EtcdError) {
        do {
            let _: EmptyResponseJSON = try await call(
                "lease/revoke",
                LeaseIDJSON(id: id),
                write: false,
                lease: id,
                timeout: timeout
            )
        } catch .leaseNotFound {
            return
        }
    }

    /// Time left on the lease, and its keys when `keys` is true. `.leaseNotFound` when gone.
    public func leaseTimeToLive(
        _ id: Int64,
        keys: Bool = false,
        timeout: Duration? = nil
    ) async throws(EtcdError)
        -> LeaseStatus
    {
        let r: LeaseTTLResponseJSON = try await call(
            "lease/timetolive",
            LeaseIDJSON(id: id, keys: keys),
            write: false,
            lease: id,
            timeout: timeout
        )
        guard r.ttl >= 0 else { throw .leaseNotFound(id) }
        return LeaseStatus(id: r.id, ttl: r.ttl, grantedTTL: r.grantedTTL, keys: r.keys)
    }

    // MARK: calling with failover

    /// The order to try endpoints in: the preferred one, then the rest in configured order.
    func endpointOrder() -> [Int] {
        let n = configuration.endpoints.count
        let first = preferred.withLockedValue { $0 }
        return (0..<n).map { (first + $0) % n }
    }

    func answered(_ index: Int) {
        preferred.withLockedValue { $0 = index }
    }

    func deadline(_ timeout: Duration?) -> NIODeadline {
        .now() + TimeAmount(timeout ?? configuration.requestTimeout)
    }

    /// Sends one request with failover and decodes the answer. `revision` and `lease` only
    /// serve to name what an error is about.
    func call<Request: Encodable, Response: Decodable>(
        _ path: String,
        _ request: Request,
        write: Bool,
        streamed: Bool = false,
        revision: Int64 = 0,
        lease: Int64 = 0,
        timeout: Duration?
    ) async throws(EtcdError) -> Response {
        let body: ByteBuffer
        do {
            body = ByteBuffer(bytes: try JSONEncoder().encode(request))
        } catch {
            throw .invalidConfiguration("cannot encode \(path): \(error)")
        }
        let limit = timeout ?? configuration.requestTimeout
        let deadline = deadline(timeout)
        var failures: [EtcdError.EndpointFailure] = []
        var pause = TimeAmount.milliseconds(50)
        while true {
            var tlsFailure: EtcdError?
            var allTLS = true
            for index in endpointOrder() {
                let endpoint = configuration.endpoints[index]
                let reply: HTTPReply
                do {
                    reply = try await transport.post(endpoint, path: "/v3/" + path, body: body, deadline: deadline)
                } catch {
                    switch error {
                    case .notSent(let reason):
                        // Nothing reached etcd: any call may go elsewhere.
                        allTLS = false
                        failures.record(endpoint, reason)
                    case .tls(let reason):
                        failures.record(endpoint, "TLS: " + reason)
                        tlsFailure = tlsFailure ?? .tls(endpoint: endpoint, reason: reason)
                    case .lost(let reason):
                        if write { throw .indeterminate(operation: path, endpoint: endpoint, reason: reason) }
                        allTLS = false
                        failures.record(endpoint, reason)
                    case .timedOut(let sent):
                        if sent || failures.isEmpty {
                            throw .deadlineExceeded(operation: path, timeout: limit, endpoint: endpoint)
                        }
                        failures.record(endpoint, "no answer before the deadline")
                        throw .unreachable(failures)
                    case .tooLarge:
                        throw .responseTooLarge(endpoint: endpoint, limit: configuration.maxResponseBytes)
                    case .cancelled:
                        throw .cancelled
                    }
                    continue
                }
                allTLS = false
                switch Self.decode(Response.self, reply, streamed: streamed, from: endpoint) {
                case .success(let r):
                    answered(index)
                    return r
                case .failure(let e):
                    let failure = Self.refine(e, revision: revision, lease: lease)
                    // A member that has no leader refuses before proposing: safe anywhere.
                    if case .server(_, 14, let message) = failure, !write || message.contains("no leader") {
                        failures.record(endpoint, message)
                        continue
                    }
                    if case .server(_, 14, let message) = failure, write {
                        throw .indeterminate(operation: path, endpoint: endpoint, reason: message)
                    }
                    throw failure
                }
            }
            // Certificates do not get better by waiting: every endpoint refusing TLS is final.
            if allTLS, let tlsFailure { throw tlsFailure }
            // Every endpoint failed in a row: pause, then go round again while time is left.
            let now = NIODeadline.now()
            guard now + pause < deadline else {
                throw failures.isEmpty
                    ? .deadlineExceeded(operation: path, timeout: limit, endpoint: nil) : .unreachable(failures)
            }
            do {
                try await Task.sleep(nanoseconds: UInt64(pause.nanoseconds))
            } catch {
                throw .cancelled
            }
            pause = min(pause * 2, .seconds(1))
        }
    }

    /// The answer's JSON as `T`, or the error etcd or the gateway stated.
    static func decode<T: Decodable>(
        _ type: T.Type,
        _ reply: HTTPReply,
        streamed: Bool,
        from endpoint: EtcdEndpoint
    ) -> Result<T, EtcdError> {
        let bytes = Data(reply.body.readableBytesView)
        let decoder = JSONDecoder()
        guard reply.status == .ok else {
            if let e = try? decoder.decode(GatewayErrorJSON.self, from: bytes) {
                return .failure(.server(endpoint: endpoint, code: e.code, message: e.message))
            }
            return .failure(
                .badResponse(endpoint: endpoint, reason: "HTTP \(reply.status.code): \(snippet(bytes))")
            )
        }
        do {
            if streamed {
                // One message of a stream, possibly followed by a newline.
                let first = bytes.prefix { $0 != UInt8(ascii: "\n") }
                let wrapped = try decoder.decode(StreamResultJSON<T>.self, from: first)
                if let e = wrapped.error {
                    return .failure(.server(endpoint: endpoint, code: e.code, message: e.message))
                }
                return .success(wrapped.result!)
            }
            return .success(try decoder.decode(T.self, from: bytes))
        } catch let e as DecodingError {
            return .failure(.badResponse(endpoint: endpoint, reason: "\(e.summary) in \(snippet(bytes))"))
        } catch {
            return .failure(.badResponse(endpoint: endpoint, reason: "\(error) in \(snippet(bytes))"))
        }
    }

    /// Turns etcd's messages for the cases callers act on into their own errors.
    static func refine(_ error: EtcdError, revision: Int64, lease: Int64) -> EtcdError {
        guard case .server(_, _, let message) = error else { return error }
        if message.contains("required revision has been compacted") {
            return .compacted(requested: revision, compactRevision: nil)
        }
        if message.contains("required revision is a future revision") { return .futureRevision(revision) }
        if message.contains("requested lease not found") { return .leaseNotFound(lease) }
        return error
    }

    /// The start of a body, printable, for error messages.
    static func snippet(_ bytes: Data) -> String {
        if bytes.isEmpty { return "empty body" }
        let text = String(decoding: bytes.prefix(160), as: UTF8.self)
            .map {
                $0.isASCII && ($0.isLetter || $0.isNumber || $0.isPunctuation || $0.isSymbol || $0 == " ") ? $0 : "?"
            }
        return "\"" + String(text) + (bytes.count > 160 ? "…" : "") + "\" (\(bytes.count) bytes)"
    }
}

extension [EtcdError.EndpointFailure] {
    /// Keeps the latest reason per endpoint, in the order first tried.
    mutating func record(_ endpoint: EtcdEndpoint, _ reason: String) {
        if let i = firstIndex(where: { $0.endpoint == endpoint }) {
            self[i].reason = reason
        } else {
            append(EtcdError.EndpointFailure(endpoint: endpoint, reason: reason))
        }
    }
}
