// Writing a node back out as a config file (the state snapshot), in the form
// NodeConfig.load reads; routes go to route files, one line each.

import Foundation
import VRouterCore

extension NodeConfig {
    /// The config as YAML. VRFs named in `routeFiles` get `routesFile: routes-NAME.txt`.
    public func yaml(routeFiles: Set<String>, journalSequence: Int) -> String {
        func q(_ s: String) -> String { Self.quoted(s) }
        var y = "# vrouterd state snapshot: the node as it was; restored on start.\n"
        y += "stateVersion: \(Self.stateVersion)\njournalSequence: \(journalSequence)\n"
        y += "node: { name: \(q(name)), routerMAC: \(q(routerMAC.description)) }\n"
        y +=
            "workers: \(workers)\npool: { buffers: \(poolBuffers), bufferSize: \(bufferSize), bigBuffers: \(bigBuffers) }\n"
        y += "io: { multishotReads: \(multishotReads), idleYields: \(idleYields) }\n"
        let capacity6 = flowCapacity6.map { ", capacity6: \($0)" } ?? ""
        y += "flows: { capacity: \(flowCapacity)\(capacity6), idleTimeout: \(flowIdleTimeout)s }\n"
        if let d = defaultNetwork {
            var line = "defaultNetwork: { name: \(q(d.name)), mtu: \(d.mtu)"
            if let p = d.subnet4 { line += ", subnet: \(p)" }
            if let p = d.subnet6 { line += ", subnet6: \(q(p.description))" }
            if let g = d.gateway4 { line += ", gateway: \(g)" }
            if let g = d.gateway6 { line += ", gateway6: \(q(g.description))" }
            if let v = d.vni { line += ", vni: \(v)" }
            if d.ipFabricForwarding { line += ", ipFabricForwarding: true" }
            if d.ipFabricSnat { line += ", ipFabricSnat: true" }
            y += line + " }\n"
        }
        if let r = snat { y += "snat: { ports: \(q(r.description)) }\n" }
        y += "ipam: { slice: \(ipamSlice), slices: \(ipamSlices) }\n"
        if let c = cluster {
            var etcd = "endpoints: [\(c.endpoints.map(q).joined(separator: ", "))], prefix: \(q(c.prefix))"
            etcd += ", leaseTTL: \(c.leaseTTL)s"
            let tls = [("ca", c.caFile), ("cert", c.certFile), ("key", c.keyFile)].compactMap { k, f in
                f.map { "\(k): \(q($0))" }
            }
            if !tls.isEmpty { etcd += ", tls: { \(tls.joined(separator: ", ")) }" }
            let encap = c.encap == .vxlan ? "vxlan" : "mpls-udp"
            y += "cluster: { etcd: { \(etcd) }, blocks: \(c.blocks), encap: \(encap) }\n"
        }
        y += remoteNodes.isEmpty ? "remoteNodes: []\n" : "remoteNodes:\n"
        for n in remoteNodes {
            var line =
                "  - { name: \(q(n.name)), address: \(n.address), encap: \(n.encap == .vxlan ? "vxlan" : "mpls-udp")"
            if let m = n.mac { line += ", mac: \(q(m.description))" }
            line += ", innerMAC: \(q(n.innerMAC.description)) }\n"
            y += line
        }
        y += vrfs.isEmpty ? "vrfs: []\n" : "vrfs:\n"
        for v in vrfs {
            var line = "  - { name: \(q(v.name)), id: \(v.id)"
            if let n = v.vni { line += ", vni: \(n)" }
            if let g = v.gateway4 { line += ", gateway: \(g)" }
            if let g = v.gateway6 { line += ", gateway6: \(q(g.description))" }
            if routeFiles.contains(v.name) { line += ", routesFile: \(q("routes-\(v.name).txt"))" }
            if v.ipFabricForwarding { line += ", ipFabricForwarding: true" }
            if v.ipFabricSnat { line += ", ipFabricSnat: true" }
            y += line + " }\n"
        }
        y += interfaces.isEmpty ? "interfaces: []\n" : "interfaces:\n"
        for i in interfaces {
            var line = "  - { name: \(q(i.name)), kind: \(i.kind.rawValue), mac: \(q(i.mac.description)), mtu: \(i.mtu)"
            if let v = i.vrf { line += ", vrf: \(q(v))" }
            if let a = i.ipv4 { line += ", ipv4: \(a)/\(i.ipv4PrefixLength)" }
            if let a = i.ipv6 { line += ", ipv6: \(q("\(a)/\(i.ipv6PrefixLength)"))" }
            if let v = i.vlan { line += ", vlan: \(v)" }
            if let l = i.label { line += ", label: \(l)" }
            if !i.antiSpoofing { line += ", antiSpoofing: false" }
            if !i.offloads { line += ", offloads: false" }
            if !i.defaultRoute { line += ", defaultRoute: false" }
            if let g = i.gateway { line += ", gateway: \(g)" }
            if let m = i.gatewayMAC { line += ", gatewayMAC: \(q(m.description))" }
            if let d = i.device { line += ", device: \(q(d))" }
            if let t = i.tap {
                line += ", tap: { name: \(q(t.name))"
                if let n = t.netns { line += ", netns: \(q(n))" }
                if let n = t.ifname { line += ", ifname: \(q(n))" }
                line += ", persistent: \(t.persistent) }"
            }
            if i.pcapIn != nil || i.pcapOut != nil {
                line += ", pcap: {"
                var parts: [String] = []
                if let p = i.pcapIn { parts.append(" in: \(q(resolve(p)))") }
                if let p = i.pcapOut { parts.append(" out: \(q(resolve(p)))") }
                line += parts.joined(separator: ",") + " }"
            }
            y += line + " }\n"
        }
        return y
    }
}

extension NodeConfig {
    /// `s` as a YAML double-quoted scalar that reads back as exactly `s`: backslash and quote
    /// escaped, and every character YAML would fold or refuse (line breaks, tabs, other
    /// control characters, NEL and the Unicode line and paragraph separators, a byte-order
    /// mark) written as an escape. A raw line break inside the quotes read back as a space.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u.value {
            case 0x5C: out += "\\\\"
            case 0x22: out += "\\\""
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0..<0x20, 0x7F...0x9F, 0x2028, 0x2029, 0xFEFF:
                let hex = String(u.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
