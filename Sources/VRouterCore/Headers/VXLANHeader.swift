// VXLAN header (RFC 7348 §5): flags (I = 0x08, the VNI is valid), 24 reserved bits,
// VNI (24 bits), 8 reserved bits.

@frozen
public struct VXLANHeader {
    public let base: UnsafeMutableRawPointer
    @inlinable @inline(__always) public init(_ base: UnsafeMutableRawPointer) { self.base = base }
    @inlinable @inline(__always) public init(_ base: UnsafeRawPointer) {
        self.base = UnsafeMutableRawPointer(mutating: base)
    }

    public static let validVNIFlag: UInt8 = 0x08
    public static let maxVNI: UInt32 = 0xFF_FFFF

    @inlinable public var flags: UInt8 {
        get { base.u8(0) }
        nonmutating set { base.setU8(0, newValue) }
    }
    /// The I flag: receivers drop frames without it (RFC 7348 §5 says the VNI is then invalid).
    @inlinable public var hasValidVNI: Bool { base.u8(0) & Self.validVNIFlag != 0 }
    /// Stores the VNI and a zero reserved byte.
    @inlinable public var vni: UInt32 {
        get { base.be32(4) >> 8 }
        nonmutating set { base.setBE32(4, (newValue & Self.maxVNI) << 8) }
    }
}
