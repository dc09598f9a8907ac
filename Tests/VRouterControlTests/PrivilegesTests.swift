import Testing

@testable import VRouterControl

/// `vrouterd run` names the capabilities it lacks before touching anything.
@Suite struct PrivilegesTests {
    static let podOnly = """
        vrfs: [ { name: a } ]
        interfaces: [ { name: p, kind: pod, vrf: a, mac: "02:00:00:00:00:01", tap: { name: t1 } } ]
        """
    static let withFabricAndNamespace = """
        vrfs: [ { name: a } ]
        interfaces:
          - { name: f, kind: fabric, device: veth0, address: 198.18.0.1/24, mac: "02:00:00:00:00:02" }
          - { name: p, kind: pod, vrf: a, mac: "02:00:00:00:00:01", tap: { name: t1, netns: pod, ifname: eth0 } }
        """

    @Test func whatIsNeededDependsOnTheConfig() throws {
        let none: UInt64 = 0
        let pod = try NodeConfig.parse(Self.podOnly)
        #expect(Privileges.missing(for: pod, effective: none).count == 1)
        #expect(Privileges.missing(for: pod, effective: none)[0].hasPrefix("CAP_NET_ADMIN"))
        let full = try NodeConfig.parse(Self.withFabricAndNamespace)
        let missing = Privileges.missing(for: full, effective: none)
        #expect(
            missing.map { String($0.prefix(while: { $0 != " " })) } == [
                "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN",
            ]
        )
        // Root's full set lacks nothing; NET_ADMIN alone still lacks the other two.
        #expect(Privileges.missing(for: full, effective: ~0).isEmpty)
        #expect(Privileges.missing(for: full, effective: 1 << 12).count == 2)
        // Unknown capabilities (no /proc): the calls themselves will tell.
        #expect(Privileges.missing(for: full, effective: nil).isEmpty)
    }
}
