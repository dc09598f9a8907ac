// Where the tests find things: the products `swift build` made (the test targets declare
// the executables they run, so building the tests builds them), the scratch directory, the
// outside tools, and whether the run has root.

import Foundation
import Glibc
import Synchronization

public let isRoot = geteuid() == 0

/// The executables a test runs: next to the test bundle first (the build being tested), then
/// the repository's debug and release builds.
public enum Binaries {
    /// The repository this file is in.
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    public static func path(_ name: String) -> String? {
        var dirs: [String] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            dirs.append((exe as NSString).deletingLastPathComponent)
        }
        dirs += [root + "/.build/debug", root + "/.build/release"]
        return dirs.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The path, or a failure saying to build it.
    public static func require(_ name: String) throws -> String {
        guard let p = path(name) else { throw Failure("\(name) is not built (swift build --build-tests)") }
        return p
    }
}

/// The test process's scratch directory (in TMPDIR, which tools/test removes after the run).
public enum Scratch {
    public static let directory: String = {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("vrt-test-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        // World-readable, as /tmp is: a test runs vrouterd as nobody on files in here.
        chmod(d, 0o755)
        return d
    }()

    /// A path in the scratch directory.
    public static func path(_ name: String) -> String { "\(directory)/\(name)" }

    private static let counter = Atomic<Int>(0)
    /// A number unique in this process (names of run files).
    public static func next() -> Int { counter.add(1, ordering: .relaxed).newValue }
}

/// Outside programs the tests use as oracles, at PATH-independent locations.
public enum Tool {
    public static let ip = "/usr/sbin/ip"
    public static let bridge = "/usr/sbin/bridge"
    public static let ping = "/usr/bin/ping"
    public static let iperf3 = "/usr/bin/iperf3"
    public static let tshark = "/usr/bin/tshark"
    public static let ethtool = "/usr/sbin/ethtool"
    public static let setpriv = "/usr/bin/setpriv"
    public static let curl = "/usr/bin/curl"
    public static let python3 = "/usr/bin/python3"

    public static func exists(_ path: String) -> Bool { FileManager.default.isExecutableFile(atPath: path) }
    /// Everything the traffic tests need.
    public static var trafficTools: Bool { [ip, bridge, ping, iperf3, tshark, ethtool].allSatisfy(exists) }
    /// Debian's python3-scapy.
    public static var hasScapy: Bool { FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/scapy") }
}
