// Pod addresses from a network's subnet. The subnet's host range (network and broadcast
// excluded, and the gateway) is split into `slices` equal parts and this node allocates
// from part `slice` only: nodes given different slices never hand out the same address
// without a cluster store (the `ipam: {slice: K, slices: N}` config knob). Requested
// addresses (the annotation's `ips`) may be anywhere in the subnet; that they are not
// taken on another node is the requester's business, as with host-local's static IPs.
//
// Allocation is next-fit from a cursor, so a released address is not handed out again
// at once (a peer's ARP cache may still point at the old owner). The set of addresses in
// use is rebuilt from the pod records after a restart; the cursor is not saved.

import VRouterCore

struct SubnetPool: Sendable {
    let v6: Bool
    let network: UInt128
    let length: Int
    let gateway: UInt128
    /// This node's part of the host range.
    let first: UInt128
    let last: UInt128
    private(set) var used: Set<UInt128> = []
    private var cursor: UInt128

    var bits: Int { v6 ? 128 : 32 }
    var broadcast: UInt128 { network | (((1 as UInt128) << (bits - length)) - 1) }

    /// nil when the subnet has no room for pods besides the gateway.
    init?(v6: Bool, network: UInt128, length: Int, gateway: UInt128, slice: Int, slices: Int) {
        self.v6 = v6
        self.network = network
        self.length = length
        self.gateway = gateway
        let hostBits = (v6 ? 128 : 32) - length
        guard hostBits >= 2 else { return nil }
        let lo = network + 1
        let hi = (network | (((1 as UInt128) << hostBits) - 1)) - 1
        let count = hi - lo + 1
        let part = count / UInt128(slices)
        guard part >= 1 else { return nil }
        first = lo + part * UInt128(slice)
        last = slice == slices - 1 ? hi : first + part - 1
        cursor = first
        if first == last && first == gateway { return nil }
    }

    static func v4(_ p: IPv4Prefix, gateway: IPv4Address, slice: Int, slices: Int) -> SubnetPool? {
        SubnetPool(
            v6: false,
            network: UInt128(p.address.value),
            length: Int(p.length),
            gateway: UInt128(gateway.value),
            slice: slice,
            slices: slices
        )
    }
    static func v6(_ p: IPv6Prefix, gateway: IPv6Address, slice: Int, slices: Int) -> SubnetPool? {
        SubnetPool(
            v6: true,
            network: p.address.value,
            length: Int(p.length),
            gateway: gateway.value,
            slice: slice,
            slices: slices
        )
    }

    func contains(_ a: UInt128) -> Bool { a >= network && a <= broadcast }

    func text(_ a: UInt128) -> String {
        v6 ? IPv6Address(a).description : IPv4Address(UInt32(truncatingIfNeeded: a)).description
    }

    /// Takes the next free address of this node's slice, preferring `preferred` (the
    /// address a re-created sandbox of the same pod had) when it is free.
    mutating func allocate(preferring preferred: UInt128? = nil) -> UInt128? {
        if let p = preferred, contains(p), p != network, p != broadcast, p != gateway, !used.contains(p) {
            used.insert(p)
            return p
        }
        // The scan is bounded by the slice size; a full /16 slice is 65k set probes.
        var a = cursor
        var scanned: UInt128 = 0
        let size = last - first + 1
        while scanned < size {
            if a != gateway && !used.contains(a) {
                used.insert(a)
                cursor = a == last ? first : a + 1
                return a
            }
            a = a == last ? first : a + 1
            scanned += 1
        }
        return nil
    }

    /// Reserves a requested address: why not, or nil when it is now taken for the caller.
    mutating func reserve(_ a: UInt128) -> String? {
        guard contains(a) else { return "outside the subnet \(text(network))/\(length)" }
        if a == network { return "the subnet's network address" }
        if !v6 && a == broadcast { return "the subnet's broadcast address" }
        if a == gateway { return "the network's gateway" }
        guard used.insert(a).inserted else { return "taken by another pod" }
        return nil
    }

    mutating func release(_ a: UInt128) { used.remove(a) }

    /// Marks an address as in use without checks (rebuilding from records).
    mutating func markUsed(_ a: UInt128) { used.insert(a) }

    var free: Int {
        let size = last - first + 1 - ((gateway >= first && gateway <= last) ? 1 : 0)
        return Int(clamping: size - UInt128(used.filter { $0 >= first && $0 <= last }.count))
    }
}

/// A network's pools on this node, one per family, with typed addresses: what the
/// attachments part allocates from and releases to.
struct NetworkPools: Sendable {
    var v4: SubnetPool?
    var v6: SubnetPool?

    init() {}

    subscript<A: PoolAddress>(_ family: A.Type) -> SubnetPool? {
        get { A.width == 32 ? v4 : v6 }
        set { if A.width == 32 { v4 = newValue } else { v6 = newValue } }
    }

    /// The next free address of `A`'s pool (preferring `preferred`), with the subnet's
    /// prefix length; nil when the network has no such pool or it is full.
    mutating func allocate<A: PoolAddress>(preferring preferred: A? = nil) -> PodAddress<A>? {
        guard var pool = self[A.self], let bits = pool.allocate(preferring: preferred?.bits) else { return nil }
        self[A.self] = pool
        return PodAddress(A(bits: bits), prefixLength: pool.length)
    }

    /// Reserves a requested address: why not, or nil when it is now the caller's.
    mutating func reserve<A: PoolAddress>(_ a: A) -> String? {
        guard var pool = self[A.self] else { return "the network has no IPv\(A.width == 32 ? 4 : 6) subnet" }
        defer { self[A.self] = pool }
        return pool.reserve(a.bits)
    }

    mutating func release<A: PoolAddress>(_ a: PodAddress<A>?) {
        guard let a, var pool = self[A.self] else { return }
        pool.release(a.address.bits)
        self[A.self] = pool
    }

    mutating func markUsed<A: PoolAddress>(_ a: PodAddress<A>?) {
        guard let a, var pool = self[A.self] else { return }
        pool.markUsed(a.address.bits)
        self[A.self] = pool
    }

    /// Addresses handed out, over both families.
    var inUse: Int { (v4?.used.count ?? 0) + (v6?.used.count ?? 0) }
    /// Free addresses of the first pool (IPv4 when the network has it), as `network list` shows.
    var free: Int? { (v4 ?? v6)?.free }
}
