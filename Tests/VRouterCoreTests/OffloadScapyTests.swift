// Golden segmentation against scapy (Debian's python3-scapy), an implementation that
// shares nothing with ours: scapy decodes the superframe, builds each segment itself (its
// own lengths, identification, sequence numbers, flags and checksums) and the bytes must
// be ours exactly; and every encapsulated segment, decoded and rebuilt with all lengths
// and checksums recomputed by scapy, must come out unchanged. Skipped when
// /usr/bin/python3 cannot import scapy.

import Foundation
import Testing

@testable import VRouterCore

private let python = "/usr/bin/python3"

private let scapyAvailable: Bool = {
    guard FileManager.default.isExecutableFile(atPath: python) else { return false }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: python)
    p.arguments = ["-c", "import scapy.all"]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return false }
    p.waitUntilExit()
    return p.terminationStatus == 0
}()

/// "name hex mss" per line: prints "name k hex" for every segment scapy makes of it.
private let segmenter = """
    import sys, binascii
    from scapy.all import *
    for line in sys.stdin:
        name, h, mss = line.split()
        mss = int(mss)
        p = Ether(binascii.unhexlify(h))
        ipl = IP if IP in p else IPv6
        tcp = TCP in p
        l4 = p[TCP] if tcp else p[UDP]
        data = bytes(l4.payload)
        n = (len(data) + mss - 1) // mss
        for k in range(n):
            chunk = data[k * mss:(k + 1) * mss]
            i = p[ipl].copy()
            i.remove_payload()
            if ipl is IP:
                i.id = (p[IP].id + k) & 0xFFFF
                i.len = None
                i.chksum = None
            else:
                i.plen = None
            t = l4.copy()
            t.remove_payload()
            t.chksum = None
            if tcp:
                t.seq = (l4.seq + k * mss) & 0xFFFFFFFF
                f = int(l4.flags)
                if k != n - 1: f &= ~0x09
                if k != 0: f &= ~0x80
                t.flags = f
            else:
                t.len = None
            seg = Ether(dst=p.dst, src=p.src, type=p.type) / i / t / Raw(chunk)
            print(name, k, binascii.hexlify(bytes(seg)).decode())
    """

/// "name hex" per line: every IP length and checksum, UDP length and TCP checksum cleared
/// for scapy to recompute (outer UDP checksums stay as sent: zero); "name OK" when the
/// rebuilt bytes are the same.
private let rebuilder = """
    import sys, binascii
    from scapy.all import *
    from scapy.contrib.mpls import MPLS
    from scapy.layers.vxlan import VXLAN
    bind_layers(UDP, MPLS, dport=6635)
    for line in sys.stdin:
        name, h = line.split()
        raw = binascii.unhexlify(h)
        p = Ether(raw)
        for l in p.iterpayloads():
            if isinstance(l, IP):
                l.len = None
                l.chksum = None
            elif isinstance(l, IPv6):
                l.plen = None
            elif isinstance(l, UDP):
                l.len = None
            elif isinstance(l, TCP):
                l.chksum = None
        out = bytes(p)
        print(name, 'OK' if out == raw else 'DIFF ' + p.summary() + ' ' + binascii.hexlify(out).decode())
    """

private func runPython(_ script: String, _ input: String) throws -> [String] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: python)
    p.arguments = ["-c", script]
    let stdin = Pipe()
    let stdout = Pipe()
    p.standardInput = stdin
    p.standardOutput = stdout
    p.standardError = FileHandle.nullDevice
    try p.run()
    // Write from another thread: the output of 64 KB superframes fills the pipe first.
    let writer = Thread {
        stdin.fileHandleForWriting.write(input.data(using: .utf8)!)
        try? stdin.fileHandleForWriting.close()
    }
    writer.start()
    let out = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    return out.split(separator: "\n").map(String.init)
}

private func hexOf(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

@Suite(.enabled(if: scapyAvailable, "scapy is not importable by /usr/bin/python3"))
struct OffloadScapyTests {
    /// Our segments of each superframe, and scapy's of the same.
    @Test func segmentsAreScapysSegments() throws {
        var cases: [(String, [UInt8], UInt8, Int)] = []
        var spec = TCPSpec()
        spec.payload = pattern(65_000)
        spec.flags = 0x80 | 0x18 | 0x01
        cases.append(("tcp4-64k", spec.frame(), VirtioNet.gsoTCPv4, 1448))
        spec.flags = 0x10
        spec.payload = pattern(9001, seed: 5)
        cases.append(("tcp4-odd", spec.frame(), VirtioNet.gsoTCPv4, 1398))
        var v6 = TCPSpec()
        v6.v6 = true
        v6.payload = pattern(40_000)
        cases.append(("tcp6", v6.frame(), VirtioNet.gsoTCPv6, 1428))
        var u = TCPSpec()
        u.payload = pattern(30_000, seed: 9)
        cases.append(("udp4", u.udpFrame(), VirtioNet.gsoUDPL4, 1472))
        u.v6 = true
        cases.append(("udp6", u.udpFrame(), VirtioNet.gsoUDPL4, 1232))

        // scapy decodes complete checksums best: give it the finished superframe.
        var input = ""
        for (name, bytes, _, mss) in cases {
            var done = bytes
            let v4 = done[14] >> 4 == 4
            let l4 = 14 + (v4 ? 20 : 40)
            let udp = (v4 ? done[23] : done[20]) == 17
            done.withUnsafeMutableBytes { b in
                Checksum.complete(b.baseAddress!, start: l4, offset: udp ? 6 : 16, end: b.count, udp: udp)
            }
            input += "\(name) \(hexOf(done)) \(mss)\n"
        }
        var golden: [String: [String]] = [:]
        for line in try runPython(segmenter, input) {
            let f = line.split(separator: " ")
            golden[String(f[0]), default: []].append(String(f[2]))
        }
        try withBigPool(count: 1024) { pool in
            for (name, bytes, gso, mss) in cases {
                let idx = pool.superframe(bytes, gsoType: gso, gsoSize: mss)
                let sf = try #require(Superframe.parse(pool: pool, idx))
                var out = Frame.allocate(capacity: 256)
                defer { out.deallocate() }
                #expect(Segmentation.segment(pool: pool, idx, sf, into: &out) == nil)
                let ours = (0..<out.count).map { hexOf(pool.array(out[$0])) }
                pool.free(&out)
                let theirs = golden[name] ?? []
                #expect(ours.count == theirs.count && !ours.isEmpty, "\(name): \(ours.count) against \(theirs.count)")
                for k in 0..<min(ours.count, theirs.count) where ours[k] != theirs[k] {
                    Issue.record("\(name) segment \(k): ours \(ours[k])\n scapy \(theirs[k])")
                }
            }
        }
    }

    /// Every encapsulated segment (VXLAN with either inner Ethernet, MPLS over UDP; IPv4
    /// and IPv6 inside) is what scapy rebuilds from it.
    @Test func encapsulatedSegmentsAreConsistentForScapy() throws {
        var input = ""
        try withBigPool(count: 1024) { pool in
            for kind in OffloadSegmentationTests.Kind.allCases {
                for v6 in [false, true] {
                    var spec = TCPSpec()
                    spec.v6 = v6
                    spec.payload = pattern(20_000)
                    var t = OffloadSegmentationTests.template(kind)
                    let idx = pool.superframe(
                        spec.frame(),
                        gsoType: v6 ? VirtioNet.gsoTCPv6 : VirtioNet.gsoTCPv4,
                        gsoSize: 1398
                    )
                    let sf = try #require(Superframe.parse(pool: pool, idx))
                    var out = Frame.allocate(capacity: 64)
                    defer { out.deallocate() }
                    var id: UInt16 = 100
                    let r = withUnsafePointer(to: &t) { tp in
                        Segmentation.segmentAndEncapsulate(
                            pool: pool,
                            idx,
                            sf,
                            OffloadSegmentationTests.tunnel(kind, tp),
                            identification: &id,
                            into: &out
                        )
                    }
                    #expect(r == nil)
                    for k in 0..<out.count { input += "\(kind)-\(v6 ? 6 : 4)-\(k) \(hexOf(pool.array(out[k])))\n" }
                    pool.free(&out)
                }
            }
        }
        let lines = try runPython(rebuilder, input)
        #expect(lines.count == input.split(separator: "\n").count)
        for line in lines { #expect(line.hasSuffix(" OK"), "\(line)") }
    }
}
