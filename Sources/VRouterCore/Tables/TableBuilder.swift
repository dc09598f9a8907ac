// The control plane's model of the forwarding state, and its compiler into snapshots.
// Every mutation validates first and changes nothing when it fails, so a bad request
// leaves the model exactly as it was. `build()` compiles what changed since the last
// build: FIBs of VRFs whose routes did not change are shared with the previous snapshot,
// and changed ones are updated incrementally (IPv4FIB.applying).

public struct TableError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    init(_ d: String) { description = d }
}

public struct TableBuilder: Sendable {
    public var routerMAC: MACAddress = .vrouter
    public private(set) var ports: [UInt16: PortConfig] = [:]
    public private(set) var vrfs: [UInt16: VRFConfig] = [:]
    public private(set) var nexthops: [UInt32: NexthopConfig] = [:]
    public private(set) var labels: [UInt32: UInt32] = [:]
    public private(set) var vnis: [UInt32: UInt16] = [:]

    /// Largest ids the dense arrays are sized for.
    public static let maxNexthopID: UInt32 = 1 << 20
    public static let maxLabel: UInt32 = (1 << 20) - 1
    public static let maxVNI: UInt32 = (1 << 24) - 1

    // Route targets are interned so a FIB leaf is one UInt32 index. Indices are never
    // reused, because FIBs shared with earlier snapshots keep meaning them.
    private var results: [RouteTarget] = []
    private var resultIndex: [RouteTarget: UInt32] = [:]
    // Per-VRF route changes since the last build (nil value = delete).
    private var pending4: [UInt16: [IPv4Prefix: RouteTarget?]] = [:]
    private var pending6: [UInt16: [IPv6Prefix: RouteTarget?]] = [:]
    private var builtFIB4: [UInt16: IPv4FIB] = [:]
    private var builtFIB6: [UInt16: IPv6FIB] = [:]
    private var generations: [UInt16: UInt32] = [:]
    private var bumpAll = false
    private var version: UInt64 = 0
    // How many routes, labels and composites name each nexthop.
    private var nexthopUsers: [UInt32: Int] = [:]

    public init() {}

    // MARK: Ports

    public mutating func setPort(_ id: UInt16, _ config: PortConfig) throws(TableError) {
        guard Int(id) < Counters.maxPorts else {
            throw TableError("port id \(id) is above the limit of \(Counters.maxPorts - 1)")
        }
        guard config.mtu >= 68 && config.mtu <= 65535 - 64 else {
            throw TableError("port \(config.name): MTU \(config.mtu) is outside 68...65471")
        }
        if let v = config.vlan, v == 0 || v >= 4095 {
            throw TableError("port \(config.name): VLAN \(v) is outside 1...4094")
        }
        switch config.kind {
        case .pod:
            guard vrfs[config.vrf] != nil else {
                throw TableError("port \(config.name): VRF \(config.vrf) does not exist")
            }
        case .fabric:
            guard config.ipv4 != nil else {
                throw TableError("fabric port \(config.name) needs the node's underlay IPv4 address")
            }
            if let u = config.underlayVRF, vrfs[u] == nil {
                throw TableError("fabric port \(config.name): underlay VRF \(u) does not exist")
            }
        case .none:
            throw TableError("port \(config.name): kind is required")
        }
        if let old = ports[id], old.kind != config.kind, isPortUsed(id) {
            throw TableError("port \(id) (\(old.name)) is used by nexthops; cannot change its kind")
        }
        if let old = ports[id], old.underlayVRF != nil, config.underlayVRF == nil || config.ipv4 == nil {
            let snat = nexthops.filter { if case .sourceNAT(id) = $0.value { true } else { false } }.map(\.key).sorted()
            guard snat.isEmpty else {
                throw TableError(
                    "port \(id) (\(old.name)): SNAT nexthops \(snat.map(String.init).joined(separator: ", ")) need its underlay VRF and address"
                )
            }
        }
        ports[id] = config
        bumpAll = true
    }

    public mutating func removePort(_ id: UInt16) throws(TableError) {
        guard let p = ports[id] else { throw TableError("port \(id) does not exist") }
        let users = nexthops.filter { portOf($0.value) == id }.map(\.key).sorted()
        guard users.isEmpty else {
            throw TableError(
                "port \(id) (\(p.name)) is used by nexthops \(users.map(String.init).joined(separator: ", "))"
            )
        }
        ports[id] = nil
        bumpAll = true
    }

    private func portOf(_ nh: NexthopConfig) -> UInt16? {
        switch nh {
        case .encap(let port, _): port
        case .tunnel(_, let port, _, _, _): port
        case .underlay(let port, _, _): port
        case .sourceNAT(let port): port
        default: nil
        }
    }
    private func isPortUsed(_ id: UInt16) -> Bool { nexthops.values.contains { portOf($0) == id } }

    // MARK: VRFs

    public mutating func setVRF(_ id: UInt16, _ config: VRFConfig) throws(TableError) {
        guard id != UInt16.max else { throw TableError("VRF id \(id) is reserved") }
        if var existing = vrfs[id] {
            existing.name = config.name
            existing.gateway4 = config.gateway4
            existing.gateway6 = config.gateway6
            vrfs[id] = existing
        } else {
            var fresh = config
            fresh.routes4 = [:]
            fresh.routes6 = [:]
            vrfs[id] = fresh
            builtFIB4[id] = nil
            builtFIB6[id] = nil
            generations[id, default: 0] &+= 1
        }
    }

    public mutating func removeVRF(_ id: UInt16) throws(TableError) {
        guard let v = vrfs[id] else { throw TableError("VRF \(id) does not exist") }
        let usedByPorts = ports.filter { $0.value.kind == .pod && $0.value.vrf == id }.map(\.value.name).sorted()
        guard usedByPorts.isEmpty else {
            throw TableError("VRF \(v.name) still has ports: \(usedByPorts.joined(separator: ", "))")
        }
        let underlayOf = ports.filter { $0.value.kind == .fabric && $0.value.underlayVRF == id }.map(\.value.name)
        guard underlayOf.isEmpty else {
            throw TableError("VRF \(v.name) is the underlay VRF of \(underlayOf.sorted().joined(separator: ", "))")
        }
        let translators = nexthops.filter { if case .vrfTranslate(id) = $0.value { true } else { false } }
        guard translators.isEmpty else {
            throw TableError(
                "VRF \(v.name) is the target of nexthops \(translators.keys.sorted().map(String.init).joined(separator: ", "))"
            )
        }
        let usedByVNIs = vnis.filter { $0.value == id }.map(\.key).sorted()
        guard usedByVNIs.isEmpty else {
            throw TableError(
                "VRF \(v.name) is the target of VNIs \(usedByVNIs.map(String.init).joined(separator: ", "))"
            )
        }
        for t in v.routes4.values { release(t) }
        for t in v.routes6.values { release(t) }
        vrfs[id] = nil
        pending4[id] = nil
        pending6[id] = nil
        builtFIB4[id] = nil
        builtFIB6[id] = nil
        generations[id, default: 0] &+= 1
    }

    // MARK: Nexthops

    public mutating func setNexthop(_ id: UInt32, _ config: NexthopConfig) throws(TableError) {
        guard id < Self.maxNexthopID else { throw TableError("nexthop id \(id) is above \(Self.maxNexthopID - 1)") }
        switch config {
        case .discard, .receive: break
        case .encap(let port, _):
            guard let p = ports[port], p.kind == .pod else {
                throw TableError("nexthop \(id): port \(port) is not a pod port")
            }
        case .tunnel(_, let port, let dst, _, _):
            guard let p = ports[port], p.kind == .fabric else {
                throw TableError("nexthop \(id): port \(port) is not a fabric port")
            }
            guard dst.value != 0, !dst.isMulticast, !dst.isBroadcast else {
                throw TableError("nexthop \(id): tunnel destination \(dst) is not a unicast address")
            }
        case .underlay(let port, let via, _):
            guard let p = ports[port], p.kind == .fabric else {
                throw TableError("nexthop \(id): port \(port) is not a fabric port")
            }
            guard via.value != 0, !via.isMulticast, !via.isBroadcast else {
                throw TableError("nexthop \(id): underlay next hop \(via) is not a unicast address")
            }
        case .vrfTranslate(let vrf):
            guard vrfs[vrf] != nil else { throw TableError("nexthop \(id): VRF \(vrf) does not exist") }
        case .sourceNAT(let port):
            guard let p = ports[port], p.kind == .fabric else {
                throw TableError("nexthop \(id): SNAT needs a fabric port; port \(port) is not one")
            }
            guard p.underlayVRF != nil else {
                throw TableError("nexthop \(id): SNAT through \(p.name) needs its underlay VRF (none is set)")
            }
        case .composite(let members):
            guard !members.isEmpty, members.count <= 64 else {
                throw TableError("nexthop \(id): a composite needs 1...64 members")
            }
            for m in members {
                guard let mc = nexthops[m.nexthop] else {
                    throw TableError("nexthop \(id): member \(m.nexthop) does not exist")
                }
                switch mc {
                case .composite: throw TableError("nexthop \(id): member \(m.nexthop) is itself a composite")
                case .vrfTranslate, .sourceNAT:
                    throw TableError("nexthop \(id): member \(m.nexthop) routes again; it cannot be an ECMP member")
                default: break
                }
            }
        }
        if let old = nexthops[id], case .composite(let members) = old {
            for m in members { nexthopUsers[m.nexthop, default: 0] -= 1 }
        }
        if case .composite(let members) = config {
            for m in members { nexthopUsers[m.nexthop, default: 0] += 1 }
        }
        nexthops[id] = config
        // Flows cache the result of a translate nexthop's second lookup, not the nexthop.
        switch config {
        case .vrfTranslate, .sourceNAT: bumpAll = true
        default: break
        }
    }

    public mutating func removeNexthop(_ id: UInt32) throws(TableError) {
        guard let old = nexthops[id] else { throw TableError("nexthop \(id) does not exist") }
        let users = nexthopUsers[id] ?? 0
        guard users == 0 else {
            throw TableError("nexthop \(id) is still used by \(users) route(s), label(s) or composite(s)")
        }
        if case .composite(let members) = old {
            for m in members { nexthopUsers[m.nexthop, default: 0] -= 1 }
        }
        nexthops[id] = nil
        nexthopUsers[id] = nil
        bumpAll = true  // a flow may still name this id, and the id may be reused
    }

    // MARK: Routes

    public mutating func addRoute(vrf: UInt16, _ prefix: IPv4Prefix, _ target: RouteTarget) throws(TableError) {
        try checkRoute(vrf: vrf, prefix.description, target)
        if let old = vrfs[vrf]!.routes4.updateValue(target, forKey: prefix) { release(old) }
        retain(target)
        pending4[vrf, default: [:]][prefix] = .some(target)
    }

    public mutating func addRoute(vrf: UInt16, _ prefix: IPv6Prefix, _ target: RouteTarget) throws(TableError) {
        try checkRoute(vrf: vrf, prefix.description, target)
        if let old = vrfs[vrf]!.routes6.updateValue(target, forKey: prefix) { release(old) }
        retain(target)
        pending6[vrf, default: [:]][prefix] = .some(target)
    }

    public mutating func removeRoute(vrf: UInt16, _ prefix: IPv4Prefix) throws(TableError) {
        guard vrfs[vrf] != nil else { throw TableError("VRF \(vrf) does not exist") }
        guard let old = vrfs[vrf]!.routes4.removeValue(forKey: prefix) else {
            throw TableError("VRF \(vrfs[vrf]!.name) has no route \(prefix)")
        }
        release(old)
        pending4[vrf, default: [:]][prefix] = .some(nil)
    }

    public mutating func removeRoute(vrf: UInt16, _ prefix: IPv6Prefix) throws(TableError) {
        guard vrfs[vrf] != nil else { throw TableError("VRF \(vrf) does not exist") }
        guard let old = vrfs[vrf]!.routes6.removeValue(forKey: prefix) else {
            throw TableError("VRF \(vrfs[vrf]!.name) has no route \(prefix)")
        }
        release(old)
        pending6[vrf, default: [:]][prefix] = .some(nil)
    }

    private func checkRoute(vrf: UInt16, _ prefix: String, _ target: RouteTarget) throws(TableError) {
        guard vrfs[vrf] != nil else { throw TableError("route \(prefix): VRF \(vrf) does not exist") }
        guard let nh = nexthops[target.nexthop] else {
            throw TableError("route \(prefix): nexthop \(target.nexthop) does not exist")
        }
        if case .tunnel(let encap, _, _, _, _) = nh {
            let limit = encap == .vxlan ? Self.maxVNI : Self.maxLabel
            guard target.label <= limit else {
                throw TableError(
                    "route \(prefix): \(encap == .vxlan ? "VNI" : "label") \(target.label) is above \(limit)"
                )
            }
        }
    }

    private mutating func retain(_ t: RouteTarget) { nexthopUsers[t.nexthop, default: 0] += 1 }
    private mutating func release(_ t: RouteTarget) { nexthopUsers[t.nexthop, default: 0] -= 1 }

    // MARK: Labels and VNIs

    /// Incoming MPLS label → nexthop (normally the encap nexthop of a local pod port).
    public mutating func setLabel(_ label: UInt32, nexthop: UInt32) throws(TableError) {
        guard label >= 16 && label <= Self.maxLabel else {
            throw TableError("label \(label) is outside 16...\(Self.maxLabel) (0-15 are reserved)")
        }
        guard nexthops[nexthop] != nil else { throw TableError("label \(label): nexthop \(nexthop) does not exist") }
        if let old = labels[label] { nexthopUsers[old, default: 0] -= 1 }
        nexthopUsers[nexthop, default: 0] += 1
        labels[label] = nexthop
        bumpAll = true
    }

    public mutating func removeLabel(_ label: UInt32) throws(TableError) {
        guard let old = labels.removeValue(forKey: label) else { throw TableError("label \(label) does not exist") }
        nexthopUsers[old, default: 0] -= 1
        bumpAll = true
    }

    /// Incoming VXLAN VNI → the VRF whose routes forward the inner packet.
    public mutating func setVNI(_ vni: UInt32, vrf: UInt16) throws(TableError) {
        guard vni >= 1 && vni <= Self.maxVNI else { throw TableError("VNI \(vni) is outside 1...\(Self.maxVNI)") }
        guard vrfs[vrf] != nil else { throw TableError("VNI \(vni): VRF \(vrf) does not exist") }
        vnis[vni] = vrf
    }

    public mutating func removeVNI(_ vni: UInt32) throws(TableError) {
        guard vnis.removeValue(forKey: vni) != nil else { throw TableError("VNI \(vni) does not exist") }
    }

    // MARK: Compile

    /// Compiles the model into a new immutable snapshot.
    public mutating func build() -> ForwardingTables {
        version += 1
        let vrfIDs = vrfs.keys
        let vrfCount = (vrfIDs.max().map { Int($0) + 1 }) ?? 0
        var fib4 = [IPv4FIB?](repeating: nil, count: vrfCount)
        var fib6 = [IPv6FIB?](repeating: nil, count: vrfCount)
        var vrfEntries = [VRFEntry](repeating: .absent, count: vrfCount)
        // A flow resolved through a VRF-translate or SNAT nexthop cached a result of the
        // target VRF under its own VRF's generation: a change in a target VRF (the
        // underlay, rarely changed) re-resolves every flow.
        if !bumpAll {
            for target in translateTargets
            where builtFIB4[target] == nil || pending4[target]?.isEmpty == false
                || pending6[target]?.isEmpty == false
            {
                bumpAll = true
            }
        }
        if bumpAll { for id in vrfIDs { generations[id, default: 0] &+= 1 } }
        for (id, v) in vrfs {
            var changed = false
            let f4: IPv4FIB
            if let prev = builtFIB4[id] {
                if let p = pending4[id], !p.isEmpty {
                    f4 = prev.applying(p.map { ($0.key, $0.value.map { intern($0) }) })
                    changed = true
                } else {
                    f4 = prev
                }
            } else {
                f4 = IPv4FIB(routes: v.routes4.map { ($0.key, intern($0.value)) })
                changed = true
            }
            let f6: IPv6FIB
            if let prev = builtFIB6[id] {
                if let p = pending6[id], !p.isEmpty {
                    f6 = prev.applying(p.map { ($0.key, $0.value.map { intern($0) }) })
                    changed = true
                } else {
                    f6 = prev
                }
            } else {
                f6 = IPv6FIB(routes: v.routes6.map { ($0.key, intern($0.value)) })
                changed = true
            }
            if changed && !bumpAll { generations[id, default: 0] &+= 1 }
            builtFIB4[id] = f4
            builtFIB6[id] = f6
            fib4[Int(id)] = f4
            fib6[Int(id)] = f6
            vrfEntries[Int(id)] = VRFEntry(
                v4: f4.view,
                v6: f6.view,
                generation: (generations[id] ?? 0) & FlowAction.generationMask,
                present: true,
                hasGateway4: v.gateway4 != nil,
                hasGateway6: v.gateway6 != nil,
                gateway4: v.gateway4?.value ?? 0,
                gateway6: v.gateway6?.value ?? 0
            )
        }
        pending4 = [:]
        pending6 = [:]
        bumpAll = false

        let portCount = (ports.keys.max().map { Int($0) + 1 }) ?? 0
        var portEntries = [PortEntry](repeating: .absent, count: portCount)
        for (id, p) in ports {
            var flags: PortFlags = []
            if p.up { flags.insert(.up) }
            if p.antiSpoofing && p.kind == .pod { flags.insert(.antiSpoofing) }
            if p.ipv4 != nil { flags.insert(.hasIPv4) }
            if p.offloads { flags.insert(.offloads) }
            if p.ipv6 != nil { flags.insert(.hasIPv6) }
            if p.kind == .fabric && p.underlayVRF != nil { flags.insert(.underlayVRF) }
            portEntries[Int(id)] = PortEntry(
                kind: p.kind,
                flags: flags,
                vrf: p.kind == .fabric ? p.underlayVRF ?? 0 : p.vrf,
                mtu: UInt16(p.mtu),
                vlan: p.vlan ?? 0,
                mac: p.mac.value,
                ipv4: p.ipv4?.value ?? 0,
                ipv6: p.ipv6?.value ?? 0
            )
        }

        let nhCount = (nexthops.keys.max().map { Int($0) + 1 }) ?? 0
        var nhEntries = [Nexthop](repeating: .invalid, count: nhCount)
        var templates = [TunnelTemplate](repeating: .unused, count: nhCount)
        var components: [RouteTarget] = []
        for (id, c) in nexthops {
            let n = compile(c, components: &components)
            nhEntries[Int(id)] = n
            if case .tunnel(let encap, let port, _, _, _) = c {
                templates[Int(id)] = template(encap, n, fabricMAC: ports[port]!.mac)
            }
        }

        let labelCount = (labels.keys.max().map { Int($0) + 1 }) ?? 0
        var labelEntries = [UInt32](repeating: ForwardingView.noNexthop, count: labelCount)
        for (l, nh) in labels { labelEntries[Int(l)] = nh }

        return ForwardingTables(
            version: version,
            routerMAC: routerMAC,
            fib4: fib4,
            fib6: fib6,
            ports: portEntries,
            vrfs: vrfEntries,
            nexthops: nhEntries,
            templates: templates,
            components: components,
            results: results,
            labels: labelEntries,
            vnis: vnis
        )
    }

    /// VRFs that VRF-translate and SNAT nexthops route in.
    private var translateTargets: Set<UInt16> {
        var t: Set<UInt16> = []
        for c in nexthops.values {
            switch c {
            case .vrfTranslate(let vrf): t.insert(vrf)
            case .sourceNAT(let port): if let u = ports[port]?.underlayVRF { t.insert(u) }
            default: break
            }
        }
        return t
    }

    private mutating func intern(_ t: RouteTarget) -> UInt32 {
        if let i = resultIndex[t] { return i }
        let i = UInt32(results.count)
        results.append(t)
        resultIndex[t] = i
        return i
    }

    /// The outer headers a tunnel nexthop prepends: from the fabric port's MAC and the
    /// node's underlay address to the underlay next hop's MAC and the remote node.
    private func template(_ encap: TunnelEncap, _ n: Nexthop, fabricMAC: MACAddress) -> TunnelTemplate {
        let vlan: UInt16? = n.vlan == 0 ? nil : n.vlan
        let src = IPv4Address(n.tunnelSource)
        let dst = IPv4Address(n.tunnelDestination)
        switch encap {
        case .vxlan:
            // Untagged, the inner Ethernet header fits in the template too (50 + 14 = 64).
            return VXLANEncap.template(
                sourceMAC: fabricMAC,
                destinationMAC: MACAddress(n.underlayMAC),
                vlanTCI: vlan,
                source: src,
                destination: dst,
                innerEthernet: vlan == nil ? (MACAddress(n.dstMAC), MACAddress(n.srcMAC)) : nil
            )
        case .mplsOverUDP:
            return MPLSoUDPEncap.template(
                sourceMAC: fabricMAC,
                destinationMAC: MACAddress(n.underlayMAC),
                vlanTCI: vlan,
                source: src,
                destination: dst
            )
        }
    }

    private func compile(_ c: NexthopConfig, components: inout [RouteTarget]) -> Nexthop {
        var n = Nexthop.invalid
        switch c {
        case .discard:
            n.kind = .discard
        case .receive:
            n.kind = .receive
        case .encap(let port, let mac):
            let p = ports[port]!
            n.kind = .encap
            n.port = port
            n.vrf = p.vrf
            n.innerMTU = UInt16(p.mtu)
            n.dstMAC = mac.value
            n.srcMAC = routerMAC.value
            n.address = p.ipv4?.value ?? 0
        case .tunnel(let encap, let port, let dst, let underlayMAC, let innerMAC):
            let p = ports[port]!
            n.kind = encap == .vxlan ? .tunnelVXLAN : .tunnelMPLSoUDP
            n.port = port
            // Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14), or + MPLS (4).
            let overhead = encap == .vxlan ? 50 : 32
            n.innerMTU = UInt16(max(p.mtu - overhead, 0))
            n.dstMAC = innerMAC.value
            n.srcMAC = routerMAC.value
            n.tunnelDestination = dst.value
            n.tunnelSource = p.ipv4?.value ?? 0
            n.underlayMAC = underlayMAC.value
            n.vlan = p.vlan ?? 0
            if encap == .vxlan && n.vlan == 0 { n.flags |= Nexthop.innerEthernetInTemplate }
            if underlayMAC.value == 0 { n.flags |= Nexthop.unresolved }
        case .underlay(let port, let via, let mac):
            let p = ports[port]!
            n.kind = .underlay
            n.port = port
            n.innerMTU = UInt16(p.mtu)
            n.dstMAC = mac.value
            n.underlayMAC = mac.value
            n.srcMAC = p.mac.value
            n.tunnelSource = p.ipv4?.value ?? 0
            n.tunnelDestination = via.value
            n.vlan = p.vlan ?? 0
            if mac.value == 0 { n.flags |= Nexthop.unresolved }
        case .vrfTranslate(let vrf):
            n.kind = .vrfTranslate
            n.vrf = vrf
        case .sourceNAT(let port):
            let p = ports[port]!
            n.kind = .sourceNAT
            n.port = port
            n.vrf = p.underlayVRF ?? 0
            n.tunnelSource = p.ipv4?.value ?? 0
        case .composite(let members):
            n.kind = .composite
            n.componentStart = UInt32(components.count)
            n.componentCount = UInt32(members.count)
            components.append(contentsOf: members)
        }
        return n
    }
}
