// Flow-cache hit, insert and hash costs, in frames of 256 as the pipeline calls them.
//
//   cd Benchmarks && swift package --allow-writing-to-package-directory benchmark --target FlowCache
//
// Every lookup benchmark does 1,000,000 lookups per iteration (scalingFactor .mega: the
// wall clock reads as ns per lookup, throughput as lookups/s) over a random permutation
// of the installed keys, so every lookup is a hit on a random bucket. Keys and hashes are
// precomputed (the pipeline computes them while parsing). mallocCountTotal counts the
// whole iteration (3,907 frames): it must read 0. Tables are built once, before the first
// measurement.
import Benchmark
import Glibc
import VRouterCore

let lookupsPerIteration = 1_000_000
let frame = 256

/// A table with `flows` random installed IPv4 or IPv6 keys and a query permutation.
final class Installed<Key: FlowKey>: @unchecked Sendable {
    let table: FlowTable<Key>
    let keys: UnsafeMutablePointer<Key>
    let hashes: UnsafeMutablePointer<UInt32>
    let count: Int
    let hugePages: Bool

    init(flows: Int, hugePages: Bool, seed: UInt64, make: (inout SplitMix64) -> Key) {
        var rng = SplitMix64(seed: seed)
        if hugePages {
            // What the IO layer does for a worker's table: 2 MiB-aligned anonymous memory
            // with MADV_HUGEPAGE (transparent huge pages are in madvise mode here).
            let bytes = FlowTable<Key>.bucketBytes(capacity: flows)
            let raw = mmap(nil, bytes + (1 << 21), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
            let aligned = UnsafeMutableRawPointer(
                bitPattern: (UInt(bitPattern: raw) + (1 << 21) - 1) & ~UInt((1 << 21) - 1)
            )!
            _ = madvise(aligned, bytes, 14)  // MADV_HUGEPAGE
            table = FlowTable<Key>(capacity: flows, memory: aligned)
        } else {
            table = FlowTable<Key>(capacity: flows)
        }
        self.hugePages = hugePages
        var unique = Set<Key>()
        var installed: [Key] = []
        installed.reserveCapacity(flows)
        while installed.count < flows {
            let k = make(&rng)
            if unique.insert(k).inserted { installed.append(k) }
        }
        for k in installed { _ = table.insert(k, hash: table.hash(k), value: FlowValue(nexthop: 1, label: 2), now: 0) }
        // Filling to capacity may (rarely) evict; query only what is installed.
        let t = table
        installed = installed.filter { t.lookup($0) != FlowTable<Key>.miss }
        installed.shuffle(using: &rng)
        count = installed.count
        keys = .allocate(capacity: count)
        hashes = .allocate(capacity: count)
        for (i, k) in installed.enumerated() {
            keys[i] = k
            hashes[i] = table.hash(k)
        }
        table.resetStats()
    }

    var bytesPerFlow: Int { table.memoryBytes / table.count }
}

func randomV4(_ rng: inout SplitMix64) -> IPv4FlowKey {
    let r = rng.next()
    return IPv4FlowKey(
        vrf: UInt16(r % 64),
        proto: r & 64 == 0 ? 6 : 17,
        src: UInt32(truncatingIfNeeded: r >> 8),
        dst: UInt32(truncatingIfNeeded: rng.next()),
        sport: UInt16(truncatingIfNeeded: r >> 40),
        dport: 443
    )
}

func randomV6(_ rng: inout SplitMix64) -> IPv6FlowKey {
    let r = rng.next()
    let net = IPv6Address("2001:db8::")!.value
    return IPv6FlowKey(
        vrf: UInt16(r % 64),
        proto: 6,
        src: net | UInt128(rng.next()),
        dst: net | UInt128(rng.next()) << 32,
        sport: UInt16(truncatingIfNeeded: r >> 40),
        dport: 443
    )
}

let flows64K = Installed<IPv4FlowKey>(flows: 65_536, hugePages: false, seed: 1, make: randomV4)
let flows1M = Installed<IPv4FlowKey>(flows: 1_000_000, hugePages: false, seed: 2, make: randomV4)
let flows1MHuge = Installed<IPv4FlowKey>(flows: 1_000_000, hugePages: true, seed: 2, make: randomV4)
let flows1MV6 = Installed<IPv6FlowKey>(flows: 1_000_000, hugePages: true, seed: 3, make: randomV6)
/// The 1M keys with one dport bit flipped: none is installed.
nonisolated(unsafe) let misses1M: (keys: UnsafeMutablePointer<IPv4FlowKey>, hashes: UnsafeMutablePointer<UInt32>) = {
    let s = flows1M
    let k = UnsafeMutablePointer<IPv4FlowKey>.allocate(capacity: s.count)
    let h = UnsafeMutablePointer<UInt32>.allocate(capacity: s.count)
    for i in 0..<s.count {
        k[i] = IPv4FlowKey(word0: s.keys[i].word0 ^ 0x8000, word1: s.keys[i].word1)
        h[i] = s.table.hash(k[i])
    }
    return (k, h)
}()
nonisolated(unsafe) let slots = UnsafeMutablePointer<UInt32>.allocate(capacity: frame)
nonisolated(unsafe) let lengths: UnsafeMutablePointer<UInt16> = {
    let p = UnsafeMutablePointer<UInt16>.allocate(capacity: frame)
    p.initialize(repeating: 64, count: frame)
    return p
}()

/// 1M lookups in frames of 256, cycling through the query permutation; optionally the
/// per-hit `touch` the pipeline does (and then the lookup prefetches counters for it).
@inline(never)
func lookups<Key: FlowKey>(_ s: Installed<Key>, touch: Bool, now: UInt32) -> UInt32 {
    let t = s.table
    var off = 0
    var done = 0
    var acc: UInt32 = 0
    while done < lookupsPerIteration {
        let n = min(frame, lookupsPerIteration - done, s.count - off)
        t.lookup(keys: s.keys + off, hashes: s.hashes + off, count: n, slots: slots, forWriting: touch)
        if touch { t.touch(slots: slots, bytes: lengths, count: n, now: now) }
        acc &+= slots[n - 1]
        done += n
        off += n
        if off == s.count { off = 0 }
    }
    return acc
}

let benchmarks: @Sendable () -> Void = {
    let bytesPerFlowMetric = BenchmarkMetric.custom("bytes/flow", polarity: .prefersSmaller, useScalingFactor: false)
    let hits = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal, bytesPerFlowMetric],
        timeUnits: .nanoseconds,
        scalingFactor: .mega,
        maxDuration: .seconds(3),
        maxIterations: 100
    )
    let inserts = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        scalingFactor: .mega,
        maxDuration: .seconds(5),
        maxIterations: 20
    )

    // Build every table before the first measurement.
    _ = (flows64K.count, flows1M.count, flows1MHuge.count, flows1MV6.count, misses1M.keys)

    func bytesPerFlow<Key: FlowKey>(_ b: Benchmark, _ s: Installed<Key>) {
        b.measurement(bytesPerFlowMetric, s.bytesPerFlow)
    }

    Benchmark("IPv4 hits, 64K flows", configuration: hits) { b in
        bytesPerFlow(b, flows64K)
        b.startMeasurement()
        blackHole(lookups(flows64K, touch: false, now: 1))
    }
    Benchmark("IPv4 hits + touch, 64K flows", configuration: hits) { b in
        b.startMeasurement()
        blackHole(lookups(flows64K, touch: true, now: 1))
    }
    Benchmark("IPv4 hits, 1M flows", configuration: hits) { b in
        bytesPerFlow(b, flows1M)
        b.startMeasurement()
        blackHole(lookups(flows1M, touch: false, now: 1))
    }
    Benchmark("IPv4 hits, 1M flows, huge pages", configuration: hits) { b in
        b.startMeasurement()
        blackHole(lookups(flows1MHuge, touch: false, now: 1))
    }
    Benchmark("IPv4 hits + touch, 1M flows, huge pages", configuration: hits) { b in
        b.startMeasurement()
        blackHole(lookups(flows1MHuge, touch: true, now: 1))
    }
    Benchmark("IPv6 hits, 1M flows, huge pages", configuration: hits) { b in
        bytesPerFlow(b, flows1MV6)
        b.startMeasurement()
        blackHole(lookups(flows1MV6, touch: false, now: 1))
    }
    Benchmark("IPv4 misses, 1M flows", configuration: hits) { b in
        let s = flows1M
        b.startMeasurement()
        var done = 0
        var off = 0
        while done < lookupsPerIteration {
            let n = min(frame, lookupsPerIteration - done, s.count - off)
            s.table.lookup(
                keys: misses1M.keys + off,
                hashes: misses1M.hashes + off,
                count: n,
                slots: slots,
                forWriting: false
            )
            done += n
            off += n
            if off == s.count { off = 0 }
        }
        blackHole(slots[0])
    }
    Benchmark("FlowHash IPv4", configuration: hits) { b in
        let s = flows1M
        b.startMeasurement()
        var acc: UInt32 = 0
        for i in 0..<lookupsPerIteration { acc &+= s.keys[i].flowHash() }
        blackHole(acc)
    }
    Benchmark("IPv4 inserts, 1M into an empty 1M table", configuration: inserts) { b in
        let s = flows1MHuge
        let t = s.table
        t.removeAll()
        b.startMeasurement()
        for i in 0..<s.count {
            _ = t.insert(s.keys[i], hash: s.hashes[i], value: FlowValue(nexthop: 1, label: 2), now: 0)
        }
        b.stopMeasurement()
        blackHole(t.count)
    }
    Benchmark("IPv4 inserts, batched, 1M into an empty 1M table", configuration: inserts) { b in
        let s = flows1MHuge
        let t = s.table
        let values = UnsafeMutablePointer<FlowValue>.allocate(capacity: frame)
        values.initialize(repeating: FlowValue(nexthop: 1, label: 2), count: frame)
        defer { values.deallocate() }
        t.removeAll()
        b.startMeasurement()
        var off = 0
        while off < s.count {
            let n = min(frame, s.count - off)
            t.insert(keys: s.keys + off, hashes: s.hashes + off, values: values, count: n, now: 0, slots: slots)
            off += n
        }
        b.stopMeasurement()
        blackHole(t.count)
    }
    Benchmark(
        "IPv4 fill an empty 64K table (65,536 inserts per iteration)",
        configuration: .init(
            metrics: [.wallClock, .throughput, .mallocCountTotal],
            timeUnits: .microseconds,
            maxDuration: .seconds(3),
            maxIterations: 200
        )
    ) { b in
        let s = flows64K
        let t = FlowTable<IPv4FlowKey>(capacity: 65_536)
        defer { t.deallocate() }
        b.startMeasurement()
        for i in 0..<s.count {
            _ = t.insert(s.keys[i], hash: s.hashes[i], value: FlowValue(nexthop: 1, label: 2), now: 0)
        }
        b.stopMeasurement()
        blackHole(t.count)
    }
    Benchmark("IPv4 inserts with eviction, 1M new flows into a full 64K table", configuration: inserts) { b in
        // Steady churn (more live flows than capacity): every insert evicts the least
        // recently used of its candidates. Pre-filled with other keys.
        let t = FlowTable<IPv4FlowKey>(capacity: 65_536)
        defer { t.deallocate() }
        let s = flows1M
        for i in 0..<65_536 {
            _ = t.insert(misses1M.keys[i], hash: misses1M.hashes[i], value: FlowValue(nexthop: 1), now: 0)
        }
        b.startMeasurement()
        for i in 0..<min(s.count, lookupsPerIteration) {
            _ = t.insert(s.keys[i], hash: s.hashes[i], value: FlowValue(nexthop: 1), now: UInt32(i))
        }
        b.stopMeasurement()
        blackHole(t.count)
    }
}
