// The IPv4 lookup itself: what the route-lookup node runs per packet.

import CVRouterShims

/// Raw pointers into an IPv4FIB's arrays; trivially copyable, so a worker keeps it in
/// registers with no reference counting. Valid while the IPv4FIB it came from is alive.
@frozen
public struct IPv4FIBView: @unchecked Sendable {  // Safe: read-only memory.
    @usableFromInline let direct: UnsafePointer<UInt32>
    @usableFromInline let nodes: UnsafePointer<PoptrieNode>
    @usableFromInline let leaves: UnsafePointer<UInt32>
    @usableFromInline let inline: UnsafePointer<UInt32>
    /// Value table of a narrow FIB (inline leaves are 16-bit indices into it), else nil.
    @usableFromInline let values: UnsafePointer<UInt32>?
    /// Bits the direct array consumes (8...18).
    @usableFromInline let directBits: UInt64

    @usableFromInline
    init(
        direct: UnsafePointer<UInt32>, nodes: UnsafePointer<PoptrieNode>,
        leaves: UnsafePointer<UInt32>, inline: UnsafePointer<UInt32>,
        values: UnsafePointer<UInt32>?, directBits: Int
    ) {
        self.values = values
        self.direct = direct
        self.nodes = nodes
        self.leaves = leaves
        self.inline = inline
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
        if d >= LPM.inlineFlag { return inlineLeaf(d, k &>> 58) }
        // Safe: the builder stores only indices of nodes it allocated, and a node's
        // base0/base1 plus a popcount of its own bitmaps stay inside its leaf run / child block.
        var node = nodes[Int(truncatingIfNeeded: d & LPM.indexMask)]
        var v = k &>> 58
        while (node.vector &>> v) & 1 != 0 {
            node = nodes[Int(truncatingIfNeeded: node.base1) &+ (node.vector &<< (63 &- v)).nonzeroBitCount &- 1]
            k = k &<< 6
            v = k &>> 58
        }
        return leaves[Int(truncatingIfNeeded: node.base0) &+ (node.leafvec &<< (63 &- v)).nonzeroBitCount &- 1]
    }

    /// The answer at 6-bit position `v` of the leaf-only root that direct entry `d` names.
    @inlinable @inline(__always)
    func inlineLeaf(_ d: UInt32, _ v: UInt64) -> UInt32 {
        // Safe: the builder stores offsets of complete inline roots (two leafvec words,
        // then one leaf per set leafvec bit, and the bit for position 0...v is set).
        let p = inline + Int(truncatingIfNeeded: d & LPM.indexMask)
        let leafvec = UnsafeRawPointer(p).loadUnaligned(as: UInt64.self)
        let run = (leafvec &<< (63 &- v)).nonzeroBitCount
        if let values {
            // Run r's 16-bit index sits at byte 8 + 2(r - 1).
            let index = UnsafeRawPointer(p).load(fromByteOffset: 6 &+ 2 &* run, as: UInt16.self)
            // Safe: the builder stores only indices of entries of the value table.
            return values[Int(truncatingIfNeeded: index)]
        }
        return p[1 &+ run]
    }

    /// Keys looked up in lockstep by the batch lookup: enough independent loads in
    /// flight to cover a cache miss, few enough that the state stays in registers/L1.
    @usableFromInline static var group: Int { 64 }

    /// Looks up `count` keys into `results`, `group` keys at a time in lockstep (VPP's
    /// lookup_x4 idea): each level issues every key's load before using any, and the walk
    /// has no data-dependent branch per key, so cache misses overlap instead of queueing
    /// behind mispredicted branches. A key that is already answered re-reads its own
    /// (L1-resident) node until the slowest key of its group is done.
    @inlinable
    public func lookup(_ keys: UnsafePointer<UInt32>, _ results: UnsafeMutablePointer<UInt32>, count: Int) {
        let g = Self.group
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 3 * 64) { scratch in
            // Safe: 3 * group slots: shifted keys, node indices, leaf indices.
            let kk = scratch.baseAddress!
            let cur = kk + g
            let leaf = cur + g
            var i = 0
            while i &+ g <= count {
                lookupGroup(keys + i, results + i, kk, cur, leaf)
                i &+= g
            }
            while i < count {
                results[i] = lookup(keys[i])
                i &+= 1
            }
        }
    }

    @inlinable @inline(__always)
    func lookupGroup(
        _ keys: UnsafePointer<UInt32>, _ results: UnsafeMutablePointer<UInt32>,
        _ kk: UnsafeMutablePointer<UInt64>, _ cur: UnsafeMutablePointer<UInt64>,
        _ leaf: UnsafeMutablePointer<UInt64>
    ) {
        let g = Self.group
        var anyNode: UInt32 = 0
        var anyInline: UInt32 = 0
        var j = 0
        // Each pass first prefetches every key's next line, then uses them: the compute for
        // 16 keys is longer than the reorder window, so without this only the first few
        // keys' misses would be in flight at once.
        while j < g {
            vrt_prefetch(direct + Int(truncatingIfNeeded: UInt64(keys[j]) &>> (32 &- directBits)))
            j &+= 1
        }
        j = 0
        while j < g {
            let k = UInt64(keys[j]) &<< 32
            let d = direct[Int(truncatingIfNeeded: k &>> (64 &- directBits))]
            kk[j] = k &<< directBits
            results[j] = d
            // Keys whose entry is not a node walk the sentinels at index/offset 0.
            let kind = d &>> 30
            let isNode = UInt64(kind == 2 ? 1 : 0)
            let isInline = UInt64(kind == 3 ? 1 : 0)
            cur[j] = UInt64(d & LPM.indexMask) & (0 &- isNode)
            leaf[j] = UInt64(d & LPM.indexMask) & (0 &- isInline)
            vrt_prefetch(inline + Int(truncatingIfNeeded: leaf[j]))
            anyNode |= UInt32(isNode)
            anyInline |= UInt32(isInline)
            j &+= 1
        }
        if anyInline != 0 {
            j = 0
            while j < g {
                let answer = inlineLeaf(UInt32(truncatingIfNeeded: leaf[j]), kk[j] &>> 58)
                let r = results[j]
                results[j] = r >= LPM.inlineFlag ? answer : r
                j &+= 1
            }
        }
        if anyNode == 0 { return }
        var more: UInt64
        repeat {
            more = 0
            j = 0
            while j < g {
                vrt_prefetch(nodes + Int(truncatingIfNeeded: cur[j]))
                j &+= 1
            }
            j = 0
            while j < g {
                // Safe: cur[j] is 0 (the sentinel) or an index the builder stored.
                let node = nodes[Int(truncatingIfNeeded: cur[j])]
                let k = kk[j]
                let v = k &>> 58
                let bit = (node.vector &>> v) & 1
                let m = 0 &- bit
                let child = UInt64(node.base1) &+ UInt64((node.vector &<< (63 &- v)).nonzeroBitCount) &- 1
                cur[j] = (child & m) | (cur[j] & ~m)
                kk[j] = ((k &<< 6) & m) | (k & ~m)
                leaf[j] = UInt64(node.base0) &+ UInt64((node.leafvec &<< (63 &- v)).nonzeroBitCount) &- 1
                more |= bit
                j &+= 1
            }
        } while more != 0
        j = 0
        while j < g {
            vrt_prefetch(leaves + Int(truncatingIfNeeded: leaf[j]))
            j &+= 1
        }
        j = 0
        while j < g {
            let r = results[j]
            // Safe: leaf[j] indexes the leaf run of the node the walk ended on (leaf 0 for the sentinel).
            let l = leaves[Int(truncatingIfNeeded: leaf[j])]
            results[j] = r & LPM.inlineFlag == LPM.nodeFlag ? l : r
            j &+= 1
        }
    }
}
