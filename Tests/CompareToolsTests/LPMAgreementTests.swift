import Foundation
import Testing
import VRouterTestSupport

@testable import vrouter_perf

/// tools/compare-lpm's proof that both sides ran the same table: rte_lpm_bench must
/// confirm every answer vrouter-perf wrote for a small table, and must fail loudly when one
/// answer is wrong. Needs gcc and DPDK's development files (tools/bootstrap installs them);
/// skipped without them. No timing is checked.
@Suite(.serialized, .enabled(if: dpdkToolsPresent, "needs gcc and libdpdk-dev"))
struct LPMAgreementTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// rte_lpm_bench compiled into `dir` the way tools/lib.sh's vrt_cc does.
    static func compile(into dir: String) throws -> String {
        let flags = try run(["/usr/bin/pkg-config", "--cflags", "--libs", "libdpdk"]).output
            .split(whereSeparator: \.isWhitespace).map(String.init)
        let bin = dir + "/rte_lpm_bench"
        let r = try run(["/usr/bin/gcc", "-O2", "-o", bin, root + "/tools/compare/rte_lpm_bench.c"] + flags)
        #expect(r.status == 0, "gcc: \(r.error)")
        return bin
    }

    static func flipWord(_ path: String, at index: Int) throws {
        var d = try Data(contentsOf: URL(fileURLWithPath: path))
        d[index * 4] ^= 1
        try d.write(to: URL(fileURLWithPath: path))
    }

    @Test(arguments: ["uniform", "routed"])
    func rteLPMConfirmsEveryAnswerAndRejectsAWrongOne(keyMode: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vrt-lpm-agree-\(getpid())-\(keyMode)")
            .path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bench = try Self.compile(into: dir)

        // 3000 routes of the BGP mix include /25-/32s, so rte_lpm's tbl8 groups are exercised.
        let ours = try LPMCommand.parse([
            "--routes", "3000", "--keys", "20000", "--key-mode", keyMode, "--repeat", "1", "--out", dir + "/t",
        ])
        try ours.run()
        let good = try run([bench, dir + "/t", "--repeat", "1"])
        #expect(good.status == 0, "\(good.error)")
        #expect(good.output.contains("\"rte_lpm_agree\":true"))
        #expect(good.output.contains("\"rte_lpm_checked_answers\":60000"))

        // One wrong batched answer, then one wrong step of the dependent chain.
        try Self.flipWord(dir + "/t/expect.bin", at: 12345)
        let bad = try run([bench, dir + "/t", "--repeat", "1"])
        #expect(bad.status == 3)
        #expect(bad.error.contains("key 12345"))
        #expect(bad.error.contains("FAIL"))
        try Self.flipWord(dir + "/t/expect.bin", at: 12345)
        try Self.flipWord(dir + "/t/expect-dep.bin", at: 777)
        let badDep = try run([bench, dir + "/t", "--repeat", "1"])
        #expect(badDep.status == 3)
        #expect(badDep.error.contains("dependent chain"))
        #expect(badDep.error.contains("key 777"))
    }
}

let dpdkToolsPresent: Bool =
    FileManager.default.isExecutableFile(atPath: "/usr/bin/gcc")
    && (try? run(["/usr/bin/pkg-config", "--exists", "libdpdk"]).status) == 0
