// IPv4 fragmentation (RFC 791 §3.2): every fragment checked field by field with the
// reference checksum, and the fragments reassembled here (by offset, RFC 815 style) give
// back the original datagram.

import Testing

@testable import VRouterCore

@Suite struct HeadersFragmenterTests {
    struct Fragment {
        var l2: [UInt8]
        var header: [UInt8]
        var data: [UInt8]
        var offset: Int { Int(be16(header, 6) & 0x1FFF) * 8 }
        var more: Bool { be16(header, 6) & 0x2000 != 0 }
    }

    /// Fragments `frame` and returns them split into parts, checking each one's basics.
    func fragment(
        _ frame: [UInt8],
        l2: Int = 14,
        mtu: Int,
        pool: PacketPool
    ) -> (DropReason?, [Fragment], [UInt32]) {
        var out = Frame.allocate(capacity: 64)
        defer { out.deallocate() }
        let idx = pool.loaded(frame)
        let r = IPv4Fragmenter.fragment(pool: pool, idx, l2Length: l2, mtu: mtu, into: &out)
        var frags: [Fragment] = []
        var indices: [UInt32] = []
        for i in 0..<out.count {
            let b = pool.array(out[i])
            let m = pool.meta(out[i]).pointee
            let hl = Int(b[l2] & 0xF) * 4
            let total = Int(be16(b, l2 + 2))
            #expect(b.count == l2 + total)
            #expect(total <= mtu || out.count == 1)
            #expect(refVerifies(Array(b[l2..<(l2 + hl)])))
            if out.count > 1 {  // a packet that fits is passed on unchanged, meta included
                #expect(Int(m.l3) == Int(m.offset) + l2 && Int(m.l4) == Int(m.offset) + l2 + hl)
            }
            frags.append(Fragment(l2: Array(b[0..<l2]), header: Array(b[l2..<(l2 + hl)]), data: Array(b[(l2 + hl)...])))
            indices.append(out[i])
        }
        return (r, frags, indices)
    }

    /// Reassembles by offset and checks the pieces tile the data exactly once.
    func reassemble(_ frags: [Fragment]) -> [UInt8]? {
        let sorted = frags.sorted { $0.offset < $1.offset }
        var data: [UInt8] = []
        for f in sorted {
            guard f.offset == data.count else { return nil }
            data += f.data
        }
        return data
    }

    @Test func udpDatagramIntoThreeFragments() {
        withPool { pool in
            let payload = (0..<1472).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let f = Frames.udp4(payload: payload)  // 1500-byte IPv4 datagram
            let (r, frags, idx) = fragment(f, mtu: 576, pool: pool)
            #expect(r == nil && frags.count == 3)
            #expect(frags.map(\.data.count) == [552, 552, 376])
            #expect(frags.map(\.offset) == [0, 552, 1104])
            #expect(frags.map(\.more) == [true, true, false])
            for fr in frags {
                #expect(fr.l2 == Array(f[0..<14]))
                #expect(be16(fr.header, 4) == 0x1234 && fr.header[8] == 64 && fr.header[9] == 17)
                #expect(Array(fr.header[12..<20]) == Array(f[26..<34]))
            }
            #expect(reassemble(frags) == Array(f[34...]))
            // The first fragment is the original buffer; the others are fresh ones.
            #expect(pool.meta(idx[0]).pointee.flags == [.fragment])
            #expect(pool.meta(idx[1]).pointee.flags == [.fragment, .laterFragment])
            #expect(pool.available == pool.count - 3)
        }
    }

    @Test func optionsWithoutTheCopiedFlagStayInTheFirstFragment() {
        withPool { pool in
            // Router alert (0x94, copied), record route (0x07, not copied), NOP, end of list.
            let options: [UInt8] = [0x94, 0x04, 0x00, 0x00, 0x07, 0x07, 0x04, 0, 0, 0, 0, 0x01]
            let f = Frames.udp4(payload: [UInt8](repeating: 0xAB, count: 1000), tags: [(0x8100, 42)], options: options)
            let (r, frags, _) = fragment(f, l2: 18, mtu: 400, pool: pool)
            #expect(r == nil && frags.count == 3)
            #expect(frags[0].header.count == 32 && Array(frags[0].header[20...]) == options)
            for fr in frags.dropFirst() {
                #expect(fr.header.count == 24 && Array(fr.header[20...]) == [0x94, 0x04, 0x00, 0x00])
                #expect(fr.l2 == Array(f[0..<18]))
            }
            #expect(frags[0].data.count == (400 - 32) & ~7 && frags[1].data.count == (400 - 24) & ~7)
            #expect(reassemble(frags) == Array(f[(18 + 32)...]))
        }
    }

    @Test func fragmentsAreFragmentedAgain() {
        withPool { pool in
            // A middle fragment (offset 800 bytes, MF set) of some larger datagram.
            let data = (0..<1200).map { UInt8(truncatingIfNeeded: $0) }
            let mid =
                Frames.ethernet(type: 0x0800) + Frames.ipv4(proto: 17, payload: data.count, flags: 0x2000 | 100) + data
            let (r, frags, _) = fragment(mid, mtu: 500, pool: pool)
            #expect(r == nil && frags.count == 3)
            #expect(frags.map(\.offset) == [800, 800 + 480, 800 + 960] && frags.allSatisfy(\.more))
            // The last fragment of a datagram: MF only on the new pieces before the end.
            let last = Frames.ethernet(type: 0x0800) + Frames.ipv4(proto: 17, payload: data.count, flags: 100) + data
            let (r2, frags2, idx2) = fragment(last, mtu: 500, pool: pool)
            #expect(r2 == nil && frags2.map(\.more) == [true, true, false])
            #expect(pool.meta(idx2[0]).pointee.flags.contains(.laterFragment))
            #expect(frags2.map { $0.offset - 800 } == [0, 480, 960])
            #expect(Array(frags2.map(\.data).joined()) == data)
        }
    }

    @Test func randomSizesAndMTUsReassemble() {
        withPool(count: 128) { pool in
            var rng = SplitMix64(seed: 791)
            for _ in 0..<300 {
                let n = Int(rng.next() % 1850)  // the frame fits a 2 KiB buffer after the headroom
                let mtu = 68 + Int(rng.next() % 1450)
                let withOptions = rng.next() % 2 == 0
                // Loose source route: an option copied into every fragment.
                let opts: [UInt8] = withOptions ? [0x83, 0x07, 0x04, 0, 0, 0, 0, 0x00] : []
                let payload = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                let f = Frames.udp4(payload: payload, options: opts)
                let before = pool.available
                let (r, frags, idx) = fragment(f, mtu: mtu, pool: pool)
                #expect(r == nil, "n \(n) mtu \(mtu)")
                if f.count - 14 <= mtu {
                    #expect(frags.count == 1 && pool.array(idx[0]) == f)
                } else {
                    #expect(frags.dropLast().allSatisfy { $0.more && $0.data.count % 8 == 0 } && !frags.last!.more)
                    #expect(reassemble(frags) == Array(f[(34 + opts.count)...]), "n \(n) mtu \(mtu)")
                }
                for i in idx { pool.free(i) }
                #expect(pool.available == before)  // the original came from `fragment`'s load
            }
        }
    }

    @Test func failuresChangeNothing() {
        // Pool with 2 buffers: the original and one spare, three fragments needed.
        withPool(count: 2) { pool in
            let f = Frames.udp4(payload: [UInt8](repeating: 1, count: 1400))
            let idx = pool.loaded(f)
            var out = Frame.allocate(capacity: 8)
            defer { out.deallocate() }
            out.append(999)
            #expect(IPv4Fragmenter.fragment(pool: pool, idx, l2Length: 14, mtu: 576, into: &out) == .noMemory)
            #expect(out.count == 1 && pool.available == 1 && pool.array(idx) == f)
        }
        withPool { pool in
            let f = Frames.udp4(payload: [UInt8](repeating: 1, count: 1400))
            var small = Frame.allocate(capacity: 2)
            defer { small.deallocate() }
            let idx = pool.loaded(f)
            let before = pool.available
            #expect(IPv4Fragmenter.fragment(pool: pool, idx, l2Length: 14, mtu: 576, into: &small) == .txQueueFull)
            #expect(small.count == 0 && pool.available == before && pool.array(idx) == f)
            var out = Frame.allocate(capacity: 16)
            defer { out.deallocate() }
            let cases: [(String, [UInt8], Int, DropReason)] = [
                ("DF set", Frames.udp4(payload: [UInt8](repeating: 1, count: 1400), flags: 0x4000), 576, .mtuExceeded),
                (
                    "bad options",
                    Frames.udp4(payload: [UInt8](repeating: 1, count: 1400), options: [0x83, 0x09, 0, 0]), 576,
                    .fragmentFailed
                ),
                (
                    "MTU too small for the header",
                    Frames.udp4(payload: [UInt8](repeating: 1, count: 100), options: [UInt8](repeating: 1, count: 40)),
                    66, .fragmentFailed
                ),
                ("not IPv4", Frames.udp6(), 60, .fragmentFailed),
                ("truncated", Array(Frames.udp4().dropLast()), 30, .fragmentFailed),
            ]
            for (name, frame, mtu, reason) in cases {
                let i = pool.loaded(frame)
                let avail = pool.available
                #expect(IPv4Fragmenter.fragment(pool: pool, i, l2Length: 14, mtu: mtu, into: &out) == reason, "\(name)")
                #expect(out.count == 0 && pool.available == avail && pool.array(i) == frame, "\(name)")
            }
        }
    }
}
