// Header writers. Each writes one header at a pointer the caller has sized and returns the
// bytes written, so a frame is built as `off += PacketBuilder.x(p + off, ...)`. They are for
// generated packets (ARP, ICMP, tests, tools) and for the tunnel templates' one-time setup;
// per-packet encapsulation uses TunnelTemplate instead.

public enum PacketBuilder {}

extension PacketBuilder {
    /// Ethernet II, with one 802.1Q tag when `vlanTCI` is given. Returns 14 or 18.
    @inlinable
    public static func ethernet(
        _ p: UnsafeMutableRawPointer,
        destination: MACAddress,
        source: MACAddress,
        etherType: UInt16,
        vlanTCI: UInt16? = nil
    ) -> Int {
        p.setBE48(0, destination.value)
        p.setBE48(6, source.value)
        guard let tci = vlanTCI else {
            p.setBE16(12, etherType)
            return HeaderSize.ethernet
        }
        p.setBE16(12, EtherType.vlan)
        p.setBE16(14, tci)
        p.setBE16(16, etherType)
        return HeaderSize.ethernet &+ HeaderSize.vlanTag
    }

    /// Ethernet with an 802.1ad service tag then an 802.1Q customer tag (QinQ). Returns 22.
    @inlinable
    public static func ethernetQinQ(
        _ p: UnsafeMutableRawPointer,
        destination: MACAddress,
        source: MACAddress,
        etherType: UInt16,
        outerTCI: UInt16,
        innerTCI: UInt16
    ) -> Int {
        p.setBE48(0, destination.value)
        p.setBE48(6, source.value)
        p.setBE16(12, EtherType.qinq)
        p.setBE16(14, outerTCI)
        p.setBE16(16, EtherType.vlan)
        p.setBE16(18, innerTCI)
        p.setBE16(20, etherType)
        return 22
    }

    /// The 28-byte Ethernet/IPv4 ARP body.
    @inlinable
    public static func arp(
        _ p: UnsafeMutableRawPointer,
        operation: UInt16,
        senderMAC: MACAddress,
        senderIP: IPv4Address,
        targetMAC: MACAddress,
        targetIP: IPv4Address
    ) -> Int {
        p.setBE32(0, 0x0001_0800)  // hardware Ethernet, protocol IPv4
        p.setBE16(4, 0x0604)  // lengths 6 and 4
        p.setBE16(6, operation)
        p.setBE48(8, senderMAC.value)
        p.setBE32(14, senderIP.value)
        p.setBE48(18, targetMAC.value)
        p.setBE32(24, targetIP.value)
        return HeaderSize.arp
    }

    /// A broadcast ARP request frame asking who has `targetIP` (RFC 826; target MAC zero).
    @inlinable
    public static func arpRequestFrame(
        _ p: UnsafeMutableRawPointer,
        senderMAC: MACAddress,
        senderIP: IPv4Address,
        targetIP: IPv4Address,
        vlanTCI: UInt16? = nil
    ) -> Int {
        let l2 = ethernet(p, destination: .broadcast, source: senderMAC, etherType: EtherType.arp, vlanTCI: vlanTCI)
        return l2
            &+ arp(
                p + l2,
                operation: ARPHeader.request,
                senderMAC: senderMAC,
                senderIP: senderIP,
                targetMAC: .zero,
                targetIP: targetIP
            )
    }

    /// A unicast ARP reply frame: `senderIP` is at `senderMAC`, sent to the asker.
    @inlinable
    public static func arpReplyFrame(
        _ p: UnsafeMutableRawPointer,
        senderMAC: MACAddress,
        senderIP: IPv4Address,
        targetMAC: MACAddress,
        targetIP: IPv4Address,
        vlanTCI: UInt16? = nil
    ) -> Int {
        let l2 = ethernet(p, destination: targetMAC, source: senderMAC, etherType: EtherType.arp, vlanTCI: vlanTCI)
        return l2
            &+ arp(
                p + l2,
                operation: ARPHeader.reply,
                senderMAC: senderMAC,
                senderIP: senderIP,
                targetMAC: targetMAC,
                targetIP: targetIP
            )
    }

    /// A 20-byte IPv4 header (no options) with its checksum filled. Returns 20.
    @inlinable
    public static func ipv4(
        _ p: UnsafeMutableRawPointer,
        source: IPv4Address,
        destination: IPv4Address,
        proto: UInt8,
        payloadLength: Int,
        ttl: UInt8 = 64,
        tos: UInt8 = 0,
        identification: UInt16 = 0,
        dontFragment: Bool = false
    ) -> Int {
        p.setU8(0, 0x45)
        p.setU8(1, tos)
        p.setBE16(2, UInt16(truncatingIfNeeded: HeaderSize.ipv4 &+ payloadLength))
        p.setBE16(4, identification)
        p.setBE16(6, dontFragment ? IPv4Header.dontFragmentBit : 0)
        p.setU8(8, ttl)
        p.setU8(9, proto)
        p.setBE16(10, 0)
        p.setBE32(12, source.value)
        p.setBE32(16, destination.value)
        p.setBE16(10, Checksum.compute(p, count: HeaderSize.ipv4))
        return HeaderSize.ipv4
    }

    /// A 40-byte IPv6 header. Returns 40.
    @inlinable
    public static func ipv6(
        _ p: UnsafeMutableRawPointer,
        source: IPv6Address,
        destination: IPv6Address,
        nextHeader: UInt8,
        payloadLength: Int,
        hopLimit: UInt8 = 64,
        trafficClass: UInt8 = 0,
        flowLabel: UInt32 = 0
    ) -> Int {
        p.setBE32(0, 0x6000_0000 | UInt32(trafficClass) << 20 | flowLabel & 0xF_FFFF)
        p.setBE16(4, UInt16(truncatingIfNeeded: payloadLength))
        p.setU8(6, nextHeader)
        p.setU8(7, hopLimit)
        p.setBE128(8, source.value)
        p.setBE128(24, destination.value)
        return HeaderSize.ipv6
    }

    /// A UDP header for `payloadLength` bytes that already follow it. With a pseudo-header
    /// the checksum is computed over header and payload; without one it is 0 ("none",
    /// IPv4 only: RFC 7348 §5 and RFC 7510 §3 tunnels). IPv6 callers must pass `.ipv6`.
    @inlinable
    public static func udp(
        _ p: UnsafeMutableRawPointer,
        sourcePort: UInt16,
        destinationPort: UInt16,
        payloadLength: Int,
        checksum pseudo: PseudoHeader?
    ) -> Int {
        let length = HeaderSize.udp &+ payloadLength
        p.setBE16(0, sourcePort)
        p.setBE16(2, destinationPort)
        p.setBE16(4, UInt16(truncatingIfNeeded: length))
        p.setBE16(6, 0)
        if let pseudo {
            UDPHeader(p).updateChecksum(
                length: length,
                pseudoHeaderSum: pseudo.sum(proto: IPProtocol.udp, length: length)
            )
        }
        return HeaderSize.udp
    }

    /// A TCP header without options, or with only an MSS option when `mss` is given, for
    /// `payloadLength` bytes already in place after it (at `p + 20`, or `p + 24` with an
    /// MSS option). Returns 20 or 24.
    @inlinable
    public static func tcp(
        _ p: UnsafeMutableRawPointer,
        sourcePort: UInt16,
        destinationPort: UInt16,
        sequence: UInt32,
        acknowledgment: UInt32,
        flags: TCPFlags,
        window: UInt16,
        mss: UInt16? = nil,
        payloadLength: Int,
        pseudoHeader: PseudoHeader
    ) -> Int {
        let hl = mss == nil ? HeaderSize.tcp : HeaderSize.tcp &+ 4
        if let mss {
            p.setU8(20, TCPHeader.optionMSS)
            p.setU8(21, 4)
            p.setBE16(22, mss)
        }
        p.setBE16(0, sourcePort)
        p.setBE16(2, destinationPort)
        p.setBE32(4, sequence)
        p.setBE32(8, acknowledgment)
        p.setU8(12, UInt8(hl >> 2) << 4)
        p.setU8(13, flags.rawValue)
        p.setBE16(14, window)
        p.setBE16(18, 0)
        let length = hl &+ payloadLength
        TCPHeader(p).updateChecksum(
            length: length,
            pseudoHeaderSum: pseudoHeader.sum(proto: IPProtocol.tcp, length: length)
        )
        return hl
    }

    /// ICMPv4 echo request or reply with `payload` copied after the header. Returns 8 + payload.
    @inlinable
    public static func icmpEcho(
        _ p: UnsafeMutableRawPointer,
        isReply: Bool,
        identifier: UInt16,
        sequence: UInt16,
        payload: UnsafeRawBufferPointer
    ) -> Int {
        p.setU8(0, isReply ? ICMPv4Header.echoReply : ICMPv4Header.echoRequest)
        p.setU8(1, 0)
        p.setBE16(4, identifier)
        p.setBE16(6, sequence)
        if let src = payload.baseAddress { (p + HeaderSize.icmp).copyMemory(from: src, byteCount: payload.count) }
        let length = HeaderSize.icmp &+ payload.count
        ICMPv4Header(p).updateChecksum(length: length)
        return length
    }

    /// ICMPv6 echo request or reply (RFC 4443 §4) with `payload` copied after the header.
    @inlinable
    public static func icmpv6Echo(
        _ p: UnsafeMutableRawPointer,
        isReply: Bool,
        identifier: UInt16,
        sequence: UInt16,
        payload: UnsafeRawBufferPointer,
        source: IPv6Address,
        destination: IPv6Address
    ) -> Int {
        p.setU8(0, isReply ? ICMPv6Header.echoReply : ICMPv6Header.echoRequest)
        p.setU8(1, 0)
        p.setBE16(4, identifier)
        p.setBE16(6, sequence)
        if let src = payload.baseAddress { (p + HeaderSize.icmp).copyMemory(from: src, byteCount: payload.count) }
        let length = HeaderSize.icmp &+ payload.count
        let pseudo = PseudoHeader.ipv6(source: source, destination: destination)
        ICMPv6Header(p).updateChecksum(
            length: length,
            pseudoHeaderSum: pseudo.sum(proto: IPProtocol.icmpv6, length: length)
        )
        return length
    }
}
