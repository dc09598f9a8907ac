// vrouter-perf: our side of the comparison harnesses (tools/compare-lpm, tools/compare-pcap).
// Each subcommand times one of our components on inputs it also writes to files, so that a
// C program can time the reference implementation on exactly the same inputs and check
// that both computed the same thing. Output is one JSON object on stdout.

import ArgumentParser
import Foundation

@main
struct VRouterPerf: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vrouter-perf",
        abstract: "Time vRouter components against files a reference implementation reads too.",
        subcommands: [LPMCommand.self, PcapCommand.self]
    )
}

/// Prints one clear error line and exits non-zero.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("vrouter-perf: \(message)\n".utf8))
    exit(1)
}

/// Writes `values` as raw host-order (little-endian on every target we run) machine words.
func writeArray<T: BitwiseCopyable>(_ values: UnsafeBufferPointer<T>, to path: String) {
    guard let f = fopen(path, "wb") else { fail("\(path): \(String(cString: strerror(errno)))") }
    defer { fclose(f) }
    if values.isEmpty { return }
    guard fwrite(values.baseAddress!, MemoryLayout<T>.stride, values.count, f) == values.count else {
        fail("\(path): write failed")
    }
}

func writeArray<T: BitwiseCopyable>(_ values: [T], to path: String) {
    values.withUnsafeBufferPointer { writeArray($0, to: path) }
}

/// Seconds of `body`, on the monotonic clock.
@inline(never)
func seconds(_ body: () -> Void) -> Double {
    let clock = ContinuousClock()
    let t0 = clock.now
    body()
    let d = clock.now - t0
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// Best and median of repeated timings.
struct Timings {
    var samples: [Double]
    var best: Double { samples.min() ?? 0 }
    var median: Double {
        let s = samples.sorted()
        return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}

/// Kilobytes of this process's anonymous memory backed by transparent huge pages
/// (reported so that a comparison says which side had TLB help).
func anonHugeKiB() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/smaps_rollup", encoding: .utf8) else { return -1 }
    for line in text.split(separator: "\n") where line.hasPrefix("AnonHugePages:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
    }
    return -1
}

func printJSON<T: Encodable>(_ value: T) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    print(String(decoding: try enc.encode(value), as: UTF8.self))
}
