// swift-tools-version: 6.1
// package-benchmark suites for vRouter, in a package of their own so the benchmark
// harness (and its malloc interposer) never slows the node software's own builds.
//
//   cd Benchmarks && swift package --allow-writing-to-package-directory benchmark
//
// Every directory here holding Swift files is one benchmark executable.
import Foundation
import PackageDescription

let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
let suites = ((try? FileManager.default.contentsOfDirectory(atPath: here.path)) ?? [])
    .filter { name in
        let dir = here.appendingPathComponent(name)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue,
            !name.hasPrefix(".")
        else { return false }
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return files.contains { $0.hasSuffix(".swift") }
    }
    .sorted()

// A path dependency's identity is its directory name, which depends on the checkout.
let root = here.deletingLastPathComponent().lastPathComponent.lowercased()

let package = Package(
    name: "vrouter-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: suites.map { name in
        .executableTarget(
            name: name,
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "VRouterCore", package: root),
            ],
            path: name,
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked", "-Xcc", "-mpopcnt"])],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    }
)
