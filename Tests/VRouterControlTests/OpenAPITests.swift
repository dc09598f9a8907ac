// docs/openapi.yaml and the server stay in step: every served (method, path) is
// documented and every documented one is served; every $ref resolves; every refusal is
// documented as an Error; and each schema has exactly the fields of its model type (a
// sample built from the schema decodes into the type, strictly for request types, and
// the type's stored properties are the schema's properties).

import Foundation
import Testing
import VRouterAPI
import VRouterControl
import VRouterCore
import VRouterTestSupport
import Yams

@testable import VRouterControl

@Suite struct OpenAPITests {
    static func document() throws -> [String: Any] {
        let path = Binaries.root + "/docs/openapi.yaml"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try #require(try Yams.load(yaml: text) as? [String: Any])
    }

    static let methods = ["get", "post", "put", "patch", "delete", "head", "options"]

    @Test func routesAndDocumentAgree() throws {
        let doc = try Self.document()
        let paths = try #require(doc["paths"] as? [String: Any])
        var documented: Set<String> = []
        for (path, item) in paths {
            let ops = try #require(item as? [String: Any], "\(path)")
            for (m, _) in ops where Self.methods.contains(m) { documented.insert("\(m.uppercased()) \(path)") }
        }
        let served = Set(ControlAPI.routes.map { "\($0.method) \($0.path)" })
        #expect(served.count == ControlAPI.routes.count, "a route is in the table twice")
        #expect(
            served.subtracting(documented).isEmpty,
            "served but not documented: \(served.subtracting(documented).sorted())"
        )
        #expect(
            documented.subtracting(served).isEmpty,
            "documented but not served: \(documented.subtracting(served).sorted())"
        )
        #expect(served.count >= 19)
    }

    @Test func everyOperationIsComplete() throws {
        let doc = try Self.document()
        let schemas = try #require((doc["components"] as? [String: Any])?["schemas"] as? [String: Any])
        let paths = try #require(doc["paths"] as? [String: Any])
        // Every $ref anywhere resolves.
        func walk(_ v: Any, _ at: String) {
            if let d = v as? [String: Any] {
                if let ref = d["$ref"] as? String {
                    let parts = ref.split(separator: "/").dropFirst().map(String.init)
                    var node: Any? = doc
                    for p in parts { node = (node as? [String: Any])?[p] }
                    #expect(node != nil, "\(at): \(ref) does not resolve")
                }
                for (k, x) in d { walk(x, at + "/" + k) }
            } else if let a = v as? [Any] {
                for (i, x) in a.enumerated() { walk(x, at + "[\(i)]") }
            }
        }
        walk(doc, "")
        for (path, item) in paths {
            for (m, op) in (item as? [String: Any]) ?? [:] where Self.methods.contains(m) {
                let o = try #require(op as? [String: Any])
                let responses = try #require(o["responses"] as? [String: Any], "\(m) \(path)")
                #expect(responses.keys.contains { $0.hasPrefix("2") }, "\(m) \(path) has no success response")
                for (code, r) in responses where !code.hasPrefix("2") {
                    #expect(
                        (r as? [String: Any])?["$ref"] as? String == "#/components/responses/Error",
                        "\(m) \(path) \(code)"
                    )
                }
                // Path parameters are declared.
                let declared = Set(
                    ((o["parameters"] as? [Any]) ?? []).compactMap { p -> String? in
                        let d = p as? [String: Any]
                        if let ref = d?["$ref"] as? String { return ref.hasSuffix("/Name") ? "name" : nil }
                        return d?["in"] as? String == "path" ? d?["name"] as? String : nil
                    }
                )
                let inPath = Set(
                    path.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) }
                )
                #expect(declared == inPath, "\(m) \(path): parameters \(declared) vs \(inPath)")
                if m == "post" { #expect(o["requestBody"] != nil, "\(m) \(path) has no request body") }
            }
        }
        #expect(schemas["Error"] != nil)
    }

    /// Schema name → the model type and whether it decodes strictly (requests).
    static let models: [(String, any Decodable.Type, Bool)] = [
        ("Error", ErrorBody.self, false), ("HealthInfo", HealthInfo.self, false),
        ("StatusInfo", StatusInfo.self, false),
        ("TapSpec", TapSpec.self, true), ("InterfaceSpec", InterfaceSpec.self, true),
        ("InterfaceInfo", InterfaceInfo.self, false),
        ("VRFSpec", VRFSpec.self, true), ("VRFInfo", VRFInfo.self, false), ("RouteMember", RouteMember.self, true),
        ("RouteSpec", RouteSpec.self, true), ("RouteChange", RouteChange.self, true),
        ("RouteChangeResult", RouteChangeResult.self, false), ("RouteInfo", RouteInfo.self, false),
        ("NexthopMember", NexthopMember.self, false), ("NexthopInfo", NexthopInfo.self, false),
        ("LabelInfo", LabelInfo.self, false),
        ("VNIInfo", VNIInfo.self, false), ("RemoteNodeSpec", RemoteNodeSpec.self, true),
        ("RemoteNodeInfo", RemoteNodeInfo.self, false), ("FlowInfo", FlowInfo.self, false),
        ("ClusterInfo", ClusterInfo.self, false), ("ClusterNodeInfo", ClusterNodeInfo.self, false),
        ("DropStatsInfo", DropStatsInfo.self, false),
        ("CNIPod", CNIPod.self, false), ("CNIAddRequest", CNIAddRequest.self, false),
        ("CNIDelegateResult", CNIDelegateResult.self, false), ("CNICommitRequest", CNICommitRequest.self, false),
        ("CNIDelRequest", CNIDelRequest.self, false), ("CNICheckRequest", CNICheckRequest.self, false),
        ("CNIAttachmentRef", CNIAttachmentRef.self, false), ("CNIGCRequest", CNIGCRequest.self, false),
    ]

    @Test func schemasMatchTheModel() throws {
        let doc = try Self.document()
        let schemas = try #require((doc["components"] as? [String: Any])?["schemas"] as? [String: Any])
        // Value schemas (a string with a pattern or format: Name, MAC, Prefix) have no model type,
        // nor has ManifestObject (YAML read by NetworkAttachmentDefinition.manifests, field by field).
        let objects = schemas.filter {
            ($0.value as? [String: Any])?["type"] as? String != "string" && $0.key != "ManifestObject"
        }
        #expect(Set(objects.keys) == Set(Self.models.map(\.0)), "schemas without a model or models without a schema")
        func sample(_ schema: [String: Any]) -> Any {
            if let ref = schema["$ref"] as? String,
                let s = schemas[String(ref.split(separator: "/").last!)] as? [String: Any]
            {
                return sample(s)
            }
            if let e = schema["enum"] as? [Any], let first = e.first { return first }
            // A nullable reference (anyOf: [{$ref}, {type: null}]): the reference.
            if let any = schema["anyOf"] as? [[String: Any]], let first = any.first { return sample(first) }
            // A type may be a list (["array", "null"]): the first that is not null.
            let type = schema["type"] as? String ?? (schema["type"] as? [String])?.first { $0 != "null" }
            switch type {
            case "string": return "x"
            case "integer": return 1
            case "number": return 1.5
            case "boolean": return true
            case "array": return [sample(schema["items"] as? [String: Any] ?? [:])]
            default:
                var o: [String: Any] = [:]
                for (k, v) in (schema["properties"] as? [String: Any]) ?? [:] {
                    o[k] = sample(v as? [String: Any] ?? [:])
                }
                return o
            }
        }
        for (name, model, strict) in Self.models {
            let schema = try #require(schemas[name] as? [String: Any], "\(name)")
            let props = Set(((schema["properties"] as? [String: Any]) ?? [:]).keys)
            let data = try JSONSerialization.data(withJSONObject: sample(schema))
            // Every schema property is a field the type reads (strict types refuse others),
            // and every field the type needs is in the schema.
            let value: any Decodable
            do { value = try JSONDecoder().decode(model, from: data) } catch {
                Issue.record("\(name): a sample of the schema does not decode: \(error)")
                continue
            }
            let fields = Set(Mirror(reflecting: value).children.compactMap(\.label))
            #expect(fields == props, "\(name): model fields \(fields.sorted()) vs schema \(props.sorted())")
            if strict {
                #expect(
                    schema["additionalProperties"] as? Bool == false,
                    "\(name) is strict: additionalProperties: false"
                )
            }
            // Required fields: exactly the model's non-optional ones.
            let required = Set((schema["required"] as? [String]) ?? [])
            let nonOptional = Set(
                Mirror(reflecting: value).children.compactMap { c -> String? in
                    guard let l = c.label else { return nil }
                    return "\(type(of: c.value))".hasPrefix("Optional<") ? nil : l
                }
            )
            #expect(
                required == nonOptional,
                "\(name): required \(required.sorted()) vs non-optional \(nonOptional.sorted())"
            )
        }
    }
}

/// The fast route-batch reader agrees with JSONDecoder wherever it answers, and leaves
/// everything unusual (and every error) to it.
@Suite struct FastDecodeTests {
    static let bodies: [String] = [
        #"{"add":[{"prefix":"198.51.100.0/24","discard":true}]}"#,
        #" { "add" : [ { "prefix" : "198.51.100.0/24" , "via" : "n1" , "vni" : 5 } , {"prefix":"2001:db8::/32","interface":"p","discard":null} ] , "delete" : [ "203.0.113.0/24" ] } "#,
        #"{"add":[{"prefix":"0.0.0.0/0","ecmp":[{"via":"a","vni":1},{"via":"b","label":16,"vni":null}]}],"delete":null}"#,
        #"{"add":[],"delete":[]}"#, "{}", #"{"add":null}"#,
        #"{"add":[{"prefix":"198.51.100.0/24","label":4294967295}]}"#,
    ]
    static let fallbacks: [String] = [
        #"{"add":[{"prefix":"198.51.100.0/24","colour":1}]}"#,  // unknown field
        #"{"add":[{"prefix":"198.51.100.0/24","vni":1.0}]}"#,  // a float
        #"{"add":[{"prefix":"198.51.100.0/24","vni":4294967296}]}"#,  // out of range
        #"{"add":[{"prefix":"198.51.100.0/24","vni":-1}]}"#,
        #"{"add":[{"prefix":"198.51\u002e100.0/24"}]}"#,  // an escape
        #"{"add":[{"prefix":"198.51.100.0/24"}],"add":[]}"#,  // repeated key
        #"{"add":[{"discard":true}]}"#,  // no prefix
        #"{"add":[{"prefix":"198.51.100.0/24"}]"#,  // truncated
        #"{"add":[{"prefix":"198.51.100.0/24"}]} x"#,  // trailing garbage
        #"{"add":[{"prefix":"198.51.100.0/24",}]}"#,
        #"{"add":[{"prefix":"198.51.100.0/24","vni":01}]}"#,
        "[]", "",
    ]

    @Test(arguments: bodies) func agreesWithJSONDecoder(_ body: String) throws {
        let fast = try #require(RouteChange.fastDecode(Data(body.utf8)), "fast path refused \(body)")
        #expect(fast == (try JSONDecoder().decode(RouteChange.self, from: Data(body.utf8))))
    }

    @Test(arguments: fallbacks) func leavesTheRestToJSONDecoder(_ body: String) {
        #expect(RouteChange.fastDecode(Data(body.utf8)) == nil)
    }

    @Test func plainPrefixesAgree() {
        let texts = [
            "198.51.100.0/24", "0.0.0.0/0", "255.255.255.255/32", "198.51.100.1/24", "198.51.100.0/33",
            "198.51.100.0/08",
            "198.051.100.0/24", "198.51.100/24", "198.51.100.0.0/24", "198.51.100.0", "198.51.100.0/", "/24",
            "1.2.3.4/+5",
            "256.0.0.0/8", "198.51.100.0/024", "a.b.c.d/8", "198.18.0.0/15",
        ]
        for t in texts {
            let fast = IPv4Prefix.plain(t)
            if let fast { #expect(fast == IPv4Prefix(t), "\(t)") }
            #expect(
                (fast != nil) == (IPv4Prefix(t) != nil && t.contains("/") && !t.contains("+") && !t.hasSuffix("/024")),
                "\(t)"
            )
        }
    }
}

/// A number that does not fit its field is named: JSONDecoder only says the body is not
/// valid JSON, with no path (found by the API fuzzer: `"vni": -1` was "malformed JSON").
@Suite struct StrictJSONTests {
    @Test(arguments: [
        (#"{"name":"x","vni":-1}"#, "vni = -1"), (#"{"name":"x","vni":1.5}"#, "vni = 1.5"),
        (#"{"name":"x","vni":4294967296,"gateway":"192.0.2.1"}"#, "vni = 4294967296"),
    ])
    func unfitNumbersAreNamed(_ body: String, _ expected: String) {
        #expect {
            _ = try StrictJSON.decode(VRFSpec.self, from: Data(body.utf8))
        } throws: { e in
            let m = (e as? APIError)?.message ?? ""
            return (e as? APIError)?.status == 400 && m.contains(expected) && !m.contains("not valid JSON")
        }
    }

    @Test func brokenJSONIsStillMalformed() {
        #expect {
            _ = try StrictJSON.decode(VRFSpec.self, from: Data(#"{"name": "x", "vni": -1"#.utf8))
        } throws: { ($0 as? APIError)?.message.hasPrefix("malformed JSON") == true }
    }
}

/// POST /v1/manifests reads only what its schema in docs/openapi.yaml allows: anything else is
/// refused naming the document (found by schemathesis: a non-string namespace was dropped
/// silently and the object accepted as in the pod's namespace).
@Suite struct ManifestReadingTests {
    @Test(arguments: [
        ("kind: ConfigMap\napiVersion: v1\n", "only NetworkAttachmentDefinition"),
        ("''\n", "not a Kubernetes object"),
        (
            "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: { name: a, namespace: 5 }\n",
            "metadata.namespace must be a string"
        ),
        (
            "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: { namespace: x }\n",
            "metadata.name"
        ),
    ])
    func refused(_ text: String, _ expected: String) {
        #expect { _ = try NetworkAttachmentDefinition.manifests(text, file: "f.yaml") } throws: {
            "\($0)".contains(expected) && "\($0)".contains("f.yaml: document 1")
        }
    }

    @Test func emptyAndListsRead() throws {
        #expect(try NetworkAttachmentDefinition.manifests("").isEmpty)
        #expect(try NetworkAttachmentDefinition.manifests("null\n").isEmpty)
        let list = """
            kind: List
            items:
              - { apiVersion: k8s.cni.cncf.io/v1, kind: NetworkAttachmentDefinition, metadata: { name: a } }
            """
        #expect(try NetworkAttachmentDefinition.manifests(list).map(\.metadata.name) == ["a"])
    }
}
