// Longest-prefix-match tables: what is shared by the IPv4 and IPv6 FIBs.
//
// Each VRF holds one compiled, immutable IPv4FIB and one IPv6FIB (one generic FIB,
// specialised per address family: LPMPrefix.swift). They follow Poptrie
// (Asai & Ohara, SIGCOMM'15): the top `s` bits of the address index a direct-pointing
// array; an entry there is the answer, or the root of a multiway trie whose nodes consume
// 6 bits each. A node is two 64-bit bitmaps: `vector` marks which of the 64 positions are
// child nodes, `leafvec` marks where a run of identical answers starts, so a node stores
// one leaf per run and its children contiguously, and a popcount turns a 6-bit chunk into
// an index. Four changes to the paper's structure, each measured with Benchmarks/LPM:
// - A root with no children (most /18 slots of a BGP table: a run of /19-/24s) is stored
//   inline as its leafvec followed by its leaves, so the lookup after the direct entry
//   reads one line instead of a node and then a leaf.
// - A table with fewer than 2^16 distinct answers (a real FIB has hundreds of next hops)
//   stores inline leaves as 16-bit indices into a small value table.
// - A subtree whose routes all carry the answer it inherits is not built (its position
//   is a leaf): more-specifics announced with their aggregate's next hop cost nothing.
// - A chain of single-child nodes with one answer off the path becomes one skip node that
//   compares up to 60 key bits at once (sparse IPv6 prefixes between /32 and /48).
// - IPv4 single lookups read a 16-bit copy of the direct array (value indices, or root
//   offsets relative to a per-64-slot base): at 2^18 slots 512 KiB, which stays in a core's
//   1 MiB L2 where the 32-bit array (1 MiB) is served from L3, so a dependent lookup's
//   first load is an L2 hit (PoptrieArrays.compact).
// The batch lookup works on groups of 32 keys stage by stage with prefetches and no
// key-dependent branches (FIBView.lookup(_:_:count:)); its loads are prefetched, so it
// reads the 32-bit direct array, which costs fewer instructions.
//
// At 1M BGP-like IPv4 routes this is about 4.8 bytes per route; an empty table is 1 KiB.

/// Constants of the LPM tables.
public enum LPM {
    /// Returned when no prefix matches. Equal to `maxValue`, which a route can't carry.
    public static let miss: UInt32 = 0x7FFF_FFFF
    /// Route values are `0..<maxValue` (2^31 - 1 distinct values): the top bit of a
    /// direct-pointing entry tells a node index from an answer.
    public static let maxValue: UInt32 = 0x7FFF_FFFF
    /// Set in a direct-pointing entry that holds a node index rather than an answer.
    @usableFromInline static let nodeFlag: UInt32 = 0x8000_0000
    /// Both top bits set: the entry is the offset of a leaf-only root in the inline array.
    @usableFromInline static let inlineFlag: UInt32 = 0xC000_0000
    /// The index or offset part of a direct-pointing entry that is not an answer.
    @usableFromInline static let indexMask: UInt32 = 0x3FFF_FFFF
}

/// One Poptrie node: 24 bytes, so most nodes sit in one cache line.
///
/// The child for 6-bit chunk `v` exists when `vector` bit `v` is set and is at
/// `nodes[base1 + popcount(vector & bits 0...v) - 1]`; otherwise the answer is
/// `leaves[base0 + popcount(leafvec & bits 0...v) - 1]`. Positions that hold children do
/// not start leaf runs, so the leaf array has one entry per run of equal answers.
///
/// A skip node (`base1` has `skipFlag`) replaces a chain of single-child nodes: when the
/// next `leafvec` bits of the key equal `vector` the walk goes on at node
/// `base1 & ~skipFlag`, `leafvec` bits further; otherwise the answer is `leaves[base0]`.
@frozen @usableFromInline
struct PoptrieNode {
    @usableFromInline var vector: UInt64
    @usableFromInline var leafvec: UInt64
    @usableFromInline var base0: UInt32
    @usableFromInline var base1: UInt32

    @usableFromInline static var skipFlag: UInt32 { 0x8000_0000 }
    /// Longest key segment one skip node compares (ten 6-bit levels).
    static var maxSkip: Int { 60 }

    @inlinable @inline(__always)
    init(vector: UInt64, leafvec: UInt64, base0: UInt32, base1: UInt32) {
        self.vector = vector
        self.leafvec = leafvec
        self.base0 = base0
        self.base1 = base1
    }
}
