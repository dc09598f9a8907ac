// swift-tools-version: 6.1
// vRouter: a userspace packet-forwarding dataplane for Kubernetes nodes.
// Dependencies point one way: executables → Control/CNI → IO → Core → C targets.
// Benchmarks live in their own package (Benchmarks/Package.swift) so that the
// benchmark harness does not add to every build of the node software.
import PackageDescription

let hotPath: [SwiftSetting] = [
    // The dataplane never touches class stored properties per packet, so dynamic
    // exclusivity checks only cost; static checks remain.
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
    // POPCNT (every x86-64 server CPU since 2008): the LPM tries index with popcounts,
    // which otherwise compile to a 12-instruction bit-twiddling sequence per use.
    .unsafeFlags(["-Xcc", "-mpopcnt"]),
]

let package = Package(
    name: "vrouter",
    products: [
        .library(name: "VRouterCore", targets: ["VRouterCore"]),
    ],
    dependencies: [],
    targets: [
        .systemLibrary(
            name: "CURing", path: "Sources/CURing", pkgConfig: "liburing",
            providers: [.apt(["liburing-dev"])]),
        // No pkgConfig: libpcap's .pc drags in dbus include paths.
        .systemLibrary(name: "CPcap", path: "Sources/CPcap", providers: [.apt(["libpcap-dev"])]),
        .systemLibrary(
            name: "CNuma", path: "Sources/CNuma", pkgConfig: "numa",
            providers: [.apt(["libnuma-dev"])]),
        .target(name: "CVRouterShims", path: "Sources/CVRouterShims"),
        .target(
            name: "VRouterCore", dependencies: ["CVRouterShims"],
            swiftSettings: hotPath),
        .testTarget(name: "VRouterCoreTests", dependencies: ["VRouterCore"]),
    ]
)
