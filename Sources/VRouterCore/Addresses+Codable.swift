// Addresses and prefixes encode as their text forms ("192.0.2.1", "2001:db8::/32",
// "02:00:00:00:00:01"), which is what JSON APIs and state files want; decoding names
// the bad text.

protocol TextCodable: Codable, CustomStringConvertible {
    init?(text: String)
    static var what: String { get }
}

extension TextCodable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let v = Self(text: s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "'\(s)' is not \(Self.what)")
        }
        self = v
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

extension IPv4Address: TextCodable {
    init?(text: String) { self.init(text) }
    static var what: String { "an IPv4 address" }
}
extension IPv6Address: TextCodable {
    init?(text: String) { self.init(text) }
    static var what: String { "an IPv6 address" }
}
extension MACAddress: TextCodable {
    init?(text: String) { self.init(text) }
    static var what: String { "a MAC address" }
}
extension IPv4Prefix: TextCodable {
    init?(text: String) { self.init(text) }
    static var what: String { "an IPv4 prefix (address/length, host bits zero)" }
}
extension IPv6Prefix: TextCodable {
    init?(text: String) { self.init(text) }
    static var what: String { "an IPv6 prefix (address/length, host bits zero)" }
}
