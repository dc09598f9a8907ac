// A vrouterd started for a test (the binary `swift build` put next to the tests), its
// socket in a private temporary directory, stopped and its links and namespaces removed
// on every exit path.

import Foundation
import Testing
import VRouterAPI
import VRouterControl

var isRoot: Bool { getuid() == 0 }

func binary(_ name: String) -> String? {
    for dir in [".build/debug", ".build/release"] {
        let p = CLITests.root.appendingPathComponent(dir).appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}

/// Runs a program to its end: status, stdout, stderr (stderr goes through a file so
/// that neither pipe can fill up while the other is read).
@discardableResult
func runProgram(_ path: String, _ args: [String]) throws -> (Int32, String, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let out = Pipe()
    let errPath = FileManagerHelper.temp("stderr-\(UUID().uuidString)")
    FileManager.default.createFile(atPath: errPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: errPath) }
    let errHandle = FileHandle(forWritingAtPath: errPath)!
    p.standardOutput = out
    p.standardError = errHandle
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    try? errHandle.close()
    let e = FileManager.default.contents(atPath: errPath) ?? Data()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

func sh(_ command: String) {
    _ = try? runProgram("/bin/sh", ["-c", command])
}

final class Daemon {
    let dir: String
    let socket: String
    let process: Process
    let logPath: String
    var client: UnixHTTPClient { UnixHTTPClient(socketPath: socket) }
    var api: ControlClient { ControlClient(socketPath: socket) }

    /// Starts `vrouterd run` on `yaml` and waits until its socket answers.
    init(_ name: String, yaml: String, extra: [String] = []) throws {
        dir = FileManagerHelper.temp("api-\(name)")
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        chmod((dir as NSString).deletingLastPathComponent, 0o755)
        socket = dir + "/vrouterd.sock"
        logPath = dir + "/vrouterd.log"
        try yaml.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        guard let bin = binary("vrouterd") else { throw ServiceError("vrouterd is not built (swift build first)") }
        process = Process()
        process.executableURL = URL(fileURLWithPath: bin)
        process.arguments = ["run", "--config", dir + "/config.yaml", "--socket", socket] + extra
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)!
        process.standardError = log
        process.standardOutput = log
        try process.run()
        for _ in 0..<200 {
            if ControlSocket.isLive(socket) { return }
            if !process.isRunning { break }
            usleep(50_000)
        }
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        stop()
        throw ServiceError("vrouterd did not start serving \(socket): \(text)")
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// vrouterctl against this daemon.
    func ctl(_ args: [String]) throws -> (Int32, String, String) {
        guard let bin = binary("vrouterctl") else { throw ServiceError("vrouterctl is not built") }
        return try runProgram(bin, args + ["--socket", socket])
    }

    /// vrouterctl -o json, its exit status checked and its output parsed.
    func json(_ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> Any {
        let (st, out, err) = try ctl(args + ["-o", "json"])
        #expect(st == 0, "vrouterctl \(args.joined(separator: " ")): \(err)", sourceLocation: sourceLocation)
        return try JSONSerialization.jsonObject(with: Data(out.utf8), options: [.fragmentsAllowed])
    }

    /// A raw HTTP request: status and body text.
    func http(_ method: String, _ path: String, _ body: String? = nil) throws -> (Int, String) {
        let r = try client.request(method, path, body: body.map { Data($0.utf8) })
        return (r.status, r.text)
    }
}

func objects(_ v: Any) -> [[String: Any]] { v as? [[String: Any]] ?? [] }
