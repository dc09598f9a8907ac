// Delegated attachments: a NAD whose config names another plugin (bridge, macvlan,
// host-local IPAM…) runs through that plugin as Multus would run it: the NAD's config with
// its name, the attachment's CNI_IFNAME, the pod's CNI_ARGS, and the selection's `ips`/
// `mac` as runtimeConfig for plugins that declare those capabilities (multi-net spec
// §4.1.2: asking for them of a network that cannot honour them fails the ADD). A
// conflist runs as a chain: ADD in order with prevResult, DEL in reverse.

import VRouterAPI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

struct Delegation {
    let executor: any PluginExecutor
    let env: CNIEnvironment
    /// The shim's own environment (PATH and friends reach the delegate, as with libcni).
    let processEnv: [String: String]

    /// The plugin configs of the delegate's chain, each with cniVersion and name.
    func chain(_ d: CNIDelegate, network: String) throws(CNIError) -> [JSONObject] {
        guard let conf = d.config.object else {
            throw CNIError(.invalidNetworkConfig, "network \(network): its config is not a JSON object")
        }
        let version = conf["cniVersion"]?.string ?? "1.0.0"
        let name = conf["name"]?.string ?? network
        var plugins: [JSONObject]
        if let list = conf["plugins"]?.array {
            plugins = try list.map { p throws(CNIError) in
                guard let o = p.object else {
                    throw CNIError(
                        .invalidNetworkConfig,
                        "network \(network): a plugin in its conflist is not an object"
                    )
                }
                return o
            }
        } else {
            plugins = [conf]
        }
        guard !plugins.isEmpty else {
            throw CNIError(.invalidNetworkConfig, "network \(network): its conflist has no plugins")
        }
        for k in plugins.indices {
            guard plugins[k]["type"]?.string?.isEmpty == false else {
                throw CNIError(.invalidNetworkConfig, "network \(network): a plugin config has no type")
            }
            plugins[k]["cniVersion"] = .string(version)
            plugins[k]["name"] = .string(name)
            plugins[k]["plugins"] = nil
        }
        // Capability arguments go only to plugins declaring them; one at least must.
        for (key, value) in (d.runtimeConfig ?? JSONObject()).pairs {
            var taken = false
            for k in plugins.indices where plugins[k]["capabilities"]?[key]?.bool == true {
                var rc = plugins[k]["runtimeConfig"]?.object ?? JSONObject()
                rc[key] = value
                plugins[k]["runtimeConfig"] = .object(rc)
                taken = true
            }
            guard taken else {
                throw CNIError(
                    .invalidNetworkConfig,
                    "network \(network): '\(key)' was requested but none of its plugins declares the '\(key)' capability"
                )
            }
        }
        if let extra = d.cniArgs {
            for k in plugins.indices {
                var args = plugins[k]["args"]?.object ?? JSONObject()
                var cni = args["cni"]?.object ?? JSONObject()
                for (key, v) in extra.pairs { cni[key] = v }
                args["cni"] = .object(cni)
                plugins[k]["args"] = .object(args)
            }
        }
        return plugins
    }

    func environment(_ command: CNICommand, ifname: String, netns: String?) -> [String: String] {
        var e = processEnv.filter { !$0.key.hasPrefix("CNI_") }
        e["CNI_COMMAND"] = command.rawValue
        e["CNI_CONTAINERID"] = env.containerID
        e["CNI_NETNS"] = netns ?? ""
        e["CNI_IFNAME"] = ifname
        e["CNI_ARGS"] = env.rawArgs
        e["CNI_PATH"] = env.path.joined(separator: ":")
        return e
    }

    func add(_ a: CNIAttachment, netns: String) throws(CNIError) -> JSONValue {
        let plugins = try chain(a.delegate!, network: a.network)
        var prev: JSONValue?
        for p in plugins {
            var conf = p
            if let prev { conf["prevResult"] = prev }
            let out = try run(p, conf, .add, a, netns)
            do {
                prev = try JSONValue.parse(out)
            } catch {
                throw CNIError(
                    .delegateFailure,
                    "network \(a.network): plugin \(p["type"]?.string ?? "?") printed a result that is not JSON"
                )
            }
        }
        return prev ?? .object(JSONObject())
    }

    /// DEL through the chain in reverse; every plugin is tried, the first error returned.
    func del(_ a: CNIAttachment, netns: String?) throws(CNIError) {
        let plugins = try chain(a.delegate!, network: a.network)
        var first: CNIError?
        for p in plugins.reversed() {
            var conf = p
            if let r = a.delegate?.result { conf["prevResult"] = r }
            do { _ = try run(p, conf, .del, a, netns) } catch { if first == nil { first = error } }
        }
        if let first { throw first }
    }

    func check(_ a: CNIAttachment, netns: String) throws(CNIError) {
        for p in try chain(a.delegate!, network: a.network) {
            var conf = p
            if let r = a.delegate?.result { conf["prevResult"] = r }
            _ = try run(p, conf, .check, a, netns)
        }
    }

    private func run(
        _ p: JSONObject,
        _ conf: JSONObject,
        _ command: CNICommand,
        _ a: CNIAttachment,
        _ netns: String?
    )
        throws(CNIError) -> Data
    {
        let type = p["type"]?.string ?? ""
        do {
            return try executor.run(
                type: type,
                env: environment(command, ifname: a.ifname, netns: netns),
                stdin: JSONValue.object(conf).encoded(),
                path: env.path
            )
        } catch {
            var e = error
            e.msg = "network \(a.network) (\(a.ifname)): \(type) \(command.rawValue): \(e.msg)"
            if e.code < 100 && e.code != CNIError.Code.invalidNetworkConfig.rawValue {
                e.code = CNIError.Code.delegateFailure.rawValue
            }
            throw e
        }
    }
}
