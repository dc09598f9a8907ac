// The IPv4 lookup itself: what the route-lookup node runs per packet.

/// Raw pointers into an IPv4FIB's arrays; trivially copyable, so a worker keeps it in
/// registers with no reference counting. Valid while the IPv4FIB it came from is alive.
@frozen
public struct IPv4FIBView: @unchecked Sendable {  // Safe: read-only memory.
    @usableFromInline let direct: UnsafePointer<UInt32>
    @usableFromInline let nodes: UnsafePointer<PoptrieNode>
    @usableFromInline let leaves: UnsafePointer<UInt32>
    /// Bits the direct array consumes (8...18).
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
    /// one leaf; for /24s under an 18-bit direct array that is three dependent loads.
    @inlinable @inline(__always)
    public func lookup(_ address: UInt32) -> UInt32 {
        // The key sits at the top of a UInt64 so 6-bit chunks past bit 32 read as zeros,
        // matching how the builder pads the last level.
        var k = UInt64(address) &<< 32
        // Safe: the index has directBits bits and the array has 2^directBits entries.
        let d = direct[Int(truncatingIfNeeded: k &>> (64 &- directBits))]
        if d & LPM.nodeFlag == 0 { return d }
        k = k &<< directBits
        // Safe: the builder stores only indices of nodes it allocated, and a node's
        // base0/base1 plus a popcount of its own bitmaps stay inside its leaf run / child block.
        var node = nodes[Int(truncatingIfNeeded: d & ~LPM.nodeFlag)]
        var v = k &>> 58
        while (node.vector &>> v) & 1 != 0 {
            node = nodes[Int(truncatingIfNeeded: node.base1) &+ (node.vector &<< (63 &- v)).nonzeroBitCount &- 1]
            k = k &<< 6
            v = k &>> 58
        }
        return leaves[Int(truncatingIfNeeded: node.base0) &+ (node.leafvec &<< (63 &- v)).nonzeroBitCount &- 1]
    }

    /// Looks up `count` keys into `results`. Independent lookups run back to back so
    /// the CPU overlaps their cache misses.
    @inlinable
    public func lookup(_ keys: UnsafePointer<UInt32>, _ results: UnsafeMutablePointer<UInt32>, count: Int) {
        var i = 0
        while i < count {
            results[i] = lookup(keys[i])
            i &+= 1
        }
    }
}
