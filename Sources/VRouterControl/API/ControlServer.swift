// What vrouterd runs beside the workers: the control API on its Unix socket and,
// when asked for, the Prometheus endpoint on TCP. One event-loop thread serves both
// (they only parse and write); pool threads run the service calls: two for reads, and
// enough for changes that a burst of CNI ADDs overlaps (their time is device work in the
// kernel and exec'd plugins, not this process's CPU).

import Foundation
import Metrics
import NIOCore
import NIOPosix

public final class ControlServer: @unchecked Sendable {  // Safe: set up in start, torn down once in stop.
    public static let maxBody = 16 << 20
    let group: MultiThreadedEventLoopGroup
    let pools: HTTPServer.Pools
    /// Changes served at once; more wait on the event loop's side.
    static let changeThreads = 16
    public private(set) var api: HTTPServer?
    public private(set) var metrics: HTTPServer?
    public let socketPath: String

    private init(socketPath: String) {
        self.socketPath = socketPath
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        pools = HTTPServer.Pools(
            reads: NIOThreadPool(numberOfThreads: 2),
            changes: NIOThreadPool(numberOfThreads: Self.changeThreads)
        )
        pools.reads.start()
        pools.changes.start()
    }

    /// Parses "HOST:PORT", "[V6]:PORT" or ":PORT" (all addresses).
    public static func parseAddress(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { host = "0.0.0.0" }
        return (host, port)
    }

    /// Serves the API on `socketPath` (prepared with ControlSocket.prepare) and metrics on
    /// `metricsAddress` when given. On failure nothing is left listening.
    public static func start(
        service: NodeService,
        socketPath: String,
        metricsAddress: String?
    ) throws(ServiceError)
        -> ControlServer
    {
        let s = ControlServer(socketPath: socketPath)
        do throws(ServiceError) {
            if let m = metricsAddress {
                guard let (host, port) = parseAddress(m) else {
                    throw ServiceError("--metrics '\(m)' is not HOST:PORT")
                }
                let nm = NodeMetrics(service: service)
                MetricsSystem.bootstrap(nm.factory)
                do {
                    s.metrics = try HTTPServer.serve(
                        host: host,
                        port: port,
                        group: s.group,
                        pools: s.pools,
                        maxBody: 1 << 16
                    ) {
                        nm.respond($0)
                    }
                } catch {
                    throw ServiceError("metrics endpoint \(m): \(error)")
                }
            }
            let api = ControlAPI(service: service, socketPath: socketPath, metricsAddress: s.metrics?.address)
            do {
                s.api = try ControlSocket.bindPrivate(socketPath) {
                    try HTTPServer.serve(unixSocket: socketPath, group: s.group, pools: s.pools, maxBody: maxBody) {
                        api.handle($0)
                    }
                }
            } catch {
                throw ServiceError("control socket \(socketPath): \(error)")
            }
        } catch {
            s.stop()
            throw error
        }
        return s
    }

    /// Stops listening, removes the socket file, and ends the threads.
    public func stop() {
        api?.close()
        if api != nil { ControlSocket.remove(socketPath) }
        api = nil
        metrics?.close()
        metrics = nil
        try? pools.reads.syncShutdownGracefully()
        try? pools.changes.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
    }
}
