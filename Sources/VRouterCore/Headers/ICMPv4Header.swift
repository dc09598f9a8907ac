// ICMPv4 (RFC 792) as a view: the 8-byte header every message has.

@frozen
public struct ICMPv4Header {
    public let base: UnsafeMutableRawPointer
    @inlinable @inline(__always) public init(_ base: UnsafeMutableRawPointer) { self.base = base }
    @inlinable @inline(__always) public init(_ base: UnsafeRawPointer) {
        self.base = UnsafeMutableRawPointer(mutating: base)
    }

    public static let echoReply: UInt8 = 0
    public static let destinationUnreachable: UInt8 = 3
    public static let sourceQuench: UInt8 = 4
    public static let redirect: UInt8 = 5
    public static let echoRequest: UInt8 = 8
    public static let timeExceeded: UInt8 = 11
    public static let parameterProblem: UInt8 = 12

    /// Destination-unreachable codes (RFC 792, RFC 1812 §5.2.7.1).
    public static let codeNetUnreachable: UInt8 = 0
    public static let codeHostUnreachable: UInt8 = 1
    public static let codePortUnreachable: UInt8 = 3
    public static let codeFragmentationNeeded: UInt8 = 4
    public static let codeAdministrativelyProhibited: UInt8 = 13

    /// The error types RFC 1812 §4.3.2.7 says never to answer with another error.
    @inlinable
    public static func isError(_ type: UInt8) -> Bool {
        type == destinationUnreachable || type == sourceQuench || type == redirect
            || type == timeExceeded || type == parameterProblem
    }

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
    /// Echo identifier (bytes 4–5).
    @inlinable public var identifier: UInt16 {
        get { base.be16(4) }
        nonmutating set { base.setBE16(4, newValue) }
    }
    /// Echo sequence number (bytes 6–7).
    @inlinable public var sequence: UInt16 {
        get { base.be16(6) }
        nonmutating set { base.setBE16(6, newValue) }
    }
    /// Next-hop MTU of a fragmentation-needed message (RFC 1191 §4, bytes 6–7).
    @inlinable public var nextHopMTU: UInt16 {
        get { base.be16(6) }
        nonmutating set { base.setBE16(6, newValue) }
    }
    /// Bytes 4–7 as one word ("unused" in errors).
    @inlinable public var restOfHeader: UInt32 {
        get { base.be32(4) }
        nonmutating set { base.setBE32(4, newValue) }
    }
    /// True when the checksum over the `length`-byte message verifies.
    @inlinable
    public func isChecksumValid(length: Int) -> Bool {
        Checksum.sum(base, count: length) == 0xFFFF
    }
    /// Fills the checksum over the `length`-byte message.
    @inlinable
    public func updateChecksum(length: Int) {
        base.setBE16(2, 0)
        base.setBE16(2, Checksum.compute(base, count: length))
    }
}
