// Kubernetes manifests for `vrouterctl apply -f` / `delete -f` (POST /v1/manifests): one or
// more YAML documents (---), each a NetworkAttachmentDefinition or a List of them, read the way
// kubectl reads them (unknown top-level fields such as status are ignored; annotations must
// be strings, as the API server requires). Read here rather than in vrouterctl, which then
// needs neither a YAML library nor Foundation and starts in a quarter of the time.

import Foundation
import VRouterAPI
import Yams

extension NetworkAttachmentDefinition {
    public static func manifests(
        _ text: String,
        file: String = "manifest"
    ) throws(ConfigError) -> [NetworkAttachmentDefinition] {
        var out: [NetworkAttachmentDefinition] = []
        do {
            for (i, doc) in try Yams.load_all(yaml: text).enumerated() {
                if doc is NSNull { continue }
                try collect(doc, "\(file): document \(i + 1)", &out)
            }
        } catch let e as ConfigError {
            throw e
        } catch {
            throw ConfigError("\(file): not valid YAML: \(error)")
        }
        return out
    }

    static func collect(_ doc: Any, _ where_: String, _ out: inout [NetworkAttachmentDefinition]) throws(ConfigError) {
        guard let m = doc as? [String: Any] else {
            throw ConfigError("\(where_): not a Kubernetes object (a mapping)")
        }
        let kind = m["kind"] as? String
        if kind == "List" {
            guard let items = m["items"] as? [Any] else { throw ConfigError("\(where_): a List without items") }
            for (k, item) in items.enumerated() { try collect(item, "\(where_) items[\(k)]", &out) }
            return
        }
        guard kind == kindName, (m["apiVersion"] as? String) == apiVersionV1 else {
            throw ConfigError(
                "\(where_): only \(kindName) (\(apiVersionV1)) objects are known here, not \(kind ?? "an object without kind") (\(m["apiVersion"] as? String ?? "no apiVersion"))"
            )
        }
        guard let meta = m["metadata"] as? [String: Any], let name = meta["name"] as? String else {
            throw ConfigError("\(where_): metadata.name is missing")
        }
        if let ns = meta["namespace"], !(ns is String) {
            throw ConfigError("\(where_) (\(name)): metadata.namespace must be a string")
        }
        var annotations: [String: String]?
        if let a = meta["annotations"] {
            guard let am = a as? [String: Any] else {
                throw ConfigError("\(where_) (\(name)): metadata.annotations is not a mapping")
            }
            var strings: [String: String] = [:]
            for (k, v) in am {
                guard let s = v as? String else {
                    throw ConfigError("\(where_) (\(name)): annotation \(k) must be a string (quote it: \"\(v)\")")
                }
                strings[k] = s
            }
            annotations = strings
        }
        var spec: Spec?
        if let s = m["spec"] {
            guard let sm = s as? [String: Any] else {
                throw ConfigError("\(where_) (\(name)): spec is not a mapping")
            }
            if let c = sm["config"], !(c is String) {
                throw ConfigError("\(where_) (\(name)): spec.config must be a string (JSON text)")
            }
            spec = Spec(config: sm["config"] as? String)
        }
        out.append(
            NetworkAttachmentDefinition(
                apiVersion: apiVersionV1,
                kind: kindName,
                metadata: Metadata(name: name, namespace: meta["namespace"] as? String, annotations: annotations),
                spec: spec
            )
        )
    }
}
