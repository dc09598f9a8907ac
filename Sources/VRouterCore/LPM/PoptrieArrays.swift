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
    /// The direct array in 16 bits an entry, for the lookups (nil when the table does not
    /// fit it; see `compacted()`). Half the bytes: at 2^18 entries 512 KiB, which stays in a
    /// 1 MiB L2 next to the lines a lookup streams through, where the 1 MiB 32-bit array
    /// sits in L3, so a lookup's first load stops being a miss. An entry is a value index
    /// (top bit clear), or `0xC000 | i` for the inline root at `blockBases[2b + 1] + i`, or
    /// `0x8000 | i` for the node root at `blockBases[2b] + i`, b being the 64-slot block.
    var direct16: UnsafeMutablePointer<UInt16>?
    /// Per block of 64 direct slots: the first node root, then the first inline root offset.
    var blockBases: UnsafeMutablePointer<UInt32>?

    var bytes: Int {
        (1 << directBits) * 4 + nodes.bytes + leaves.bytes + inline.bytes + values.bytes
            + (direct16 == nil ? 0 : (1 << directBits) * 2 + (1 << directBits) / 64 * 8)
    }

    func deallocate() {
        direct16?.deallocate()
        blockBases?.deallocate()
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
        if K.bitWidth == 32 { out.compact() }
        return out
    }

    /// Fills `direct16` and `blockBases` from `direct` (2^16 slots or more) when every entry fits: a narrow
    /// table with at most 2^15 values, and in each block of 64 slots the roots within
    /// 2^14 words (inline) or nodes of the block's first. A full build lays roots out in
    /// slot order, so a block spans at most 64 roots (64 * 34 words); a table that
    /// `applying` patched may not fit, and then lookups read the 32-bit array.
    mutating func compact() {
        let slots = 1 << directBits
        // Below 2^16 slots the 32-bit array is small enough to stay in L2 as it is.
        guard narrow, values.count <= 0x8000, directBits >= 16 else { return }
        var index: [UInt32: UInt16] = [:]
        for i in 0..<values.count { index[values[i]] = UInt16(i) }
        let d16 = UnsafeMutablePointer<UInt16>.allocate(capacity: slots)
        let bases = UnsafeMutablePointer<UInt32>.allocate(capacity: slots / 64 * 2)
        var block = 0
        while block < slots / 64 {
            let first = block * 64
            var base = (node: UInt32.max, inline: UInt32.max)
            for sl in first..<first + 64 where direct[sl] & LPM.nodeFlag != 0 {
                let o = direct[sl] & LPM.indexMask
                if direct[sl] >= LPM.inlineFlag {
                    base.inline = min(base.inline, o)
                } else {
                    base.node = min(base.node, o)
                }
            }
            base = (base.node == .max ? 0 : base.node, base.inline == .max ? 0 : base.inline)
            bases[2 * block] = base.node
            bases[2 * block + 1] = base.inline
            for sl in first..<first + 64 {
                let d = direct[sl]
                let e: UInt32?
                if d & LPM.nodeFlag == 0 {
                    e = index[d].map { UInt32($0) }
                } else {
                    let inline = d >= LPM.inlineFlag
                    let rel = (d & LPM.indexMask) - (inline ? base.inline : base.node)
                    e = rel <= 0x3FFF ? (inline ? 0xC000 : 0x8000) | rel : nil
                }
                guard let e else {
                    d16.deallocate()
                    bases.deallocate()
                    return
                }
                d16[sl] = UInt16(e)
            }
            block += 1
        }
        direct16 = d16
        blockBases = bases
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
        var out = PoptrieBuilder.with(routes, copy) { b in
            b.valueIndex = valueIndex
            for (lo, hi) in ranges { b.buildSlots(lo, hi, countGarbage: true) }
            return b.arrays
        }
        if K.bitWidth == 32 { out.compact() }
        return out
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
