// Header views: every setter lands on the bytes the RFC diagram says, every getter reads
// them back, and the checksum helpers agree with the reference.

import Testing

@testable import VRouterCore

@Suite struct HeadersViewTests {
    /// Runs `body` on a copy of `bytes` and returns the bytes after.
    func mutate(_ bytes: [UInt8], _ body: (UnsafeMutableRawPointer) -> Void) -> [UInt8] {
        var b = bytes
        b.withUnsafeMutableBytes { body($0.baseAddress!) }
        return b
    }

    @Test func ethernetAndVLAN() {
        let f = Frames.ethernet(type: 0x0800, tags: [(0x8100, 0xA064)])
        f.withUnsafeBytes { raw in
            let e = EthernetHeader(raw.baseAddress!)
            #expect(e.destination == T.mac(T.macB) && e.source == T.mac(T.macA) && e.etherType == 0x8100)
            let t = VLANTag(UnsafeMutableRawPointer(mutating: raw.baseAddress! + 12))
            #expect(
                t.tpid == 0x8100 && t.vlanID == 100 && t.priority == 5 && !t.dropEligible && t.innerEtherType == 0x0800
            )
        }
        let out = mutate(f) { p in
            EthernetHeader(p).swapAddresses()
            let t = VLANTag(p + 12)
            t.vlanID = 0xFFF
            t.priority = 1
            t.dropEligible = true
        }
        #expect(out == Frames.ethernet(dst: T.macA, src: T.macB, type: 0x0800, tags: [(0x8100, 0x3FFF)]))
    }

    @Test func ipv4FieldsAndChecksums() {
        let h = Frames.ipv4(
            proto: 17,
            payload: 100,
            options: [1, 1, 1, 0],
            ttl: 2,
            id: 0xBEEF,
            flags: 0x2000 | 5,
            tos: 0xB9
        )
        h.withUnsafeBytes { raw in
            let ip = IPv4Header(raw.baseAddress!)
            #expect(ip.version == 4 && ip.ihl == 6 && ip.headerLength == 24 && ip.optionsLength == 4)
            #expect(
                ip.tos == 0xB9 && ip.dscp == 0x2E && ip.ecn == 1 && ip.totalLength == 124 && ip.identification == 0xBEEF
            )
            #expect(
                !ip.dontFragment && ip.moreFragments && ip.fragmentOffset == 5 && ip.fragmentByteOffset == 40
                    && ip.isFragment
            )
            #expect(ip.ttl == 2 && ip.proto == 17 && ip.source == T.v4(T.ip4A) && ip.destination == T.v4(T.ip4B))
            #expect(ip.isChecksumValid)
        }
        // TTL decrement patches the checksum to what a full recompute gives.
        let dec = mutate(h) { p in #expect(IPv4Header(p).decrementTTL() == 1) }
        #expect(dec[8] == 1 && refVerifies(dec))
        var bad = h
        bad[12] ^= 1
        #expect(bad.withUnsafeBytes { IPv4Header($0.baseAddress!).isChecksumValid } == false)
        let set = mutate(h) { p in
            let ip = IPv4Header(p)
            ip.setWord(4, 0x0102)
            #expect(ip.isChecksumValid)  // setWord keeps it valid
            ip.dontFragment = true  // plain setters do not
            ip.moreFragments = false
            ip.fragmentOffset = 0
            ip.source = T.v4(T.ul1)
            ip.updateChecksum()
        }
        #expect(be16(set, 6) == 0x4000 && be16(set, 4) == 0x0102 && Array(set[12..<16]) == T.ul1 && refVerifies(set))
    }

    @Test func ipv6Fields() {
        let h = Frames.ipv6(nextHeader: 44, payload: 1234, hopLimit: 7)
        let out = mutate(h) { p in
            let ip = IPv6Header(p)
            #expect(ip.version == 6 && ip.payloadLength == 1234 && ip.nextHeader == 44 && ip.hopLimit == 7)
            #expect(ip.source == T.v6(T.ip6A) && ip.destination == T.v6(T.ip6B))
            ip.trafficClass = 0xAB
            ip.flowLabel = 0xF_FFFF
            #expect(ip.trafficClass == 0xAB && ip.flowLabel == 0xF_FFFF && ip.version == 6)
            // Pseudo-header sum equals the reference's over the same bytes.
            let s = ip.pseudoHeaderSum(nextHeader: 17, length: 70000)
            let ref = refChecksum(pseudo6(T.ip6A, T.ip6B, nextHeader: 17, length: 70000))
            #expect(~Checksum.fold32(s) == ref)
        }
        #expect(Array(out[0..<4]) == [0x6A, 0xBF, 0xFF, 0xFF])
    }

    @Test func transportAndTunnelViews() {
        let u = hex("9c 40 00 35 00 1a 2e a1")
        u.withUnsafeBytes { raw in
            let h = UDPHeader(raw.baseAddress!)
            #expect(h.sourcePort == 40000 && h.destinationPort == 53 && h.length == 26 && h.checksum == 0x2EA1)
        }
        let syn = hex("9c 41 00 50  01 02 03 04  00 00 00 05  60 c2 ff ff  0b 3d 00 07  02 04 05 b4")
        syn.withUnsafeBytes { raw in
            let t = TCPHeader(raw.baseAddress!)
            #expect(t.sourcePort == 40001 && t.destinationPort == 80 && t.sequenceNumber == 0x0102_0304)
            #expect(t.acknowledgmentNumber == 5 && t.dataOffset == 6 && t.headerLength == 24)
            #expect(t.flags == [.syn, .ece, .cwr] && t.window == 0xFFFF && t.urgentPointer == 7)
            #expect(t.mssOptionOffset(available: 24) == 22 && t.mssOptionOffset(available: 23) == nil)
        }
        let mpls = mutate(hex("ab cd eb 3f")) { p in
            let e = MPLSLabelStackEntry(p)
            #expect(e.label == 0xABCDE && e.trafficClass == 5 && e.bottomOfStack && e.ttl == 63)
            e.label = 16
            e.trafficClass = 0
            e.bottomOfStack = false
            e.ttl = 1
        }
        #expect(mpls == hex("00 01 00 01"))
        #expect(
            MPLSLabelStackEntry.encode(label: 0xABCDE, trafficClass: 5, bottomOfStack: true, ttl: 63) == 0xABCD_EB3F
        )
        let vx = mutate(hex("08 00 00 00 12 34 56 00")) { p in
            let v = VXLANHeader(p)
            #expect(v.hasValidVNI && v.vni == 0x12_3456)
            v.vni = 0x1FF_FFFF
        }
        #expect(vx == hex("08 00 00 00 ff ff ff 00"))
        let arp = Frames.ethernet(type: 0x0806) + hex("00 01 08 00 06 04 00 01") + T.macA + T.ip4A + T.macB + T.ip4B
        arp.withUnsafeBytes { raw in
            let a = ARPHeader(raw.baseAddress! + 14)
            #expect(a.isEthernetIPv4 && a.operation == 1 && a.senderMAC == T.mac(T.macA) && a.targetIP == T.v4(T.ip4B))
        }
        let icmp = hex("03 04 00 00 00 00 05 78")
        icmp.withUnsafeBytes { raw in
            let i = ICMPv4Header(raw.baseAddress!)
            #expect(i.type == 3 && i.code == 4 && i.nextHopMTU == 1400 && ICMPv4Header.isError(i.type))
        }
        #expect(ICMPv6Header.isError(2) && !ICMPv6Header.isError(128))
    }

    @Test func viewsAreOnePointer() {
        #expect(MemoryLayout<IPv4Header>.size == MemoryLayout<UnsafeRawPointer>.size)
        #expect(MemoryLayout<TunnelTemplate>.size <= 128)
        #expect(_isPOD(ParsedPacket.self) && _isPOD(TunnelTemplate.self) && _isPOD(IPv6Header.self))
    }
}
