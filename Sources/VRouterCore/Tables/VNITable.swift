// VNI → VRF for VXLAN decapsulation: an open-addressing table with linear probing,
// sized to at most 50% load, so a lookup is one cache line in the common case.

@frozen
public struct VNITable: @unchecked Sendable {  // Safe: immutable after build, freed by its snapshot.
    @usableFromInline let keys: UnsafeMutablePointer<UInt32>  // VNI + 1 (0 = empty)
    @usableFromInline let vrfs: UnsafeMutablePointer<UInt16>
    @usableFromInline let mask: Int

    public static let miss: UInt16 = .max

    init(_ map: [UInt32: UInt16]) {
        var size = 16
        while size < map.count * 2 { size <<= 1 }
        keys = .allocate(capacity: size)
        keys.initialize(repeating: 0, count: size)
        vrfs = .allocate(capacity: size)
        vrfs.initialize(repeating: Self.miss, count: size)
        mask = size - 1
        for (vni, vrf) in map {
            var i = Int(Self.hash(vni)) & mask
            while keys[i] != 0 { i = (i + 1) & mask }
            keys[i] = vni &+ 1
            vrfs[i] = vrf
        }
    }

    func deallocate() {
        keys.deallocate()
        vrfs.deallocate()
    }

    var memoryBytes: Int { (mask + 1) * 6 }

    @inlinable @inline(__always)
    static func hash(_ vni: UInt32) -> UInt32 { (vni &* 0x9E37_79B1) >> 8 }

    /// The VRF for `vni`, or `VNITable.miss`.
    @inlinable @inline(__always)
    public func lookup(_ vni: UInt32) -> UInt16 {
        let k = vni &+ 1
        var i = Int(Self.hash(vni)) & mask
        // Safe: i is always masked into the table; the table is never full (≤50% load),
        // so the probe ends at an empty slot.
        while true {
            let stored = keys[i]
            if stored == k { return vrfs[i] }
            if stored == 0 { return Self.miss }
            i = (i &+ 1) & mask
        }
    }
}
