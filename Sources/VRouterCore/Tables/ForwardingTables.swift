// A forwarding snapshot: every table a worker reads, compiled from the control plane's
// model and then never changed. Workers hold only `ForwardingView`, a bundle of raw
// pointers, so reading a table costs no reference counting; the snapshot object keeps
// the memory alive until TablePublication knows no worker can still see it.

/// What a worker reads. Trivially copyable; valid while its snapshot is alive.
@frozen
public struct ForwardingView: @unchecked Sendable {  // Safe: read-only views of an immutable snapshot.
    public let ports: UnsafePointer<PortEntry>
    public let portCount: Int
    public let vrfs: UnsafePointer<VRFEntry>
    public let vrfCount: Int
    public let nexthops: UnsafePointer<Nexthop>
    public let nexthopCount: Int
    /// Tunnel nexthops' precomputed outer headers, by nexthop id (unused for other kinds).
    public let templates: UnsafePointer<TunnelTemplate>
    public let components: UnsafePointer<RouteTarget>
    /// FIB values index this: the (nexthop, label) a prefix resolves to.
    public let results: UnsafePointer<RouteTarget>
    public let resultCount: Int
    /// MPLS label → nexthop id (`ForwardingView.noNexthop` when unused).
    public let labels: UnsafePointer<UInt32>
    public let labelCount: Int
    public let vnis: VNITable
    public let routerMAC: UInt64

    public static let noNexthop: UInt32 = .max

    @inlinable @inline(__always)
    public func port(_ id: UInt16) -> UnsafePointer<PortEntry>? {
        Int(id) < portCount ? ports + Int(id) : nil
    }
    @inlinable @inline(__always)
    public func vrf(_ id: UInt16) -> UnsafePointer<VRFEntry>? {
        Int(id) < vrfCount && vrfs[Int(id)].present ? vrfs + Int(id) : nil
    }
    @inlinable @inline(__always)
    public func nexthop(_ id: UInt32) -> UnsafePointer<Nexthop>? {
        Int(id) < nexthopCount && nexthops[Int(id)].kind != .invalid ? nexthops + Int(id) : nil
    }
    /// The nexthop an incoming MPLS label names, or `noNexthop`.
    @inlinable @inline(__always)
    public func labelTarget(_ label: UInt32) -> UInt32 {
        Int(label) < labelCount ? labels[Int(label)] : Self.noNexthop
    }
}

/// An immutable, published set of tables.
public final class ForwardingTables: @unchecked Sendable {  // Safe: never mutated after init.
    /// Stable address of the view, which is what TablePublication hands to workers.
    public let viewPointer: UnsafeMutablePointer<ForwardingView>
    public var view: ForwardingView { viewPointer.pointee }
    /// Sequence number of this snapshot (1 for the first build).
    public let version: UInt64
    // Owned memory.
    let fib4: [IPv4FIB?]
    let fib6: [IPv6FIB?]
    let ports: UnsafeMutableBufferPointer<PortEntry>
    let vrfs: UnsafeMutableBufferPointer<VRFEntry>
    let nexthops: UnsafeMutableBufferPointer<Nexthop>
    let templates: UnsafeMutableBufferPointer<TunnelTemplate>
    let components: UnsafeMutableBufferPointer<RouteTarget>
    let results: UnsafeMutableBufferPointer<RouteTarget>
    let labels: UnsafeMutableBufferPointer<UInt32>
    let vnis: VNITable

    init(
        version: UInt64,
        routerMAC: MACAddress,
        fib4: [IPv4FIB?],
        fib6: [IPv6FIB?],
        ports: [PortEntry],
        vrfs: [VRFEntry],
        nexthops: [Nexthop],
        templates: [TunnelTemplate],
        components: [RouteTarget],
        results: [RouteTarget],
        labels: [UInt32],
        vnis: [UInt32: UInt16]
    ) {
        func copy<T>(_ a: [T], atLeast n: Int = 1, fill: T) -> UnsafeMutableBufferPointer<T> {
            let b = UnsafeMutableBufferPointer<T>.allocate(capacity: max(a.count, n))
            _ = b.initialize(from: a)
            if a.count < b.count { (b.baseAddress! + a.count).initialize(repeating: fill, count: b.count - a.count) }
            return b
        }
        self.version = version
        self.fib4 = fib4
        self.fib6 = fib6
        self.ports = copy(ports, fill: .absent)
        self.vrfs = copy(vrfs, fill: vrfs.first ?? VRFEntry.absent)
        self.nexthops = copy(nexthops, fill: .invalid)
        self.templates = copy(templates, fill: TunnelTemplate.unused)
        self.components = copy(components, fill: RouteTarget(nexthop: 0))
        self.results = copy(results, fill: RouteTarget(nexthop: 0))
        self.labels = copy(labels, fill: ForwardingView.noNexthop)
        self.vnis = VNITable(vnis)
        viewPointer = .allocate(capacity: 1)
        viewPointer.initialize(
            to: ForwardingView(
                ports: UnsafePointer(self.ports.baseAddress!),
                portCount: ports.count,
                vrfs: UnsafePointer(self.vrfs.baseAddress!),
                vrfCount: vrfs.count,
                nexthops: UnsafePointer(self.nexthops.baseAddress!),
                nexthopCount: nexthops.count,
                templates: UnsafePointer(self.templates.baseAddress!),
                components: UnsafePointer(self.components.baseAddress!),
                results: UnsafePointer(self.results.baseAddress!),
                resultCount: results.count,
                labels: UnsafePointer(self.labels.baseAddress!),
                labelCount: labels.count,
                vnis: self.vnis,
                routerMAC: routerMAC.value
            )
        )
    }

    deinit {
        viewPointer.deallocate()
        ports.deallocate()
        vrfs.deallocate()
        nexthops.deallocate()
        templates.deallocate()
        components.deallocate()
        results.deallocate()
        labels.deallocate()
        vnis.deallocate()
    }

    /// Bytes of table memory this snapshot owns or shares (FIBs counted in full).
    public var memoryBytes: Int {
        var total = MemoryLayout<PortEntry>.stride * ports.count + MemoryLayout<VRFEntry>.stride * vrfs.count
        total += (MemoryLayout<Nexthop>.stride + MemoryLayout<TunnelTemplate>.stride) * nexthops.count
        total += MemoryLayout<RouteTarget>.stride * (components.count + results.count)
        total += 4 * labels.count + vnis.memoryBytes
        for f in fib4 { total += f?.memoryBytes ?? 0 }
        for f in fib6 { total += f?.memoryBytes ?? 0 }
        return total
    }

    /// The compiled FIBs of a VRF (for introspection and tests).
    public func fibs(vrf: UInt16) -> (IPv4FIB, IPv6FIB)? {
        guard Int(vrf) < fib4.count, let a = fib4[Int(vrf)], let b = fib6[Int(vrf)] else { return nil }
        return (a, b)
    }
}

extension VRFEntry {
    static var absent: VRFEntry {
        VRFEntry(
            v4: emptyFIB4.view,
            v6: emptyFIB6.view,
            generation: 0,
            present: false,
            hasGateway4: false,
            hasGateway6: false,
            gateway4: 0,
            gateway6: 0
        )
    }
}

extension TunnelTemplate {
    /// Fills the template slots of nexthops that are not tunnels.
    static let unused = VXLANEncap.template(sourceMAC: .zero, destinationMAC: .zero, source: .any, destination: .any)
}

/// Shared by every absent VRF slot so an unknown VRF id still has valid (empty) views
/// (a generic class cannot hold them as static stored properties).
private let emptyFIB4 = IPv4FIB(routes: [])
private let emptyFIB6 = IPv6FIB(routes: [])
