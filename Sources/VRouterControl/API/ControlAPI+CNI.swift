// The control API's networks, pods and CNI resources. Networks and pods are what
// `vrouterctl apply/delete/network/pod` use; /v1/cni/* is the vrouter-cni shim's (see
// VRouterCNI/Wire.swift for the exchange). CNI failures answer with the CNI error code
// they mean (`cniCode`) beside the message, so the shim reports the runtime the right one.

import Foundation
import VRouterAPI

extension ControlAPI {
    static let networkRoutes: [APIRoute] = [
        APIRoute("GET", "/v1/networks") { a, _, _ throws(APIError) in .json(a.service.networks()) },
        APIRoute("POST", "/v1/networks") { a, r, _ throws(APIError) in
            let result = try a.service.applyNetwork(
                try StrictJSON.decode(NetworkAttachmentDefinition.self, from: r.body)
            )
            return .json(result, status: result.action == "created" ? 201 : 200)
        },
        APIRoute("GET", "/v1/networks/{namespace}/{name}") { a, _, p throws(APIError) in
            .json(try a.service.network(namespace: p["namespace"]!, name: p["name"]!))
        },
        APIRoute("DELETE", "/v1/networks/{namespace}/{name}") { a, r, p throws(APIError) in
            let force = ["true", "1", "yes"].contains(r.query["force"]?.lowercased() ?? "")
            try a.service.deleteNetwork(namespace: p["namespace"]!, name: p["name"]!, force: force)
            return .noContent
        },
        // Reads manifests for vrouterctl (apply -f, delete -f); changes nothing.
        APIRoute("POST", "/v1/manifests") { _, r, _ throws(APIError) in
            do throws(ConfigError) {
                return .json(
                    try NetworkAttachmentDefinition.manifests(
                        String(decoding: r.body, as: UTF8.self),
                        file: r.query["file"].flatMap { $0.isEmpty ? nil : $0 } ?? "manifest"
                    )
                )
            } catch { throw .badRequest(error.description) }
        },
        APIRoute("GET", "/v1/pods") { a, _, _ throws(APIError) in .json(a.service.pods()) },
        APIRoute("GET", "/v1/pods/{namespace}/{name}") { a, _, p throws(APIError) in
            .json(try a.service.pod(namespace: p["namespace"]!, name: p["name"]!))
        },
    ]

    static let cniRoutes: [APIRoute] = [
        APIRoute("POST", "/v1/cni/add") { a, r, _ throws(APIError) in
            cni { () throws(CNIFailure) in .json(try a.service.cniAdd(try decode(CNIAddRequest.self, r.body))) }
        },
        APIRoute("POST", "/v1/cni/commit") { a, r, _ throws(APIError) in
            cni { () throws(CNIFailure) in
                try a.service.cniCommit(try decode(CNICommitRequest.self, r.body))
                return .json(EmptyBody())
            }
        },
        APIRoute("POST", "/v1/cni/del") { a, r, _ throws(APIError) in
            cni { () throws(CNIFailure) in .json(a.service.cniDel(try decode(CNIDelRequest.self, r.body))) }
        },
        APIRoute("POST", "/v1/cni/check") { a, r, _ throws(APIError) in
            cni { () throws(CNIFailure) in .json(try a.service.cniCheck(try decode(CNICheckRequest.self, r.body))) }
        },
        APIRoute("POST", "/v1/cni/gc") { a, r, _ throws(APIError) in
            cni { () throws(CNIFailure) in .json(a.service.cniGC(try decode(CNIGCRequest.self, r.body))) }
        },
        APIRoute("GET", "/v1/cni/status") { a, _, _ throws(APIError) in .json(a.service.cniStatus()) },
    ]

    struct EmptyBody: Codable {}

    static func decode<T: Decodable>(_ t: T.Type, _ body: Data) throws(CNIFailure) -> T {
        do { return try StrictJSON.decode(t, from: body) } catch {
            throw CNIFailure(error.status, .decodingFailure, error.message)
        }
    }

    /// Runs a CNI operation; a failure becomes `{"error": …, "cniCode": …}`.
    static func cni(_ body: () throws(CNIFailure) -> APIResponse) -> APIResponse {
        do {
            return try body()
        } catch {
            return .json(CNIErrorBody(error: error.message, cniCode: error.code.rawValue), status: error.status)
        }
    }
}
