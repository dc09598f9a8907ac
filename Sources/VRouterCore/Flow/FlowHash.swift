// The flow hash: one 64×64→128-bit multiply per pair of key words, folding the two
// halves of the product (the "mum" step of wyhash), then one more mum against a constant
// as a finalizer. A single mum is not enough: when only a few high bits of one operand
// count up (VRF and port in word0) its low output bits barely move, and sequential keys
// clustered in buckets (chi-square 1.6x random in FlowKeyTests); with the finalizer every
// sequential shape we test is indistinguishable from random. No tables, no loops: IPv4
// costs two `mul`s and a few xors (~10 cycles latency, fully pipelined across packets),
// IPv6 four.
//
// Users of the value:
//   - FlowTable: bucket index from the low bits, a 16-bit tag from the high bits.
//   - ECMP member choice: take `(UInt64(hash) &* UInt64(n)) &>> 32` (a multiply-shift
//     range reduction, no division, uniform for any n).
//   - Outer UDP source port (VXLAN/MPLSoUDP entropy): `49152 | UInt16(hash &>> 18)`.
//
// The hash is NOT symmetric: a flow and its reverse hash differently (swapping
// addresses changes which multiplier lane they land in). A pipeline that wants both
// directions on the same ECMP member must hash a canonical ordering itself.
//
// Flooding: the multipliers are public constants, so someone who controls 5-tuples can
// aim many flows at one bucket. The table bounds the damage (a bucket holds 8 entries,
// inserts then evict within the two candidate buckets only); pass a per-node `seed`
// (from the control plane's random source) to make the aim unknowable.

@frozen
public enum FlowHash {
    /// Seed used when none is given; any value works, this one is 2^64/φ.
    @inlinable public static var defaultSeed: UInt64 { 0x9E37_79B9_7F4A_7C15 }

    // Odd constants with mixed bit patterns (wyhash's primes).
    @inlinable static var p0: UInt64 { 0xA076_1D64_78BD_642F }
    @inlinable static var p1: UInt64 { 0xE703_7ED1_A0B4_28DB }
    @inlinable static var p2: UInt64 { 0x8EBC_6AF0_9C88_C6E3 }
    @inlinable static var p3: UInt64 { 0x5899_65CC_7537_4CC3 }

    /// Folded 128-bit product.
    @inlinable @inline(__always)
    static func mum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (hi, lo) = a.multipliedFullWidth(by: b)
        return hi ^ lo
    }

    /// Avalanche the last mum and fold 64 bits to 32.
    @inlinable @inline(__always)
    static func finish(_ m: UInt64) -> UInt32 {
        let h = mum(m ^ p2, p3)
        return UInt32(truncatingIfNeeded: h ^ (h &>> 32))
    }

    @inlinable @inline(__always)
    public static func hash(_ key: IPv4FlowKey, seed: UInt64 = defaultSeed) -> UInt32 {
        finish(mum(key.word0 ^ seed ^ p0, key.word1 ^ p1))
    }

    @inlinable @inline(__always)
    public static func hash(_ key: IPv6FlowKey, seed: UInt64 = defaultSeed) -> UInt32 {
        let x = mum(key.word0 ^ seed ^ p0, key.srcHi ^ p1)
        let y = mum(key.srcLo ^ p2, key.dstHi ^ p3)
        return finish(mum(x ^ key.dstLo ^ p1, y ^ p2))
    }
}
