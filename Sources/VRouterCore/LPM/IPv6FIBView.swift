// The IPv6 lookup itself: what the route-lookup node runs per IPv6 packet.

/// Raw pointers into an IPv6FIB's arrays; trivially copyable, so a worker keeps it in
/// registers with no reference counting. Valid while the IPv6FIB it came from is alive.
@frozen
public struct IPv6FIBView: @unchecked Sendable {  // Safe: read-only memory.
    @usableFromInline let direct: UnsafePointer<UInt32>
    @usableFromInline let nodes: UnsafePointer<PoptrieNode>
    @usableFromInline let leaves: UnsafePointer<UInt32>
    /// Bits the direct array consumes (8...16).
    @usableFromInline let directBits: UInt64

    @usableFromInline
    init(
        direct: UnsafePointer<UInt32>, nodes: UnsafePointer<PoptrieNode>,
        leaves: UnsafePointer<UInt32>, directBits: Int
    ) {
        self.direct = direct
        self.nodes = nodes
        self.leaves = leaves
        self.directBits = UInt64(directBits)
    }

    /// The value of the longest prefix containing `address`, or `LPM.miss`.
    /// Cost: one load in the direct array, then one 24-byte node per 6 bits below it and
    /// one leaf; a /48 under a 16-bit direct array is 6 nodes deep.
    @inlinable @inline(__always)
    public func lookup(_ address: UInt128) -> UInt32 {
        // Safe: the index has directBits bits and the array has 2^directBits entries.
        let d = direct[Int(truncatingIfNeeded: address &>> (128 &- UInt128(directBits)))]
        if d & LPM.nodeFlag == 0 { return d }
        // Shifting the key left 6 bits per level leaves zeros past bit 128, as the builder pads.
        var k = address &<< UInt128(directBits)
        // Safe: the builder stores only indices of nodes it allocated, and a node's
        // base0/base1 plus a popcount of its own bitmaps stay inside its leaf run / child block.
        var node = nodes[Int(truncatingIfNeeded: d & ~LPM.nodeFlag)]
        var v = UInt64(truncatingIfNeeded: k &>> 122)
        while (node.vector &>> v) & 1 != 0 {
            node = nodes[Int(truncatingIfNeeded: node.base1) &+ (node.vector &<< (63 &- v)).nonzeroBitCount &- 1]
            k = k &<< 6
            v = UInt64(truncatingIfNeeded: k &>> 122)
        }
        return leaves[Int(truncatingIfNeeded: node.base0) &+ (node.leafvec &<< (63 &- v)).nonzeroBitCount &- 1]
    }

    /// Looks up `count` keys into `results`. Independent lookups run back to back so
    /// the CPU overlaps their cache misses.
    @inlinable
    public func lookup(_ keys: UnsafePointer<UInt128>, _ results: UnsafeMutablePointer<UInt32>, count: Int) {
        var i = 0
        while i < count {
            results[i] = lookup(keys[i])
            i &+= 1
        }
    }
}
