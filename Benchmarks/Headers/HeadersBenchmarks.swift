// Per-packet costs of the header layer: parse Eth/IPv4/UDP into a 5-tuple, apply a VXLAN
// or MPLSoUDP tunnel template, verify and patch an IPv4 header checksum. Each benchmark
// iteration handles 1000 packets (scalingFactor .kilo) taken round-robin from 1024
// prebuilt 60-byte frames (working set in L1/L2). With `--scale`, Throughput is packets
// per second, so ns/packet = 1000 / Throughput(M); Time is per iteration (1000 packets).
// Malloc (total) counts every malloc in the measured loop and must stay 0.
//
//   cd Benchmarks && swift package --allow-writing-to-package-directory benchmark --target Headers --scale

import Benchmark
import VRouterCore

/// Prebuilt frames and encapsulation buffers, made once outside every measurement.
final class HeaderBenchState: @unchecked Sendable {  // read-only after init; one benchmark at a time
    static let shared = HeaderBenchState()

    static let count = 1024
    static let slot = 256
    static let frameLength = 60
    /// `count` slots of `slot` bytes; each frame starts at `headroom` inside its slot.
    static let headroom = 128

    let frames: UnsafeMutableRawPointer
    let encapBuffers: UnsafeMutableRawPointer
    let vxlan: TunnelTemplate
    let mpls: TunnelTemplate

    init() {
        frames = .allocate(byteCount: Self.count * Self.slot, alignment: 64)
        encapBuffers = .allocate(byteCount: Self.count * Self.slot, alignment: 64)
        var rng = SplitMix64(seed: 1)
        for i in 0..<Self.count {
            let p = frames + i * Self.slot + Self.headroom
            var off = PacketBuilder.ethernet(
                p,
                destination: MACAddress.vrouter,
                source: MACAddress(0x0200_0000_0000 | UInt64(i)),
                etherType: EtherType.ipv4
            )
            let payload = Self.frameLength - off - 28
            // Sources in 198.51.100.0/24, destinations in 203.0.113.0/24, random ports.
            let src = IPv4Address(0xC633_6400 | UInt32(i & 0xFF))
            let dst = IPv4Address(0xCB00_7100 | UInt32(rng.next() & 0xFF))
            off += PacketBuilder.ipv4(
                p + off,
                source: src,
                destination: dst,
                proto: IPProtocol.udp,
                payloadLength: 8 + payload
            )
            (p + off + 8).initializeMemory(as: UInt8.self, repeating: 0x5A, count: payload)
            _ = PacketBuilder.udp(
                p + off,
                sourcePort: UInt16(truncatingIfNeeded: rng.next()),
                destinationPort: UInt16(truncatingIfNeeded: rng.next()),
                payloadLength: payload,
                checksum: .ipv4(source: src, destination: dst)
            )
            (encapBuffers + i * Self.slot).copyMemory(from: frames + i * Self.slot, byteCount: Self.slot)
        }
        vxlan = VXLANEncap.template(
            sourceMAC: MACAddress(0x0200_0000_0101),
            destinationMAC: MACAddress(0x0200_0000_0102),
            source: IPv4Address(0xC612_0001),
            destination: IPv4Address(0xC612_0002)
        )
        mpls = MPLSoUDPEncap.template(
            sourceMAC: MACAddress(0x0200_0000_0101),
            destinationMAC: MACAddress(0x0200_0000_0102),
            source: IPv4Address(0xC612_0001),
            destination: IPv4Address(0xC612_0002)
        )
    }

    @inline(__always) func frame(_ i: Int) -> UnsafeMutableRawPointer {
        let off: Int = (i & (Self.count - 1)) &* Self.slot &+ Self.headroom
        return frames + off
    }
    @inline(__always) func encapFrame(_ i: Int) -> UnsafeMutableRawPointer {
        let off: Int = (i & (Self.count - 1)) &* Self.slot &+ Self.headroom
        return encapBuffers + off
    }
}

/// A cheap 5-tuple mix so the parse results are consumed (the flow table has its own hash).
@inline(__always)
func mix(_ r: ParsedPacket) -> UInt64 {
    var h = UInt64(truncatingIfNeeded: r.source) &* 0x9E37_79B9_7F4A_7C15
    h ^= UInt64(truncatingIfNeeded: r.destination) &* 0xC2B2_AE3D_27D4_EB4F
    h ^= (UInt64(r.sourcePort) << 24 | UInt64(r.destinationPort) << 8 | UInt64(r.proto)) &* 0x1656_67B1_9E37_79F9
    return h ^ (h >> 29)
}

let benchmarks: @Sendable () -> Void = {
    let config = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 100,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 100_000,
        setup: { _ = HeaderBenchState.shared }
    )

    Benchmark("Parse Eth/IPv4/UDP + 5-tuple", configuration: config) { benchmark in
        let s = HeaderBenchState.shared
        var acc: UInt64 = 0
        var invalid = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let r = PacketParser.parse(s.frame(i), length: HeaderBenchState.frameLength)
            if r.dropReason != nil { invalid &+= 1 }
            acc ^= mix(r)
        }
        benchmark.stopMeasurement()
        precondition(invalid == 0)
        blackHole(acc)
    }

    Benchmark("VXLAN template apply", configuration: config) { benchmark in
        let s = HeaderBenchState.shared
        let t = s.vxlan
        var acc: UInt = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let h = t.apply(
                to: s.encapFrame(i),
                innerLength: HeaderBenchState.frameLength,
                sourcePort: TunnelTemplate.sourcePort(hash: UInt32(truncatingIfNeeded: i &* 0x9E37_79B9)),
                labelOrVNI: UInt32(truncatingIfNeeded: i)
            )
            acc &+= UInt(bitPattern: h)
        }
        benchmark.stopMeasurement()
        blackHole(acc)
    }

    Benchmark("MPLSoUDP template apply", configuration: config) { benchmark in
        let s = HeaderBenchState.shared
        let t = s.mpls
        var acc: UInt = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            // MPLSoUDP carries the IP packet: the inner Ethernet header is skipped.
            let h = t.apply(
                to: s.encapFrame(i) + HeaderSize.ethernet,
                innerLength: HeaderBenchState.frameLength - HeaderSize.ethernet,
                sourcePort: TunnelTemplate.sourcePort(hash: UInt32(truncatingIfNeeded: i &* 0x9E37_79B9)),
                labelOrVNI: UInt32(truncatingIfNeeded: i)
            )
            acc &+= UInt(bitPattern: h)
        }
        benchmark.stopMeasurement()
        blackHole(acc)
    }

    Benchmark("IPv4 header checksum verify", configuration: config) { benchmark in
        let s = HeaderBenchState.shared
        var good = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            if IPv4Header(s.frame(i) + HeaderSize.ethernet).isChecksumValid { good &+= 1 }
        }
        benchmark.stopMeasurement()
        precondition(good == benchmark.scaledIterations.count)
        blackHole(good)
    }

    Benchmark("IPv4 TTL decrement (RFC 1624 update)", configuration: config) { benchmark in
        let s = HeaderBenchState.shared
        var acc: UInt8 = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let ip = IPv4Header(s.encapFrame(i) + HeaderSize.ethernet)
            acc ^= ip.decrementTTL()
            ip.ttl = 64  // keep the frames reusable; the checksum is off by one step, which is fine here
        }
        benchmark.stopMeasurement()
        blackHole(acc)
    }
}
