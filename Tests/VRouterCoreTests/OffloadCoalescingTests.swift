// GRO within a frame: N in-order segments of one flow toward a port that takes
// superframes become one (exactly the superframe they were cut from), and every case the
// rules exclude stays apart.

import Testing

@testable import VRouterCore

@Suite struct OffloadCoalescingTests {
    /// Port 1 takes superframes, port 2 does not; port 3 is a fabric with offloads.
    static let ports: [PortEntry] = [
        .absent,
        PortEntry(kind: .pod, flags: [.up, .offloads], vrf: 1, mtu: 1500, vlan: 0, mac: 0, ipv4: 0, ipv6: 0),
        PortEntry(kind: .pod, flags: [.up], vrf: 1, mtu: 1500, vlan: 0, mac: 0, ipv4: 0, ipv6: 0),
        PortEntry(kind: .fabric, flags: [.up, .offloads], vrf: 0, mtu: 1500, vlan: 0, mac: 0, ipv4: 0, ipv6: 0),
    ]

    /// Segment `k` of a flow: `size` payload bytes at seq base + k × `size` (unless
    /// `payloadOffset` says where), as the rewrite leaves it (complete checksums).
    static func segment(
        _ base: TCPSpec,
        _ k: Int,
        size: Int = 1000,
        payloadOffset: Int? = nil,
        _ change: (inout TCPSpec) -> Void = { _ in }
    ) -> TCPSpec {
        var s = base
        let at = payloadOffset ?? k * size
        s.payload = Array(base.payload[at..<(at + size)])
        s.seq = base.seq &+ UInt32(at)
        s.id = base.id &+ UInt16(k)
        change(&s)
        return s
    }

    /// Loads the specs as packets bound for `txPort` and coalesces them; returns the
    /// frames out (bytes and offload state) and how many merged.
    static func run(
        _ pool: PacketPool,
        _ specs: [TCPSpec],
        txPort: UInt16 = 1,
        corrupt: Set<Int> = []
    ) -> (frames: [[UInt8]], offloads: [PacketOffload], merged: Int) {
        var frame = Frame.allocate(capacity: 256)
        defer { frame.deallocate() }
        for (i, s) in specs.enumerated() {
            var bytes = s.frame(partial: false)
            if corrupt.contains(i) { bytes[bytes.count - 1] ^= 0xFF }
            let idx = pool.superframe(bytes, gsoType: 0, gsoSize: 0, partial: false, big: false)
            let m = pool.meta(idx)
            m.pointee.txPort = txPort
            m.pointee.hash = UInt32(s.sport) << 16 | UInt32(s.dport)
            frame.append(idx)
        }
        var c = TCPCoalescer()
        let merged = Self.ports.withUnsafeBufferPointer {
            c.coalesce(pool: pool, &frame, ports: $0.baseAddress!, portCount: $0.count)
        }
        let out = (0..<frame.count).map { pool.array(frame[$0]) }
        let offloads = (0..<frame.count).map { pool.meta(frame[$0]).pointee.offload }
        pool.free(&frame)
        return (out, offloads, merged)
    }

    static func payloadSizes(_ frames: [[UInt8]]) -> [Int] {
        frames.map { f in
            let v4 = f[14] >> 4 == 4
            let l4 = 14 + (v4 ? Int(f[14] & 0x0F) * 4 : 40)
            return f.count - l4 - Int(f[l4 + 12] >> 4) * 4
        }
    }

    @Test(arguments: [false, true])
    func segmentsOfOneFlowBecomeTheirSuperframe(_ v6: Bool) throws {
        try withBigPool { pool in
            var spec = TCPSpec()
            spec.v6 = v6
            spec.payload = pattern(45 * 1448)
            spec.flags = 0x18
            let segs = OffloadSegmentationTests.expected(spec)
            let small = pool.available
            let big = pool.bigAvailable
            var frame = Frame.allocate(capacity: 256)
            defer { frame.deallocate() }
            for s in segs {
                let idx = pool.superframe(s, gsoType: 0, gsoSize: 0, partial: false, big: false)
                pool.meta(idx).pointee.txPort = 1
                pool.meta(idx).pointee.hash = 42
                frame.append(idx)
            }
            var c = TCPCoalescer()
            let merged = Self.ports.withUnsafeBufferPointer {
                c.coalesce(pool: pool, &frame, ports: $0.baseAddress!, portCount: $0.count)
            }
            #expect(merged == 44 && frame.count == 1)
            // Exactly the superframe the segments were cut from: lengths, first id, ACK|PSH,
            // the pseudo-header sum in the checksum field.
            expectSameBytes(pool.array(frame[0]), spec.frame(partial: true), "superframe")
            let o = pool.meta(frame[0]).pointee.offload
            #expect(o.gsoType == (v6 ? VirtioNet.gsoTCPv6 : VirtioNet.gsoTCPv4) && o.gsoSize == 1448)
            #expect(o.flags == PacketOffload.needsChecksum && o.checksumOffset == 16)
            #expect(Int(o.checksumStart) == Int(pool.meta(frame[0]).pointee.l4))
            // And segmenting it again gives the segments back.
            let sf = try #require(Superframe.parse(pool: pool, frame[0]))
            var again = Frame.allocate(capacity: 256)
            defer { again.deallocate() }
            #expect(Segmentation.segment(pool: pool, frame[0], sf, into: &again) == nil)
            #expect(again.count == segs.count)
            for k in 0..<min(again.count, segs.count) { expectSameBytes(pool.array(again[k]), segs[k], "segment \(k)") }
            pool.free(&again)
            #expect(pool.available == small && pool.bigAvailable == big)
        }
    }

    @Test func superframesStayWithin64KB() {
        withBigPool { pool in
            var spec = TCPSpec()
            spec.payload = pattern(50 * 1448)
            spec.flags = 0x10
            let specs = (0..<50).map { Self.segment(spec, $0, size: 1448) }
            let r = Self.run(pool, specs)
            // 45 × 1448 + 52 bytes of headers fit 65535; the 46th would not.
            #expect(Self.payloadSizes(r.frames) == [45 * 1448, 5 * 1448])
            #expect(r.merged == 48)
        }
    }

    /// Four segments of 1000 bytes, the third changed: it must stay apart.
    static func caseWith(_ change: @escaping (inout TCPSpec) -> Void) -> [TCPSpec] {
        var spec = TCPSpec()
        spec.payload = pattern(5000)
        spec.flags = 0x10
        return (0..<4).map { k in Self.segment(spec, k, k == 2 ? change : { _ in }) }
    }

    @Test func segmentsThatBreakARuleStayApart() {
        withBigPool { pool in
            let apart = [2000, 1000, 1000]
            let cases: [(String, [TCPSpec], [Int])] = [
                ("sequence gap", Self.caseWith { $0.seq &+= 1 }, apart),
                ("other TTL", Self.caseWith { $0.ttl = 63 }, apart),
                ("other TOS", Self.caseWith { $0.tos = 0x10 }, apart),
                ("DF clear", Self.caseWith { $0.ipFlags = 0 }, apart),
                ("other timestamp", Self.caseWith { $0.options[11] &+= 1 }, apart),
                ("other ACK", Self.caseWith { $0.ack &+= 1 }, apart),
                ("other window", Self.caseWith { $0.window &+= 1 }, apart),
                ("other destination", Self.caseWith { $0.dst4 = T.ip4Gw }, apart),
                // Flags other than ACK/PSH: passed on as they are, and what was open for
                // the flow goes out first.
                ("FIN", Self.caseWith { $0.flags |= 0x01 }, apart),
                ("SYN", Self.caseWith { $0.flags |= 0x02 }, apart),
                ("RST", Self.caseWith { $0.flags |= 0x04 }, apart),
                ("URG", Self.caseWith { $0.flags |= 0x20 }, apart),
                ("ECE", Self.caseWith { $0.flags |= 0x40 }, apart),
                ("CWR", Self.caseWith { $0.flags |= 0x80 }, apart),
                ("no ACK", Self.caseWith { $0.flags = 0 }, apart),
                // PSH ends a superframe: the third joins, the fourth starts anew.
                ("PSH", Self.caseWith { $0.flags |= 0x08 }, [3000, 1000]),
            ]
            for (name, specs, sizes) in cases {
                let r = Self.run(pool, specs)
                #expect(Self.payloadSizes(r.frames) == sizes, "\(name): \(r.merged)")
            }
            // Another flow (its own hash) in between: both flows coalesce.
            var spec = TCPSpec()
            spec.payload = pattern(5000)
            spec.flags = 0x10
            var other = spec
            other.sport = 1
            let mixed = [
                Self.segment(spec, 0), Self.segment(other, 0), Self.segment(spec, 1), Self.segment(other, 1),
                Self.segment(spec, 2),
            ]
            #expect(Self.payloadSizes(Self.run(pool, mixed).frames) == [3000, 2000])
            // Three flows open, the middle one ended by a pure ACK: the other two go on
            // coalescing, the first one's merged segments included.
            var third = spec
            third.sport = 2
            let three = [
                Self.segment(spec, 0), Self.segment(spec, 1), Self.segment(other, 0), Self.segment(third, 0),
                Self.segment(other, 1, size: 0, payloadOffset: 1000), Self.segment(third, 1), Self.segment(spec, 2),
            ]
            let r = Self.run(pool, three)
            #expect(Self.payloadSizes(r.frames) == [3000, 1000, 2000, 0] && r.merged == 3)
            expectSameBytes(r.frames.first ?? [], Self.segment(spec, 0, size: 3000).frame(partial: true), "first flow")
            // The changed segment comes out unchanged.
            let gap = Self.caseWith { $0.seq &+= 1 }
            expectSameBytes(Self.run(pool, gap).frames[1], gap[2].frame(partial: false), "the changed segment")
        }
    }

    @Test func shorterSegmentsEndASuperframe() {
        withBigPool { pool in
            var spec = TCPSpec()
            spec.payload = pattern(5000)
            spec.flags = 0x10
            // 1000, 500 (the last one may be short), 1000, 1000: the third cannot follow.
            let specs = [
                Self.segment(spec, 0),
                Self.segment(spec, 1, size: 500, payloadOffset: 1000),
                Self.segment(spec, 2, payloadOffset: 1500),
                Self.segment(spec, 3, payloadOffset: 2500),
            ]
            #expect(Self.payloadSizes(Self.run(pool, specs).frames) == [1500, 2000])
            // A bigger one after the first: apart.
            let grow = [
                Self.segment(spec, 0, size: 500),
                Self.segment(spec, 1, payloadOffset: 500),
            ]
            #expect(Self.payloadSizes(Self.run(pool, grow).frames) == [500, 1000])
        }
    }

    @Test func badChecksumsArePassedOnNotCoalesced() {
        withBigPool { pool in
            let specs = Self.caseWith { _ in }
            let r = Self.run(pool, specs, corrupt: [2])
            #expect(Self.payloadSizes(r.frames) == [2000, 1000, 1000])
            var bad = specs[2].frame(partial: false)
            bad[bad.count - 1] ^= 0xFF
            expectSameBytes(r.frames[1], bad, "the bad segment")
            // A bad head: nothing joins it.
            #expect(Self.payloadSizes(Self.run(pool, specs, corrupt: [0]).frames) == [1000, 3000])
        }
    }

    @Test func onlyPortsThatTakeSuperframesGetThem() {
        withBigPool { pool in
            let specs = Self.caseWith { _ in }
            #expect(Self.run(pool, specs, txPort: 2).frames.count == 4)
            #expect(Self.run(pool, specs, txPort: 9).frames.count == 4)  // unknown port
            #expect(Self.run(pool, specs, txPort: 1).frames.count == 1)
            // The fabric takes trains, but GRO is for pods: translated or IP-fabric TCP
            // toward the world leaves as the pod sent it.
            #expect(Self.run(pool, specs, txPort: 3).frames.count == 4)
        }
    }

    /// Segments toward the fabric take no open-flow slot: eight of them between two
    /// segments of a pod's flow do not push that flow out (with eight slots they did).
    @Test func theFabricsPacketsDoNotCrowdOutAPodsFlow() {
        withBigPool { pool in
            var spec = TCPSpec()
            spec.payload = pattern(2000)
            spec.flags = 0x10  // ACK: a segment that opens a superframe
            var frame = Frame.allocate(capacity: 16)
            defer { frame.deallocate() }
            func load(_ s: TCPSpec, _ tx: UInt16) {
                let idx = pool.superframe(s.frame(partial: false), gsoType: 0, gsoSize: 0, partial: false, big: false)
                pool.meta(idx).pointee.txPort = tx
                pool.meta(idx).pointee.hash = UInt32(s.sport) << 16 | UInt32(s.dport)
                frame.append(idx)
            }
            load(Self.segment(spec, 0), 1)
            for k in 0..<8 {
                var other = spec
                other.sport = 40000 &+ UInt16(k)
                load(Self.segment(other, 0), 3)
            }
            load(Self.segment(spec, 1), 1)
            var c = TCPCoalescer()
            let merged = Self.ports.withUnsafeBufferPointer {
                c.coalesce(pool: pool, &frame, ports: $0.baseAddress!, portCount: $0.count)
            }
            #expect(merged == 1 && frame.count == 9)
            pool.free(&frame)
        }
    }

    @Test func packetsWithIPOptionsOrExtensionHeadersAreLeftAlone() {
        withBigPool { pool in
            // IPv4 with options: load by hand (TCPSpec has none).
            var frame = Frame.allocate(capacity: 8)
            defer { frame.deallocate() }
            var spec = TCPSpec()
            spec.payload = pattern(2000)
            for k in 0..<2 {
                let s = Self.segment(spec, k)
                let t = s.tcp(partial: false)
                let bytes =
                    Frames.ethernet(dst: s.dstMAC, src: s.srcMAC, type: 0x0800)
                    + Frames.ipv4(
                        src: s.src4,
                        dst: s.dst4,
                        proto: 6,
                        payload: t.count,
                        options: [1, 1, 1, 0],
                        id: s.id
                    )
                    + t
                let idx = pool.superframe(bytes, gsoType: 0, gsoSize: 0, partial: false, big: false)
                pool.meta(idx).pointee.txPort = 1
                frame.append(idx)
            }
            var c = TCPCoalescer()
            let merged = Self.ports.withUnsafeBufferPointer {
                c.coalesce(pool: pool, &frame, ports: $0.baseAddress!, portCount: $0.count)
            }
            #expect(merged == 0 && frame.count == 2)
            pool.free(&frame)
        }
    }
}
