// The etcd v3 data model as the client hands it out: keys and values are bytes, revisions and
// lease ids are Int64 (the gateway sends them as decimal strings; EtcdWire converts).

/// Which keys a range, delete or watch covers.
public enum KeyRange: Sendable, Hashable {
    /// One key.
    case key([UInt8])
    /// Every key starting with these bytes.
    case prefix([UInt8])
    /// Keys in [from, to).
    case range(from: [UInt8], to: [UInt8])
    /// Every key >= this one.
    case fromKey([UInt8])

    public static func key(_ s: String) -> KeyRange { .key(Array(s.utf8)) }
    public static func prefix(_ s: String) -> KeyRange { .prefix(Array(s.utf8)) }

    /// etcd's range_end: nil for one key, [0] for "to the end".
    public var rangeEnd: [UInt8]? { wire.end }

    /// etcd's (key, range_end) pair: range_end nil for one key, [0] for "to the end".
    var wire: (key: [UInt8], end: [UInt8]?) {
        switch self {
        case .key(let k): return (k, nil)
        case .prefix(let p): return (p.isEmpty ? [0] : p, Self.prefixEnd(p))
        case .range(let a, let b): return (a, b)
        case .fromKey(let k): return (k.isEmpty ? [0] : k, [0])
        }
    }

    /// The first key after every key with this prefix: the prefix with its last byte below
    /// 0xff incremented and what follows dropped; all-0xff (or empty) prefixes run to the end.
    static func prefixEnd(_ p: [UInt8]) -> [UInt8] {
        var end = p
        while let last = end.last {
            if last < 0xff {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }
}

public struct ResponseHeader: Sendable, Hashable {
    public var clusterID: UInt64 = 0
    public var memberID: UInt64 = 0
    /// The store's revision when the request was served.
    public var revision: Int64 = 0
    public var raftTerm: UInt64 = 0
}

public struct KeyValue: Sendable, Hashable {
    public var key: [UInt8]
    public var value: [UInt8]
    public var createRevision: Int64
    public var modRevision: Int64
    /// Number of writes since creation (1 after create, 0 for a deleted key in an event).
    public var version: Int64
    /// Lease the key is attached to, 0 for none.
    public var lease: Int64

    public init(
        key: [UInt8],
        value: [UInt8],
        createRevision: Int64 = 0,
        modRevision: Int64 = 0,
        version: Int64 = 0,
        lease: Int64 = 0
    ) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }

    /// The key as text (etcd keys here are UTF-8 paths; invalid bytes are replaced).
    public var keyString: String { String(decoding: key, as: UTF8.self) }
    public var valueString: String { String(decoding: value, as: UTF8.self) }
}

// MARK: KV

public struct RangeResponse: Sendable {
    public var header = ResponseHeader()
    public var kvs: [KeyValue] = []
    /// More keys matched than `limit` allowed.
    public var more = false
    /// How many keys matched (all of them, whatever the limit).
    public var count: Int64 = 0
}

public struct PutResponse: Sendable {
    public var header = ResponseHeader()
    public var prevKV: KeyValue?
}

public struct DeleteResponse: Sendable {
    public var header = ResponseHeader()
    public var deleted: Int64 = 0
    public var prevKVs: [KeyValue] = []
}

// MARK: transactions

/// One condition of a transaction, on the key (or range) it names.
public struct Compare: Sendable, Hashable {
    public enum Target: Sendable, Hashable {
        /// Number of writes since creation; 0 when the key does not exist.
        case version(Int64)
        /// Revision of the key's creation; 0 when the key does not exist.
        case createRevision(Int64)
        /// Revision of the key's last write.
        case modRevision(Int64)
        case value([UInt8])
        /// The lease the key is on (0: none).
        case lease(Int64)
    }

    public enum Result: String, Sendable, Hashable {
        case equal = "EQUAL"
        case greater = "GREATER"
        case less = "LESS"
        case notEqual = "NOT_EQUAL"
    }

    public var key: [UInt8]
    public var rangeEnd: [UInt8]?
    public var target: Target
    public var result: Result

    public init(key: [UInt8], _ target: Target, _ result: Result = .equal, rangeEnd: [UInt8]? = nil) {
        self.key = key
        self.target = target
        self.result = result
        self.rangeEnd = rangeEnd
    }

    /// The key does not exist (create-if-absent).
    public static func absent(_ key: [UInt8]) -> Compare { Compare(key: key, .createRevision(0)) }
    /// The key is unchanged since the revision it was read at.
    public static func unchanged(_ key: [UInt8], since modRevision: Int64) -> Compare {
        Compare(key: key, .modRevision(modRevision))
    }
    /// The key is on this lease (it is ours).
    public static func onLease(_ key: [UInt8], _ lease: Int64) -> Compare { Compare(key: key, .lease(lease)) }
}

/// One operation inside a transaction.
public enum TxnOp: Sendable, Hashable {
    case range(KeyRange, limit: Int64 = 0, keysOnly: Bool = false)
    case put(key: [UInt8], value: [UInt8], lease: Int64 = 0, prevKV: Bool = false)
    case delete(KeyRange, prevKV: Bool = false)
}

public enum TxnOpResponse: Sendable {
    case range(RangeResponse)
    case put(PutResponse)
    case delete(DeleteResponse)

    public var range: RangeResponse? {
        if case .range(let r) = self { return r }
        return nil
    }
}

public struct TxnResponse: Sendable {
    public var header = ResponseHeader()
    /// The comparisons all held and the success branch ran.
    public var succeeded = false
    /// One answer per operation of the branch that ran.
    public var responses: [TxnOpResponse] = []
}

// MARK: leases

public struct Lease: Sendable, Hashable {
    public var id: Int64
    /// Seconds the server granted (it may raise a TTL below its minimum).
    public var ttl: Int64
}

public struct LeaseStatus: Sendable, Hashable {
    public var id: Int64
    /// Seconds left.
    public var ttl: Int64
    public var grantedTTL: Int64
    /// Keys on the lease, when asked for.
    public var keys: [[UInt8]]
}

// MARK: watch

public struct WatchRequest: Sendable, Hashable {
    public var range: KeyRange
    /// First revision to deliver (inclusive); 0 = from now.
    public var startRevision: Int64
    /// Deliver the key's previous value with each event (needed to know what a delete removed).
    public var prevKV: Bool
    /// Ask etcd for empty progress messages on a quiet watch (carrying the current revision).
    public var progressNotify: Bool

    public init(_ range: KeyRange, startRevision: Int64 = 0, prevKV: Bool = false, progressNotify: Bool = false) {
        self.range = range
        self.startRevision = startRevision
        self.prevKV = prevKV
        self.progressNotify = progressNotify
    }
}

public struct WatchEvent: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case put
        case delete
    }

    public var kind: Kind
    /// For a delete, the key with modRevision = the deleting revision and an empty value.
    public var kv: KeyValue
    public var prevKV: KeyValue?

    public init(kind: Kind, kv: KeyValue, prevKV: KeyValue? = nil) {
        self.kind = kind
        self.kv = kv
        self.prevKV = prevKV
    }
}

public struct WatchResponse: Sendable {
    public var header = ResponseHeader()
    public var watchID: Int64 = 0
    public var created = false
    public var canceled = false
    public var compactRevision: Int64 = 0
    public var cancelReason = ""
    public var events: [WatchEvent] = []

    /// A message with no events that only says how far the store has come.
    public var isProgress: Bool { !created && !canceled && events.isEmpty }
}
