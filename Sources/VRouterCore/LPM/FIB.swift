// A VRF's compiled forwarding table for one address family: built once, never changed,
// replaced whole (`applying` makes the replacement; the control plane publishes it to the
// workers).

/// An immutable longest-prefix-match table from prefixes to 31-bit values
/// (`IPv4FIB` = `FIB<IPv4Prefix>`, `IPv6FIB` = `FIB<IPv6Prefix>`).
public final class FIB<Prefix: LPMPrefix>: @unchecked Sendable {  // Safe: nothing changes after init.
    public typealias Key = Prefix.Key
    typealias Flat = [(addr: Key, len: UInt8, value: UInt32)]

    let arrays: PoptrieArrays
    let routes: RouteList<Key>

    /// Builds from `routes`; for a prefix given twice the last value wins.
    /// Values must be below `LPM.maxValue`.
    public convenience init(routes: some Sequence<(Prefix, UInt32)>) {
        // Arrays iterate through their buffer: generic iteration over `some Sequence` from
        // another module is unspecialized and would allocate per element.
        let list =
            routes.withContiguousStorageIfAvailable { Self.flatten($0) } ?? Self.flatten(Array(routes))
        let rib = RouteList(unsorted: list)
        self.init(routes: rib, arrays: .build(rib, directBits: Prefix.directBits(routes: rib.count)))
    }

    /// A build with a chosen direct-pointing width (tests cover every width this way).
    convenience init(routes: [(Prefix, UInt32)], directBits: Int) {
        let rib = RouteList(unsorted: Self.flatten(routes))
        self.init(routes: rib, arrays: .build(rib, directBits: directBits))
    }

    static func flatten(_ routes: UnsafeBufferPointer<(Prefix, UInt32)>) -> Flat {
        routes.map { p, v in
            precondition(v < LPM.maxValue, "route value \(v) is not below LPM.maxValue")
            let (key, length) = Prefix.key(of: p)
            return (key, length, v)
        }
    }

    static func flatten(_ changes: UnsafeBufferPointer<(Prefix, UInt32?)>) -> Flat {
        changes.map { p, v in
            if let v { precondition(v < LPM.maxValue, "route value \(v) is not below LPM.maxValue") }
            let (key, length) = Prefix.key(of: p)
            return (key, length, v ?? RouteList<Key>.deleted)
        }
    }

    static func flatten(_ routes: [(Prefix, UInt32)]) -> Flat {
        routes.withUnsafeBufferPointer { flatten($0) }
    }

    static func flatten(_ changes: [(Prefix, UInt32?)]) -> Flat {
        changes.withUnsafeBufferPointer { flatten($0) }
    }

    init(routes: RouteList<Key>, arrays: PoptrieArrays) {
        self.routes = routes
        self.arrays = arrays
    }

    deinit { arrays.deallocate() }

    /// The raw pointers the packet path reads; valid while this FIB is alive.
    public var view: FIBView<Prefix> {
        FIBView(
            direct: arrays.direct,
            nodes: arrays.nodes.base,
            leaves: arrays.leaves.base,
            inline: arrays.inline.base,
            values: arrays.narrow ? arrays.values.base : nil,
            direct16: arrays.direct16,
            blockBases: arrays.blockBases,
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
    public var allRoutes: [(Prefix, UInt32)] {
        (0..<routes.count).map { i in (Prefix.prefix(routes.addrs[i], length: routes.lens[i]), routes.values[i]) }
    }

    /// A new FIB equal to building from scratch with `changes` applied (value nil =
    /// delete; for a prefix changed twice the last change wins). Only the direct slots
    /// the changes cover are rebuilt; the rest is one memcpy of the arrays. Garbage from
    /// replaced subtrees is reclaimed by a full build once it outweighs the live part.
    public func applying(_ changes: some Sequence<(Prefix, UInt32?)>) -> FIB {
        let list =
            changes.withContiguousStorageIfAvailable { Self.flatten($0) } ?? Self.flatten(Array(changes))
        if list.isEmpty { return self }
        let delta = RouteList(unsorted: list)
        let merged = routes.merging(delta)
        let bits = arrays.directBits
        let full = { FIB(routes: merged, arrays: .build(merged, directBits: Prefix.directBits(routes: merged.count))) }
        if !(Prefix.directBits(routes: merged.count / 2)...Prefix.directBits(routes: merged.count * 2)).contains(bits)
            || arrays.mostlyGarbage
        {
            return full()
        }
        let ranges = affectedSlots(delta.addrs, delta.lens, directBits: bits)
        let added = delta.values.filter { $0 != RouteList<Key>.deleted }
        guard let rebuilt = arrays.rebuilding(ranges, from: merged, newValues: added) else { return full() }
        return FIB(routes: merged, arrays: rebuilt)
    }
}
