// What this target's tests add to the shared support (VRouterTestSupport): vrouterctl's
// JSON, checked and parsed.

import Foundation
import Testing
import VRouterTestSupport

extension Daemon {
    /// vrouterctl -o json, its exit status checked and its output parsed.
    func json(_ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> Any {
        let r = try ctl(args + ["-o", "json"])
        #expect(r.status == 0, "vrouterctl \(args.joined(separator: " ")): \(r.error)", sourceLocation: sourceLocation)
        return try JSONSerialization.jsonObject(with: Data(r.output.utf8), options: [.fragmentsAllowed])
    }
}

func objects(_ v: Any) -> [[String: Any]] { v as? [[String: Any]] ?? [] }
