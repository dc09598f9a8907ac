import Foundation
import Glibc
import Testing
import VRouterCore
import VRouterTestSupport

@testable import VRouterIO

@Suite(.enabled(if: isRoot, "needs root for namespaces and links"), .serialized)
struct NetlinkTests {
    @Test func namespacesAreMadeAndRemovedLikeIPNetns() throws {
        let s = Scratch("n")
        defer {
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let ns = try s.namespace("x")
        #expect(ns.exists)
        #expect(NetworkNamespace.list().contains(s.name("x")))
        // iproute2 sees it and can run in it.
        let r = try run([ipTool] + ["-n", s.name("x"), "-o", "link"])
        #expect(r.status == 0)
        #expect(r.output.contains("lo:"))
        // A second namespace with the same name is refused, naming it.
        #expect(throws: SystemError.self) { try NetworkNamespace.create(named: s.name("x")) }
        do { _ = try NetworkNamespace.create(named: s.name("x")) } catch {
            #expect(error.errno == EEXIST)
            #expect(error.description.contains("netns \(s.name("x"))"))
            #expect(error.description.contains("File exists"))
        }
        try ns.delete()
        #expect(!ns.exists)
        #expect(!NetworkNamespace.list().contains(s.name("x")))
    }

    @Test func vethAcrossTwoNamespacesConfiguredAndListedBack() throws {
        let s = Scratch("v")
        defer {
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let a = try s.namespace("A")
        let b = try s.namespace("B")
        let nlA = try a.netlink()
        let nlB = try b.netlink()
        let ea = s.name("a")
        let eb = s.name("b")
        // A first pair in A only, so that the two ends below get different indices (the
        // kernel omits IFLA_LINK when the peer's index equals the link's own).
        try nlA.createVeth(s.name("d"), peer: s.name("e"))
        try nlA.createVeth(ea, peer: eb, peerNamespace: b)

        let macA = MACAddress("02:00:5e:10:00:0a")!
        let macB = MACAddress("02:00:5e:10:00:0b")!
        try nlA.setMAC(ea, macA)
        try nlB.setMAC(eb, macB)
        try nlA.setMTU(ea, 1400)
        try nlB.setMTU(eb, 1400)
        try nlA.setUp(ea)
        try nlB.setUp(eb)
        try nlA.setUp("lo")
        let addrsA = [InterfaceAddress("198.18.0.1/24")!, InterfaceAddress("2001:db8:1::1/64")!]
        let addrsB = [InterfaceAddress("198.18.0.2/24")!, InterfaceAddress("2001:db8:1::2/64")!]
        for x in addrsA { try nlA.addAddress(x, to: ea) }
        for x in addrsB { try nlB.addAddress(x, to: eb) }
        let routesA = [
            Route(IPPrefix("203.0.113.0/24")!, via: IPAddress("198.18.0.2")!, device: ea, metric: 100),
            // A gateway outside every local subnet: only reachable with onlink.
            Route(IPPrefix("198.51.100.0/24")!, via: IPAddress("192.0.2.1")!, device: ea, onlink: true, metric: 100),
            Route(.defaultIPv4, via: IPAddress("198.18.0.2")!, device: ea, metric: 100),
            Route(IPPrefix("2001:db8:99::/48")!, via: IPAddress("2001:db8:1::2")!, device: ea, metric: 100),
            Route(.defaultIPv6, via: IPAddress("2001:db8:1::2")!, device: ea, metric: 100),
            Route(IPPrefix("192.0.2.128/25")!, device: ea, metric: 100),
        ]
        for r in routesA { try nlA.addRoute(r) }

        // Links, read back.
        let la = try nlA.link(ea)
        let lb = try nlB.link(eb)
        #expect(la.kind == "veth")
        #expect(la.mac == macA)
        #expect(lb.mac == macB)
        #expect(la.mtu == 1400 && lb.mtu == 1400)
        #expect(la.isUp && lb.isUp)
        // Each end names its peer's index in the other namespace.
        #expect(la.index != lb.index)
        #expect(la.peerIndex == lb.index)
        #expect(lb.peerIndex == la.index)
        #expect(try nlA.links().map(\.name).contains(ea))
        #expect(try !nlA.links().map(\.name).contains(eb))

        // Addresses, read back.
        let gotA = try nlA.addresses(of: ea).filter { $0.scope == 0 }.map(\.address)
        #expect(Set(gotA) == Set(addrsA))
        let gotB = try nlB.addresses(of: eb).filter { $0.scope == 0 }.map(\.address)
        #expect(Set(gotB) == Set(addrsB))

        // Routes, read back: ours with their flags, plus the kernel's connected route.
        let listed = try nlA.routes()
        for r in routesA { #expect(listed.contains(r), "route \(r) missing from \(listed)") }
        #expect(
            listed.contains {
                $0.destination == IPPrefix("198.18.0.0/24")! && $0.proto == Route.protoKernel && $0.device == ea
            }
        )

        // iproute2 agrees (outside oracle).
        let ipr = try run([ipTool] + ["-n", a.name!, "route", "show", "198.51.100.0/24"])
        #expect(ipr.output.contains("via 192.0.2.1 dev \(ea)"))
        #expect(ipr.output.contains("onlink"))
        // And the link really carries traffic.
        let ping = try run([ipTool] + inNamespace(a, ["ping", "-c", "1", "-W", "2", "198.18.0.2"]))
        #expect(ping.status == 0, "\(ping.output)\(ping.error)")

        // Removal.
        try nlA.removeRoute(routesA[0])
        try nlA.removeRoute(routesA[3])
        try nlA.removeAddress(addrsA[1], from: ea)
        let after = try nlA.routes()
        #expect(!after.contains(routesA[0]))
        #expect(!after.contains(routesA[3]))
        #expect(after.contains(routesA[1]))
        #expect(try !nlA.addresses(of: ea).map(\.address).contains(addrsA[1]))

        // Rename (down first) and move into the other namespace under a new name.
        try nlA.setUp(ea, false)
        try nlA.renameLink(ea, to: s.name("r"))
        #expect(try nlA.link(s.name("r")).index == la.index)
        try nlA.moveLink(s.name("r"), to: b, newName: "eth7")
        #expect(throws: SystemError.self) { try nlA.link(s.name("r")) }
        let moved = try nlB.link("eth7")
        #expect(moved.kind == "veth")
        #expect(moved.mac == macA)
        // Deleting one end deletes the pair.
        try nlB.deleteLink("eth7")
        #expect(throws: SystemError.self) { try nlB.link(eb) }
    }

    @Test func errorsNameTheCallTheObjectAndTheErrno() throws {
        let s = Scratch("e")
        defer {
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let a = try s.namespace("A")
        let nl = try a.netlink()

        // A missing device.
        do {
            try nl.setUp(s.name("none"))
            Issue.record("setUp of a missing link succeeded")
        } catch {
            #expect(error.errno == ENODEV)
            #expect(error.call == "RTM_GETLINK")
            #expect(error.description.contains("link \(s.name("none")) in netns \(a.name!)"))
            #expect(error.description.contains("No such device"))
        }

        // A namespace that does not exist.
        do {
            _ = try NetworkNamespace.named(s.name("gone")).netlink()
            Issue.record("netlink in a missing namespace succeeded")
        } catch {
            #expect(error.errno == ENOENT)
            #expect(error.description.contains("netns \(s.name("gone"))"))
            #expect(error.description.contains("No such file or directory"))
        }
        // A bad namespace name.
        #expect(throws: SystemError.self) { try NetworkNamespace.create(named: "vrt/../x") }
        // A bad interface name.
        do {
            try nl.createVeth("vrt-this-name-is-too-long", peer: s.name("p"))
            Issue.record("a 25-byte interface name was accepted")
        } catch {
            #expect(error.errno == EINVAL)
            #expect(error.description.contains("vrt-this-name-is-too-long"))
        }

        // The kernel's own refusals, with its extended-ack text where it gives one.
        try nl.createVeth(s.name("a"), peer: s.name("b"))
        do {
            try nl.createVeth(s.name("a"), peer: s.name("c"))
            Issue.record("a duplicate link was created")
        } catch {
            #expect(error.errno == EEXIST)
            #expect(error.call == "RTM_NEWLINK(veth)")
        }
        try nl.setUp(s.name("a"))
        try nl.addAddress(InterfaceAddress("198.18.1.1/24")!, to: s.name("a"))
        #expect(throws: SystemError.self) { try nl.addAddress(InterfaceAddress("198.18.1.1/24")!, to: s.name("a")) }
        do {
            // Gateway not on any link, no onlink: the kernel says why.
            try nl.addRoute(Route(IPPrefix("203.0.113.0/24")!, via: IPAddress("192.0.2.99")!, device: s.name("a")))
            Issue.record("an unreachable gateway was accepted")
        } catch {
            #expect(error.errno == ENETUNREACH)
            #expect(error.description.contains("RTM_NEWROUTE"))
            #expect(error.description.contains("203.0.113.0/24 via 192.0.2.99"))
            #expect(error.detail != nil, "no extended ack text: \(error)")
        }
        // A route that is not there.
        #expect(throws: SystemError.self) {
            try nl.removeRoute(Route(IPPrefix("203.0.113.0/24")!, via: IPAddress("198.18.1.7")!))
        }
        // Nothing half-made remains: only the one veth pair we made on purpose.
        #expect(try nl.links().filter { $0.name.hasPrefix(s.tag) }.map(\.name).sorted() == [s.name("a"), s.name("b")])
    }
}
