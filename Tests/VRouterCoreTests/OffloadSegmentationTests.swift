// Segmentation of superframes: plain (toward a port without offloads), fused with the
// tunnel encapsulation (one buffer per segment), and as UDP GSO trains. Expected segments
// are assembled by hand (OffloadTestSupport) with the reference checksum; the scapy suite
// checks the same outputs against scapy.

import Testing

@testable import VRouterCore

@Suite struct OffloadSegmentationTests {
    static let mss = 1448

    /// The segments the kernel's GSO makes of `spec`'s superframe, assembled by hand.
    static func expected(_ spec: TCPSpec, mss: Int = mss, udp: Bool = false) -> [[UInt8]] {
        let n = (spec.payload.count + mss - 1) / mss
        return (0..<n).map { k in
            var s = spec
            s.payload = Array(spec.payload[(k * mss)..<min(spec.payload.count, (k + 1) * mss)])
            s.id = spec.id &+ UInt16(k)
            if udp { return s.udpFrame(partial: false) }
            s.seq = spec.seq &+ UInt32(k * mss)
            if k != n - 1 { s.flags &= ~0x09 }  // FIN, PSH: last only
            if k != 0 { s.flags &= ~0x80 }  // CWR: first only
            return s.frame(partial: false)
        }
    }

    static func segments(_ pool: PacketPool, _ bytes: [UInt8], gsoType: UInt8, mss: Int = mss) throws -> [[UInt8]] {
        let idx = pool.superframe(bytes, gsoType: gsoType, gsoSize: mss)
        let sf = try #require(Superframe.parse(pool: pool, idx))
        var out = Frame.allocate(capacity: 256)
        defer { out.deallocate() }
        let r = Segmentation.segment(pool: pool, idx, sf, into: &out)
        #expect(r == nil)
        let result = (0..<out.count).map { pool.array(out[$0]) }
        pool.free(&out)
        return result
    }

    @Test func aTCPv4SuperframeBecomesMSSSegments() throws {
        try withBigPool { pool in
            var spec = TCPSpec()
            spec.payload = pattern(64_000)
            spec.flags = 0x80 | 0x18 | 0x01  // CWR ACK PSH FIN
            let before = pool.available
            let bigBefore = pool.bigAvailable
            let segs = try Self.segments(pool, spec.frame(), gsoType: VirtioNet.gsoTCPv4)
            let want = Self.expected(spec)
            #expect(segs.count == 45)
            #expect(segs.count == want.count)
            for (k, (got, exp)) in zip(segs, want).enumerated() {
                expectSameBytes(got, exp, "segment \(k) of \(segs.count)")
            }
            // Every buffer came back, the superframe's too.
            #expect(pool.available == before && pool.bigAvailable == bigBefore)
        }
    }

    @Test func aTCPv6SuperframeBecomesMSSSegments() throws {
        try withBigPool { pool in
            var spec = TCPSpec()
            spec.v6 = true
            spec.payload = pattern(30_001)
            let segs = try Self.segments(pool, spec.frame(), gsoType: VirtioNet.gsoTCPv6, mss: 1428)
            let want = Self.expected(spec, mss: 1428)
            #expect(segs.count == want.count)
            for (k, (got, exp)) in zip(segs, want).enumerated() { expectSameBytes(got, exp, "segment \(k)") }
        }
    }

    @Test func aUDPSuperframeBecomesDatagrams() throws {
        try withBigPool { pool in
            for v6 in [false, true] {
                var spec = TCPSpec()
                spec.v6 = v6
                spec.payload = pattern(20_000, seed: 3)
                let segs = try Self.segments(pool, spec.udpFrame(), gsoType: VirtioNet.gsoUDPL4, mss: 1200)
                #expect(segs.count == 17)
                for (k, (got, exp)) in zip(segs, Self.expected(spec, mss: 1200, udp: true)).enumerated() {
                    expectSameBytes(got, exp, "v6 \(v6) datagram \(k)")
                }
            }
        }
    }

    @Test func superframesWhoseMetadataDisagreeAreRefused() {
        withBigPool { pool in
            var spec = TCPSpec()
            spec.payload = pattern(5000)
            let v4 = spec.frame()
            // TCPv6 GSO on an IPv4 packet, UDP GSO on TCP, no segment size.
            for (type, size) in [(VirtioNet.gsoTCPv6, 1448), (VirtioNet.gsoUDPL4, 1448), (VirtioNet.gsoTCPv4, 0)] {
                let idx = pool.superframe(v4, gsoType: type, gsoSize: size)
                #expect(Superframe.parse(pool: pool, idx) == nil, "\(type) \(size)")
                pool.free(idx)
            }
            // Headers only, no payload.
            spec.payload = []
            let idx = pool.superframe(spec.frame(), gsoType: VirtioNet.gsoTCPv4, gsoSize: 1448)
            #expect(Superframe.parse(pool: pool, idx) == nil)
            pool.free(idx)
        }
    }

    @Test func segmentationFailsCleanlyWithoutRoom() throws {
        try withBigPool(count: 20) { pool in
            var spec = TCPSpec()
            spec.payload = pattern(64_000)
            let idx = pool.superframe(spec.frame(), gsoType: VirtioNet.gsoTCPv4, gsoSize: Self.mss)
            let sf = try #require(Superframe.parse(pool: pool, idx))
            var out = Frame.allocate(capacity: 256)
            defer { out.deallocate() }
            let free = pool.available
            #expect(Segmentation.segment(pool: pool, idx, sf, into: &out) == .noMemory)
            #expect(out.count == 0 && pool.available == free)
            var small = Frame.allocate(capacity: 10)
            defer { small.deallocate() }
            #expect(Segmentation.segment(pool: pool, idx, sf, into: &small) == .txQueueFull)
            #expect(small.count == 0 && pool.available == free)
            pool.free(idx)
        }
    }

    // MARK: fused with the tunnel

    static let outerSrcMAC = MACAddress(0x0200_0000_0001)
    static let outerDstMAC = MACAddress(0x0200_0000_0002)

    static func vxlanTemplate(innerEthernet: Bool) -> TunnelTemplate {
        VXLANEncap.template(
            sourceMAC: outerSrcMAC,
            destinationMAC: outerDstMAC,
            source: T.v4(T.ul1),
            destination: T.v4(T.ul2),
            innerEthernet: innerEthernet ? (destination: MACAddress(0x0200_0000_0e01), source: .vrouter) : nil
        )
    }

    static let mplsTemplate = MPLSoUDPEncap.template(
        sourceMAC: outerSrcMAC,
        destinationMAC: outerDstMAC,
        source: T.v4(T.ul1),
        destination: T.v4(T.ul2)
    )

    /// The outer headers `TunnelTemplate.apply` puts in front of `inner`, for comparison.
    static func encapsulated(_ t: TunnelTemplate, _ inner: [UInt8], id: UInt16, sport: UInt16, tag: UInt32) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: t.headerLength + inner.count)
        out.withUnsafeMutableBytes { b in
            let p = b.baseAddress! + t.headerLength
            inner.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: inner.count) }
            _ = t.apply(to: p, innerLength: inner.count, sourcePort: sport, labelOrVNI: tag, identification: id)
        }
        return out
    }

    enum Kind: CaseIterable { case vxlanTemplateEthernet, vxlanWrittenEthernet, mpls }

    static func tunnel(_ kind: Kind, _ template: UnsafePointer<TunnelTemplate>) -> SegmentTunnel {
        switch kind {
        case .vxlanTemplateEthernet:
            SegmentTunnel(template: template, labelOrVNI: 1001, sourcePort: 0xC123, templateHasInnerEthernet: true)
        case .vxlanWrittenEthernet:
            SegmentTunnel(
                template: template,
                labelOrVNI: 1001,
                sourcePort: 0xC123,
                writesInnerEthernet: true,
                innerDestinationMAC: 0x0200_0000_0e01,
                innerSourceMAC: MACAddress.vrouter.value
            )
        case .mpls: SegmentTunnel(template: template, labelOrVNI: 200, sourcePort: 0xC123)
        }
    }

    static func template(_ kind: Kind) -> TunnelTemplate {
        switch kind {
        case .vxlanTemplateEthernet: vxlanTemplate(innerEthernet: true)
        case .vxlanWrittenEthernet: vxlanTemplate(innerEthernet: false)
        case .mpls: mplsTemplate
        }
    }

    /// What each encapsulated segment must be: the plain segment's IP packet, behind the
    /// inner Ethernet header (VXLAN) and the outer headers, outer ids counting up.
    static func expectedTunnel(_ kind: Kind, _ plain: [[UInt8]], firstID: UInt16, v6: Bool = false) -> [[UInt8]] {
        let t = template(kind)
        let innerEth = hex("02 00 00 00 0e 01") + T.vrouterMAC + (v6 ? [0x86, 0xDD] : [0x08, 0x00])
        return plain.enumerated().map { k, seg in
            let ip = Array(seg[14...])
            switch kind {
            case .vxlanTemplateEthernet:
                // The template holds the inner Ethernet; apply it to the IP packet.
                var e = encapsulated(t, ip, id: firstID &+ UInt16(k), sport: 0xC123, tag: 1001)
                if v6 {
                    e[t.headerLength - 2] = 0x86
                    e[t.headerLength - 1] = 0xDD
                }
                return e
            case .vxlanWrittenEthernet:
                return encapsulated(t, innerEth + ip, id: firstID &+ UInt16(k), sport: 0xC123, tag: 1001)
            case .mpls:
                return encapsulated(t, ip, id: firstID &+ UInt16(k), sport: 0xC123, tag: 200)
            }
        }
    }

    @Test(arguments: Kind.allCases, [false, true])
    func segmentationFusedWithTheTunnelMatchesSegmentThenEncapsulate(_ kind: Kind, _ v6: Bool) throws {
        try withBigPool { pool in
            var spec = TCPSpec()
            spec.v6 = v6
            spec.payload = pattern(64_000)
            let plain = Self.expected(spec, mss: 1398)
            var t = Self.template(kind)
            let idx = pool.superframe(
                spec.frame(),
                gsoType: v6 ? VirtioNet.gsoTCPv6 : VirtioNet.gsoTCPv4,
                gsoSize: 1398
            )
            let sf = try #require(Superframe.parse(pool: pool, idx))
            var out = Frame.allocate(capacity: 256)
            defer { out.deallocate() }
            var id: UInt16 = 0xFFFE
            let r = withUnsafePointer(to: &t) { tp in
                Segmentation.segmentAndEncapsulate(
                    pool: pool,
                    idx,
                    sf,
                    Self.tunnel(kind, tp),
                    identification: &id,
                    into: &out
                )
            }
            #expect(r == nil)
            #expect(out.count == plain.count && id == 0xFFFE &+ UInt16(plain.count))
            let want = Self.expectedTunnel(kind, plain, firstID: 0xFFFF, v6: v6)
            for k in 0..<min(out.count, want.count) {
                expectSameBytes(pool.array(out[k]), want[k], "\(kind) segment \(k)")
                // Metadata points at the inner headers, offload cleared.
                let m = pool.meta(out[k])
                let frame = pool.array(out[k])
                #expect(Int(m.pointee.l3) - Int(m.pointee.offset) == frame.count - plain[k].count + 14)
                #expect(m.pointee.offload == PacketOffload())
            }
            pool.free(&out)
        }
    }

    /// A train cut by `UDPTrain.split` (what a receiving vRouter does, and what the
    /// kernel's UDP segmentation does on the way out) gives exactly the datagrams of the
    /// one-buffer-per-segment tunnel mode; and each datagram's outer UDP checksum, completed
    /// the kernel's way from the train's partial one, verifies.
    @Test(arguments: Kind.allCases)
    func aTrainCutIntoDatagramsIsTheTunnelMode(_ kind: Kind) throws {
        try withBigPool { pool in
            var spec = TCPSpec()
            spec.payload = pattern(64_000)
            var t = Self.template(kind)
            let plain = Self.expected(spec, mss: 1398)
            let want = Self.expectedTunnel(kind, plain, firstID: 7)
            let idx = pool.superframe(spec.frame(), gsoType: VirtioNet.gsoTCPv4, gsoSize: 1398)
            let sf = try #require(Superframe.parse(pool: pool, idx))
            var trains = Frame.allocate(capacity: 8)
            defer { trains.deallocate() }
            var id: UInt16 = 6
            let r = withUnsafePointer(to: &t) { tp in
                Segmentation.segmentIntoTrains(
                    pool: pool,
                    idx,
                    sf,
                    Self.tunnel(kind, tp),
                    identification: &id,
                    into: &trains
                )
            }
            #expect(r == nil)
            #expect(id == 6 &+ UInt16(plain.count))
            // 46 datagrams of up to 1398 + 40 + 32 + VXLAN/MPLS bytes: two trains.
            #expect(trains.count == 2)
            var datagrams: [[UInt8]] = []
            for j in 0..<trains.count {
                let m = pool.meta(trains[j])
                let o = m.pointee.offload
                #expect(o.gsoType == VirtioNet.gsoUDPL4 && o.flags == PacketOffload.needsChecksum)
                #expect(o.checksumOffset == 6)
                let train = pool.array(trains[j])
                let udp = Int(o.checksumStart) - Int(m.pointee.offset)
                #expect(train.count <= 0xFFFF)
                #expect(be16(train, udp + 2) == 4789 || be16(train, udp + 2) == 6635)
                let payload = train.count - udp - 8
                #expect((payload + Int(o.gsoSize) - 1) / Int(o.gsoSize) <= Segmentation.maxTrainSegments)
                // The partial checksum is the pseudo-header sum over the train's UDP length.
                let ps = pseudo4(T.ul1, T.ul2, proto: 17, length: Int(be16(train, udp + 4)))
                #expect(be16(train, udp + 6) == ~refChecksum(ps))
                let shape = try #require(
                    train.withUnsafeBytes {
                        UDPTrain.shape($0.baseAddress!, length: train.count, segmentSize: Int(o.gsoSize))
                    }
                )
                var out = Frame.allocate(capacity: 128)
                defer { out.deallocate() }
                let ok = train.withUnsafeBytes { b in
                    withUnsafeMutablePointer(to: &out) { f in
                        UDPTrain.split(
                            b.baseAddress!,
                            length: train.count,
                            l3: shape.l3,
                            l4: shape.l4,
                            count: shape.count,
                            segmentSize: Int(o.gsoSize),
                            pool: pool,
                            into: f
                        )
                    }
                }
                #expect(ok)
                for k in 0..<out.count {
                    var d = pool.array(out[k])
                    datagrams.append(d)
                    // The kernel's way: old partial - old length + new length, then the sum
                    // of the datagram's UDP header and payload.
                    let newLength = d.count - udp
                    var partial = UInt32(be16(train, udp + 6)) + UInt32(~be16(train, udp + 4)) + UInt32(newLength)
                    while partial >> 16 != 0 { partial = (partial & 0xFFFF) + (partial >> 16) }
                    d[udp + 6] = UInt8(partial >> 8)
                    d[udp + 7] = UInt8(partial & 0xFF)
                    let c = refChecksum(Array(d[udp...]))
                    d[udp + 6] = UInt8(c >> 8)
                    d[udp + 7] = UInt8(c & 0xFF)
                    #expect(
                        refVerifies(Array(d[udp...]), pseudo: pseudo4(T.ul1, T.ul2, proto: 17, length: newLength)),
                        "datagram \(k)"
                    )
                }
                pool.free(&out)
            }
            pool.free(&trains)
            #expect(datagrams.count == want.count)
            for k in 0..<min(datagrams.count, want.count) {
                expectSameBytes(datagrams[k], want[k], "\(kind) datagram \(k)")
            }
        }
    }

    @Test func partialChecksumsAreCompleted() {
        var spec = TCPSpec()
        spec.payload = pattern(999)
        var partial = spec.frame(partial: true)
        let full = spec.frame(partial: false)
        #expect(partial != full)
        partial.withUnsafeMutableBytes { b in
            Checksum.complete(b.baseAddress!, start: 34, offset: 16, end: b.count, udp: false)
        }
        #expect(partial == full)
        var u = spec.udpFrame(partial: true)
        u.withUnsafeMutableBytes { b in Checksum.complete(b.baseAddress!, start: 34, offset: 6, end: b.count, udp: true)
        }
        #expect(u == spec.udpFrame(partial: false))
    }

    @Test func copyAndSumAgreesWithSumAtEveryLengthAndAlignment() {
        let src = pattern(300, seed: 11)
        for start in 0..<9 {
            for n in 0..<(300 - start) where n < 40 || n % 17 == 0 {
                var dst = [UInt8](repeating: 0, count: 300)
                let (s, ref) = src.withUnsafeBytes { sb in
                    dst.withUnsafeMutableBytes { db in
                        (
                            Checksum.copyAndSum(db.baseAddress!, sb.baseAddress! + start, count: n),
                            Checksum.sum(sb.baseAddress! + start, count: n)
                        )
                    }
                }
                #expect(s == ref, "start \(start) count \(n)")
                #expect(Array(dst[0..<n]) == Array(src[start..<(start + n)]))
            }
        }
    }

    @Test func virtioNetHeadersRoundTrip() {
        withBigPool { pool in
            let idx = pool.alloc()!
            let m = pool.meta(idx)
            m.pointee.length = 3000
            let h = VirtioNet.Header(
                flags: VirtioNet.needsChecksum,
                gsoType: VirtioNet.gsoTCPv4,
                headerLength: 66,
                gsoSize: 1448,
                checksumStart: 34,
                checksumOffset: 16
            )
            var raw = [UInt8](repeating: 0xEE, count: 12)
            raw.withUnsafeMutableBytes { h.write(to: $0.baseAddress!) }
            #expect(raw == [1, 1, 66, 0, 0xA8, 0x05, 34, 0, 16, 0, 0xEE, 0xEE])
            let back = raw.withUnsafeBytes { VirtioNet.Header(reading: $0.baseAddress!) }
            #expect(back == h)
            #expect(VirtioNet.record(back, in: m))
            #expect(m.pointee.offload.checksumStart == UInt16(PacketPool.headroom + 34))
            #expect(m.pointee.offload.gsoSize == 1448)
            // Written back for a frame whose TCP header is 32 bytes: the same header.
            let out = VirtioNet.header(for: m, l4Length: 32)
            #expect(out == h)
            // Refused: UFO, GSO without a partial checksum, a checksum past the end.
            #expect(
                !VirtioNet.record(
                    VirtioNet.Header(
                        flags: 1,
                        gsoType: VirtioNet.gsoUDP,
                        gsoSize: 1000,
                        checksumStart: 34,
                        checksumOffset: 6
                    ),
                    in: m
                )
            )
            #expect(!VirtioNet.record(VirtioNet.Header(gsoType: VirtioNet.gsoTCPv4, gsoSize: 1448), in: m))
            #expect(!VirtioNet.record(VirtioNet.Header(flags: 1, checksumStart: 2990, checksumOffset: 16), in: m))
            pool.free(idx)
        }
    }

    @Test func bigBuffersAreASecondClassOfThePool() {
        withBigPool(count: 64, big: 3) { pool in
            #expect(pool.bigMaxFrameLength >= 0xFFFF)
            let a = pool.allocBig()!
            let b = pool.allocBig()!
            let c = pool.allocBig()!
            #expect(pool.allocBig() == nil)
            #expect([a, b, c].allSatisfy { pool.isBig($0) && pool.capacity($0) == pool.bigSpan * pool.stride })
            // Contiguous and disjoint: each big buffer's bytes end where the next begins.
            let sorted = [a, b, c].sorted()
            #expect(pool.buffer(sorted[1]) - pool.buffer(sorted[0]) == pool.bigSpan * pool.stride)
            pool.buffer(a).initializeMemory(as: UInt8.self, repeating: 0xAB, count: pool.capacity(a))
            #expect(pool.buffer(b).load(as: UInt8.self) != 0xAB || sorted[0] == a)
            let small = pool.alloc()!
            #expect(!pool.isBig(small))
            #expect(pool.alloc(forLength: 1900).map { !pool.isBig($0) } == true)
            let viaLength = pool.alloc(forLength: 9000)
            #expect(viaLength == nil)  // no big buffer left
            pool.free(a)
            #expect(pool.alloc(forLength: 9000) == a)
            pool.free(a)
            pool.free(b)
            pool.free(c)
            pool.free(small)
            #expect(pool.bigAvailable == 3)
            #expect(pool.regionLength == (64 + 3 * pool.bigSpan) * pool.stride)
        }
    }
}
