import Testing

@testable import VRouterCore

@Suite struct FlowKeyTests {
    @Test func ipv4KeyPacksAndUnpacks() {
        let k = IPv4FlowKey(
            vrf: 0xBEEF,
            proto: 17,
            src: IPv4Address("198.51.100.7")!,
            dst: IPv4Address("203.0.113.9")!,
            sport: 40000,
            dport: 4789
        )
        #expect(k.vrf == 0xBEEF)
        #expect(k.proto == 17)
        #expect(k.src == IPv4Address("198.51.100.7")!)
        #expect(k.dst == IPv4Address("203.0.113.9")!)
        #expect(k.sport == 40000)
        #expect(k.dport == 4789)
        #expect(MemoryLayout<IPv4FlowKey>.size == 16)
        let r = k.reversed
        #expect(r.src == k.dst && r.dst == k.src && r.sport == k.dport && r.dport == k.sport)
        #expect(r.reversed == k)
        #expect(r != k)
    }

    @Test func ipv6KeyPacksAndUnpacks() {
        let s = IPv6Address("2001:db8::1")!
        let d = IPv6Address("2001:db8:ffff::8:9")!
        let k = IPv6FlowKey(vrf: 3, proto: 6, src: s, dst: d, sport: 1, dport: 65535)
        #expect(k.vrf == 3 && k.proto == 6 && k.sport == 1 && k.dport == 65535)
        #expect(k.src == s && k.dst == d)
        #expect(MemoryLayout<IPv6FlowKey>.size == 40)
        #expect(MemoryLayout<IPv6FlowKey>.size + 16 <= IPv6FlowKey.entryStride)
        #expect(k.reversed.reversed == k)
    }

    @Test func equalityAndHashingSeeEveryField() {
        let base = IPv4FlowKey(vrf: 1, proto: 6, src: 0xC633_6401, dst: 0xCB00_7101, sport: 1000, dport: 80)
        let variants = [
            IPv4FlowKey(vrf: 2, proto: 6, src: 0xC633_6401, dst: 0xCB00_7101, sport: 1000, dport: 80),
            IPv4FlowKey(vrf: 1, proto: 17, src: 0xC633_6401, dst: 0xCB00_7101, sport: 1000, dport: 80),
            IPv4FlowKey(vrf: 1, proto: 6, src: 0xC633_6402, dst: 0xCB00_7101, sport: 1000, dport: 80),
            IPv4FlowKey(vrf: 1, proto: 6, src: 0xC633_6401, dst: 0xCB00_7102, sport: 1000, dport: 80),
            IPv4FlowKey(vrf: 1, proto: 6, src: 0xC633_6401, dst: 0xCB00_7101, sport: 1001, dport: 80),
            IPv4FlowKey(vrf: 1, proto: 6, src: 0xC633_6401, dst: 0xCB00_7101, sport: 1000, dport: 81),
        ]
        for v in variants {
            #expect(v != base)
            #expect(v.flowHash() != base.flowHash())
        }
        #expect(Set(variants + [base]).count == 7)
        // Deterministic, seed-dependent.
        #expect(base.flowHash() == base.flowHash())
        #expect(base.flowHash(seed: 1) != base.flowHash(seed: 2))
        // Not symmetric (documented): the reverse direction hashes differently.
        #expect(base.reversed.flowHash() != base.flowHash())
    }

    /// Chi-square of `counts` against a uniform expectation, divided by the degrees of
    /// freedom: ≈1 for a uniform hash (σ ≈ sqrt(2/df)), ≫1 for clustering.
    static func chiSquarePerDF(_ counts: [Int], total: Int) -> Double {
        let expected = Double(total) / Double(counts.count)
        var chi = 0.0
        for c in counts {
            let d = Double(c) - expected
            chi += d * d / expected
        }
        return chi / Double(counts.count - 1)
    }

    /// A million sequential keys of several shapes (one field counting up) spread over
    /// a table's 2^17 primary buckets (multiply-shift of the hash), over the low 17 bits
    /// and over the top 16 bits (ECMP and UDP source port use those) as a random
    /// function would: chi-square per degree of freedom within 1 ± 0.05 (σ is 0.004
    /// at 2^17 bins), and no bucket far beyond its Poisson(8) tail.
    @Test func sequentialKeysSpreadUniformly() {
        let n = 1 << 20
        let bucketBits = 17
        let table = FlowTable<IPv4FlowKey>(capacity: 209_715)
        defer { table.deallocate() }
        #expect(table.slotCount == 2 << bucketBits)
        typealias Shape = (Int) -> UInt32
        let shapes: [(String, Shape)] = [
            (
                "dst",
                { i in
                    IPv4FlowKey(
                        vrf: 1,
                        proto: 17,
                        src: 0xC612_0001,
                        dst: 0xC612_0000 &+ UInt32(i),
                        sport: 5000,
                        dport: 4789
                    ).flowHash()
                }
            ),
            (
                "src",
                { i in
                    IPv4FlowKey(
                        vrf: 1,
                        proto: 6,
                        src: 0xC612_0000 &+ UInt32(i),
                        dst: 0xCB00_7101,
                        sport: 443,
                        dport: 443
                    ).flowHash()
                }
            ),
            (
                "ports",
                { i in
                    IPv4FlowKey(
                        vrf: 7,
                        proto: 6,
                        src: 0xC633_6401,
                        dst: 0xCB00_7101,
                        sport: UInt16(i & 0xFFFF),
                        dport: UInt16(i >> 16)
                    ).flowHash()
                }
            ),
            (
                "vrf+sport",
                { i in
                    IPv4FlowKey(
                        vrf: UInt16(i >> 12),
                        proto: 17,
                        src: 0xC000_0201,
                        dst: 0xC000_0202,
                        sport: UInt16(i & 0xFFF),
                        dport: 53
                    ).flowHash()
                }
            ),
            (
                "v6 dst",
                { i in
                    IPv6FlowKey(
                        vrf: 1,
                        proto: 17,
                        src: IPv6Address("2001:db8::1")!.value,
                        dst: IPv6Address("2001:db8:1::")!.value | UInt128(i),
                        sport: 1,
                        dport: 2
                    ).flowHash()
                }
            ),
            (
                "v6 src hi",
                { i in
                    IPv6FlowKey(
                        vrf: 1,
                        proto: 6,
                        src: IPv6Address("2001:db8::1")!.value | UInt128(i) << 64,
                        dst: IPv6Address("2001:db8::2")!.value,
                        sport: 1,
                        dport: 2
                    ).flowHash()
                }
            ),
        ]
        for (name, hashOf) in shapes {
            var buckets = [Int](repeating: 0, count: 1 << bucketBits)
            var low = [Int](repeating: 0, count: 1 << bucketBits)
            var high = [Int](repeating: 0, count: 1 << 16)
            for i in 0..<n {
                let h = hashOf(i)
                buckets[Int(table.primaryBucket(h))] += 1
                low[Int(h) & ((1 << bucketBits) - 1)] += 1
                high[Int(h >> 16)] += 1
            }
            for (what, counts) in [("table bucket", buckets), ("low bits", low), ("high bits", high)] {
                let c = Self.chiSquarePerDF(counts, total: n)
                #expect(c > 0.95 && c < 1.05, "\(name): \(what) chi2/df \(c)")
            }
            #expect(buckets.max()! <= 30, "\(name): fullest bucket \(buckets.max()!)")
        }
    }
}
