// UDP (RFC 768) as a view.

@frozen
public struct UDPHeader {
    public let base: UnsafeMutableRawPointer
    @inlinable @inline(__always) public init(_ base: UnsafeMutableRawPointer) { self.base = base }
    @inlinable @inline(__always) public init(_ base: UnsafeRawPointer) {
        self.base = UnsafeMutableRawPointer(mutating: base)
    }

    @inlinable public var sourcePort: UInt16 {
        get { base.be16(0) }
        nonmutating set { base.setBE16(0, newValue) }
    }
    @inlinable public var destinationPort: UInt16 {
        get { base.be16(2) }
        nonmutating set { base.setBE16(2, newValue) }
    }
    /// Header plus payload, in bytes.
    @inlinable public var length: UInt16 {
        get { base.be16(4) }
        nonmutating set { base.setBE16(4, newValue) }
    }
    /// 0 means "no checksum" over IPv4 (RFC 768); over IPv6 it is mandatory (RFC 8200 §8.1).
    @inlinable public var checksum: UInt16 {
        get { base.be16(6) }
        nonmutating set { base.setBE16(6, newValue) }
    }
    /// Checksum over the `length`-byte datagram (header and payload at `base`) with the
    /// pseudo-header sum; a computed 0 is sent as 0xFFFF (RFC 768).
    @inlinable
    public func updateChecksum(length: Int, pseudoHeaderSum: UInt32) {
        base.setBE16(6, 0)
        let c = Checksum.compute(base, count: length, initial: pseudoHeaderSum)
        base.setBE16(6, c == 0 ? 0xFFFF : c)
    }
    /// True when the checksum verifies (a zero checksum is "none" and verifies over IPv4;
    /// the caller rejects it for IPv6).
    @inlinable
    public func isChecksumValid(length: Int, pseudoHeaderSum: UInt32) -> Bool {
        base.be16(6) == 0 || Checksum.sum(base, count: length, initial: pseudoHeaderSum) == 0xFFFF
    }
}
