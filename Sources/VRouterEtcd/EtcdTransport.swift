// HTTP/1.1 to etcd members: connecting (TCP, then TLS when the endpoint is https), a small
// pool of kept-alive connections per endpoint for unary calls, and one call at a time on a
// connection with its deadline enforced on the connection's event loop. It reports each failure
// with whether the request can have reached etcd, which decides if the client may send it again
// elsewhere (EtcdClient does the failover).

import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

/// Why one attempt on one endpoint failed.
enum AttemptFailure: Error {
    /// Nothing reached etcd (connect refused or timed out, TLS refused, a dead pooled connection).
    case notSent(String)
    /// TLS handshake or session failed; nothing was processed.
    case tls(String)
    /// The request was sent and the connection failed before a whole answer.
    case lost(String)
    /// The call's deadline passed (`sent`: after the request went out).
    case timedOut(sent: Bool)
    case tooLarge
    case cancelled
}

struct HTTPReply: Sendable {
    var status: HTTPResponseStatus
    var body: ByteBuffer
    var keepAlive: Bool
}

final class EtcdTransport: Sendable {
    let configuration: EtcdConfiguration
    let group: any EventLoopGroup
    private let sslContext: NIOSSLContext?
    private let idle = NIOLockedValueBox<[EtcdEndpoint: [Channel]]>([:])

    init(configuration: EtcdConfiguration, group: any EventLoopGroup) throws(EtcdError) {
        self.configuration = configuration
        self.group = group
        if configuration.endpoints.contains(where: \.tls) {
            sslContext = try Self.makeSSLContext(configuration.tls ?? EtcdTLS())
        } else {
            sslContext = nil
        }
    }

    private static func makeSSLContext(_ tls: EtcdTLS) throws(EtcdError) -> NIOSSLContext {
        var c = TLSConfiguration.makeClientConfiguration()
        c.minimumTLSVersion = .tlsv12
        // TLS 1.2 at most, on purpose: in 1.2 the server judges our client certificate inside
        // the handshake, so a refusal fails the connect, where nothing was sent. In 1.3 the
        // client's handshake ends before the server has read the certificate, and a refusal
        // arrives after our request went out: a racing close that makes a refused write look
        // indeterminate and a refused certificate look like a dead connection.
        c.maximumTLSVersion = .tlsv12
        if let ca = tls.caFile {
            do {
                c.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
            } catch {
                throw .invalidConfiguration("cannot read CA certificates from \(ca): \(error)")
            }
        }
        switch (tls.certFile, tls.keyFile) {
        case (nil, nil): break
        case (let cert?, let key?):
            do {
                c.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
            } catch {
                throw .invalidConfiguration("cannot read the client certificate \(cert): \(error)")
            }
            do {
                c.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            } catch {
                throw .invalidConfiguration("cannot read the client key \(key): \(error)")
            }
        default:
            throw .invalidConfiguration("a client certificate needs both certFile and keyFile")
        }
        do {
            return try NIOSSLContext(configuration: c)
        } catch {
            throw .invalidConfiguration("TLS setup: \(error)")
        }
    }

    /// Closes every idle connection; calls in flight finish on theirs.
    func closeIdle() {
        let all = idle.withLockedValue { pool in
            defer { pool.removeAll() }
            return pool.values.flatMap { $0 }
        }
        for c in all { c.close(promise: nil) }
    }

    // MARK: connecting

    /// Connects and, for https, completes the TLS handshake before returning, so a failure here
    /// means nothing was sent. `finish` adds the handlers that consume HTTP and returns what the
    /// caller needs from the channel.
    func connect<Output: Sendable>(
        _ endpoint: EtcdEndpoint,
        deadline: NIODeadline,
        keepAlive: Bool = false,
        finish: @escaping @Sendable (Channel) throws -> Output
    ) async throws(AttemptFailure) -> Output {
        let now = NIODeadline.now()
        guard deadline > now else { throw .timedOut(sent: false) }
        let dial = min(TimeAmount(configuration.dialTimeout), deadline - now)
        let ssl = endpoint.tls ? sslContext : nil
        // SNI and name checks take a host name; for an address literal NIOSSL checks the
        // certificate's IP SANs against the peer address instead.
        let serverName = endpoint.host.isIPAddress ? nil : endpoint.host
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(dial)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
        if keepAlive {
            let idleSeconds = Int(max(1, configuration.watchKeepAliveInterval.components.seconds))
            bootstrap =
                bootstrap
                .channelOption(.socketOption(.so_keepalive), value: 1)
                .channelOption(Self.tcpOption(TCP_KEEPIDLE), value: idleSeconds)
                .channelOption(Self.tcpOption(TCP_KEEPINTVL), value: idleSeconds)
                .channelOption(Self.tcpOption(TCP_KEEPCNT), value: 3)
        }
        let connected: (Channel, EventLoopFuture<Void>, Output)
        do {
            connected = try await bootstrap.connect(host: endpoint.host, port: endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    let ready = channel.eventLoop.makePromise(of: Void.self)
                    if let ssl {
                        try sync.addHandler(NIOSSLClientHandler(context: ssl, serverHostname: serverName))
                    }
                    try sync.addHandler(ReadyHandler(ready, tls: ssl != nil))
                    try sync.addHTTPClientHandlers()
                    let output = try finish(channel)
                    return (channel, ready.futureResult, output)
                }
            }
        } catch {
            throw .notSent(Self.describeConnectError(error, dial: dial))
        }
        let (channel, ready, output) = connected
        let timer = channel.eventLoop.scheduleTask(deadline: min(deadline, now + dial)) {
            channel.close(promise: nil)
        }
        // Cancelled on the event loop the moment the connection is ready: the task awaiting
        // `ready` may resume much later on a busy machine, and the timer must not close a
        // connection that was ready in time meanwhile.
        ready.whenComplete { _ in timer.cancel() }
        do {
            try await ready.get()
            timer.cancel()
            return output
        } catch {
            timer.cancel()
            channel.close(promise: nil)
            if NIODeadline.now() >= min(deadline, now + dial) { throw .notSent("no TLS handshake within \(dial)") }
            if ssl != nil { throw .tls(Self.describeTLSError(error)) }
            throw .notSent("\(error)")
        }
    }

    private static func tcpOption(_ name: CInt) -> ChannelOptions.Types.SocketOption {
        ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: name))
    }

    static func describeConnectError(_ error: any Error, dial: TimeAmount) -> String {
        if let e = error as? IOError { return e.description }
        if error is ChannelError, case .connectTimeout = error as! ChannelError {
            return "no connection within \(dial)"
        }
        if let e = error as? NIOConnectionError {
            let reasons = e.connectionErrors.map { "\($0.error)" }
            if let dns = e.dnsAError ?? e.dnsAAAAError, reasons.isEmpty { return "cannot resolve \(e.host): \(dns)" }
            return reasons.isEmpty ? "cannot connect to \(e.host):\(e.port)" : reasons.joined(separator: ", ")
        }
        return "\(error)"
    }

    /// BoringSSL's reason, with what it usually means here.
    static func describeTLSError(_ error: any Error) -> String {
        let text = "\(error)"
        let hints: [(String, String)] = [
            ("CERTIFICATE_VERIFY_FAILED", "the server's certificate is not signed by the configured CA"),
            ("failedToValidateHostname", "the server's certificate does not name this host or address"),
            ("CERTIFICATE_REQUIRED", "the server requires a client certificate"),
            ("ALERT_UNKNOWN_CA", "the server does not trust our client certificate"),
            ("ALERT_BAD_CERTIFICATE", "the server refused our client certificate"),
            ("ALERT_HANDSHAKE_FAILURE", "the server refused the handshake (client certificate?)"),
            ("WRONG_VERSION_NUMBER", "the endpoint does not speak TLS (plain http?)"),
            (
                "EOF during handshake",
                "the server closed the connection during the handshake (a plain http endpoint, or our client certificate refused?)"
            ),
        ]
        for (needle, hint) in hints where text.contains(needle) { return "\(hint) [\(text)]" }
        if error is ChannelError || error is IOError { return "connection closed during the handshake (\(text))" }
        return text
    }

    // MARK: unary calls

    /// POSTs `body` to `path` and returns the whole answer. Uses a pooled connection when one
    /// is open (a dead one is replaced once, since nothing was written to it).
    func post(
        _ endpoint: EtcdEndpoint,
        path: String,
        body: ByteBuffer,
        deadline: NIODeadline
    ) async throws(AttemptFailure) -> HTTPReply {
        if let channel = takeIdle(endpoint) {
            do {
                return try await post(on: channel, endpoint, path: path, body: body, deadline: deadline)
            } catch .notSent {
                // The pooled connection had died; fall through to a new one.
            }
        }
        let limit = configuration.maxResponseBytes
        let channel = try await connect(endpoint, deadline: deadline) { channel in
            try channel.pipeline.syncOperations.addHandler(HTTPCallHandler(limit: limit))
            return channel
        }
        return try await post(on: channel, endpoint, path: path, body: body, deadline: deadline)
    }

    private func post(
        on channel: Channel,
        _ endpoint: EtcdEndpoint,
        path: String,
        body: ByteBuffer,
        deadline: NIODeadline
    ) async throws(AttemptFailure) -> HTTPReply {
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        head.headers.add(name: "Host", value: endpoint.hostHeader)
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Content-Length", value: String(body.readableBytes))
        let promise = channel.eventLoop.makePromise(of: HTTPReply.self)
        let call = HTTPCall(head: head, body: body, deadline: deadline, promise: promise)
        let reply: HTTPReply
        do {
            reply = try await withTaskCancellationHandler {
                // A channel closed before the call reached the handler fails the write instead.
                channel.writeAndFlush(call).whenFailure { promise.fail(AttemptFailure.notSent("\($0)")) }
                return try await promise.futureResult.get()
            } onCancel: {
                channel.close(promise: nil)
            }
        } catch let f as AttemptFailure {
            channel.close(promise: nil)
            if Task.isCancelled { throw .cancelled }
            throw f
        } catch {
            channel.close(promise: nil)
            if Task.isCancelled { throw .cancelled }
            throw .lost("\(error)")
        }
        if reply.keepAlive, channel.isActive {
            putIdle(endpoint, channel)
        } else {
            channel.close(promise: nil)
        }
        return reply
    }

    private func takeIdle(_ endpoint: EtcdEndpoint) -> Channel? {
        idle.withLockedValue { pool in
            while let c = pool[endpoint]?.popLast() {
                if c.isActive { return c }
            }
            return nil
        }
    }

    private func putIdle(_ endpoint: EtcdEndpoint, _ channel: Channel) {
        let kept = idle.withLockedValue { pool in
            var list = pool[endpoint, default: []].filter(\.isActive)
            guard list.count < configuration.maxIdleConnectionsPerEndpoint else { return false }
            list.append(channel)
            pool[endpoint] = list
            return true
        }
        if !kept { channel.close(promise: nil) }
    }
}

/// One request on a pooled connection.
struct HTTPCall: Sendable {
    var head: HTTPRequestHead
    var body: ByteBuffer
    var deadline: NIODeadline
    var promise: EventLoopPromise<HTTPReply>
}

/// Completes `ready` when the connection can carry a request: at once for plain TCP, after the
/// handshake for TLS; fails it with the first error or an early close.
final class ReadyHandler: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    private var ready: EventLoopPromise<Void>?
    private let tls: Bool

    init(_ ready: EventLoopPromise<Void>, tls: Bool) {
        self.ready = ready
        self.tls = tls
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if !tls, context.channel.isActive { complete(.success(())) }
    }

    func channelActive(context: ChannelHandlerContext) {
        if !tls { complete(.success(())) }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { complete(.success(())) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        complete(.failure(error))
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        complete(.failure(ChannelError.eof))
        context.fireChannelInactive()
    }

    /// A channel that never connected is torn down without becoming inactive.
    func handlerRemoved(context: ChannelHandlerContext) {
        complete(.failure(ChannelError.ioOnClosedChannel))
    }

    private func complete(_ r: Result<Void, any Error>) {
        guard let p = ready else { return }
        ready = nil
        p.completeWith(r)
    }
}

/// Sends one HTTPCall at a time and gathers its answer (up to `limit` body bytes), failing the
/// call at its deadline. Failures are AttemptFailure, saying whether the request went out.
final class HTTPCallHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPCall
    typealias OutboundOut = HTTPClientRequestPart

    private let limit: Int
    private var promise: EventLoopPromise<HTTPReply>?
    private var timer: Scheduled<Void>?
    private var sent = false
    private var gotHead = false
    private var status: HTTPResponseStatus = .ok
    private var keepAlive = false
    private var body = ByteBuffer()

    init(limit: Int) { self.limit = limit }

    func write(context: ChannelHandlerContext, data: NIOAny, promise writePromise: EventLoopPromise<Void>?) {
        let call = unwrapOutboundIn(data)
        guard promise == nil else {
            call.promise.fail(AttemptFailure.notSent("connection busy"))
            return
        }
        promise = call.promise
        sent = false
        gotHead = false
        body.clear()
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: call.deadline) {
            let (handler, context) = bound.value
            handler.fail(AttemptFailure.timedOut(sent: handler.sent))
            context.close(promise: nil)
        }
        context.write(wrapOutboundOut(.head(call.head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(call.body))), promise: nil)
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenComplete { result in
            switch result {
            case .success: self.sent = true
            case .failure(let e): self.fail(AttemptFailure.notSent("\(e)"))
            }
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        writePromise?.succeed(())
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard promise != nil else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            sent = true
            gotHead = true
            status = h.status
            keepAlive = h.isKeepAlive
        case .body(var part):
            guard body.readableBytes + part.readableBytes <= limit else {
                fail(AttemptFailure.tooLarge)
                context.close(promise: nil)
                return
            }
            body.writeBuffer(&part)
        case .end:
            timer?.cancel()
            timer = nil
            let p = promise
            promise = nil
            p?.succeed(HTTPReply(status: status, body: body, keepAlive: keepAlive))
            body = ByteBuffer()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError {
            fail(AttemptFailure.tls(EtcdTransport.describeTLSError(error)))
        } else if error is HTTPParserError {
            fail(AttemptFailure.lost("not an HTTP answer (\(error))"))
        } else {
            fail(sent ? AttemptFailure.lost("\(error)") : AttemptFailure.notSent("\(error)"))
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(sent ? AttemptFailure.lost(closedReason) : AttemptFailure.notSent("connection closed"))
        context.fireChannelInactive()
    }

    /// A member closing without a byte of answer is often a TLS listener reached over http.
    private var closedReason: String {
        gotHead
            ? "connection closed in the middle of the answer"
            : "connection closed without an answer (an https endpoint?)"
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        fail(sent ? AttemptFailure.lost(closedReason) : AttemptFailure.notSent("connection closed"))
    }

    private func fail(_ f: AttemptFailure) {
        timer?.cancel()
        timer = nil
        guard let p = promise else { return }
        promise = nil
        p.fail(f)
    }
}

extension EtcdEndpoint {
    var hostHeader: String { (host.contains(":") ? "[\(host)]" : host) + ":\(port)" }
}

extension String {
    /// An IPv4 or IPv6 literal (no name lookup).
    var isIPAddress: Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, self, &v4) == 1 || inet_pton(AF_INET6, self, &v6) == 1
    }
}

extension TimeAmount {
    init(_ d: Duration) {
        let (s, atto) = d.components
        self = .nanoseconds(s * 1_000_000_000 + atto / 1_000_000_000)
    }
}
