// Running outside programs from the tests: each in its own process group (so the group can
// be ended whole, children included), stdin from a file or /dev/null, stdout and stderr into
// files (neither pipe can fill up while the other is read, and nothing is left half-read),
// and every wait bounded. posix_spawn rather than Foundation's Process: no descriptor the
// test process has open leaks into a child that runs while another test writes a binary.

import Foundation
import Glibc

/// A test-side failure with one line naming what went wrong.
public struct Failure: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A finished program.
public struct Finished: Sendable {
    /// Exit code, or 128 + signal.
    public var status: Int32
    public var output: String
    public var error: String
    public var timedOut = false
    public var ok: Bool { status == 0 && !timedOut }
}

/// A program started with posix_spawnp in a new process group, its output in files in `dir`.
public final class Child: @unchecked Sendable {  // Safe: used by the test that started it.
    public let pid: pid_t
    public let name: String
    public let outPath: String
    public let errPath: String
    public private(set) var status: Int32?

    /// `input`: what the program reads on stdin (nil: /dev/null).
    public init(_ argv: [String], name: String, dir: String, input: String? = nil) throws {
        precondition(!argv.isEmpty)
        self.name = name
        outPath = "\(dir)/\(name).out"
        errPath = "\(dir)/\(name).err"
        var inPath = "/dev/null"
        if let input {
            inPath = "\(dir)/\(name).in"
            try input.write(toFile: inPath, atomically: false, encoding: .utf8)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, inPath, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK))
        posix_spawnattr_setpgroup(&attr, 0)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var p: pid_t = 0
        let r = posix_spawnp(&p, argv[0], &actions, &attr, &cargs, environ)
        guard r == 0 else { throw Failure("cannot start \(argv[0]): \(String(cString: strerror(r)))") }
        pid = p
    }

    public var stdout: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

    /// Reaps the child if it has exited; true while it runs.
    public var isRunning: Bool {
        if status != nil { return false }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        if r == pid {
            status = Self.decode(st)
            return false
        }
        return r == 0
    }

    static func decode(_ st: Int32) -> Int32 {
        let sig = st & 0x7f
        return sig == 0 ? (st >> 8) & 0xff : 128 + sig
    }

    /// Waits up to `seconds` for the child to exit; nil when it is still running.
    @discardableResult
    public func wait(seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning {
            if Date() >= deadline { return nil }
            usleep(5_000)
        }
        return status
    }

    /// Signals the whole process group.
    public func signal(_ sig: Int32) { if status == nil { kill(-pid, sig) } }

    /// SIGTERM to the group, SIGKILL if it has not gone after `grace` seconds; reaps it.
    public func end(grace: Double = 5) {
        guard isRunning else { return }
        signal(SIGTERM)
        if wait(seconds: grace) == nil {
            signal(SIGKILL)
            wait(seconds: 5)
        }
    }

    /// The finished program (after `wait`).
    public var finished: Finished { Finished(status: status ?? -1, output: stdout, error: stderr) }

    /// Starts a program in the background, its files in the scratch directory.
    public static func start(_ argv: [String], input: String? = nil) throws -> Child {
        try Child(argv, name: "bg-\(Scratch.next())", dir: Scratch.directory, input: input)
    }

    /// Waits for it to end (ended after `timeout` seconds, `timedOut` set) and collects it.
    public func finish(timeout: Double = 60) -> Finished {
        var timedOut = false
        if wait(seconds: timeout) == nil {
            timedOut = true
            end(grace: 1)
        }
        var f = finished
        f.timedOut = timedOut
        return f
    }
}

/// Runs `argv` (a path, or a name looked up on PATH) to its end, or ends it after `timeout`
/// seconds (`timedOut` set). Its files go in `dir` (the process's scratch directory when nil)
/// and are removed afterwards.
@discardableResult
public func run(_ argv: [String], input: String? = nil, timeout: Double = 60, dir: String? = nil) throws -> Finished {
    let c = try Child(argv, name: "run-\(Scratch.next())", dir: dir ?? Scratch.directory, input: input)
    defer {
        for p in [c.outPath, c.errPath, c.outPath.dropLast(4) + ".in"] { unlink(String(p)) }
    }
    return c.finish(timeout: timeout)
}

/// Runs a shell command line, for cleanups whose result does not matter.
public func sh(_ command: String) { _ = try? run(["/bin/sh", "-c", command], timeout: 30) }
