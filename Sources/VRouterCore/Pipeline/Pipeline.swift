// The forwarding pipeline of one worker: a fixed graph of nodes run over a whole frame at
// a time, as in VPP (each node's loop stays in the i-cache for the frame, and lookups of
// different packets overlap their cache misses):
//
//   ethernet-input ─┬─ ip ──→ flow-lookup ─ hit ─────────────────→ rewrite ─→ output
//   (VLAN, ARP/ND,  │                      └ miss → route-lookup ─┘   │
//    vxlan-decap,   ├─ arp/nd → arp-nd (proxy replies) ──────────────→ output
//    mpls-udp-decap,│           └ fabric ARP replies ────────────────→ punt (control plane)
//    anti-spoofing) └─ drop (one named counter)                       │
//                            icmp-error (TTL, no route, MTU) → route-lookup → rewrite
//
// The pipeline is pure: it reads tables, packet buffers and the time it is given, and
// writes packet buffers, the output and punt frames and its counters. No I/O, no allocation.

import CVRouterShims

public struct PipelineConfig: Sendable {
    /// Flow-cache capacity (IPv4 entries).
    public var flowCapacity: Int = 1 << 16
    /// IPv6 flow-cache capacity; nil: the same as `flowCapacity` (at least 1024). It was a
    /// quarter, and an IPv6-heavy worker then took the slow path for most packets
    /// (BENCHMARKS.md: pod6-vxlan at 64K flows 2.2 Mpps, evicting without end).
    public var flowCapacity6: Int? = nil
    /// Most flows one VRF may hold (nil: only the capacity bounds it).
    public var flowQuotaPerVRF: Int? = nil
    /// Flows idle this long are expired (milliseconds; `now` is in milliseconds).
    public var flowIdleTimeout: UInt32 = 60_000
    /// TCP flows that saw FIN or RST expire this soon after their last packet.
    public var flowClosingTimeout: UInt32 = 2_000
    /// ICMP errors generated per second (token bucket), and the burst allowed.
    public var icmpErrorsPerSecond: UInt32 = 1_000
    public var icmpErrorBurst: UInt32 = 200
    /// Clamp the TCP MSS of SYNs entering a tunnel so segments fit its MTU.
    public var clampMSS: Bool = true
    /// Take per-node timestamps each frame (for `bench`; costs ~4 clock reads per frame).
    public var measureNodes: Bool = false
    /// Room in the output frame: fragments can make one packet many.
    public var outputCapacity: Int = 1024
    /// This worker's share of the node's SNAT port range (nil: SNAT nexthops drop as
    /// `nat_ports_exhausted`).
    public var snat: SNATPortRange? = nil
    /// The fused fast path (FastPath.swift) for the common case: pod IPv4 TCP/UDP and
    /// VXLAN-decapsulated IPv4 that hit a flow toward a tunnel or a local pod. Off, every
    /// packet takes the general nodes (the differential tests compare the two).
    public var fusedFastPath: Bool = true
    public init() {}
}

/// The port that names the control plane where a packet's destination is reported (tests,
/// logs). Punted packets themselves leave `process` in their own frame, not in the output.
extension PacketMeta {
    public static let puntPort: UInt16 = 0xFFFE
}

public struct Pipeline: ~Copyable {
    public let pool: PacketPool
    public let counters: Counters
    public let flows4: FlowTable<IPv4FlowKey>
    public let flows6: FlowTable<IPv6FlowKey>
    /// Fabric SNAT: this worker's ports and what uses them.
    public let nat: SourceNAT
    public var config: PipelineConfig

    // Per-frame work lists; their storage is allocated once here.
    @usableFromInline var ipList: Frame
    @usableFromInline var missList: Frame
    @usableFromInline var arpList: Frame
    @usableFromInline var generated: Frame
    @usableFromInline var fragments: Frame
    /// Segments of a superframe cut in software, and GRO toward taps that take superframes.
    @usableFromInline var segments: Frame
    @usableFromInline var coalescer = TCPCoalescer()
    /// This frame sent TCP toward such a tap: coalesce the output.
    @usableFromInline var groPending = false
    // Flow keys, hashes and looked-up slots of this frame's IP packets, one set per
    // family, by position (meta.aux holds a packet's position in its family's arrays).
    @usableFromInline let keys4: UnsafeMutablePointer<IPv4FlowKey>
    @usableFromInline let hashes4: UnsafeMutablePointer<UInt32>
    @usableFromInline let slots4: UnsafeMutablePointer<UInt32>
    @usableFromInline var count4 = 0
    @usableFromInline let keys6: UnsafeMutablePointer<IPv6FlowKey>
    @usableFromInline let hashes6: UnsafeMutablePointer<UInt32>
    @usableFromInline let slots6: UnsafeMutablePointer<UInt32>
    @usableFromInline var count6 = 0
    // The fused fast path's per-frame state: for ipList position i, the packet's position
    // in its family's arrays (bit 31: IPv6); for IPv4 position j, the fast parse's result
    // (FastParse word) or 0 when the packet took the general ethernet-input.
    @usableFromInline let ipPos: UnsafeMutablePointer<UInt32>
    @usableFromInline let fast4: UnsafeMutablePointer<UInt64>
    // route-lookup's batch: destinations of a run of misses, and every miss's LPM result.
    @usableFromInline let lpmKeys4: UnsafeMutablePointer<UInt32>
    @usableFromInline let lpmKeys6: UnsafeMutablePointer<UInt128>
    @usableFromInline let missRoutes: UnsafeMutablePointer<UInt32>
    // lookupDestinations' grouping of the misses by VRF and family (a counting sort).
    @usableFromInline let missGroups: UnsafeMutablePointer<UInt8>
    @usableFromInline let lpmPositions: UnsafeMutablePointer<UInt16>
    @usableFromInline let lpmResults: UnsafeMutablePointer<UInt32>
    @usableFromInline let lpmGroupKeys: UnsafeMutablePointer<UInt32>
    @usableFromInline let lpmGroupStarts: UnsafeMutablePointer<Int>
    /// (VRF, family) pairs per frame whose misses are batched together.
    @usableFromInline static var lpmGroups: Int { 8 }
    @usableFromInline var icmpTokens: UInt32
    @usableFromInline var icmpRefilledAt: UInt32 = 0
    @usableFromInline var outerID: UInt16 = 0
    /// The `now` of the frame being processed (ms).
    @usableFromInline var lastNow: UInt32 = 0

    public init(pool: PacketPool, config: PipelineConfig = PipelineConfig()) {
        self.pool = pool
        self.config = config
        counters = .allocate()
        flows4 = FlowTable(capacity: config.flowCapacity, vrfLimit: 1 << 16, defaultQuota: config.flowQuotaPerVRF)
        flows6 = FlowTable(
            capacity: config.flowCapacity6 ?? max(config.flowCapacity, 1024),
            vrfLimit: 1 << 16,
            defaultQuota: config.flowQuotaPerVRF
        )
        nat = SourceNAT(range: config.snat)
        ipList = .allocate()
        missList = .allocate()
        arpList = .allocate()
        generated = .allocate()
        fragments = .allocate(capacity: 64)
        segments = .allocate(capacity: 1024)
        let n = Frame.defaultCapacity
        keys4 = .allocate(capacity: n)
        hashes4 = .allocate(capacity: n)
        slots4 = .allocate(capacity: n)
        keys6 = .allocate(capacity: n)
        hashes6 = .allocate(capacity: n)
        slots6 = .allocate(capacity: n)
        ipPos = .allocate(capacity: n)
        fast4 = .allocate(capacity: n)
        lpmKeys4 = .allocate(capacity: n)
        lpmKeys6 = .allocate(capacity: n)
        missRoutes = .allocate(capacity: n)
        missGroups = .allocate(capacity: n)
        lpmPositions = .allocate(capacity: n)
        lpmResults = .allocate(capacity: n)
        lpmGroupKeys = .allocate(capacity: Self.lpmGroups)
        lpmGroupStarts = .allocate(capacity: Self.lpmGroups + 1)
        icmpTokens = config.icmpErrorBurst
    }

    deinit {
        counters.deallocate()
        ipList.deallocate()
        missList.deallocate()
        arpList.deallocate()
        generated.deallocate()
        fragments.deallocate()
        segments.deallocate()
        flows4.deallocate()
        flows6.deallocate()
        nat.deallocate()
        keys4.deallocate()
        hashes4.deallocate()
        slots4.deallocate()
        keys6.deallocate()
        hashes6.deallocate()
        slots6.deallocate()
        ipPos.deallocate()
        fast4.deallocate()
        lpmKeys4.deallocate()
        lpmKeys6.deallocate()
        missRoutes.deallocate()
        missGroups.deallocate()
        lpmPositions.deallocate()
        lpmResults.deallocate()
        lpmGroupKeys.deallocate()
        lpmGroupStarts.deallocate()
    }

    /// Forwards one frame (≤ 256 packets). Every packet of `input` ends up either appended
    /// to `output` (with `meta.txPort` set; the caller transmits and frees it), appended to
    /// `punt` (for the control plane: fabric ARP replies and the like; the caller hands them
    /// on or frees them, so nobody scans the output for them), or freed and counted under one
    /// drop reason. `input` is empty afterwards. `now` is in milliseconds. `punt` needs room
    /// for a whole input frame.
    public mutating func process(
        _ input: inout Frame,
        tables: UnsafePointer<ForwardingView>,
        now: UInt32,
        output: inout Frame,
        punt: inout Frame
    ) {
        let view = tables.pointee
        lastNow = now
        let timing = config.measureNodes
        var t0: UInt64 = timing ? vrt_monotonic_ns() : 0
        let n = input.count

        ipList.removeAll()
        missList.removeAll()
        arpList.removeAll()
        generated.removeAll()
        count4 = 0
        count6 = 0

        let fused = config.fusedFastPath
        // Two inlined copies, so the flag is not tested per packet.
        if fused {
            ethernetInput(&input, view, fused: true, output: &output)
        } else {
            ethernetInput(&input, view, fused: false, output: &output)
        }
        input.removeAll()
        if timing { t0 = lap(.ethernetInput, t0, n) }

        // Hits are rewritten before the misses are resolved (in both modes, so that the
        // order of outputs, ICMP errors and outer identifications is the same): fused,
        // flow-lookup rewrites each hit as it finds it.
        if fused {
            let ips = ipList.count
            flowLookupFused(view, now: now, output: &output)
            if timing { t0 = lap(.flowLookup, t0, ips) }
        } else {
            flowLookup(view, now: now)
            if timing { t0 = lap(.flowLookup, t0, ipList.count) }
            let hits = ipList.count
            rewrite(generated: false, view, output: &output)
            if timing { t0 = lap(.rewrite, t0, hits) }
        }

        let misses = missList.count
        routeLookup(view, now: now)
        if timing { t0 = lap(.routeLookup, t0, misses) }

        let toRewrite = ipList.count
        if fused {
            rewriteResolvedFused(view, output: &output)
        } else {
            rewrite(generated: false, view, output: &output)
        }
        if timing { t0 = lap(.rewrite, t0, toRewrite) }

        if arpList.count > 0 {
            let a = arpList.count
            arpAndND(view, output: &output, punt: &punt)
            if timing { t0 = lap(.arp, t0, a) }
        }

        if generated.count > 0 {
            let g = generated.count
            forwardGenerated(view, output: &output)
            if timing { t0 = lap(.icmp, t0, g) }
        }
        if groPending {
            groPending = false
            coalesceOutput(view, output: &output)
        }
    }

    @inline(__always)
    mutating func lap(_ node: PipelineNode, _ start: UInt64, _ packets: Int) -> UInt64 {
        let t = vrt_monotonic_ns()
        let c = counters.nodes + node.rawValue
        c.pointee.frames &+= 1
        c.pointee.packets &+= UInt64(packets)
        c.pointee.nanoseconds &+= t &- start
        return t
    }

    /// Frees a packet and counts it under `reason` (and as a drop of its receiving port).
    @inlinable @inline(__always)
    mutating func drop(_ idx: UInt32, _ reason: DropReason) {
        counters.drop(reason, port: pool.metas[Int(idx)].rxPort)
        pool.free(idx)
    }

    /// Forgets everything traffic taught it (flows, counters, the ICMP token bucket, the outer
    /// IPv4 identification) and is as new, keeping its memory: for runs that must start alike,
    /// such as the fuzzer's two runs of every input.
    public mutating func reset() {
        flows4.removeAll()
        flows4.resetStats()
        flows6.removeAll()
        flows6.resetStats()
        // The translations' ports went with the flows that held them.
        nat.reset()
        counters.reset()
        icmpTokens = config.icmpErrorBurst
        icmpRefilledAt = 0
        outerID = 0
        lastNow = 0
    }

    /// Expires idle flows, a slice of the table at a time; call between frames.
    /// Translated flows expire as pairs (`ageTranslations`).
    public mutating func age(now: UInt32, maxScan: Int = 4096) -> Int {
        flows4.expire(
            now: now,
            idleTimeout: config.flowIdleTimeout,
            closingTimeout: config.flowClosingTimeout,
            maxScan: maxScan
        )
            + flows6.expire(
                now: now,
                idleTimeout: config.flowIdleTimeout,
                closingTimeout: config.flowClosingTimeout,
                maxScan: maxScan
            ) + ageTranslations(now: now, maxScan: maxScan)
    }
}
