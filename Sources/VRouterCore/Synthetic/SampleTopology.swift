// A small node used by tests, benchmarks and the demo replay: pods in two VRFs, a remote
// node reached by VXLAN and another by MPLS over UDP, an ECMP prefix across both, and
// the labels/VNIs that bring traffic back in. Addresses are documentation ranges only.
//
//   fabric port 0: underlay 198.18.0.1 (02:00:00:00:00:01)
//     node A 198.18.0.2 (VXLAN)   node B 198.18.0.3 (MPLS over UDP)
//   VRF 1 "blue", gateway 192.0.2.1 / 2001:db8:1::1
//     port 1 pod blue-a 192.0.2.10  2001:db8:1::a
//     port 2 pod blue-b 192.0.2.11  2001:db8:1::b
//     192.0.2.128/25, 2001:db8:1:1::/64  → node A, VNI 1001
//     203.0.113.0/24                     → ECMP { node A VNI 1001, node B label 300 }
//   VRF 2 "red", gateway 198.51.100.1
//     port 3 pod red-a 198.51.100.10
//     198.51.100.128/25                  → node B, label 200
//   incoming: label 16 → blue-a, 17 → blue-b, 18 → red-a; VNI 1001 → blue, 1002 → red
//
// With `fabricServices` (fabric SNAT and IP-fabric forwarding), also:
//   VRF 3 "underlay": the fabric port's underlay VRF
//     198.18.1.10/32 → pod purple-a       198.18.2.0/24 → node C 198.18.0.4, untunneled
//     0.0.0.0/0      → the underlay gateway 198.18.0.254 (02:00:00:00:00:fe), untunneled
//   VRF 4 "green" (SNAT), gateway 198.51.100.33
//     port 4 pod green-a 198.51.100.34, port 6 pod green-b 198.51.100.35
//     0.0.0.0/0 → SNAT through the fabric (source 198.18.0.1 and a port of the range)
//   VRF 5 "purple" (IP-fabric forwarding), gateway 198.18.1.1
//     port 5 pod purple-a 198.18.1.10;  0.0.0.0/0 → route in the underlay VRF

public struct SampleTopology: Sendable {
    public var builder = TableBuilder()

    public static let fabricPort: UInt16 = 0
    public static let blueA: UInt16 = 1
    public static let blueB: UInt16 = 2
    public static let redA: UInt16 = 3
    public static let blue: UInt16 = 1
    public static let red: UInt16 = 2

    public static let nodeMAC = MACAddress(0x0200_0000_0001)
    public static let nodeAMAC = MACAddress(0x0200_0000_0002)
    public static let nodeBMAC = MACAddress(0x0200_0000_0003)
    public static let underlay = IPv4Address(198, 18, 0, 1)
    public static let nodeA = IPv4Address(198, 18, 0, 2)
    public static let nodeB = IPv4Address(198, 18, 0, 3)

    public static let blueAMAC = MACAddress(0x0200_0001_000A)
    public static let blueBMAC = MACAddress(0x0200_0001_000B)
    public static let redAMAC = MACAddress(0x0200_0002_000A)
    public static let blueAIP = IPv4Address(192, 0, 2, 10)
    public static let blueBIP = IPv4Address(192, 0, 2, 11)
    public static let redAIP = IPv4Address(198, 51, 100, 10)
    public static let blueAIPv6 = IPv6Address("2001:db8:1::a")!
    public static let blueBIPv6 = IPv6Address("2001:db8:1::b")!
    public static let blueGateway = IPv4Address(192, 0, 2, 1)
    public static let blueGateway6 = IPv6Address("2001:db8:1::1")!
    public static let redGateway = IPv4Address(198, 51, 100, 1)

    // Fabric services (SNAT, IP-fabric forwarding).
    public static let underlayVRF: UInt16 = 3
    public static let green: UInt16 = 4
    public static let purple: UInt16 = 5
    public static let greenA: UInt16 = 4
    public static let purpleA: UInt16 = 5
    public static let greenB: UInt16 = 6
    public static let greenAMAC = MACAddress(0x0200_0004_000A)
    public static let greenBMAC = MACAddress(0x0200_0004_000B)
    public static let purpleAMAC = MACAddress(0x0200_0005_000A)
    public static let gatewayMAC = MACAddress(0x0200_0000_00FE)
    public static let nodeCMAC = MACAddress(0x0200_0000_0004)
    public static let greenAIP = IPv4Address(198, 51, 100, 34)
    public static let greenBIP = IPv4Address(198, 51, 100, 35)
    public static let greenGateway = IPv4Address(198, 51, 100, 33)
    public static let purpleAIP = IPv4Address(198, 18, 1, 10)
    public static let purpleGateway = IPv4Address(198, 18, 1, 1)
    public static let underlayGateway = IPv4Address(198, 18, 0, 254)
    public static let nodeC = IPv4Address(198, 18, 0, 4)
    /// A host beyond the underlay gateway.
    public static let world = IPv4Address(203, 0, 113, 200)
    public static let nhGreenA: UInt32 = 20
    public static let nhPurpleA: UInt32 = 21
    public static let nhUnderlayGateway: UInt32 = 22
    public static let nhNodeCDirect: UInt32 = 23
    public static let nhSNAT: UInt32 = 24
    public static let nhToUnderlay: UInt32 = 25
    public static let nhGreenB: UInt32 = 26

    public static let vniBlue: UInt32 = 1001
    public static let vniRed: UInt32 = 1002
    public static let labelToBlueA: UInt32 = 16
    public static let labelToBlueB: UInt32 = 17
    public static let labelToRedA: UInt32 = 18
    public static let labelAtNodeBRed: UInt32 = 200
    public static let labelAtNodeBBlue: UInt32 = 300

    // Nexthop ids.
    public static let nhBlueA: UInt32 = 1
    public static let nhBlueB: UInt32 = 2
    public static let nhRedA: UInt32 = 3
    public static let nhNodeA: UInt32 = 10
    public static let nhNodeB: UInt32 = 11
    public static let nhECMP: UInt32 = 12
    public static let nhReceive: UInt32 = 13
    public static let nhDiscard: UInt32 = 14

    public init(fabricMTU: Int = 1500, podMTU: Int = 1500, fabricServices: Bool = false) {
        do {
            try build(fabricMTU: fabricMTU, podMTU: podMTU)
            if fabricServices { try addFabricServices(podMTU: podMTU) }
        } catch {
            preconditionFailure("sample topology is invalid: \(error)")
        }
    }

    private mutating func addFabricServices(podMTU: Int) throws(TableError) {
        let b = Self.self
        try builder.setVRF(b.underlayVRF, VRFConfig(name: "underlay", gateway4: b.underlay))
        try builder.setVRF(b.green, VRFConfig(name: "green", gateway4: b.greenGateway))
        try builder.setVRF(b.purple, VRFConfig(name: "purple", gateway4: b.purpleGateway))
        var fabric = builder.ports[b.fabricPort]!
        fabric.underlayVRF = b.underlayVRF
        try builder.setPort(b.fabricPort, fabric)
        for (port, name, vrf, mac, ip) in [
            (b.greenA, "green-a", b.green, b.greenAMAC, b.greenAIP),
            (b.purpleA, "purple-a", b.purple, b.purpleAMAC, b.purpleAIP),
            (b.greenB, "green-b", b.green, b.greenBMAC, b.greenBIP),
        ] {
            try builder.setPort(port, PortConfig(kind: .pod, name: name, vrf: vrf, mac: mac, mtu: podMTU, ipv4: ip))
        }
        try builder.setNexthop(b.nhGreenA, .encap(port: b.greenA, mac: b.greenAMAC))
        try builder.setNexthop(b.nhGreenB, .encap(port: b.greenB, mac: b.greenBMAC))
        try builder.setNexthop(b.nhPurpleA, .encap(port: b.purpleA, mac: b.purpleAMAC))
        try builder.setNexthop(
            b.nhUnderlayGateway,
            .underlay(port: b.fabricPort, via: b.underlayGateway, mac: b.gatewayMAC)
        )
        try builder.setNexthop(b.nhNodeCDirect, .underlay(port: b.fabricPort, via: b.nodeC, mac: b.nodeCMAC))
        try builder.setNexthop(b.nhSNAT, .sourceNAT(fabric: b.fabricPort))
        try builder.setNexthop(b.nhToUnderlay, .vrfTranslate(vrf: b.underlayVRF))

        let any = IPv4Prefix("0.0.0.0/0")!
        try builder.addRoute(vrf: b.underlayVRF, any, RouteTarget(nexthop: b.nhUnderlayGateway))
        try builder.addRoute(vrf: b.underlayVRF, IPv4Prefix("198.18.2.0/24")!, RouteTarget(nexthop: b.nhNodeCDirect))
        try builder.addRoute(
            vrf: b.underlayVRF,
            IPv4Prefix(b.purpleAIP, length: 32)!,
            RouteTarget(nexthop: b.nhPurpleA)
        )
        try builder.addRoute(vrf: b.green, IPv4Prefix(b.greenAIP, length: 32)!, RouteTarget(nexthop: b.nhGreenA))
        try builder.addRoute(vrf: b.green, IPv4Prefix(b.greenBIP, length: 32)!, RouteTarget(nexthop: b.nhGreenB))
        try builder.addRoute(vrf: b.green, IPv4Prefix(b.greenGateway, length: 32)!, RouteTarget(nexthop: b.nhReceive))
        try builder.addRoute(vrf: b.green, any, RouteTarget(nexthop: b.nhSNAT))
        try builder.addRoute(vrf: b.purple, IPv4Prefix(b.purpleAIP, length: 32)!, RouteTarget(nexthop: b.nhPurpleA))
        try builder.addRoute(vrf: b.purple, IPv4Prefix(b.purpleGateway, length: 32)!, RouteTarget(nexthop: b.nhReceive))
        try builder.addRoute(vrf: b.purple, any, RouteTarget(nexthop: b.nhToUnderlay))
    }

    private mutating func build(fabricMTU: Int, podMTU: Int) throws(TableError) {
        let b = Self.self
        try builder.setVRF(b.blue, VRFConfig(name: "blue", gateway4: b.blueGateway, gateway6: b.blueGateway6))
        try builder.setVRF(b.red, VRFConfig(name: "red", gateway4: b.redGateway))
        try builder.setPort(
            b.fabricPort,
            PortConfig(kind: .fabric, name: "fabric0", mac: b.nodeMAC, mtu: fabricMTU, ipv4: b.underlay)
        )
        try builder.setPort(
            b.blueA,
            PortConfig(
                kind: .pod,
                name: "blue-a",
                vrf: b.blue,
                mac: b.blueAMAC,
                mtu: podMTU,
                ipv4: b.blueAIP,
                ipv6: b.blueAIPv6
            )
        )
        try builder.setPort(
            b.blueB,
            PortConfig(
                kind: .pod,
                name: "blue-b",
                vrf: b.blue,
                mac: b.blueBMAC,
                mtu: podMTU,
                ipv4: b.blueBIP,
                ipv6: b.blueBIPv6
            )
        )
        try builder.setPort(
            b.redA,
            PortConfig(kind: .pod, name: "red-a", vrf: b.red, mac: b.redAMAC, mtu: podMTU, ipv4: b.redAIP)
        )

        try builder.setNexthop(b.nhBlueA, .encap(port: b.blueA, mac: b.blueAMAC))
        try builder.setNexthop(b.nhBlueB, .encap(port: b.blueB, mac: b.blueBMAC))
        try builder.setNexthop(b.nhRedA, .encap(port: b.redA, mac: b.redAMAC))
        try builder.setNexthop(
            b.nhNodeA,
            .tunnel(.vxlan, port: b.fabricPort, destination: b.nodeA, underlayMAC: b.nodeAMAC)
        )
        try builder.setNexthop(
            b.nhNodeB,
            .tunnel(.mplsOverUDP, port: b.fabricPort, destination: b.nodeB, underlayMAC: b.nodeBMAC)
        )
        try builder.setNexthop(
            b.nhECMP,
            .composite([
                RouteTarget(nexthop: b.nhNodeA, label: b.vniBlue),
                RouteTarget(nexthop: b.nhNodeB, label: b.labelAtNodeBBlue),
            ])
        )
        try builder.setNexthop(b.nhReceive, .receive)
        try builder.setNexthop(b.nhDiscard, .discard)

        try builder.addRoute(vrf: b.blue, IPv4Prefix(b.blueAIP, length: 32)!, RouteTarget(nexthop: b.nhBlueA))
        try builder.addRoute(vrf: b.blue, IPv4Prefix(b.blueBIP, length: 32)!, RouteTarget(nexthop: b.nhBlueB))
        try builder.addRoute(vrf: b.blue, IPv4Prefix(b.blueGateway, length: 32)!, RouteTarget(nexthop: b.nhReceive))
        try builder.addRoute(
            vrf: b.blue,
            IPv4Prefix("192.0.2.128/25")!,
            RouteTarget(nexthop: b.nhNodeA, label: b.vniBlue)
        )
        try builder.addRoute(vrf: b.blue, IPv4Prefix("203.0.113.0/24")!, RouteTarget(nexthop: b.nhECMP))
        try builder.addRoute(vrf: b.blue, IPv6Prefix(b.blueAIPv6, length: 128)!, RouteTarget(nexthop: b.nhBlueA))
        try builder.addRoute(vrf: b.blue, IPv6Prefix(b.blueBIPv6, length: 128)!, RouteTarget(nexthop: b.nhBlueB))
        try builder.addRoute(vrf: b.blue, IPv6Prefix(b.blueGateway6, length: 128)!, RouteTarget(nexthop: b.nhReceive))
        try builder.addRoute(
            vrf: b.blue,
            IPv6Prefix("2001:db8:1:1::/64")!,
            RouteTarget(nexthop: b.nhNodeA, label: b.vniBlue)
        )

        try builder.addRoute(vrf: b.red, IPv4Prefix(b.redAIP, length: 32)!, RouteTarget(nexthop: b.nhRedA))
        try builder.addRoute(vrf: b.red, IPv4Prefix(b.redGateway, length: 32)!, RouteTarget(nexthop: b.nhReceive))
        try builder.addRoute(
            vrf: b.red,
            IPv4Prefix("198.51.100.128/25")!,
            RouteTarget(nexthop: b.nhNodeB, label: b.labelAtNodeBRed)
        )

        try builder.setLabel(b.labelToBlueA, nexthop: b.nhBlueA)
        try builder.setLabel(b.labelToBlueB, nexthop: b.nhBlueB)
        try builder.setLabel(b.labelToRedA, nexthop: b.nhRedA)
        try builder.setVNI(b.vniBlue, vrf: b.blue)
        try builder.setVNI(b.vniRed, vrf: b.red)
    }
}
