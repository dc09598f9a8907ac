// swift-tools-version: 6.1
// vRouter: a userspace packet-forwarding dataplane for Kubernetes nodes.
// Dependencies point one way: executables → Control/CNI → API, IO → Core → C targets.
// Benchmarks live in their own package (Benchmarks/Package.swift) so that the
// benchmark harness does not add to every build of the node software.
import PackageDescription

var hotPath: [SwiftSetting] = [
    // The dataplane never touches class stored properties per packet, so dynamic
    // exclusivity checks only cost; static checks remain.
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))
]

#if arch(x86_64)
// POPCNT (every x86-64 server CPU since 2008): the LPM tries index with popcounts,
// which otherwise compile to a 12-instruction bit-twiddling sequence per use.
// PREFETCHW (Broadwell/Zen on): the flow cache prefetches the counters line it will
// write; without the flag the write-intent prefetch degrades to a plain one.
hotPath.append(.unsafeFlags(["-Xcc", "-mpopcnt", "-Xcc", "-mprfchw"]))
#endif

// Programs exec'd over and over (the CNI plugin, the CLI) link the Swift runtime and
// FoundationEssentials statically: a dynamically linked Swift binary spends ~6 ms more in
// the loader on every exec (measured here). A test target cannot name them as dependencies
// (SwiftPM links a dependency executable's module, flags included, into the test bundle, whose
// swift-testing is dynamic); `swift build --build-tests` builds them with every product.
let staticEssentials: [LinkerSetting] = [
    .unsafeFlags([
        "-static-stdlib", "-Xlinker", "--start-group", "-Xlinker", "-lFoundationEssentials", "-Xlinker",
        "-l_FoundationCollections", "-Xlinker", "-l_FoundationCShims", "-Xlinker", "--end-group",
    ])
]

let package = Package(
    name: "vrouter",
    products: [
        .library(name: "VRouterCore", targets: ["VRouterCore"]),
        .library(name: "VRouterIO", targets: ["VRouterIO"]),
        .library(name: "VRouterAPI", targets: ["VRouterAPI"]),
        .library(name: "VRouterControl", targets: ["VRouterControl"]),
        .library(name: "VRouterCNI", targets: ["VRouterCNI"]),
        .executable(name: "vrouterd", targets: ["vrouterd"]),
        .executable(name: "vrouter-cni", targets: ["vrouter-cni"]),
        .executable(name: "vrouterctl", targets: ["vrouterctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // The control API's HTTP server (and the metrics endpoint): NIO only, no framework.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // TLS with client certificates to etcd (its --client-cert-auth); BoringSSL inside.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CURing",
            path: "Sources/CURing",
            pkgConfig: "liburing",
            providers: [.apt(["liburing-dev"])]
        ),
        // No pkgConfig: libpcap's .pc drags in dbus include paths.
        .systemLibrary(name: "CPcap", path: "Sources/CPcap", providers: [.apt(["libpcap-dev"])]),
        .systemLibrary(
            name: "CNuma",
            path: "Sources/CNuma",
            pkgConfig: "numa",
            providers: [.apt(["libnuma-dev"])]
        ),
        // rtnetlink for the live ports (links, addresses, routes, namespaces).
        .systemLibrary(
            name: "CMnl",
            path: "Sources/CMnl",
            pkgConfig: "libmnl",
            providers: [.apt(["libmnl-dev"])]
        ),
        .target(name: "CVRouterShims", path: "Sources/CVRouterShims"),
        .target(
            name: "VRouterCore",
            dependencies: ["CVRouterShims"],
            swiftSettings: hotPath
        ),
        .target(
            name: "VRouterIO",
            dependencies: ["VRouterCore", "CVRouterShims", "CPcap", "CURing", "CNuma", "CMnl"],
            swiftSettings: hotPath
        ),
        // The contract between the programs: the control API's model, the shim↔daemon wire
        // types, the CNI vocabulary (config, results, errors, versions, the multi-net
        // annotation) with its validation, and the one Unix-socket HTTP client. A leaf that
        // needs only VRouterCore's address types, and Foundation-light: vrouter-cni is exec'd
        // once per pod operation, so its start-up time is pod start-up time.
        .target(name: "VRouterAPI", dependencies: ["VRouterCore"]),
        // The shim's runtime: the CNI commands, delegation to other plugins, running them.
        .target(name: "VRouterCNI", dependencies: ["VRouterAPI"]),
        // An etcd v3 client over etcd's JSON gateway (/v3/): KV, transactions, leases,
        // compaction and watches, several endpoints with failover, TLS. Knows nothing of vRouter.
        .target(
            name: "VRouterEtcd",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ]
        ),
        // The cluster's data model in etcd (nodes, networks, block and address claims, pod
        // endpoints), its racing writes as transactions, this node's leased records, and the
        // list-then-watch engine that turns the store into intents for the node's tables.
        .target(
            name: "VRouterCluster",
            dependencies: [
                "VRouterEtcd", "VRouterAPI", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "VRouterControl",
            dependencies: [
                "VRouterCore", "VRouterIO", "VRouterAPI", "CVRouterShims", "VRouterCluster", "VRouterEtcd",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "vrouterd",
            dependencies: [
                "VRouterCore", "VRouterIO", "VRouterControl",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The CNI plugin, exec'd per pod operation.
        .executableTarget(name: "vrouter-cni", dependencies: ["VRouterCNI"], linkerSettings: staticEssentials),
        // The operator's tool: speaks the control API over vrouterd's Unix socket. It links the
        // contract only (no NIO, no dataplane, no C library, no Foundation but its essentials:
        // vrouterd reads `apply -f` manifests for it).
        .executableTarget(
            name: "vrouterctl",
            dependencies: ["VRouterAPI", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            linkerSettings: staticEssentials
        ),
        .executableTarget(
            name: "vrouter-gen",
            dependencies: [
                "VRouterCore", "VRouterIO", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Port-layer speed on this machine, against tools/iobench/ref.c (see its header).
        .executableTarget(name: "vrouter-iobench", dependencies: ["VRouterIO", "VRouterCore", "CVRouterShims"]),
        // Our side of the comparison harnesses (tools/compare-lpm, tools/compare-pcap).
        .executableTarget(
            name: "vrouter-perf",
            dependencies: [
                "VRouterCore", "VRouterIO", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: hotPath
        ),
        // What the test targets share: running programs (own process group, output in files, a
        // timeout), the namespace lab, a vrouterd helper, the root check, finding the built
        // executables. Each test target names the executables it runs as dependencies, so that
        // building the tests builds them (but for the statically linked ones: see staticEssentials).
        .target(name: "VRouterTestSupport", dependencies: ["VRouterAPI"], path: "Tests/VRouterTestSupport"),
        .testTarget(name: "VRouterCoreTests", dependencies: ["VRouterCore", "VRouterTestSupport"]),
        .testTarget(name: "VRouterIOTests", dependencies: ["VRouterIO", "VRouterCore", "VRouterTestSupport"]),
        .testTarget(
            name: "VRouterControlTests",
            dependencies: [
                "VRouterControl", "VRouterAPI", "VRouterIO", "VRouterCore", "VRouterTestSupport", "vrouterd",
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // The etcd client against real etcd members the tests start (tools/etcd-lab).
        .testTarget(
            name: "VRouterEtcdTests",
            dependencies: ["VRouterEtcd", "VRouterCluster", "VRouterAPI", "VRouterTestSupport"]
        ),
        .testTarget(name: "VRouterCNITests", dependencies: ["VRouterCNI", "VRouterAPI", "VRouterCore"]),
        .testTarget(name: "CompareToolsTests", dependencies: ["vrouter-perf", "VRouterTestSupport"]),
        // vrouterd as a black box (root): namespaces, veths, ping, iperf3, tshark, the kernel's
        // VXLAN.
        .testTarget(name: "IntegrationTests", dependencies: ["vrouterd", "VRouterAPI", "VRouterTestSupport"]),
    ]
)
