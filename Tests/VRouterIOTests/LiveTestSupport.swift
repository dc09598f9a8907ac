// Shared by the live-port tests (root, network namespaces): unique vrt-prefixed names per
// test, cleanup on every exit path, running outside programs as oracles.

import Foundation
import Glibc
import VRouterCore

@testable import VRouterIO

let isRoot = geteuid() == 0
let hasScapy = FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/scapy")

/// Everything one test makes: namespaces and host links whose names start with `tag`
/// ("vrt" + 4 hex digits + a letter for the test). `cleanup()` removes them all; tests call
/// it from `defer` and then check `leftovers()` is empty.
final class Scratch {
    let tag: String
    private(set) var namespaces: [NetworkNamespace] = []

    init(_ letter: String) {
        var rng = SystemRandomNumberGenerator()
        tag = "vrt" + String(UInt16.random(in: 0x1000...0xFFFF, using: &rng), radix: 16) + letter
    }

    /// A new namespace "<tag><suffix>".
    func namespace(_ suffix: String) throws -> NetworkNamespace {
        let ns = try NetworkNamespace.create(named: tag + suffix)
        namespaces.append(ns)
        return ns
    }

    func name(_ suffix: String) -> String { tag + suffix }

    func cleanup() {
        for ns in namespaces where ns.exists { try? ns.delete() }
        if let nl = try? Netlink() {
            for l in (try? nl.links()) ?? [] where l.name.hasPrefix(tag) { try? nl.deleteLink(l.name) }
        }
    }

    /// Namespaces and host links of this test still present.
    func leftovers() -> [String] {
        var left = NetworkNamespace.list().filter { $0.hasPrefix(tag) }.map { "netns \($0)" }
        if let nl = try? Netlink() {
            left += ((try? nl.links()) ?? []).filter { $0.name.hasPrefix(tag) }.map { "link \($0.name)" }
        }
        return left
    }
}

struct ProcessResult {
    var status: Int32
    var output: String
    var error: String
}

/// Runs a program to completion.
@discardableResult
func runProgram(_ path: String, _ args: [String], input: String? = nil) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    let inPipe = Pipe()
    if input != nil { p.standardInput = inPipe }
    try p.run()
    if let input {
        inPipe.fileHandleForWriting.write(Data(input.utf8))
        try? inPipe.fileHandleForWriting.close()
    }
    // Read both pipes concurrently so neither fills up.
    nonisolated(unsafe) var errData = Data()
    let g = DispatchGroup()
    g.enter()
    DispatchQueue.global().async {
        errData = err.fileHandleForReading.readDataToEndOfFile()
        g.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    g.wait()
    p.waitUntilExit()
    return ProcessResult(
        status: p.terminationStatus,
        output: String(decoding: outData, as: UTF8.self),
        error: String(decoding: errData, as: UTF8.self)
    )
}

/// A program started in the background; `finish()` waits for it and collects its output.
// Safe (@unchecked Sendable): the data fields are written by one reader each, read after group.wait().
final class BackgroundProcess: @unchecked Sendable {
    let process = Process()
    private let out = Pipe()
    private let err = Pipe()
    nonisolated(unsafe) private var outData = Data()
    nonisolated(unsafe) private var errData = Data()
    private let group = DispatchGroup()

    init(_ path: String, _ args: [String]) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = args
        process.standardOutput = out
        process.standardError = err
        try process.run()
        group.enter()
        group.enter()
        let o = out.fileHandleForReading
        let e = err.fileHandleForReading
        DispatchQueue.global().async { [self] in
            outData = o.readDataToEndOfFile()
            group.leave()
        }
        DispatchQueue.global().async { [self] in
            errData = e.readDataToEndOfFile()
            group.leave()
        }
    }

    var isRunning: Bool { process.isRunning }

    func finish() -> ProcessResult {
        process.waitUntilExit()
        group.wait()
        return ProcessResult(
            status: process.terminationStatus,
            output: String(decoding: outData, as: UTF8.self),
            error: String(decoding: errData, as: UTF8.self)
        )
    }

    func kill() { if process.isRunning { process.terminate() } }
}

/// `ip netns exec NAME` + argv.
func inNamespace(_ ns: NetworkNamespace, _ argv: [String]) -> [String] {
    ["netns", "exec", ns.name!] + argv
}

let ipTool = "/usr/sbin/ip"
let systemPython = "/usr/bin/python3"
