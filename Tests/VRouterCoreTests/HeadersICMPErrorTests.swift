// ICMPv4 (RFC 792, RFC 1812 §4.3.2) and ICMPv6 (RFC 4443) errors built in place: every
// field of the result checked, checksums by the reference, the exclusions one by one.

import Testing

@testable import VRouterCore

@Suite struct HeadersICMPErrorTests {
    let gw4 = T.v4(T.ip4Gw)
    let gw6 = T.v6(T.ip6Gw)

    /// Loads `frame`, runs `make`, returns (result, frame after).
    func run(
        _ frame: [UInt8],
        offset: Int? = nil,
        bufferSize: Int = 2048,
        _ make: (PacketPool, UInt32) -> Bool
    )
        -> (Bool, [UInt8], PacketMeta)
    {
        withPool(bufferSize: bufferSize) { pool in
            let idx = pool.loaded(frame)
            if let offset {
                pool.meta(idx).pointee.offset = UInt16(offset)
                pool.meta(idx).pointee.length = UInt16(frame.count)
                frame.withUnsafeBytes {
                    (pool.buffer(idx) + offset).copyMemory(from: $0.baseAddress!, byteCount: frame.count)
                }
            }
            let ok = make(pool, idx)
            return (ok, pool.array(idx), pool.meta(idx).pointee)
        }
    }

    /// The expected ICMPv4 error frame, assembled by hand.
    func expected4(about frame: [UInt8], l2: Int, type: UInt8, code: UInt8, rest: UInt32 = 0, quote: Int) -> [UInt8] {
        var w = ByteWriter()
        w.bytes(Array(frame[6..<12]))  // destination: the original source MAC
        w.bytes(Array(frame[0..<6]))
        w.bytes(Array(frame[12..<l2]))  // tags and EtherType unchanged
        let icmp = Frames.icmp(type: type, code: code, rest: rest, payload: Array(frame[l2..<(l2 + quote)]))
        w.bytes(
            Frames.ipv4(
                src: T.ip4Gw,
                dst: Array(frame[(l2 + 12)..<(l2 + 16)]),
                proto: 1,
                payload: icmp.count,
                ttl: 64,
                id: 0,
                tos: 0xC0
            )
        )
        w.bytes(icmp)
        return w.b
    }

    @Test func timeExceededCarriesTheWholeSmallDatagram() {
        let f = Frames.udp4(ttl: 1)
        let (ok, out, m) = run(f) { ICMPv4Error.make(.timeExceeded, pool: $0, $1, source: gw4) }
        #expect(ok)
        #expect(out == expected4(about: f, l2: 14, type: 11, code: 0, quote: 46))
        // Field by field, on top of the whole-frame comparison.
        #expect(Array(out[0..<6]) == T.macA && Array(out[6..<12]) == T.macB)
        #expect(out[14] == 0x45 && out[15] == 0xC0 && be16(out, 16) == 20 + 8 + 46 && out[22] == 64 && out[23] == 1)
        #expect(Array(out[26..<30]) == T.ip4Gw && Array(out[30..<34]) == T.ip4A)
        #expect(refVerifies(Array(out[14..<34])) && refVerifies(Array(out[34...])))
        #expect(Int(m.offset) == PacketPool.headroom - 28 && Int(m.length) == out.count)
        #expect(Int(m.l3) == Int(m.offset) + 14 && Int(m.l4) == Int(m.offset) + 34 && m.proto == 1)
        #expect(m.flags == [.ipv4, .generated] && m.flow == PacketMeta.noFlow)
    }

    @Test func unreachableAndFragNeededOnATaggedFrame() {
        let f = Frames.udp4(tags: [(0x8100, 0x0064)], flags: 0x4000)
        let (ok, out, m) = run(f) { ICMPv4Error.make(.netUnreachable, pool: $0, $1, source: gw4) }
        #expect(ok && out == expected4(about: f, l2: 18, type: 3, code: 0, quote: 46) && m.flags.contains(.vlan))
        let (ok2, out2, _) = run(f) { ICMPv4Error.make(.fragmentationNeeded(mtu: 1400), pool: $0, $1, source: gw4) }
        #expect(ok2 && out2 == expected4(about: f, l2: 18, type: 3, code: 4, rest: 1400, quote: 46))
        #expect(be16(out2, 18 + 20 + 6) == 1400)  // RFC 1191 next-hop MTU in bytes 6–7
        for (kind, code) in [
            (ICMPv4ErrorKind.hostUnreachable, 1), (.portUnreachable, 3), (.administrativelyProhibited, 13),
        ] {
            let (ok3, out3, _) = run(f) { ICMPv4Error.make(kind, pool: $0, $1, source: gw4) }
            #expect(ok3 && out3 == expected4(about: f, l2: 18, type: 3, code: UInt8(code), quote: 46))
        }
    }

    @Test func bigDatagramsAreQuotedUpTo576Bytes() {
        let f = Frames.udp4(
            payload: (0..<1400).map { UInt8(truncatingIfNeeded: $0) },
            options: [0x01, 0x01, 0x01, 0x00]
        )
        let (ok, out, _) = run(f) { ICMPv4Error.make(.timeExceeded, pool: $0, $1, source: gw4) }
        #expect(ok && out.count == 14 + 576 && be16(out, 16) == 576)
        #expect(out == expected4(about: f, l2: 14, type: 11, code: 0, quote: 548))
    }

    @Test func worksWithNoHeadroom() {
        let f = Frames.udp4()
        let (ok, out, m) = run(f, offset: 0) { ICMPv4Error.make(.timeExceeded, pool: $0, $1, source: gw4) }
        #expect(ok && out == expected4(about: f, l2: 14, type: 11, code: 0, quote: 46) && Int(m.offset) >= 0)
    }

    @Test func forbiddenCasesLeaveTheBufferAlone() {
        let dest3 = Frames.icmp(type: 3, code: 1, payload: Array(Frames.udp4()[14...]))
        let errorFrame = Frames.ethernet(type: 0x0800) + Frames.ipv4(proto: 1, payload: dest3.count) + dest3
        let later =
            Frames.ethernet(type: 0x0800) + Frames.ipv4(proto: 17, payload: 16, flags: 0x0010)
            + [UInt8](repeating: 0, count: 16)
        var cases: [(String, [UInt8])] = [
            ("error about an ICMP error", errorFrame),
            ("non-first fragment", later),
            ("link-layer broadcast", Frames.udp4(dstMAC: hex("ff ff ff ff ff ff"))),
            ("link-layer multicast", Frames.udp4(dstMAC: hex("01 00 5e 00 00 05"))),
            ("IP broadcast destination", Frames.udp4(dst: hex("ff ff ff ff"))),
            ("IP multicast destination", Frames.udp4(dst: hex("e0 00 00 05"))),
            ("truncated", Array(Frames.udp4().dropLast(3))),
            (
                "ARP",
                Frames.ethernet(type: 0x0806) + hex("00 01 08 00 06 04 00 01") + T.macA + T.ip4A + [0, 0, 0, 0, 0, 0]
                    + T.ip4Gw
            ),
        ]
        for src in ["00 00 00 00", "00 01 02 03", "7f 00 00 01", "e0 00 00 05", "f0 00 00 01", "ff ff ff ff"] {
            cases.append(("source \(src)", Frames.udp4(src: hex(src))))
        }
        for (name, f) in cases {
            let (ok, out, m) = run(f) { ICMPv4Error.make(.timeExceeded, pool: $0, $1, source: gw4) }
            #expect(!ok && out == f && Int(m.offset) == PacketPool.headroom, "\(name)")
        }
        // Allowed: an error about an echo request, and about a first fragment.
        let echo = Frames.icmp(type: 8, rest: 1, payload: [1, 2])
        let echoFrame = Frames.ethernet(type: 0x0800) + Frames.ipv4(proto: 1, payload: echo.count) + echo
        #expect(run(echoFrame) { ICMPv4Error.make(.timeExceeded, pool: $0, $1, source: gw4) }.0)
        #expect(run(Frames.udp4(flags: 0x2000)) { ICMPv4Error.make(.timeExceeded, pool: $0, $1, source: gw4) }.0)
    }

    // MARK: ICMPv6

    func expected6(
        about frame: [UInt8],
        l2: Int = 14,
        type: UInt8,
        code: UInt8,
        rest: UInt32 = 0,
        quote: Int
    ) -> [UInt8] {
        var w = ByteWriter()
        w.bytes(Array(frame[6..<12]))
        w.bytes(Array(frame[0..<6]))
        w.bytes(Array(frame[12..<l2]))
        let dst = Array(frame[(l2 + 8)..<(l2 + 24)])
        let icmp = Frames.icmp(
            type: type,
            code: code,
            rest: rest,
            payload: Array(frame[l2..<(l2 + quote)]),
            pseudo: pseudo6(T.ip6Gw, dst, nextHeader: 58, length: 8 + quote)
        )
        w.bytes(Frames.ipv6(src: T.ip6Gw, dst: dst, nextHeader: 58, payload: icmp.count, hopLimit: 64))
        w.bytes(icmp)
        return w.b
    }

    @Test func icmpv6TimeExceededAndNoRoute() {
        let f = Frames.udp6(hopLimit: 1)
        let (ok, out, m) = run(f) { ICMPv6Error.make(.timeExceeded, pool: $0, $1, source: gw6) }
        #expect(ok && out == expected6(about: f, type: 3, code: 0, quote: f.count - 14))
        #expect(
            refVerifies(Array(out[54...]), pseudo: pseudo6(T.ip6Gw, T.ip6A, nextHeader: 58, length: out.count - 54))
        )
        #expect(Int(m.offset) == PacketPool.headroom - 48 && m.proto == 58 && m.flags == [.ipv6, .generated])
        let (ok2, out2, _) = run(f) { ICMPv6Error.make(.noRoute, pool: $0, $1, source: gw6) }
        #expect(ok2 && out2 == expected6(about: f, type: 1, code: 0, quote: f.count - 14))
        let (ok3, out3, _) = run(f) { ICMPv6Error.make(.administrativelyProhibited, pool: $0, $1, source: gw6) }
        #expect(ok3 && out3 == expected6(about: f, type: 1, code: 1, quote: f.count - 14))
    }

    @Test func packetTooBigIsCappedAt1280() {
        let f = Frames.udp6(payload: (0..<1452).map { UInt8(truncatingIfNeeded: $0 * 7) })  // 1500-byte IPv6 packet
        let (ok, out, _) = run(f) { ICMPv6Error.make(.packetTooBig(mtu: 1450), pool: $0, $1, source: gw6) }
        #expect(ok && out.count == 14 + 1280)
        #expect(out == expected6(about: f, type: 2, code: 0, rest: 1450, quote: 1232))
        // A 512-byte buffer cannot hold 1280: the quote shrinks to what fits (450 bytes).
        var cut = Array(f.prefix(500))
        cut[18] = UInt8((500 - 54) >> 8)
        cut[19] = UInt8((500 - 54) & 0xFF)
        cut[58] = UInt8((500 - 54) >> 8)  // and the UDP length
        cut[59] = UInt8((500 - 54) & 0xFF)
        let (ok2, out2, m2) = run(cut, offset: 0, bufferSize: 512) {
            ICMPv6Error.make(.packetTooBig(mtu: 1450), pool: $0, $1, source: gw6)
        }
        #expect(ok2 && Int(m2.offset) + out2.count <= 512 && out2.count == 14 + 48 + 450)
        #expect(
            refVerifies(Array(out2[54...]), pseudo: pseudo6(T.ip6Gw, T.ip6A, nextHeader: 58, length: out2.count - 54))
        )
    }

    @Test func icmpv6Exclusions() {
        let err = Frames.icmp(
            type: 1,
            payload: Array(Frames.udp6()[14...]),
            pseudo: pseudo6(T.ip6A, T.ip6B, nextHeader: 58, length: 8 + 66)
        )
        let errFrame = Frames.ethernet(type: 0x86DD) + Frames.ipv6(nextHeader: 58, payload: err.count) + err
        let mcast = Frames.udp6(
            dst: hex("ff 02 00 00 00 00 00 00 00 00 00 00 00 00 00 01"),
            dstMAC: hex("33 33 00 00 00 01")
        )
        let laterICMP = ParserCorpus.ipv6Ext(
            [ParserCorpus.frag(offset: 8, more: false)],
            final: 58,
            transport: [1, 2, 3, 4, 5, 6, 7, 8]
        )
        let laterUDP = ParserCorpus.ipv6Ext(
            [ParserCorpus.frag(offset: 8, more: false)],
            final: 17,
            transport: [1, 2, 3, 4, 5, 6, 7, 8]
        )
        let cases: [(String, [UInt8], ICMPv6ErrorKind)] = [
            ("error about an error", errFrame, .timeExceeded),
            ("multicast destination", mcast, .timeExceeded),
            ("unicast IP to multicast MAC", Frames.udp6(dstMAC: hex("33 33 00 00 00 01")), .noRoute),
            ("unspecified source", Frames.udp6(src: [UInt8](repeating: 0, count: 16)), .timeExceeded),
            (
                "multicast source", Frames.udp6(src: hex("ff 05 00 00 00 00 00 00 00 00 00 00 00 00 00 02")),
                .packetTooBig(mtu: 1280)
            ),
            ("non-first fragment of ICMPv6", laterICMP, .packetTooBig(mtu: 1280)),
            ("truncated", Array(Frames.udp6().dropLast()), .timeExceeded),
        ]
        for (name, f, kind) in cases {
            let (ok, out, _) = run(f) { ICMPv6Error.make(kind, pool: $0, $1, source: gw6) }
            #expect(!ok && out == f, "\(name)")
        }
        // Packet Too Big goes even to a multicast destination; a non-first UDP fragment gets errors.
        #expect(run(mcast) { ICMPv6Error.make(.packetTooBig(mtu: 1280), pool: $0, $1, source: gw6) }.0)
        let (ok, out, _) = run(laterUDP) { ICMPv6Error.make(.timeExceeded, pool: $0, $1, source: gw6) }
        #expect(ok && out == expected6(about: laterUDP, type: 3, code: 0, quote: laterUDP.count - 14))
    }
}
