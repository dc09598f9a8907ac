// `vrouter-perf lpm`: our IPv4 LPM on a synthetic BGP-like table, timed on random keys in
// frames (batched lookups, the route-lookup node's way) and on a chain of dependent keys
// (each key depends on the previous answer, so misses cannot overlap: the latency figure).
// It writes the table, the keys and its answers for tools/compare/rte_lpm_bench.c, which
// builds DPDK's rte_lpm from the same routes and must give the same answer for every key.
// Timing runs in rounds (each kind of lookup once untimed, once timed); with --interactive
// a driver starts each round, alternating with rte_lpm_bench's (tools/compare-lpm).
//
// Files in --out (arrays of host-order UInt32):
//   routes.bin      {address, prefix length, next hop} per route
//   keys.bin        the random keys
//   expect.bin      our answer per key (no route: 0xFFFFFFFF)
//   expect-dep.bin  our answer per step of the dependent chain, where step i looks up
//                   keys[i] ^ (answer[i-1] & 1) (answer[-1] = 0)

import ArgumentParser
import Foundation
import VRouterCore

struct LPMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lpm",
        abstract: "Time IPv4 LPM lookups and write the inputs and answers for rte_lpm_bench."
    )

    enum Table: String, ExpressibleByArgument, CaseIterable { case bgp, uniform }
    enum KeyMode: String, ExpressibleByArgument, CaseIterable { case uniform, routed }

    @Option(help: "Routes in the table.") var routes: Int = 1_000_000
    @Option(help: "bgp (clustered, SyntheticRoutes.ipv4) | uniform (SyntheticRoutes.ipv4Uniform).") var table: Table =
        .bgp
    @Option(help: "Random keys.") var keys: Int = 1 << 22
    @Option(help: "uniform (any 32-bit address) | routed (an address inside a random route).")
    var keyMode: KeyMode = .uniform
    @Option(help: "Seed of the table and the keys.") var seed: UInt64 = 1
    @Option(help: "Rounds: each kind of lookup once untimed (warming caches), once timed.") var `repeat`: Int = 5
    @Flag(help: "Run one round per line read from stdin, answering \"ready\" then \"pass\" per round.")
    var interactive = false
    @Option(help: "Keys per batched lookup call (a frame).") var batch: Int = 256
    @Option(help: "Directory for routes.bin, keys.bin, expect.bin, expect-dep.bin (not written if absent).")
    var out: String?

    func validate() throws {
        guard routes >= 0 && routes <= 5_000_000 else { throw ValidationError("--routes must be 0...5000000") }
        guard keys >= 1 && keys <= 1 << 28 else { throw ValidationError("--keys must be 1...268435456") }
        guard `repeat` >= 1 && `repeat` <= 1000 else { throw ValidationError("--repeat must be 1...1000") }
        guard batch >= 1 && batch <= 4096 else { throw ValidationError("--batch must be 1...4096") }
        if keyMode == .routed && routes == 0 { throw ValidationError("--key-mode routed needs routes") }
    }

    /// Headline figures are the best of the timed passes (on a shared machine other work
    /// only ever slows a pass down); medians are reported next to them.
    struct Result: Encodable {
        var routes: Int
        var keys: Int
        var table: String
        var key_mode: String
        var seed: UInt64
        var batch: Int
        var repeats: Int
        var statistic = "best"
        var ours_build_seconds: Double
        var ours_bytes: Int
        var ours_rib_bytes: Int
        var ours_mlps: Double
        var ours_mlps_median: Double
        var ours_ns_per_lookup: Double
        var ours_dependent_mlps: Double
        var ours_dependent_mlps_median: Double
        var ours_dependent_ns_per_lookup: Double
        var hit_share: Double
        var ours_anon_huge_kib: Int
    }

    func run() throws {
        let table =
            self.table == .bgp
            ? SyntheticRoutes.ipv4(count: routes, seed: seed) : SyntheticRoutes.ipv4Uniform(count: routes, seed: seed)
        var fib: IPv4FIB?
        let build = seconds { fib = IPv4FIB(routes: table) }
        let view = fib!.view

        let n = keys
        let keyBuf = UnsafeMutablePointer<UInt32>.allocate(capacity: n)
        let results = UnsafeMutablePointer<UInt32>.allocate(capacity: n)
        let dep = UnsafeMutablePointer<UInt32>.allocate(capacity: n)
        defer {
            keyBuf.deallocate()
            results.deallocate()
            dep.deallocate()
        }
        var rng = SplitMix64(seed: seed ^ 0x6b65_7973)  // "keys": not the table's stream
        for i in 0..<n {
            let r = rng.next()
            switch keyMode {
            case .uniform:
                keyBuf[i] = UInt32(truncatingIfNeeded: r)
            case .routed:
                let (p, _) = table[Int(r % UInt64(table.count))]
                keyBuf[i] = p.address.value | UInt32(truncatingIfNeeded: r >> 32) & ~IPv4Prefix.mask(Int(p.length))
            }
        }
        results.initialize(repeating: 0, count: n)
        dep.initialize(repeating: 0, count: n)

        let batch = self.batch
        func batched() {
            var i = 0
            while i < n {
                let c = min(batch, n - i)
                view.lookup(keyBuf + i, results + i, count: c)
                i += c
            }
        }
        func dependent() {
            var prev: UInt32 = 0
            for i in 0..<n {
                let r = view.lookup(keyBuf[i] ^ (prev & 1))
                dep[i] = r
                prev = r
            }
        }
        // The first pass of each kind gives the answers rte_lpm_bench checks; the files are
        // written before any round, so that it can build its table while we wait.
        batched()
        dependent()
        var hits = 0
        for i in 0..<n {
            if results[i] == LPM.miss { results[i] = .max } else { hits += 1 }
            if dep[i] == LPM.miss { dep[i] = .max }
        }
        if let out {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            var flat: [UInt32] = []
            flat.reserveCapacity(table.count * 3)
            for (p, v) in table { flat += [p.address.value, UInt32(p.length), v] }
            writeArray(flat, to: out + "/routes.bin")
            writeArray(UnsafeBufferPointer(start: keyBuf, count: n), to: out + "/keys.bin")
            writeArray(UnsafeBufferPointer(start: results, count: n), to: out + "/expect.bin")
            writeArray(UnsafeBufferPointer(start: dep, count: n), to: out + "/expect-dep.bin")
        }

        var fast = Timings(samples: [])
        var slow = Timings(samples: [])
        // --interactive lets a driver alternate our rounds with rte_lpm_bench's, so that
        // other load on a shared machine falls on both sides alike.
        if interactive {
            print("ready")
            fflush(nil)  // all streams: stdout is a pipe, fully buffered
        }
        while interactive ? readLine() != nil : fast.samples.count < `repeat` {
            batched()
            fast.samples.append(seconds(batched))
            dependent()
            slow.samples.append(seconds(dependent))
            if interactive {
                print("pass")
                fflush(nil)
            }
        }
        if fast.samples.isEmpty { fail("no round was run") }

        let mlps = { (s: Double) in Double(n) / s / 1e6 }
        try printJSON(
            Result(
                routes: fib!.routeCount,
                keys: n,
                table: self.table.rawValue,
                key_mode: keyMode.rawValue,
                seed: seed,
                batch: batch,
                repeats: fast.samples.count,
                ours_build_seconds: build,
                ours_bytes: fib!.memoryBytes,
                ours_rib_bytes: fib!.ribBytes,
                ours_mlps: mlps(fast.best),
                ours_mlps_median: mlps(fast.median),
                ours_ns_per_lookup: fast.best * 1e9 / Double(n),
                ours_dependent_mlps: mlps(slow.best),
                ours_dependent_mlps_median: mlps(slow.median),
                ours_dependent_ns_per_lookup: slow.best * 1e9 / Double(n),
                hit_share: Double(hits) / Double(n),
                ours_anon_huge_kib: anonHugeKiB()
            )
        )
        withExtendedLifetime(fib) {}
    }
}
