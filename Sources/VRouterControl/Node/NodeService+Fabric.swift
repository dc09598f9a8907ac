// Networks on the fabric (IP-fabric forwarding, fabric SNAT) at run time: what a NAD with
// either annotation, and a pod attached to such a network, add to the tables. The config
// file's networks get the same from NodeConfig.makeTables at start.

import VRouterAPI
import VRouterCore

extension NodeService {
    /// Checks that this node can carry a network with the record's fabric properties.
    func checkFabricServices(_ rec: NetworkRecord, _ s: ControlState) throws(APIError) {
        guard rec.kind == .vrouter, rec.ipFabricSnat || rec.ipFabricForwarding else { return }
        let annotation =
            rec.ipFabricSnat ? NetworkRecord.fabricSnatAnnotation : NetworkRecord.fabricForwardingAnnotation
        guard s.config.interfaces.contains(where: { $0.kind == .fabric && $0.ipv4 != nil }) else {
            throw .conflict(
                "network \(rec.key): \(annotation)=true needs a fabric interface with the node's underlay address; this node has none"
            )
        }
        if rec.ipFabricSnat && s.config.snat == nil {
            throw .conflict(
                "network \(rec.key): \(annotation)=true needs this node's SNAT port range (snat.ports in its config)"
            )
        }
    }

    /// The underlay VRF and its nexthops, made the first time a network needs them.
    func ensureFabricTables(_ s: inout ControlState) throws(APIError) -> FabricTables {
        if let f = s.compiled.fabric { return f }
        guard let fabric = s.config.interfaces.first(where: { $0.kind == .fabric }),
            let port = s.compiled.portIDs[fabric.name]
        else { throw .conflict("this node has no fabric interface") }
        do {
            let f = try s.config.makeFabricTables(
                &s.builder,
                port: port,
                fabric: fabric,
                nextNexthop: &s.compiled.nextNexthop,
                gatewayMAC: { _ in nil }
            )
            s.compiled.fabric = f
            s.compiled.vrfIDs[NodeConfig.underlayVRFName] = f.vrf
            resolver?.watch()  // the gateway's MAC, now that something routes through it
            return f
        } catch {
            throw APIError(500, "\(error)")
        }
    }

    /// A network's VRF on the fabric: what no route of it covers is translated (SNAT) or
    /// routed again in the underlay VRF (forwarding).
    func installFabricRoute(_ rec: NetworkRecord, vrf: UInt16, _ s: inout ControlState) throws(APIError) {
        guard rec.ipFabricSnat || rec.ipFabricForwarding else { return }
        let f = try ensureFabricTables(&s)
        guard let nh = rec.ipFabricSnat ? f.snat : f.toUnderlay else {
            throw .conflict("network \(rec.key): this node has no SNAT port range")
        }
        do {
            try s.builder.addRoute(vrf: vrf, IPv4Prefix("0.0.0.0/0")!, RouteTarget(nexthop: nh))
        } catch {
            throw APIError(500, "network \(rec.key): \(error)")
        }
    }

    /// The underlay VRF when a pod of `vrf` is routed there too (its network is forwarded
    /// on the fabric), else nil.
    func underlayRoute(forPodIn vrf: String, _ s: ControlState) -> UInt16? {
        guard s.config.vrfs.first(where: { $0.name == vrf })?.ipFabricForwarding == true else { return nil }
        return s.compiled.fabric?.vrf
    }
}
