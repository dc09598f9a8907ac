import Testing

@testable import VRouterCore

/// The obviously correct answer: try every length from longest to shortest.
struct ReferenceLPM4 {
    var byLength = [[UInt32: UInt32]](repeating: [:], count: 33)
    init(_ routes: [(IPv4Prefix, UInt32)]) {
        for (p, v) in routes { byLength[Int(p.length)][p.address.value] = v }
    }
    mutating func apply(_ changes: [(IPv4Prefix, UInt32?)]) {
        for (p, v) in changes { byLength[Int(p.length)][p.address.value] = v }
    }
    func lookup(_ a: UInt32) -> UInt32 {
        for l in stride(from: 32, through: 0, by: -1) {
            if let v = byLength[l][a & IPv4Prefix.mask(l)] { return v }
        }
        return LPM.miss
    }
    var count: Int { byLength.reduce(0) { $0 + $1.count } }
}

struct ReferenceLPM6 {
    var byLength = [[UInt128: UInt32]](repeating: [:], count: 129)
    init(_ routes: [(IPv6Prefix, UInt32)]) {
        for (p, v) in routes { byLength[Int(p.length)][p.address.value] = v }
    }
    mutating func apply(_ changes: [(IPv6Prefix, UInt32?)]) {
        for (p, v) in changes { byLength[Int(p.length)][p.address.value] = v }
    }
    func lookup(_ a: UInt128) -> UInt32 {
        for l in stride(from: 128, through: 0, by: -1) where !byLength[l].isEmpty {
            if let v = byLength[l][a & IPv6Prefix.mask(l)] { return v }
        }
        return LPM.miss
    }
    var count: Int { byLength.reduce(0) { $0 + $1.count } }
}

/// Lengths that sit on or next to the direct-pointing and 6-bit stride boundaries
/// (direct widths 8/12/16/18, strides after them), drawn often.
let v4Lengths = [0, 1, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 29, 30, 31, 32]
let v6Lengths = [
    0, 1, 7, 8, 12, 14, 16, 20, 22, 28, 29, 32, 34, 40, 46, 47, 48, 52, 56, 58, 64, 65, 70, 76, 100, 112, 124, 125, 127,
    128,
]

func randomRoutes4(_ n: Int, _ rng: inout SplitMix64, values: UInt64 = 1000) -> [(IPv4Prefix, UInt32)] {
    // Half the prefixes fall under a few /10s so they nest and share nodes.
    let hubs = (0..<4).map { _ in UInt32(truncatingIfNeeded: rng.next()) & IPv4Prefix.mask(10) }
    return (0..<n).map { _ in
        let len = rng.next() % 3 == 0 ? Int(rng.next() % 33) : v4Lengths[Int(rng.next() % UInt64(v4Lengths.count))]
        var a = UInt32(truncatingIfNeeded: rng.next())
        if rng.next() % 2 == 0 { a = hubs[Int(rng.next() % 4)] | a & ~IPv4Prefix.mask(10) }
        return (IPv4Prefix(truncating: IPv4Address(a), length: len), UInt32(rng.next() % values))
    }
}

func randomRoutes6(_ n: Int, _ rng: inout SplitMix64, values: UInt64 = 1000) -> [(IPv6Prefix, UInt32)] {
    let hubs = (0..<4).map { _ in (UInt128(rng.next()) << 64) & IPv6Prefix.mask(24) }
    return (0..<n).map { _ in
        let len = rng.next() % 3 == 0 ? Int(rng.next() % 129) : v6Lengths[Int(rng.next() % UInt64(v6Lengths.count))]
        var a = UInt128(rng.next()) << 64 | UInt128(rng.next())
        if rng.next() % 2 == 0 { a = hubs[Int(rng.next() % 4)] | a & ~IPv6Prefix.mask(24) }
        return (IPv6Prefix(truncating: IPv6Address(a), length: len), UInt32(rng.next() % values))
    }
}

/// Random addresses plus every prefix's first and last address and their neighbours.
func probes4(_ routes: [(IPv4Prefix, UInt32)], _ rng: inout SplitMix64, random: Int) -> [UInt32] {
    var out = (0..<random).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
    out += [0, 1, .max, .max - 1, 0x8000_0000, 0x7FFF_FFFF]
    for (p, _) in routes {
        let lo = p.address.value
        let hi = lo | ~IPv4Prefix.mask(Int(p.length))
        out += [lo, hi, lo &- 1, hi &+ 1]
    }
    return out
}

func probes6(_ routes: [(IPv6Prefix, UInt32)], _ rng: inout SplitMix64, random: Int) -> [UInt128] {
    var out = (0..<random).map { _ in UInt128(rng.next()) << 64 | UInt128(rng.next()) }
    out += [0, 1, .max, .max - 1, UInt128(1) << 127]
    for (p, _) in routes {
        let lo = p.address.value
        let hi = lo | ~IPv6Prefix.mask(Int(p.length))
        out += [lo, hi, lo &- 1, hi &+ 1]
    }
    return out
}

/// Skip nodes in a table (to show a test exercises them).
func skipNodes(_ a: PoptrieArrays) -> Int {
    (0..<a.nodes.count).filter { a.nodes.base[$0].base1 >= PoptrieNode.skipFlag }.count
}

/// Checks every probe against the reference, one at a time and batched; returns mismatches.
func mismatches4(_ fib: IPv4FIB, _ ref: ReferenceLPM4, _ probes: [UInt32]) -> Int {
    let view = fib.view
    var results = [UInt32](repeating: 0, count: probes.count)
    probes.withUnsafeBufferPointer { k in
        results.withUnsafeMutableBufferPointer { r in view.lookup(k.baseAddress!, r.baseAddress!, count: k.count) }
    }
    var bad = 0
    for (i, a) in probes.enumerated() {
        let want = ref.lookup(a)
        if view.lookup(a) != want || results[i] != want { bad += 1 }
    }
    return bad
}

func mismatches6(_ fib: IPv6FIB, _ ref: ReferenceLPM6, _ probes: [UInt128]) -> Int {
    let view = fib.view
    var results = [UInt32](repeating: 0, count: probes.count)
    probes.withUnsafeBufferPointer { k in
        results.withUnsafeMutableBufferPointer { r in view.lookup(k.baseAddress!, r.baseAddress!, count: k.count) }
    }
    var bad = 0
    for (i, a) in probes.enumerated() {
        let want = ref.lookup(a)
        if view.lookup(a) != want || results[i] != want { bad += 1 }
    }
    return bad
}

@Suite struct LPMTests {
    @Test func emptyTablesMissAndStaySmall() {
        let v4 = IPv4FIB(routes: [] as [(IPv4Prefix, UInt32)])
        let v6 = IPv6FIB(routes: [] as [(IPv6Prefix, UInt32)])
        for a: UInt32 in [0, 1, 0xC612_0001, .max] { #expect(v4.view.lookup(a) == LPM.miss) }
        for a: UInt128 in [0, 1, .max] { #expect(v6.view.lookup(a) == LPM.miss) }
        #expect(v4.routeCount == 0 && v6.routeCount == 0)
        #expect(v4.memoryBytes <= 2048, "\(v4.memoryBytes)")
        #expect(v6.memoryBytes <= 2048, "\(v6.memoryBytes)")
        #expect(v4.memoryBytes + v4.ribBytes + v6.memoryBytes + v6.ribBytes <= 64 * 1024)
    }

    @Test func defaultRouteOnly() {
        let v4 = IPv4FIB(routes: [(IPv4Prefix("0.0.0.0/0")!, UInt32(7))])
        let v6 = IPv6FIB(routes: [(IPv6Prefix("::/0")!, UInt32(9))])
        var rng = SplitMix64(seed: 1)
        for _ in 0..<1000 {
            #expect(v4.view.lookup(UInt32(truncatingIfNeeded: rng.next())) == 7)
            #expect(v6.view.lookup(UInt128(rng.next()) << 64 | UInt128(rng.next())) == 9)
        }
        #expect(v4.view.lookup(.max) == 7 && v6.view.lookup(.max) == 9)
    }

    @Test func duplicatePrefixesLastValueWins() {
        let p = IPv4Prefix("198.51.100.0/24")!
        let v4 = IPv4FIB(routes: [(p, 1), (IPv4Prefix("192.0.2.0/24")!, 5), (p, 2), (p, 3)] as [(IPv4Prefix, UInt32)])
        #expect(v4.routeCount == 2)
        #expect(v4.view.lookup(IPv4Address("198.51.100.77")!.value) == 3)
        #expect(v4.view.lookup(IPv4Address("192.0.2.1")!.value) == 5)
        let q = IPv6Prefix("2001:db8:1::/48")!
        let v6 = IPv6FIB(routes: [(q, 4), (q, 8)] as [(IPv6Prefix, UInt32)])
        #expect(v6.routeCount == 1)
        #expect(v6.view.lookup(IPv6Address("2001:db8:1::5")!.value) == 8)
        // In a batch of changes, too.
        let changed = v4.applying([(p, 10), (p, nil), (p, 11)] as [(IPv4Prefix, UInt32?)])
        #expect(changed.view.lookup(IPv4Address("198.51.100.1")!.value) == 11)
    }

    @Test func hostRoutesInsideSubnets() {
        let v4 = IPv4FIB(
            routes: [
                (IPv4Prefix("198.51.100.0/24")!, 1), (IPv4Prefix("198.51.100.7/32")!, 2),
                (IPv4Prefix("198.51.100.255/32")!, 3), (IPv4Prefix("192.0.2.0/32")!, 4),
            ] as [(IPv4Prefix, UInt32)]
        )
        let l = { (t: String) in v4.view.lookup(IPv4Address(t)!.value) }
        #expect(l("198.51.100.7") == 2)
        #expect(l("198.51.100.6") == 1 && l("198.51.100.8") == 1)
        #expect(l("198.51.100.255") == 3 && l("198.51.101.0") == LPM.miss)
        #expect(l("192.0.2.0") == 4 && l("192.0.2.1") == LPM.miss)
        let v6 = IPv6FIB(
            routes: [
                (IPv6Prefix("2001:db8::/32")!, 1), (IPv6Prefix("2001:db8::1/128")!, 2),
                (IPv6Prefix("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff/128")!, 3),
            ] as [(IPv6Prefix, UInt32)]
        )
        let m = { (t: String) in v6.view.lookup(IPv6Address(t)!.value) }
        #expect(m("2001:db8::1") == 2 && m("2001:db8::") == 1 && m("2001:db8::2") == 1)
        #expect(m("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff") == 3)
        #expect(m("2001:db9::") == LPM.miss)
    }

    @Test func largestValueAndValueRange() {
        let v4 = IPv4FIB(
            routes: [(IPv4Prefix("192.0.2.0/24")!, LPM.maxValue - 1), (IPv4Prefix("0.0.0.0/1")!, 0)]
                as [(IPv4Prefix, UInt32)]
        )
        #expect(v4.view.lookup(IPv4Address("192.0.2.9")!.value) == LPM.maxValue - 1)
        #expect(v4.view.lookup(1) == 0)
        #expect(LPM.maxValue >= 1 << 30)
    }

    /// Few distinct values make whole subtrees answer one value (pruned to leaves) and
    /// chains of single-child nodes (skip nodes); many make neither.
    @Test(arguments: [
        (300, 1 as UInt64, 1000 as UInt64), (3000, 2, 1000), (20000, 3, 1000), (3000, 7, 2), (20000, 8, 3),
    ])
    func randomIPv4AgainstBruteForce(size: Int, seed: UInt64, values: UInt64) {
        var rng = SplitMix64(seed: seed)
        let routes = randomRoutes4(size, &rng, values: values)
        let ref = ReferenceLPM4(routes)
        let fib = IPv4FIB(routes: routes)
        #expect(fib.routeCount == ref.count)
        #expect(skipNodes(fib.arrays) > 0)
        #expect(mismatches4(fib, ref, probes4(routes, &rng, random: 20000)) == 0)
    }

    @Test(arguments: [
        (300, 4 as UInt64, 1000 as UInt64), (3000, 5, 1000), (20000, 6, 1000), (3000, 9, 2), (20000, 10, 3),
    ])
    func randomIPv6AgainstBruteForce(size: Int, seed: UInt64, values: UInt64) {
        var rng = SplitMix64(seed: seed)
        let routes = randomRoutes6(size, &rng, values: values)
        let ref = ReferenceLPM6(routes)
        let fib = IPv6FIB(routes: routes)
        #expect(fib.routeCount == ref.count)
        #expect(skipNodes(fib.arrays) > 0)
        // Chains several levels long merge into one node (long IPv6 prefixes under short ones).
        #expect(
            (0..<fib.arrays.nodes.count).contains {
                fib.arrays.nodes.base[$0].base1 >= PoptrieNode.skipFlag && fib.arrays.nodes.base[$0].leafvec > 6
            }
        )
        #expect(mismatches6(fib, ref, probes6(routes, &rng, random: 20000)) == 0)
    }

    /// Every direct-pointing width gives the same answers (widths change the trie below).
    @Test(arguments: [1, 6, 8, 12, 16, 18, 20])
    func everyDirectWidthIPv4(bits: Int) {
        var rng = SplitMix64(seed: 10 + UInt64(bits))
        let routes = randomRoutes4(3000, &rng)
        let fib = IPv4FIB(routes: routes, directBits: bits)
        #expect(fib.arrays.directBits == bits)
        #expect(mismatches4(fib, ReferenceLPM4(routes), probes4(routes, &rng, random: 5000)) == 0)
    }

    @Test(arguments: [1, 8, 12, 16, 18])
    func everyDirectWidthIPv6(bits: Int) {
        var rng = SplitMix64(seed: 20 + UInt64(bits))
        let routes = randomRoutes6(3000, &rng)
        let fib = IPv6FIB(routes: routes, directBits: bits)
        #expect(fib.arrays.directBits == bits)
        #expect(mismatches6(fib, ReferenceLPM6(routes), probes6(routes, &rng, random: 5000)) == 0)
    }

    @Test(arguments: [(500, 21 as UInt64, 1000 as UInt64), (5000, 22, 1000), (5000, 23, 2)])
    func applyingIPv4MatchesBruteForceAndRebuild(size: Int, seed: UInt64, values: UInt64) {
        var rng = SplitMix64(seed: seed)
        var routes = randomRoutes4(size, &rng, values: values)
        var ref = ReferenceLPM4(routes)
        var fib = IPv4FIB(routes: routes)
        for round in 0..<8 {
            // Delete some existing prefixes, re-add some deleted ones, add new ones.
            var changes: [(IPv4Prefix, UInt32?)] = []
            for _ in 0..<(round % 3 == 0 ? 1 : size / 10) {
                let (p, _) = routes[Int(rng.next() % UInt64(routes.count))]
                changes.append((p, rng.next() % 2 == 0 ? nil : UInt32(rng.next() % values)))
            }
            changes += randomRoutes4(size / 20, &rng, values: values).map { ($0.0, $0.1) }
            if round == 5 { changes.append((IPv4Prefix("0.0.0.0/0")!, 77)) }
            if round == 6 { changes.append((IPv4Prefix("0.0.0.0/0")!, nil)) }
            routes += changes.compactMap { c in c.1.map { (c.0, $0) } }
            ref.apply(changes)
            fib = fib.applying(changes)
            let scratch = IPv4FIB(routes: fib.allRoutes)
            #expect(fib.routeCount == ref.count)
            let probes = probes4(routes, &rng, random: 5000)
            #expect(mismatches4(fib, ref, probes) == 0, "round \(round)")
            #expect(mismatches4(scratch, ref, probes) == 0, "round \(round)")
            #expect(fib.allRoutes.map { "\($0.0)=\($0.1)" } == scratch.allRoutes.map { "\($0.0)=\($0.1)" })
        }
    }

    @Test(arguments: [(500, 31 as UInt64, 1000 as UInt64), (5000, 32, 1000), (5000, 33, 2)])
    func applyingIPv6MatchesBruteForceAndRebuild(size: Int, seed: UInt64, values: UInt64) {
        var rng = SplitMix64(seed: seed)
        var routes = randomRoutes6(size, &rng, values: values)
        var ref = ReferenceLPM6(routes)
        var fib = IPv6FIB(routes: routes)
        for round in 0..<8 {
            var changes: [(IPv6Prefix, UInt32?)] = []
            for _ in 0..<(round % 3 == 0 ? 1 : size / 10) {
                let (p, _) = routes[Int(rng.next() % UInt64(routes.count))]
                changes.append((p, rng.next() % 2 == 0 ? nil : UInt32(rng.next() % values)))
            }
            changes += randomRoutes6(size / 20, &rng, values: values).map { ($0.0, $0.1) }
            if round == 5 { changes.append((IPv6Prefix("::/0")!, 77)) }
            if round == 6 { changes.append((IPv6Prefix("::/0")!, nil)) }
            routes += changes.compactMap { c in c.1.map { (c.0, $0) } }
            ref.apply(changes)
            fib = fib.applying(changes)
            let scratch = IPv6FIB(routes: fib.allRoutes)
            #expect(fib.routeCount == ref.count)
            let probes = probes6(routes, &rng, random: 5000)
            #expect(mismatches6(fib, ref, probes) == 0, "round \(round)")
            #expect(mismatches6(scratch, ref, probes) == 0, "round \(round)")
        }
    }

    /// Many small batches: garbage accumulates and is reclaimed, results stay exact.
    @Test func repeatedSmallChangesReclaimGarbage() {
        var rng = SplitMix64(seed: 41)
        let routes = randomRoutes4(2000, &rng)
        var ref = ReferenceLPM4(routes)
        var fib = IPv4FIB(routes: routes)
        let fresh = fib.memoryBytes
        for _ in 0..<300 {
            let (p, _) = routes[Int(rng.next() % UInt64(routes.count))]
            let change: (IPv4Prefix, UInt32?) = (p, UInt32(rng.next() % 1000))
            ref.apply([change])
            fib = fib.applying([change])
        }
        #expect(fib.memoryBytes < fresh * 4, "\(fib.memoryBytes) vs \(fresh)")
        #expect(mismatches4(fib, ref, probes4(routes, &rng, random: 5000)) == 0)
    }

    /// Past 2^16 distinct values the inline leaves switch from 16-bit indices to raw
    /// values, both in a fresh build and when `applying` brings the table over the limit.
    @Test func manyDistinctValues() {
        var rng = SplitMix64(seed: 61)
        var routes = randomRoutes4(3000, &rng)
        let narrow = IPv4FIB(routes: routes)
        #expect(narrow.arrays.narrow)
        let extra = (0..<70_000).map { i in
            (
                IPv4Prefix(
                    truncating: IPv4Address(UInt32(truncatingIfNeeded: rng.next())),
                    length: 20 + Int(rng.next() % 13)
                ),
                UInt32(100_000 + i)
            )
        }
        let wide = narrow.applying(extra.map { ($0.0, $0.1) })
        routes += extra
        #expect(!wide.arrays.narrow)
        let ref = ReferenceLPM4(routes)
        let sample = (0..<4000).map { _ in routes[Int(rng.next() % UInt64(routes.count))] }
        #expect(mismatches4(wide, ref, probes4(sample, &rng, random: 5000)) == 0)
        let fresh = IPv4FIB(routes: routes)
        #expect(!fresh.arrays.narrow)
        #expect(mismatches4(fresh, ref, probes4(sample, &rng, random: 5000)) == 0)
        // And small changes to a wide table stay exact.
        let changes: [(IPv4Prefix, UInt32?)] = sample.prefix(200).map { ($0.0, rng.next() % 2 == 0 ? nil : 7) }
        var ref2 = ref
        ref2.apply(changes)
        #expect(mismatches4(wide.applying(changes), ref2, probes4(sample, &rng, random: 5000)) == 0)
    }

    /// IPv4 lookups read a 16-bit direct array when the table fits it (2^16 slots or more, at most 2^15
    /// values, each 64-slot block's roots close together), else the 32-bit one: both give
    /// the reference's answers, with /0 and /32 routes, overlaps, and after changes.
    @Test(arguments: [(20000, 71 as UInt64, 1000 as UInt64), (90000, 72, 1 << 20), (20000, 73, 2)])
    func compactDirectArray(size: Int, seed: UInt64, values: UInt64) {
        var rng = SplitMix64(seed: seed)
        var routes = randomRoutes4(size, &rng, values: values)
        routes += [
            (IPv4Prefix("0.0.0.0/0")!, 5), (IPv4Prefix("198.51.100.7/32")!, 6), (IPv4Prefix("198.51.100.0/24")!, 7),
            (IPv4Prefix("255.255.255.255/32")!, 8), (IPv4Prefix("0.0.0.0/32")!, 9),
        ]
        var ref = ReferenceLPM4(routes)
        let fib = IPv4FIB(routes: routes)
        // A narrow table's value table holds LPM.miss and each distinct value.
        let compact = fib.arrays.narrow && fib.arrays.values.count <= 0x8000
        #expect((fib.arrays.direct16 != nil) == compact)
        #expect(size < 90000 || !compact)  // the big case reads the 32-bit array
        #expect(mismatches4(fib, ref, probes4(routes, &rng, random: 20000)) == 0)
        #expect(fib.view.lookup(IPv4Address("198.51.100.7")!.value) == 6)
        #expect(fib.view.lookup(.max) == 8 && fib.view.lookup(0) == 9)
        // Deletes (the /32s among them) and new routes, patched in by `applying`.
        var changes: [(IPv4Prefix, UInt32?)] = routes.prefix(size / 20).map { ($0.0, nil) }
        changes += [(IPv4Prefix("198.51.100.7/32")!, nil), (IPv4Prefix("0.0.0.0/32")!, nil)]
        changes += randomRoutes4(size / 20, &rng, values: values).map { ($0.0, $0.1) }
        ref.apply(changes)
        let changed = fib.applying(changes)
        let touched = changes.map { ($0.0, $0.1 ?? 0) }
        #expect(mismatches4(changed, ref, probes4(routes + touched, &rng, random: 20000)) == 0)
    }

    /// Batches of any length (empty, below, at and past a group) equal single lookups.
    @Test func batchLengthsAndTails() {
        var rng = SplitMix64(seed: 71)
        let fib4 = IPv4FIB(routes: randomRoutes4(2000, &rng, values: 3))
        let fib6 = IPv6FIB(routes: randomRoutes6(2000, &rng, values: 3))
        for n in [0, 1, 2, 31, 32, 33, 64, 65, 100] {
            let k4 = (0..<n).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
            let k6 = (0..<n).map { _ in UInt128(rng.next()) << 64 | UInt128(rng.next()) }
            var r4 = [UInt32](repeating: 12345, count: n + 1)
            var r6 = [UInt32](repeating: 12345, count: n + 1)
            k4.withUnsafeBufferPointer { k in
                r4.withUnsafeMutableBufferPointer { r in
                    fib4.view.lookup(k.baseAddress ?? UnsafePointer(bitPattern: 8)!, r.baseAddress!, count: n)
                }
            }
            k6.withUnsafeBufferPointer { k in
                r6.withUnsafeMutableBufferPointer { r in
                    fib6.view.lookup(k.baseAddress ?? UnsafePointer(bitPattern: 16)!, r.baseAddress!, count: n)
                }
            }
            #expect(Array(r4.prefix(n)) == k4.map { fib4.view.lookup($0) })
            #expect(Array(r6.prefix(n)) == k6.map { fib6.view.lookup($0) })
            #expect(r4[n] == 12345 && r6[n] == 12345, "wrote past the batch")
        }
    }

    @Test func deletingEverythingLeavesAnEmptyTable() {
        var rng = SplitMix64(seed: 51)
        let routes = randomRoutes4(1000, &rng)
        let fib = IPv4FIB(routes: routes).applying(routes.map { ($0.0, nil) })
        #expect(fib.routeCount == 0)
        #expect(mismatches4(fib, ReferenceLPM4([]), probes4(routes, &rng, random: 1000)) == 0)
    }
}
