import Testing

@testable import VRouterCore

@Suite struct ChecksumTests {
    /// A textbook IPv4 header (checksum field zeroed) whose checksum is 0xB861.
    static let header: [UInt8] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00,
        0xC0, 0xA8, 0x00, 0x01, 0xC0, 0xA8, 0x00, 0xC7,
    ]

    @Test func fullChecksumMatchesReference() {
        let c = Self.header.withUnsafeBytes { Checksum.compute($0.baseAddress!, count: 20) }
        #expect(c == 0xB861)
        // Odd lengths and every alignment agree with a byte-at-a-time reference.
        var rng = SplitMix64(seed: 7)
        for len in 0..<70 {
            let bytes = (0..<len + 3).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            for start in 0..<3 {
                let slice = Array(bytes[start..<start + len])
                let fast = slice.withUnsafeBytes {
                    Checksum.compute($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: len)
                }
                #expect(fast == Self.reference(slice), "len \(len) start \(start)")
            }
        }
    }

    @Test func incrementalMatchesFull() {
        var rng = SplitMix64(seed: 11)
        for _ in 0..<2000 {
            var h = Self.header
            for i in 0..<20 where i != 10 && i != 11 { h[i] = UInt8(truncatingIfNeeded: rng.next()) }
            let c0 = Self.reference(h)
            h[10] = UInt8(c0 >> 8)
            h[11] = UInt8(c0 & 0xFF)
            // Change the TTL/protocol word.
            let old = UInt16(h[8]) << 8 | UInt16(h[9])
            let new = UInt16(truncatingIfNeeded: rng.next())
            h[8] = UInt8(new >> 8)
            h[9] = UInt8(new & 0xFF)
            let inc = Checksum.update(c0, old: old, new: new)
            h[10] = 0
            h[11] = 0
            let full = Self.reference(h)
            // Both are valid encodings; ones' complement has two zeros (0x0000/0xFFFF).
            #expect(inc == full || (inc == 0xFFFF && full == 0) || (inc == 0 && full == 0xFFFF))
        }
    }

    static func reference(_ b: [UInt8]) -> UInt16 {
        var s: UInt32 = 0
        var i = 0
        while i + 1 < b.count {
            s += UInt32(b[i]) << 8 | UInt32(b[i + 1])
            i += 2
        }
        if i < b.count { s += UInt32(b[i]) << 8 }
        while s >> 16 != 0 { s = (s & 0xFFFF) + (s >> 16) }
        return ~UInt16(s)
    }
}
