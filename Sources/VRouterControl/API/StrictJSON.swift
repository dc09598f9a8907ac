// Request bodies decode strictly: a field the type does not name is an error naming it
// (a typo such as "prefx" must not silently add a route without a prefix), and every
// decoding failure becomes one 400 message that says where in the body it went wrong.
// The check costs one extra keyed container per object (a key list walk), no second
// parse of the body.

import Foundation

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
    func strictContainer<K: CodingKey>(keyedBy: K.Type) throws -> KeyedDecodingContainer<K> {
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

enum JSONPath {
    /// "add[3].prefix" for a coding path.
    static func text(_ path: [any CodingKey]) -> String {
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

public enum StrictJSON {
    /// Decodes a request body, turning every failure into a 400 that names the problem.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws(APIError) -> T {
        guard !data.isEmpty else { throw .badRequest("the request needs a JSON body") }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let e as DecodingError {
            if case .dataCorrupted(let c) = e, c.codingPath.isEmpty, c.underlyingError == nil {
                // JSONDecoder does not say where the syntax broke; JSONSerialization does
                // (parsed again only on this error path).
                do { _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) } catch {
                    let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
                    throw .badRequest("malformed JSON: \(c.debugDescription) (\(detail))")
                }
            }
            throw .badRequest(message(e))
        } catch {
            throw .badRequest("malformed JSON: \(error)")
        }
    }

    static func message(_ e: DecodingError) -> String {
        switch e {
        case .dataCorrupted(let c):
            if c.debugDescription.hasPrefix("unknown field") { return c.debugDescription }
            if c.codingPath.isEmpty {
                // Syntax errors: Foundation's message with its line and column.
                var m = "malformed JSON: \(c.debugDescription)"
                if let u = c.underlyingError {
                    let detail = (u as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(u)"
                    m += " \(detail)"
                }
                return m
            }
            return "\(JSONPath.text(c.codingPath)): \(c.debugDescription)"
        case .keyNotFound(let k, let c):
            let at = c.codingPath.isEmpty ? "" : " in \(JSONPath.text(c.codingPath))"
            return "missing field '\(k.stringValue)'\(at)"
        case .typeMismatch(let t, let c):
            return "\(JSONPath.text(c.codingPath)): expected \(typeName(t)) (\(c.debugDescription))"
        case .valueNotFound(let t, let c):
            return "\(JSONPath.text(c.codingPath)): expected \(typeName(t)), found null"
        @unknown default:
            return "malformed request: \(e)"
        }
    }

    static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is UInt32.Type, is Int.Type, is UInt16.Type, is UInt8.Type: "an integer"
        case is [Any].Type: "a list"
        default:
            "\(t)".hasPrefix("Array") ? "a list" : ("\(t)".hasPrefix("Dictionary") ? "an object" : "\(t)")
        }
    }
}
