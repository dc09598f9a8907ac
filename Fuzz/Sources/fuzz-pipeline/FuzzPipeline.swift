// The forwarding pipeline on arbitrary frames, from pods and from the fabric, against the
// sample topology (two VRFs, pods, a VXLAN and an MPLSoUDP remote node, ECMP, receive and
// discard routes, incoming labels and VNIs; with its fabric services, also the underlay
// VRF, a VRF whose pods leave through fabric SNAT and one forwarded in the IP fabric) and
// a changed version of it (a route replaced, an underlay neighbour unresolved, a port
// down, a VLAN, a label and a VNI gone), so flows installed under one are used under the
// other. With offloads: pods' taps and the fabric that take them, virtio-net headers as the
// kernel hands them over (superframes, partial checksums; through `VirtioNet.record`, as
// the IO loops do), superframes cut, encapsulated, sent whole or as UDP GSO trains, and
// runs of TCP segments that GRO coalesces toward a tap.
//
// Input: byte 0 chooses the world —
//   bits 0-1  fabric MTU 1500, 1400, 1280 or 576
//   bit 2     512-byte buffers instead of 2 KiB (pods' MTU stays 1500)
//   bit 3     a flow quota of 4 per VRF
//   bit 4     an output frame of 16
//   bit 5     a pool of 24 buffers (fragments and ICMP errors run out)
//   bit 6     an ICMP error burst of 2
//   bit 7     fabric services: SNAT (a range of 8 ports, so it runs out) and IP-fabric
//             forwarding; pods green-a, green-b (SNAT) and purple-a (IP fabric) take the
//             place of blue-b, 4095 and the second fabric
// byte 1 its offloads —
//   bit 0     blue-a's tap takes offloads (superframes and partial checksums, both ways)
//   bit 1     so do the other pods' taps
//   bit 2     so does the fabric (it sends UDP GSO trains)
//   bit 3     one big buffer instead of 8 (they run out)
//   bit 4     the pipeline without its fused fast path
// then packets, each a control byte, a big-endian length word and that many bytes (cut at
// the end of the input, at the buffer size, or for a port that reads virtio-net headers at
// the big buffers' size). The length word's bit 15 marks the packet's L4 checksum as left
// to an offload, as AF_PACKET's TP_STATUS_CSUMNOTREADY does; bit 14 says an extension byte
// follows it (bit 0: the packet's 10-byte virtio-net header comes next, taken by the fabric
// and by taps that take offloads, ignored elsewhere; bits 1-7: the packet comes that many
// more times, as a run of TCP segments: each next one's sequence number advanced by its
// payload, checksum kept); its bits 0-13 are the length. The control byte:
//   bits 0-2  receiving port: fabric, blue-a, blue-b, red-a, an unknown id, 4095, none, fabric
//   bit 3     process the frame so far first
//   bit 4     switch table versions (after the frame so far)
//   bits 5-7  advance the clock by that many × 700 ms and age flows (after the frame so far)
// A frame is processed when asked, when it holds 256 packets or the pool is empty, and at
// the end.
//
// Checked on every frame (PipelineAudit): every packet sent or counted under one drop
// reason (a segment a superframe became, a datagram a train will be, each counted), no
// buffer (small or big) leaked or freed twice, every frame out inside its buffer, to a known
// port, within its MTU (a superframe's or train's every segment); at the end, the flow
// tables' bookkeeping. ASan fences every buffer.
// And every input runs twice, over buffers pre-filled with 0x00 and with 0xFF: the
// outputs and counters must be the same, or something read bytes no frame gave it.

import FuzzSupport
import VRouterCore

typealias Topo = SampleTopology

/// Tables (as given and changed) by world byte bits 0-1 and 7 and offload byte bits 0-2,
/// made when first needed.
nonisolated(unsafe) var worlds: [Int: [ForwardingTables]] = [:]

func tables(world: UInt8, offloads: UInt8) -> [ForwardingTables] {
    let key = Int(world & 0x83) << 8 | Int(offloads & 7)
    if let t = worlds[key] { return t }
    let t = tables(fabricMTU: [1500, 1400, 1280, 576][Int(world & 3)], services: world & 0x80 != 0, offloads: offloads)
    worlds[key] = t
    return t
}

func tables(fabricMTU mtu: Int, services: Bool, offloads: UInt8) -> [ForwardingTables] {
    var topology = SampleTopology(fabricMTU: mtu, fabricServices: services)
    do {
        var b = topology.builder
        let pods =
            services ? [Topo.blueB, Topo.redA, Topo.greenA, Topo.greenB, Topo.purpleA] : [Topo.blueB, Topo.redA]
        for (id, on) in [(Topo.blueA, offloads & 1 != 0), (Topo.fabricPort, offloads & 4 != 0)]
            + pods.map({ ($0, offloads & 2 != 0) })
        where on {
            var p = b.ports[id]!
            p.offloads = true
            try b.setPort(id, p)
        }
        topology.builder = b
    } catch {
        fatalError("topology with offloads is invalid: \(error)")
    }
    let before = topology.builder.build()
    do {
        var b = topology.builder
        try b.removeRoute(vrf: Topo.blue, IPv4Prefix("203.0.113.0/24")!)
        try b.addRoute(vrf: Topo.blue, IPv4Prefix("203.0.113.0/25")!, RouteTarget(nexthop: Topo.nhDiscard))
        try b.setNexthop(
            Topo.nhNodeB,
            .tunnel(.mplsOverUDP, port: Topo.fabricPort, destination: Topo.nodeB, underlayMAC: MACAddress(0))
        )
        var red = b.ports[Topo.redA]!
        red.vlan = 100
        try b.setPort(Topo.redA, red)
        var blueB = b.ports[Topo.blueB]!
        blueB.up = false
        try b.setPort(Topo.blueB, blueB)
        try b.removeLabel(Topo.labelToBlueB)
        try b.removeVNI(Topo.vniRed)
        topology.builder = b
    } catch {
        fatalError("changed topology is invalid: \(error)")
    }
    return [before, topology.builder.build()]
}

/// Receiving ports by the control byte's bits 0-2, without and with fabric services.
let receivingPorts: [[UInt16]] = [
    [Topo.fabricPort, Topo.blueA, Topo.blueB, Topo.redA, 7, 4095, PacketMeta.noPort, 0],
    [Topo.fabricPort, Topo.blueA, Topo.greenA, Topo.redA, 7, Topo.greenB, PacketMeta.noPort, Topo.purpleA],
]

struct Sent: Equatable {
    var port: UInt16
    var bytes: [UInt8]
    var offload = PacketOffload()
}

struct Outcome: Equatable {
    var sent: [Sent] = []
    var drops: [UInt64] = []
    var events: [UInt64] = []
}

/// A pool and a pipeline for one world and fill, kept across inputs (making them anew
/// each time costs more than the run) and renewed before each.
final class Rig {
    let fenced: FencedPool
    var pipeline: Pipeline
    let fill: UInt8
    var frame = Frame.allocate()
    var output: Frame
    var punt = Frame.allocate()
    let ports: [UInt16]

    init(world: UInt8, offloads: UInt8, fill: UInt8) {
        var config = PipelineConfig()
        config.fusedFastPath = offloads & 0x10 == 0
        config.flowCapacity = 256
        config.flowIdleTimeout = 3_000
        config.flowClosingTimeout = 1_000
        if world & 0x08 != 0 { config.flowQuotaPerVRF = 4 }
        config.outputCapacity = world & 0x10 != 0 ? 16 : 1024
        if world & 0x40 != 0 { config.icmpErrorBurst = 2 }
        if world & 0x80 != 0 { config.snat = SNATPortRange(first: 20000, last: 20007) }
        ports = receivingPorts[Int(world >> 7)]
        self.fill = fill
        fenced = FencedPool(
            count: world & 0x20 != 0 ? 24 : 640,
            bufferSize: world & 0x04 != 0 ? 512 : 2048,
            bigBuffers: offloads & 0x08 != 0 ? 1 : 8,
            fill: fill
        )
        pipeline = Pipeline(pool: fenced.pool, config: config)
        output = Frame.allocate(capacity: config.outputCapacity)
    }

    /// Runs the packets of `input` (after its world bytes) and returns what came out.
    func run(_ input: inout FuzzInput, tables: [ForwardingTables]) -> Outcome {
        fenced.renew(fill: fill)
        pipeline.reset()
        let pool = fenced.pool
        var version = 0
        var now: UInt32 = 1_000
        var outcome = Outcome()

        func process() {
            guard !frame.isEmpty else { return }
            let view = tables[version].viewPointer
            let audit = PipelineAudit(pipeline, input: frame, output: output, punt: punt)
            pipeline.process(&frame, tables: UnsafePointer(view), now: now, output: &output, punt: &punt)
            require(
                noProblems: audit.problems(pipeline, input: frame, output: output, punt: punt, tables: view.pointee),
                "frame"
            )
            for i in 0..<output.count {
                let idx = output[i]
                let m = pool.metas[Int(idx)]
                outcome.sent.append(Sent(port: m.txPort, bytes: Array(pool.bytes(idx)), offload: m.offload))
            }
            for i in 0..<punt.count {
                outcome.sent.append(Sent(port: PacketMeta.puntPort, bytes: Array(pool.bytes(punt[i]))))
            }
            pool.free(&output)
            pool.free(&punt)
        }

        while !input.isAtEnd {
            let control = input.byte()
            let word = input.bigEndian16()
            let extended = word & 0x4000 != 0 ? input.byte() : 0
            var header: VirtioNet.Header?
            if extended & 1 != 0 {
                let raw = (0..<10).map { _ in input.byte() }
                header = raw.withUnsafeBytes { VirtioNet.Header(reading: $0.baseAddress!) }
            }
            if control & 0xF8 != 0 { process() }
            if control & 0x10 != 0 { version ^= 1 }
            if control >> 5 != 0 {
                now &+= UInt32(control >> 5) &* 700
                _ = pipeline.age(now: now)
            }
            let rx = ports[Int(control & 7)]
            // The IO loops read a virtio-net header (and frames up to a big buffer) on the
            // fabric and on taps that take offloads.
            let port = tables[version].viewPointer.pointee.port(rx)
            let readsHeaders =
                port.map { $0.pointee.kind == .fabric || $0.pointee.flags.contains(.offloads) } ?? false
            let limit = readsHeaders && fenced.bigBuffers > 0 ? pool.bigMaxFrameLength : pool.maxFrameLength
            let bytes = input.take(min(Int(word & 0x3FFF), limit))
            for k in 0...Int(extended >> 1) {
                var slot = pool.alloc(forLength: bytes.count)
                if slot == nil {
                    process()
                    slot = pool.alloc(forLength: bytes.count)
                }
                guard let idx = slot else { break }
                require(pool.load(idx, bytes: bytes), "a frame of \(bytes.count) B did not load")
                let m = pool.meta(idx)
                m.pointee.rxPort = rx
                if word & 0x8000 != 0 { m.pointee.flags = .checksumPartial }
                if let h = header, readsHeaders, h.flags | h.gsoType != 0, !VirtioNet.record(h, in: m) {
                    m.pointee.offload.gsoType = 0xFF  // as the IO loops mark it: dropped as offload_invalid
                }
                if k > 0 { TCPRun.advance(pool.packet(idx), length: bytes.count, segments: k) }
                frame.append(idx)
                if frame.isFull || pool.available == 0 || pool.bigAvailable == 0 { process() }
            }
        }
        process()
        require(
            fenced.allFree,
            "buffers not returned after the input: \(pool.count - pool.available) small, "
                + "\(fenced.bigBuffers - pool.bigAvailable) big"
        )
        require(noProblems: pipeline.flows4.problems(), "IPv4 flow table")
        require(noProblems: pipeline.flows6.problems(), "IPv6 flow table")
        let c = pipeline.counters
        outcome.drops = DropReason.allCases.map { c.dropCount($0) }
        outcome.events = PipelineEvent.allCases.map { c.eventCount($0) }
        return outcome
    }
}

/// Rigs by world byte (the bits that shape a rig) and fill.
nonisolated(unsafe) var rigs: [Int: Rig] = [:]

func run(_ data: UnsafeRawPointer, _ size: Int, fill: UInt8) -> Outcome {
    var input = FuzzInput(data, size)
    let world = input.byte()
    let offloads = input.byte() & 0x1F
    let key = (Int(world & 0xFC) << 8 | Int(offloads & 0x18)) << 8 | Int(fill)
    let rig = rigs[key] ?? Rig(world: world, offloads: offloads, fill: fill)
    rigs[key] = rig
    return rig.run(&input, tables: tables(world: world, offloads: offloads))
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPipeline(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let zeros = run(data, size, fill: 0x00)
    let ones = run(data, size, fill: 0xFF)
    if zeros != ones {
        let first = zip(zeros.sent, ones.sent).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        require(
            false,
            "the outcome depends on bytes outside the frames: \(zeros.sent.count) vs \(ones.sent.count) sent, "
                + "first difference at output \(first.map(String.init) ?? "-"), drops \(zeros.drops) vs \(ones.drops)"
        )
    }
    return 0
}
