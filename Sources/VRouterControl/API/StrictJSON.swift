// Every decoding failure of a request body becomes one 400 message that says where in the
// body it went wrong (the model's types refuse unknown fields themselves: VRouterAPI's
// StrictDecoding).

import Foundation
import VRouterAPI

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
                let parsed: Any
                do { parsed = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) } catch {
                    let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
                    throw .badRequest("malformed JSON: \(c.debugDescription) (\(detail))")
                }
                // Valid JSON: JSONDecoder says the same, without a path, of a number that does
                // not fit its field (-1, 1.5 or 2^40 where a UInt32 goes). Name the candidates.
                let odd = unfitNumbers(parsed, path: "")
                if !odd.isEmpty {
                    throw .badRequest(
                        "\(odd.joined(separator: ", ")): not a number the field takes (a whole number, "
                            + "not negative, within the field's range)"
                    )
                }
            }
            throw .badRequest(message(e))
        } catch {
            throw .badRequest("malformed JSON: \(error)")
        }
    }

    /// "path = value" for every number in `value` that is negative, fractional or beyond
    /// UInt32 (what the model's unsigned fields cannot hold).
    static func unfitNumbers(_ value: Any, path: String) -> [String] {
        switch value {
        case let o as [String: Any]:
            return o.keys.sorted().flatMap { unfitNumbers(o[$0]!, path: path.isEmpty ? $0 : "\(path).\($0)") }
        case let a as [Any]:
            return a.indices.flatMap { unfitNumbers(a[$0], path: "\(path)[\($0)]") }
        case is Bool:
            return []
        case let n as NSNumber:
            let d = n.doubleValue
            guard d < 0 || d != d.rounded() || d > Double(UInt32.max) else { return [] }
            return ["\(path.isEmpty ? "the body" : path) = \(n)"]
        default:
            return []
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
