// Address value types shared by the dataplane and the control plane. Values are kept in
// host byte order (an IPv4 address is the UInt32 you would print in hex); packets are
// read and written big-endian through RawBytes.swift.

/// An IPv4 address, host byte order.
@frozen
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt32
    @inlinable public init(_ value: UInt32) { self.value = value }
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }
    /// Dotted quad, exactly four decimal octets without leading zeros ("198.18.0.1").
    public init?(_ text: some StringProtocol) {
        var octets = 0
        var current: UInt32 = 0
        var digits = 0
        var result: UInt32 = 0
        for ch in text.utf8 {
            if ch == UInt8(ascii: ".") {
                guard digits > 0, octets < 3 else { return nil }
                result = result << 8 | current
                octets += 1
                current = 0
                digits = 0
            } else if ch >= UInt8(ascii: "0") && ch <= UInt8(ascii: "9") {
                if digits > 0 && current == 0 { return nil }  // leading zero: ambiguous (octal)
                current = current * 10 + UInt32(ch - UInt8(ascii: "0"))
                digits += 1
                guard current <= 255, digits <= 3 else { return nil }
            } else {
                return nil
            }
        }
        guard octets == 3, digits > 0 else { return nil }
        value = result << 8 | current
    }
    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }
    @inlinable public static func < (a: Self, b: Self) -> Bool { a.value < b.value }
    public static let any = IPv4Address(0)
    public static let broadcast = IPv4Address(0xFFFF_FFFF)
    public var isMulticast: Bool { value >> 28 == 0xE }
    public var isBroadcast: Bool { value == 0xFFFF_FFFF }
}

/// An IPv6 address, host byte order (the first group in the top 16 bits).
@frozen
public struct IPv6Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt128
    @inlinable public init(_ value: UInt128) { self.value = value }
    /// RFC 4291 text form: eight groups, "::" once, an optional trailing dotted quad.
    public init?(_ text: some StringProtocol) {
        let s = Array(text.utf8)
        guard !s.isEmpty, s.count <= 45 else { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var sawDoubleColon = false
        var i = 0
        // Leading "::"
        if s.count >= 2 && s[0] == UInt8(ascii: ":") && s[1] == UInt8(ascii: ":") {
            sawDoubleColon = true
            i = 2
        } else if s[0] == UInt8(ascii: ":") {
            return nil
        }
        while i < s.count {
            // A dotted quad may end the address.
            var j = i
            var isQuad = false
            while j < s.count && s[j] != UInt8(ascii: ":") {
                if s[j] == UInt8(ascii: ".") { isQuad = true }
                j += 1
            }
            if isQuad {
                guard j == s.count,
                    let v4 = IPv4Address(String(decoding: s[i..<j], as: UTF8.self))
                else { return nil }
                let hi = UInt16(v4.value >> 16)
                let lo = UInt16(v4.value & 0xFFFF)
                if sawDoubleColon { tail += [hi, lo] } else { head += [hi, lo] }
                i = j
                break
            }
            guard j > i, j - i <= 4 else { return nil }
            var group: UInt16 = 0
            for k in i..<j {
                guard let d = Self.hexValue(s[k]) else { return nil }
                group = group << 4 | UInt16(d)
            }
            if sawDoubleColon { tail.append(group) } else { head.append(group) }
            i = j
            if i == s.count { break }
            // s[i] == ":"
            if i + 1 < s.count && s[i + 1] == UInt8(ascii: ":") {
                guard !sawDoubleColon else { return nil }
                sawDoubleColon = true
                i += 2
            } else {
                i += 1
                guard i < s.count else { return nil }  // trailing single colon
            }
        }
        let total = head.count + tail.count
        if sawDoubleColon {
            guard total <= 7 else { return nil }
        } else {
            guard total == 8 else { return nil }
        }
        let groups = head + [UInt16](repeating: 0, count: 8 - total) + tail
        var v: UInt128 = 0
        for g in groups { v = v << 16 | UInt128(g) }
        value = v
    }
    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
    /// RFC 5952 canonical text: lower case, longest run of ≥2 zero groups as "::".
    public var description: String {
        var groups = [UInt16](repeating: 0, count: 8)
        for k in 0..<8 { groups[k] = UInt16(truncatingIfNeeded: value >> UInt128(112 - 16 * k)) }
        var bestStart = -1
        var bestLen = 0
        var k = 0
        while k < 8 {
            if groups[k] == 0 {
                var e = k
                while e < 8 && groups[e] == 0 { e += 1 }
                if e - k > bestLen && e - k >= 2 {
                    bestStart = k
                    bestLen = e - k
                }
                k = e
            } else {
                k += 1
            }
        }
        var out = ""
        k = 0
        while k < 8 {
            if k == bestStart {
                out += "::"
                k += bestLen
                continue
            }
            if !out.isEmpty && !out.hasSuffix(":") { out += ":" }
            out += String(groups[k], radix: 16)
            k += 1
        }
        return out
    }
    @inlinable public static func < (a: Self, b: Self) -> Bool { a.value < b.value }
    public static let any = IPv6Address(0)
    public var isMulticast: Bool { value >> 120 == 0xFF }
    public var isLinkLocal: Bool { value >> 118 == 0x3FA }  // fe80::/10
}

/// A 48-bit Ethernet MAC address in the low bits of a UInt64.
@frozen
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public var value: UInt64
    @inlinable public init(_ value: UInt64) { self.value = value & 0xFFFF_FFFF_FFFF }
    /// "02:00:5e:00:01:00" (colon or dash separated, two hex digits per octet).
    public init?(_ text: some StringProtocol) {
        let s = Array(text.utf8)
        guard s.count == 17 else { return nil }
        var v: UInt64 = 0
        for octet in 0..<6 {
            let i = octet * 3
            if octet > 0 && s[i - 1] != UInt8(ascii: ":") && s[i - 1] != UInt8(ascii: "-") { return nil }
            var b: UInt64 = 0
            for c in s[i..<i + 2] {
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): b = b << 4 | UInt64(c - 48)
                case UInt8(ascii: "a")...UInt8(ascii: "f"): b = b << 4 | UInt64(c - 87)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): b = b << 4 | UInt64(c - 55)
                default: return nil
                }
            }
            v = v << 8 | b
        }
        value = v
    }
    public var description: String {
        (0..<6).map { k in
            let b = UInt8(truncatingIfNeeded: value >> UInt64(40 - 8 * k))
            return (b < 16 ? "0" : "") + String(b, radix: 16)
        }.joined(separator: ":")
    }
    public var isMulticast: Bool { value >> 40 & 1 == 1 }
    public var isBroadcast: Bool { value == 0xFFFF_FFFF_FFFF }
    public static let broadcast = MACAddress(0xFFFF_FFFF_FFFF)
    public static let zero = MACAddress(0)
    /// The MAC every pod sees as its gateway (Contrail's vRouter MAC, the VRRP MAC).
    public static let vrouter = MACAddress(0x0000_5E00_0100)
}

/// An IPv4 prefix in canonical form (host bits zero).
@frozen
public struct IPv4Prefix: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let address: IPv4Address
    public let length: UInt8
    /// Returns nil when length > 32 or host bits are set (a config error worth naming).
    public init?(_ address: IPv4Address, length: Int) {
        guard length >= 0 && length <= 32 else { return nil }
        let mask = Self.mask(length)
        guard address.value & ~mask == 0 else { return nil }
        self.address = address
        self.length = UInt8(length)
    }
    /// Masks host bits away instead of refusing them.
    public init(truncating address: IPv4Address, length: Int) {
        precondition(length >= 0 && length <= 32)
        self.address = IPv4Address(address.value & Self.mask(length))
        self.length = UInt8(length)
    }
    /// "198.51.100.0/24"; a bare address means /32.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let a = IPv4Address(parts[0]) else { return nil }
        if parts.count == 1 {
            self.init(a, length: 32)
            return
        }
        guard let l = Int(parts[1]), parts[1].utf8.count <= 2 else { return nil }
        self.init(a, length: l)
    }
    @inlinable public static func mask(_ length: Int) -> UInt32 {
        length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
    }
    public func contains(_ a: IPv4Address) -> Bool { a.value & Self.mask(Int(length)) == address.value }
    public var description: String { "\(address)/\(length)" }
    public static func < (a: Self, b: Self) -> Bool {
        a.address != b.address ? a.address < b.address : a.length < b.length
    }
}

/// An IPv6 prefix in canonical form (host bits zero).
@frozen
public struct IPv6Prefix: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let address: IPv6Address
    public let length: UInt8
    public init?(_ address: IPv6Address, length: Int) {
        guard length >= 0 && length <= 128 else { return nil }
        guard address.value & ~Self.mask(length) == 0 else { return nil }
        self.address = address
        self.length = UInt8(length)
    }
    public init(truncating address: IPv6Address, length: Int) {
        precondition(length >= 0 && length <= 128)
        self.address = IPv6Address(address.value & Self.mask(length))
        self.length = UInt8(length)
    }
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let a = IPv6Address(parts[0]) else { return nil }
        if parts.count == 1 {
            self.init(a, length: 128)
            return
        }
        guard let l = Int(parts[1]), parts[1].utf8.count <= 3 else { return nil }
        self.init(a, length: l)
    }
    @inlinable public static func mask(_ length: Int) -> UInt128 {
        length == 0 ? 0 : ~UInt128(0) << UInt128(128 - length)
    }
    public func contains(_ a: IPv6Address) -> Bool { a.value & Self.mask(Int(length)) == address.value }
    public var description: String { "\(address)/\(length)" }
    public static func < (a: Self, b: Self) -> Bool {
        a.address != b.address ? a.address < b.address : a.length < b.length
    }
}
