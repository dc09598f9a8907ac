// PacketParser on every supported stack, on every truncation of valid frames, and on
// random garbage and random mutations, always through a guard page so an out-of-bounds
// read faults. Mutations are also checked against a small reference parser written
// independently over [UInt8] (Swift's array bounds checks keep the reference honest).

import Testing

@testable import VRouterCore

/// Frames that parse, one per supported stack.
enum ParserCorpus {
    static func ipv6Ext(_ chain: [(UInt8, [UInt8])], final: UInt8, transport: [UInt8]) -> [UInt8] {
        // chain: (header type, body bytes including its own next-header byte placeholder)
        var body: [UInt8] = []
        for (i, (_, bytes)) in chain.enumerated() {
            var b = bytes
            b[0] = i + 1 < chain.count ? chain[i + 1].0 : final
            body += b
        }
        let first = chain.first?.0 ?? final
        return Frames.ethernet(type: 0x86DD) + Frames.ipv6(nextHeader: first, payload: body.count + transport.count)
            + body + transport
    }
    static let hbh: (UInt8, [UInt8]) = (0, [0, 0, 1, 4, 0, 0, 0, 0])  // PadN
    static let routing: (UInt8, [UInt8]) = (43, [0, 2, 0, 1] + [0, 0, 0, 0] + T.ip6Gw)  // type 0, 1 segment
    static let destOpts: (UInt8, [UInt8]) = (60, [0, 0, 1, 4, 0, 0, 0, 0])
    static func frag(offset: Int, more: Bool, id: UInt32 = 0xDEAD_BEEF) -> (UInt8, [UInt8]) {
        let w = UInt16(offset / 8) << 3 | (more ? 1 : 0)
        return (
            44,
            [
                0, 0, UInt8(w >> 8), UInt8(w & 0xFF), UInt8(id >> 24), UInt8(id >> 16 & 0xFF), UInt8(id >> 8 & 0xFF),
                UInt8(id & 0xFF),
            ]
        )
    }
    static let ah: (UInt8, [UInt8]) = (
        51, [0, 4] + [0, 0] + [0, 0, 1, 0] + [0, 0, 0, 1] + [UInt8](repeating: 0xAA, count: 12)
    )

    static var udp6: [UInt8] { Frames.udp(sport: 1000, dport: 2000, payload: [1, 2, 3, 4]) }
    static var tcp6: [UInt8] {
        Frames.tcp(sport: 3000, dport: 22, flags: 0x12, pseudo: pseudo6(T.ip6A, T.ip6B, nextHeader: 6, length: 20))
    }

    static var all: [(String, [UInt8])] {
        let tcp4 = Frames.tcp(
            sport: 40000,
            dport: 443,
            flags: 0x02,
            options: [2, 4, 5, 0xB4],
            pseudo: pseudo4(T.ip4A, T.ip4B, proto: 6, length: 24)
        )
        let echo4 = Frames.icmp(type: 8, rest: 0x4242_0001, payload: [9, 9, 9, 9])
        let echo6 = Frames.icmp(
            type: 128,
            rest: 0x7777_0002,
            payload: [],
            pseudo: pseudo6(T.ip6A, T.ip6B, nextHeader: 58, length: 8)
        )
        let arp =
            Frames.ethernet(dst: hex("ff ff ff ff ff ff"), type: 0x0806)
            + hex("00 01 08 00 06 04 00 01") + T.macA + T.ip4A + hex("00 00 00 00 00 00") + T.ip4Gw
        return [
            ("eth/ipv4/udp", Frames.udp4()),
            (
                "vlan/ipv4/tcp",
                Frames.ethernet(type: 0x0800, tags: [(0x8100, 0x2064)]) + Frames.ipv4(proto: 6, payload: 24) + tcp4
            ),
            ("802.1ad/ipv4/udp", Frames.udp4(tags: [(0x88A8, 0x0005)])),
            ("qinq/ipv4/udp", Frames.udp4(tags: [(0x88A8, 0x000A), (0x8100, 0x0064)])),
            ("ipv4 options/udp", Frames.udp4(options: [0x94, 0x04, 0x00, 0x00, 0x07, 0x07, 0x04, 0, 0, 0, 0, 0x00])),
            ("ipv4 first fragment", Frames.udp4(flags: 0x2000)),
            (
                "ipv4 later fragment",
                Frames.ethernet(type: 0x0800) + Frames.ipv4(proto: 17, payload: 16, flags: 0x00B9)
                    + [UInt8](repeating: 7, count: 16)
            ),
            ("ipv4 icmp echo", Frames.ethernet(type: 0x0800) + Frames.ipv4(proto: 1, payload: echo4.count) + echo4),
            ("ipv4 other proto", Frames.ethernet(type: 0x0800) + Frames.ipv4(proto: 47, payload: 4) + [0, 0, 8, 0]),
            ("eth/ipv6/udp", Frames.udp6()),
            (
                "qinq/ipv6/udp",
                Frames.ethernet(type: 0x86DD, tags: [(0x88A8, 1), (0x8100, 2)])
                    + Frames.ipv6(nextHeader: 17, payload: udp6.count) + udp6
            ),
            ("ipv6 icmpv6 echo", Frames.ethernet(type: 0x86DD) + Frames.ipv6(nextHeader: 58, payload: 8) + echo6),
            ("ipv6 hbh/udp", ipv6Ext([hbh], final: 17, transport: udp6)),
            ("ipv6 routing/tcp", ipv6Ext([routing], final: 6, transport: tcp6)),
            ("ipv6 dstopts/udp", ipv6Ext([destOpts], final: 17, transport: udp6)),
            ("ipv6 frag first/udp", ipv6Ext([frag(offset: 0, more: true)], final: 17, transport: udp6)),
            (
                "ipv6 frag later",
                ipv6Ext([frag(offset: 1448, more: false)], final: 17, transport: [UInt8](repeating: 1, count: 24))
            ),
            ("ipv6 ah/tcp", ipv6Ext([ah], final: 6, transport: tcp6)),
            (
                "ipv6 full chain/udp",
                ipv6Ext(
                    [hbh, destOpts, routing, frag(offset: 0, more: true), ah, destOpts],
                    final: 17,
                    transport: udp6
                )
            ),
            ("ipv6 no next header", ipv6Ext([destOpts], final: 59, transport: [])),
            ("arp", arp),
        ]
    }
}

@Suite struct HeadersParserTests {
    let guarded = GuardedBuffer()

    func parse(_ b: [UInt8]) -> ParsedPacket { PacketParser.parse(guarded.place(b), length: b.count) }

    @Test func ethernetIPv4UDP() {
        let f = Frames.udp4(sport: 40000, dport: 4789)
        let r = parse(f)
        #expect(r.isValid && r.family == .ipv4 && r.etherType == 0x0800 && r.vlanCount == 0)
        #expect(r.l3Offset == 14 && r.l3Length == 46 && r.l4Offset == 34 && r.proto == 17)
        #expect(r.sourcePort == 40000 && r.destinationPort == 4789 && r.hasTransportHeader && !r.isFragment)
        #expect(r.sourceIPv4 == T.v4(T.ip4A) && r.destinationIPv4 == T.v4(T.ip4B))
    }

    @Test func vlanAndQinQ() {
        let all = Dictionary(uniqueKeysWithValues: ParserCorpus.all)
        let v = parse(all["vlan/ipv4/tcp"]!)
        #expect(v.isValid && v.vlanCount == 1 && v.outerTPID == 0x8100 && v.outerTCI == 0x2064 && v.l3Offset == 18)
        #expect(
            v.proto == 6 && v.sourcePort == 40000 && v.destinationPort == 443 && v.tcpFlags == .syn && v.l4Offset == 38
        )
        let s = parse(all["802.1ad/ipv4/udp"]!)
        #expect(s.isValid && s.vlanCount == 1 && s.outerTPID == 0x88A8 && s.outerTCI == 5 && s.l3Offset == 18)
        let q = parse(all["qinq/ipv4/udp"]!)
        #expect(q.isValid && q.vlanCount == 2 && q.outerTPID == 0x88A8 && q.outerTCI == 10 && q.innerTCI == 100)
        #expect(q.l3Offset == 22 && q.l4Offset == 42 && q.destinationPort == 53)
        let q6 = parse(all["qinq/ipv6/udp"]!)
        #expect(q6.isValid && q6.family == .ipv6 && q6.vlanCount == 2 && q6.l3Offset == 22 && q6.l4Offset == 62)
        // A third tag is not something this node forwards.
        let triple = Frames.udp4(tags: [(0x88A8, 1), (0x8100, 2), (0x8100, 3)])
        #expect(parse(triple).dropReason == .unsupportedProtocol)
    }

    @Test func ipv4OptionsAndFragments() {
        let all = Dictionary(uniqueKeysWithValues: ParserCorpus.all)
        let o = parse(all["ipv4 options/udp"]!)
        #expect(o.isValid && o.l4Offset == 14 + 32 && o.destinationPort == 53)
        // Malformed options: a zero option length, and an option running past the header.
        for bad in [[0x07, 0x00, 0x00, 0x00], [0x01, 0x07, 0x09, 0x04], [0x01, 0x01, 0x01, 0x44]] as [[UInt8]] {
            #expect(parse(Frames.udp4(options: bad)).dropReason == .invalidPacket, "\(bad)")
        }
        // NOPs then end of list, then junk after it (ignored).
        #expect(parse(Frames.udp4(options: [0x01, 0x01, 0x00, 0x07])).isValid)
        let first = parse(all["ipv4 first fragment"]!)
        #expect(first.isValid && first.isFragment && first.moreFragments && first.fragmentOffset == 0)
        #expect(first.hasTransportHeader && first.sourcePort == 40000 && first.fragmentIdentification == 0x1234)
        let later = parse(all["ipv4 later fragment"]!)
        #expect(later.isValid && later.isFragment && !later.moreFragments && later.fragmentOffset == 185 * 8)
        #expect(!later.hasTransportHeader && later.sourcePort == 0 && later.l4Offset == 34 && later.proto == 17)
        let other = parse(all["ipv4 other proto"]!)
        #expect(other.isValid && other.proto == 47 && other.hasTransportHeader && other.sourcePort == 0)
    }

    @Test func ipv6ExtensionHeaders() {
        let all = Dictionary(uniqueKeysWithValues: ParserCorpus.all)
        for (name, l4) in [
            ("ipv6 hbh/udp", 54 + 8), ("ipv6 routing/tcp", 54 + 24), ("ipv6 dstopts/udp", 54 + 8),
            ("ipv6 frag first/udp", 54 + 8), ("ipv6 ah/tcp", 54 + 24),
            ("ipv6 full chain/udp", 54 + 8 + 8 + 24 + 8 + 24 + 8),
        ] {
            let r = parse(all[name]!)
            #expect(r.isValid && r.l4Offset == l4 && r.hasTransportHeader, "\(name)")
        }
        let udp = parse(all["ipv6 full chain/udp"]!)
        #expect(udp.proto == 17 && udp.sourcePort == 1000 && udp.destinationPort == 2000)
        #expect(
            udp.isFragment && udp.moreFragments && udp.fragmentOffset == 0 && udp.fragmentIdentification == 0xDEAD_BEEF
        )
        let tcp = parse(all["ipv6 ah/tcp"]!)
        #expect(tcp.proto == 6 && tcp.sourcePort == 3000 && tcp.tcpFlags == [.syn, .ack])
        let later = parse(all["ipv6 frag later"]!)
        #expect(later.isValid && later.isFragment && later.fragmentOffset == 1448 && !later.moreFragments)
        #expect(!later.hasTransportHeader && later.proto == 17 && later.l4Offset == 62 && later.sourcePort == 0)
        let none = parse(all["ipv6 no next header"]!)
        #expect(none.isValid && none.proto == 59 && !none.hasTransportHeader)

        // Malformed chains.
        let hbhSecond = ParserCorpus.ipv6Ext(
            [ParserCorpus.destOpts, ParserCorpus.hbh],
            final: 17,
            transport: ParserCorpus.udp6
        )
        #expect(parse(hbhSecond).dropReason == .invalidPacket)
        let twoFrags = ParserCorpus.ipv6Ext(
            [ParserCorpus.frag(offset: 0, more: true), ParserCorpus.frag(offset: 0, more: true)],
            final: 17,
            transport: ParserCorpus.udp6
        )
        #expect(parse(twoFrags).dropReason == .invalidPacket)
        let long = ParserCorpus.ipv6Ext(
            Array(repeating: ParserCorpus.destOpts, count: IPv6Header.maxExtensionHeaders + 1),
            final: 17,
            transport: ParserCorpus.udp6
        )
        #expect(parse(long).dropReason == .invalidPacket)
        let justEnough = ParserCorpus.ipv6Ext(
            Array(repeating: ParserCorpus.destOpts, count: IPv6Header.maxExtensionHeaders),
            final: 17,
            transport: ParserCorpus.udp6
        )
        #expect(parse(justEnough).isValid)
        // An extension header claiming more bytes than the payload length gives.
        var overlong = all["ipv6 dstopts/udp"]!
        overlong[54 + 1] = 3
        #expect(parse(overlong).dropReason == .truncated)
    }

    @Test func icmpAndARP() {
        let all = Dictionary(uniqueKeysWithValues: ParserCorpus.all)
        let e4 = parse(all["ipv4 icmp echo"]!)
        #expect(e4.isValid && e4.proto == 1 && e4.icmpType == 8 && e4.icmpCode == 0 && e4.icmpIdentifier == 0x4242)
        let e6 = parse(all["ipv6 icmpv6 echo"]!)
        #expect(e6.isValid && e6.proto == 58 && e6.icmpType == 128 && e6.icmpIdentifier == 0x7777)
        let a = parse(all["arp"]!)
        #expect(a.isValid && a.family == .arp && a.l3Length == 28)
        #expect(a.sourceIPv4 == T.v4(T.ip4A) && a.destinationIPv4 == T.v4(T.ip4Gw))
        var bad = all["arp"]!
        bad[18] = 8  // hardware length 8
        #expect(parse(bad).dropReason == .invalidPacket)
    }

    @Test func invalidHeaderFields() {
        var f = Frames.udp4()
        f[14] = 0x55  // version 5
        #expect(parse(f).dropReason == .invalidPacket)
        f = Frames.udp4()
        f[14] = 0x44  // IHL 4
        #expect(parse(f).dropReason == .invalidPacket)
        f = Frames.udp4()
        f[16] = 0
        f[17] = 19  // total length < header
        #expect(parse(f).dropReason == .invalidPacket)
        f = Frames.udp4()
        f[38] = 0
        f[39] = 7  // UDP length < 8
        #expect(parse(f).dropReason == .invalidPacket)
        f = Frames.udp4()
        f[39] += 1  // UDP length one past the IP payload
        #expect(parse(f).dropReason == .truncated)
        f = Frames.udp6()
        f[14] = 0x40
        #expect(parse(f).dropReason == .invalidPacket)
        let tcp =
            Frames.ethernet(type: 0x0800) + Frames.ipv4(proto: 6, payload: 20)
            + Frames.tcp(sport: 1, dport: 2, flags: 2, pseudo: pseudo4(T.ip4A, T.ip4B, proto: 6, length: 20))
        var t = tcp
        t[46] = 0x40  // data offset 4
        #expect(parse(t).dropReason == .invalidPacket)
        t[46] = 0x60  // data offset 6: past the 20-byte segment
        #expect(parse(t).dropReason == .truncated)
        #expect(
            parse(Frames.ethernet(type: 0x88CC) + [UInt8](repeating: 0, count: 46)).dropReason == .unsupportedProtocol
        )
        // Ethernet padding after a short datagram is not part of it.
        let padded = Frames.udp4(payload: [1]) + [UInt8](repeating: 0, count: 17)
        let r = parse(padded)
        #expect(r.isValid && r.l3Length == 29)
    }

    @Test func everyTruncationOfEveryValidFrameIsTruncated() {
        for (name, frame) in ParserCorpus.all {
            #expect(parse(frame).isValid, "\(name)")
            #expect(reference(frame) == parse(frame).summary, "\(name)")
            for cut in 0..<frame.count {
                let r = parse(Array(frame[0..<cut]))
                #expect(r.dropReason == .truncated, "\(name) cut at \(cut)")
            }
        }
    }

    @Test func randomGarbageNeverCrashesAndMatchesTheReference() {
        var rng = SplitMix64(seed: 0xBAD_F00D)
        let types: [UInt16] = [0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8]
        for i in 0..<20_000 {
            let n = Int(rng.next() % 160)
            var b = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            // Most random EtherTypes are unsupported; steer most strings into the parsers.
            if n >= 14 && i % 4 != 0 {
                let t = types[Int(rng.next() % 5)]
                b[12] = UInt8(t >> 8)
                b[13] = UInt8(t & 0xFF)
                if n > 14 && i % 2 == 0 { b[14] = t == 0x86DD ? 0x60 : 0x45 }
            }
            let r = parse(b)
            checkInvariants(r, length: n)
            #expect(r.summary == reference(b), "\(hexString(b))")
        }
    }

    @Test func randomMutationsOfValidFramesMatchTheReference() {
        var rng = SplitMix64(seed: 77)
        let corpus = ParserCorpus.all.map(\.1)
        var valid = 0
        for _ in 0..<40_000 {
            var b = corpus[Int(rng.next() % UInt64(corpus.count))]
            let flips = 1 + Int(rng.next() % 4)
            for _ in 0..<flips {
                let at = Int(rng.next() % UInt64(b.count))
                // Small changes to length-like bytes reach more branches than random bytes.
                b[at] =
                    rng.next() % 2 == 0
                    ? UInt8(truncatingIfNeeded: rng.next()) : b[at] &+ UInt8(truncatingIfNeeded: rng.next() % 5) &- 2
            }
            if rng.next() % 3 == 0 { b = Array(b[0..<Int(rng.next() % UInt64(b.count + 1))]) }
            let r = parse(b)
            checkInvariants(r, length: b.count)
            #expect(r.summary == reference(b), "\(hexString(b))")
            if r.isValid { valid += 1 }
        }
        #expect(valid > 1000)  // the mutations exercise the accepting paths too
    }

    /// What must hold for any result, whatever the input.
    func checkInvariants(_ r: ParsedPacket, length: Int) {
        guard r.isValid else { return }
        #expect(r.l3Offset + r.l3Length <= length)
        if r.family == .ipv4 { #expect(r.l3Length >= 20 && r.l4Offset <= r.l3Offset + r.l3Length) }
        if r.family == .ipv6 { #expect(r.l3Length >= 40 && r.l4Offset <= r.l3Offset + r.l3Length) }
        if r.hasTransportHeader {
            let avail = r.l3Offset + r.l3Length - r.l4Offset
            if r.proto == 17 { #expect(avail >= 8) }
            if r.proto == 6 { #expect(avail >= 20) }
        }
    }

    // MARK: reference parser

    /// The fields the reference computes, for comparison.
    struct Summary: Equatable {
        var reason: DropReason?
        var l3 = 0, l3Length = 0, l4 = 0
        var proto: UInt8 = 0
        var sport: UInt16 = 0, dport: UInt16 = 0
        var fragOffset = 0
        var more = false
        var transport = false
    }

    func reference(_ b: [UInt8]) -> Summary {
        var s = Summary()
        func fail(_ r: DropReason) -> Summary {
            var f = Summary()
            f.reason = r
            return f
        }
        guard b.count >= 14 else { return fail(.truncated) }
        var type = be16(b, 12)
        var off = 14
        for _ in 0..<2 where type == 0x8100 || type == 0x88A8 {
            guard b.count >= off + 4 else { return fail(.truncated) }
            type = be16(b, off + 2)
            off += 4
        }
        s.l3 = off
        let avail = b.count - off
        var end = 0
        var isFragment = false
        switch type {
        case 0x0806:
            guard avail >= 28 else { return fail(.truncated) }
            guard Array(b[off..<off + 6]) == [0, 1, 8, 0, 6, 4] else { return fail(.invalidPacket) }
            s.l3Length = 28
            return s
        case 0x0800:
            guard avail >= 20 else { return fail(.truncated) }
            let hl = Int(b[off] & 0xF) * 4
            let total = Int(be16(b, off + 2))
            guard b[off] >> 4 == 4, hl >= 20, total >= hl else { return fail(.invalidPacket) }
            guard total <= avail else { return fail(.truncated) }
            // Options: TLV walk, as RFC 791 lays them out.
            var i = 20
            while i < hl {
                let t = b[off + i]
                if t == 0 { break }
                if t == 1 {
                    i += 1
                    continue
                }
                guard i + 1 < hl, b[off + i + 1] >= 2, i + Int(b[off + i + 1]) <= hl else {
                    return fail(.invalidPacket)
                }
                i += Int(b[off + i + 1])
            }
            s.l3Length = total
            s.proto = b[off + 9]
            s.l4 = off + hl
            let fw = be16(b, off + 6)
            isFragment = fw & 0x3FFF != 0
            s.more = fw & 0x2000 != 0
            s.fragOffset = Int(fw & 0x1FFF) * 8
            if s.fragOffset != 0 { return s }
            end = off + total
        case 0x86DD:
            guard avail >= 40 else { return fail(.truncated) }
            guard b[off] >> 4 == 6 else { return fail(.invalidPacket) }
            let total = 40 + Int(be16(b, off + 4))
            guard total <= avail else { return fail(.truncated) }
            end = off + total
            var nh = b[off + 6]
            var at = off + 40
            var count = 0
            var sawFrag = false
            chain: while true {
                switch nh {
                case 0, 43, 60, 51:
                    if nh == 0 && count > 0 { return fail(.invalidPacket) }
                    guard at + 2 <= end else { return fail(.truncated) }
                    let size = nh == 51 ? (Int(b[at + 1]) + 2) * 4 : (Int(b[at + 1]) + 1) * 8
                    guard at + size <= end else { return fail(.truncated) }
                    nh = b[at]
                    at += size
                case 44:
                    if sawFrag { return fail(.invalidPacket) }
                    sawFrag = true
                    guard at + 8 <= end else { return fail(.truncated) }
                    let w = be16(b, at + 2)
                    isFragment = true
                    s.fragOffset = Int(w >> 3) * 8
                    s.more = w & 1 == 1
                    nh = b[at]
                    at += 8
                    if s.fragOffset != 0 {
                        s.proto = nh
                        s.l4 = at
                        s.l3Length = total
                        return s
                    }
                default:
                    break chain
                }
                count += 1
                if count > 12 { return fail(.invalidPacket) }
            }
            s.l3Length = total
            s.proto = nh
            s.l4 = at
            if nh == 59 { return s }
        default:
            return fail(.unsupportedProtocol)
        }
        // Transport.
        let room = end - s.l4
        let isV4 = type == 0x0800
        switch s.proto {
        case 17:
            guard room >= 8 else { return fail(.truncated) }
            if !isFragment {
                let ul = Int(be16(b, s.l4 + 4))
                guard ul >= 8 else { return fail(.invalidPacket) }
                guard ul <= room else { return fail(.truncated) }
            }
            s.sport = be16(b, s.l4)
            s.dport = be16(b, s.l4 + 2)
        case 6:
            guard room >= 20 else { return fail(.truncated) }
            let doff = Int(b[s.l4 + 12] >> 4) * 4
            guard doff >= 20 else { return fail(.invalidPacket) }
            guard doff <= room else { return fail(.truncated) }
            s.sport = be16(b, s.l4)
            s.dport = be16(b, s.l4 + 2)
        case 1 where isV4, 58 where !isV4:
            guard room >= 8 else { return fail(.truncated) }
        default:
            break
        }
        s.transport = true
        return s
    }
}

extension ParsedPacket {
    var summary: HeadersParserTests.Summary {
        guard isValid else { return HeadersParserTests.Summary(reason: dropReason) }
        return HeadersParserTests.Summary(
            reason: nil,
            l3: l3Offset,
            l3Length: l3Length,
            l4: family == .arp ? 0 : l4Offset,
            proto: proto,
            sport: sourcePort,
            dport: destinationPort,
            fragOffset: fragmentOffset,
            more: moreFragments,
            transport: hasTransportHeader
        )
    }
}
