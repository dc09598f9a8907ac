// Proxy ARP, proxy neighbour advertisement (RFC 4861 §7.2.4) and echo replies, in place:
// the expected frames are assembled by hand and compared byte for byte, and the cases that
// must not be answered leave the buffer exactly as it was.

import Testing

@testable import VRouterCore

@Suite struct HeadersResponderTests {
    func run(_ frame: [UInt8], _ body: (PacketPool, UInt32) -> Bool) -> (Bool, [UInt8], PacketMeta) {
        withPool { pool in
            let idx = pool.loaded(frame)
            let ok = body(pool, idx)
            return (ok, pool.array(idx), pool.meta(idx).pointee)
        }
    }

    // MARK: ARP

    static func arpFrame(
        op: UInt16 = 1,
        senderIP: [UInt8] = T.ip4A,
        targetIP: [UInt8] = T.ip4Gw,
        tags: [(UInt16, UInt16)] = []
    )
        -> [UInt8]
    {
        var w = ByteWriter()
        w.bytes(Frames.ethernet(dst: hex("ff ff ff ff ff ff"), src: T.macA, type: 0x0806, tags: tags))
        w.bytes(hex("00 01 08 00 06 04"))
        w.u16(op)
        w.bytes(T.macA + senderIP + [0, 0, 0, 0, 0, 0] + targetIP)
        w.bytes([UInt8](repeating: 0, count: 18))  // padding to 60 bytes
        return w.b
    }

    @Test func arpRequestBecomesReply() {
        let (ok, out, m) = run(Self.arpFrame(tags: [(0x8100, 7)])) { ARPResponder.reply(pool: $0, $1, mac: .vrouter) }
        let expected =
            T.macA + T.vrouterMAC + hex("81 00 00 07 08 06") + hex("00 01 08 00 06 04 00 02") + T.vrouterMAC + T.ip4Gw
            + T.macA + T.ip4A + [UInt8](repeating: 0, count: 18)
        #expect(ok && out == expected && m.flags.contains(.generated))
    }

    @Test func arpThatMustNotBeAnswered() {
        for (name, f) in [
            ("reply", Self.arpFrame(op: 2)),
            ("probe from 0.0.0.0", Self.arpFrame(senderIP: [0, 0, 0, 0])),
            ("gratuitous", Self.arpFrame(targetIP: T.ip4A)),
            ("short", Array(Self.arpFrame().prefix(40))),
            ("not ARP", Frames.udp4()),
        ] {
            let (ok, out, _) = run(f) { ARPResponder.reply(pool: $0, $1, mac: .vrouter) }
            #expect(!ok && out == f, "\(name)")
        }
    }

    // MARK: Neighbour discovery

    static let target = T.ip6Gw  // 2001:db8::1
    static let solicitedNode = hex("ff 02 00 00 00 00 00 00 00 00 00 01 ff 00 00 01")

    static func nsFrame(
        src: [UInt8] = T.ip6A,
        dst: [UInt8] = solicitedNode,
        hopLimit: UInt8 = 255,
        code: UInt8 = 0,
        target: [UInt8] = target,
        options: [UInt8]? = nil,
        breakChecksum: Bool = false
    ) -> [UInt8] {
        let opts = options ?? (src == [UInt8](repeating: 0, count: 16) ? [] : [1, 1] + T.macA)
        var icmp = ByteWriter()
        icmp.u8(135)
        icmp.u8(code)
        icmp.u16(0)
        icmp.u32(0)
        icmp.bytes(target)
        icmp.bytes(opts)
        icmp.set16(
            2,
            refChecksum(pseudo6(src, dst, nextHeader: 58, length: icmp.b.count) + icmp.b) ^ (breakChecksum ? 1 : 0)
        )
        return Frames.ethernet(dst: hex("33 33 ff 00 00 01"), src: T.macA, type: 0x86DD)
            + Frames.ipv6(src: src, dst: dst, nextHeader: 58, payload: icmp.b.count, hopLimit: hopLimit) + icmp.b
    }

    static func naFrame(dstMAC: [UInt8], dst: [UInt8], flags: UInt8) -> [UInt8] {
        var icmp = ByteWriter()
        icmp.u8(136)
        icmp.u8(0)
        icmp.u16(0)
        icmp.bytes([flags, 0, 0, 0])
        icmp.bytes(target)
        icmp.bytes([2, 1] + T.vrouterMAC)
        icmp.set16(2, refChecksum(pseudo6(target, dst, nextHeader: 58, length: 32) + icmp.b))
        return Frames.ethernet(dst: dstMAC, src: T.vrouterMAC, type: 0x86DD)
            + Frames.ipv6(src: target, dst: dst, nextHeader: 58, payload: 32, hopLimit: 255) + icmp.b
    }

    @Test func solicitationBecomesSolicitedAdvertisement() {
        let (ok, out, m) = run(Self.nsFrame()) { NeighborDiscoveryResponder.advertise(pool: $0, $1, mac: .vrouter) }
        // R | S | O = 0xE0, to the soliciting node.
        #expect(ok && out == Self.naFrame(dstMAC: T.macA, dst: T.ip6A, flags: 0xE0))
        #expect(m.proto == 58 && m.flags == [.ipv6, .generated] && Int(m.l4) == Int(m.offset) + 54)
        let (ok2, out2, _) = run(Self.nsFrame()) {
            NeighborDiscoveryResponder.advertise(pool: $0, $1, mac: .vrouter, isRouter: false)
        }
        #expect(ok2 && out2 == Self.naFrame(dstMAC: T.macA, dst: T.ip6A, flags: 0x60))
    }

    @Test func duplicateAddressDetectionIsAnsweredToAllNodes() {
        let ns = Self.nsFrame(src: [UInt8](repeating: 0, count: 16))
        #expect(ns.count == 14 + 40 + 24)  // no options: the NA is 8 bytes longer
        let (ok, out, _) = run(ns) { NeighborDiscoveryResponder.advertise(pool: $0, $1, mac: .vrouter) }
        // Solicited clear (RFC 4861 §7.2.4), R | O = 0xA0, to ff02::1 at 33:33:00:00:00:01.
        let allNodes = hex("ff 02 00 00 00 00 00 00 00 00 00 00 00 00 00 01")
        #expect(ok && out == Self.naFrame(dstMAC: hex("33 33 00 00 00 01"), dst: allNodes, flags: 0xA0))
        let v = ns.withUnsafeBytes {
            NeighborDiscoveryResponder.validateSolicitation($0.baseAddress!, length: ns.count)
        }
        #expect(v?.isDuplicateAddressDetection == true && v?.target == T.v6(Self.target))
    }

    @Test func invalidSolicitationsAreNotAnswered() {
        let zero = [UInt8](repeating: 0, count: 16)
        var withHBH = Self.nsFrame()
        // Insert a hop-by-hop header: ND with extension headers is refused.
        withHBH.insert(contentsOf: [58, 0, 1, 4, 0, 0, 0, 0], at: 54)
        withHBH[20] = 0
        withHBH[19] += 8
        for (name, f) in [
            ("hop limit 64", Self.nsFrame(hopLimit: 64)),
            ("code 1", Self.nsFrame(code: 1)),
            ("bad checksum", Self.nsFrame(breakChecksum: true)),
            ("multicast target", Self.nsFrame(target: hex("ff 02 00 00 00 00 00 00 00 00 00 00 00 00 00 01"))),
            ("zero-length option", Self.nsFrame(options: [1, 0, 0, 0, 0, 0, 0, 0])),
            ("option past the end", Self.nsFrame(options: [1, 2, 0, 0, 0, 0, 0, 0])),
            ("DAD with source link-layer option", Self.nsFrame(src: zero, options: [1, 1] + T.macA)),
            ("DAD not to a solicited-node address", Self.nsFrame(src: zero, dst: T.ip6Gw)),
            ("extension header", withHBH),
            ("echo request", Frames.udp6()),
        ] {
            let (ok, out, _) = run(f) { NeighborDiscoveryResponder.advertise(pool: $0, $1, mac: .vrouter) }
            #expect(!ok && out == f, "\(name)")
        }
        // Shorter than 24 bytes of ICMPv6.
        var short = Self.nsFrame(options: [])
        short.removeLast(8)
        short[19] = 16
        let (ok, out, _) = run(short) { NeighborDiscoveryResponder.advertise(pool: $0, $1, mac: .vrouter) }
        #expect(!ok && out == short)
    }

    // MARK: Echo

    @Test func echoRequestBecomesReply() {
        let data = Array("0123456789abcdef".utf8)
        let req = Frames.icmp(type: 8, rest: 0x1111_0007, payload: data)
        let f =
            Frames.ethernet(type: 0x0800, tags: [(0x8100, 3)])
            + Frames.ipv4(src: T.ip4A, dst: T.ip4Gw, proto: 1, payload: req.count, ttl: 9, id: 0x5555) + req + [
                0, 0, 0, 0,
            ]
        let (ok, out, m) = run(f) { EchoResponder.reply(pool: $0, $1) }
        let rep = Frames.icmp(type: 0, rest: 0x1111_0007, payload: data)
        let expected =
            Frames.ethernet(dst: T.macA, src: T.macB, type: 0x0800, tags: [(0x8100, 3)])
            + Frames.ipv4(src: T.ip4Gw, dst: T.ip4A, proto: 1, payload: rep.count, ttl: 64, id: 0x5555) + rep
        #expect(ok && out == expected)  // padding trimmed
        #expect(m.proto == 1 && m.flags == [.ipv4, .generated, .vlan])
        // Options are dropped from the reply.
        let withOptions =
            Frames.ethernet(type: 0x0800)
            + Frames.ipv4(
                src: T.ip4A,
                dst: T.ip4Gw,
                proto: 1,
                payload: req.count,
                options: [7, 7, 4, 0, 0, 0, 0, 0],
                ttl: 9,
                id: 0x5555
            )
            + req
        let (ok2, out2, _) = run(withOptions) { EchoResponder.reply(pool: $0, $1) }
        let expected2 =
            Frames.ethernet(dst: T.macA, src: T.macB, type: 0x0800)
            + Frames.ipv4(src: T.ip4Gw, dst: T.ip4A, proto: 1, payload: rep.count, ttl: 64, id: 0x5555) + rep
        #expect(ok2 && out2 == expected2)
    }

    @Test func icmpv6EchoRequestBecomesReply() {
        let data: [UInt8] = [1, 2, 3, 4, 5]
        let req = Frames.icmp(
            type: 128,
            rest: 0x2222_0001,
            payload: data,
            pseudo: pseudo6(T.ip6A, T.ip6Gw, nextHeader: 58, length: 13)
        )
        let f =
            Frames.ethernet(type: 0x86DD)
            + Frames.ipv6(src: T.ip6A, dst: T.ip6Gw, nextHeader: 58, payload: 13, hopLimit: 3) + req
        let (ok, out, m) = run(f) { EchoResponder.reply(pool: $0, $1) }
        let rep = Frames.icmp(
            type: 129,
            rest: 0x2222_0001,
            payload: data,
            pseudo: pseudo6(T.ip6Gw, T.ip6A, nextHeader: 58, length: 13)
        )
        let expected =
            Frames.ethernet(dst: T.macA, src: T.macB, type: 0x86DD)
            + Frames.ipv6(src: T.ip6Gw, dst: T.ip6A, nextHeader: 58, payload: 13, hopLimit: 64) + rep
        #expect(ok && out == expected && m.proto == 58)
    }

    @Test func echoThatMustNotBeAnswered() {
        let req = Frames.icmp(type: 8, rest: 1, payload: [1, 2, 3])
        func v4(dst: [UInt8] = T.ip4Gw, flags: UInt16 = 0, icmp: [UInt8]? = nil) -> [UInt8] {
            let i = icmp ?? req
            return Frames.ethernet(type: 0x0800) + Frames.ipv4(dst: dst, proto: 1, payload: i.count, flags: flags) + i
        }
        var badSum = req
        badSum[2] ^= 0x10
        var req6 = Frames.icmp(
            type: 128,
            rest: 1,
            payload: [],
            pseudo: pseudo6(T.ip6A, T.ip6B, nextHeader: 58, length: 8)
        )
        req6[3] ^= 1
        let mcast6 = hex("ff 02 00 00 00 00 00 00 00 00 00 00 00 00 00 01")
        let req6m = Frames.icmp(
            type: 128,
            rest: 1,
            payload: [],
            pseudo: pseudo6(T.ip6A, mcast6, nextHeader: 58, length: 8)
        )
        for (name, f) in [
            ("echo reply", v4(icmp: Frames.icmp(type: 0, rest: 1))),
            ("code 1", v4(icmp: Frames.icmp(type: 8, code: 1, rest: 1))),
            ("bad checksum", v4(icmp: badSum)),
            ("broadcast", v4(dst: hex("ff ff ff ff"))),
            ("multicast", v4(dst: hex("e0 00 00 01"))),
            ("fragment", v4(flags: 0x2000)),
            ("udp", Frames.udp4()),
            (
                "ipv6 multicast",
                Frames.ethernet(type: 0x86DD) + Frames.ipv6(dst: mcast6, nextHeader: 58, payload: 8) + req6m
            ),
            ("ipv6 bad checksum", Frames.ethernet(type: 0x86DD) + Frames.ipv6(nextHeader: 58, payload: 8) + req6),
        ] {
            let (ok, out, _) = run(f) { EchoResponder.reply(pool: $0, $1) }
            #expect(!ok && out == f, "\(name)")
        }
    }
}
