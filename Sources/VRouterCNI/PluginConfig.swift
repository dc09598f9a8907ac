// The network config the runtime hands the shim on stdin (one plugin of the conflist,
// with name, cniVersion, runtimeConfig and prevResult injected by libcni). Unknown keys
// are tolerated, `capabilities` included (libcni leaves it in).

import VRouterAPI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public struct PluginConfig: Sendable {
    public var cniVersion: String
    public var name: String
    public var type: String
    /// vrouterd's control socket.
    public var socket: String
    /// Seconds to wait for vrouterd on each call.
    public var timeout: Double
    /// Where the shim keeps what it needs to undo delegated attachments without vrouterd.
    public var stateDir: String
    public var runtimeConfig: JSONObject
    public var prevResult: JSONValue?
    public var raw: JSONObject

    public static let defaultSocket = UnixHTTPClient.defaultSocket
    public static let defaultStateDir = "/var/lib/cni/vrouter"

    /// The pod annotations containerd/CRI-O pass when the config declares the capability.
    public var podAnnotations: JSONObject? { runtimeConfig[NetworkAnnotation.podAnnotationsCapability]?.object }

    /// GC's list (1.1 spelled it `cni.dev/attachments`; libcni ≥ 1.2 sends both).
    public var validAttachments: [CNIAttachmentRef]? {
        guard let list = (raw["cni.dev/valid-attachments"] ?? raw["cni.dev/attachments"])?.array else { return nil }
        return list.compactMap { v in
            guard let c = v["containerID"]?.string, let i = v["ifname"]?.string else { return nil }
            return CNIAttachmentRef(containerID: c, ifname: i)
        }
    }

    public static func parse(_ data: Data, command: CNICommand) throws(CNIError) -> PluginConfig {
        let value: JSONValue
        do {
            value = try JSONValue.parse(data)
        } catch {
            throw CNIError(
                .decodingFailure,
                "the network config on stdin is not JSON",
                details: NetworkAnnotation.describe(error)
            )
        }
        guard let o = value.object else {
            throw CNIError(.decodingFailure, "the network config on stdin is not a JSON object")
        }
        let version = o["cniVersion"]?.string ?? ""
        if command == .version {
            return PluginConfig(
                cniVersion: version.isEmpty ? CNIVersion.latest : version,
                name: "",
                type: "",
                socket: defaultSocket,
                timeout: 10,
                stateDir: defaultStateDir,
                runtimeConfig: JSONObject(),
                prevResult: nil,
                raw: o
            )
        }
        guard CNIVersion.isSupported(version) else {
            throw CNIError(
                .incompatibleVersion,
                "incompatible CNI versions",
                details: "config is \"\(version)\", plugin supports \(CNIVersion.supported)"
            )
        }
        guard let name = o["name"]?.string, !name.isEmpty else {
            throw CNIError(.invalidNetworkConfig, "missing network name", version: version)
        }
        if let why = CNIEnvironment.invalidContainerID(name) {
            throw CNIError(
                .invalidNetworkConfig,
                "network name '\(name)': \(why.replacing("containerID", with: "name"))",
                version: version
            )
        }
        var c = PluginConfig(
            cniVersion: version,
            name: name,
            type: o["type"]?.string ?? "vrouter-cni",
            socket: defaultSocket,
            timeout: 10,
            stateDir: defaultStateDir,
            runtimeConfig: o["runtimeConfig"]?.object ?? JSONObject(),
            prevResult: o["prevResult"],
            raw: o
        )
        if let s = o["socket"] {
            guard let p = s.string, p.hasPrefix("/") else {
                throw CNIError(.invalidNetworkConfig, "socket must be an absolute path", version: version)
            }
            c.socket = p
        }
        if let t = o["timeout"] {
            guard case .number(let n) = t, n > 0, n <= 600 else {
                throw CNIError(
                    .invalidNetworkConfig,
                    "timeout must be a number of seconds in (0, 600]",
                    version: version
                )
            }
            c.timeout = n
        }
        if let d = o["stateDir"] {
            guard let p = d.string, p.hasPrefix("/") else {
                throw CNIError(.invalidNetworkConfig, "stateDir must be an absolute path", version: version)
            }
            c.stateDir = p
        }
        return c
    }
}
