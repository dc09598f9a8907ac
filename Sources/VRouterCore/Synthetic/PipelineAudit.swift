// What forwarding a frame must always keep, checked from outside the pipeline by the
// pipeline tests (on every frame they run) and by the pipeline fuzzer (on every frame it
// makes up):
//   - every packet in is either sent, punted to the control plane, or counted under exactly
//     one drop reason; packets the node makes itself (ICMP errors, the fragments after a
//     packet's first, the segments after a superframe's first) are held to the same rule,
//     segments GRO merged into another leave it, and a UDP GSO train counts as the
//     datagrams the kernel will cut it into;
//   - every buffer (small or big) is free or in the output or punt frame, exactly once
//     (no leak, no double free);
//   - every frame out lies inside its buffer, goes to a port the tables know (or to the
//     control plane), and fits that port's MTU (a reply made in place of a request that
//     itself was too big for the port may be as big as the request; a superframe or a
//     train each of whose segments does), and carries offload state only where the port
//     can be told it (a superframe or a partial checksum to a tap that takes offloads, a
//     train to a fabric that sends them, a partial checksum to any fabric: AF_PACKET
//     always has the header there).
// Slow and allocating on purpose: it is a checker, never run by a worker.

public struct PipelineAudit {
    let inputCount: Int
    let outputCount: Int
    let puntCount: Int
    let available: Int
    let drops: UInt64
    let born: UInt64
    /// Input buffers and their frame lengths.
    let inputLengths: [UInt32: Int]

    /// Takes the counts before `pipeline.process(&input, …, output: &output, punt: &punt)`.
    public init(_ pipeline: borrowing Pipeline, input: Frame, output: Frame, punt: Frame) {
        inputCount = input.count
        outputCount = output.count
        puntCount = punt.count
        available = Self.free(pipeline.pool)
        drops = pipeline.counters.totalDrops
        born = Self.born(pipeline.counters)
        var lengths: [UInt32: Int] = [:]
        for i in 0..<input.count { lengths[input[i]] = Int(pipeline.pool.metas[Int(input[i])].length) }
        inputLengths = lengths
    }

    /// Packets the pipeline made in new buffers: ICMP errors, every fragment but the first
    /// of each fragmented packet (the first keeps the original's buffer) and every segment
    /// but one of each superframe cut in software; less the segments GRO merged into
    /// others (wrapping: the difference of two readings is what counts).
    static func born(_ c: Counters) -> UInt64 {
        c.eventCount(.icmpErrorSent) &+ c.eventCount(.fragmentsMade) &- c.eventCount(.packetsFragmented)
            &+ c.eventCount(.gsoSegments) &- c.eventCount(.superframesSegmented)
            &- c.eventCount(.superframesEncapsulated) &- c.eventCount(.groMerged)
    }

    /// Free buffers of both classes.
    static func free(_ pool: PacketPool) -> Int { pool.available + pool.bigAvailable }

    /// Whether `idx` names a buffer: a small one, or the first slot of a big one.
    static func isBuffer(_ pool: PacketPool, _ idx: UInt32) -> Bool {
        if idx < pool.bigStart { return true }
        let k = Int(idx - pool.bigStart)
        return k % pool.bigSpan == 0 && k / pool.bigSpan < pool.bigCount
    }

    /// The datagrams a UDP GSO train toward the fabric becomes (1 for anything else).
    static func datagrams(_ pool: PacketPool, _ idx: UInt32, _ kind: PortKind) -> Int {
        let o = pool.metas[Int(idx)].offload
        guard kind == .fabric, o.gsoType & ~VirtioNet.gsoECN == VirtioNet.gsoUDPL4, o.gsoSize > 0 else { return 1 }
        let udpLength = Int(pool.buffer(idx).be16(Int(o.checksumStart) + 4))
        return max(1, (udpLength - 8 + Int(o.gsoSize) - 1) / Int(o.gsoSize))
    }

    /// What the frame just processed broke, one line each; empty when all holds.
    public func problems(
        _ pipeline: borrowing Pipeline,
        input: Frame,
        output: Frame,
        punt: Frame,
        tables: ForwardingView
    ) -> [String] {
        var found: [String] = []
        let pool = pipeline.pool
        let c = pipeline.counters
        if input.count != 0 { found.append("the input frame still holds \(input.count) packets") }
        var sent = punt.count - puntCount
        for i in outputCount..<output.count {
            let idx = output[i]
            guard Self.isBuffer(pool, idx) else { continue }  // named below
            let kind = tables.port(pool.metas[Int(idx)].txPort)?.pointee.kind ?? PortKind.none
            sent += Self.datagrams(pool, idx, kind)
        }
        let dropped = Int(c.totalDrops &- drops)
        let made = Int(Int64(bitPattern: Self.born(c) &- born))
        if inputCount + made != sent + dropped {
            found.append(
                "\(inputCount) packets in and \(made) made, but \(sent) sent or punted and \(dropped) dropped"
                    + " (every packet is sent, punted or counted under one drop reason)"
            )
        }
        // Buffers: whoever held some before (outside the input and output) still does.
        let free = Self.free(pool)
        if available + inputCount + outputCount + puntCount != free + output.count + punt.count {
            found.append(
                "buffers leaked or freed twice: \(available) free + \(inputCount) in + \(outputCount) out + "
                    + "\(puntCount) punted before, \(free) free + \(output.count) out + \(punt.count) punted after"
            )
        }
        let slots = pool.count + pool.bigCount * pool.bigSpan
        var state = [UInt8](repeating: 0, count: slots)  // 1 free, 2 out
        let freeLists = [
            (pool.freeStack, pool.available, pool.count), (pool.bigStack, pool.bigAvailable, pool.bigCount),
        ]
        for (stack, n, bound) in freeLists {
            for i in 0..<min(n, bound) {
                let idx = stack[i]
                guard Self.isBuffer(pool, idx), Int(idx) < slots else {
                    found.append("free list holds \(idx), not a buffer")
                    continue
                }
                if state[Int(idx)] != 0 { found.append("buffer \(idx) is on the free list twice") }
                state[Int(idx)] = 1
            }
        }
        let punted = (puntCount..<punt.count).map { punt[$0] }
        for (i, isPunt) in (outputCount..<output.count).map({ (output[$0], false) }) + punted.map({ ($0, true) }) {
            let idx = Int(i)
            guard Self.isBuffer(pool, i), idx < slots else {
                found.append("output holds \(idx), not a buffer")
                continue
            }
            if state[idx] == 1 { found.append("buffer \(idx) is both sent and free") }
            if state[idx] == 2 { found.append("buffer \(idx) is sent twice") }
            state[idx] = 2
            let m = pool.metas[idx]
            let start = Int(m.offset)
            let length = Int(m.length)
            if start + length > pool.capacity(i) || length < 14 {
                found.append(
                    "buffer \(idx): a frame of \(length) B at offset \(start) (the buffer holds \(pool.capacity(i)) B)"
                )
                continue
            }
            if isPunt { continue }
            guard let port = tables.port(m.txPort), port.pointee.kind != .none else {
                found.append("buffer \(idx) is sent to port \(m.txPort), which the tables do not have")
                continue
            }
            let o = m.offload
            let offloads = port.pointee.flags.contains(.offloads)
            if (port.pointee.kind == .fabric ? o.gsoType != 0 : o.isActive) && !offloads {
                found.append(
                    "buffer \(idx): sent to port \(m.txPort), which takes no offloads, with offload state "
                        + "(gso type \(o.gsoType), size \(o.gsoSize), flags \(o.flags))"
                )
            }
            let frame = pool.packet(UInt32(idx))
            let l2 = frame.be16(12) == EtherType.vlan ? 18 : 14
            let inPlaceReply = m.txPort == m.rxPort && length <= inputLengths[UInt32(idx)] ?? 0
            // A superframe or a train: what its largest segment will be.
            var ipLength = length - l2
            if m.offload.gsoType != 0 {
                if port.pointee.kind == .fabric {
                    ipLength = 28 + Int(m.offload.gsoSize)  // outer IPv4 and UDP + one datagram
                } else if let sf = Superframe.parse(pool: pool, i) {
                    ipLength = sf.segmentIPLength
                }
            }
            if ipLength > Int(port.pointee.mtu) && !inPlaceReply {
                found.append(
                    "buffer \(idx): \(ipLength) B of IP sent to port \(m.txPort), whose MTU is \(port.pointee.mtu) "
                        + "(from port \(m.rxPort), flags 0x\(String(m.flags.rawValue, radix: 16)), nexthop \(m.nexthop))"
                )
            }
        }
        return found
    }
}

extension FlowTable {
    /// What is wrong with the table's bookkeeping, one line each: every occupied slot is
    /// found by a lookup of its key, and the entry and per-VRF counts match the slots.
    public func problems() -> [String] {
        var found: [String] = []
        var entries = 0
        var perVRF: [Int: Int] = [:]
        forEach { slot, key, _ in
            entries += 1
            perVRF[Int(key.vrf), default: 0] += 1
            let at = lookup(key)
            if at != slot { found.append("slot \(slot): its key is found at \(at)") }
        }
        if entries != count { found.append("\(entries) occupied slots, count says \(count)") }
        for (vrf, n) in perVRF where count(vrf: UInt16(vrf)) != n {
            found.append("VRF \(vrf): \(n) entries, its count says \(count(vrf: UInt16(vrf)))")
        }
        return found
    }
}
