import Foundation
import Testing
import VRouterCore
import VRouterTestSupport

@testable import VRouterIO

@Suite struct PcapFileTests {
    static func tempPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vrt-pcap-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    @Test func writeThenReadRoundTripsBytesAndNanosecondTimestamps() throws {
        let path = Self.tempPath("rt.pcap")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let w = try PcapWriter(path: path)
        var sent: [[UInt8]] = []
        for i in 0..<100 {
            let pkt = (0..<(60 + i * 13)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
            sent.append(pkt)
            pkt.withUnsafeBytes { w.write($0, timestamp: 1_700_000_000_123_456_789 + UInt64(i) * 1_000) }
        }
        try w.close()
        var set = PacketSet()
        let n = try PcapFile.read(path: path, port: 7, into: &set)
        #expect(n == 100)
        for i in 0..<100 {
            #expect(set.packet(i) == sent[i])
            #expect(set.ports[i] == 7)
            #expect(set.timestamps[i] == 1_700_000_000_123_456_789 + UInt64(i) * 1_000)
        }
    }

    /// The reader sizes the set from the file: a big capture (past the huge-page threshold)
    /// appended to a set that already holds packets keeps both, in order.
    @Test func bigCaptureAppendsAfterExistingPackets() throws {
        let path = Self.tempPath("big.pcap")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let w = try PcapWriter(path: path)
        let count = 10_000  // 10k x (16 + 900..963) bytes: past 8 MiB
        for i in 0..<count {
            let pkt = (0..<(900 + i % 64)).map { UInt8(truncatingIfNeeded: $0 &+ i) }
            pkt.withUnsafeBytes { w.write($0, timestamp: UInt64(i)) }
        }
        try w.close()
        var set = PacketSet()
        set.append([1, 2, 3], port: 9, timestamp: 0)
        #expect(try PcapFile.read(path: path, port: 2, into: &set) == count)
        #expect(set.count == count + 1)
        #expect(set.packet(0) == [1, 2, 3])
        for i in [0, 1, 63, 64, count / 2, count - 1] {
            #expect(set.packet(i + 1) == (0..<(900 + i % 64)).map { UInt8(truncatingIfNeeded: $0 &+ i) })
            #expect(set.ports[i + 1] == 2)
            #expect(set.timestamps[i + 1] == UInt64(i))
        }
    }

    @Test func damagedFilesGetOneClearError() throws {
        let good = Self.tempPath("good.pcap")
        defer { try? FileManager.default.removeItem(atPath: good) }
        let w = try PcapWriter(path: good)
        let pkt = [UInt8](repeating: 0xAB, count: 100)
        for _ in 0..<3 { pkt.withUnsafeBytes { w.write($0, timestamp: 1) } }
        try w.close()
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))

        // Truncated in the middle of the last packet.
        let cut = Self.tempPath("cut.pcap")
        try bytes.prefix(bytes.count - 30).write(to: URL(fileURLWithPath: cut))
        var set = PacketSet()
        #expect(throws: PcapError.self) { try PcapFile.read(path: cut, port: 0, into: &set) }
        do { _ = try PcapFile.read(path: cut, port: 0, into: &set) } catch {
            #expect(error.description.contains("cut.pcap"))
            #expect(error.description.contains("after packet 2"))
        }

        // Not a capture at all.
        let junk = Self.tempPath("junk.pcap")
        try Data("this is not a pcap file, just text".utf8).write(to: URL(fileURLWithPath: junk))
        #expect(throws: PcapError.self) { try PcapFile.read(path: junk, port: 0, into: &set) }

        // Missing file.
        do {
            _ = try PcapFile.read(path: "/nonexistent/vrt.pcap", port: 0, into: &set)
            Issue.record("a missing file must fail")
        } catch {
            #expect(error.description.contains("/nonexistent/vrt.pcap"))
        }

        // A link type other than Ethernet (DLT_RAW = 101 in the global header).
        var raw = bytes
        raw[20] = 101
        raw[21] = 0
        let rawPath = Self.tempPath("raw.pcap")
        try raw.write(to: URL(fileURLWithPath: rawPath))
        do {
            _ = try PcapFile.read(path: rawPath, port: 0, into: &set)
            Issue.record("a non-Ethernet capture must fail")
        } catch {
            #expect(error.description.contains("not Ethernet"))
        }
        for p in [cut, junk, rawPath] { try? FileManager.default.removeItem(atPath: p) }
    }

    /// Found by the pcap fuzzer: a record whose microseconds field does not fit (here
    /// 0xFFFFFFFF) came out of libpcap, scaled to nanoseconds, as a negative fraction, and
    /// turning it into a timestamp trapped. Now it is an error naming the packet.
    @Test func aTimestampOutOfRangeIsAnErrorNamingThePacket() throws {
        // Classic pcap, microseconds, Ethernet; two 60-byte records, the second one damaged.
        var file: [UInt8] = [0xD4, 0xC3, 0xB2, 0xA1, 2, 0, 4, 0] + [UInt8](repeating: 0, count: 8)
        file += [0xFF, 0xFF, 0, 0, 1, 0, 0, 0]
        for usec: UInt32 in [5, 0xFFFF_FFFF] {
            for field: UInt32 in [1_700_000_000, usec, 60, 60] {
                file += withUnsafeBytes(of: field.littleEndian) { Array($0) }
            }
            file += [UInt8](repeating: 0x42, count: 60)
        }
        let path = Self.tempPath("stamp.pcap")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(file).write(to: URL(fileURLWithPath: path))
        var set = PacketSet()
        do {
            _ = try PcapFile.read(path: path, port: 0, into: &set)
            Issue.record("a timestamp out of range must fail")
        } catch {
            #expect(error.description.contains("stamp.pcap: packet 2 has timestamp"), "\(error)")
        }
    }

    @Test func pcapngIsReadToo() throws {
        // Converted with editcap when available (Debian's wireshark tools); skipped otherwise.
        let editcap = "/usr/bin/editcap"
        guard FileManager.default.isExecutableFile(atPath: editcap) else { return }
        let classic = Self.tempPath("c.pcap")
        let ng = Self.tempPath("n.pcapng")
        defer { for p in [classic, ng] { try? FileManager.default.removeItem(atPath: p) } }
        let w = try PcapWriter(path: classic)
        let pkt = [UInt8](repeating: 0x42, count: 64)
        for _ in 0..<5 { pkt.withUnsafeBytes { w.write($0, timestamp: 2_000_000_000) } }
        try w.close()
        #expect(try run([editcap, "-F", "pcapng", classic, ng]).status == 0)
        var set = PacketSet()
        #expect(try PcapFile.read(path: ng, port: 1, into: &set) == 5)
        #expect(set.packet(4) == pkt)
    }
}
