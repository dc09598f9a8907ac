// Receiving a UDP GSO train (a peer's `Segmentation.segmentIntoTrains`, handed over whole
// by a veth, or a NIC's UDP GRO): one outer Ethernet/IPv4/UDP header and the payloads of
// many datagrams, `segmentSize` bytes each but the last. The kernel would cut it into those
// datagrams had it been delivered to a socket; we cut it while copying it out of the RX
// ring (which copies every byte once anyway), so the pipeline sees the datagrams the
// sender meant, each with its own outer lengths, identification and header checksum and
// a zero (absent) UDP checksum.

public enum UDPTrain {
    /// Datagrams `length` bytes of train at `src` make with `segmentSize`, or nil when
    /// the frame is not an (untagged or 802.1Q-tagged) IPv4/UDP frame whose payload
    /// `segmentSize` divides into at most `Segmentation.maxTrainSegments` × 2 pieces.
    @inlinable
    public static func shape(
        _ src: UnsafeRawPointer,
        length: Int,
        segmentSize: Int
    )
        -> (l3: Int, l4: Int, count: Int)?
    {
        guard segmentSize > 0, length >= 14 &+ 20 &+ 8 else { return nil }
        var l3 = 14
        var type = src.be16(12)
        if type == EtherType.vlan {
            l3 = 18
            guard length >= 18 &+ 28 else { return nil }
            type = src.be16(16)
        }
        guard type == EtherType.ipv4, src.u8(l3) >> 4 == 4, src.u8(l3 &+ 9) == IPProtocol.udp else { return nil }
        let ihl = Int(src.u8(l3) & 0x0F) &<< 2
        let l4 = l3 &+ ihl
        guard ihl >= 20, l4 &+ 8 < length else { return nil }
        let payload = length &- l4 &- 8
        let count = (payload &+ segmentSize &- 1) / segmentSize
        // Twice the kernel's limit: it has been raised to 128 since 6.x.
        guard count <= Segmentation.maxTrainSegments &* 2 else { return nil }
        return (l3, l4, count)
    }

    /// Cuts the train at `src` into datagrams appended to `out` (fresh buffers, frame at
    /// the headroom; offset and length set, the rest of the metadata fresh). Returns false
    /// with nothing appended when `out` lacks room or the pool runs dry; the caller keeps
    /// the train for later (or drops it).
    @inlinable
    public static func split(
        _ src: UnsafeRawPointer,
        length: Int,
        l3: Int,
        l4: Int,
        count: Int,
        segmentSize: Int,
        pool: PacketPool,
        into out: UnsafeMutablePointer<Frame>
    ) -> Bool {
        guard out.pointee.capacity &- out.pointee.count >= count else { return false }
        let headers = l4 &+ 8
        let first = out.pointee.count
        let id0 = src.be16(l3 &+ 4)
        let ihl = l4 &- l3
        var at = headers
        for k in 0..<count {
            let chunk = min(segmentSize, length &- at)
            guard let b = pool.alloc(forLength: headers &+ chunk) else {
                for i in first..<out.pointee.count { pool.free(out.pointee[i]) }
                out.pointee.count = first
                return false
            }
            let d = pool.buffer(b) + PacketPool.headroom
            // Safe: b holds headers + chunk after the headroom (alloc(forLength:)); the
            // source ranges end at `length`.
            d.copyMemory(from: src, byteCount: headers)
            (d + headers).copyMemory(from: src + at, byteCount: chunk)
            let ip = d + l3
            ip.setBE16(2, UInt16(truncatingIfNeeded: ihl &+ 8 &+ chunk))
            ip.setBE16(4, id0 &+ UInt16(truncatingIfNeeded: k))
            ip.setBE16(10, 0)
            ip.setBE16(10, Checksum.compute(ip, count: ihl))
            (d + l4).setBE16(4, UInt16(truncatingIfNeeded: 8 &+ chunk))
            (d + l4).setBE16(6, 0)
            let m = pool.meta(b)
            m.pointee.length = UInt16(truncatingIfNeeded: headers &+ chunk)
            out.pointee.append(b)
            at &+= chunk
        }
        return true
    }
}
