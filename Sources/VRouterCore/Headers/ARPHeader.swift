// ARP for Ethernet/IPv4 (RFC 826): the only kind the proxy responder answers.

/// The 28-byte Ethernet/IPv4 ARP body that follows the Ethernet header.
@frozen
public struct ARPHeader {
    public let base: UnsafeMutableRawPointer
    @inlinable @inline(__always) public init(_ base: UnsafeMutableRawPointer) { self.base = base }
    @inlinable @inline(__always) public init(_ base: UnsafeRawPointer) {
        self.base = UnsafeMutableRawPointer(mutating: base)
    }

    public static let request: UInt16 = 1
    public static let reply: UInt16 = 2
    public static let hardwareEthernet: UInt16 = 1

    @inlinable public var hardwareType: UInt16 {
        get { base.be16(0) }
        nonmutating set { base.setBE16(0, newValue) }
    }
    @inlinable public var protocolType: UInt16 {
        get { base.be16(2) }
        nonmutating set { base.setBE16(2, newValue) }
    }
    @inlinable public var hardwareLength: UInt8 {
        get { base.u8(4) }
        nonmutating set { base.setU8(4, newValue) }
    }
    @inlinable public var protocolLength: UInt8 {
        get { base.u8(5) }
        nonmutating set { base.setU8(5, newValue) }
    }
    @inlinable public var operation: UInt16 {
        get { base.be16(6) }
        nonmutating set { base.setBE16(6, newValue) }
    }
    @inlinable public var senderMAC: MACAddress {
        get { MACAddress(base.be48(8)) }
        nonmutating set { base.setBE48(8, newValue.value) }
    }
    @inlinable public var senderIP: IPv4Address {
        get { IPv4Address(base.be32(14)) }
        nonmutating set { base.setBE32(14, newValue.value) }
    }
    @inlinable public var targetMAC: MACAddress {
        get { MACAddress(base.be48(18)) }
        nonmutating set { base.setBE48(18, newValue.value) }
    }
    @inlinable public var targetIP: IPv4Address {
        get { IPv4Address(base.be32(24)) }
        nonmutating set { base.setBE32(24, newValue.value) }
    }
    /// Hardware Ethernet, protocol IPv4, lengths 6 and 4: the fixed first 6 bytes in one load.
    @inlinable public var isEthernetIPv4: Bool {
        base.be32(0) == 0x0001_0800 && base.be16(4) == 0x0604
    }
}
