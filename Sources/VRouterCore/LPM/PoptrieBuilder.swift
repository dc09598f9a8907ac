// Compiles a sorted route list into Poptrie arrays, for both address families (the key
// type is the only difference). Not on the packet path: a full build of 1M IPv4 routes
// visits each route once per trie level it crosses (2-3 times) and paints at most 64
// leaves per node; `applying` reruns the same code over the direct-pointing slots that a
// batch of changes touched and appends their new subtrees after a memcpy of the old ones.

struct PoptrieBuilder<K: FixedWidthInteger & UnsignedInteger & Sendable> {
    let addrs: UnsafeBufferPointer<K>
    let lens: UnsafeBufferPointer<UInt8>
    let values: UnsafeBufferPointer<UInt32>
    var arrays: PoptrieArrays
    let s: Int
    /// Per trie depth: 64 painted leaf values and 64 child route ranges.
    let paint: UnsafeMutablePointer<UInt32>
    let childStart: UnsafeMutablePointer<Int32>
    let childEnd: UnsafeMutablePointer<Int32>
    /// Value -> index in `arrays.values` (narrow tables only).
    var valueIndex: [UInt32: UInt16] = [:]

    static var maxDepth: Int { K.bitWidth / 6 + 2 }

    /// Runs `body` with a builder over `routes` writing into `arrays`.
    static func with<R>(
        _ routes: RouteList<K>,
        _ arrays: PoptrieArrays,
        _ body: (inout PoptrieBuilder) -> R
    ) -> R {
        let scratch = maxDepth * 64
        let paint = UnsafeMutablePointer<UInt32>.allocate(capacity: scratch)
        let cs = UnsafeMutablePointer<Int32>.allocate(capacity: scratch)
        let ce = UnsafeMutablePointer<Int32>.allocate(capacity: scratch)
        defer {
            paint.deallocate()
            cs.deallocate()
            ce.deallocate()
        }
        return routes.addrs.withUnsafeBufferPointer { a in
            routes.lens.withUnsafeBufferPointer { l in
                routes.values.withUnsafeBufferPointer { v in
                    var b = PoptrieBuilder(
                        addrs: a,
                        lens: l,
                        values: v,
                        arrays: arrays,
                        s: arrays.directBits,
                        paint: paint,
                        childStart: cs,
                        childEnd: ce
                    )
                    return body(&b)
                }
            }
        }
    }

    @inline(__always)
    func slot(_ addr: K) -> Int { Int(truncatingIfNeeded: addr >> (K.bitWidth - s)) }

    /// The 6 bits of `addr` starting at bit `off` (from the top), zero past the end.
    @inline(__always)
    func chunk(_ addr: K, _ off: Int) -> Int {
        let end = off + 6
        if end <= K.bitWidth {
            return Int(truncatingIfNeeded: addr >> (K.bitWidth - end)) & 63
        }
        return Int(truncatingIfNeeded: addr << (end - K.bitWidth)) & 63
    }

    @inline(__always)
    func mask(_ len: Int) -> K { len == 0 ? 0 : ~K(0) << (K.bitWidth - len) }

    /// First route index whose address is in slot `sl` or later.
    func firstRoute(atSlot sl: Int) -> Int {
        if sl >= 1 << s { return addrs.count }
        let a = K(truncatingIfNeeded: sl) << (K.bitWidth - s)
        var lo = 0
        var hi = addrs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if addrs[mid] < a { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Rebuilds direct slots lo..<hi from the routes: paints the routes of length ≤ s,
    /// then builds a subtree for every slot that holds longer routes. Old subtrees of
    /// these slots become garbage (counted when `countGarbage`).
    mutating func buildSlots(_ lo: Int, _ hi: Int, countGarbage: Bool) {
        let direct = arrays.direct
        if countGarbage {
            for sl in lo..<hi where direct[sl] & LPM.nodeFlag != 0 {
                let index = Int(direct[sl] & LPM.indexMask)
                if direct[sl] & LPM.inlineFlag == LPM.inlineFlag {
                    arrays.garbageInline += arrays.inlineWords(arrays.inlineLeafvec(index))
                } else {
                    let g = arrays.subtreeSize(index)
                    arrays.garbageNodes += g.nodes
                    arrays.garbageLeaves += g.leaves
                }
            }
        }
        (direct + lo).update(repeating: LPM.miss, count: hi - lo)
        // Routes that start before the range and cover its first slot (shortest first).
        let first = K(truncatingIfNeeded: lo) << (K.bitWidth - s)
        for l in 0...s {
            let p = first & mask(l)
            guard p != first else { break }
            let i = lowerBound(p, UInt8(l))
            if i < addrs.count && addrs[i] == p && Int(lens[i]) == l {
                let end = min(slot(p) + (1 << (s - l)), hi)
                (direct + lo).update(repeating: values[i], count: end - lo)
            }
        }
        // Routes inside the range, in order: a prefix paints before the ones it contains.
        var r = firstRoute(atSlot: lo)
        let rEnd = firstRoute(atSlot: hi)
        var longStart = -1
        var longSlot = -1
        // Slots with longer routes, recorded as (slot, start, end) and built after painting,
        // because their default is the painted value.
        var pending: [(slot: Int, start: Int, end: Int)] = []
        while r < rEnd {
            let l = Int(lens[r])
            let sl = slot(addrs[r])
            if l <= s {
                let end = min(sl + (1 << (s - l)), hi)
                (direct + sl).update(repeating: values[r], count: end - sl)
            } else {
                if sl != longSlot {
                    if longSlot >= 0 { pending.append((longSlot, longStart, r)) }
                    longSlot = sl
                    longStart = r
                }
            }
            r += 1
            if longSlot >= 0 && (r == rEnd || slot(addrs[r]) != longSlot) {
                pending.append((longSlot, longStart, r))
                longSlot = -1
            }
        }
        for p in pending {
            direct[p.slot] = buildRoot(p.start, p.end, def: direct[p.slot])
        }
    }

    func lowerBound(_ addr: K, _ len: UInt8) -> Int {
        var lo = 0
        var hi = addrs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if addrs[mid] < addr || (addrs[mid] == addr && lens[mid] < len) {
                lo = mid + 1
            } else {
                hi = mid
            }
        }
        return lo
    }

    /// Paints the 64 positions of the block at bit offset `off` from routes lo..<hi (all
    /// inside the block and longer than `off`; `def` answers where none matches) into
    /// the depth's scratch, and returns the bitmap of positions that need a child node.
    mutating func paintNode(_ lo: Int, _ hi: Int, off: Int, def: UInt32, depth: Int) -> UInt64 {
        // Safe: depth < maxDepth because each level consumes 6 of at most bitWidth bits.
        let vals = paint + depth * 64
        let cs = childStart + depth * 64
        let ce = childEnd + depth * 64
        vals.update(repeating: def, count: 64)
        var vector: UInt64 = 0
        let leafEnd = off + 6
        var r = lo
        while r < hi {
            let l = Int(lens[r])
            let v = chunk(addrs[r], off)
            if l <= leafEnd {
                let span = 1 << (leafEnd - l)
                (vals + v).update(repeating: values[r], count: span)
            } else {
                if vector & (1 << UInt64(v)) == 0 {
                    vector |= 1 << UInt64(v)
                    cs[v] = Int32(r)
                }
                ce[v] = Int32(r + 1)
            }
            r += 1
        }
        // A child whose routes all carry the answer it inherits answers the same
        // everywhere: keep it as a leaf. (Real tables announce many more-specifics with
        // their aggregate's next hop; without this IPv6 spends a node on each.)
        var rest = vector
        while rest != 0 {
            let v = rest.trailingZeroBitCount
            rest &= rest - 1
            var same = true
            var i = Int(cs[v])
            while i < Int(ce[v]) {
                if values[i] != vals[v] {
                    same = false
                    break
                }
                i += 1
            }
            if same { vector &= ~(1 << UInt64(v)) }
        }
        return vector
    }

    /// One leaf per run of equal answers; child positions neither start nor break runs.
    /// Calls `emit` for each run's value and returns the leafvec.
    @inline(__always)
    func leafRuns(depth: Int, vector: UInt64, _ emit: (UInt32) -> Void) -> UInt64 {
        let vals = paint + depth * 64
        var leafvec: UInt64 = 0
        var prev: UInt32 = 0
        var any = false
        for i in 0..<64 where vector & (1 << UInt64(i)) == 0 {
            if !any || vals[i] != prev {
                leafvec |= 1 << UInt64(i)
                emit(vals[i])
                prev = vals[i]
                any = true
            }
        }
        return leafvec
    }

    /// Builds the node at `index` for the block at bit offset `off` from routes lo..<hi.
    mutating func buildNode(_ index: Int, _ lo: Int, _ hi: Int, off: Int, def: UInt32, depth: Int) {
        let vector = paintNode(lo, hi, off: off, def: def, depth: depth)
        emitNode(index, off: off, depth: depth, vector: vector)
    }

    /// Writes the node painted at `depth` into `index`, then its children. A chain (one
    /// child, every other position one answer) and the chains below it with the same
    /// answer become one skip node: sparse IPv6 prefixes otherwise spend a node and a
    /// dependent load per 6 bits between a /32 and a /48.
    mutating func emitNode(_ index: Int, off: Int, depth: Int, vector: UInt64) {
        if vector.nonzeroBitCount == 1 {
            var single: UInt32 = 0
            let runs = leafRuns(depth: depth, vector: vector) { single = $0 }
            if runs.nonzeroBitCount == 1 {
                emitSkip(index, off: off, depth: depth, vector: vector, answer: single)
                return
            }
        }
        let base0 = arrays.leaves.count
        var leaves = arrays.leaves
        let leafvec = leafRuns(depth: depth, vector: vector) { leaves.append($0) }
        arrays.leaves = leaves
        let base1 = arrays.nodes.grow(by: vector.nonzeroBitCount)
        precondition(base1 < Int(PoptrieNode.skipFlag), "LPM table too large")
        arrays.nodes.base[index] = PoptrieNode(
            vector: vector,
            leafvec: leafvec,
            base0: UInt32(base0),
            base1: UInt32(base1)
        )
        let vals = paint + depth * 64
        let cs = childStart + depth * 64
        let ce = childEnd + depth * 64
        var rest = vector
        var k = 0
        while rest != 0 {
            let v = rest.trailingZeroBitCount
            rest &= rest - 1
            buildNode(base1 + k, Int(cs[v]), Int(ce[v]), off: off + 6, def: vals[v], depth: depth + 1)
            k += 1
        }
    }

    /// Emits a skip node for the chain painted at `depth` (child position `vector`,
    /// `answer` elsewhere), extended through every chain below with the same answer.
    mutating func emitSkip(_ index: Int, off: Int, depth: Int, vector: UInt64, answer: UInt32) {
        var pattern = UInt64(vector.trailingZeroBitCount)
        var length = 6
        var d = depth
        var o = off
        var v = Int(pattern)
        var next: UInt64
        while true {
            // Paint the child one scratch level down; stop at anything but a same-answer chain.
            let cs = childStart + d * 64
            let ce = childEnd + d * 64
            let def = (paint + d * 64)[v]
            next = paintNode(Int(cs[v]), Int(ce[v]), off: o + 6, def: def, depth: d + 1)
            d += 1
            o += 6
            guard next.nonzeroBitCount == 1, length + 6 <= PoptrieNode.maxSkip else { break }
            var single: UInt32 = 0
            let runs = leafRuns(depth: d, vector: next) { single = $0 }
            guard runs.nonzeroBitCount == 1, single == answer else { break }
            v = next.trailingZeroBitCount
            pattern = pattern << 6 | UInt64(v)
            length += 6
        }
        let leaf = arrays.leaves.count
        arrays.leaves.append(answer)
        let child = arrays.nodes.grow(by: 1)
        precondition(child < Int(PoptrieNode.skipFlag), "LPM table too large")
        arrays.nodes.base[index] = PoptrieNode(
            vector: pattern,
            leafvec: UInt64(length),
            base0: UInt32(leaf),
            base1: PoptrieNode.skipFlag | UInt32(child)
        )
        emitNode(child, off: o, depth: d, vector: next)
    }

    /// Builds the subtree of a direct slot and returns its direct entry: a leaf-only
    /// root goes inline (leafvec then leaves, one cache line for most), others to `nodes`.
    mutating func buildRoot(_ lo: Int, _ hi: Int, def: UInt32) -> UInt32 {
        let vector = paintNode(lo, hi, off: s, def: def, depth: 0)
        if vector == 0 {
            var answers = 0
            var answer: UInt32 = 0
            _ = leafRuns(depth: 0, vector: 0) {
                answer = $0
                answers += 1
            }
            if answers == 1 { return answer }
            let offset = arrays.inline.grow(by: 2)
            var blob = arrays.inline
            let leafvec: UInt64
            if arrays.narrow {
                // Two 16-bit value indices per word, the first run in the low half.
                var pending: UInt32 = 0
                var odd = false
                let index = valueIndex
                leafvec = leafRuns(depth: 0, vector: 0) { v in
                    let i = UInt32(index[v]!)
                    if odd { blob.append(pending | i << 16) } else { pending = i }
                    odd.toggle()
                }
                if odd { blob.append(pending) }
            } else {
                leafvec = leafRuns(depth: 0, vector: 0) { blob.append($0) }
            }
            arrays.inline = blob
            arrays.inline[offset] = UInt32(truncatingIfNeeded: leafvec)
            arrays.inline[offset + 1] = UInt32(truncatingIfNeeded: leafvec >> 32)
            precondition(offset <= LPM.indexMask, "LPM table too large")
            return LPM.inlineFlag | UInt32(offset)
        }
        let root = arrays.nodes.grow(by: 1)
        precondition(root <= LPM.indexMask, "LPM table too large")
        emitNode(root, off: s, depth: 0, vector: vector)
        return LPM.nodeFlag | UInt32(root)
    }
}
