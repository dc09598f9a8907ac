// GRO within a frame (the kernel's tcp_gro_receive rules, as wireguard-go applies them
// to a batch): consecutive in-order TCP segments of one flow, headed for one port that
// takes superframes, become one superframe, so the pod's kernel takes 64 KB in one write
// instead of 45. A segment joins the open superframe of its flow when
//   - the L2 header, IP header (but length, identification, checksum), ports, ACK number,
//     data offset, flags (but PSH), window and options are all equal: same flow, same
//     TTL/TOS/DF, same timestamps;
//   - its sequence number is the next one expected;
//   - it carries payload no bigger than the first segment's (a smaller one is the last);
//   - its flags are ACK or ACK|PSH (PSH ends the superframe), and
//   - its checksum verifies (unless the sender vouched for it): a bad segment is left alone
//     for the pod's kernel to drop, never folded into a superframe that no one checks;
//   - the superframe stays within 65535 bytes of IP.
// IPv4 without options, IPv6 without extension headers. The result carries its offload
// state (TCPv4/v6 GSO, segment size = the first segment's payload, partial checksum:
// the pseudo-header sum in the field), which the tap write turns into a virtio-net header.
//
// Cost: per candidate a dozen loads and compares against at most `maxOpen` open flows,
// one checksum pass and one copy of its payload.

public struct TCPCoalescer: ~Copyable {
    /// Flows open at once (the kernel's GRO keeps 8 per NAPI bucket list).
    public static let maxOpen = 8

    struct Open {
        var position: Int  // slot of the head in the frame
        var idx: UInt32  // head buffer (promoted to a big buffer at the first merge)
        var hash: UInt32
        var txPort: UInt16
        var segments: UInt16
        var nextSeq: UInt32
        var segmentSize: Int
        var end: Int  // buffer offset just past the head's last byte
        var verified: Bool
    }

    let open: UnsafeMutablePointer<Open>
    var openCount = 0

    public init() {
        open = .allocate(capacity: Self.maxOpen)
    }

    deinit { open.deallocate() }

    /// Coalesces the TCP segments of `frame` bound for a pod port that takes superframes;
    /// merged segments leave the frame (their buffers freed) and are counted in the result.
    /// Order among the remaining packets is kept.
    public mutating func coalesce(
        pool: PacketPool,
        _ frame: inout Frame,
        ports: UnsafePointer<PortEntry>,
        portCount: Int
    ) -> Int {
        openCount = 0
        frameSlots = frame.slots
        var merged = 0
        let n = frame.count
        for i in 0..<n {
            let idx = frame[i]
            let m = pool.meta(idx)
            let tx = Int(m.pointee.txPort)
            // Toward pods only: a packet for the fabric (a tunnel's, or a translated or
            // IP-fabric one) is the kernel's to coalesce at its far end; here it would only
            // take an open-flow slot (tunneled: outer IP ids differ, so it never merges).
            guard tx < portCount, ports[tx].kind == .pod, ports[tx].flags.contains(.offloads) else { continue }
            let f = openFlow(m.pointee.hash, UInt16(truncatingIfNeeded: tx))
            guard let seg = Segment(pool, idx) else {
                // Not a candidate (a pure ACK, FIN, SYN...): what is open for its flow goes
                // first, so the receiver sees the flow's packets in the order they came.
                if f >= 0 {
                    close(pool, f)
                    remove(f)
                }
                continue
            }
            if f >= 0 {
                if append(pool, idx, seg, to: f) {
                    frame[i] = .max
                    pool.free(idx)
                    merged &+= 1
                    continue
                }
                close(pool, f)
                remove(f)
            }
            // A new head (unless it cannot take more: PSH, or nothing to remember it in).
            if seg.push { continue }
            if openCount == Self.maxOpen {
                close(pool, 0)
                remove(0)
            }
            open[openCount] = Open(
                position: i,
                idx: idx,
                hash: m.pointee.hash,
                txPort: UInt16(truncatingIfNeeded: tx),
                segments: 1,
                nextSeq: seg.seq &+ UInt32(truncatingIfNeeded: seg.payloadLength),
                segmentSize: seg.payloadLength,
                end: seg.payload &+ seg.payloadLength,
                verified: false
            )
            openCount &+= 1
        }
        for f in 0..<openCount { close(pool, f) }
        openCount = 0
        guard merged > 0 else { return 0 }
        var kept = 0
        for i in 0..<n where frame[i] != .max {
            frame[kept] = frame[i]
            kept &+= 1
        }
        frame.count = kept
        return merged
    }

    @inline(__always)
    func openFlow(_ hash: UInt32, _ tx: UInt16) -> Int {
        for f in 0..<openCount where open[f].hash == hash && open[f].txPort == tx { return f }
        return -1
    }

    /// Takes open flow `f` out of the list, the later ones moving down one place.
    @inline(__always)
    mutating func remove(_ f: Int) {
        // Safe: f < openCount ≤ maxOpen; the ranges overlap, which update(from:) allows.
        (open + f).update(from: open + (f &+ 1), count: openCount &- f &- 1)
        openCount &-= 1
    }

    /// A coalescing candidate: what we need of its headers, parsed once.
    struct Segment {
        let frame: Int
        let l3: Int
        let l4: Int
        let payload: Int
        let payloadLength: Int
        let seq: UInt32
        let push: Bool
        let v4: Bool

        @inline(__always)
        init?(_ pool: PacketPool, _ idx: UInt32) {
            let m = pool.meta(idx)
            let flags = m.pointee.flags
            guard m.pointee.proto == IPProtocol.tcp, !flags.contains(.fragment), m.pointee.offload.gsoType == 0
            else { return nil }
            let p = pool.buffer(idx)
            let l3 = Int(m.pointee.l3)
            let l4 = Int(m.pointee.l4)
            v4 = flags.contains(.ipv4)
            let ipLength: Int
            if v4 {
                guard p.u8(l3) == 0x45 else { return nil }
                ipLength = Int(p.be16(l3 &+ 2))
            } else {
                guard l4 == l3 &+ 40 else { return nil }
                ipLength = 40 &+ Int(p.be16(l3 &+ 4))
            }
            let tcpFlags = p.u8(l4 &+ 13)
            // ACK, optionally PSH; nothing else (SYN, FIN, RST, URG, ECE, CWR end or
            // start something the receiver must see as sent).
            guard tcpFlags & ~TCPFlags.psh.rawValue == TCPFlags.ack.rawValue else { return nil }
            let doff = Int(p.u8(l4 &+ 12) >> 4) &<< 2
            let end = l3 &+ ipLength
            guard doff >= 20, l4 &+ doff < end, end <= Int(m.pointee.offset) &+ Int(m.pointee.length) else {
                return nil
            }
            frame = Int(m.pointee.offset)
            self.l3 = l3
            self.l4 = l4
            payload = l4 &+ doff
            payloadLength = end &- payload
            seq = p.be32(l4 &+ 4)
            push = tcpFlags & TCPFlags.psh.rawValue != 0
        }
    }

    /// Appends `seg` (in buffer `idx`) to open flow `f` when the rules allow.
    mutating func append(_ pool: PacketPool, _ idx: UInt32, _ seg: Segment, to f: Int) -> Bool {
        var o = open[f]
        let h = pool.buffer(o.idx)
        let hm = pool.meta(o.idx)
        let p = pool.buffer(idx)
        let hl3 = Int(hm.pointee.l3)
        let hl4 = Int(hm.pointee.l4)
        let doff = seg.payload &- seg.l4
        guard seg.seq == o.nextSeq, seg.payloadLength <= o.segmentSize,
            Int(o.segments) &* o.segmentSize == o.end &- hl4 &- doff,  // no short segment yet
            seg.l3 &- seg.frame == hl3 &- Int(hm.pointee.offset), seg.l4 &- seg.l3 == hl4 &- hl3,
            o.end &- hl3 &+ seg.payloadLength <= 0xFFFF
        else { return false }
        // L2 header, then the IP fields that must match.
        let l2 = seg.l3 &- seg.frame
        guard Self.equal(h + (hl3 &- l2), p + seg.frame, l2) else { return false }
        if seg.v4 {
            guard h.be16(hl3) == p.be16(seg.l3), h.be32(hl3 &+ 6) == p.be32(seg.l3 &+ 6),
                h.be64(hl3 &+ 12) == p.be64(seg.l3 &+ 12)
            else { return false }
        } else {
            guard h.be32(hl3) == p.be32(seg.l3), h.be16(hl3 &+ 6) == p.be16(seg.l3 &+ 6),
                h.be128(hl3 &+ 8) == p.be128(seg.l3 &+ 8), h.be128(hl3 &+ 24) == p.be128(seg.l3 &+ 24)
            else { return false }
        }
        // TCP: ports, ACK, offset/flags/window (PSH aside), options.
        guard h.be32(hl4) == p.be32(seg.l4), h.be32(hl4 &+ 8) == p.be32(seg.l4 &+ 8),
            (h.be32(hl4 &+ 12) ^ p.be32(seg.l4 &+ 12)) & ~UInt32(0x0008_0000) == 0,
            Self.equal(h + (hl4 &+ 20), p + (seg.l4 &+ 20), doff &- 20)
        else { return false }
        // Checksums: the head's once, each segment's as it joins.
        if !o.verified {
            guard Self.verify(pool, o.idx) else { return false }
            o.verified = true
        }
        guard Self.verify(pool, idx) else { return false }
        // Room: the head moves to a big buffer at its first merge (same offsets, so its
        // metadata stays right), and into the frame slot it had.
        guard o.end &+ seg.payloadLength <= pool.bigSpan &* pool.stride else { return false }
        if !pool.isBig(o.idx) {
            guard let big = pool.allocBig() else { return false }
            // Safe: [0, end) is inside the head's buffer; a big buffer is larger.
            pool.buffer(big).copyMemory(from: h, byteCount: o.end)
            pool.meta(big).pointee = hm.pointee
            pool.free(o.idx)
            o.idx = big
            frameSlots?[o.position] = big
        }
        let dst = pool.buffer(o.idx)
        // Safe: end + payload is within a big buffer (checked above).
        (dst + o.end).copyMemory(from: p + seg.payload, byteCount: seg.payloadLength)
        o.end &+= seg.payloadLength
        o.nextSeq &+= UInt32(truncatingIfNeeded: seg.payloadLength)
        o.segments &+= 1
        if seg.push {
            let hl4Now = Int(pool.meta(o.idx).pointee.l4)
            dst.setU8(hl4Now &+ 13, dst.u8(hl4Now &+ 13) | TCPFlags.psh.rawValue)
        }
        open[f] = o
        if seg.push {
            close(pool, f)
            remove(f)
        }
        return true
    }

    /// Finishes open flow `f`: a head that took segments becomes a superframe (lengths,
    /// IPv4 checksum, partial TCP checksum, offload state) and goes back into its slot.
    mutating func close(_ pool: PacketPool, _ f: Int) {
        let o = open[f]
        guard o.segments > 1 else { return }
        let p = pool.buffer(o.idx)
        let m = pool.meta(o.idx)
        let l3 = Int(m.pointee.l3)
        let l4 = Int(m.pointee.l4)
        let v4 = m.pointee.flags.contains(.ipv4)
        let ipLength = o.end &- l3
        let tcpLength = o.end &- l4
        let pseudo: UInt32
        if v4 {
            p.setBE16(l3 &+ 2, UInt16(truncatingIfNeeded: ipLength))
            p.setBE16(l3 &+ 10, 0)
            p.setBE16(l3 &+ 10, Checksum.compute(p + l3, count: 20))
            pseudo = Checksum.pseudoHeaderIPv4(
                src: p.be32(l3 &+ 12),
                dst: p.be32(l3 &+ 16),
                proto: IPProtocol.tcp,
                length: tcpLength
            )
        } else {
            p.setBE16(l3 &+ 4, UInt16(truncatingIfNeeded: ipLength &- 40))
            pseudo = Checksum.pseudoHeaderIPv6(
                src: p.be128(l3 &+ 8),
                dst: p.be128(l3 &+ 24),
                nextHeader: IPProtocol.tcp,
                length: tcpLength
            )
        }
        p.setBE16(l4 &+ 16, Checksum.fold32(pseudo))
        m.pointee.length = UInt16(truncatingIfNeeded: o.end &- Int(m.pointee.offset))
        var off = PacketOffload()
        off.gsoType = v4 ? VirtioNet.gsoTCPv4 : VirtioNet.gsoTCPv6
        off.gsoSize = UInt16(truncatingIfNeeded: o.segmentSize)
        off.flags = PacketOffload.needsChecksum
        off.checksumStart = UInt16(truncatingIfNeeded: l4)
        off.checksumOffset = 16
        m.pointee.offload = off
    }

    /// The slots of the frame being coalesced (a promoted head goes back into its own).
    var frameSlots: UnsafeMutablePointer<UInt32>? = nil

    @inline(__always)
    static func equal(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
        var i = 0
        while i &+ 8 <= n {
            if a.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                != b.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            {
                return false
            }
            i &+= 8
        }
        while i < n {
            if a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) { return false }
            i &+= 1
        }
        return true
    }

    /// Whether the TCP checksum of the segment in `idx` verifies (or need not: the sender
    /// vouched for it, or left it partial, which only a local sender does).
    static func verify(_ pool: PacketPool, _ idx: UInt32) -> Bool {
        let m = pool.meta(idx)
        if m.pointee.offload.flags != 0 { return true }
        let p = pool.buffer(idx)
        let l3 = Int(m.pointee.l3)
        let l4 = Int(m.pointee.l4)
        let v4 = m.pointee.flags.contains(.ipv4)
        let end = v4 ? l3 &+ Int(p.be16(l3 &+ 2)) : l3 &+ 40 &+ Int(p.be16(l3 &+ 4))
        let pseudo =
            v4
            ? Checksum.pseudoHeaderIPv4(
                src: p.be32(l3 &+ 12),
                dst: p.be32(l3 &+ 16),
                proto: IPProtocol.tcp,
                length: end &- l4
            )
            : Checksum.pseudoHeaderIPv6(
                src: p.be128(l3 &+ 8),
                dst: p.be128(l3 &+ 24),
                nextHeader: IPProtocol.tcp,
                length: end &- l4
            )
        return Checksum.sum(p + l4, count: end &- l4, initial: pseudo) == 0xFFFF
    }
}
