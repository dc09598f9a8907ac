// An in-memory capture: packets stored back to back with their receiving port and
// timestamp. The pcap loader fills one from files, the traffic generator from scratch;
// replays and benchmarks copy packets from it into pool buffers (as a NIC would DMA).

public struct PacketSet: Sendable {
    public private(set) var bytes: [UInt8] = []
    public private(set) var offsets: [Int] = []
    public private(set) var lengths: [UInt16] = []
    public private(set) var ports: [UInt16] = []
    public private(set) var timestamps: [UInt64] = []

    public init() {}

    public var count: Int { offsets.count }
    public var isEmpty: Bool { offsets.isEmpty }

    public mutating func reserve(packets: Int, bytes total: Int) {
        bytes.reserveCapacity(total)
        offsets.reserveCapacity(packets)
        lengths.reserveCapacity(packets)
        ports.reserveCapacity(packets)
        timestamps.reserveCapacity(packets)
    }

    public mutating func append(_ packet: UnsafeRawBufferPointer, port: UInt16, timestamp: UInt64 = 0) {
        precondition(packet.count <= Int(UInt16.max))
        offsets.append(bytes.count)
        lengths.append(UInt16(packet.count))
        ports.append(port)
        timestamps.append(timestamp)
        bytes.append(contentsOf: packet)
    }

    public mutating func append(_ packet: [UInt8], port: UInt16, timestamp: UInt64 = 0) {
        packet.withUnsafeBytes { append($0, port: port, timestamp: timestamp) }
    }

    public mutating func append(contentsOf other: PacketSet) {
        for i in 0..<other.count {
            other.withPacket(i) { append($0, port: other.ports[i], timestamp: other.timestamps[i]) }
        }
    }

    public func withPacket<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[offsets[i]..<offsets[i] + Int(lengths[i])]))
        }
    }

    public func packet(_ i: Int) -> [UInt8] { withPacket(i) { Array($0) } }

    /// True when timestamps never go backwards (as in a capture written by one port).
    public var isTimeOrdered: Bool {
        timestamps.withUnsafeBufferPointer { t in
            var i = 1
            while i < t.count {
                if t[i] < t[i - 1] { return false }
                i += 1
            }
            return true
        }
    }

    /// Interleaves the packets of several sets by timestamp (stable: ties keep set order,
    /// then packet order), as a merged capture.
    ///
    /// Cost: one set that is already in time order is returned as it is (no copy). Sets that
    /// each are in time order (captures are) merge in one linear pass choosing among their
    /// heads; otherwise the order comes from a sort. The packets are then gathered into
    /// arrays allocated once at their final size.
    public static func merged(_ sets: [PacketSet]) -> PacketSet {
        if sets.count == 1 && sets[0].isTimeOrdered { return sets[0] }
        let total = sets.reduce(0) { $0 + $1.count }
        // (set, packet) pairs in output order.
        var order: [(set: Int, index: Int)] = []
        order.reserveCapacity(total)
        if sets.count <= 16 && sets.allSatisfy(\.isTimeOrdered) {
            var heads = [Int](repeating: 0, count: sets.count)
            for _ in 0..<total {
                var pick = -1
                var best = UInt64.max
                for s in 0..<sets.count where heads[s] < sets[s].count {
                    let t = sets[s].timestamps[heads[s]]
                    if pick < 0 || t < best {
                        pick = s
                        best = t
                    }
                }
                order.append((pick, heads[pick]))
                heads[pick] += 1
            }
        } else {
            var keyed: [(UInt64, Int, Int)] = []
            keyed.reserveCapacity(total)
            for (s, set) in sets.enumerated() {
                for i in 0..<set.count { keyed.append((set.timestamps[i], s, i)) }
            }
            keyed.sort { ($0.0, $0.1, $0.2) < ($1.0, $1.1, $1.2) }
            for (_, s, i) in keyed { order.append((s, i)) }
        }
        return gather(sets, order)
    }

    /// The packets `order` names, in that order. Each set is walked once in its own order
    /// (sequential reads, each array pinned once per set), writing where `order` puts them.
    static func gather(_ sets: [PacketSet], _ order: [(set: Int, index: Int)]) -> PacketSet {
        let n = order.count
        // first[s]: where set s's packets start in a flat numbering; dest: output position
        // of each packet in that numbering.
        var first = [Int](repeating: 0, count: sets.count + 1)
        for s in 0..<sets.count { first[s + 1] = first[s] + sets[s].count }
        var dest = [Int](repeating: 0, count: n)
        for j in 0..<n { dest[first[order[j].set] + order[j].index] = j }
        var lengths = [UInt16](repeating: 0, count: n)
        var ports = [UInt16](repeating: 0, count: n)
        var timestamps = [UInt64](repeating: 0, count: n)
        for (s, set) in sets.enumerated() {
            for i in 0..<set.count {
                let j = dest[first[s] + i]
                lengths[j] = set.lengths[i]
                ports[j] = set.ports[i]
                timestamps[j] = set.timestamps[i]
            }
        }
        var offsets = [Int](repeating: 0, count: n)
        var total = 0
        for j in 0..<n {
            offsets[j] = total
            total += Int(lengths[j])
        }
        var out = PacketSet()
        out.bytes = [UInt8](unsafeUninitializedCapacity: total) { dst, count in
            var copied = 0
            for (s, set) in sets.enumerated() {
                set.bytes.withUnsafeBufferPointer { src in
                    for i in 0..<set.count {
                        let j = dest[first[s] + i]
                        let len = Int(lengths[j])
                        if len == 0 { continue }
                        // Safe: offsets[j] + len <= total by construction, and packet i of the
                        // set lies inside its bytes (append keeps offsets and lengths consistent).
                        (dst.baseAddress! + offsets[j]).initialize(from: src.baseAddress! + set.offsets[i], count: len)
                        copied += len
                    }
                }
            }
            precondition(copied == total)
            count = total
        }
        out.offsets = offsets
        out.lengths = lengths
        out.ports = ports
        out.timestamps = timestamps
        return out
    }
}
