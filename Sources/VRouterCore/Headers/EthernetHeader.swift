// Ethernet II header and 802.1Q/802.1ad tags as views over packet memory. A view is one
// pointer: copying it costs a register, and every accessor is a single unaligned
// load/store plus a byte swap. Views never check bounds; whoever makes one has checked
// that the header's bytes are there (the parser, or a builder writing into a buffer).

/// Ethernet II header: destination MAC, source MAC, EtherType (14 bytes).
@frozen
public struct EthernetHeader {
    public let base: UnsafeMutableRawPointer
    @inlinable @inline(__always) public init(_ base: UnsafeMutableRawPointer) { self.base = base }
    @inlinable @inline(__always) public init(_ base: UnsafeRawPointer) {
        self.base = UnsafeMutableRawPointer(mutating: base)
    }

    @inlinable public var destination: MACAddress {
        get { MACAddress(base.be48(0)) }
        nonmutating set { base.setBE48(0, newValue.value) }
    }
    @inlinable public var source: MACAddress {
        get { MACAddress(base.be48(6)) }
        nonmutating set { base.setBE48(6, newValue.value) }
    }
    /// The EtherType (or the TPID of the first tag) at offset 12.
    @inlinable public var etherType: UInt16 {
        get { base.be16(12) }
        nonmutating set { base.setBE16(12, newValue) }
    }
    /// Swaps source and destination (replies sent back out the receiving port).
    @inlinable public func swapAddresses() {
        let d = base.be48(0)
        base.setBE48(0, base.be48(6))
        base.setBE48(6, d)
    }
    /// True for 802.1Q and 802.1ad tag protocol identifiers.
    @inlinable @inline(__always)
    public static func isVLANTag(_ etherType: UInt16) -> Bool {
        etherType == EtherType.vlan || etherType == EtherType.qinq
    }
}

/// One 802.1Q/802.1ad tag as it sits in the frame: TPID (2 bytes) then TCI (2 bytes). The
/// EtherType that follows the tag is the next tag's TPID or the payload's EtherType.
@frozen
public struct VLANTag {
    /// Points at the TPID (offset 12 of an untagged-position header, 16 for the inner tag).
    public let base: UnsafeMutableRawPointer
    @inlinable @inline(__always) public init(_ base: UnsafeMutableRawPointer) { self.base = base }

    @inlinable public var tpid: UInt16 {
        get { base.be16(0) }
        nonmutating set { base.setBE16(0, newValue) }
    }
    /// Tag control information: PCP (3 bits), DEI (1 bit), VID (12 bits).
    @inlinable public var tci: UInt16 {
        get { base.be16(2) }
        nonmutating set { base.setBE16(2, newValue) }
    }
    @inlinable public var vlanID: UInt16 {
        get { tci & 0x0FFF }
        nonmutating set { tci = tci & 0xF000 | newValue & 0x0FFF }
    }
    @inlinable public var priority: UInt8 {
        get { UInt8(truncatingIfNeeded: tci >> 13) }
        nonmutating set { tci = tci & 0x1FFF | UInt16(newValue & 7) << 13 }
    }
    @inlinable public var dropEligible: Bool {
        get { tci & 0x1000 != 0 }
        nonmutating set { tci = newValue ? tci | 0x1000 : tci & ~0x1000 }
    }
    /// The EtherType (or next TPID) following this tag.
    @inlinable public var innerEtherType: UInt16 {
        get { base.be16(4) }
        nonmutating set { base.setBE16(4, newValue) }
    }
}
