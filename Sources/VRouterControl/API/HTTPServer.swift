// A small HTTP/1.1 server on NIO for the control socket and the metrics endpoint. The
// event loop only parses and writes; each complete request is answered on a thread
// pool, because the node service blocks (a change waits for devices, the workers and the
// journal's fsync) and must never stall the loop. Reads and changes have pools of their
// own, so that a read never queues behind changes (a kubelet starting pods sends many CNI
// ADDs at once, each tens of milliseconds of device work). Bodies are collected up to a limit;
// a larger one is answered 413 at once (from Content-Length when given) and the rest of
// it is read and thrown away, so a client that writes everything before it reads still
// gets the answer.

import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import VRouterAPI

public final class HTTPServer: Sendable {
    public typealias Responder = @Sendable (APIRequest) -> APIResponse

    /// Where requests run: GET and HEAD on `reads`, everything else on `changes`.
    public struct Pools: Sendable {
        public let reads: NIOThreadPool
        public let changes: NIOThreadPool
        public init(reads: NIOThreadPool, changes: NIOThreadPool) {
            self.reads = reads
            self.changes = changes
        }
        func pool(for method: HTTPMethod) -> NIOThreadPool { method == .GET || method == .HEAD ? reads : changes }
    }

    public let channel: any Channel
    /// What the server listens on: a Unix socket path or "host:port".
    public let address: String

    init(channel: any Channel, address: String) {
        self.channel = channel
        self.address = address
    }

    static func bootstrap(
        group: any EventLoopGroup,
        pools: Pools,
        maxBody: Int,
        _ respond: @escaping Responder
    )
        -> ServerBootstrap
    {
        ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 128)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPRequestHandler(pools: pools, maxBody: maxBody, respond: respond)
                    )
                }
            }
    }

    /// Serves on a Unix socket at `path` (which the caller prepared, see ControlSocket).
    public static func serve(
        unixSocket path: String,
        group: any EventLoopGroup,
        pools: Pools,
        maxBody: Int,
        _ respond: @escaping Responder
    ) throws -> HTTPServer {
        let ch = try bootstrap(group: group, pools: pools, maxBody: maxBody, respond)
            .bind(unixDomainSocketPath: path).wait()
        return HTTPServer(channel: ch, address: path)
    }

    /// Serves on TCP `host:port` (port 0 picks a free one; `address` says which).
    public static func serve(
        host: String,
        port: Int,
        group: any EventLoopGroup,
        pools: Pools,
        maxBody: Int,
        _ respond: @escaping Responder
    ) throws -> HTTPServer {
        let ch = try bootstrap(group: group, pools: pools, maxBody: maxBody, respond).bind(host: host, port: port)
            .wait()
        let bound = ch.localAddress
        let h = bound?.ipAddress ?? host
        let text = h.contains(":") ? "[\(h)]:\(bound?.port ?? port)" : "\(h):\(bound?.port ?? port)"
        return HTTPServer(channel: ch, address: text)
    }

    public func close() {
        try? channel.close().wait()
    }
}

final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let pools: HTTPServer.Pools
    private let maxBody: Int
    private let respond: HTTPServer.Responder
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    /// Set once a request is known to be too large: its body is discarded.
    private var rejected = false
    private var discarded = 0
    /// A client sending more than this after a 413 is cut off.
    private static let discardLimit = 1 << 30

    init(pools: HTTPServer.Pools, maxBody: Int, respond: @escaping HTTPServer.Responder) {
        self.pools = pools
        self.maxBody = maxBody
        self.respond = respond
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = nil
            rejected = false
            discarded = 0
            if let cl = h.headers.first(name: "content-length").flatMap({ Int($0) }), cl > maxBody {
                reject(context, h)
            }
        case .body(var chunk):
            if rejected {
                discarded += chunk.readableBytes
                if discarded > Self.discardLimit { context.close(promise: nil) }
                return
            }
            if (body?.readableBytes ?? 0) + chunk.readableBytes > maxBody {
                body = nil
                if let h = head { reject(context, h) }
                return
            }
            if body == nil { body = chunk } else { body!.writeBuffer(&chunk) }
        case .end:
            guard let h = head else { return }
            head = nil
            if rejected {
                // Answered already; the connection goes (the client may not expect more).
                context.close(promise: nil)
                return
            }
            let data = body.map { Data($0.readableBytesView) } ?? Data()
            body = nil
            let request = APIRequest(method: h.method.rawValue, uri: h.uri, body: data)
            let keepAlive = h.isKeepAlive
            let version = h.version
            let respond = self.respond
            let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
            pools.pool(for: h.method).runIfActive(eventLoop: context.eventLoop) { respond(request) }.whenComplete {
                result in
                let response: APIResponse
                switch result {
                case .success(let r): response = r
                case .failure(let e): response = .error(APIError(503, "the server is stopping: \(e)"))
                }
                Self.write(ctx.value, response, version: version, keepAlive: keepAlive)
            }
        }
    }

    private func reject(_ context: ChannelHandlerContext, _ h: HTTPRequestHead) {
        rejected = true
        let r = APIResponse.error(APIError(413, "the request body is larger than \(maxBody) bytes"))
        Self.write(context, r, version: h.version, keepAlive: true)
    }

    static func write(_ context: ChannelHandlerContext, _ r: APIResponse, version: HTTPVersion, keepAlive: Bool) {
        var headers = HTTPHeaders()
        if !r.body.isEmpty || r.status != 204 { headers.add(name: "Content-Type", value: r.contentType) }
        headers.add(name: "Content-Length", value: "\(r.body.count)")
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        for (k, v) in r.headers { headers.add(name: k, value: v) }
        let head = HTTPResponseHead(
            version: version,
            status: HTTPResponseStatus(statusCode: r.status),
            headers: headers
        )
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        if !r.body.isEmpty {
            var buf = context.channel.allocator.buffer(capacity: r.body.count)
            buf.writeBytes(r.body)
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buf))), promise: nil)
        }
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: done)
        if !keepAlive {
            let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
            done.futureResult.whenComplete { _ in ctx.value.close(promise: nil) }
        }
    }
}
