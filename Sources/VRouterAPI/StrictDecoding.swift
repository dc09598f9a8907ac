// Request bodies decode strictly: a field the type does not name is an error naming it
// (a typo such as "prefx" must not silently add a route without a prefix). The check costs
// one extra keyed container per object (a key list walk), no second parse of the body.
// The server turns every decoding failure into one 400 message (VRouterControl's StrictJSON).

struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) {
        stringValue = "\(intValue)"
        self.intValue = intValue
    }
}

extension Decoder {
    /// A keyed container that refuses any key `K` does not name.
    package func strictContainer<K: CodingKey>(keyedBy: K.Type) throws -> KeyedDecodingContainer<K> {
        let all = try container(keyedBy: AnyCodingKey.self)
        for key in all.allKeys where K(stringValue: key.stringValue) == nil {
            let at = codingPath.isEmpty ? "" : " in \(JSONPath.text(codingPath))"
            throw DecodingError.dataCorrupted(
                .init(codingPath: codingPath + [key], debugDescription: "unknown field '\(key.stringValue)'\(at)")
            )
        }
        return try container(keyedBy: K.self)
    }
}

package enum JSONPath {
    /// "add[3].prefix" for a coding path.
    package static func text(_ path: [any CodingKey]) -> String {
        var s = ""
        for k in path {
            if let i = k.intValue {
                s += "[\(i)]"
            } else {
                if !s.isEmpty { s += "." }
                s += k.stringValue
            }
        }
        return s.isEmpty ? "the body" : s
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and line ends (FoundationEssentials has no
    /// CharacterSet trimming).
    package func trimmingWhitespace() -> String {
        let b = Array(utf8)
        var lo = 0
        var hi = b.count
        while lo < hi, b[lo] == 32 || b[lo] == 9 || b[lo] == 10 || b[lo] == 13 { lo += 1 }
        while hi > lo, b[hi - 1] == 32 || b[hi - 1] == 9 || b[hi - 1] == 10 || b[hi - 1] == 13 { hi -= 1 }
        return String(decoding: b[lo..<hi], as: UTF8.self)
    }
}
