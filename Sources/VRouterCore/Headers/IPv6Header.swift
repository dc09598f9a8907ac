// IPv6 fixed header (RFC 8200 §3) as a view.

@frozen
public struct IPv6Header {
    public let base: UnsafeMutableRawPointer
    @inlinable @inline(__always) public init(_ base: UnsafeMutableRawPointer) { self.base = base }
    @inlinable @inline(__always) public init(_ base: UnsafeRawPointer) {
        self.base = UnsafeMutableRawPointer(mutating: base)
    }

    @inlinable public var version: UInt8 { base.u8(0) >> 4 }
    /// Version, traffic class and flow label in one word.
    @inlinable public var firstWord: UInt32 {
        get { base.be32(0) }
        nonmutating set { base.setBE32(0, newValue) }
    }
    @inlinable public var trafficClass: UInt8 {
        get { UInt8(truncatingIfNeeded: base.be32(0) >> 20) }
        nonmutating set { base.setBE32(0, base.be32(0) & 0xF00F_FFFF | UInt32(newValue) << 20) }
    }
    @inlinable public var flowLabel: UInt32 {
        get { base.be32(0) & 0xF_FFFF }
        nonmutating set { base.setBE32(0, base.be32(0) & 0xFFF0_0000 | newValue & 0xF_FFFF) }
    }
    /// Bytes after the fixed 40-byte header (extension headers included).
    @inlinable public var payloadLength: UInt16 {
        get { base.be16(4) }
        nonmutating set { base.setBE16(4, newValue) }
    }
    @inlinable public var nextHeader: UInt8 {
        get { base.u8(6) }
        nonmutating set { base.setU8(6, newValue) }
    }
    @inlinable public var hopLimit: UInt8 {
        get { base.u8(7) }
        nonmutating set { base.setU8(7, newValue) }
    }
    @inlinable public var source: IPv6Address {
        get { IPv6Address(base.be128(8)) }
        nonmutating set { base.setBE128(8, newValue.value) }
    }
    @inlinable public var destination: IPv6Address {
        get { IPv6Address(base.be128(24)) }
        nonmutating set { base.setBE128(24, newValue.value) }
    }

    /// Pseudo-header partial sum (RFC 8200 §8.1) for an upper-layer checksum.
    @inlinable
    public func pseudoHeaderSum(nextHeader: UInt8, length: Int) -> UInt32 {
        // Summing the 32 address bytes directly avoids building two UInt128s.
        let addresses = Checksum.sum(base + 8, count: 32)
        return UInt32(addresses) &+ UInt32(nextHeader) &+ UInt32(truncatingIfNeeded: length >> 16)
            &+ UInt32(truncatingIfNeeded: length & 0xFFFF)
    }
}
