// The CNI_* environment a runtime execs the plugin with, validated the way libcni's skel
// does (ifname and containerID rules, CNI_ARGS by key with '=' allowed in values).

public enum CNICommand: String, Sendable {
    case add = "ADD"
    case del = "DEL"
    case check = "CHECK"
    case version = "VERSION"
    case status = "STATUS"
    case gc = "GC"
}

public struct CNIEnvironment: Sendable, Equatable {
    public var command: CNICommand
    public var containerID: String
    public var netns: String
    public var ifname: String
    public var args: [String: String]
    public var path: [String]

    public var podNamespace: String? { args["K8S_POD_NAMESPACE"].flatMap { $0.isEmpty ? nil : $0 } }
    public var podName: String? { args["K8S_POD_NAME"].flatMap { $0.isEmpty ? nil : $0 } }
    public var podUID: String? { args["K8S_POD_UID"].flatMap { $0.isEmpty ? nil : $0 } }
    /// CNI_ARGS as the runtime gave them (passed on to delegates).
    public var rawArgs: String

    /// Reads and checks the variables `command` needs (spec §"Parameters").
    public static func read(_ env: [String: String]) throws(CNIError) -> CNIEnvironment {
        guard let c = env["CNI_COMMAND"], !c.isEmpty else {
            throw CNIError(.invalidEnvironment, "CNI_COMMAND is not set")
        }
        guard let command = CNICommand(rawValue: c) else {
            throw CNIError(.invalidEnvironment, "CNI_COMMAND '\(c)' is not ADD, DEL, CHECK, VERSION, STATUS or GC")
        }
        var e = CNIEnvironment(
            command: command,
            containerID: env["CNI_CONTAINERID"] ?? "",
            netns: env["CNI_NETNS"] ?? "",
            ifname: env["CNI_IFNAME"] ?? "",
            args: [:],
            path: (env["CNI_PATH"] ?? "").split(separator: ":").map(String.init),
            rawArgs: env["CNI_ARGS"] ?? ""
        )
        for item in e.rawArgs.split(separator: ";") {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2, !kv[0].isEmpty else {
                throw CNIError(.invalidEnvironment, "CNI_ARGS item '\(item)' is not KEY=VALUE")
            }
            e.args[String(kv[0])] = String(kv[1])
        }
        switch command {
        case .add, .check, .del:
            var missing: [String] = []
            if e.containerID.isEmpty { missing.append("CNI_CONTAINERID") }
            if e.ifname.isEmpty { missing.append("CNI_IFNAME") }
            if e.netns.isEmpty && command != .del { missing.append("CNI_NETNS") }
            guard missing.isEmpty else {
                throw CNIError(
                    .invalidEnvironment,
                    "required environment variables missing: \(missing.joined(separator: ", "))"
                )
            }
            if let why = Self.invalidContainerID(e.containerID) {
                throw CNIError(.invalidEnvironment, "CNI_CONTAINERID '\(e.containerID)': \(why)")
            }
            if let why = Self.invalidInterfaceName(e.ifname) {
                throw CNIError(.invalidEnvironment, "CNI_IFNAME '\(e.ifname)': \(why)")
            }
        case .version, .status, .gc:
            break
        }
        return e
    }

    /// Why `id` is not a valid container ID (`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`), or nil.
    public static func invalidContainerID(_ id: String) -> String? {
        guard let first = id.utf8.first else { return "empty" }
        guard isAlnum(first) else { return "invalid characters in containerID (must start with a letter or digit)" }
        guard
            id.utf8.allSatisfy({
                isAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-")
            })
        else {
            return "invalid characters in containerID"
        }
        return nil
    }

    /// Why `name` is not a valid Linux interface name (libcni's ValidateInterfaceName), or nil.
    public static func invalidInterfaceName(_ name: String) -> String? {
        if name.isEmpty { return "interface name is empty" }
        if name.utf8.count > 15 { return "interface name is too long (at most 15 bytes)" }
        if name == "." || name == ".." { return "interface name is . or .." }
        for b in name.utf8 where b == UInt8(ascii: "/") || b == UInt8(ascii: ":") || b <= 32 || b == 127 {
            return "interface name contains '/', ':' or whitespace"
        }
        return nil
    }

    static func isAlnum(_ b: UInt8) -> Bool {
        (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122)
    }
}
