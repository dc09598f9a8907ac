// The compiled arrays of one FIB and the two ways to make them: a full build, and a copy
// with some direct-pointing slots rebuilt (what `applying` uses). The arrays are plain
// manually owned buffers; the owning FIB frees them.

/// The arrays a lookup walks, owned by a FIB.
struct PoptrieArrays {
    /// 2^directBits entries: an answer, `LPM.nodeFlag | root node index`, or
    /// `LPM.inlineFlag | offset` of a leaf-only root in `inline`.
    var direct: UnsafeMutablePointer<UInt32>
    let directBits: Int
    var nodes: LPMBuffer<PoptrieNode>
    var leaves: LPMBuffer<UInt32>
    /// Leaf-only roots, each stored as its leafvec (two words, low first) followed by
    /// its leaves. Most direct slots of a big table hold just a run of /19-/24s, and this
    /// way their lookup reads one line after the direct entry instead of a node and a leaf.
    var inline: LPMBuffer<UInt32>
    /// When the table has at most 2^16 distinct answers (a real FIB has hundreds of next
    /// hops), inline leaves are 16-bit indices into `values` (index 0 is LPM.miss): half
    /// the bytes of the biggest array, for one L1-resident load per lookup.
    var narrow: Bool
    var values: LPMBuffer<UInt32>
    /// Nodes and leaves left unreachable by `applying` (their slots got new subtrees);
    /// when they outweigh the live ones the next change rebuilds from scratch.
    var garbageNodes = 0
    var garbageLeaves = 0
    var garbageInline = 0

    var bytes: Int {
        (1 << directBits) * 4 + nodes.bytes + leaves.bytes + inline.bytes + values.bytes
    }

    func deallocate() {
        direct.deallocate()
        nodes.deallocate()
        leaves.deallocate()
        inline.deallocate()
        values.deallocate()
    }

    /// Words an inline root with this leafvec occupies.
    func inlineWords(_ leafvec: UInt64) -> Int {
        let runs = leafvec.nonzeroBitCount
        return 2 + (narrow ? (runs + 1) / 2 : runs)
    }

    func inlineLeafvec(_ offset: Int) -> UInt64 {
        UInt64(inline[offset]) | UInt64(inline[offset + 1]) << 32
    }

    /// Nodes and leaves reachable from a node (for garbage accounting).
    func subtreeSize(_ root: Int) -> (nodes: Int, leaves: Int) {
        let n = nodes.base[root]
        if n.base1 & PoptrieNode.skipFlag != 0 {
            let c = subtreeSize(Int(n.base1 & ~PoptrieNode.skipFlag))
            return (c.nodes + 1, c.leaves + 1)
        }
        var total = (nodes: 1, leaves: n.leafvec.nonzeroBitCount)
        var k = 0
        while k < n.vector.nonzeroBitCount {
            let c = subtreeSize(Int(n.base1) + k)
            total.nodes += c.nodes
            total.leaves += c.leaves
            k += 1
        }
        return total
    }
}

extension PoptrieArrays {
    /// A fresh build of `routes` with 2^directBits direct entries.
    static func build<K>(_ routes: RouteList<K>, directBits: Int) -> PoptrieArrays {
        var distinct = Set<UInt32>()
        for v in routes.values {
            distinct.insert(v)
            if distinct.count >= 1 << 16 { break }
        }
        let narrow = distinct.count < 1 << 16
        var values = LPMBuffer<UInt32>(capacity: narrow ? distinct.count + 1 : 1)
        var valueIndex: [UInt32: UInt16] = [:]
        if narrow {
            values.append(LPM.miss)
            valueIndex[LPM.miss] = 0
            for v in distinct.sorted() {
                valueIndex[v] = UInt16(values.count)
                values.append(v)
            }
        }
        let arrays = PoptrieArrays(
            direct: .allocate(capacity: 1 << directBits),
            directBits: directBits,
            nodes: LPMBuffer(capacity: routes.count / 8 + 1),
            leaves: LPMBuffer(capacity: routes.count / 4 + 1),
            inline: LPMBuffer(capacity: routes.count + 3),
            narrow: narrow,
            values: values
        )
        var out = PoptrieBuilder.with(routes, arrays) { b in
            b.valueIndex = valueIndex
            // Node 0 and leaf 0: the sentinel the batch lookup walks for direct answers.
            b.arrays.nodes.append(PoptrieNode(vector: 0, leafvec: 1, base0: 0, base1: 0))
            b.arrays.leaves.append(LPM.miss)
            // Inline offset 0: the same sentinel as a leaf-only root (leafvec 1, one leaf).
            b.arrays.inline.append(1)
            b.arrays.inline.append(0)
            b.arrays.inline.append(narrow ? 0 : LPM.miss)
            b.buildSlots(0, 1 << directBits, countGarbage: false)
            return b.arrays
        }
        out.nodes.shrinkToFit()
        out.leaves.shrinkToFit()
        out.inline.shrinkToFit()
        return out
    }

    /// A copy of self with the direct slots in `ranges` rebuilt from `routes`, or nil
    /// when `newValues` would overflow a narrow table's 2^16 value indices.
    func rebuilding<K>(
        _ ranges: [(Int, Int)],
        from routes: RouteList<K>,
        newValues: [UInt32]
    ) -> PoptrieArrays? {
        var table = LPMBuffer(copying: values, extra: narrow ? newValues.count : 0)
        var valueIndex: [UInt32: UInt16] = [:]
        if narrow {
            for i in 0..<table.count { valueIndex[table[i]] = UInt16(i) }
            for v in newValues where valueIndex[v] == nil {
                guard table.count < 1 << 16 else {
                    table.deallocate()
                    return nil
                }
                valueIndex[v] = UInt16(table.count)
                table.append(v)
            }
        }
        let d = UnsafeMutablePointer<UInt32>.allocate(capacity: 1 << directBits)
        d.update(from: direct, count: 1 << directBits)
        let extra = ranges.count * 4 + 64
        let copy = PoptrieArrays(
            direct: d,
            directBits: directBits,
            nodes: LPMBuffer(copying: nodes, extra: extra),
            leaves: LPMBuffer(copying: leaves, extra: extra * 8),
            inline: LPMBuffer(copying: inline, extra: extra * 8),
            narrow: narrow,
            values: table,
            garbageNodes: garbageNodes,
            garbageLeaves: garbageLeaves,
            garbageInline: garbageInline
        )
        return PoptrieBuilder.with(routes, copy) { b in
            b.valueIndex = valueIndex
            for (lo, hi) in ranges { b.buildSlots(lo, hi, countGarbage: true) }
            return b.arrays
        }
    }

    /// True when unreachable nodes and leaves outweigh the live ones.
    var mostlyGarbage: Bool {
        garbageNodes * 2 > nodes.count || garbageLeaves * 2 > leaves.count
            || garbageInline * 2 > inline.count
    }
}

/// Direct-pointing slot ranges that changed prefixes cover, merged and sorted.
func affectedSlots<K: FixedWidthInteger & UnsignedInteger>(
    _ addrs: [K],
    _ lens: [UInt8],
    directBits s: Int
) -> [(Int, Int)] {
    var ranges: [(Int, Int)] = []
    for i in 0..<addrs.count {
        let lo = Int(truncatingIfNeeded: addrs[i] >> (K.bitWidth - s))
        let l = Int(lens[i])
        ranges.append((lo, l <= s ? lo + (1 << (s - l)) : lo + 1))
    }
    ranges.sort { $0.0 < $1.0 }
    var merged: [(Int, Int)] = []
    for r in ranges {
        if let last = merged.last, r.0 <= last.1 {
            merged[merged.count - 1].1 = max(last.1, r.1)
        } else {
            merged.append(r)
        }
    }
    return merged
}
