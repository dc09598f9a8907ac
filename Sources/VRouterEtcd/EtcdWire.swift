// The JSON of etcd 3.4's gRPC gateway: snake_case names, bytes in base64, 64-bit integers as
// decimal strings, and every default value left out (an empty range has no "kvs", a put event
// no "type", a false flag no field). Decoding takes both strings and numbers for integers, as
// the gateway's own parser does, and says which field was wrong when it fails.

import Foundation

// MARK: requests

struct RangeRequestJSON: Encodable {
    var key: [UInt8]
    var rangeEnd: [UInt8]?
    var limit: Int64 = 0
    var revision: Int64 = 0
    var keysOnly = false
    var countOnly = false
    var serializable = false

    init(_ range: KeyRange, limit: Int64 = 0, revision: Int64 = 0, keysOnly: Bool = false, countOnly: Bool = false) {
        (key, rangeEnd) = range.wire
        self.limit = limit
        self.revision = revision
        self.keysOnly = keysOnly
        self.countOnly = countOnly
    }

    enum CodingKeys: String, CodingKey {
        case key, limit, revision, serializable
        case rangeEnd = "range_end"
        case keysOnly = "keys_only"
        case countOnly = "count_only"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeBytes(key, .key)
        if let rangeEnd { try c.encodeBytes(rangeEnd, .rangeEnd) }
        if limit != 0 { try c.encode(String(limit), forKey: .limit) }
        if revision != 0 { try c.encode(String(revision), forKey: .revision) }
        if keysOnly { try c.encode(true, forKey: .keysOnly) }
        if countOnly { try c.encode(true, forKey: .countOnly) }
        if serializable { try c.encode(true, forKey: .serializable) }
    }
}

struct PutRequestJSON: Encodable {
    var key: [UInt8]
    var value: [UInt8]
    var lease: Int64
    var prevKV: Bool

    enum CodingKeys: String, CodingKey {
        case key, value, lease
        case prevKV = "prev_kv"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeBytes(key, .key)
        try c.encodeBytes(value, .value)
        if lease != 0 { try c.encode(String(lease), forKey: .lease) }
        if prevKV { try c.encode(true, forKey: .prevKV) }
    }
}

struct DeleteRequestJSON: Encodable {
    var range: KeyRange
    var prevKV: Bool

    enum CodingKeys: String, CodingKey {
        case key
        case rangeEnd = "range_end"
        case prevKV = "prev_kv"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        let (key, end) = range.wire
        try c.encodeBytes(key, .key)
        if let end { try c.encodeBytes(end, .rangeEnd) }
        if prevKV { try c.encode(true, forKey: .prevKV) }
    }
}

struct CompareJSON: Encodable {
    var compare: Compare

    enum CodingKeys: String, CodingKey {
        case key, result, target, version, value, lease
        case rangeEnd = "range_end"
        case createRevision = "create_revision"
        case modRevision = "mod_revision"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeBytes(compare.key, .key)
        if let end = compare.rangeEnd { try c.encodeBytes(end, .rangeEnd) }
        try c.encode(compare.result.rawValue, forKey: .result)
        switch compare.target {
        case .version(let v):
            try c.encode("VERSION", forKey: .target)
            try c.encode(String(v), forKey: .version)
        case .createRevision(let v):
            try c.encode("CREATE", forKey: .target)
            try c.encode(String(v), forKey: .createRevision)
        case .modRevision(let v):
            try c.encode("MOD", forKey: .target)
            try c.encode(String(v), forKey: .modRevision)
        case .value(let v):
            try c.encode("VALUE", forKey: .target)
            try c.encodeBytes(v, .value)
        case .lease(let v):
            try c.encode("LEASE", forKey: .target)
            try c.encode(String(v), forKey: .lease)
        }
    }
}

struct TxnOpJSON: Encodable {
    var op: TxnOp

    enum CodingKeys: String, CodingKey {
        case requestRange = "request_range"
        case requestPut = "request_put"
        case requestDeleteRange = "request_delete_range"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch op {
        case .range(let r, let limit, let keysOnly):
            try c.encode(RangeRequestJSON(r, limit: limit, keysOnly: keysOnly), forKey: .requestRange)
        case .put(let k, let v, let lease, let prev):
            try c.encode(PutRequestJSON(key: k, value: v, lease: lease, prevKV: prev), forKey: .requestPut)
        case .delete(let r, let prev):
            try c.encode(DeleteRequestJSON(range: r, prevKV: prev), forKey: .requestDeleteRange)
        }
    }
}

struct TxnRequestJSON: Encodable {
    var compare: [CompareJSON]
    var success: [TxnOpJSON]
    var failure: [TxnOpJSON]
}

struct LeaseIDJSON: Encodable {
    var id: Int64
    var keys = false

    enum CodingKeys: String, CodingKey {
        case id = "ID"
        case keys
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(String(id), forKey: .id)
        if keys { try c.encode(true, forKey: .keys) }
    }
}

struct LeaseGrantJSON: Encodable {
    var ttl: Int64
    var id: Int64

    enum CodingKeys: String, CodingKey {
        case ttl = "TTL"
        case id = "ID"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(String(ttl), forKey: .ttl)
        if id != 0 { try c.encode(String(id), forKey: .id) }
    }
}

struct CompactionJSON: Encodable {
    var revision: Int64
    var physical: Bool

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(String(revision), forKey: .revision)
        if physical { try c.encode(true, forKey: .physical) }
    }

    enum CodingKeys: String, CodingKey { case revision, physical }
}

struct WatchCreateJSON: Encodable {
    var request: WatchRequest

    enum Outer: String, CodingKey { case createRequest = "create_request" }
    enum CodingKeys: String, CodingKey {
        case key
        case rangeEnd = "range_end"
        case startRevision = "start_revision"
        case prevKV = "prev_kv"
        case progressNotify = "progress_notify"
    }

    func encode(to encoder: Encoder) throws {
        var outer = encoder.container(keyedBy: Outer.self)
        var c = outer.nestedContainer(keyedBy: CodingKeys.self, forKey: .createRequest)
        let (key, end) = request.range.wire
        try c.encodeBytes(key, .key)
        if let end { try c.encodeBytes(end, .rangeEnd) }
        if request.startRevision != 0 { try c.encode(String(request.startRevision), forKey: .startRevision) }
        if request.prevKV { try c.encode(true, forKey: .prevKV) }
        if request.progressNotify { try c.encode(true, forKey: .progressNotify) }
    }
}

extension KeyedEncodingContainer {
    mutating func encodeBytes(_ bytes: [UInt8], _ key: Key) throws {
        try encode(Data(bytes).base64EncodedString(), forKey: key)
    }
}

// MARK: responses

extension KeyedDecodingContainer {
    /// An int64 sent as a decimal string (or a number); absent or null is 0.
    func int64(_ key: Key) throws -> Int64 {
        guard contains(key), try !decodeNil(forKey: key) else { return 0 }
        if let s = try? decode(String.self, forKey: key) {
            guard let v = Int64(s) else {
                throw DecodingError.dataCorruptedError(
                    forKey: key,
                    in: self,
                    debugDescription: "\"\(s)\" is not an int64"
                )
            }
            return v
        }
        return try decode(Int64.self, forKey: key)
    }

    func uint64(_ key: Key) throws -> UInt64 {
        guard contains(key), try !decodeNil(forKey: key) else { return 0 }
        if let s = try? decode(String.self, forKey: key) {
            guard let v = UInt64(s) else {
                throw DecodingError.dataCorruptedError(
                    forKey: key,
                    in: self,
                    debugDescription: "\"\(s)\" is not a uint64"
                )
            }
            return v
        }
        return try decode(UInt64.self, forKey: key)
    }

    /// Base64 bytes; absent is empty.
    func bytes(_ key: Key) throws -> [UInt8] {
        guard contains(key), try !decodeNil(forKey: key) else { return [] }
        let s = try decode(String.self, forKey: key)
        guard let d = Data(base64Encoded: s) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "not base64")
        }
        return [UInt8](d)
    }

    func flag(_ key: Key) throws -> Bool {
        guard contains(key), try !decodeNil(forKey: key) else { return false }
        return try decode(Bool.self, forKey: key)
    }

    func optional<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try decode(type, forKey: key)
    }

    func list<T: Decodable>(_ type: T.Type, _ key: Key) throws -> [T] {
        try optional([T].self, key) ?? []
    }
}

/// Field names as the gateway writes them.
struct WireKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
    static func k(_ s: String) -> WireKey { WireKey(stringValue: s) }
}

extension ResponseHeader: Decodable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        clusterID = try c.uint64(.k("cluster_id"))
        memberID = try c.uint64(.k("member_id"))
        revision = try c.int64(.k("revision"))
        raftTerm = try c.uint64(.k("raft_term"))
    }
}

extension KeyValue: Decodable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        self.init(
            key: try c.bytes(.k("key")),
            value: try c.bytes(.k("value")),
            createRevision: try c.int64(.k("create_revision")),
            modRevision: try c.int64(.k("mod_revision")),
            version: try c.int64(.k("version")),
            lease: try c.int64(.k("lease"))
        )
    }
}

extension RangeResponse: Decodable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        header = try c.optional(ResponseHeader.self, .k("header")) ?? ResponseHeader()
        kvs = try c.list(KeyValue.self, .k("kvs"))
        more = try c.flag(.k("more"))
        count = try c.int64(.k("count"))
    }
}

extension PutResponse: Decodable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        header = try c.optional(ResponseHeader.self, .k("header")) ?? ResponseHeader()
        prevKV = try c.optional(KeyValue.self, .k("prev_kv"))
    }
}

extension DeleteResponse: Decodable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        header = try c.optional(ResponseHeader.self, .k("header")) ?? ResponseHeader()
        deleted = try c.int64(.k("deleted"))
        prevKVs = try c.list(KeyValue.self, .k("prev_kvs"))
    }
}

extension TxnOpResponse: Decodable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        if let r = try c.optional(RangeResponse.self, .k("response_range")) {
            self = .range(r)
        } else if let p = try c.optional(PutResponse.self, .k("response_put")) {
            self = .put(p)
        } else if let d = try c.optional(DeleteResponse.self, .k("response_delete_range")) {
            self = .delete(d)
        } else {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "unknown txn response"))
        }
    }
}

extension TxnResponse: Decodable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        header = try c.optional(ResponseHeader.self, .k("header")) ?? ResponseHeader()
        succeeded = try c.flag(.k("succeeded"))
        responses = try c.list(TxnOpResponse.self, .k("responses"))
    }
}

struct LeaseGrantResponseJSON: Decodable {
    var id: Int64
    var ttl: Int64
    var error: String

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        id = try c.int64(.k("ID"))
        ttl = try c.int64(.k("TTL"))
        error = try c.optional(String.self, .k("error")) ?? ""
    }
}

/// lease/keepalive and lease/timetolive answers (timetolive adds grantedTTL and keys).
struct LeaseTTLResponseJSON: Decodable {
    var id: Int64
    var ttl: Int64
    var grantedTTL: Int64
    var keys: [[UInt8]]

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        id = try c.int64(.k("ID"))
        ttl = try c.int64(.k("TTL"))
        grantedTTL = try c.int64(.k("grantedTTL"))
        keys = try c.list(String.self, .k("keys")).map { s in
            guard let d = Data(base64Encoded: s) else {
                throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "key not base64"))
            }
            return [UInt8](d)
        }
    }
}

struct EmptyResponseJSON: Decodable {
    var header: ResponseHeader

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        header = try c.optional(ResponseHeader.self, .k("header")) ?? ResponseHeader()
    }
}

extension WatchEvent: Decodable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        let type = try c.optional(String.self, .k("type")) ?? "PUT"
        switch type {
        case "PUT": kind = .put
        case "DELETE": kind = .delete
        default:
            throw DecodingError.dataCorruptedError(forKey: .k("type"), in: c, debugDescription: "event type \(type)")
        }
        kv = try c.optional(KeyValue.self, .k("kv")) ?? KeyValue(key: [], value: [])
        prevKV = try c.optional(KeyValue.self, .k("prev_kv"))
    }
}

extension WatchResponse: Decodable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        header = try c.optional(ResponseHeader.self, .k("header")) ?? ResponseHeader()
        watchID = try c.int64(.k("watch_id"))
        created = try c.flag(.k("created"))
        canceled = try c.flag(.k("canceled"))
        compactRevision = try c.int64(.k("compact_revision"))
        cancelReason = try c.optional(String.self, .k("cancel_reason")) ?? ""
        events = try c.list(WatchEvent.self, .k("events"))
    }
}

/// What the gateway sends instead of an answer: for unary calls `{"error","code","message"}`,
/// inside streams `{"error":{"grpc_code","http_code","message"}}`.
struct GatewayErrorJSON: Decodable {
    var code: Int
    var message: String

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        if let inner = try? c.nestedContainer(keyedBy: WireKey.self, forKey: .k("error")) {
            code = Int(try inner.int64(.k("grpc_code")))
            message = try inner.optional(String.self, .k("message")) ?? ""
        } else {
            code = Int(try c.int64(.k("code")))
            message = try c.optional(String.self, .k("message")) ?? c.optional(String.self, .k("error")) ?? ""
        }
        guard code != 0 || !message.isEmpty else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "not an error"))
        }
    }
}

/// Streaming calls (watch, lease keepalive) wrap each message as `{"result": ...}`.
struct StreamResultJSON<T: Decodable>: Decodable {
    var result: T?
    var error: GatewayErrorJSON?

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        result = try c.optional(T.self, .k("result"))
        error = c.contains(.k("error")) ? try GatewayErrorJSON(from: decoder) : nil
        guard result != nil || error != nil else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "neither result nor error"))
        }
    }
}

extension DecodingError {
    /// One line naming the field: "kvs[0].mod_revision: "x" is not an int64".
    var summary: String {
        switch self {
        case .dataCorrupted(let ctx), .keyNotFound(_, let ctx), .typeMismatch(_, let ctx), .valueNotFound(_, let ctx):
            let path = ctx.codingPath.map { $0.intValue.map { "[\($0)]" } ?? "." + $0.stringValue }.joined()
            let field = path.hasPrefix(".") ? String(path.dropFirst()) : path
            let detail = (ctx.underlyingError as? NSError).map { " (\($0.localizedDescription))" } ?? ""
            return (field.isEmpty ? "" : field + ": ") + ctx.debugDescription + detail
        @unknown default:
            return "\(self)"
        }
    }
}
