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

    /// Interleaves the packets of several sets by timestamp (stable), as a merged capture.
    public static func merged(_ sets: [PacketSet]) -> PacketSet {
        var order: [(UInt64, Int, Int)] = []
        for (s, set) in sets.enumerated() {
            for i in 0..<set.count { order.append((set.timestamps[i], s, i)) }
        }
        order.sort { ($0.0, $0.1, $0.2) < ($1.0, $1.1, $1.2) }
        var out = PacketSet()
        out.reserve(packets: order.count, bytes: sets.reduce(0) { $0 + $1.bytes.count })
        for (_, s, i) in order {
            sets[s].withPacket(i) { out.append($0, port: sets[s].ports[i], timestamp: sets[s].timestamps[i]) }
        }
        return out
    }
}
