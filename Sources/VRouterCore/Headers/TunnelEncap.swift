// The two overlay encapsulations as template factories. Outer IPv4 has DF clear (the
// underlay may fragment; inner packets too big with DF set get ICMP before encap), TTL 64
// by default, and a zero UDP checksum (allowed for IPv4 by RFC 7348 §5 and RFC 7510 §3).

/// VXLAN (RFC 7348): outer Ethernet (+ optional 802.1Q tag) / IPv4 / UDP (sport, 4789) /
/// VXLAN (I flag, VNI); the inner packet is an Ethernet frame. 50 bytes, 54 tagged.
public enum VXLANEncap {
    public static func template(
        sourceMAC: MACAddress,
        destinationMAC: MACAddress,
        vlanTCI: UInt16? = nil,
        source: IPv4Address,
        destination: IPv4Address,
        tos: UInt8 = 0,
        ttl: UInt8 = 64,
        destinationPort: UInt16 = UDPPort.vxlan,
        innerEthernet: (destination: MACAddress, source: MACAddress)? = nil
    ) -> TunnelTemplate {
        withUnsafeTemporaryAllocation(byteCount: TunnelTemplate.maxHeaderLength, alignment: 8) { buf in
            let p = buf.baseAddress!
            let (l2, vx) = TunnelOuter.write(
                p,
                sourceMAC: sourceMAC,
                destinationMAC: destinationMAC,
                vlanTCI: vlanTCI,
                source: source,
                destination: destination,
                tos: tos,
                ttl: ttl,
                destinationPort: destinationPort
            )
            p.setBE32(vx, UInt32(VXLANHeader.validVNIFlag) << 24)
            p.setBE32(vx &+ 4, 0)
            var end = vx &+ HeaderSize.vxlan
            if let inner = innerEthernet {
                // The inner Ethernet header (EtherType IPv4; the caller patches it for IPv6)
                // rides in the template, so an L3 packet is encapsulated in one apply:
                // 64 bytes untagged, the template's limit.
                end &+= PacketBuilder.ethernet(
                    p + end,
                    destination: inner.destination,
                    source: inner.source,
                    etherType: EtherType.ipv4
                )
            }
            return TunnelTemplate(
                header: UnsafeRawBufferPointer(start: p, count: end),
                ipOffset: l2,
                tagOffset: vx &+ 4,
                tagShift: 8,
                tagLow: 0
            )
        }
    }
}

/// MPLS over UDP (RFC 7510): outer Ethernet (+ optional tag) / IPv4 / UDP (sport, 6635) /
/// one MPLS label stack entry (label, TC, S = 1, TTL); the inner packet is an IP packet
/// without Ethernet. 46 bytes, 50 tagged.
public enum MPLSoUDPEncap {
    public static func template(
        sourceMAC: MACAddress,
        destinationMAC: MACAddress,
        vlanTCI: UInt16? = nil,
        source: IPv4Address,
        destination: IPv4Address,
        tos: UInt8 = 0,
        ttl: UInt8 = 64,
        trafficClass: UInt8 = 0,
        mplsTTL: UInt8 = 64,
        destinationPort: UInt16 = UDPPort.mplsOverUDP
    ) -> TunnelTemplate {
        withUnsafeTemporaryAllocation(byteCount: TunnelTemplate.maxHeaderLength, alignment: 8) { buf in
            let p = buf.baseAddress!
            let (l2, mpls) = TunnelOuter.write(
                p,
                sourceMAC: sourceMAC,
                destinationMAC: destinationMAC,
                vlanTCI: vlanTCI,
                source: source,
                destination: destination,
                tos: tos,
                ttl: ttl,
                destinationPort: destinationPort
            )
            let low = MPLSLabelStackEntry.encode(
                label: 0,
                trafficClass: trafficClass,
                bottomOfStack: true,
                ttl: mplsTTL
            )
            p.setBE32(mpls, low)
            return TunnelTemplate(
                header: UnsafeRawBufferPointer(start: p, count: mpls &+ HeaderSize.mpls),
                ipOffset: l2,
                tagOffset: mpls,
                tagShift: 12,
                tagLow: low
            )
        }
    }
}

/// The outer headers both encapsulations share: Ethernet (+ tag), IPv4 (protocol UDP, DF
/// clear, lengths and checksum left for `TunnelTemplate` to fill per packet), UDP (source
/// port and length 0, no checksum).
enum TunnelOuter {
    /// Writes them at `p`; returns the IPv4 header's offset and the offset after UDP.
    static func write(
        _ p: UnsafeMutableRawPointer,
        sourceMAC: MACAddress,
        destinationMAC: MACAddress,
        vlanTCI: UInt16?,
        source: IPv4Address,
        destination: IPv4Address,
        tos: UInt8,
        ttl: UInt8,
        destinationPort: UInt16
    ) -> (ip: Int, end: Int) {
        let l2 = PacketBuilder.ethernet(
            p,
            destination: destinationMAC,
            source: sourceMAC,
            etherType: EtherType.ipv4,
            vlanTCI: vlanTCI
        )
        _ = PacketBuilder.ipv4(
            p + l2,
            source: source,
            destination: destination,
            proto: IPProtocol.udp,
            payloadLength: 0,
            ttl: ttl,
            tos: tos
        )
        let udp = l2 &+ HeaderSize.ipv4
        _ = PacketBuilder.udp(p + udp, sourcePort: 0, destinationPort: destinationPort, payloadLength: 0, checksum: nil)
        return (l2, udp &+ HeaderSize.udp)
    }
}
