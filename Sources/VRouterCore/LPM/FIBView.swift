// The lookup itself: what the route-lookup node runs per packet, for either family. Every
// shift below is by a constant or by the view's direct width once specialised: for IPv4
// the key walks in one UInt64, for IPv6 in a UInt128 (two registers).

import CVRouterShims

/// Raw pointers into a FIB's arrays; trivially copyable, so a worker keeps it in
/// registers with no reference counting. Valid while the FIB it came from is alive.
@frozen
public struct FIBView<Prefix: LPMPrefix>: @unchecked Sendable {  // Safe: read-only memory.
    public typealias Key = Prefix.Key
    @usableFromInline typealias Walk = Prefix.Walk

    @usableFromInline let direct: UnsafePointer<UInt32>
    @usableFromInline let nodes: UnsafePointer<PoptrieNode>
    @usableFromInline let leaves: UnsafePointer<UInt32>
    @usableFromInline let inline: UnsafePointer<UInt32>
    /// Value table of a narrow FIB (inline leaves are 16-bit indices into it), else nil.
    @usableFromInline let values: UnsafePointer<UInt32>?
    /// Bits the direct array consumes (8...18 as chosen by table size).
    @usableFromInline let directBits: UInt64
    /// The 16-bit direct array and its block bases (PoptrieArrays.direct16), when the FIB
    /// has them: lookups read these instead of `direct`.
    @usableFromInline let direct16: UnsafePointer<UInt16>?
    @usableFromInline let blockBases: UnsafePointer<UInt32>?

    @usableFromInline
    init(
        direct: UnsafePointer<UInt32>,
        nodes: UnsafePointer<PoptrieNode>,
        leaves: UnsafePointer<UInt32>,
        inline: UnsafePointer<UInt32>,
        values: UnsafePointer<UInt32>?,
        direct16: UnsafePointer<UInt16>?,
        blockBases: UnsafePointer<UInt32>?,
        directBits: Int
    ) {
        self.direct16 = direct16
        self.blockBases = blockBases
        self.values = values
        self.direct = direct
        self.nodes = nodes
        self.leaves = leaves
        self.inline = inline
        self.directBits = UInt64(directBits)
    }

    /// The top 6 bits of a walk register: the next chunk.
    @inlinable @inline(__always)
    static func chunk(_ k: Prefix.Walk) -> UInt64 {
        UInt64(truncatingIfNeeded: k &>> Walk(truncatingIfNeeded: Walk.bitWidth &- 6))
    }

    /// The top 64 bits of a walk register (all of it for IPv4): a skip compares up to 60.
    @inlinable @inline(__always)
    static func top64(_ k: Prefix.Walk) -> UInt64 {
        UInt64(truncatingIfNeeded: k &>> Walk(truncatingIfNeeded: Walk.bitWidth &- 64))
    }

    /// The value of the longest prefix containing `address`, or `LPM.miss`.
    /// Cost: one load in the direct array; for most addresses of a BGP IPv4 table then one
    /// inline root (leafvec and leaf, usually one line); deeper prefixes walk one 24-byte
    /// node per 6 bits (or per skip) and a leaf: a /48 under a 16-bit direct array is at
    /// most 6 nodes deep (3-4 on average in a BGP-like table, with skips and pruning). Use
    /// the batch form where you can: a single lookup's loads are dependent and its
    /// branches depend on the address.
    @inlinable @inline(__always)
    public func lookup(_ address: Key) -> UInt32 {
        var k = Prefix.walk(address)
        let slot = Int(
            truncatingIfNeeded: k &>> (Walk(truncatingIfNeeded: Walk.bitWidth) &- Walk(truncatingIfNeeded: directBits))
        )
        let d: UInt32
        if let direct16 {
            // Safe: the slot has directBits bits and the array has 2^directBits entries.
            let e = UInt32(direct16[slot])
            // Safe: a FIB with direct16 has a value table and block bases (PoptrieArrays.compact).
            if e < 0x8000 { return values.unsafelyUnwrapped[Int(truncatingIfNeeded: e)] }
            d = Self.expand(e, slot, blockBases.unsafelyUnwrapped)
        } else {
            // Safe: as above.
            d = direct[slot]
            if d & LPM.nodeFlag == 0 { return d }
        }
        k = k &<< Walk(truncatingIfNeeded: directBits)
        if d >= LPM.inlineFlag { return inlineLeaf(d, Self.chunk(k)) }
        // Safe: the builder stores only indices of nodes it allocated, and a node's
        // base0/base1 plus a popcount of its own bitmaps stay inside its leaf run / child block.
        var node = nodes[Int(truncatingIfNeeded: d & LPM.indexMask)]
        while true {
            if node.base1 >= PoptrieNode.skipFlag {
                let length = Walk(truncatingIfNeeded: node.leafvec)
                if UInt64(truncatingIfNeeded: k &>> (Walk(truncatingIfNeeded: Walk.bitWidth) &- length)) != node.vector
                {
                    return leaves[Int(truncatingIfNeeded: node.base0)]
                }
                k = k &<< length
                node = nodes[Int(truncatingIfNeeded: node.base1 & ~PoptrieNode.skipFlag)]
                continue
            }
            let v = Self.chunk(k)
            if (node.vector &>> v) & 1 == 0 {
                return leaves[Int(truncatingIfNeeded: node.base0) &+ (node.leafvec &<< (63 &- v)).nonzeroBitCount &- 1]
            }
            node = nodes[Int(truncatingIfNeeded: node.base1) &+ (node.vector &<< (63 &- v)).nonzeroBitCount &- 1]
            k = k &<< 6
        }
    }

    /// The 32-bit direct entry (node or inline root) of 16-bit root entry `e` at `slot`.
    @inlinable @inline(__always)
    static func expand(_ e: UInt32, _ slot: Int, _ bases: UnsafePointer<UInt32>) -> UInt32 {
        // Safe: blockBases has two entries per 64 slots.
        let base = bases[(slot &>> 6) &<< 1 | Int(truncatingIfNeeded: e &>> 14 & 1)]
        return (e & 0xC000) &<< 16 | (base &+ (e & 0x3FFF))
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

    /// Keys looked up together by the batch lookup: enough independent loads in flight
    /// to cover a cache miss, few enough that the state stays in L1.
    @usableFromInline static var group: Int { 32 }

    /// Looks up `count` keys into `results`, `group` keys at a time, stage by stage (VPP's
    /// lookup_x4 idea): every stage first prefetches the line each key needs next, then
    /// uses them, so a group's misses overlap instead of queueing one lookup after another.
    /// Keys are sorted into lists by what their direct entry holds (answer, inline root,
    /// node), so each stage loops only over the keys that need it, without branches
    /// that depend on the key.
    @inlinable
    public func lookup(_ keys: UnsafePointer<Key>, _ results: UnsafeMutablePointer<UInt32>, count: Int) {
        let g = Self.group
        // One stack block: 32 walk registers, then 6 * 32 UInt64 slots split below.
        let registers = 32 &+ 6 &* 32 &* 8 / MemoryLayout<Walk>.stride
        withUnsafeTemporaryAllocation(of: Walk.self, capacity: registers) { scratch in
            // Safe: the block holds both parts, and UInt64 alignment divides Walk's.
            let kk = scratch.baseAddress!
            let s = UnsafeMutableRawPointer(kk + 32).bindMemory(to: UInt64.self, capacity: 6 * 32)
            var i = 0
            while i &+ g <= count {
                lookupGroup(keys + i, results + i, g, kk, s)
                i &+= g
            }
            if i < count { lookupGroup(keys + i, results + i, count &- i, kk, s) }
        }
    }

    @inlinable @inline(__always)
    func lookupGroup(
        _ keys: UnsafePointer<Key>,
        _ results: UnsafeMutablePointer<UInt32>,
        _ n: Int,
        _ kk: UnsafeMutablePointer<Prefix.Walk>,  // key shifted past the direct bits, per key
        _ scratch: UnsafeMutablePointer<UInt64>
    ) {
        let g = Self.group
        let keyShift = Key(truncatingIfNeeded: Key.bitWidth &- Int(truncatingIfNeeded: directBits))
        let shift = Walk(truncatingIfNeeded: Walk.bitWidth) &- Walk(truncatingIfNeeded: directBits)
        let entry = scratch  // index/offset from the direct entry, per key
        let inlineKeys = entry + g  // positions of keys with inline roots
        let nodeKeys = inlineKeys + g  // positions of keys with node roots (then 3 more)
        var j = 0
        while j < n {
            vrt_prefetch(direct + Int(truncatingIfNeeded: keys[j] &>> keyShift))
            j &+= 1
        }
        var nInline = 0
        var nNode = 0
        j = 0
        while j < n {
            let k = Prefix.walk(keys[j])
            let d = direct[Int(truncatingIfNeeded: k &>> shift)]
            kk[j] = k &<< Walk(truncatingIfNeeded: directBits)
            results[j] = d
            let index = UInt64(d & LPM.indexMask)
            entry[j] = index
            let kind = d &>> 30
            // Prefetch the root: inline or node (an answer prefetches the inline sentinel).
            if kind == 2 {
                vrt_prefetch(nodes + Int(truncatingIfNeeded: index))
            } else {
                vrt_prefetch(inline + Int(truncatingIfNeeded: index & (0 &- UInt64(kind &>> 1))))
            }
            inlineKeys[nInline] = UInt64(truncatingIfNeeded: j)
            nInline &+= kind == 3 ? 1 : 0
            nodeKeys[nNode] = UInt64(truncatingIfNeeded: j)
            nNode &+= kind == 2 ? 1 : 0
            j &+= 1
        }
        var t = 0
        while t < nInline {
            let j = Int(truncatingIfNeeded: inlineKeys[t])
            results[j] = inlineLeaf(UInt32(truncatingIfNeeded: entry[j]), Self.chunk(kk[j]))
            t &+= 1
        }
        if nNode != 0 { walkNodes(results, nNode, nodeKeys, kk, entry, nodeKeys + g) }
    }

    /// Walks the node roots of keys `nodeKeys[0..<live]` level by level: each level loads
    /// every live key's node (prefetched the level before), and keys that reached a leaf
    /// drop out of the live list (branch-free compaction) into the done list, whose leaves
    /// are fetched together at the end.
    @inlinable @inline(__always)
    func walkNodes(
        _ results: UnsafeMutablePointer<UInt32>,
        _ live: Int,
        _ nodeKeys: UnsafeMutablePointer<UInt64>,
        _ kk: UnsafeMutablePointer<Prefix.Walk>,
        _ entry: UnsafeMutablePointer<UInt64>,
        _ scratch: UnsafeMutablePointer<UInt64>
    ) {
        let g = Self.group
        let cur = scratch
        let doneKeys = cur + g
        let doneLeaf = doneKeys + g
        var live = live
        var t = 0
        while t < live {
            cur[t] = entry[Int(truncatingIfNeeded: nodeKeys[t])]
            t &+= 1
        }
        var done = 0
        repeat {
            var w = 0
            t = 0
            while t < live {
                let j = Int(truncatingIfNeeded: nodeKeys[t])
                // Safe: cur[t] is an index the builder stored.
                let node = nodes[Int(truncatingIfNeeded: cur[t])]
                let k = kk[j]
                // The next 64 key bits: enough for a chunk and for a skip (at most 60 bits).
                let hi = Self.top64(k)
                let v = hi &>> 58
                // Both readings of the node, then a mask select (a branch here would
                // mispredict): a skip node compares the next `leafvec` bits with `vector`.
                let sm = 0 &- UInt64(node.base1 &>> 31)  // all ones for a skip node
                let length = (node.leafvec & sm) | (6 & ~sm)
                let skipBit: UInt64 = hi &>> (64 &- node.leafvec) == node.vector ? 1 : 0
                let bit = (skipBit & sm) | ((node.vector &>> v) & 1 & ~sm)
                let skipChild = UInt64(node.base1 & ~PoptrieNode.skipFlag)
                let child =
                    (skipChild & sm)
                    | ((UInt64(node.base1) &+ UInt64((node.vector &<< (63 &- v)).nonzeroBitCount) &- 1) & ~sm)
                vrt_prefetch(nodes + Int(truncatingIfNeeded: child))
                // Safe: w <= t, so compaction never overwrites an unread entry.
                nodeKeys[w] = UInt64(truncatingIfNeeded: j)
                cur[w] = child
                w &+= Int(truncatingIfNeeded: bit)
                doneKeys[done] = UInt64(truncatingIfNeeded: j)
                doneLeaf[done] =
                    (UInt64(node.base0) & sm)
                    | ((UInt64(node.base0) &+ UInt64((node.leafvec &<< (63 &- v)).nonzeroBitCount) &- 1) & ~sm)
                done &+= 1 &- Int(truncatingIfNeeded: bit)
                kk[j] = k &<< Walk(truncatingIfNeeded: length &* bit)
                t &+= 1
            }
            live = w
        } while live != 0
        t = 0
        while t < done {
            vrt_prefetch(leaves + Int(truncatingIfNeeded: doneLeaf[t]))
            t &+= 1
        }
        t = 0
        while t < done {
            // Safe: doneLeaf[t] indexes the leaf run of the node the walk ended on.
            results[Int(truncatingIfNeeded: doneKeys[t])] = leaves[Int(truncatingIfNeeded: doneLeaf[t])]
            t &+= 1
        }
    }
}
