// Networks on the fabric (IP-fabric forwarding, fabric SNAT) at run time, in the tables
// part: what a NAD with either annotation, and a pod attached to such a network, add to the
// tables. The config file's networks get the same from NodeConfig.makeTables at start.

import VRouterAPI
import VRouterCore

/// What the node's config says about the fabric, for the fabric services.
struct FabricSetting: Sendable {
    /// The fabric interface (with the node's underlay address and gateway), if any.
    var fabric: NodeConfig.Interface?
    /// The node has an SNAT port range.
    var snat: Bool

    init(_ config: NodeConfig) {
        fabric = config.interfaces.first { $0.kind == .fabric && $0.ipv4 != nil }
        snat = config.snat != nil
    }
}

extension TableModel {
    /// Checks that this node can carry a network with the record's fabric properties.
    func checkFabricServices(_ rec: NetworkRecord) throws(APIError) {
        guard rec.kind == .vrouter, rec.ipFabricSnat || rec.ipFabricForwarding else { return }
        let annotation =
            rec.ipFabricSnat ? NetworkRecord.fabricSnatAnnotation : NetworkRecord.fabricForwardingAnnotation
        guard setting.fabric != nil, fabric != nil else {
            throw .conflict(
                "network \(rec.key): \(annotation)=true needs a fabric interface with the node's underlay address; this node has none"
            )
        }
        if rec.ipFabricSnat && !setting.snat {
            throw .conflict(
                "network \(rec.key): \(annotation)=true needs this node's SNAT port range (snat.ports in its config)"
            )
        }
    }

    /// The underlay VRF and its nexthops, made the first time a network needs them.
    mutating func ensureFabricTables() throws(APIError) -> FabricTables {
        if let f = compiled.fabric { return f }
        guard let itf = setting.fabric, let port = fabric?.port else {
            throw .conflict("this node has no fabric interface")
        }
        // Numbered above every nexthop in use (ids below `compiled.nextNexthop` stay in use).
        var next = (builder.nexthops.keys.max() ?? 1) + 1
        do {
            let f = try NodeConfig.makeFabricTables(
                &builder,
                port: port,
                fabric: itf,
                snat: setting.snat,
                reservedVRFs: [],
                nextNexthop: &next,
                gatewayMAC: { _ in nil }
            )
            compiled.fabric = f
            compiled.vrfIDs[NodeConfig.underlayVRFName] = f.vrf
            return f
        } catch {
            throw APIError(500, "\(error)")
        }
    }

    /// A network's VRF on the fabric: what no route of it covers is translated (SNAT) or
    /// routed again in the underlay VRF (forwarding). Its VRF record carries the property.
    mutating func installFabricRoute(_ rec: NetworkRecord, vrf: UInt16) throws(APIError) {
        guard rec.ipFabricSnat || rec.ipFabricForwarding, let name = rec.vrf else { return }
        let f = try ensureFabricTables()
        guard let nh = rec.ipFabricSnat ? f.snat : f.toUnderlay else {
            throw .conflict("network \(rec.key): this node has no SNAT port range")
        }
        do {
            try builder.addRoute(vrf: vrf, IPv4Prefix("0.0.0.0/0")!, RouteTarget(nexthop: nh))
        } catch {
            throw APIError(500, "network \(rec.key): \(error)")
        }
        if let i = vrfs.firstIndex(where: { $0.name == name }) {
            vrfs[i].ipFabricForwarding = rec.ipFabricForwarding
            vrfs[i].ipFabricSnat = rec.ipFabricSnat
        }
    }

    /// The underlay VRF when a pod of VRF `id` is routed there too (its network is
    /// forwarded on the fabric), else nil.
    func underlayRoute(forPodIn id: UInt16) -> UInt16? {
        guard vrfs.first(where: { $0.id == id })?.ipFabricForwarding == true else { return nil }
        return compiled.fabric?.vrf
    }
}
