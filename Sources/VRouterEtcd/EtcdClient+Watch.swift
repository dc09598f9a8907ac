// Watches: one long-lived HTTP request per watch (`POST /v3/watch`, a chunked stream of
// `{"result": WatchResponse}` lines), on its own connection with TCP keepalives. The stream is
// read only as fast as the caller consumes it (NIO's back pressure: at most `highWatermark`
// body parts buffered, plus one unfinished message of at most `maxResponseBytes`), so a slow
// consumer costs bounded memory, not an unbounded queue.
//
// A watch never resumes by itself: when it ends (connection lost, member restarted, leader lost,
// compaction) the caller's loop sees the error and decides (re-list, re-watch from a revision).
// The request asks etcd to end the watch when its member loses the leader (the `hasleader`
// metadata that etcd's own client sends as WithRequireLeader), so a member cut off from the
// quorum does not leave a watch that is silently stale.

import Foundation
import NIOCore
import NIOHTTP1

extension EtcdClient {
    /// Opens a watch, waits for etcd to confirm it (within `timeout`, trying each endpoint), then
    /// runs `body` with the stream of its responses. The watch ends when `body` returns or
    /// throws. A start revision that is already compacted ends the stream at once with
    /// `.compacted` and etcd's oldest kept revision (etcd confirms the watch, then cancels it).
    public func watch<Result: Sendable>(
        _ request: WatchRequest,
        timeout: Duration? = nil,
        _ body: (WatchStream) async throws -> Result
    ) async throws -> Result {
        let requestBody: ByteBuffer
        do {
            requestBody = ByteBuffer(bytes: try JSONEncoder().encode(WatchCreateJSON(request: request)))
        } catch {
            throw EtcdError.invalidConfiguration("cannot encode the watch request: \(error)")
        }
        let deadline = deadline(timeout)
        let limit = timeout ?? configuration.requestTimeout
        var failures: [EtcdError.EndpointFailure] = []
        // Once `body` has run, an error is the caller's to handle: the watch is never started
        // again behind its back (it would deliver events twice).
        var bodyStarted = false
        for index in endpointOrder() {
            let endpoint = configuration.endpoints[index]
            let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
            do {
                channel = try await transport.connect(endpoint, deadline: deadline, keepAlive: true) { channel in
                    try NIOAsyncChannel(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8))
                    )
                }
            } catch {
                switch error {
                case .notSent(let r): failures.record(endpoint, r)
                case .tls(let r): failures.record(endpoint, "TLS: " + r)
                case .timedOut:
                    failures.record(endpoint, "no connection before the deadline")
                    throw EtcdError.unreachable(failures)
                case .cancelled: throw EtcdError.cancelled
                case .lost(let r): failures.record(endpoint, r)
                case .tooLarge: failures.record(endpoint, "answer too large")
                }
                continue
            }
            do {
                return try await channel.executeThenClose { inbound, outbound in
                    var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/v3/watch")
                    head.headers.add(name: "Host", value: endpoint.hostHeader)
                    head.headers.add(name: "Content-Type", value: "application/json")
                    head.headers.add(name: "Content-Length", value: String(requestBody.readableBytes))
                    head.headers.add(name: "Grpc-Metadata-hasleader", value: "true")
                    do {
                        try await outbound.write(contentsOf: [.head(head), .body(.byteBuffer(requestBody)), .end(nil)])
                    } catch {
                        throw EtcdError.watchClosed(endpoint: endpoint, reason: "sending the request: \(error)")
                    }
                    var reader = WatchStream.Iterator(
                        parts: inbound.makeAsyncIterator(),
                        endpoint: endpoint,
                        limit: configuration.maxResponseBytes,
                        startRevision: request.startRevision
                    )
                    // Until etcd confirms the watch, the call's deadline applies.
                    let timer = channel.channel.eventLoop.scheduleTask(deadline: deadline) {
                        channel.channel.close(promise: nil)
                    }
                    let created: WatchResponse
                    do throws(EtcdError) {
                        guard let first = try await reader.next() else { throw EtcdError.cancelled }
                        timer.cancel()
                        created = first
                    } catch {
                        timer.cancel()
                        if NIODeadline.now() >= deadline, case .watchClosed = error {
                            throw EtcdError.deadlineExceeded(operation: "watch", timeout: limit, endpoint: endpoint)
                        }
                        throw error
                    }
                    answered(index)
                    bodyStarted = true
                    return try await body(WatchStream(iterator: reader, created: created))
                }
            } catch let e as EtcdError where !bodyStarted {
                // A member without a leader refuses the watch; another may have one.
                if case .watchCanceled(_, let reason) = e, reason.contains("no leader") {
                    failures.record(endpoint, reason)
                    continue
                }
                if case .watchClosed(_, let reason) = e, failures.count + 1 < configuration.endpoints.count,
                    NIODeadline.now() < deadline, !Task.isCancelled
                {
                    failures.record(endpoint, reason)
                    continue
                }
                throw e
            }
        }
        throw EtcdError.unreachable(failures)
    }
}

/// The responses of one watch, in revision order, after the confirmation. Iterating throws
/// `.compacted` when etcd cancels the watch for compaction, `.watchCanceled` for another
/// cancellation, and `.watchClosed` when the stream or its connection ends.
public struct WatchStream: AsyncSequence, @unchecked Sendable {  // Safe: used in the body it is given to.
    public typealias Element = WatchResponse

    /// etcd's confirmation; its header revision is the store's revision when the watch began.
    public let created: WatchResponse
    private let iterator: Iterator

    init(iterator: Iterator, created: WatchResponse) {
        self.iterator = iterator
        self.created = created
    }

    public var endpoint: EtcdEndpoint { iterator.endpoint }

    /// The stream can be iterated once.
    public func makeAsyncIterator() -> Iterator { iterator }

    public struct Iterator: AsyncIteratorProtocol {
        var parts: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
        let endpoint: EtcdEndpoint
        let startRevision: Int64
        private var splitter: JSONObjectSplitter
        private var ready: [[UInt8]] = []
        private var status: HTTPResponseStatus = .ok
        private var errorBody: [UInt8] = []
        private let decoder = JSONDecoder()

        init(
            parts: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator,
            endpoint: EtcdEndpoint,
            limit: Int,
            startRevision: Int64
        ) {
            self.parts = parts
            self.endpoint = endpoint
            self.startRevision = startRevision
            splitter = JSONObjectSplitter(limit: limit)
        }

        public mutating func next() async throws(EtcdError) -> WatchResponse? {
            while true {
                if !ready.isEmpty { return try decode(ready.removeFirst()) }
                let part: HTTPClientResponsePart?
                do {
                    part = try await parts.next()
                } catch {
                    if Task.isCancelled { throw .cancelled }
                    throw .watchClosed(endpoint: endpoint, reason: "\(error)")
                }
                guard let part else {
                    if Task.isCancelled { throw .cancelled }
                    throw .watchClosed(endpoint: endpoint, reason: "connection closed")
                }
                switch part {
                case .head(let h):
                    status = h.status
                case .body(let buffer):
                    if status != .ok {
                        if errorBody.count < 4096 { errorBody += buffer.readableBytesView.prefix(4096) }
                        continue
                    }
                    do {
                        try splitter.feed(buffer) { ready.append($0) }
                    } catch {
                        switch error {
                        case .tooLarge: throw .responseTooLarge(endpoint: endpoint, limit: splitter.limit)
                        case .garbage(let b):
                            throw .badResponse(
                                endpoint: endpoint,
                                reason: "byte 0x\(String(b, radix: 16)) between messages"
                            )
                        }
                    }
                case .end:
                    if status != .ok {
                        let data = Data(errorBody)
                        if let e = try? decoder.decode(GatewayErrorJSON.self, from: data) {
                            throw .server(endpoint: endpoint, code: e.code, message: e.message)
                        }
                        throw .badResponse(
                            endpoint: endpoint,
                            reason: "HTTP \(status.code): \(EtcdClient.snippet(data))"
                        )
                    }
                    throw .watchClosed(endpoint: endpoint, reason: "etcd ended the stream")
                }
            }
        }

        private func decode(_ object: [UInt8]) throws(EtcdError) -> WatchResponse {
            let message: StreamResultJSON<WatchResponse>
            do {
                message = try decoder.decode(StreamResultJSON<WatchResponse>.self, from: Data(object))
            } catch let e as DecodingError {
                throw .badResponse(endpoint: endpoint, reason: "\(e.summary) in \(EtcdClient.snippet(Data(object)))")
            } catch {
                throw .badResponse(endpoint: endpoint, reason: "\(error)")
            }
            if let e = message.error {
                if e.code == 14 || e.message.contains("no leader") {
                    throw .watchCanceled(endpoint: endpoint, reason: e.message)
                }
                throw .server(endpoint: endpoint, code: e.code, message: e.message)
            }
            let r = message.result!
            if r.canceled {
                if r.compactRevision != 0 {
                    throw .compacted(requested: startRevision, compactRevision: r.compactRevision)
                }
                throw .watchCanceled(
                    endpoint: endpoint,
                    reason: r.cancelReason.isEmpty ? "no reason given" : r.cancelReason
                )
            }
            return r
        }
    }
}
