// The client when things go wrong: members stopped, the leader killed, the whole cluster down
// and back, endpoints where nothing listens or something answers nonsense, TLS with the right
// and the wrong certificates. Each failure must be a clear EtcdError within the deadline.

import Foundation
import Glibc
import Testing
import VRouterTestSupport

@testable import VRouterEtcd

extension LiveEtcd {
    @Suite struct FaultTests {
        @Test func callsFailOverWhenMembersStopAndReconnectWhenTheClusterReturns() async throws {
            let lab = try EtcdLab(members: 3)
            defer { lab.cleanup() }
            let etcd = try lab.client(timeout: .seconds(10))
            defer { etcd.close() }
            try await etcd.put("/f/x", "0")
            #expect(etcd.currentEndpoint.description == lab.endpoints[0])

            // The member in use stops: the next call goes to another, and sticks there.
            try lab.stop(1)
            try await etcd.put("/f/x", "1")
            #expect(etcd.currentEndpoint.description != lab.endpoints[0])
            try lab.start(1)

            // The leader is killed: writes succeed once the others elect a new one.
            let leader = try lab.leader()
            try lab.kill(leader)
            // A write caught in the election may come back indeterminate ("request timed out"):
            // the caller decides; a plain put is simply sent again.
            for i in 0..<5 {
                while true {
                    do {
                        try await etcd.put("/f/x", "after-leader-\(i)")
                        break
                    } catch {
                        guard case .indeterminate = error else { throw error }
                    }
                }
            }
            #expect(try await etcd.get("/f/x")?.valueString == "after-leader-4")
            try lab.start(leader)

            // Everything down: a clear error, naming every endpoint, before the deadline.
            try lab.stopAll()
            let clock = ContinuousClock()
            let t0 = clock.now
            do {
                _ = try await etcd.range(.prefix("/f/"), timeout: .seconds(2))
                Issue.record("a read succeeded with every member stopped")
            } catch {
                guard case .unreachable(let failures) = error else { throw error }
                #expect(Set(failures.map(\.endpoint.description)) == Set(lab.endpoints))
                #expect(failures.allSatisfy { $0.reason.contains("refused") }, "\(failures)")
            }
            #expect(clock.now - t0 < .seconds(3))

            // Back: the same client carries on; nothing was lost.
            try lab.startAll()
            #expect(try await etcd.get("/f/x")?.valueString == "after-leader-4")
        }

        @Test func unreachableAndSilentEndpointsFailClearlyWithinTheDeadline() async throws {
            // Nothing listens: refused at once on every endpoint, retried with pauses until the deadline.
            let closed = try (0..<2).map { _ in try freePort() }
            let none = try EtcdClient(
                EtcdConfiguration(endpoints: closed.map { "127.0.0.1:\($0)" })
            )
            let clock = ContinuousClock()
            var t0 = clock.now
            await #expect {
                try await none.put("/k", "v", timeout: .milliseconds(800))
            } throws: { e in
                guard case .unreachable(let f) = e as? EtcdError else { return false }
                return f.count == 2 && "\(e)".contains("127.0.0.1:\(closed[0])") && "\(e)".contains("refused")
            }
            #expect(clock.now - t0 < .milliseconds(1800))

            // Something accepts and never answers: the deadline ends the call, naming it.
            let silent = try RawServer { _ in nil }
            defer { silent.stop() }
            let hang = try EtcdClient(EtcdConfiguration(endpoints: ["127.0.0.1:\(silent.port)"]))
            t0 = clock.now
            await #expect(
                throws: EtcdError.deadlineExceeded(
                    operation: "kv/range",
                    timeout: .milliseconds(500),
                    endpoint: hang.currentEndpoint
                )
            ) {
                try await hang.range(.prefix("/"), timeout: .milliseconds(500))
            }
            #expect(clock.now - t0 < .milliseconds(1500))

            // Bad configuration is refused when the client is made.
            #expect(throws: EtcdError.self) { try EtcdConfiguration(endpoints: ["127.0.0.1"]) }
            #expect(throws: EtcdError.self) { try EtcdConfiguration(endpoints: ["ftp://127.0.0.1:1"]) }
            #expect(throws: EtcdError.self) { try EtcdConfiguration(endpoints: []) }
            #expect(throws: EtcdError.self) {
                try EtcdClient(
                    EtcdConfiguration(endpoints: ["https://127.0.0.1:1"], tls: EtcdTLS(caFile: "/nonexistent/ca.pem"))
                )
            }
        }

        @Test func garbageAndOversizedAnswersAreErrorsNotCrashes() async throws {
            let answers: [(String, (EtcdError) -> Bool)] = [
                // Not JSON.
                (
                    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                    { if case .badResponse = $0 { true } else { false } }
                ),
                // JSON of the wrong shape (an int64 that is not one).
                (
                    "HTTP/1.1 200 OK\r\nContent-Length: 38\r\n\r\n{\"header\":{\"revision\":\"not-a-number\"}}",
                    { if case .badResponse(_, let r) = $0 { r.contains("revision") } else { false } }
                ),
                // Base64 that is not.
                (
                    "HTTP/1.1 200 OK\r\nContent-Length: 28\r\n\r\n{\"kvs\":[{\"key\":\"***!!!\"}]}  ",
                    { if case .badResponse(_, let r) = $0 { r.contains("key") } else { false } }
                ),
                // An error status with a body that is not the gateway's.
                (
                    "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad",
                    { if case .badResponse(_, let r) = $0 { r.contains("502") } else { false } }
                ),
                // Not HTTP at all.
                (
                    "SSH-2.0-OpenSSH_9.2\r\n",
                    { if case .unreachable = $0 { true } else if case .badResponse = $0 { true } else { false } }
                ),
                // A body larger than the limit (4 KiB here).
                (
                    "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + String(repeating: "x", count: 100_000),
                    { if case .responseTooLarge(_, 4096) = $0 { true } else { false } }
                ),
            ]
            for (answer, expected) in answers {
                let server = try RawServer { _ in Array(answer.utf8) }
                defer { server.stop() }
                var c = try EtcdConfiguration(endpoints: ["127.0.0.1:\(server.port)"])
                c.maxResponseBytes = 4096
                let etcd = try EtcdClient(c)
                do {
                    _ = try await etcd.range(.prefix("/"), timeout: .seconds(2))
                    Issue.record("garbage accepted: \(answer.prefix(40))")
                } catch {
                    #expect(expected(error), "\(answer.prefix(40)): \(error)")
                }
            }

            // The same limit against real etcd: a range larger than it fails, smaller ones work.
            let lab = try EtcdLab(members: 1)
            defer { lab.cleanup() }
            let etcd = try lab.client { $0.maxResponseBytes = 64 << 10 }
            defer { etcd.close() }
            try await etcd.put("/big/small", "x")
            #expect(try await etcd.get("/big/small")?.valueString == "x")
            try await etcd.put(Array("/big/value".utf8), [UInt8](repeating: 0x41, count: 100_000))
            await #expect(throws: EtcdError.responseTooLarge(endpoint: etcd.currentEndpoint, limit: 64 << 10)) {
                try await etcd.range(.prefix("/big/"))
            }
            // A watch message over the limit ends the watch with the same error.
            await #expect(throws: EtcdError.responseTooLarge(endpoint: etcd.currentEndpoint, limit: 64 << 10)) {
                try await etcd.watch(WatchRequest(.prefix("/big/"), startRevision: 1)) { stream in
                    for try await _ in stream {}
                }
            }
        }

        @Test func tlsWithTheRightCertificateWorksAndWrongOnesAreRefusedClearly() async throws {
            let lab = try EtcdLab(members: 1, tls: true)
            defer { lab.cleanup() }
            let good = try #require(lab.tls)

            let etcd = try lab.client()
            defer { etcd.close() }
            try await etcd.put("/tls/k", "v")
            #expect(try await etcd.get("/tls/k")?.valueString == "v")
            let lease = try await etcd.grantLease(ttl: 5)
            let watched = try await etcd.watch(WatchRequest(.key("/tls/k"), startRevision: 1)) { stream in
                for try await r in stream { return r.events.first?.kv.valueString }
                return nil
            }
            #expect(watched == "v")
            try await etcd.revokeLease(lease.id)

            func refused(_ tls: EtcdTLS, _ hint: String) async throws {
                let c = try lab.client(timeout: .seconds(3), tls: tls)
                defer { c.close() }
                do {
                    _ = try await c.get("/tls/k")
                    Issue.record("TLS with \(tls) was accepted")
                } catch {
                    guard case .tls(_, let reason) = error else {
                        Issue.record("expected a TLS error, got \(error)")
                        return
                    }
                    #expect(reason.contains(hint), "\(reason)")
                }
            }
            // A client certificate from a CA etcd does not trust.
            try await refused(
                EtcdTLS(caFile: good.caFile, certFile: lab.rogueCert, keyFile: lab.rogueKey),
                "client certificate"
            )
            // No client certificate while etcd requires one.
            try await refused(EtcdTLS(caFile: good.caFile), "client certificate")
            // A server certificate we do not trust.
            try await refused(
                EtcdTLS(caFile: lab.rogueCA, certFile: good.certFile, keyFile: good.keyFile),
                "not signed by the configured CA"
            )

            // TLS to a plain endpoint, and plain HTTP to the TLS one.
            let plain = try EtcdLab(members: 1)
            defer { plain.cleanup() }
            let port = try #require(plain.endpoints.first?.split(separator: ":").last)
            let mismatched = try EtcdClient(EtcdConfiguration(endpoints: ["https://127.0.0.1:\(port)"], tls: good))
            await #expect {
                try await mismatched.get("/x", timeout: .seconds(2))
            } throws: { e in
                // etcd's plain listener answers a ClientHello with an HTTP error or by closing.
                if case .tls(_, let r) = e as? EtcdError {
                    return r.contains("does not speak TLS") || r.contains("a plain http endpoint")
                }
                return false
            }
            let tlsPort = try #require(lab.endpoints.first?.split(separator: ":").last)
            let downgraded = try EtcdClient(EtcdConfiguration(endpoints: ["http://127.0.0.1:\(tlsPort)"]))
            await #expect {
                try await downgraded.get("/x", timeout: .seconds(2))
            } throws: { e in
                if case .badResponse(_, let r) = e as? EtcdError { return r.contains("HTTP 400") }
                if case .unreachable(let f) = e as? EtcdError {
                    return f.first?.reason.contains("https endpoint?") == true
                }
                return false
            }
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    try withUnsafeMutablePointer(to: &addr) { p in
        try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            guard bind(fd, sa, len) == 0, getsockname(fd, sa, &len) == 0 else {
                throw Failure("bind: \(String(cString: strerror(errno)))")
            }
        }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// A TCP server on 127.0.0.1 that reads a request and answers with whatever `answer` returns
/// (nil: never answers, holding the connection), then closes. It stands for a broken or hostile
/// endpoint, which a real etcd cannot be made into.
final class RawServer: @unchecked Sendable {  // Safe: the fd and flag are set before the thread starts.
    let port: Int
    private let fd: Int32
    private let thread: Thread
    private let stopped = ManagedFlag()

    init(answer: @escaping @Sendable ([UInt8]) -> [UInt8]?) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = fd
        try withUnsafeMutablePointer(to: &addr) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                guard bind(fd, sa, len) == 0, listen(fd, 16) == 0, getsockname(fd, sa, &len) == 0 else {
                    throw Failure("listen: \(String(cString: strerror(errno)))")
                }
            }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        let stopped = stopped
        thread = Thread {
            var held: [Int32] = []
            while !stopped.isSet {
                let c = accept(fd, nil, nil)
                if c < 0 { break }
                var buf = [UInt8](repeating: 0, count: 65536)
                let n = recv(c, &buf, buf.count, 0)
                guard n > 0, let reply = answer(Array(buf[0..<n])) else {
                    held.append(c)
                    continue
                }
                _ = reply.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(c)
            }
            for c in held { close(c) }
        }
        thread.start()
    }

    func stop() {
        stopped.set()
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}

final class ManagedFlag: @unchecked Sendable {  // Safe: guarded by the lock.
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
