// MSS clamping (RFC 1624 checksum patch) against the reference checksum, with the option
// at even and odd offsets and after random NOP padding.

import Testing

@testable import VRouterCore

@Suite struct HeadersMSSClampTests {
    func segment(flags: UInt8, options: [UInt8]) -> [UInt8] {
        Frames.tcp(
            sport: 40000,
            dport: 443,
            flags: flags,
            options: options,
            payload: [],
            pseudo: pseudo4(T.ip4A, T.ip4B, proto: 6, length: 20 + options.count)
        )
    }

    func clamp(_ seg: [UInt8], to mss: UInt16) -> (Bool, [UInt8]) {
        var s = seg
        let changed = s.withUnsafeMutableBytes {
            MSSClamp.clamp(tcp: $0.baseAddress!, available: seg.count, maximum: mss)
        }
        return (changed, s)
    }

    func verifies(_ s: [UInt8]) -> Bool { refVerifies(s, pseudo: pseudo4(T.ip4A, T.ip4B, proto: 6, length: s.count)) }

    @Test func synMSSIsLoweredAtEvenAndOddOffsets() {
        let even = segment(flags: 0x02, options: [2, 4, 0x05, 0xB4])
        let (c1, s1) = clamp(even, to: 1410)
        #expect(c1 && be16(s1, 22) == 1410 && verifies(s1))
        #expect(Array(s1[0..<16]) == Array(even[0..<16]))  // only MSS and checksum change
        let odd = segment(flags: 0x12, options: [1, 2, 4, 0x05, 0xB4, 1, 1, 0])  // SYN-ACK, MSS at offset 23
        let (c2, s2) = clamp(odd, to: 1410)
        #expect(c2 && be16(s2, 23) == 1410 && verifies(s2))
    }

    @Test func leftAloneWhenNotNeeded() {
        let cases: [(String, [UInt8])] = [
            ("not a SYN", segment(flags: 0x10, options: [2, 4, 0x05, 0xB4])),
            ("already small", segment(flags: 0x02, options: [2, 4, 0x03, 0xE8])),
            ("no MSS", segment(flags: 0x02, options: [1, 1, 1, 0])),
            ("end of list before MSS", segment(flags: 0x02, options: [0, 2, 4, 0x05, 0xB4, 0, 0, 0])),
            ("bad MSS length", segment(flags: 0x02, options: [2, 3, 0x05, 0xB4])),
            ("option running past the header", segment(flags: 0x02, options: [1, 1, 8, 6])),
            ("zero option length", segment(flags: 0x02, options: [3, 0, 2, 4, 0x05, 0xB4, 0, 0])),
        ]
        for (name, seg) in cases {
            let (c, s) = clamp(seg, to: 1000)
            #expect(!c && s == seg, "\(name)")
        }
    }

    @Test func randomLayoutsAlwaysVerify() {
        var rng = SplitMix64(seed: 1624)
        for _ in 0..<3000 {
            let nops = Int(rng.next() % 20)
            let mss = UInt16(truncatingIfNeeded: rng.next())
            var opts = [UInt8](repeating: 1, count: nops) + [2, 4, UInt8(mss >> 8), UInt8(mss & 0xFF)]
            while opts.count % 4 != 0 { opts.append(0) }
            let seg = segment(flags: 0x02, options: opts)
            let limit = UInt16(truncatingIfNeeded: rng.next())
            let (c, s) = clamp(seg, to: limit)
            #expect(c == (mss > limit) && be16(s, 20 + nops + 2) == min(mss, limit) && verifies(s))
        }
    }

    @Test func poolVariantFindsTheSegmentInIPv4AndIPv6() {
        withPool { pool in
            let seg4 = segment(flags: 0x02, options: [2, 4, 0x23, 0x28])  // 9000
            let f4 =
                Frames.ethernet(type: 0x0800, tags: [(0x8100, 9)]) + Frames.ipv4(proto: 6, payload: seg4.count) + seg4
            let i4 = pool.loaded(f4)
            #expect(MSSClamp.clamp(pool: pool, i4, maximum: 1410))
            let o4 = pool.array(i4)
            #expect(be16(o4, 38 + 22) == 1410 && verifies(Array(o4[38...])))
            let seg6 = Frames.tcp(
                sport: 1,
                dport: 2,
                flags: 0x02,
                options: [2, 4, 0x05, 0xB4],
                pseudo: pseudo6(T.ip6A, T.ip6B, nextHeader: 6, length: 24)
            )
            let f6 = Frames.ethernet(type: 0x86DD) + Frames.ipv6(nextHeader: 6, payload: 24) + seg6
            let i6 = pool.loaded(f6)
            #expect(MSSClamp.clamp(pool: pool, i6, maximum: 1390))
            let o6 = pool.array(i6)
            #expect(
                be16(o6, 54 + 22) == 1390
                    && refVerifies(Array(o6[54...]), pseudo: pseudo6(T.ip6A, T.ip6B, nextHeader: 6, length: 24))
            )
            let u = pool.loaded(Frames.udp4())
            #expect(!MSSClamp.clamp(pool: pool, u, maximum: 1000))
        }
    }
}
