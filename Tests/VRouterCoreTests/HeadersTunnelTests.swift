// VXLAN (RFC 7348 §5) and MPLS-in-UDP (RFC 7510 §3) encapsulation against golden outer
// headers, decapsulation back to the exact inner bytes, and the template's per-packet
// patches against a reference checksum over many lengths.

import Testing

@testable import VRouterCore

@Suite struct HeadersTunnelTests {
    static let outerSrcMAC = T.mac(hex("02 00 00 00 01 01"))
    static let outerDstMAC = T.mac(hex("02 00 00 00 01 02"))
    static let ul1 = T.v4(T.ul1), ul2 = T.v4(T.ul2)

    /// Ether(02:..:0b ← 02:..:0a)/IPv4(192.0.2.10 → 198.51.100.20, ID 0x1234)/UDP(40000 → 53)/18 bytes.
    static let innerFrame = hex(
        """
        02 00 00 00 00 0b 02 00 00 00 00 0a 08 00
        45 00 00 2e 12 34 00 00 40 11 7c 39 c0 00 02 0a c6 33 64 14
        9c 40 00 35 00 1a 2e a1 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11
        """
    )

    /// Puts `inner` at the standard headroom of a 2 KiB scratch buffer, applies the
    /// template, and returns the whole frame.
    func encap(_ t: TunnelTemplate, _ inner: [UInt8], sport: UInt16, tag: UInt32, id: UInt16 = 0) -> [UInt8] {
        var buf = [UInt8](repeating: 0xEE, count: 2048)
        return buf.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress! + 128
            inner.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: inner.count) }
            let start = t.apply(to: p, innerLength: inner.count, sourcePort: sport, labelOrVNI: tag, identification: id)
            #expect(start == p - t.headerLength)
            // Nothing before the outer header was touched.
            #expect(raw[127 - t.headerLength] == 0xEE)
            return Array(UnsafeRawBufferPointer(start: start, count: t.headerLength + inner.count))
        }
    }

    @Test func vxlanGolden() {
        let t = VXLANEncap.template(
            sourceMAC: Self.outerSrcMAC,
            destinationMAC: Self.outerDstMAC,
            source: Self.ul1,
            destination: Self.ul2
        )
        #expect(t.headerLength == HeaderSize.vxlanOverhead)
        let outer = hex(
            """
            02 00 00 00 01 02  02 00 00 00 01 01  08 00
            45 00 00 60  00 00 00 00  40 11 ee 65  c6 12 00 01  c6 12 00 02
            d2 34 12 b5  00 4c 00 00
            08 00 00 00  12 34 56 00
            """
        )
        // Outer IPv4: total 96 = 20 + 8 + 8 + 60, DF clear, TTL 64, UDP; UDP: sport 49152 +
        // 0x1234, dport 4789, length 76, checksum 0; VXLAN: I flag, VNI 0x123456.
        #expect(refVerifies(Array(outer[14..<34])))
        let sport = TunnelTemplate.sourcePort(hash: 0xABCD_1234)
        #expect(sport == 49152 + 0x1234)
        let frame = encap(t, Self.innerFrame, sport: sport, tag: 0x12_3456)
        #expect(frame == outer + Self.innerFrame)
    }

    @Test func vxlanTaggedGolden() {
        let t = VXLANEncap.template(
            sourceMAC: Self.outerSrcMAC,
            destinationMAC: Self.outerDstMAC,
            vlanTCI: 0xA007,
            source: Self.ul1,
            destination: Self.ul2,
            tos: 0x10
        )
        #expect(t.headerLength == 54)
        let outer = hex(
            """
            02 00 00 00 01 02  02 00 00 00 01 01  81 00 a0 07  08 00
            45 10 00 60  01 01 00 00  40 11 ed 54  c6 12 00 01  c6 12 00 02
            ff ff 12 b5  00 4c 00 00
            08 00 00 00  ff ff ff 00
            """
        )
        #expect(refVerifies(Array(outer[18..<38])))
        // VNI bits above 24 are dropped, not smeared into the reserved byte or the flags.
        let frame = encap(t, Self.innerFrame, sport: 0xFFFF, tag: 0xFFFF_FFFF, id: 0x0101)
        #expect(frame == outer + Self.innerFrame)
    }

    @Test func mplsOverUDPGolden() {
        let t = MPLSoUDPEncap.template(
            sourceMAC: Self.outerSrcMAC,
            destinationMAC: Self.outerDstMAC,
            source: Self.ul1,
            destination: Self.ul2,
            trafficClass: 5,
            mplsTTL: 63
        )
        #expect(t.headerLength == HeaderSize.mplsOverUDPOverhead)
        let innerIP = Array(Self.innerFrame[14...])
        // Outer IPv4 total 78 = 20 + 8 + 4 + 46; UDP dport 6635, length 58; MPLS label
        // 0xABCDE, TC 5, S 1, TTL 63 = ab cd eb 3f.
        let outer = hex(
            """
            02 00 00 00 01 02  02 00 00 00 01 01  08 00
            45 00 00 4e  00 00 00 00  40 11 ee 77  c6 12 00 01  c6 12 00 02
            ff ff 19 eb  00 3a 00 00
            ab cd eb 3f
            """
        )
        #expect(refVerifies(Array(outer[14..<34])))
        let sport = TunnelTemplate.sourcePort(hash: 0xFFFF_FFFF)
        #expect(sport == 0xFFFF)
        #expect(TunnelTemplate.sourcePort(hash: 0) == 49152)
        let frame = encap(t, innerIP, sport: sport, tag: 0xABCDE)
        #expect(frame == outer + innerIP)
        // Label bits above 20 are dropped.
        let frame2 = encap(t, innerIP, sport: sport, tag: 0xFFFA_BCDE)
        #expect(frame2 == outer + innerIP)
    }

    @Test func decapsulationGivesTheInnerPacketBack() {
        let vx = VXLANEncap.template(
            sourceMAC: Self.outerSrcMAC,
            destinationMAC: Self.outerDstMAC,
            vlanTCI: 5,
            source: Self.ul1,
            destination: Self.ul2
        )
        let mp = MPLSoUDPEncap.template(
            sourceMAC: Self.outerSrcMAC,
            destinationMAC: Self.outerDstMAC,
            source: Self.ul1,
            destination: Self.ul2
        )
        var rng = SplitMix64(seed: 42)
        for n in [14, 60, 61, 333, 1400, 1500] {
            let inner = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let vni = UInt32(truncatingIfNeeded: rng.next()) & 0xFF_FFFF
            let frame = encap(vx, inner, sport: 50000, tag: vni)
            let guarded = GuardedBuffer()
            let p = guarded.place(frame)
            let outer = PacketParser.parse(p, length: frame.count)
            #expect(outer.isValid && outer.destinationPort == UDPPort.vxlan && outer.vlanCount == 1)
            let d = TunnelDecap.vxlan(p, length: frame.count, udpOffset: outer.l4Offset)
            #expect(d.dropReason == nil && d.labelOrVNI == vni)
            #expect(Array(frame[d.innerOffset..<(d.innerOffset + d.innerLength)]) == inner)

            let label = UInt32(truncatingIfNeeded: rng.next()) & 0xF_FFFF
            let innerIP = [0x45] + inner.dropFirst()
            let f2 = encap(mp, innerIP, sport: 60000, tag: label)
            let p2 = guarded.place(f2)
            let o2 = PacketParser.parse(p2, length: f2.count)
            #expect(o2.isValid && o2.destinationPort == UDPPort.mplsOverUDP)
            let d2 = TunnelDecap.mplsOverUDP(p2, length: f2.count, udpOffset: o2.l4Offset)
            #expect(d2.dropReason == nil && d2.labelOrVNI == label && d2.ttl == 64)
            #expect(Array(f2[d2.innerOffset..<(d2.innerOffset + d2.innerLength)]) == innerIP)
        }
    }

    @Test func decapRejectsBadTunnelHeaders() {
        let vx = VXLANEncap.template(
            sourceMAC: Self.outerSrcMAC,
            destinationMAC: Self.outerDstMAC,
            source: Self.ul1,
            destination: Self.ul2
        )
        var frame = encap(vx, Self.innerFrame, sport: 50000, tag: 7)
        let guarded = GuardedBuffer()
        // No I flag.
        frame[42] = 0
        #expect(
            TunnelDecap.vxlan(guarded.place(frame), length: frame.count, udpOffset: 34).dropReason == .invalidPacket
        )
        frame[42] = 0x08
        // Every cut of the frame before the inner Ethernet header is complete.
        for cut in 34..<(50 + 14) {
            let r = TunnelDecap.vxlan(guarded.place(frame[0..<cut]), length: cut, udpOffset: 34)
            #expect(r.dropReason == .truncated, "cut \(cut)")
        }
        let mp = MPLSoUDPEncap.template(
            sourceMAC: Self.outerSrcMAC,
            destinationMAC: Self.outerDstMAC,
            source: Self.ul1,
            destination: Self.ul2
        )
        var f2 = encap(mp, Array(Self.innerFrame[14...]), sport: 50000, tag: 7)
        f2[44] &= 0xFE  // S = 0: a stack of more than one label
        #expect(
            TunnelDecap.mplsOverUDP(guarded.place(f2), length: f2.count, udpOffset: 34).dropReason == .invalidPacket
        )
        for cut in 34...46 {
            let r = TunnelDecap.mplsOverUDP(guarded.place(f2[0..<cut]), length: cut, udpOffset: 34)
            #expect(r.dropReason == .truncated, "cut \(cut)")
        }
    }

    @Test func templatePatchesMatchAFullBuildForEveryLengthAndID() {
        let vx = VXLANEncap.template(
            sourceMAC: Self.outerSrcMAC,
            destinationMAC: Self.outerDstMAC,
            vlanTCI: 1,
            source: Self.ul1,
            destination: Self.ul2,
            tos: 0x2E,
            ttl: 17
        )
        var rng = SplitMix64(seed: 9)
        var buf = [UInt8](repeating: 0, count: 128)
        for len in stride(from: 0, to: 9000, by: 7) {
            let id = UInt16(truncatingIfNeeded: rng.next())
            let sport = TunnelTemplate.sourcePort(hash: UInt32(truncatingIfNeeded: rng.next()))
            let outer: [UInt8] = buf.withUnsafeMutableBytes { raw in
                let start = vx.apply(
                    to: raw.baseAddress! + 64,
                    innerLength: len,
                    sourcePort: sport,
                    labelOrVNI: 1,
                    identification: id
                )
                return Array(UnsafeRawBufferPointer(start: start, count: 54))
            }
            let ip = Array(outer[18..<38])
            #expect(refVerifies(ip), "len \(len)")
            #expect(Int(be16(ip, 2)) == 20 + 8 + 8 + len)
            #expect(be16(ip, 4) == id)
            #expect(ip[1] == 0x2E && ip[8] == 17 && be16(ip, 6) == 0)  // DF clear
            #expect(be16(outer, 38) == sport && Int(be16(outer, 42)) == 16 + len)
        }
    }

    @Test func poolApplyMovesTheFrameStart() {
        withPool { pool in
            let t = VXLANEncap.template(
                sourceMAC: Self.outerSrcMAC,
                destinationMAC: Self.outerDstMAC,
                source: Self.ul1,
                destination: Self.ul2
            )
            let idx = pool.loaded(Self.innerFrame)
            #expect(t.apply(pool: pool, idx, sport: 50001, vni: 99) == true)
            let m = pool.meta(idx).pointee
            #expect(Int(m.offset) == PacketPool.headroom - 50 && Int(m.length) == Self.innerFrame.count + 50)
            let frame = pool.array(idx)
            #expect(Array(frame[50...]) == Self.innerFrame)
            #expect(TunnelDecap.vxlan(pool.packet(idx), length: frame.count, udpOffset: 34).labelOrVNI == 99)
            // Not enough headroom: refused, untouched.
            pool.meta(idx).pointee.offset = 20
            pool.meta(idx).pointee.length = 10
            #expect(t.apply(pool: pool, idx, sport: 1, vni: 1) == false)
            #expect(pool.meta(idx).pointee.offset == 20)
        }
    }
}

extension TunnelTemplate {
    fileprivate func apply(pool: PacketPool, _ idx: UInt32, sport: UInt16, vni: UInt32) -> Bool {
        apply(pool: pool, idx, sourcePort: sport, labelOrVNI: vni)
    }
}
