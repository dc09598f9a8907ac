// What an etcd client needs to know: where the members are, how to talk to them (plain or TLS
// with a client certificate) and how long to wait. Parsed and checked once, when the client is
// made, so a bad endpoint or an unreadable certificate is reported before any request.

/// One etcd member's client URL.
public struct EtcdEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var tls: Bool

    public init(host: String, port: Int, tls: Bool) {
        self.host = host
        self.port = port
        self.tls = tls
    }

    /// Parses "http://host:port", "https://host:port", "host:port" (TLS when `defaultTLS`) and
    /// "[v6]:port"; a trailing "/" is accepted.
    public init(parsing text: String, defaultTLS: Bool) throws(EtcdError) {
        var rest = Substring(text)
        var tls = defaultTLS
        if rest.hasPrefix("http://") {
            tls = false
            rest = rest.dropFirst(7)
        } else if rest.hasPrefix("https://") {
            tls = true
            rest = rest.dropFirst(8)
        } else if rest.contains("://") {
            throw .invalidConfiguration("endpoint \(text): only http:// and https:// are supported")
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        let host: Substring
        let portText: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else {
                throw .invalidConfiguration("endpoint \(text): expected [address]:port")
            }
            host = rest[rest.index(after: rest.startIndex)..<close]
            portText = rest[rest.index(close, offsetBy: 2)...]
        } else {
            guard let colon = rest.lastIndex(of: ":") else {
                throw .invalidConfiguration("endpoint \(text): no port (expected host:port)")
            }
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        }
        guard !host.isEmpty, !host.contains("/") else {
            throw .invalidConfiguration("endpoint \(text): no host")
        }
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw .invalidConfiguration("endpoint \(text): port \"\(portText)\" is not 1-65535")
        }
        self.init(host: String(host), port: port, tls: tls)
    }

    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(tls ? "https" : "http")://\(h):\(port)"
    }
}

/// Certificates for TLS to etcd. With `certFile` and `keyFile` the client presents a
/// certificate (etcd's --client-cert-auth); with `caFile` it trusts only that CA, otherwise the
/// system's roots.
public struct EtcdTLS: Hashable, Sendable {
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?

    public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
    }
}

public struct EtcdConfiguration: Sendable {
    /// Client URLs of the members, tried in order; the one that last answered is tried first.
    public var endpoints: [EtcdEndpoint]
    public var tls: EtcdTLS?
    /// Longest wait for one TCP connect and TLS handshake.
    public var dialTimeout: Duration = .seconds(2)
    /// Deadline of a call that names none, across every endpoint tried.
    public var requestTimeout: Duration = .seconds(5)
    /// Largest response body (and largest single watch message) accepted; a bigger one is an
    /// error, so a garbage or hostile answer cannot take the memory.
    public var maxResponseBytes: Int = 64 << 20
    /// Connections kept open per endpoint for reuse between calls.
    public var maxIdleConnectionsPerEndpoint: Int = 4
    /// Watch connections send TCP keepalives this often once idle, so a member that vanishes
    /// without closing (host down, partition) ends the watch in about three intervals.
    public var watchKeepAliveInterval: Duration = .seconds(5)

    /// `endpoints` as URLs or host:port (https when `tls` is given, else http).
    public init(endpoints: [String], tls: EtcdTLS? = nil) throws(EtcdError) {
        guard !endpoints.isEmpty else { throw .invalidConfiguration("no etcd endpoints given") }
        var parsed: [EtcdEndpoint] = []
        for e in endpoints { parsed.append(try EtcdEndpoint(parsing: e, defaultTLS: tls != nil)) }
        self.endpoints = parsed
        self.tls = tls
    }

    public init(members endpoints: [EtcdEndpoint], tls: EtcdTLS? = nil) {
        self.endpoints = endpoints
        self.tls = tls
    }
}
