// vrouterd run refusing to start: each case exits non-zero with one clear error line on
// stderr and leaves no tap, link or namespace behind, including the case where it fails
// after making a pod's tap (which it must take away again).

import Foundation
import Glibc
import Testing
import VRouterTestSupport

@Suite(
    .enabled(if: isRoot, "needs root: makes network namespaces and checks what vrouterd leaves in them"),
    .enabled(if: Tool.exists(Tool.ip), "needs ip (iproute2)"),
    .enabled(if: Binaries.path("vrouterd") != nil, "vrouterd is not built (swift build)")
)
struct ConfigErrorTests {
    struct Case: Sendable, CustomStringConvertible {
        let description: String
        /// The interfaces (after a `vrfs:` with blue at 192.0.2.1/24 and red), given the
        /// lab's tag for names; pod namespaces "<tag>p1" and "<tag>p2" exist.
        let interfaces: @Sendable (Lab) -> String
        /// What the error line must say (with the tag substituted for "TAG").
        let expected: String
        /// Run as nobody (setpriv) instead of root.
        var unprivileged = false
        /// Made before vrouterd starts (an obstacle it only meets half-way).
        var before: (@Sendable (Lab) throws -> Void)? = nil
        /// The error comes after vrouterd made something (logged), so only the last line of
        /// stderr is the error.
        var failsHalfWay = false
        /// Top-level keys before `vrfs:`, and more of blue's keys (after its gateway).
        var top = ""
        var blue = ""
    }

    static func pod(_ lab: Lab, _ n: Int, vrf: String = "blue", address: String? = nil, netns: String? = nil) -> String
    {
        let addr = address ?? "192.0.2.\(10 + n)/24"
        return """
              - { name: p\(n), kind: pod, vrf: \(vrf), mac: "02:00:00:00:01:\(10 + n)", ipv4: \(addr), tap: { name: \(lab.name("t\(n)")), netns: \(netns ?? lab.name("p\(n)")), ifname: eth0 } }
            """
    }

    static let cases: [Case] = [
        Case(
            description: "unknown VRF",
            interfaces: { pod($0, 1) + "\n" + pod($0, 2, vrf: "green") },
            expected: "no VRF named 'green'"
        ),
        Case(
            description: "overlapping addresses",
            interfaces: { pod($0, 1) + "\n" + pod($0, 2, address: "192.0.2.11/25") },
            expected: "p2 and p1 both have address 192.0.2.11"
        ),
        Case(
            description: "bad CIDR",
            interfaces: { pod($0, 1, address: "192.0.2.10/33") },
            expected: "'192.0.2.10/33': prefix length must be 0...32"
        ),
        Case(
            description: "missing fabric device",
            interfaces: {
                "  - { name: fabric, kind: fabric, device: \($0.name("nodev")), address: 198.18.0.1/24, mac: \"02:00:00:00:00:01\" }\n"
                    + pod($0, 1)
            },
            expected: "interfaces.fabric: device 'TAGnodev' does not exist"
        ),
        Case(
            description: "missing pod namespace",
            interfaces: { pod($0, 1) + "\n" + pod($0, 2, netns: $0.name("gone")) },
            expected: "interfaces.p2: network namespace 'TAGgone' does not exist"
        ),
        Case(
            description: "no permission",
            interfaces: { pod($0, 1) + "\n" + pod($0, 2) },
            expected: "run needs root, or these capabilities: CAP_NET_ADMIN",
            unprivileged: true
        ),
        Case(
            description: "tap name taken after the first pod was made",
            interfaces: { pod($0, 1) + "\n" + pod($0, 2) },
            expected: "interfaces.p2: TUNSETIFF on tap TAGt2",
            before: { lab in
                try lab.ip("link", "add", lab.name("t2"), "type", "veth", "peer", "name", lab.name("t2x"))
            },
            failsHalfWay: true
        ),
        Case(
            description: "SNAT network without an underlay address",
            interfaces: { pod($0, 1) },
            expected: "vrfs.blue: ipFabricSnat needs a fabric interface with the node's underlay address",
            top: "snat: { ports: 20000-20999 }",
            blue: ", ipFabricSnat: true"
        ),
        Case(
            description: "SNAT port range overlapping the VXLAN port",
            interfaces: {
                "  - { name: fabric, kind: fabric, device: \($0.name("nodev")), address: 198.18.0.1/24, mac: \"02:00:00:00:00:01\" }\n"
                    + pod($0, 1)
            },
            expected: "overlaps the VXLAN port 4789",
            top: "snat: { ports: 4000-5000 }",
            blue: ", ipFabricSnat: true"
        ),
    ]

    @Test(arguments: cases)
    func refusesWithOneClearLineAndLeavesNothing(_ c: Case) throws {
        let lab = try Lab("c")
        defer {
            lab.cleanup()
            #expect(lab.leftovers().isEmpty)
        }
        let pods = [try lab.namespace("p1"), try lab.namespace("p2")]
        try c.before?(lab)
        let config = try lab.write(
            "node.yaml",
            """
            \(c.top)
            vrfs:
              - { name: blue, gateway: 192.0.2.1\(c.blue) }
              - { name: red, gateway: 198.51.100.1 }
            interfaces:
            \(c.interfaces(lab))
            """
        )
        let vrouterd = try Binaries.require("vrouterd")
        var argv = [
            vrouterd, "run", "--config", config, "--socket", (config as NSString).deletingPathExtension + ".sock",
        ]
        if c.unprivileged {
            guard Tool.exists(Tool.setpriv) else {
                Issue.record("setpriv (util-linux) is missing")
                return
            }
            // A copy in the world-readable scratch directory: the build directory may sit
            // under a home that nobody cannot enter (CI clones anywhere).
            // cp, not FileManager: a write descriptor opened in this process could be
            // inherited by a child another test forks meanwhile, and exec then fails with
            // ETXTBSY ("Text file busy") until that child execs.
            let copy = "\(lab.dir)/vrouterd"
            let cp = try lab.run(["/bin/cp", vrouterd, copy], timeout: 30)
            #expect(cp.status == 0, "\(cp.error)")
            chmod(copy, 0o755)
            argv = [Tool.setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", copy, "run", "--config", config]
        }
        let r = try lab.run(argv, timeout: 30)
        #expect(!r.timedOut)
        #expect(r.status != 0)
        let lines = r.error.split(separator: "\n").map(String.init)
        let expected = c.expected.replacingOccurrences(of: "TAG", with: lab.tag)
        if c.failsHalfWay {
            #expect(lines.last?.hasPrefix("vrouterd: ") == true, "\(r.error)")
            #expect(lines.filter { $0.hasPrefix("vrouterd: ") }.count == 1, "\(r.error)")
        } else {
            #expect(lines.count == 1, "\(r.error)")
            #expect(lines.first?.hasPrefix("vrouterd: ") == true, "\(r.error)")
        }
        #expect(lines.last?.contains(expected) == true, "expected '\(expected)' in: \(r.error)")
        #expect(r.output.isEmpty)

        // Nothing made is left: no tap in the host (beyond what the test made) and nothing
        // but loopback in the pods' namespaces.
        for ns in pods {
            let links = try lab.ip("-o", "-n", ns, "link", "show")
            #expect(links.split(separator: "\n").count == 1 && links.contains(": lo:"), "\(ns): \(links)")
        }
        let host = try lab.ip("-o", "link", "show")
        for n in 1...2 { #expect(!host.contains(" \(lab.name("t\(n)")): "), "tap t\(n) left: \(host)") }
    }
}
