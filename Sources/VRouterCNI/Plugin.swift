// The shim's commands. One ADD attaches the whole pod: vrouterd makes eth0 (the default
// network) and every vRouter network of the annotation in one request; delegated networks
// then run through their plugins here; any failure undoes everything (vRouter attachments
// through vrouterd, delegated ones through their plugin's DEL). DEL works from vrouterd's
// record (plus the shim's own note of delegated attachments when vrouterd is down) and
// succeeds when there is nothing left to release.

import Glibc
import VRouterAPI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public struct CNIPlugin: Sendable {
    public typealias TransportFactory = @Sendable (PluginConfig) -> any VRouterTransport
    let transportFor: TransportFactory
    let executor: any PluginExecutor

    public init(
        transport: @escaping TransportFactory = { SocketTransport(socketPath: $0.socket, timeout: $0.timeout) },
        executor: any PluginExecutor = ProcessPluginExecutor()
    ) {
        transportFor = transport
        self.executor = executor
    }

    /// Runs one invocation: the exit code and what goes to stdout.
    public func main(environment: [String: String], stdin: Data) -> (Int32, Data) {
        var version = CNIVersion.latest
        do {
            let env = try CNIEnvironment.read(environment)
            if env.command == .version, stdin.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) {
                // As the reference plugins (skel) do: VERSION needs no config, e.g. `CNI_COMMAND=VERSION plugin </dev/null`.
                return (0, Self.versionAnswer(CNIVersion.latest))
            }
            let config = try PluginConfig.parse(stdin, command: env.command)
            version = config.cniVersion
            let out = try run(env, config, processEnv: environment)
            return (0, out)
        } catch {
            var e = error
            e.cniVersion = version
            return (1, e.json())
        }
    }

    static func versionAnswer(_ version: String) -> Data {
        let v = JSONValue.object(
            JSONObject([
                ("cniVersion", .string(version)),
                ("supportedVersions", .array(CNIVersion.supported.map { .string($0) })),
            ])
        )
        return v.encoded() + Data("\n".utf8)
    }

    func run(_ env: CNIEnvironment, _ config: PluginConfig, processEnv: [String: String]) throws(CNIError) -> Data {
        let session = Session(
            env: env,
            config: config,
            transport: transportFor(config),
            delegation: Delegation(executor: executor, env: env, processEnv: processEnv)
        )
        switch env.command {
        case .version:
            return Self.versionAnswer(config.cniVersion)
        case .add: return try session.add().json(version: config.cniVersion).encoded() + Data("\n".utf8)
        case .del:
            try session.del()
            return Data()
        case .check:
            guard CNIVersion.atLeast(config.cniVersion, "0.4.0") else {
                throw CNIError(.incompatibleVersion, "CHECK needs cniVersion 0.4.0 or later")
            }
            try session.check()
            return Data()
        case .status:
            try session.status()
            return Data()
        case .gc:
            try session.gc()
            return Data()
        }
    }
}

struct Session {
    let env: CNIEnvironment
    let config: PluginConfig
    let transport: any VRouterTransport
    let delegation: Delegation

    var pod: CNIPod { CNIPod(namespace: env.podNamespace, name: env.podName, uid: env.podUID) }

    // MARK: ADD

    func add() throws(CNIError) -> CNIResult {
        var selections: [NetworkSelection] = []
        if let text = config.podAnnotations?[NetworkAnnotation.networksKey] {
            guard let s = text.string else {
                throw CNIError(.invalidNetworkConfig, "annotation \(NetworkAnnotation.networksKey) is not a string")
            }
            selections = try NetworkAnnotation.parse(s, podNamespace: env.podNamespace ?? "default")
        }
        // The chain's result so far is read before anything is made: a prevResult that does
        // not parse fails the ADD with nothing to undo.
        let base = try baseResult()
        let request = CNIAddRequest(
            containerID: env.containerID,
            netns: env.netns,
            ifname: env.ifname,
            pod: pod,
            networks: selections
        )
        let response: CNIAddResponse
        do {
            response = try call("POST", "/v1/cni/add", request, CNIAddResponse.self)
        } catch {
            // An answer that timed out may still have been acted on: undo, then ask for a retry.
            if error.code == CNIError.Code.tryAgainLater.rawValue && !error.msg.contains("not reachable") {
                rollback([])
            }
            throw error
        }
        var attachments = response.attachments
        let delegated = attachments.indices.filter { attachments[$0].delegate != nil }
        if !delegated.isEmpty {
            let note = DelegateNote(stateDir: config.stateDir, containerID: env.containerID)
            note.save(DelegateNote.Content(netns: env.netns, attachments: delegated.map { attachments[$0] }))
            var done: [CNIAttachment] = []
            for i in delegated {
                do {
                    done.append(attachments[i])
                    attachments[i].delegate!.result = try delegation.add(attachments[i], netns: env.netns)
                } catch {
                    rollback(done)
                    throw error
                }
            }
            let results = delegated.map {
                CNIDelegateResult(ifname: attachments[$0].ifname, result: attachments[$0].delegate!.result!)
            }
            do {
                _ = try call(
                    "POST",
                    "/v1/cni/commit",
                    CNICommitRequest(containerID: env.containerID, results: results),
                    Empty.self
                )
            } catch {
                rollback(delegated.map { attachments[$0] })
                throw error
            }
            note.save(DelegateNote.Content(netns: env.netns, attachments: delegated.map { attachments[$0] }))
        }
        do {
            return try result(attachments, base: base)
        } catch {
            // A delegate's result that does not read as a CNI result: the ADD fails whole.
            rollback(delegated.map { attachments[$0] })
            throw error
        }
    }

    /// Undoes a failed ADD: the delegates tried so far through their plugins (reverse
    /// order), then everything vrouterd made. Errors here are logged, not returned: the
    /// ADD's own error is the one the runtime must see.
    func rollback(_ delegates: [CNIAttachment]) {
        for a in delegates.reversed() {
            do { try delegation.del(a, netns: env.netns) } catch { log("rollback: \(error)") }
        }
        let req = CNIDelRequest(
            containerID: env.containerID,
            netns: env.netns,
            ifname: env.ifname,
            pod: pod,
            delegatesReleased: true
        )
        do { _ = try call("POST", "/v1/cni/del", req, CNIDelegatesResponse.self) } catch { log("rollback: \(error)") }
        DelegateNote(stateDir: config.stateDir, containerID: env.containerID).remove()
    }

    func baseResult() throws(CNIError) -> CNIResult {
        guard let prev = config.prevResult else { return CNIResult(cniVersion: config.cniVersion) }
        return try CNIResult.read(prev)
    }

    func result(_ attachments: [CNIAttachment], base: CNIResult) throws(CNIError) -> CNIResult {
        var r = base
        r.cniVersion = config.cniVersion
        for a in attachments {
            if let d = a.delegate {
                r.append(
                    try CNIResult.read(d.result ?? .object(JSONObject())),
                    keepDefaultRoutes: d.defaultRoute != nil
                )
                continue
            }
            let index = r.interfaces.count
            r.interfaces.append(CNIResult.Interface(name: a.ifname, mac: a.mac, mtu: nil, sandbox: env.netns))
            for ip in a.ips ?? [] {
                let v6 = ip.contains(":")
                let gw = (a.gateways ?? []).first { $0.contains(":") == v6 }
                r.ips.append(CNIResult.IP(address: ip, gateway: gw, interface: index))
            }
            r.routes += a.routes ?? []
        }
        return r
    }

    // MARK: DEL

    func del() throws(CNIError) {
        let note = DelegateNote(stateDir: config.stateDir, containerID: env.containerID)
        let req = CNIDelRequest(
            containerID: env.containerID,
            netns: env.netns.isEmpty ? nil : env.netns,
            ifname: env.ifname,
            pod: pod
        )
        let response: CNIDelegatesResponse
        do {
            response = try call("POST", "/v1/cni/del", req, CNIDelegatesResponse.self)
        } catch {
            // vrouterd is away: release what the shim can alone (delegated attachments, from
            // its note), and ask for a retry so vrouterd's part is released too.
            if error.code == CNIError.Code.tryAgainLater.rawValue, let saved = note.load() {
                var failed = false
                for a in saved.attachments.reversed() {
                    do { try delegation.del(a, netns: env.netns.isEmpty ? nil : env.netns) } catch {
                        log("DEL: \(error)")
                        failed = true
                    }
                }
                if !failed { note.save(DelegateNote.Content(netns: saved.netns, attachments: [])) }
            }
            throw error
        }
        var delegates = response.delegates
        if delegates.isEmpty, let saved = note.load() { delegates = saved.attachments }
        var errors: [CNIError] = []
        for a in delegates.reversed() {
            do { try delegation.del(a, netns: env.netns.isEmpty ? nil : env.netns) } catch { errors.append(error) }
        }
        if let first = errors.first {
            throw CNIError(code: first.code, errors.map(\.msg).joined(separator: "; "), details: first.details)
        }
        if !response.delegates.isEmpty {
            var done = req
            done.delegatesReleased = true
            _ = try call("POST", "/v1/cni/del", done, CNIDelegatesResponse.self)
        }
        note.remove()
    }

    // MARK: CHECK, STATUS, GC

    func check() throws(CNIError) {
        let req = CNICheckRequest(containerID: env.containerID, netns: env.netns, ifname: env.ifname, pod: pod)
        let response = try call("POST", "/v1/cni/check", req, CNIDelegatesResponse.self)
        for a in response.delegates { try delegation.check(a, netns: env.netns) }
    }

    func status() throws(CNIError) {
        let s: CNIStatusResponse
        do {
            s = try call("GET", "/v1/cni/status", Optional<Empty>.none, CNIStatusResponse.self)
        } catch {
            throw CNIError(.pluginNotAvailable, "vrouterd is not available", details: error.description)
        }
        guard s.ready else { throw CNIError(.pluginNotAvailable, "vrouterd is not ready", details: s.message) }
    }

    func gc() throws(CNIError) {
        guard let valid = config.validAttachments else {
            throw CNIError(.invalidNetworkConfig, "GC needs cni.dev/valid-attachments in the config")
        }
        let response = try call("POST", "/v1/cni/gc", CNIGCRequest(validAttachments: valid), CNIGCResponse.self)
        // The stale delegated attachments go through their plugins (best effort: GC must
        // carry on past errors, spec §GC).
        for s in response.delegates {
            var e = env
            e.containerID = s.containerID
            let d = Delegation(executor: delegation.executor, env: e, processEnv: delegation.processEnv)
            do { try d.del(s.attachment, netns: s.netns) } catch { log("GC: \(error)") }
            DelegateNote(stateDir: config.stateDir, containerID: s.containerID).remove()
        }
    }

    // MARK: talking to vrouterd

    struct Empty: Codable {}

    func call<Req: Encodable, Resp: Decodable>(
        _ method: String,
        _ path: String,
        _ body: Req?,
        _ type: Resp.Type
    )
        throws(CNIError) -> Resp
    {
        var data: Data?
        if let body {
            do { data = try JSONEncoder().encode(body) } catch {
                throw CNIError(.internalError, "encoding \(path): \(error)")
            }
        }
        let status: Int
        let answer: Data
        do {
            (status, answer) = try transport.request(method, path, body: data)
        } catch {
            throw CNIError(
                .tryAgainLater,
                error.notSent ? "vrouterd is not reachable at \(config.socket)" : "vrouterd did not answer in time",
                details: error.description
            )
        }
        guard (200..<300).contains(status) else {
            let body = try? JSONDecoder().decode(CNIErrorBody.self, from: answer)
            let msg = body?.error ?? String(decoding: answer, as: UTF8.self).trimmingWhitespace()
            let code: Int
            if let c = body?.cniCode {
                code = c
            } else {
                switch status {
                case 400: code = CNIError.Code.invalidNetworkConfig.rawValue
                case 404: code = CNIError.Code.unknownNetwork.rawValue
                case 409: code = CNIError.Code.podConflict.rawValue
                case 503: code = CNIError.Code.tryAgainLater.rawValue
                default: code = CNIError.Code.internalError.rawValue
                }
            }
            throw CNIError(code: code, msg.isEmpty ? "vrouterd answered \(status) to \(path)" : msg)
        }
        if Resp.self == Empty.self { return Empty() as! Resp }
        do {
            return try JSONDecoder().decode(Resp.self, from: answer)
        } catch {
            throw CNIError(
                .internalError,
                "vrouterd's answer to \(path) is not understood",
                details: NetworkAnnotation.describe(error)
            )
        }
    }

    func log(_ s: String) {
        let line = "vrouter-cni: \(s)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}

/// The shim's note of a container's delegated attachments (stateDir/CONTAINERID.json), so
/// that a DEL while vrouterd is down can still release them through their plugins.
struct DelegateNote {
    struct Content: Codable {
        var netns: String
        var attachments: [CNIAttachment]
    }
    let stateDir: String
    let containerID: String
    var path: String { "\(stateDir)/\(containerID).json" }

    func save(_ c: Content) {
        guard let data = try? JSONEncoder().encode(c) else { return }
        mkdir(stateDir, 0o700)
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        _ = data.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        close(fd)
        rename(tmp, path)
    }

    func load() -> Content? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        return try? JSONDecoder().decode(Content.self, from: Data(bytes))
    }

    func remove() { unlink(path) }
}
