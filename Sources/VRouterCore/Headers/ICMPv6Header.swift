// ICMPv6 (RFC 4443) and the neighbour-discovery messages (RFC 4861 §4.3, §4.4) as views.
// Checksums cover the IPv6 pseudo-header, so the callers pass its sum in.

@frozen
public struct ICMPv6Header {
    public let base: UnsafeMutableRawPointer
    @inlinable @inline(__always) public init(_ base: UnsafeMutableRawPointer) { self.base = base }
    @inlinable @inline(__always) public init(_ base: UnsafeRawPointer) {
        self.base = UnsafeMutableRawPointer(mutating: base)
    }

    public static let destinationUnreachable: UInt8 = 1
    public static let packetTooBig: UInt8 = 2
    public static let timeExceeded: UInt8 = 3
    public static let parameterProblem: UInt8 = 4
    public static let echoRequest: UInt8 = 128
    public static let echoReply: UInt8 = 129
    public static let routerSolicitation: UInt8 = 133
    public static let routerAdvertisement: UInt8 = 134
    public static let neighborSolicitation: UInt8 = 135
    public static let neighborAdvertisement: UInt8 = 136

    /// Destination-unreachable code "no route to destination".
    public static let codeNoRoute: UInt8 = 0
    public static let codeAdministrativelyProhibited: UInt8 = 1
    public static let codeAddressUnreachable: UInt8 = 3
    public static let codePortUnreachable: UInt8 = 4

    /// Error messages have the high bit of the type clear (RFC 4443 §2.1).
    @inlinable @inline(__always)
    public static func isError(_ type: UInt8) -> Bool { type & 0x80 == 0 }

    @inlinable public var type: UInt8 {
        get { base.u8(0) }
        nonmutating set { base.setU8(0, newValue) }
    }
    @inlinable public var code: UInt8 {
        get { base.u8(1) }
        nonmutating set { base.setU8(1, newValue) }
    }
    @inlinable public var checksum: UInt16 {
        get { base.be16(2) }
        nonmutating set { base.setBE16(2, newValue) }
    }
    @inlinable public var identifier: UInt16 {
        get { base.be16(4) }
        nonmutating set { base.setBE16(4, newValue) }
    }
    @inlinable public var sequence: UInt16 {
        get { base.be16(6) }
        nonmutating set { base.setBE16(6, newValue) }
    }
    /// Packet-too-big MTU (bytes 4–7).
    @inlinable public var mtu: UInt32 {
        get { base.be32(4) }
        nonmutating set { base.setBE32(4, newValue) }
    }
    /// True when the checksum over `length` bytes verifies given the pseudo-header sum.
    @inlinable
    public func isChecksumValid(length: Int, pseudoHeaderSum: UInt32) -> Bool {
        Checksum.sum(base, count: length, initial: pseudoHeaderSum) == 0xFFFF
    }
    @inlinable
    public func updateChecksum(length: Int, pseudoHeaderSum: UInt32) {
        base.setBE16(2, 0)
        base.setBE16(2, Checksum.compute(base, count: length, initial: pseudoHeaderSum))
    }
}

/// Neighbour solicitation and advertisement bodies: type, code, checksum, 4 bytes of
/// reserved (NS) or flags (NA), the 16-byte target, then options (24 bytes before them).
@frozen
public struct NeighborDiscoveryHeader {
    public let base: UnsafeMutableRawPointer
    @inlinable @inline(__always) public init(_ base: UnsafeMutableRawPointer) { self.base = base }
    @inlinable @inline(__always) public init(_ base: UnsafeRawPointer) {
        self.base = UnsafeMutableRawPointer(mutating: base)
    }

    public static let fixedLength = 24
    /// NA flag bits in byte 4 (RFC 4861 §4.4).
    public static let routerFlag: UInt8 = 0x80
    public static let solicitedFlag: UInt8 = 0x40
    public static let overrideFlag: UInt8 = 0x20
    /// Option types (RFC 4861 §4.6.1).
    public static let sourceLinkLayerOption: UInt8 = 1
    public static let targetLinkLayerOption: UInt8 = 2

    /// NA flags (R, S, O) in the high bits of byte 4.
    @inlinable public var flags: UInt8 {
        get { base.u8(4) }
        nonmutating set { base.setU8(4, newValue) }
    }
    @inlinable public var target: IPv6Address {
        get { IPv6Address(base.be128(8)) }
        nonmutating set { base.setBE128(8, newValue.value) }
    }
    @inlinable public var options: UnsafeMutableRawPointer { base + Self.fixedLength }

    /// Result of walking an ND options area.
    @frozen
    public struct OptionScan: Sendable {
        /// False when an option has length 0 or runs past the end (RFC 4861 §7.1.1: discard).
        public var isValid: Bool
        /// The last link-layer-address option of the requested type, if any.
        public var linkLayerAddress: MACAddress?
        @inlinable public init(isValid: Bool, linkLayerAddress: MACAddress?) {
            self.isValid = isValid
            self.linkLayerAddress = linkLayerAddress
        }
    }

    /// Walks the `length` bytes of options at `p` (units of 8 bytes, RFC 4861 §4.6) and
    /// returns the Ethernet link-layer address option of `type` if present.
    @inlinable
    public static func scanOptions(_ p: UnsafeRawPointer, length: Int, linkLayerType: UInt8) -> OptionScan {
        var scan = OptionScan(isValid: true, linkLayerAddress: nil)
        var i = 0
        while i < length {
            guard i &+ 2 <= length else {
                scan.isValid = false
                return scan
            }
            let size = Int(p.u8(i &+ 1)) &<< 3
            guard size > 0, i &+ size <= length else {
                scan.isValid = false
                return scan
            }
            if p.u8(i) == linkLayerType && size == 8 {
                scan.linkLayerAddress = MACAddress(p.be48(i &+ 2))
            }
            i &+= size
        }
        return scan
    }
}
