// Networks and pods across restarts. A snapshot keeps them in cni.json beside config.yaml
// (which already holds their VRFs and pod interfaces, so a restore only reloads records
// and rebuilds the address pools); the journal's network/pod records, replayed after it,
// make what they describe when it is missing (VRFs; taps, re-attached when they survived).

import Foundation
import Logging
import VRouterAPI
import VRouterCore
import VRouterIO

/// cni.json in a state snapshot.
public struct CNISnapshot: Codable, Sendable {
    public var networks: [NetworkRecord]
    public var pods: [PodRecord]
}

extension NodeService {
    /// Reloads the records of a snapshot (before `start` and the journal replay).
    public func restoreCNI(_ saved: CNISnapshot) {
        state.withLock { s in
            for rec in saved.networks {
                s.cni.networks[rec.key] = rec
                s.cni.pools[rec.key] = Self.pools(for: rec, s.config)
            }
            for p in saved.pods {
                s.cni.pods[p.containerID] = p
                markAddresses(p, used: true, &s)
            }
        }
    }

    func cniSnapshot(_ s: ControlState) -> CNISnapshot {
        CNISnapshot(
            networks: s.cni.networks.values.sorted { $0.key < $1.key },
            pods: s.cni.pods.values.sorted { $0.containerID < $1.containerID }
        )
    }

    static func pools(for rec: NetworkRecord, _ c: NodeConfig) -> [SubnetPool] {
        var pools: [SubnetPool] = []
        if let p = rec.subnet.flatMap({ IPv4Prefix($0) }), let g = rec.gateway.flatMap({ IPv4Address($0) }),
            let pool = SubnetPool.v4(p, gateway: g, slice: c.ipamSlice, slices: c.ipamSlices)
        {
            pools.append(pool)
        }
        if let p = rec.subnet6.flatMap({ IPv6Prefix($0) }), let g = rec.gateway6.flatMap({ IPv6Address($0) }),
            let pool = SubnetPool.v6(p, gateway: g, slice: c.ipamSlice, slices: c.ipamSlices)
        {
            pools.append(pool)
        }
        return pools
    }

    func markAddresses(_ p: PodRecord, used: Bool, _ s: inout ControlState) {
        for a in p.attachments where a.delegate == nil && a.detached != true {
            for ip in [a.ipv4, a.ipv6].compactMap({ $0 }) {
                guard let (v6, value, _) = NetworkAnnotation.parseIP(ip),
                    let pi = s.cni.pools[a.network]?.firstIndex(where: { $0.v6 == v6 })
                else { continue }
                if used {
                    s.cni.pools[a.network]![pi].markUsed(value)
                } else {
                    s.cni.pools[a.network]![pi].release(value)
                }
            }
        }
    }

    // MARK: journal replay

    func replayNetwork(_ rec: NetworkRecord) throws(APIError) {
        try state.withLock { s throws(APIError) in
            if let old = s.cni.networks[rec.key] { try removeNetwork(old, &s) }
            if rec.kind == .vrouter, let vrf = rec.vrf, s.compiled.vrfIDs[vrf] != nil {
                // The VRF came back with the snapshot.
                s.cni.networks[rec.key] = rec
                s.cni.pools[rec.key] = Self.pools(for: rec, s.config)
            } else {
                try installNetwork(rec, &s)
            }
            for p in s.cni.pods.values { markAddresses(p, used: true, &s) }
            publication.publish(s.builder.build())
        }
    }

    func replayDeleteNetwork(_ key: String) throws(APIError) {
        try state.withLock { s throws(APIError) in
            guard let rec = s.cni.networks[key] else { return }
            try removeNetwork(rec, &s)
            publication.publish(s.builder.build())
        }
    }

    /// A pod record as it was journaled: the interfaces it lists are made (re-attached when
    /// they survived) and those it marks released are removed.
    func replayPod(_ rec: PodRecord) {
        state.withLock { s in
            if let old = s.cni.pods[rec.containerID] { markAddresses(old, used: false, &s) }
            s.cni.pods[rec.containerID] = rec
            markAddresses(rec, used: true, &s)
            for a in rec.attachments where a.delegate == nil {
                guard let vif = a.interface else { continue }
                let present = s.compiled.portIDs[vif] != nil
                if a.detached == true {
                    if present { try? uninstallInterfaces([vif], &s) }
                } else if !present {
                    guard NetworkNamespace.at(rec.netns).exists else {
                        log.warning(
                            "pod namespace gone; its interface waits for DEL",
                            metadata: ["pod": "\(rec.key)", "interface": "\(vif)"]
                        )
                        continue
                    }
                    do {
                        _ = try installInterface(
                            Self.nodeInterface(a, netns: rec.netns),
                            &s,
                            reattach: true,
                            gateways: (a.gateway4.flatMap { IPv4Address($0) }, a.gateway6.flatMap { IPv6Address($0) })
                        )
                    } catch {
                        log.error(
                            "pod interface not restored",
                            metadata: ["pod": "\(rec.key)", "interface": "\(vif)", "error": "\(error)"]
                        )
                    }
                }
            }
            publication.publish(s.builder.build())
        }
    }

    func replayPodReleased(_ containerID: String) {
        state.withLock { s in
            releaseVRouterAttachments(containerID, &s)
            s.cni.pods[containerID] = nil
            publication.publish(s.builder.build())
        }
    }

    /// Pod interfaces of a saved config whose namespace is gone (the pod died while vrouterd
    /// was down): they cannot be re-made, and their records keep the addresses until DEL.
    static func droppingVanishedPods(_ c: NodeConfig, _ log: Logger) -> NodeConfig {
        var c = c
        c.interfaces.removeAll { itf in
            guard itf.kind == .pod, let t = itf.tap, t.persistent, let ns = t.netns, !NetworkNamespace.at(ns).exists
            else { return false }
            log.warning(
                "pod interface dropped: its network namespace is gone",
                metadata: ["interface": "\(itf.name)", "netns": "\(ns)"]
            )
            return true
        }
        return c
    }
}
