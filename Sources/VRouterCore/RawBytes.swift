// Big-endian loads and stores at byte offsets. Packet headers are unaligned in general
// (VLAN tags, tunnel headers), so everything goes through loadUnaligned/storeBytes,
// which compile to a plain mov + bswap on x86-64.

extension UnsafeRawPointer {
    @inlinable @inline(__always)
    public func be16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    @inlinable @inline(__always)
    public func be32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    @inlinable @inline(__always)
    public func be64(_ offset: Int) -> UInt64 {
        UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
    @inlinable @inline(__always)
    public func u8(_ offset: Int) -> UInt8 {
        load(fromByteOffset: offset, as: UInt8.self)
    }
    /// 128-bit big-endian load (IPv6 addresses).
    @inlinable @inline(__always)
    public func be128(_ offset: Int) -> UInt128 {
        (UInt128(be64(offset)) << 64) | UInt128(be64(offset &+ 8))
    }
    /// 48-bit big-endian load (MAC addresses) into the low bits of a UInt64.
    @inlinable @inline(__always)
    public func be48(_ offset: Int) -> UInt64 {
        (UInt64(be16(offset)) << 32) | UInt64(be32(offset &+ 2))
    }
}

extension UnsafeMutableRawPointer {
    @inlinable @inline(__always)
    public func be16(_ offset: Int) -> UInt16 { UnsafeRawPointer(self).be16(offset) }
    @inlinable @inline(__always)
    public func be32(_ offset: Int) -> UInt32 { UnsafeRawPointer(self).be32(offset) }
    @inlinable @inline(__always)
    public func be64(_ offset: Int) -> UInt64 { UnsafeRawPointer(self).be64(offset) }
    @inlinable @inline(__always)
    public func u8(_ offset: Int) -> UInt8 { UnsafeRawPointer(self).u8(offset) }
    @inlinable @inline(__always)
    public func be128(_ offset: Int) -> UInt128 { UnsafeRawPointer(self).be128(offset) }
    @inlinable @inline(__always)
    public func be48(_ offset: Int) -> UInt64 { UnsafeRawPointer(self).be48(offset) }

    @inlinable @inline(__always)
    public func setBE16(_ offset: Int, _ value: UInt16) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }
    @inlinable @inline(__always)
    public func setBE32(_ offset: Int, _ value: UInt32) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }
    @inlinable @inline(__always)
    public func setBE64(_ offset: Int, _ value: UInt64) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt64.self)
    }
    @inlinable @inline(__always)
    public func setU8(_ offset: Int, _ value: UInt8) {
        storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }
    @inlinable @inline(__always)
    public func setBE128(_ offset: Int, _ value: UInt128) {
        setBE64(offset, UInt64(truncatingIfNeeded: value >> 64))
        setBE64(offset &+ 8, UInt64(truncatingIfNeeded: value))
    }
    @inlinable @inline(__always)
    public func setBE48(_ offset: Int, _ value: UInt64) {
        setBE16(offset, UInt16(truncatingIfNeeded: value >> 32))
        setBE32(offset &+ 2, UInt32(truncatingIfNeeded: value))
    }
}
