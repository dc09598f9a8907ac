// `vrouter-perf pcap`: our capture reader (PcapFile.read into a PacketSet, what
// `vrouterd bench` loads its inputs with) timed on a whole file, for tools/compare-pcap,
// which times a bare libpcap pcap_next_ex loop on the same file (the I/O floor). With
// --packets it first writes that file: UDP frames between documentation addresses.
// The packet count, byte count and checksum (the sum of every packet's middle and last
// bytes) let the script check that both sides read the same packets.

import ArgumentParser
import Foundation
import VRouterCore
import VRouterIO

struct PcapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pcap",
        abstract: "Time reading a capture into a PacketSet (optionally writing it first)."
    )

    @Option(help: "The capture to read.") var file: String
    @Option(help: "Write a capture of this many packets to --file first.") var packets: Int?
    @Option(help: "Packet size of a written capture (60...1514), or 'imix' (7:4:1 of 64, 570, 1514).")
    var size: String = "64"
    @Option(help: "Timed reads (after one untimed warm-up read).") var `repeat`: Int = 5

    func validate() throws {
        if let packets {
            guard packets >= 1 && packets <= 100_000_000 else {
                throw ValidationError("--packets must be 1...100000000")
            }
        }
        if size != "imix" {
            guard let s = Int(size), (60...1514).contains(s) else {
                throw ValidationError("--size must be 60...1514 or imix")
            }
        }
        guard `repeat` >= 1 && `repeat` <= 1000 else { throw ValidationError("--repeat must be 1...1000") }
    }

    /// Best of the timed reads as the headline (other work only slows a read down).
    struct Result: Encodable {
        var file_bytes: Int
        var packets: Int
        var bytes: Int
        var checksum: UInt64
        var repeats: Int
        var statistic = "best"
        var ours_mpps: Double
        var ours_mpps_median: Double
        var ours_ns_per_packet: Double
        var ours_gbytes_per_second: Double
        /// Read plus PacketSet.merged of the one set: all of ReplayNode.loadInputs for one port.
        var ours_load_mpps: Double
    }

    func run() throws {
        if let packets { write(packets) }
        let fileBytes = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        var set = PacketSet()
        func read() -> PacketSet {
            var s = PacketSet()
            do { try PcapFile.read(path: file, port: 0, into: &s) } catch { fail(error.description) }
            return s
        }
        set = read()
        var reads = Timings(samples: [])
        var loads = Timings(samples: [])
        for _ in 0..<`repeat` {
            // The previous set is freed before the clock starts: only loading is timed.
            set = PacketSet()
            reads.samples.append(seconds { set = read() })
            set = PacketSet()
            loads.samples.append(seconds { set = PacketSet.merged([read()]) })
        }
        var bytes = 0
        var sum: UInt64 = 0
        for i in 0..<set.count {
            let n = Int(set.lengths[i])
            bytes += n
            if n > 0 { sum &+= UInt64(set.bytes[set.offsets[i] + n / 2]) &+ UInt64(set.bytes[set.offsets[i] + n - 1]) }
        }
        let n = Double(set.count)
        try printJSON(
            Result(
                file_bytes: fileBytes,
                packets: set.count,
                bytes: bytes,
                checksum: sum,
                repeats: `repeat`,
                ours_mpps: n / reads.best / 1e6,
                ours_mpps_median: n / reads.median / 1e6,
                ours_ns_per_packet: reads.best * 1e9 / max(n, 1),
                ours_gbytes_per_second: Double(fileBytes) / reads.best / 1e9,
                ours_load_mpps: n / loads.best / 1e6
            )
        )
    }

    /// UDP frames from 198.18.0.0/16 hosts to 203.0.113.0/24, sizes cycling through the mix.
    func write(_ count: Int) {
        let sizes = size == "imix" ? [64, 64, 64, 64, 64, 64, 64, 570, 570, 570, 570, 1514] : [Int(size)!]
        var rng = SplitMix64(seed: 7)
        var buf = [UInt8](repeating: 0, count: 1514)
        do {
            let w = try PcapWriter(path: file)
            for i in 0..<count {
                let r = rng.next()
                let n = buf.withUnsafeMutableBytes {
                    SyntheticTraffic.writeUDP4(
                        $0.baseAddress!,
                        size: sizes[i % sizes.count],
                        srcMAC: MACAddress(0x0200_0000_0002),
                        dstMAC: MACAddress(0x0200_0000_0001),
                        source: IPv4Address(198, 18, UInt8(truncatingIfNeeded: r >> 8), UInt8(truncatingIfNeeded: r)),
                        destination: IPv4Address(203, 0, 113, UInt8(truncatingIfNeeded: r >> 16)),
                        sport: UInt16(truncatingIfNeeded: r >> 24) | 1024,
                        dport: 9
                    )
                }
                buf.withUnsafeBytes {
                    w.write(
                        UnsafeRawBufferPointer(rebasing: $0[0..<n]),
                        timestamp: 1_700_000_000_000_000_000 + UInt64(i) * 1000
                    )
                }
            }
            try w.close()
        } catch { fail(error.description) }
    }
}
