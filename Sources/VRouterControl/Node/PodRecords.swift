// What vrouterd keeps of the pods attached through the CNI shim: one record per sandbox
// (container ID), journaled, with every attachment as made at ADD.

import VRouterAPI
import VRouterCore

/// One pod's attachments for one sandbox (container ID), as recorded at ADD.
public struct PodRecord: Codable, Sendable, Equatable {
    public var containerID: String
    public var netns: String
    public var pod: CNIPod
    public var attachments: [PodAttachment]
    /// The delegates' results are in (the ADD completed).
    public var committed: Bool
    /// DEL released the vRouter attachments; the delegated ones are being DELeted.
    public var releasing: Bool?
    public var key: String { pod.key ?? containerID }
}

public struct PodAttachment: Codable, Sendable, Equatable {
    public var network: String
    public var ifname: String
    public var isDefault: Bool
    /// vRouter attachments: the node interface (vif), its VRF, host-side tap name and MTU,
    /// and what the pod sees.
    public var interface: String?
    public var vrf: String?
    public var tap: String?
    public var mtu: Int?
    /// The MPLS label other nodes put on MPLS-over-UDP packets for this interface.
    public var label: UInt32?
    public var mac: String?
    public var ipv4: String?
    public var ipv6: String?
    public var gateway4: String?
    public var gateway6: String?
    /// The pod's default route goes through this attachment.
    public var defaultRoute: Bool
    /// The gateways the selection asked for with `default-route`.
    public var requestedDefaultRoute: [String]?
    /// The network was force-deleted under the pod: nothing left to release.
    public var detached: Bool?
    public var delegate: CNIDelegate?

    init(network: String, ifname: String, isDefault: Bool, defaultRoute: Bool) {
        self.network = network
        self.ifname = ifname
        self.isDefault = isDefault
        self.defaultRoute = defaultRoute
    }

    var wire: CNIAttachment {
        var a = CNIAttachment(network: network, ifname: ifname, isDefault: isDefault)
        a.delegate = delegate
        guard delegate == nil else { return a }
        a.mac = mac
        a.ips = [ipv4, ipv6].compactMap { $0 }
        a.gateways = [ipv4 != nil ? gateway4 : nil, ipv6 != nil ? gateway6 : nil].compactMap { $0 }
        if defaultRoute {
            var routes: [CNIResult.Route] = []
            if ipv4 != nil, let g = gateway4 { routes.append(CNIResult.Route(dst: "0.0.0.0/0", gw: g)) }
            if ipv6 != nil, let g = gateway6 { routes.append(CNIResult.Route(dst: "::/0", gw: g)) }
            a.routes = routes
        }
        return a
    }

    /// This attachment's entry in the pod's network-status (multi-net spec §5).
    var status: NetworkStatusEntry? {
        if let d = delegate {
            guard let r = d.result, let result = try? CNIResult.read(r) else {
                return NetworkStatusEntry(name: network, interface: ifname, ips: nil, mac: nil, default: isDefault)
            }
            let (itf, ips) =
                result.sandboxInterface ?? (
                    CNIResult.Interface(name: ifname), result.ips.filter { $0.interface == nil }
                )
            return NetworkStatusEntry(
                name: network,
                interface: itf.name,
                ips: ips.map(\.address),
                mac: itf.mac,
                default: isDefault,
                defaultRoute: d.defaultRoute
            )
        }
        guard detached != true else { return nil }
        return NetworkStatusEntry(
            name: network,
            interface: ifname,
            ips: [ipv4, ipv6].compactMap { $0 },
            mac: mac,
            default: isDefault,
            defaultRoute: requestedDefaultRoute
        )
    }
}

/// What vrouterd keeps for networks and pods (under the node's state lock).
struct CNIState {
    var networks: [String: NetworkRecord] = [:]
    /// By container ID.
    var pods: [String: PodRecord] = [:]
    /// Address pools by network key ("namespace/name", or the default network's name).
    var pools: [String: [SubnetPool]] = [:]

    func record(forPod key: String) -> PodRecord? { pods.values.first { $0.key == key } }

    /// Pods attached to a network, by pod key.
    func users(of network: String) -> [String] {
        pods.values.filter { p in p.attachments.contains { $0.network == network && $0.detached != true } }.map(\.key)
            .sorted()
    }
}
