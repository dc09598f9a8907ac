import Foundation
import Testing
import VRouterTestSupport

/// vrouterd as an operator runs it: bad input gets one clear line on stderr and a
/// non-zero exit. The binary is the one `swift build` put next to the tests.
@Suite struct CLITests {
    static func vrouterd() -> String? { Binaries.path("vrouterd") }

    static func scenario(_ name: String, pcap: Data?, extraRoute: String = "") throws -> String {
        let dir = Scratch.path("cli-\(name)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let yaml = """
            vrfs: [ { name: blue, routes: [ \(extraRoute) ] } ]
            interfaces:
              - { name: blue-a, kind: pod, vrf: blue, mac: "02:00:01:00:00:0a", ipv4: 192.0.2.10, pcap: { in: in.pcap, out: out.pcap } }
            """
        try yaml.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        if let pcap { try pcap.write(to: URL(fileURLWithPath: dir + "/in.pcap")) }
        return dir + "/config.yaml"
    }

    /// A valid one-packet capture (pcap header + one 60-byte record).
    static var onePacket: Data {
        var d = Data([0xD4, 0xC3, 0xB2, 0xA1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 1, 0, 0, 0])
        d += Data([0, 0, 0, 0, 0, 0, 0, 0, 60, 0, 0, 0, 60, 0, 0, 0])
        d += Data(repeating: 0x11, count: 60)
        return d
    }

    struct BadCase: Sendable, CustomStringConvertible {
        let name: String
        let pcap: Data?
        let route: String
        let expected: String
        var description: String { name }
    }

    static let badCases: [BadCase] = [
        BadCase(name: "missing", pcap: nil, route: "", expected: "in.pcap"),
        BadCase(name: "truncated", pcap: onePacket.prefix(onePacket.count - 10), route: "", expected: "after packet 0"),
        BadCase(name: "corrupt", pcap: Data("garbage garbage garbage garbage".utf8), route: "", expected: "in.pcap"),
        BadCase(
            name: "linktype",
            pcap: {
                var d = onePacket
                d[20] = 101
                return d
            }(),
            route: "",
            expected: "not Ethernet"
        ),
        BadCase(
            name: "unknownport",
            pcap: onePacket,
            route: "{ prefix: 198.51.100.0/24, interface: nope }",
            expected: "no interface named 'nope'"
        ),
    ]

    @Test(arguments: badCases)
    func badInputIsOneClearErrorLine(_ c: BadCase) throws {
        guard Self.vrouterd() != nil else {
            Issue.record("vrouterd is not built (run swift build first)")
            return
        }
        let config = try Self.scenario(c.name, pcap: c.pcap, extraRoute: c.route)
        for args in [["replay", "--config", config], ["bench", "--config", config, "--repeat", "1"]] {
            let r = try run([Self.vrouterd()!] + args)
            let (status, err) = (r.status, r.error)
            #expect(status != 0, "\(args[0]) \(c.name) exited 0")
            let lines = err.split(separator: "\n")
            #expect(lines.count == 1, "\(args[0]) \(c.name): \(err)")
            #expect(err.hasPrefix("vrouterd: "))
            #expect(err.contains(c.expected), "\(args[0]) \(c.name): \(err)")
        }
    }

    @Test func garbagePacketsAreCountedNotFatal() throws {
        guard Self.vrouterd() != nil else { return }
        let config = try Self.scenario("garbage-packet", pcap: Self.onePacket)
        let r = try run([Self.vrouterd()!, "replay", "--config", config, "--json"])
        let (status, out) = (r.status, r.output)
        #expect(status == 0)
        #expect(out.contains("\"dropped\":1"))
        #expect(out.contains("\"unsupported_protocol\":1") || out.contains("\"invalid"))
    }
}
