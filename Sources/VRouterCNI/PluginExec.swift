// Running another CNI plugin the way a runtime does (libcni's invoke package): find the
// binary named by `type` in CNI_PATH, exec it with CNI_* set, the config on stdin; exit 0
// means stdout is the result, anything else means stdout is an error document (or, when
// empty, stderr says why).

import Glibc
import VRouterAPI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public protocol PluginExecutor: Sendable {
    /// Runs plugin `type` with `env` (the CNI_* variables) and `stdin`; returns stdout
    /// on success, throws the plugin's error otherwise.
    func run(type: String, env: [String: String], stdin: Data, path: [String]) throws(CNIError) -> Data
}

public struct ProcessPluginExecutor: PluginExecutor {
    /// A delegate that hangs must not hang the pod forever.
    public var timeout: Double
    public init(timeout: Double = 60) { self.timeout = timeout }

    public func run(type: String, env: [String: String], stdin: Data, path: [String]) throws(CNIError) -> Data {
        guard !type.isEmpty, !type.contains("/") else {
            throw CNIError(.invalidNetworkConfig, "plugin type '\(type)' is not a plugin name")
        }
        let candidates: [String] = path.map { dir in dir + "/" + type }
        guard let binary = candidates.first(where: { (c: String) -> Bool in access(c, X_OK) == 0 }) else {
            throw CNIError(.invalidNetworkConfig, "failed to find plugin \"\(type)\" in path \(path)")
        }
        let (status, out, err) = try spawn(binary, env: env, stdin: stdin)
        if status == 0 { return out }
        if !out.isEmpty, let e = try? JSONDecoder().decode(CNIError.self, from: out) { throw e }
        let text = String(decoding: err.isEmpty ? out : err, as: UTF8.self).trimmingWhitespace()
        throw CNIError(.delegateFailure, "plugin \(type) failed (exit \(status))", details: text.isEmpty ? nil : text)
    }

    func spawn(_ binary: String, env: [String: String], stdin: Data) throws(CNIError) -> (Int32, Data, Data) {
        var inPipe: [Int32] = [0, 0]
        var outPipe: [Int32] = [0, 0]
        var errPipe: [Int32] = [0, 0]
        guard pipe(&inPipe) == 0, pipe(&outPipe) == 0, pipe(&errPipe) == 0 else {
            throw CNIError(.ioFailure, "pipe: \(String(cString: strerror(errno)))")
        }
        // Only the child's dup2'd copies may survive exec.
        for fd in inPipe + outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(binary), nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, binary, &actions, nil, argv, envp)
        close(inPipe[0])
        close(outPipe[1])
        close(errPipe[1])
        guard rc == 0 else {
            close(inPipe[1])
            close(outPipe[0])
            close(errPipe[0])
            throw CNIError(.delegateFailure, "cannot run \(binary): \(String(cString: strerror(rc)))")
        }
        // Feed stdin and drain stdout/stderr together (a chatty plugin must not block on a
        // full pipe while we still write).
        let input = [UInt8](stdin)
        var written = 0
        var out: [UInt8] = []
        var err: [UInt8] = []
        var open = (inPipe[1], outPipe[0], errPipe[0])
        _ = fcntl(open.0, F_SETFL, O_NONBLOCK)
        if input.isEmpty {
            close(open.0)
            open.0 = -1
        }
        let deadline = UnixHTTPClient.now() + timeout
        var buf = [UInt8](repeating: 0, count: 16384)
        var timedOut = false
        while open.1 >= 0 || open.2 >= 0 {
            var fds = [
                pollfd(fd: open.0, events: Int16(POLLOUT), revents: 0),
                pollfd(fd: open.1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: open.2, events: Int16(POLLIN), revents: 0),
            ]
            let left = deadline - UnixHTTPClient.now()
            if left <= 0 {
                timedOut = true
                break
            }
            let r = poll(&fds, 3, Int32(max(1, left * 1000)))
            if r < 0 && errno == EINTR { continue }
            if fds[0].revents != 0 && open.0 >= 0 {
                let n = input.withUnsafeBytes { write(open.0, $0.baseAddress! + written, $0.count - written) }
                if n > 0 { written += n }
                if n < 0 && errno != EAGAIN || written == input.count {
                    close(open.0)
                    open.0 = -1
                }
            }
            for (k, fd) in [(1, open.1), (2, open.2)] where fd >= 0 && fds[k].revents != 0 {
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
                if n > 0 {
                    if k == 1 { out += buf[0..<n] } else { err += buf[0..<n] }
                } else if n == 0 || errno != EAGAIN && errno != EINTR {
                    close(fd)
                    if k == 1 { open.1 = -1 } else { open.2 = -1 }
                }
            }
        }
        for fd in [open.0, open.1, open.2] where fd >= 0 { close(fd) }
        if timedOut { kill(pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if timedOut { throw CNIError(.delegateFailure, "plugin \(binary) did not finish within \(timeout)s (killed)") }
        let code: Int32 = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return (code, Data(out), Data(err))
    }
}
