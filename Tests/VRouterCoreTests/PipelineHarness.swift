import Glibc
import Testing

// A pipeline on the sample topology, fed byte arrays, returning what it transmitted.
@testable import VRouterCore

final class PipelineHarness {
    var topology: SampleTopology
    let pool: PacketPool
    var pipeline: Pipeline
    var tables: ForwardingTables
    var input = Frame.allocate()
    var output: Frame
    var punt = Frame.allocate()
    var now: UInt32 = 1_000

    struct Sent: CustomStringConvertible {
        let port: UInt16
        let bytes: [UInt8]
        /// What the port's virtio-net header would say about it (a superframe, a checksum left
        /// partial), when the port takes offloads.
        var offload = PacketOffload()
        var description: String { "port \(port): \(bytes.count) B" }
        var parsed: ParsedPacket { bytes.withUnsafeBytes { PacketParser.parse($0.baseAddress!, length: $0.count) } }
    }

    /// Which path the pipeline tests run: the fused fast path unless VRT_PIPELINE_FUSED=0
    /// (tools/test runs the pipeline tests both ways).
    static let fusedFastPath = getenv("VRT_PIPELINE_FUSED").map { String(cString: $0) != "0" } ?? true

    init(
        config: PipelineConfig = PipelineConfig(),
        topology: SampleTopology = SampleTopology(),
        poolSize: Int = 4096,
        bigBuffers: Int = 0
    ) {
        self.topology = topology
        pool = .allocate(count: poolSize, bufferSize: 2048, bigBuffers: bigBuffers)
        var config = config
        config.fusedFastPath = Self.fusedFastPath
        pipeline = Pipeline(pool: pool, config: config)
        output = .allocate(capacity: config.outputCapacity)
        tables = self.topology.builder.build()
    }

    deinit {
        input.deallocate()
        output.deallocate()
        punt.deallocate()
        pool.deallocate()
    }

    func rebuild() { tables = topology.builder.build() }

    /// Runs one frame made of `packets` (bytes, receiving port) and returns the output, then
    /// what was punted to the control plane (reported on `PacketMeta.puntPort`). `flags` are
    /// what the port layer would have set on each packet.
    func run(_ packets: [([UInt8], UInt16)], flags: PacketFlags = []) -> [Sent] {
        run(arrivals: packets.map { Arrival(bytes: $0.0, port: $0.1, flags: flags) })
    }

    /// A received packet as the port layer hands it over: the flags it set (a partial
    /// checksum on the fabric) and what a virtio-net header said (`VirtioNet.record`).
    struct Arrival {
        var bytes: [UInt8]
        var port: UInt16
        var flags: PacketFlags = []
        var offload = PacketOffload()
    }

    /// `run` for packets with port-layer state; those too long for a buffer go into big
    /// ones (the harness needs `bigBuffers`).
    func run(arrivals: [Arrival]) -> [Sent] {
        precondition(arrivals.count <= Frame.defaultCapacity)
        for a in arrivals {
            let idx = a.bytes.count > pool.bufferSize - PacketPool.headroom ? pool.allocBig()! : pool.alloc()!
            _ = a.bytes.withUnsafeBytes { pool.load(idx, bytes: $0) }
            pool.metas[Int(idx)].rxPort = a.port
            pool.metas[Int(idx)].flags = a.flags
            pool.metas[Int(idx)].offload = a.offload
            input.append(idx)
        }
        let audit = PipelineAudit(pipeline, input: input, output: output, punt: punt)
        pipeline.process(&input, tables: UnsafePointer(tables.viewPointer), now: now, output: &output, punt: &punt)
        // What every frame must keep (conservation, buffers, frame bounds, MTUs, flow bookkeeping).
        let problems =
            audit.problems(pipeline, input: input, output: output, punt: punt, tables: tables.view)
            + pipeline.flows4.problems() + pipeline.flows6.problems()
        #expect(problems.isEmpty, "\(problems)")
        var sent: [Sent] = []
        for i in 0..<output.count {
            let idx = output[i]
            let m = pool.metas[Int(idx)]
            sent.append(Sent(port: m.txPort, bytes: Array(pool.bytes(idx)), offload: m.offload))
        }
        for i in 0..<punt.count {
            sent.append(Sent(port: PacketMeta.puntPort, bytes: Array(pool.bytes(punt[i]))))
        }
        pool.free(&output)
        pool.free(&punt)
        return sent
    }

    func run(_ bytes: [UInt8], from port: UInt16) -> [Sent] { run([(bytes, port)]) }

    /// Runs one frame of packets already in the pool (their metadata as the port layer
    /// left it) and returns the output's buffers, still owned by the caller (free them).
    func run(loaded: [UInt32]) -> [UInt32] {
        for idx in loaded { input.append(idx) }
        pipeline.process(&input, tables: UnsafePointer(tables.viewPointer), now: now, output: &output, punt: &punt)
        let out = (0..<output.count).map { output[$0] }
        output.removeAll()
        pool.free(&punt)
        return out
    }

    var counters: Counters { pipeline.counters }
    func drops(_ r: DropReason) -> UInt64 { counters.dropCount(r) }
    func events(_ e: PipelineEvent) -> UInt64 { counters.eventCount(e) }
}

/// Builds test frames with the header builders.
enum Packets {
    static func build(_ size: Int, _ body: (UnsafeMutableRawPointer) -> Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: size)
        let n = bytes.withUnsafeMutableBytes { body($0.baseAddress!) }
        return Array(bytes[0..<n])
    }

    static func udp4(
        from srcMAC: MACAddress,
        to dstMAC: MACAddress = .vrouter,
        _ src: IPv4Address,
        _ dst: IPv4Address,
        sport: UInt16 = 40000,
        dport: UInt16 = 9,
        payload: Int = 18,
        ttl: UInt8 = 64,
        df: Bool = false,
        vlan: UInt16? = nil,
        id: UInt16 = 1
    ) -> [UInt8] {
        build(64 + payload) { p in
            var o = PacketBuilder.ethernet(
                p,
                destination: dstMAC,
                source: srcMAC,
                etherType: EtherType.ipv4,
                vlanTCI: vlan
            )
            let ip = o
            o += 20
            for i in 0..<payload { p.setU8(o + 8 + i, UInt8(truncatingIfNeeded: i &* 7 &+ 3)) }
            _ = PacketBuilder.udp(
                p + o,
                sourcePort: sport,
                destinationPort: dport,
                payloadLength: payload,
                checksum: .ipv4(source: src, destination: dst)
            )
            _ = PacketBuilder.ipv4(
                p + ip,
                source: src,
                destination: dst,
                proto: IPProtocol.udp,
                payloadLength: 8 + payload,
                ttl: ttl,
                identification: id,
                dontFragment: df
            )
            return o + 8 + payload
        }
    }

    static func udp6(
        from srcMAC: MACAddress,
        _ src: IPv6Address,
        _ dst: IPv6Address,
        sport: UInt16 = 40000,
        dport: UInt16 = 9,
        payload: Int = 18,
        hop: UInt8 = 64
    ) -> [UInt8] {
        build(80 + payload) { p in
            var o = PacketBuilder.ethernet(p, destination: .vrouter, source: srcMAC, etherType: EtherType.ipv6)
            let ip = o
            o += 40
            for i in 0..<payload { p.setU8(o + 8 + i, UInt8(truncatingIfNeeded: i)) }
            _ = PacketBuilder.udp(
                p + o,
                sourcePort: sport,
                destinationPort: dport,
                payloadLength: payload,
                checksum: .ipv6(source: src, destination: dst)
            )
            _ = PacketBuilder.ipv6(
                p + ip,
                source: src,
                destination: dst,
                nextHeader: IPProtocol.udp,
                payloadLength: 8 + payload,
                hopLimit: hop
            )
            return o + 8 + payload
        }
    }

    static func echo4(
        from srcMAC: MACAddress,
        _ src: IPv4Address,
        _ dst: IPv4Address,
        ttl: UInt8 = 64,
        id: UInt16 = 7
    ) -> [UInt8] {
        build(128) { p in
            var o = PacketBuilder.ethernet(p, destination: .vrouter, source: srcMAC, etherType: EtherType.ipv4)
            let ip = o
            o += 20
            let payload: [UInt8] = Array(0..<24)
            let n = payload.withUnsafeBytes {
                PacketBuilder.icmpEcho(p + o, isReply: false, identifier: id, sequence: 1, payload: $0)
            }
            _ = PacketBuilder.ipv4(
                p + ip,
                source: src,
                destination: dst,
                proto: IPProtocol.icmp,
                payloadLength: n,
                ttl: ttl
            )
            return o + n
        }
    }

    static func arpRequest(from mac: MACAddress, _ sender: IPv4Address, asking target: IPv4Address) -> [UInt8] {
        build(64) { p in PacketBuilder.arpRequestFrame(p, senderMAC: mac, senderIP: sender, targetIP: target) }
    }

    /// Wraps an Ethernet frame in outer Ethernet/IPv4/UDP/VXLAN toward this node.
    static func vxlan(
        _ inner: [UInt8],
        vni: UInt32,
        from src: IPv4Address = SampleTopology.nodeA,
        srcMAC: MACAddress = SampleTopology.nodeAMAC,
        to dst: IPv4Address = SampleTopology.underlay
    ) -> [UInt8] {
        build(inner.count + 64) { p in
            var o = PacketBuilder.ethernet(
                p,
                destination: SampleTopology.nodeMAC,
                source: srcMAC,
                etherType: EtherType.ipv4
            )
            o += PacketBuilder.ipv4(
                p + o,
                source: src,
                destination: dst,
                proto: IPProtocol.udp,
                payloadLength: 16 + inner.count
            )
            o += PacketBuilder.udp(
                p + o,
                sourcePort: 50000,
                destinationPort: UDPPort.vxlan,
                payloadLength: 8 + inner.count,
                checksum: nil
            )
            p.setBE32(o, 0x0800_0000)
            p.setBE32(o + 4, vni << 8)
            o += 8
            inner.withUnsafeBytes { (p + o).copyMemory(from: $0.baseAddress!, byteCount: inner.count) }
            return o + inner.count
        }
    }

    /// Wraps an IP packet (no Ethernet) in outer Ethernet/IPv4/UDP/MPLS toward this node.
    static func mplsUDP(
        _ innerIP: [UInt8],
        label: UInt32,
        ttl: UInt8 = 64,
        from src: IPv4Address = SampleTopology.nodeB,
        srcMAC: MACAddress = SampleTopology.nodeBMAC
    ) -> [UInt8] {
        build(innerIP.count + 64) { p in
            var o = PacketBuilder.ethernet(
                p,
                destination: SampleTopology.nodeMAC,
                source: srcMAC,
                etherType: EtherType.ipv4
            )
            o += PacketBuilder.ipv4(
                p + o,
                source: src,
                destination: SampleTopology.underlay,
                proto: IPProtocol.udp,
                payloadLength: 12 + innerIP.count
            )
            o += PacketBuilder.udp(
                p + o,
                sourcePort: 50001,
                destinationPort: UDPPort.mplsOverUDP,
                payloadLength: 4 + innerIP.count,
                checksum: nil
            )
            p.setBE32(o, label << 12 | 0x100 | UInt32(ttl))
            o += 4
            innerIP.withUnsafeBytes { (p + o).copyMemory(from: $0.baseAddress!, byteCount: innerIP.count) }
            return o + innerIP.count
        }
    }

    static func ipv4Checksum(_ b: [UInt8], at off: Int) -> Bool {
        let ihl = Int(b[off] & 0xF) * 4
        return b.withUnsafeBytes { Checksum.sum($0.baseAddress! + off, count: ihl) } == 0xFFFF
    }
}
