// Software segmentation (the kernel's GSO, done where the packet is anyway): a superframe
// becomes segments of `segmentSize` payload bytes, each with the superframe's headers and
// per segment: IP total/payload length, IPv4 identification (+1 per segment) and header
// checksum; TCP sequence number, FIN and PSH on the last segment only, CWR on the first
// only (RFC 3168 §6.1.2: one CWR per window reduction); UDP length; and a complete L4
// checksum, summed while the payload is copied (one pass over the data).
//
// Three outputs, all from the same per-segment writer:
//   plain:      each segment a packet of its own, with the superframe's L2 header
//               (toward a port without offloads, or the slow paths: fragmentation, ICMP);
//   tunnel:     each segment encapsulated at once (outer Ethernet/IPv4/UDP + VXLAN or
//               MPLS, from the nexthop's template), one buffer per segment, for a TX ring
//               slot each;
//   train:      the encapsulated segments back to back as the payload of one outer UDP
//               datagram, sized so the kernel's UDP segmentation (USO, gso_size = one
//               segment's outer UDP payload) cuts it exactly into the datagrams the
//               tunnel mode would have made: one buffer and one send for up to 64.
// Cost: one copy of the payload (with its sum) plus ~60 bytes of header per segment.

@frozen
public struct SegmentTunnel {
    /// The nexthop's outer-header template.
    public var template: UnsafePointer<TunnelTemplate>
    public var labelOrVNI: UInt32
    public var sourcePort: UInt16
    /// VXLAN whose template does not carry the inner Ethernet header: written here.
    public var writesInnerEthernet: Bool
    public var innerDestinationMAC: UInt64
    public var innerSourceMAC: UInt64
    /// VXLAN whose template ends with the inner Ethernet header (EtherType IPv4): patched
    /// for IPv6 segments.
    public var templateHasInnerEthernet: Bool

    @inlinable
    public init(
        template: UnsafePointer<TunnelTemplate>,
        labelOrVNI: UInt32,
        sourcePort: UInt16,
        writesInnerEthernet: Bool = false,
        innerDestinationMAC: UInt64 = 0,
        innerSourceMAC: UInt64 = 0,
        templateHasInnerEthernet: Bool = false
    ) {
        self.template = template
        self.labelOrVNI = labelOrVNI
        self.sourcePort = sourcePort
        self.writesInnerEthernet = writesInnerEthernet
        self.innerDestinationMAC = innerDestinationMAC
        self.innerSourceMAC = innerSourceMAC
        self.templateHasInnerEthernet = templateHasInnerEthernet
    }

    /// Bytes in front of each inner IP packet: the template plus a written inner Ethernet.
    @inlinable public var overhead: Int { template.pointee.headerLength &+ (writesInnerEthernet ? 14 : 0) }
    /// Of those, the bytes after the outer UDP header (VXLAN + inner Ethernet, or MPLS):
    /// what each segment of a train repeats.
    @inlinable public var perSegment: Int { overhead &- template.pointee.ipOffset &- 28 }

    /// Writes the tunnel headers in front of the inner IP packet at `ip` (`length` bytes)
    /// and returns the frame's new start.
    @inline(__always)
    func encapsulate(
        _ ip: UnsafeMutableRawPointer,
        length: Int,
        v4: Bool,
        identification: UInt16
    )
        -> UnsafeMutableRawPointer
    {
        var inner = ip
        var innerLength = length
        if writesInnerEthernet {
            inner = ip - 14
            inner.setBE48(0, innerDestinationMAC)
            inner.setBE48(6, innerSourceMAC)
            inner.setBE16(12, v4 ? EtherType.ipv4 : EtherType.ipv6)
            innerLength &+= 14
        }
        let start = template.pointee.apply(
            to: inner,
            innerLength: innerLength,
            sourcePort: sourcePort,
            labelOrVNI: labelOrVNI,
            identification: identification
        )
        if templateHasInnerEthernet && !v4 { ip.setBE16(-2, EtherType.ipv6) }
        return start
    }
}

public enum Segmentation {
    /// Most segments one train carries: the kernel's UDP_MAX_SEGMENTS.
    public static let maxTrainSegments = 64

    /// Writes segment `k` of `sf` (whose bytes are at `src`, a buffer base) as an inner IP
    /// packet at `dst`, and returns its IP length. `pseudo` is the pseudo-header sum
    /// without the length (`pseudoBase`); `id0`, `seq0` the superframe's IPv4
    /// identification and TCP sequence number.
    @inline(__always)
    static func writeSegment(
        _ dst: UnsafeMutableRawPointer,
        _ src: UnsafeMutableRawPointer,
        _ sf: Superframe,
        _ k: Int,
        last: Bool,
        pseudo: UInt32,
        id0: UInt16,
        seq0: UInt32
    ) -> Int {
        let hl = sf.headerLength
        let chunk = sf.chunk(k)
        // Safe: the caller sized dst for hl + chunk; src holds the superframe (parse).
        dst.copyMemory(from: src + sf.l3, byteCount: hl)
        let payloadSum = Checksum.copyAndSum(dst + hl, src + (sf.payload &+ k &* sf.segmentSize), count: chunk)
        let ipLength = hl &+ chunk
        if sf.v4 {
            dst.setBE16(2, UInt16(truncatingIfNeeded: ipLength))
            dst.setBE16(4, id0 &+ UInt16(truncatingIfNeeded: k))
            dst.setBE16(10, 0)
            let ihl = Int(dst.u8(0) & 0x0F) &<< 2
            dst.setBE16(10, Checksum.compute(dst, count: ihl))
        } else {
            dst.setBE16(4, UInt16(truncatingIfNeeded: ipLength &- 40))
        }
        let l4 = dst + (sf.l4 &- sf.l3)
        let l4Bytes = sf.l4Length &+ chunk
        if sf.tcp {
            l4.setBE32(4, seq0 &+ UInt32(truncatingIfNeeded: k &* sf.segmentSize))
            var f = l4.u8(13)
            if !last { f &= ~(TCPFlags.fin.rawValue | TCPFlags.psh.rawValue) }
            if k != 0 { f &= ~TCPFlags.cwr.rawValue }
            l4.setU8(13, f)
            l4.setBE16(16, 0)
            let s = Checksum.sum(l4, count: sf.l4Length, initial: pseudo &+ UInt32(l4Bytes))
            l4.setBE16(16, ~Checksum.add(s, payloadSum))
        } else {
            l4.setBE16(4, UInt16(truncatingIfNeeded: l4Bytes))
            l4.setBE16(6, 0)
            let s = Checksum.sum(l4, count: HeaderSize.udp, initial: pseudo &+ UInt32(l4Bytes))
            let c = ~Checksum.add(s, payloadSum)
            l4.setBE16(6, c == 0 ? 0xFFFF : c)
        }
        return ipLength
    }

    /// The pseudo-header sum of `sf` without its length.
    @inline(__always)
    static func pseudoBase(_ p: UnsafeMutableRawPointer, _ sf: Superframe) -> UInt32 {
        let proto = sf.tcp ? IPProtocol.tcp : IPProtocol.udp
        if sf.v4 {
            return Checksum.pseudoHeaderIPv4(
                src: p.be32(sf.l3 &+ 12),
                dst: p.be32(sf.l3 &+ 16),
                proto: proto,
                length: 0
            )
        }
        return Checksum.pseudoHeaderIPv6(
            src: p.be128(sf.l3 &+ 8),
            dst: p.be128(sf.l3 &+ 24),
            nextHeader: proto,
            length: 0
        )
    }

    /// Takes `n` buffers able to hold `length` bytes after the headroom into `out`, or
    /// none (returning false) when the pool or the frame runs out.
    static func take(_ pool: PacketPool, _ n: Int, length: Int, into out: inout Frame) -> Bool {
        guard out.capacity &- out.count >= n else { return false }
        let first = out.count
        for _ in 0..<n {
            guard let b = pool.alloc(forLength: length) else {
                for i in first..<out.count { pool.free(out[i]) }
                out.count = first
                return false
            }
            out.append(b)
        }
        return true
    }

    /// Plain segmentation of the superframe in buffer `idx` (`sf` = `Superframe.parse`):
    /// appends one packet per segment to `out`, each with the bytes in front of the IP
    /// header (the L2 header) repeated and the metadata of the original (offload
    /// cleared), and frees `idx`. Returns nil, or `.txQueueFull` / `.noMemory` with
    /// nothing appended and `idx` untouched.
    public static func segment(
        pool: PacketPool,
        _ idx: UInt32,
        _ sf: Superframe,
        into out: inout Frame
    )
        -> DropReason?
    {
        let n = sf.segments
        let l2 = sf.l3 &- sf.frame
        let first = out.count
        guard take(pool, n, length: l2 &+ sf.segmentIPLength, into: &out) else {
            return out.capacity &- out.count < n ? .txQueueFull : .noMemory
        }
        let src = pool.buffer(idx)
        let m = pool.meta(idx)
        let pseudo = pseudoBase(src, sf)
        let id0 = sf.v4 ? src.be16(sf.l3 &+ 4) : 0
        let seq0 = sf.tcp ? src.be32(sf.l4 &+ 4) : 0
        for k in 0..<n {
            let b = out[first &+ k]
            let d = pool.buffer(b)
            let start = PacketPool.headroom
            // Safe: b holds l2 + segmentIPLength after its headroom (take).
            (d + start).copyMemory(from: src + sf.frame, byteCount: l2)
            let ipLength = writeSegment(
                d + (start &+ l2),
                src,
                sf,
                k,
                last: k == n &- 1,
                pseudo: pseudo,
                id0: id0,
                seq0: seq0
            )
            let bm = pool.meta(b)
            bm.pointee = m.pointee
            bm.pointee.offload = PacketOffload()
            bm.pointee.offset = UInt16(start)
            bm.pointee.length = UInt16(truncatingIfNeeded: l2 &+ ipLength)
            bm.pointee.l3 = UInt16(start &+ l2)
            bm.pointee.l4 = UInt16(truncatingIfNeeded: start &+ l2 &+ sf.l4 &- sf.l3)
        }
        pool.free(idx)
        return nil
    }

    /// Segments the superframe in buffer `idx` and encapsulates each segment toward
    /// `tunnel`: one buffer per segment appended to `out` (ready for the fabric), outer
    /// IPv4 identifications `identification + 1...` (the counter is advanced). Frees `idx`
    /// on success; on failure (`.txQueueFull`, `.noMemory`) appends nothing.
    public static func segmentAndEncapsulate(
        pool: PacketPool,
        _ idx: UInt32,
        _ sf: Superframe,
        _ tunnel: SegmentTunnel,
        identification: inout UInt16,
        into out: inout Frame
    ) -> DropReason? {
        let n = sf.segments
        let overhead = tunnel.overhead
        let first = out.count
        guard take(pool, n, length: overhead &+ sf.segmentIPLength, into: &out) else {
            return out.capacity &- out.count < n ? .txQueueFull : .noMemory
        }
        let src = pool.buffer(idx)
        let m = pool.meta(idx)
        let pseudo = pseudoBase(src, sf)
        let id0 = sf.v4 ? src.be16(sf.l3 &+ 4) : 0
        let seq0 = sf.tcp ? src.be32(sf.l4 &+ 4) : 0
        for k in 0..<n {
            let b = out[first &+ k]
            let base = pool.buffer(b)
            // The inner IP packet where a received one would sit; the headers go in front
            // (overhead ≤ 78 < headroom).
            let ipAt = PacketPool.headroom &+ overhead
            let ip = base + ipAt
            let ipLength = writeSegment(
                ip,
                src,
                sf,
                k,
                last: k == n &- 1,
                pseudo: pseudo,
                id0: id0,
                seq0: seq0
            )
            identification &+= 1
            let start = tunnel.encapsulate(ip, length: ipLength, v4: sf.v4, identification: identification) - base
            let bm = pool.meta(b)
            bm.pointee = m.pointee
            bm.pointee.offload = PacketOffload()
            bm.pointee.offset = UInt16(truncatingIfNeeded: start)
            bm.pointee.length = UInt16(truncatingIfNeeded: ipAt &+ ipLength &- start)
            bm.pointee.l3 = UInt16(truncatingIfNeeded: ipAt)
            bm.pointee.l4 = UInt16(truncatingIfNeeded: ipAt &+ sf.l4 &- sf.l3)
        }
        pool.free(idx)
        return nil
    }

    /// Segments per train for `sf` toward `tunnel`: as many full segments as keep the
    /// outer frame within 65535 bytes, at most `maxTrainSegments`.
    @inlinable
    public static func segmentsPerTrain(_ sf: Superframe, _ tunnel: SegmentTunnel) -> Int {
        let t = tunnel.template.pointee
        let datagram = tunnel.perSegment &+ sf.segmentIPLength
        let room = 0xFFFF &- t.ipOffset &- 28
        return max(1, min(maxTrainSegments, room / datagram))
    }

    /// Segments and encapsulates the superframe in buffer `idx` into trains: big buffers
    /// each holding one outer Ethernet/IPv4/UDP header followed by up to
    /// `segmentsPerTrain` datagram payloads (VXLAN or MPLS, inner headers, segment), all
    /// the same size but the last, each what `segmentAndEncapsulate` would have sent as a
    /// UDP payload. A train's metadata asks for UDP segmentation: gso UDP_L4, gsoSize the
    /// first (largest) datagram's payload, the outer UDP checksum partial (its field holds the
    /// pseudo-header sum, the kernel or the NIC completes each datagram's). Frees `idx` on
    /// success; on failure (`.txQueueFull`, `.noMemory`) appends nothing.
    public static func segmentIntoTrains(
        pool: PacketPool,
        _ idx: UInt32,
        _ sf: Superframe,
        _ tunnel: SegmentTunnel,
        identification: inout UInt16,
        into out: inout Frame
    ) -> DropReason? {
        let n = sf.segments
        let perTrain = segmentsPerTrain(sf, tunnel)
        let trains = (n &+ perTrain &- 1) / perTrain
        guard out.capacity &- out.count >= trains else { return .txQueueFull }
        let first = out.count
        for _ in 0..<trains {
            guard let b = pool.allocBig() else {
                for i in first..<out.count { pool.free(out[i]) }
                out.count = first
                return .noMemory
            }
            out.append(b)
        }
        let src = pool.buffer(idx)
        let m = pool.meta(idx)
        let pseudo = pseudoBase(src, sf)
        let id0 = sf.v4 ? src.be16(sf.l3 &+ 4) : 0
        let seq0 = sf.tcp ? src.be32(sf.l4 &+ 4) : 0
        let overhead = tunnel.overhead
        let repeated = tunnel.perSegment
        let t = tunnel.template.pointee
        // The largest datagram's UDP payload, the train's gso size: a full segment's, or
        // the only segment's when the superframe holds less than one (the fabric's MTU was
        // checked against that one, not against the segment size).
        let datagram = repeated &+ sf.segmentIPLength
        var k = 0
        for j in 0..<trains {
            let b = out[first &+ j]
            let base = pool.buffer(b)
            let ipAt = PacketPool.headroom &+ overhead
            let count = min(perTrain, n &- k)
            // Segment 0 of the train first: its full header gives the per-segment prefix
            // the others copy.
            var at =
                ipAt
                &+ writeSegment(
                    base + ipAt,
                    src,
                    sf,
                    k,
                    last: k == n &- 1,
                    pseudo: pseudo,
                    id0: id0,
                    seq0: seq0
                )
            for s in 1..<count {
                let kk = k &+ s
                // Safe: each datagram ends within 65535 bytes of the frame's start
                // (segmentsPerTrain), inside the big buffer.
                let ip = base + (at &+ repeated)
                at &+=
                    repeated
                    &+ writeSegment(
                        ip,
                        src,
                        sf,
                        kk,
                        last: kk == n &- 1,
                        pseudo: pseudo,
                        id0: id0,
                        seq0: seq0
                    )
            }
            // Outer headers for the whole train: the template's lengths come out right
            // when it is told the train's bytes after the first segment's prefix.
            let innerTotal = at &- ipAt
            let start =
                tunnel.encapsulate(
                    base + ipAt,
                    length: innerTotal,
                    v4: sf.v4,
                    identification: identification &+ 1
                ) - base
            identification &+= UInt16(truncatingIfNeeded: count)
            // Copy the first datagram's prefix (VXLAN + inner Ethernet, or MPLS) in front of
            // every later segment, with the inner EtherType the segment needs (all alike).
            if count > 1 {
                let prefix = base + (ipAt &- repeated)
                var pos = ipAt &+ (sf.headerLength &+ sf.chunk(k))
                for s in 1..<count {
                    (base + pos).copyMemory(from: prefix, byteCount: repeated)
                    pos &+= repeated &+ sf.headerLength &+ sf.chunk(k &+ s)
                }
            }
            let ipOuter = start &+ t.ipOffset
            let udp = ipOuter &+ 20
            let udpLength = Int(base.be16(udp &+ 4))
            let partial = Checksum.fold32(
                Checksum.pseudoHeaderIPv4(
                    src: base.be32(ipOuter &+ 12),
                    dst: base.be32(ipOuter &+ 16),
                    proto: IPProtocol.udp,
                    length: udpLength
                )
            )
            base.setBE16(udp &+ 6, partial)
            let bm = pool.meta(b)
            bm.pointee = m.pointee
            var o = PacketOffload()
            o.gsoType = VirtioNet.gsoUDPL4
            o.gsoSize = UInt16(truncatingIfNeeded: datagram)
            o.flags = PacketOffload.needsChecksum
            o.checksumStart = UInt16(truncatingIfNeeded: udp)
            o.checksumOffset = 6
            bm.pointee.offload = o
            bm.pointee.offset = UInt16(truncatingIfNeeded: start)
            bm.pointee.length = UInt16(truncatingIfNeeded: at &- start)
            bm.pointee.l3 = UInt16(truncatingIfNeeded: ipAt)
            bm.pointee.l4 = UInt16(truncatingIfNeeded: ipAt &+ sf.l4 &- sf.l3)
            k &+= count
        }
        pool.free(idx)
        return nil
    }
}
