// TCP (RFC 9293) as a view, with the options walk MSS clamping needs.

/// TCP control bits (byte 13 of the header).
@frozen
public struct TCPFlags: OptionSet, Sendable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let fin = TCPFlags(rawValue: 0x01)
    public static let syn = TCPFlags(rawValue: 0x02)
    public static let rst = TCPFlags(rawValue: 0x04)
    public static let psh = TCPFlags(rawValue: 0x08)
    public static let ack = TCPFlags(rawValue: 0x10)
    public static let urg = TCPFlags(rawValue: 0x20)
    public static let ece = TCPFlags(rawValue: 0x40)
    public static let cwr = TCPFlags(rawValue: 0x80)
}

@frozen
public struct TCPHeader {
    public let base: UnsafeMutableRawPointer
    @inlinable @inline(__always) public init(_ base: UnsafeMutableRawPointer) { self.base = base }
    @inlinable @inline(__always) public init(_ base: UnsafeRawPointer) {
        self.base = UnsafeMutableRawPointer(mutating: base)
    }

    /// Option kinds (RFC 9293 §3.2).
    public static let optionEnd: UInt8 = 0
    public static let optionNoOperation: UInt8 = 1
    public static let optionMSS: UInt8 = 2

    @inlinable public var sourcePort: UInt16 {
        get { base.be16(0) }
        nonmutating set { base.setBE16(0, newValue) }
    }
    @inlinable public var destinationPort: UInt16 {
        get { base.be16(2) }
        nonmutating set { base.setBE16(2, newValue) }
    }
    @inlinable public var sequenceNumber: UInt32 {
        get { base.be32(4) }
        nonmutating set { base.setBE32(4, newValue) }
    }
    @inlinable public var acknowledgmentNumber: UInt32 {
        get { base.be32(8) }
        nonmutating set { base.setBE32(8, newValue) }
    }
    /// Data offset in 32-bit words (5...15).
    @inlinable public var dataOffset: UInt8 {
        get { base.u8(12) >> 4 }
        nonmutating set { base.setU8(12, base.u8(12) & 0x0F | newValue << 4) }
    }
    /// Header length in bytes, options included.
    @inlinable public var headerLength: Int { Int(base.u8(12) >> 4) &<< 2 }
    @inlinable public var flags: TCPFlags {
        get { TCPFlags(rawValue: base.u8(13)) }
        nonmutating set { base.setU8(13, newValue.rawValue) }
    }
    @inlinable public var window: UInt16 {
        get { base.be16(14) }
        nonmutating set { base.setBE16(14, newValue) }
    }
    @inlinable public var checksum: UInt16 {
        get { base.be16(16) }
        nonmutating set { base.setBE16(16, newValue) }
    }
    @inlinable public var urgentPointer: UInt16 {
        get { base.be16(18) }
        nonmutating set { base.setBE16(18, newValue) }
    }
    @inlinable
    public func updateChecksum(length: Int, pseudoHeaderSum: UInt32) {
        base.setBE16(16, 0)
        base.setBE16(16, Checksum.compute(base, count: length, initial: pseudoHeaderSum))
    }
    @inlinable
    public func isChecksumValid(length: Int, pseudoHeaderSum: UInt32) -> Bool {
        Checksum.sum(base, count: length, initial: pseudoHeaderSum) == 0xFFFF
    }

    /// Offset from the TCP header of the MSS option's 2-byte value, or nil when there is
    /// none or the options are malformed. `available` is how many header bytes are present;
    /// the walk stays within both it and the data offset.
    @inlinable
    public func mssOptionOffset(available: Int) -> Int? {
        let end = min(headerLength, available)
        var i = HeaderSize.tcp
        while i < end {
            let kind = base.u8(i)
            if kind == Self.optionEnd { return nil }
            if kind == Self.optionNoOperation {
                i &+= 1
                continue
            }
            guard i &+ 1 < end else { return nil }
            let l = Int(base.u8(i &+ 1))
            guard l >= 2, i &+ l <= end else { return nil }
            if kind == Self.optionMSS {
                return l == 4 ? i &+ 2 : nil
            }
            i &+= l
        }
        return nil
    }
}
