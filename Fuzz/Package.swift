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

func fuzzer(_ name: String, _ products: [String]) -> Target {
    .executableTarget(
        name: "fuzz-\(name)",
        dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: root) }
    )
}

let package = Package(
    name: "vrouter-fuzz",
    dependencies: [.package(path: "..")],
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
    ]
)
