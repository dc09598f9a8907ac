// swift-tools-version: 6.1
// Coverage-guided fuzzers (libFuzzer) for vRouter's parsers of untrusted bytes, in a package
// of their own so that the normal build never compiles them. tools/fuzz builds them with
// libFuzzer and AddressSanitizer in its own scratch path and runs them on Fuzz/corpus/NAME:
//
//   tools/fuzz [--minutes N] [NAME...]
//
// Each `fuzz-NAME` executable defines LLVMFuzzerTestOneInput (libFuzzer supplies main) and
// checks the invariants it can on every input; FuzzSupport holds what they share. A new
// target: a directory Sources/fuzz-NAME, a line below, and seed inputs in corpus/NAME.
import Foundation
import PackageDescription

// A path dependency's identity is its directory name, which depends on the checkout.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .lastPathComponent.lowercased()

func fuzzer(_ name: String, _ products: [String], node: Bool = false) -> Target {
    .executableTarget(
        name: "fuzz-\(name)",
        dependencies: ["FuzzSupport"] + (node ? ["FuzzNode"] : []) + products.map { .product(name: $0, package: root) }
    )
}

let package = Package(
    name: "vrouter-fuzz",
    dependencies: [.package(path: ".."), .package(url: "https://github.com/apple/swift-log", from: "1.6.0")],
    targets: [
        .target(name: "FuzzSupport", dependencies: [.product(name: "VRouterCore", package: root)]),
        // Frames on a pod port and on the fabric through the whole pipeline.
        fuzzer("pipeline", ["VRouterCore"]),
        // A capture file through libpcap into a PacketSet, then replayed through the pipeline.
        fuzzer("pcap", ["VRouterCore", "VRouterIO"]),
        // rtnetlink replies (links, addresses, routes, acks and errors) as the kernel sends them.
        fuzzer("netlink", ["VRouterIO"]),
        // The node config (YAML): parse and validate, compile into tables, write and read back.
        fuzzer("config", ["VRouterCore", "VRouterControl"]),
        // Control API requests on a running node (in namespaces of its own), then a restart.
        fuzzer("api", ["VRouterAPI", "VRouterControl"], node: true),
        // The CNI plugin's stdin, CNI_ARGS and annotation, against a running node.
        fuzzer("cni", ["VRouterAPI", "VRouterCNI", "VRouterControl"], node: true),
        // A running node in namespaces of the target's own, for the control-side targets.
        .target(
            name: "FuzzNode",
            dependencies: [
                "FuzzSupport", .product(name: "VRouterControl", package: root),
                .product(name: "VRouterIO", package: root), .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
