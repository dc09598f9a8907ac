import Testing

@testable import VRouterCore

/// PacketSet.merged against the obvious definition: a stable sort of every (set, packet) by
/// timestamp, whichever of its paths (as-is, linear merge, sort) it takes.
@Suite struct PacketSetTests {
    /// A set of `count` packets whose bytes name their set and index; timestamps from `ts`.
    static func make(_ tag: UInt8, _ count: Int, ts: (Int) -> UInt64) -> PacketSet {
        var s = PacketSet()
        for i in 0..<count {
            let len = 1 + (i * 7 + Int(tag)) % 90
            let bytes = (0..<len).map { UInt8(truncatingIfNeeded: $0 == 0 ? Int(tag) : i &+ $0) }
            s.append(bytes, port: UInt16(tag) * 10, timestamp: ts(i))
        }
        return s
    }

    static func reference(_ sets: [PacketSet]) -> [(bytes: [UInt8], port: UInt16, ts: UInt64)] {
        var all: [(UInt64, Int, Int)] = []
        for (s, set) in sets.enumerated() { for i in 0..<set.count { all.append((set.timestamps[i], s, i)) } }
        all.sort { ($0.0, $0.1, $0.2) < ($1.0, $1.1, $1.2) }
        return all.map { (sets[$0.1].packet($0.2), sets[$0.1].ports[$0.2], $0.0) }
    }

    static func check(_ sets: [PacketSet]) {
        let m = PacketSet.merged(sets)
        let want = reference(sets)
        #expect(m.count == want.count)
        #expect(m.bytes.count == sets.reduce(0) { $0 + $1.bytes.count })
        for k in 0..<min(m.count, want.count) {
            #expect(m.packet(k) == want[k].bytes, "packet \(k)")
            #expect(m.ports[k] == want[k].port)
            #expect(m.timestamps[k] == want[k].ts)
        }
        // Offsets are back to back, as append lays them out.
        for k in 1..<max(m.count, 1) { #expect(m.offsets[k] == m.offsets[k - 1] + Int(m.lengths[k - 1])) }
    }

    @Test func oneOrderedSetComesBackAsItIs() {
        let a = Self.make(1, 50) { UInt64($0 / 3) }
        #expect(a.isTimeOrdered)
        let m = PacketSet.merged([a])
        #expect(m.bytes == a.bytes && m.offsets == a.offsets && m.timestamps == a.timestamps && m.ports == a.ports)
    }

    @Test func orderedSetsInterleaveStablyWithTiesInSetOrder() {
        // Equal timestamps across sets: set 0 first, then 1, then 2.
        Self.check([
            Self.make(1, 40) { UInt64($0 * 2) }, Self.make(2, 33) { UInt64($0 * 3) },
            Self.make(3, 7) { UInt64($0 * 2) }, PacketSet(),
        ])
    }

    @Test func unorderedSetsAreSorted() {
        let shuffled = Self.make(4, 60) { UInt64(($0 * 37) % 23) }
        #expect(!shuffled.isTimeOrdered)
        Self.check([shuffled])
        Self.check([Self.make(5, 20) { UInt64($0) }, shuffled])
    }

    @Test func manySetsTakeTheSortPath() {
        Self.check((0..<20).map { t in Self.make(UInt8(t), 5 + t) { UInt64($0 * (t + 1)) } })
    }

    @Test func emptyInputs() {
        #expect(PacketSet.merged([]).isEmpty)
        #expect(PacketSet.merged([PacketSet(), PacketSet()]).isEmpty)
    }
}
