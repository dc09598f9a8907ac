// The control API's resources: one table of (method, path template, handler) that the
// HTTP server dispatches through and that docs/openapi.yaml is checked against (both
// ways, by a test). Handlers call the node service, which blocks (a mutation takes the
// state lock and may wait for the workers), so the server runs them off its event loop.

import CoreMetrics
import Foundation
import VRouterAPI
import VRouterCore

public struct APIRequest: Sendable {
    public var method: String
    /// The path as sent, without the query (percent-encoding intact).
    public var path: String
    public var query: [String: String]
    public var body: Data
    public init(method: String, path: String, query: [String: String] = [:], body: Data = Data()) {
        self.method = method
        self.path = path
        self.query = query
        self.body = body
    }

    /// Splits "/a/b?x=1&y=2" into the path and its decoded query parameters.
    public init(method: String, uri: String, body: Data) {
        var query: [String: String] = [:]
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        if parts.count == 2 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let k = String(kv[0]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(kv[0])
                let v =
                    kv.count == 2
                    ? (String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(kv[1]))
                    : ""
                query[k] = v
            }
        }
        self.init(method: method, path: String(parts[0]), query: query, body: body)
    }
}

public struct APIResponse: Sendable {
    public var status: Int
    public var body: Data
    public var contentType = "application/json"
    public var headers: [(String, String)] = []
    public init(status: Int, body: Data, contentType: String = "application/json", headers: [(String, String)] = []) {
        self.status = status
        self.body = body
        self.contentType = contentType
        self.headers = headers
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    public static func json<T: Encodable>(_ value: T, status: Int = 200) -> APIResponse {
        do {
            return APIResponse(status: status, body: try encoder.encode(value) + Data("\n".utf8))
        } catch {
            return .error(APIError(500, "encoding the response failed: \(error)"))
        }
    }

    public static func error(_ e: APIError) -> APIResponse {
        let body = (try? encoder.encode(ErrorBody(error: e.message))) ?? Data("{\"error\":\"internal error\"}".utf8)
        return APIResponse(status: e.status, body: body + Data("\n".utf8))
    }

    public static var noContent: APIResponse { APIResponse(status: 204, body: Data()) }
}

public struct HealthInfo: Codable, Sendable {
    public var status: String
}

/// One served resource: method, path template ("/v1/vrfs/{name}/routes") and handler.
public struct APIRoute: Sendable {
    public typealias Handler = @Sendable (ControlAPI, APIRequest, [String: String]) throws(APIError) -> APIResponse
    public let method: String
    public let path: String
    let segments: [Substring]
    let handler: Handler

    init(_ method: String, _ path: String, _ handler: @escaping Handler) {
        self.method = method
        self.path = path
        segments = path.split(separator: "/")
        self.handler = handler
    }

    /// The path parameters when `segments` (the request's, still encoded) match. The
    /// last parameter `{prefix}` also takes an unencoded "a.b.c.d/len" (two segments).
    func match(_ request: [Substring]) -> [String: Substring]? {
        var params: [String: Substring] = [:]
        var i = 0
        for (k, t) in segments.enumerated() {
            guard i < request.count else { return nil }
            if t.first == "{" {
                let name = String(t.dropFirst().dropLast())
                if name == "prefix" && k == segments.count - 1 && request.count == i + 2 {
                    params[name] = request[i] + "/" + request[i + 1]
                    i += 2
                    continue
                }
                params[name] = request[i]
            } else if t != request[i] {
                return nil
            }
            i += 1
        }
        return i == request.count ? params : nil
    }
}

/// The control API over a node service.
public final class ControlAPI: Sendable {
    public let service: NodeService
    /// Reported in /v1/status.
    let socketPath: String?
    let metricsAddress: String?

    public init(service: NodeService, socketPath: String? = nil, metricsAddress: String? = nil) {
        self.service = service
        self.socketPath = socketPath
        self.metricsAddress = metricsAddress
    }

    /// Answers one request. Never throws: errors become `{"error": ...}` with their status.
    public func handle(_ request: APIRequest) -> APIResponse {
        let start = DispatchTime.now()
        let segments = request.path.split(separator: "/")
        var allowed: [String] = []
        var response: APIResponse?
        var template = "unmatched"
        for route in Self.routes {
            guard let raw = route.match(segments) else { continue }
            guard route.method == request.method else {
                allowed.append(route.method)
                continue
            }
            template = route.path
            var params: [String: String] = [:]
            for (k, v) in raw {
                guard let d = String(v).removingPercentEncoding else {
                    response = .error(.badRequest("path parameter '\(k)': '\(v)' is not valid percent-encoding"))
                    break
                }
                params[k] = d
            }
            if response == nil {
                do throws(APIError) {
                    response = try route.handler(self, request, params)
                } catch {
                    response = .error(error)
                }
            }
            break
        }
        if response == nil {
            if allowed.isEmpty {
                response = .error(.notFound("no resource \(request.path)"))
            } else {
                var r = APIResponse.error(
                    APIError(
                        405,
                        "\(request.method) is not allowed on \(request.path) (allowed: \(allowed.joined(separator: ", ")))"
                    )
                )
                r.headers.append(("Allow", allowed.joined(separator: ", ")))
                response = r
            }
        }
        let r = response!
        Counter(
            label: "vrouter_api_requests_total",
            dimensions: [("method", request.method), ("route", template), ("status", "\(r.status)")]
        ).increment()
        Timer(label: "vrouter_api_request_duration_seconds", dimensions: [("route", template)])
            .recordInterval(since: start)
        return r
    }

    // MARK: The route table

    /// Every served route: the node's own, then networks, pods and the CNI shim's (in
    /// ControlAPI+CNI.swift).
    public static let routes: [APIRoute] = nodeRoutes + networkRoutes + cniRoutes

    static let nodeRoutes: [APIRoute] = [
        APIRoute("GET", "/healthz") { a, _, _ throws(APIError) in
            let ok = a.service.status().healthy
            return .json(HealthInfo(status: ok ? "ok" : "stopping"), status: ok ? 200 : 503)
        },
        APIRoute("GET", "/v1/status") { a, _, _ throws(APIError) in
            var st = a.service.status()
            st.socket = a.socketPath
            st.metrics = a.metricsAddress
            return .json(st)
        },

        APIRoute("GET", "/v1/interfaces") { a, _, _ throws(APIError) in .json(a.service.interfaces()) },
        APIRoute("POST", "/v1/interfaces") { a, r, _ throws(APIError) in
            .json(try a.service.addInterface(try StrictJSON.decode(InterfaceSpec.self, from: r.body)), status: 201)
        },
        APIRoute("DELETE", "/v1/interfaces/{name}") { a, _, p throws(APIError) in
            try a.service.deleteInterface(p["name"]!)
            return .noContent
        },

        APIRoute("GET", "/v1/vrfs") { a, _, _ throws(APIError) in .json(a.service.vrfs()) },
        APIRoute("POST", "/v1/vrfs") { a, r, _ throws(APIError) in
            .json(try a.service.addVRF(try StrictJSON.decode(VRFSpec.self, from: r.body)), status: 201)
        },
        APIRoute("DELETE", "/v1/vrfs/{name}") { a, _, p throws(APIError) in
            try a.service.deleteVRF(p["name"]!)
            return .noContent
        },
        APIRoute("GET", "/v1/vrfs/{name}/routes") { a, _, p throws(APIError) in
            .json(try a.service.routes(vrf: p["name"]!))
        },
        APIRoute("POST", "/v1/vrfs/{name}/routes") { a, r, p throws(APIError) in
            // The plain form of a batch is read directly; anything else (and every error) by JSONDecoder.
            let change: RouteChange
            if let fast = RouteChange.fastDecode(r.body) {
                change = fast
            } else {
                change = try StrictJSON.decode(RouteChange.self, from: r.body)
            }
            return .json(try a.service.changeRoutes(vrf: p["name"]!, change))
        },
        APIRoute("DELETE", "/v1/vrfs/{name}/routes/{prefix}") { a, _, p throws(APIError) in
            .json(try a.service.changeRoutes(vrf: p["name"]!, RouteChange(delete: [p["prefix"]!]), missingRoute: 404))
        },

        APIRoute("GET", "/v1/nexthops") { a, _, _ throws(APIError) in .json(a.service.nexthops()) },
        APIRoute("GET", "/v1/labels") { a, _, _ throws(APIError) in .json(a.service.labels()) },
        APIRoute("GET", "/v1/vnis") { a, _, _ throws(APIError) in .json(a.service.vniTable()) },

        APIRoute("GET", "/v1/remote-nodes") { a, _, _ throws(APIError) in .json(a.service.remoteNodes()) },
        APIRoute("GET", "/v1/cluster") { a, _, _ throws(APIError) in .json(try a.service.clusterInfo()) },
        APIRoute("POST", "/v1/remote-nodes") { a, r, _ throws(APIError) in
            let spec = try StrictJSON.decode(RemoteNodeSpec.self, from: r.body)
            try a.service.addRemoteNode(spec)
            guard let info = a.service.remoteNodes().first(where: { $0.name == spec.name }) else {
                throw APIError(500, "remote node '\(spec.name)' was added but is not listed")
            }
            return .json(info, status: 201)
        },
        APIRoute("DELETE", "/v1/remote-nodes/{name}") { a, _, p throws(APIError) in
            try a.service.deleteRemoteNode(p["name"]!)
            return .noContent
        },

        APIRoute("GET", "/v1/flows") { a, r, _ throws(APIError) in
            var top = 100
            if let t = r.query["top"] {
                guard let n = Int(t), (1...1_000_000).contains(n) else {
                    throw .badRequest("top '\(t)' is not a number in 1...1000000")
                }
                top = n
            }
            let vrf = r.query["vrf"].flatMap { $0.isEmpty ? nil : $0 }
            return .json(try a.service.flows(vrf: vrf, top: top))
        },
        APIRoute("GET", "/v1/dropstats") { a, _, _ throws(APIError) in .json(a.service.dropStats()) },
    ]
}
