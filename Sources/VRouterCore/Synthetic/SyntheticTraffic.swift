// Deterministic traffic for the sample topology: flows from pods toward routed
// destinations (VXLAN, MPLS over UDP, local) and tunnel traffic from the remote nodes
// toward the pods. Used by benchmarks, tests and tools/gen-traffic.

public enum SyntheticTraffic {
    /// Writes an Ethernet/IPv4/UDP frame of `size` bytes (≥ 60) into `p`.
    public static func writeUDP4(
        _ p: UnsafeMutableRawPointer,
        size: Int,
        srcMAC: MACAddress,
        dstMAC: MACAddress,
        source: IPv4Address,
        destination: IPv4Address,
        sport: UInt16,
        dport: UInt16,
        ttl: UInt8 = 64,
        id: UInt16 = 0
    ) -> Int {
        let total = max(size, 42)
        let payload = total - 42
        var o = PacketBuilder.ethernet(p, destination: dstMAC, source: srcMAC, etherType: EtherType.ipv4)
        let ip = o
        o += 20
        for i in 0..<payload { p.setU8(o + 8 + i, UInt8(truncatingIfNeeded: i)) }
        _ = PacketBuilder.udp(
            p + o,
            sourcePort: sport,
            destinationPort: dport,
            payloadLength: payload,
            checksum: .ipv4(source: source, destination: destination)
        )
        _ = PacketBuilder.ipv4(
            p + ip,
            source: source,
            destination: destination,
            proto: IPProtocol.udp,
            payloadLength: 8 + payload,
            ttl: ttl,
            identification: id
        )
        return total
    }

    /// Writes an Ethernet/IPv6/UDP frame of `size` bytes (≥ 62) into `p`.
    public static func writeUDP6(
        _ p: UnsafeMutableRawPointer,
        size: Int,
        srcMAC: MACAddress,
        dstMAC: MACAddress,
        source: IPv6Address,
        destination: IPv6Address,
        sport: UInt16,
        dport: UInt16,
        hopLimit: UInt8 = 64
    ) -> Int {
        let total = max(size, 62)
        let payload = total - 62
        var o = PacketBuilder.ethernet(p, destination: dstMAC, source: srcMAC, etherType: EtherType.ipv6)
        o += PacketBuilder.ipv6(
            p + o,
            source: source,
            destination: destination,
            nextHeader: IPProtocol.udp,
            payloadLength: 8 + payload,
            hopLimit: hopLimit
        )
        for i in 0..<payload { p.setU8(o + 8 + i, UInt8(truncatingIfNeeded: i)) }
        _ = PacketBuilder.udp(
            p + o,
            sourcePort: sport,
            destinationPort: dport,
            payloadLength: payload,
            checksum: .ipv6(source: source, destination: destination)
        )
        return total
    }

    /// `flows` UDP flows from pod `port` (its MAC and address) to random hosts inside
    /// `prefixes`, one packet per flow, `size` bytes each (64 = minimum Ethernet frame
    /// without FCS).
    public static func podFlows(
        port: UInt16,
        mac: MACAddress,
        source: IPv4Address,
        prefixes: [IPv4Prefix],
        flows: Int,
        size: Int = 64,
        seed: UInt64
    ) -> PacketSet {
        precondition(!prefixes.isEmpty)
        var rng = SplitMix64(seed: seed)
        var set = PacketSet()
        set.reserve(packets: flows, bytes: flows * size)
        var buf = [UInt8](repeating: 0, count: max(size, 64))
        for f in 0..<flows {
            let prefix = prefixes[Int(rng.next() % UInt64(prefixes.count))]
            let host =
                prefix.length == 32 ? 0 : UInt32(truncatingIfNeeded: rng.next()) & ~IPv4Prefix.mask(Int(prefix.length))
            let dst = IPv4Address(prefix.address.value | host)
            let n = buf.withUnsafeMutableBytes {
                writeUDP4(
                    $0.baseAddress!,
                    size: size,
                    srcMAC: mac,
                    dstMAC: .vrouter,
                    source: source,
                    destination: dst,
                    sport: UInt16(truncatingIfNeeded: 1024 &+ (f &+ Int(truncatingIfNeeded: rng.next() % 64)) % 64000),
                    dport: 9
                )
            }
            set.append(Array(buf[0..<n]), port: port, timestamp: UInt64(f) * 1000)
        }
        return set
    }

    /// VXLAN packets from a remote node to local pods: `flows` flows from random sources in
    /// `remote` to the `pods` addresses, inner frames of `size` bytes.
    public static func vxlanToPods(
        fabricPort: UInt16,
        nodeMAC: MACAddress,
        underlay: IPv4Address,
        peerMAC: MACAddress,
        peer: IPv4Address,
        vni: UInt32,
        remote: IPv4Prefix,
        pods: [IPv4Address],
        flows: Int,
        size: Int = 64,
        seed: UInt64
    ) -> PacketSet {
        var rng = SplitMix64(seed: seed)
        var set = PacketSet()
        var inner = [UInt8](repeating: 0, count: max(size, 64))
        var buf = [UInt8](repeating: 0, count: max(size, 64) + 64)
        for f in 0..<flows {
            let src = IPv4Address(
                remote.address.value | UInt32(truncatingIfNeeded: rng.next()) & ~IPv4Prefix.mask(Int(remote.length))
            )
            let n = inner.withUnsafeMutableBytes {
                writeUDP4(
                    $0.baseAddress!,
                    size: size,
                    srcMAC: .vrouter,
                    dstMAC: .vrouter,
                    source: src,
                    destination: pods[f % pods.count],
                    sport: UInt16(truncatingIfNeeded: 2000 + f),
                    dport: 9
                )
            }
            let total = buf.withUnsafeMutableBytes { b in
                let p = b.baseAddress!
                var o = PacketBuilder.ethernet(p, destination: nodeMAC, source: peerMAC, etherType: EtherType.ipv4)
                o += PacketBuilder.ipv4(
                    p + o,
                    source: peer,
                    destination: underlay,
                    proto: IPProtocol.udp,
                    payloadLength: 16 + n
                )
                o += PacketBuilder.udp(
                    p + o,
                    sourcePort: UInt16(49152 + f % 16384),
                    destinationPort: UDPPort.vxlan,
                    payloadLength: 8 + n,
                    checksum: nil
                )
                p.setBE32(o, 0x0800_0000)
                p.setBE32(o + 4, vni << 8)
                o += 8
                inner.withUnsafeBytes { (p + o).copyMemory(from: $0.baseAddress!, byteCount: n) }
                return o + n
            }
            set.append(Array(buf[0..<total]), port: fabricPort, timestamp: UInt64(f) * 1000 + 500)
        }
        return set
    }

    /// MPLS-over-UDP packets from a remote node to local pods (`labels[i]` reaches `pods[i]`).
    public static func mplsToPods(
        fabricPort: UInt16,
        nodeMAC: MACAddress,
        underlay: IPv4Address,
        peerMAC: MACAddress,
        peer: IPv4Address,
        labels: [UInt32],
        remote: IPv4Prefix,
        pods: [IPv4Address],
        flows: Int,
        size: Int = 64,
        seed: UInt64
    ) -> PacketSet {
        var rng = SplitMix64(seed: seed)
        var set = PacketSet()
        var inner = [UInt8](repeating: 0, count: max(size, 64))
        var buf = [UInt8](repeating: 0, count: max(size, 64) + 64)
        for f in 0..<flows {
            let k = f % pods.count
            let src = IPv4Address(
                remote.address.value | UInt32(truncatingIfNeeded: rng.next()) & ~IPv4Prefix.mask(Int(remote.length))
            )
            let n = inner.withUnsafeMutableBytes {
                writeUDP4(
                    $0.baseAddress!,
                    size: size,
                    srcMAC: .vrouter,
                    dstMAC: .vrouter,
                    source: src,
                    destination: pods[k],
                    sport: UInt16(truncatingIfNeeded: 3000 + f),
                    dport: 9
                )
            }
            let ipLen = n - 14
            let total = buf.withUnsafeMutableBytes { b in
                let p = b.baseAddress!
                var o = PacketBuilder.ethernet(p, destination: nodeMAC, source: peerMAC, etherType: EtherType.ipv4)
                o += PacketBuilder.ipv4(
                    p + o,
                    source: peer,
                    destination: underlay,
                    proto: IPProtocol.udp,
                    payloadLength: 12 + ipLen
                )
                o += PacketBuilder.udp(
                    p + o,
                    sourcePort: UInt16(49152 + f % 16384),
                    destinationPort: UDPPort.mplsOverUDP,
                    payloadLength: 4 + ipLen,
                    checksum: nil
                )
                p.setBE32(o, labels[k] << 12 | 0x100 | 64)
                o += 4
                inner.withUnsafeBytes { (p + o).copyMemory(from: $0.baseAddress! + 14, byteCount: ipLen) }
                return o + ipLen
            }
            set.append(Array(buf[0..<total]), port: fabricPort, timestamp: UInt64(f) * 1000 + 700)
        }
        return set
    }
}
