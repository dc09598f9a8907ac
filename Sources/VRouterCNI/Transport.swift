// How the shim reaches vrouterd: the contract's one client (VRouterAPI's UnixHTTPClient,
// every step bounded by the config's timeout), behind a seam (`VRouterTransport`) so tests
// can answer in-process.

import VRouterAPI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public protocol VRouterTransport: Sendable {
    /// Sends one request; returns the status and body. Throws when vrouterd cannot be
    /// reached or does not answer in time (`notSent` says whether it may have acted).
    func request(_ method: String, _ path: String, body: Data?) throws(TransportError) -> (status: Int, body: Data)
}

public typealias TransportError = ClientError

/// vrouterd's socket through the one client.
public struct SocketTransport: VRouterTransport {
    public let client: UnixHTTPClient
    public init(socketPath: String, timeout: Double) {
        client = UnixHTTPClient(socketPath: socketPath, timeout: timeout)
    }

    public func request(
        _ method: String,
        _ path: String,
        body: Data?
    ) throws(TransportError) -> (status: Int, body: Data) {
        let r = try client.request(method, path, body: body)
        return (r.status, r.body)
    }
}
