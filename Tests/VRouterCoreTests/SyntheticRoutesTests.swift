import Testing

@testable import VRouterCore

@Suite struct SyntheticRoutesTests {
    @Test func ipv4IsDeterministicAndDistinct() {
        let a = SyntheticRoutes.ipv4(count: 20000, seed: 1)
        let b = SyntheticRoutes.ipv4(count: 20000, seed: 1)
        let c = SyntheticRoutes.ipv4(count: 20000, seed: 2)
        #expect(a.map { "\($0.0)=\($0.1)" } == b.map { "\($0.0)=\($0.1)" })
        #expect(a.map { "\($0.0)" } != c.map { "\($0.0)" })
        #expect(a.count == 20000)
        #expect(Set(a.map { $0.0 }).count == 20000)
        #expect(a.allSatisfy { $0.1 < UInt32(SyntheticRoutes.nexthopCount) })
    }

    @Test func ipv4LengthMixIsTheDocumentedOne() {
        for routes in [SyntheticRoutes.ipv4(count: 50000, seed: 3), SyntheticRoutes.ipv4Uniform(count: 50000, seed: 3)]
        {
            var hist = [Int: Int]()
            for (p, _) in routes { hist[Int(p.length), default: 0] += 1 }
            for (len, n) in SyntheticRoutes.lengthCounts(SyntheticRoutes.ipv4Mix, count: 50000) {
                #expect(hist[len, default: 0] == n, "/\(len)")
            }
            let share = { (r: ClosedRange<Int>) in Double(routes.filter { r.contains(Int($0.0.length)) }.count) / 5e4 }
            #expect(share(24...24) > 0.58 && share(24...24) < 0.64)
            #expect(share(22...23) > 0.15 && share(22...23) < 0.21)
            #expect(share(16...21) > 0.14 && share(16...21) < 0.17)
            #expect(share(8...15) < 0.01 && share(25...32) < 0.02)
            // Every prefix is unicast space.
            #expect(routes.allSatisfy { $0.0.address.value >> 24 >= 1 && $0.0.address.value >> 24 < 224 })
        }
    }

    /// Clustered tables put many prefixes under few /16s; uniform ones spread them out.
    @Test func clusteringIsVisible() {
        let clustered = SyntheticRoutes.ipv4(count: 50000, seed: 4)
        let uniform = SyntheticRoutes.ipv4Uniform(count: 50000, seed: 4)
        let blocks = { (r: [(IPv4Prefix, UInt32)]) in Set(r.map { $0.0.address.value >> 16 }).count }
        #expect(blocks(clustered) * 3 < blocks(uniform))
    }

    @Test func ipv6IsDeterministicWithTheDocumentedMix() {
        let a = SyntheticRoutes.ipv6(count: 50000, seed: 5)
        let b = SyntheticRoutes.ipv6(count: 50000, seed: 5)
        #expect(a.map { "\($0.0)=\($0.1)" } == b.map { "\($0.0)=\($0.1)" })
        #expect(Set(a.map { $0.0 }).count == 50000)
        var hist = [Int: Int]()
        for (p, _) in a { hist[Int(p.length), default: 0] += 1 }
        for (len, n) in SyntheticRoutes.lengthCounts(SyntheticRoutes.ipv6Mix, count: 50000) {
            #expect(hist[len, default: 0] == n, "/\(len)")
        }
        #expect(abs(Double(hist[48, default: 0]) / 50000 - 0.47) < 0.01)
        #expect(a.allSatisfy { $0.0.address.value >> 125 == 1 })  // 2000::/3
        let u = SyntheticRoutes.ipv6Uniform(count: 5000, seed: 5)
        #expect(u.count == 5000 && u.allSatisfy { $0.0.address.value >> 125 == 1 })
    }

    @Test func lengthCountsAddUpForAnySize() {
        for n in [0, 1, 7, 99, 1000, 12345] {
            #expect(SyntheticRoutes.lengthCounts(SyntheticRoutes.ipv4Mix, count: n).reduce(0) { $0 + $1.count } == n)
            #expect(SyntheticRoutes.lengthCounts(SyntheticRoutes.ipv6Mix, count: n).reduce(0) { $0 + $1.count } == n)
        }
        #expect(SyntheticRoutes.ipv4(count: 10, seed: 1).count == 10)
        #expect(SyntheticRoutes.ipv6(count: 10, seed: 1).count == 10)
    }
}
