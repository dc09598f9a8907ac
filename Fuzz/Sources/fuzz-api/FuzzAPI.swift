// The control API as vrouterd serves it: requests (any method, path, query and body) through
// ControlAPI.handle on a node service with its workers running, its state journaled to a
// state directory, then the node restarted from that directory as vrouterd restarts.
//
// Input: requests separated by NUL bytes, each "METHOD URI\n" and then the body, e.g.
//   POST /v1/vrfs/blue/routes\n{"add":[{"prefix":"203.0.113.0/24","discard":true}]}
//
// Checked on every request: never a 5xx; every answer but a 204 is JSON, and an error
// answer names its problem (`{"error": "…"}`, non-empty); a refused change (4xx) leaves the
// node as it was (every list the API serves, the same). After the input, the node
// restarted from its state directory serves the same lists as before the restart: every
// change answered 2xx survived, nothing else appeared.
//
// The node lives in namespaces of the target's own (FuzzNode; root needed). A request naming
// a namespace that is not one of them (a path such as /proc/1/ns/net) is skipped.
// VRT_FUZZ_VERBOSE=1 prints every answer.

import Foundation
import FuzzNode
import FuzzSupport
import VRouterAPI
import VRouterControl
import VRouterIO

/// Whether a request may run here: every namespace it names is under /run/netns (the
/// target's private tmpfs). Decoded as the server decodes it; what does not decode runs
/// (and is refused).
func confined(_ request: APIRequest) -> Bool {
    let own = FuzzNode.confined
    let d = JSONDecoder()
    switch request.path {
    case "/v1/interfaces": return own((try? d.decode(InterfaceSpec.self, from: request.body))?.tap.netns)
    case "/v1/cni/add": return own((try? d.decode(CNIAddRequest.self, from: request.body))?.netns)
    case "/v1/cni/del": return own((try? d.decode(CNIDelRequest.self, from: request.body))?.netns)
    case "/v1/cni/check": return own((try? d.decode(CNICheckRequest.self, from: request.body))?.netns)
    default: return true
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzAPIInitialize(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    isolate()
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAPI(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    var requests: [APIRequest] = []
    for part in input.split(separator: 0, omittingEmptySubsequences: true) {
        let line = part.firstIndex(of: UInt8(ascii: "\n")) ?? part.endIndex
        let head = String(decoding: part[part.startIndex..<line], as: UTF8.self).split(separator: " ", maxSplits: 1)
        guard head.count == 2 else { continue }
        let body = line < part.endIndex ? Data(part[(line + 1)...]) : Data()
        requests.append(APIRequest(method: String(head[0]), uri: String(head[1]), body: body))
    }
    guard !requests.isEmpty else { return 0 }

    renewWorld()
    var service = startNode()
    var api = ControlAPI(service: service)
    var state = lists(api)
    for request in requests where confined(request) {
        let r = api.handle(request)
        let what = "\(request.method) \(request.path) answered \(r.status)"
        let text = String(decoding: r.body, as: UTF8.self)
        if verbose { print("\(request.method) \(request.path) -> \(r.status) \(text.prefix(300))") }
        require(r.status < 500, "\(what): \(text)\n(body: \(String(decoding: request.body, as: UTF8.self)))")
        if r.status != 204 {
            let json = try? JSONSerialization.jsonObject(with: r.body, options: [.fragmentsAllowed])
            require(json != nil, "\(what) with a body that is not JSON: \(text)")
            if r.status >= 400 {
                let message = (json as? [String: Any])?["error"] as? String
                require(message.map { !$0.isEmpty } ?? false, "\(what) without an error message: \(text)")
            }
        }
        guard request.method != "GET" else { continue }
        let after = lists(api)
        if r.status >= 400 {
            require(after == state, "\(what) (\(text)) but changed the node: \(difference(state, after))")
        }
        state = after
    }
    service.stop()
    service = startNode()
    api = ControlAPI(service: service)
    let restarted = lists(api)
    service.stop()
    require(restarted == state, "the node restarted from its state differs: \(difference(state, restarted))")
    return 0
}
