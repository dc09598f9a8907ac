// LPM lookup, build and update costs on BGP-sized synthetic tables.
//
//   cd Benchmarks && swift package --allow-writing-to-package-directory benchmark --target LPM
//
// Lookup benchmarks do 1,000,000 lookups per iteration with scalingFactor .mega, so the
// reported wall clock is ns per lookup and throughput is lookups/s. Tables and keys are
// built once (global lets) before measurement starts; mallocs are counted to show the
// lookup path allocates nothing.
import Benchmark
import VRouterCore

let lookupsPerIteration = 1_000_000

struct Tables: @unchecked Sendable {
    let routes4: [(IPv4Prefix, UInt32)]
    let fib4: IPv4FIB
    let fib4Uniform: IPv4FIB
    let routes6: [(IPv6Prefix, UInt32)]
    let fib6: IPv6FIB
    let fib6Uniform: IPv6FIB
    let keys6Uniform: [UInt128]
    let keys4Random: [UInt32]
    let keys4InTable: [UInt32]
    let keys4Uniform: [UInt32]
    let keys6Random: [UInt128]
    let keys6InTable: [UInt128]
    let batch10k: [(IPv4Prefix, UInt32?)]

    init() {
        var rng = SplitMix64(seed: 2024)
        routes4 = SyntheticRoutes.ipv4(count: 1_000_000, seed: 1)
        fib4 = IPv4FIB(routes: routes4)
        let uniform = SyntheticRoutes.ipv4Uniform(count: 1_000_000, seed: 1)
        fib4Uniform = IPv4FIB(routes: uniform)
        routes6 = SyntheticRoutes.ipv6(count: 200_000, seed: 2)
        fib6 = IPv6FIB(routes: routes6)
        let uniform6 = SyntheticRoutes.ipv6Uniform(count: 200_000, seed: 2)
        fib6Uniform = IPv6FIB(routes: uniform6)
        keys4Random = (0..<lookupsPerIteration).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
        let routes = routes4
        // A random address inside a random route: every lookup walks to a real prefix.
        keys4InTable = (0..<lookupsPerIteration).map { _ in
            let (p, _) = routes[Int(rng.next() % UInt64(routes.count))]
            return p.address.value | UInt32(truncatingIfNeeded: rng.next()) & ~IPv4Prefix.mask(Int(p.length))
        }
        keys4Uniform = (0..<lookupsPerIteration).map { _ in
            let (p, _) = uniform[Int(rng.next() % UInt64(uniform.count))]
            return p.address.value | UInt32(truncatingIfNeeded: rng.next()) & ~IPv4Prefix.mask(Int(p.length))
        }
        // Uniform in 2000::/3 (where the table lives); most miss, as on the Internet.
        keys6Random = (0..<lookupsPerIteration).map { _ in
            UInt128(1) << 125 | (UInt128(rng.next()) << 64 | UInt128(rng.next())) & ~(UInt128(7) << 125)
        }
        let r6 = routes6
        keys6InTable = (0..<lookupsPerIteration).map { _ in
            let (p, _) = r6[Int(rng.next() % UInt64(r6.count))]
            return p.address.value | (UInt128(rng.next()) << 64 | UInt128(rng.next())) & ~IPv6Prefix.mask(Int(p.length))
        }
        keys6Uniform = (0..<lookupsPerIteration).map { _ in
            let (p, _) = uniform6[Int(rng.next() % UInt64(uniform6.count))]
            return p.address.value | (UInt128(rng.next()) << 64 | UInt128(rng.next())) & ~IPv6Prefix.mask(Int(p.length))
        }
        batch10k = (0..<10_000).map { _ in
            let (p, _) = routes[Int(rng.next() % UInt64(routes.count))]
            return (p, rng.next() % 3 == 0 ? nil : UInt32(rng.next() % 256))
        }
    }
}

let tables = Tables()
nonisolated(unsafe) var results = [UInt32](repeating: 0, count: lookupsPerIteration)

let bytesPerPrefix = BenchmarkMetric.custom("FIB bytes/prefix x100", polarity: .prefersSmaller, useScalingFactor: false)

func batched4(_ b: Benchmark, _ fib: IPv4FIB, _ keys: [UInt32]) {
    let view = fib.view
    b.measurement(bytesPerPrefix, fib.memoryBytes * 100 / fib.routeCount)
    b.startMeasurement()
    keys.withUnsafeBufferPointer { k in
        results.withUnsafeMutableBufferPointer { r in
            view.lookup(k.baseAddress!, r.baseAddress!, count: k.count)
        }
    }
    blackHole(results[0])
}

func batched6(_ b: Benchmark, _ fib: IPv6FIB, _ keys: [UInt128]) {
    let view = fib.view
    b.measurement(bytesPerPrefix, fib.memoryBytes * 100 / fib.routeCount)
    b.startMeasurement()
    keys.withUnsafeBufferPointer { k in
        results.withUnsafeMutableBufferPointer { r in
            view.lookup(k.baseAddress!, r.baseAddress!, count: k.count)
        }
    }
    blackHole(results[0])
}

let benchmarks: @Sendable () -> Void = {
    let lookups = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        scalingFactor: .mega,
        maxDuration: .seconds(3),
        maxIterations: 200
    )
    // Batched lookups also record the FIB's size (bytes per route, times 100).
    var sized = lookups
    sized.metrics.append(bytesPerPrefix)
    let builds = Benchmark.Configuration(
        metrics: [.wallClock, .mallocCountTotal, .peakMemoryResident],
        timeUnits: .milliseconds,
        maxDuration: .seconds(5),
        maxIterations: 20
    )

    _ = tables.fib4.routeCount  // build everything before the first measurement

    Benchmark("IPv4 1M BGP-like, random keys, batched", configuration: sized) { b in
        batched4(b, tables.fib4, tables.keys4Random)
    }
    Benchmark("IPv4 1M BGP-like, in-table keys, batched", configuration: sized) { b in
        batched4(b, tables.fib4, tables.keys4InTable)
    }
    Benchmark("IPv4 1M uniform placement, in-table keys, batched", configuration: sized) { b in
        batched4(b, tables.fib4Uniform, tables.keys4Uniform)
    }
    Benchmark("IPv4 1M uniform placement, random keys, batched", configuration: sized) { b in
        batched4(b, tables.fib4Uniform, tables.keys4Random)
    }
    // Each key depends on the previous answer: latency, not throughput.
    Benchmark("IPv4 1M BGP-like, random keys, dependent", configuration: lookups) { b in
        let view = tables.fib4.view
        let keys = tables.keys4Random
        b.startMeasurement()
        var r: UInt32 = 0
        keys.withUnsafeBufferPointer { k in
            for a in k { r = view.lookup(a ^ (r >> 31)) }
        }
        blackHole(r)
    }
    Benchmark("IPv4 1M BGP-like, in-table keys, dependent", configuration: lookups) { b in
        let view = tables.fib4.view
        let keys = tables.keys4InTable
        b.startMeasurement()
        var r: UInt32 = 0
        keys.withUnsafeBufferPointer { k in
            for a in k { r = view.lookup(a ^ (r >> 31)) }
        }
        blackHole(r)
    }
    Benchmark("IPv6 200k BGP-like, random keys in 2000::/3, batched", configuration: sized) { b in
        batched6(b, tables.fib6, tables.keys6Random)
    }
    Benchmark("IPv6 200k BGP-like, in-table keys, batched", configuration: sized) { b in
        batched6(b, tables.fib6, tables.keys6InTable)
    }
    Benchmark("IPv6 200k uniform placement, in-table keys, batched", configuration: sized) { b in
        batched6(b, tables.fib6Uniform, tables.keys6Uniform)
    }
    Benchmark("IPv4 build 1M BGP-like", configuration: builds) { b in
        let routes = tables.routes4
        b.startMeasurement()
        blackHole(IPv4FIB(routes: routes))
    }
    Benchmark("IPv6 build 200k BGP-like", configuration: builds) { b in
        let routes = tables.routes6
        b.startMeasurement()
        blackHole(IPv6FIB(routes: routes))
    }
    Benchmark("IPv4 applying 10k changes to 1M", configuration: builds) { b in
        let batch = tables.batch10k
        b.startMeasurement()
        blackHole(tables.fib4.applying(batch))
    }
    Benchmark("IPv4 applying 1 change to 1M", configuration: builds) { b in
        let one = [tables.batch10k[0]]
        b.startMeasurement()
        blackHole(tables.fib4.applying(one))
    }
}
