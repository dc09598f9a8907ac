// The etcd side of the test lab (VRouterTestSupport's EtcdLab): clients of a lab's members,
// and the deadline every live test runs under.

import Testing
import VRouterEtcd
import VRouterTestSupport

/// The suites that start etcd members, one test at a time (each holds a lab of its own, and
/// deadlines are checked against the clock), each test bounded: one that hangs fails with its
/// name instead of holding the run.
@Suite(.serialized, .deadline(.seconds(90))) enum LiveEtcd {}

extension EtcdLab {
    /// The client certificate etcd trusts (TLS labs).
    var tls: EtcdTLS? {
        certFile == nil ? nil : EtcdTLS(caFile: caFile, certFile: certFile, keyFile: keyFile)
    }

    /// A client of the whole cluster (or of the members named, 1-based).
    func client(
        members only: [Int]? = nil,
        timeout: Duration = .seconds(5),
        tls: EtcdTLS? = nil,
        configure: (inout EtcdConfiguration) -> Void = { _ in }
    ) throws -> EtcdClient {
        let urls = (only ?? Array(1...members)).map { endpoints[$0 - 1] }
        var c = try EtcdConfiguration(endpoints: urls, tls: tls ?? self.tls)
        c.requestTimeout = timeout
        configure(&c)
        return try EtcdClient(c)
    }
}
