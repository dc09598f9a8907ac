// A VRF's compiled IPv6 forwarding table: built once, never changed, replaced whole
// (`applying` makes the replacement; the control plane publishes it to the workers).

/// An immutable IPv6 longest-prefix-match table from prefixes to 31-bit values.
public final class IPv6FIB: @unchecked Sendable {  // Safe: nothing changes after init.
    let arrays: PoptrieArrays
    let routes: RouteList<UInt128>

    /// Builds from `routes`; for a prefix given twice the last value wins.
    /// Values must be below `LPM.maxValue`.
    public convenience init(routes: some Sequence<(IPv6Prefix, UInt32)>) {
        // Arrays iterate through their buffer: generic iteration over `some Sequence` from
        // another module is unspecialized and would allocate per element.
        let list =
            routes.withContiguousStorageIfAvailable { Self.flatten($0) } ?? Self.flatten(Array(routes))
        let rib = RouteList(unsorted: list)
        self.init(routes: rib, arrays: .build(rib, directBits: Self.directBits(rib.count)))
    }

    /// A build with a chosen direct-pointing width (tests cover every width this way).
    convenience init(routes: [(IPv6Prefix, UInt32)], directBits: Int) {
        let rib = RouteList(unsorted: routes.map { ($0.0.address.value, $0.0.length, $0.1) })
        self.init(routes: rib, arrays: .build(rib, directBits: directBits))
    }

    static func flatten(
        _ routes: UnsafeBufferPointer<(IPv6Prefix, UInt32)>
    ) -> [(addr: UInt128, len: UInt8, value: UInt32)] {
        routes.map { p, v in
            precondition(v < LPM.maxValue, "route value \(v) is not below LPM.maxValue")
            return (p.address.value, p.length, v)
        }
    }

    static func flatten(
        _ changes: UnsafeBufferPointer<(IPv6Prefix, UInt32?)>
    ) -> [(addr: UInt128, len: UInt8, value: UInt32)] {
        changes.map { p, v in
            if let v { precondition(v < LPM.maxValue, "route value \(v) is not below LPM.maxValue") }
            return (p.address.value, p.length, v ?? RouteList<UInt128>.deleted)
        }
    }

    static func flatten(_ routes: [(IPv6Prefix, UInt32)]) -> [(addr: UInt128, len: UInt8, value: UInt32)] {
        routes.withUnsafeBufferPointer { flatten($0) }
    }

    static func flatten(_ changes: [(IPv6Prefix, UInt32?)]) -> [(addr: UInt128, len: UInt8, value: UInt32)] {
        changes.withUnsafeBufferPointer { flatten($0) }
    }

    init(routes: RouteList<UInt128>, arrays: PoptrieArrays) {
        self.routes = routes
        self.arrays = arrays
    }

    deinit { arrays.deallocate() }

    /// Direct-pointing width for a table size: an empty VRF's table stays at 1 KiB.
    /// Global IPv6 routes all start with 2000::/3, so direct bits buy less than in IPv4:
    /// at 200k BGP-like routes 18 bits measured 6% faster (one node level fewer for
    /// /48) but 18.4 instead of 14.9 bytes per route, so 16 it is.
    static func directBits(_ count: Int) -> Int {
        switch count {
        case ..<512: 8
        case ..<8192: 12
        default: 16
        }
    }

    /// The raw pointers the packet path reads; valid while this FIB is alive.
    public var view: IPv6FIBView {
        IPv6FIBView(
            direct: arrays.direct,
            nodes: arrays.nodes.base,
            leaves: arrays.leaves.base,
            inline: arrays.inline.base,
            values: arrays.narrow ? arrays.values.base : nil,
            directBits: arrays.directBits
        )
    }

    /// Bytes of lookup structure this FIB allocated (direct array, nodes, leaves, inline
    /// roots, value table), including garbage left by `applying` and buffer slack.
    public var memoryBytes: Int { arrays.bytes }
    /// Bytes of the sorted route list kept for `applying`.
    public var ribBytes: Int { routes.bytes }
    public var routeCount: Int { routes.count }

    /// The routes, sorted by prefix.
    public var allRoutes: [(IPv6Prefix, UInt32)] {
        (0..<routes.count).map { i in
            (IPv6Prefix(IPv6Address(routes.addrs[i]), length: Int(routes.lens[i]))!, routes.values[i])
        }
    }

    /// A new FIB equal to building from scratch with `changes` applied (value nil =
    /// delete; for a prefix changed twice the last change wins). Only the direct slots
    /// the changes cover are rebuilt; the rest is one memcpy of the arrays. Garbage from
    /// replaced subtrees is reclaimed by a full build once it outweighs the live part.
    public func applying(_ changes: some Sequence<(IPv6Prefix, UInt32?)>) -> IPv6FIB {
        let list =
            changes.withContiguousStorageIfAvailable { Self.flatten($0) } ?? Self.flatten(Array(changes))
        if list.isEmpty { return self }
        let delta = RouteList(unsorted: list)
        let merged = routes.merging(delta)
        let bits = arrays.directBits
        if !(Self.directBits(merged.count / 2)...Self.directBits(merged.count * 2)).contains(bits)
            || arrays.mostlyGarbage
        {
            return IPv6FIB(routes: merged, arrays: .build(merged, directBits: Self.directBits(merged.count)))
        }
        let ranges = affectedSlots(delta.addrs, delta.lens, directBits: bits)
        let added = delta.values.filter { $0 != RouteList<UInt128>.deleted }
        guard let rebuilt = arrays.rebuilding(ranges, from: merged, newValues: added) else {
            return IPv6FIB(routes: merged, arrays: .build(merged, directBits: Self.directBits(merged.count)))
        }
        return IPv6FIB(routes: merged, arrays: rebuilt)
    }
}
