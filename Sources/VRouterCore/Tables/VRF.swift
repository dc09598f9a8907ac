// A VRF: one virtual network's routing instance, with its own IPv4 and IPv6 tables.

/// What the control plane says a VRF is. Routes are kept here as the RIB; the compiled
/// FIBs live in the snapshot.
public struct VRFConfig: Sendable {
    public var name: String
    /// The vRouter's own address in this VRF (the pods' gateway): source of ICMP errors,
    /// and answered when pinged.
    public var gateway4: IPv4Address?
    public var gateway6: IPv6Address?
    public internal(set) var routes4: [IPv4Prefix: RouteTarget] = [:]
    public internal(set) var routes6: [IPv6Prefix: RouteTarget] = [:]

    public init(name: String, gateway4: IPv4Address? = nil, gateway6: IPv6Address? = nil) {
        self.name = name
        self.gateway4 = gateway4
        self.gateway6 = gateway6
    }
}

/// The compiled VRF the dataplane reads.
@frozen
public struct VRFEntry: @unchecked Sendable {  // Safe: views into immutable FIBs owned by the snapshot.
    public var v4: IPv4FIBView
    public var v6: IPv6FIBView
    /// Bumped whenever a route of this VRF (or a label/nexthop removal anywhere) changes
    /// what a flow could resolve to; a flow entry carrying an older generation is re-resolved.
    /// Modulo 2^18 (FlowAction.generationMask), the width a flow entry stores: an entry idle
    /// through exactly a multiple of 262,144 changes of its VRF would pass for current, which
    /// needs ~870 table commits a second to one VRF for the whole idle timeout (300 s).
    public var generation: UInt32
    public var present: Bool
    public var hasGateway4: Bool
    public var hasGateway6: Bool
    public var gateway4: UInt32
    public var gateway6: UInt128
}
