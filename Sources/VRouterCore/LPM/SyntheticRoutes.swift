// Deterministic route tables that look like a default-free BGP table, for tests,
// benchmarks and the traffic generator. Same seed, same table, on every machine.
//
// Where the prefix-length mix comes from: the per-length counts of the global table as
// published in Geoff Huston's BGP reports (bgp.potaroo.net, APNIC "BGP in 2023"/"2024"
// posts, and the CIDR Report), rounded. IPv4 (~1M prefixes): /24 about 62%, /22-/23
// about 20%, /16-/21 about 16%, /8-/15 0.5%, and 1.5% of /25-/32 that some tables carry. IPv6 (~200k): /48 about 47%, /32 12%, /44 8%, /40 6.5%, /29 4.5%, /36
// 3.5%, then the /33-/47 odds and ends, a few /56 and /64.
//
// Clustering: real prefixes sit inside registry allocations, and an allocation's holder
// announces its aggregate and many more-specifics of it. So prefixes are drawn inside
// "allocation blocks" (IPv4 /12-/20, IPv6 /29-/32 under the RIR /12 pools and 2001::/16),
// blocks are picked with a skew (a few holders deaggregate a lot), prefixes shorter than
// their block become the block's covering aggregate, and most prefixes in a block share the
// block's next hop. The `Uniform` variants place the same length mix uniformly at random:
// no clustering, the worst case for a compressed trie.

/// Synthetic BGP-like route tables (see the file comment for the model).
public enum SyntheticRoutes {
    /// IPv4 prefix-length weights, per 100000 routes.
    public static let ipv4Mix: [(length: Int, weight: Int)] = [
        (8, 2), (9, 3), (10, 6), (11, 12), (12, 35), (13, 65), (14, 130), (15, 220),
        (16, 1500), (17, 1000), (18, 1700), (19, 2900), (20, 4100), (21, 4700),
        (22, 11500), (23, 9000), (24, 61627),
        (25, 300), (26, 200), (27, 200), (28, 200), (29, 200), (30, 150), (31, 50), (32, 200),
    ]
    /// IPv6 prefix-length weights, per 100000 routes.
    public static let ipv6Mix: [(length: Int, weight: Int)] = [
        (16, 10), (19, 20), (20, 100), (22, 100), (23, 100), (24, 300), (26, 200), (27, 200),
        (28, 800), (29, 4500), (30, 800), (31, 600), (32, 12000), (33, 1500), (34, 1400),
        (35, 700), (36, 3500), (37, 400), (38, 800), (39, 500), (40, 6500), (41, 500),
        (42, 1500), (43, 400), (44, 8000), (45, 1500), (46, 3000), (47, 2500), (48, 47148),
        (52, 100), (56, 300), (60, 50), (64, 300), (128, 72),
    ]
    /// Distinct route values (next hops) a table uses.
    public static let nexthopCount = 256

    /// How many routes of each length a table of `count` gets: proportional to the
    /// weights, remainders handed out largest first, so the total is exact.
    public static func lengthCounts(_ mix: [(length: Int, weight: Int)], count: Int) -> [(length: Int, count: Int)] {
        let total = mix.reduce(0) { $0 + $1.weight }
        var counts = mix.map { (length: $0.length, count: count * $0.weight / total) }
        var left = count - counts.reduce(0) { $0 + $1.count }
        let order = mix.indices.sorted {
            let ra = count * mix[$0].weight % total
            let rb = count * mix[$1].weight % total
            return ra != rb ? ra > rb : mix[$0].weight > mix[$1].weight
        }
        var k = 0
        while left > 0 {
            counts[order[k % order.count]].count += 1
            left -= 1
            k += 1
        }
        return counts
    }

    /// `count` distinct, clustered IPv4 routes (see the file comment).
    public static func ipv4(count: Int, seed: UInt64) -> [(IPv4Prefix, UInt32)] {
        var rng = SplitMix64(seed: seed)
        struct Block {
            var addr: UInt32
            var len: Int
            var nexthop: UInt32
        }
        let blockLens = [12, 13, 14, 14, 15, 15, 16, 16, 16, 16, 17, 17, 18, 18, 19, 19, 19, 20, 20, 20]
        let blocks = (0..<max(1, count / 32)).map { _ in
            let len = blockLens[Int(rng.next() % UInt64(blockLens.count))]
            return Block(
                addr: unicast4(&rng) & IPv4Prefix.mask(len),
                len: len,
                nexthop: UInt32(rng.next() % UInt64(nexthopCount))
            )
        }
        return generate(width: 32, lengthCounts(ipv4Mix, count: count), &rng) { len, rng in
            // Squaring a uniform draw skews toward the first blocks: a few holders announce a lot.
            let u = Double(rng.next() >> 11) / Double(1 << 53)
            let b = blocks[min(blocks.count - 1, Int(u * u * Double(blocks.count)))]
            let addr: UInt32
            if len >= b.len {
                addr =
                    (b.addr | UInt32(truncatingIfNeeded: rng.next()) & ~IPv4Prefix.mask(b.len)) & IPv4Prefix.mask(len)
            } else {
                addr = b.addr & IPv4Prefix.mask(len)
            }
            let value = rng.next() % 8 < 7 ? b.nexthop : UInt32(rng.next() % UInt64(nexthopCount))
            return (UInt128(addr), value)
        }.map { (IPv4Prefix(IPv4Address(UInt32($0.0)), length: $0.1)!, $0.2) }
    }

    /// `count` distinct IPv4 routes with the same length mix, placed uniformly at random
    /// in 1.0.0.0-223.255.255.255 (the unclustered worst case).
    public static func ipv4Uniform(count: Int, seed: UInt64) -> [(IPv4Prefix, UInt32)] {
        var rng = SplitMix64(seed: seed)
        return generate(width: 32, lengthCounts(ipv4Mix, count: count), &rng) { len, rng in
            (UInt128(unicast4(&rng) & IPv4Prefix.mask(len)), UInt32(rng.next() % UInt64(nexthopCount)))
        }.map { (IPv4Prefix(IPv4Address(UInt32($0.0)), length: $0.1)!, $0.2) }
    }

    /// `count` distinct, clustered IPv6 routes inside 2000::/3 (see the file comment).
    public static func ipv6(count: Int, seed: UInt64) -> [(IPv6Prefix, UInt32)] {
        var rng = SplitMix64(seed: seed)
        // The RIR pools most of the table lives in (2001::/16 holds many small allocations).
        let pools: [(UInt128, Int)] = [
            (0x2001, 16), (0x240, 12), (0x260, 12), (0x280, 12), (0x2a0, 12), (0x2c0, 12),
        ].map { (UInt128($0.0) << UInt128(128 - $0.1), $0.1) }
        struct Block {
            var addr: UInt128
            var len: Int
            var nexthop: UInt32
        }
        let blockLens = [29, 29, 32, 32, 32, 32, 32, 31, 30, 32]
        let blocks = (0..<max(1, count / 16)).map { _ in
            let pool = pools[Int(rng.next() % UInt64(pools.count))]
            let len = blockLens[Int(rng.next() % UInt64(blockLens.count))]
            let bits = (UInt128(rng.next()) << 64) & ~IPv6Prefix.mask(pool.1)
            return Block(
                addr: (pool.0 | bits) & IPv6Prefix.mask(len),
                len: len,
                nexthop: UInt32(rng.next() % UInt64(nexthopCount))
            )
        }
        return generate(width: 128, lengthCounts(ipv6Mix, count: count), &rng) { len, rng in
            let u = Double(rng.next() >> 11) / Double(1 << 53)
            let b = blocks[min(blocks.count - 1, Int(u * u * Double(blocks.count)))]
            let addr: UInt128
            if len >= b.len {
                let bits = UInt128(rng.next()) << 64 | UInt128(rng.next())
                addr = (b.addr | bits & ~IPv6Prefix.mask(b.len)) & IPv6Prefix.mask(len)
            } else {
                addr = b.addr & IPv6Prefix.mask(len)
            }
            let value = rng.next() % 8 < 7 ? b.nexthop : UInt32(rng.next() % UInt64(nexthopCount))
            return (addr, value)
        }.map { (IPv6Prefix(IPv6Address($0.0), length: $0.1)!, $0.2) }
    }

    /// `count` distinct IPv6 routes with the same length mix, uniform in 2000::/3.
    public static func ipv6Uniform(count: Int, seed: UInt64) -> [(IPv6Prefix, UInt32)] {
        var rng = SplitMix64(seed: seed)
        return generate(width: 128, lengthCounts(ipv6Mix, count: count), &rng) { len, rng in
            let bits = UInt128(rng.next()) << 64 | UInt128(rng.next())
            let addr = (UInt128(1) << 125 | bits & ~IPv6Prefix.mask(3)) & IPv6Prefix.mask(len)
            return (addr, UInt32(rng.next() % UInt64(nexthopCount)))
        }.map { (IPv6Prefix(IPv6Address($0.0), length: $0.1)!, $0.2) }
    }

    /// An address in 1.0.0.0-223.255.255.255 (unicast, as announced).
    static func unicast4(_ rng: inout SplitMix64) -> UInt32 {
        UInt32(1 << 24) + UInt32(rng.next() % UInt64(223 << 24))
    }

    /// Draws `place` until each length has its count of distinct prefixes, then shuffles
    /// (a table arrives in no particular order). Past 64 collisions in a row a length's
    /// block space is exhausted, and the prefix is placed uniformly instead.
    static func generate(
        width: Int,
        _ counts: [(length: Int, count: Int)],
        _ rng: inout SplitMix64,
        place: (Int, inout SplitMix64) -> (UInt128, UInt32)
    ) -> [(UInt128, Int, UInt32)] {
        struct Key: Hashable {
            var addr: UInt128
            var len: Int
        }
        var seen = Set<Key>()
        var out: [(UInt128, Int, UInt32)] = []
        out.reserveCapacity(counts.reduce(0) { $0 + $1.count })
        for (len, n) in counts {
            var made = 0
            var misses = 0
            while made < n {
                var (addr, value) = place(len, &rng)
                if misses >= 64 {
                    // Fallback: keep the top 3 bits (the family's unicast range), randomize the rest.
                    let bits = UInt128(rng.next()) << 64 | UInt128(rng.next())
                    if width == 32 {
                        addr = UInt128(unicast4(&rng) & IPv4Prefix.mask(len))
                    } else {
                        let keep = UInt128(0xE) << 124
                        addr = (addr & keep | bits & ~keep) & IPv6Prefix.mask(len)
                    }
                }
                if seen.insert(Key(addr: addr, len: len)).inserted {
                    out.append((addr, len, value))
                    made += 1
                    misses = 0
                } else {
                    misses += 1
                    if misses > 100_000 { preconditionFailure("no room for \(n) /\(len) prefixes") }
                }
            }
        }
        var i = out.count - 1
        while i > 0 {
            let j = Int(rng.next() % UInt64(i + 1))
            out.swapAt(i, j)
            i -= 1
        }
        return out
    }
}
