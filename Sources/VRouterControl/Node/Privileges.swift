// What `vrouterd run` needs from the kernel before it touches anything: checked up front so
// that an unprivileged start is one clear line, not an EPERM from whichever call came first.

import Foundation

public enum Privileges {
    /// Linux capability numbers (linux/capability.h).
    static let netAdmin = 12, netRaw = 13, sysAdmin = 21

    /// The capabilities `config` needs that this process lacks, by name, and why.
    static func missing(for config: NodeConfig, effective: UInt64? = effectiveCapabilities()) -> [String] {
        var needed: [(Int, String)] = []
        if config.interfaces.contains(where: { $0.tap != nil || $0.device != nil }) {
            needed.append((netAdmin, "CAP_NET_ADMIN (taps, links, addresses)"))
        }
        if config.interfaces.contains(where: { $0.kind == .fabric && $0.device != nil }) {
            needed.append((netRaw, "CAP_NET_RAW (the fabric's AF_PACKET sockets)"))
        }
        if config.interfaces.contains(where: { $0.tap?.netns != nil }) {
            needed.append((sysAdmin, "CAP_SYS_ADMIN (entering pod namespaces)"))
        }
        guard let effective else { return [] }  // unknown: let the calls themselves tell
        return needed.filter { effective & (1 << UInt64($0.0)) == 0 }.map(\.1)
    }

    /// Throws the one line naming what is missing (before anything is touched: the control
    /// socket's directory included).
    public static func check(for config: NodeConfig) throws(ServiceError) {
        let missing = missing(for: config)
        guard missing.isEmpty else {
            throw ServiceError("run needs root, or these capabilities: \(missing.joined(separator: ", "))")
        }
    }

    /// CapEff of this process, from /proc/self/status (nil when unreadable).
    static func effectiveCapabilities() -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("CapEff:") {
            return UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        }
        return nil
    }
}
