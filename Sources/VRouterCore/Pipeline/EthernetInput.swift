// ethernet-input: validates and classifies each received frame in one pass over its
// headers, decapsulating tunnel packets on the fabric (vxlan-decap, mpls-udp-decap) and
// checking pod sources (anti-spoofing). IP packets leave with their (inner) L3/L4
// offsets, VRF and flow key recorded; ARP and neighbour solicitations go to arp-nd;
// everything else is dropped under exactly one reason. Every read is bounds-checked
// against the frame length first: malformed packets are counted, never trusted.

import CVRouterShims

@usableFromInline
enum Disposition {
    case ip
    case arpOrND
    case output  // answered in place (echo to the underlay address): meta.txPort is set
    case drop(DropReason)
}

extension Pipeline {
    /// `fused`: the fast parse (FastPath.swift) goes first and takes what it can.
    @inline(__always)
    mutating func ethernetInput(_ input: inout Frame, _ view: ForwardingView, fused: Bool, output: inout Frame) {
        let pool = self.pool
        let n = input.count
        for i in 0..<n {
            if i &+ 3 < n {
                // Packet data 3 ahead: one line covers Ethernet + IPv4 + UDP + VXLAN.
                let ahead = input[i &+ 3]
                vrt_prefetch(pool.buffer(ahead) + Int(pool.metas[Int(ahead)].offset))
            }
            let idx = input[i]
            if fused && fastClassify(idx, view) {
                ipList.append(idx)
                continue
            }
            switch classify(idx, view) {
            case .ip:
                recordFlowKey(idx)
                if fused { recordGeneralPosition(pool.meta(idx)) }
                ipList.append(idx)
            case .arpOrND:
                arpList.append(idx)
            case .output:
                // Replies built in place go straight out; they are few (pings of the node).
                emit(idx, &output)
            case .drop(let reason):
                drop(idx, reason)
            }
        }
    }

    @inline(__always)
    mutating func classify(_ idx: UInt32, _ view: ForwardingView) -> Disposition {
        let m = pool.meta(idx)
        let rx = m.pointee.rxPort
        guard let port = view.port(rx), port.pointee.kind != .none, port.pointee.flags.contains(.up) else {
            return .drop(.invalidInterface)
        }
        let pc = counters.ports + Int(rx)  // Safe: port ids are < Counters.maxPorts (TableBuilder).
        pc.pointee.rxPackets &+= 1
        pc.pointee.rxBytes &+= UInt64(m.pointee.length)

        let p = pool.buffer(idx)
        var off = Int(m.pointee.offset)
        var end = off &+ Int(m.pointee.length)
        guard end &- off >= 14 else { return .drop(.truncated) }
        var etherType = p.be16(off &+ 12)
        off &+= 14
        var vlan: UInt16 = 0
        if etherType == EtherType.vlan || etherType == EtherType.qinq {
            guard end &- off >= 4 else { return .drop(.truncated) }
            vlan = p.be16(off) & 0x0FFF
            etherType = p.be16(off &+ 2)
            off &+= 4
            // One tag is all a port can be configured for; a second one is not ours.
            if etherType == EtherType.vlan || etherType == EtherType.qinq { return .drop(.vlanMismatch) }
            m.pointee.flags.insert(.vlan)
        }
        guard vlan == port.pointee.vlan else { return .drop(.vlanMismatch) }

        let isFabric = port.pointee.kind == .fabric
        switch etherType {
        case EtherType.ipv4:
            if let r = parseIPv4(p, off, &end, m) { return .drop(r) }
            if isFabric { return fabricIPv4(idx, p, m, &end, port, view) }
            if m.pointee.offload.isActive, let r = checkOffload(idx, p, m) { return .drop(r) }
            return podIPv4(p, m, port)
        case EtherType.ipv6:
            if isFabric { return .drop(.notTunnel) }  // the underlay is IPv4
            if let r = parseIPv6(p, off, &end, m) { return .drop(r) }
            if m.pointee.offload.isActive, let r = checkOffload(idx, p, m) { return .drop(r) }
            return podIPv6(p, m, port)
        case EtherType.arp:
            guard end &- off >= 28 else { return .drop(.truncated) }
            m.pointee.l3 = UInt16(truncatingIfNeeded: off)
            return .arpOrND
        default:
            return .drop(.unsupportedProtocol)
        }
    }

    /// Validates an IPv4 header at `off` and records it in the metadata; trims Ethernet
    /// padding from `end` (and the frame length). Returns a drop reason when invalid.
    @inline(__always)
    mutating func parseIPv4(
        _ p: UnsafeMutableRawPointer,
        _ off: Int,
        _ end: inout Int,
        _ m: UnsafeMutablePointer<PacketMeta>
    ) -> DropReason? {
        guard end &- off >= 20 else { return .truncated }
        let vihl = p.u8(off)
        guard vihl >> 4 == 4 else { return .invalidPacket }
        let ihl = Int(vihl & 0x0F) &<< 2
        guard ihl >= 20 else { return .invalidPacket }
        guard end &- off >= ihl else { return .truncated }
        let total = Int(p.be16(off &+ 2))
        guard total >= ihl else { return .invalidPacket }
        guard off &+ total <= end else { return .truncated }
        guard IPv4Header(p + off).isChecksumValid else { return .badChecksum }
        if off &+ total < end {
            // Ethernet padding after a short IP packet is not part of it.
            m.pointee.length &-= UInt16(truncatingIfNeeded: end &- (off &+ total))
            end = off &+ total
        }
        let frag = p.be16(off &+ 6)
        var flags = m.pointee.flags
        flags.insert(.ipv4)
        if frag & 0x4000 != 0 { flags.insert(.dfSet) }
        if frag & 0x3FFF != 0 {
            flags.insert(.fragment)
            if frag & 0x1FFF != 0 { flags.insert(.laterFragment) }
        }
        let proto = p.u8(off &+ 9)
        let l4 = off &+ ihl
        if !flags.contains(.laterFragment) {
            // The transport header of a first fragment or a whole packet must hold its ports.
            switch proto {
            case IPProtocol.tcp:
                guard end &- l4 >= 20 else { return .truncated }
                let tcpFlags = p.u8(l4 &+ 13)
                if tcpFlags & 0x02 != 0 { flags.insert(.tcpSyn) }
                if tcpFlags & 0x05 != 0 {  // FIN or RST
                    flags.insert(.tcpClosing)
                    if tcpFlags & 0x04 != 0 { flags.insert(.tcpReset) }
                }
            case IPProtocol.udp:
                guard end &- l4 >= 8 else { return .truncated }
            case IPProtocol.icmp:
                guard end &- l4 >= 8 else { return .truncated }
            default: break
            }
        }
        m.pointee.flags = flags
        m.pointee.l3 = UInt16(truncatingIfNeeded: off)
        m.pointee.l4 = UInt16(truncatingIfNeeded: l4)
        m.pointee.proto = proto
        return nil
    }

    /// Validates an IPv6 header at `off`, walks its extension headers to the transport
    /// header, and records it. Returns a drop reason when invalid.
    @inline(__always)
    mutating func parseIPv6(
        _ p: UnsafeMutableRawPointer,
        _ off: Int,
        _ end: inout Int,
        _ m: UnsafeMutablePointer<PacketMeta>
    ) -> DropReason? {
        guard end &- off >= 40 else { return .truncated }
        guard p.u8(off) >> 4 == 6 else { return .invalidPacket }
        let total = 40 &+ Int(p.be16(off &+ 4))
        guard off &+ total <= end else { return .truncated }
        if off &+ total < end {
            m.pointee.length &-= UInt16(truncatingIfNeeded: end &- (off &+ total))
            end = off &+ total
        }
        var flags = m.pointee.flags
        flags.insert(.ipv6)
        var next = p.u8(off &+ 6)
        var l4 = off &+ 40
        // Extension headers: at most 8, each bounded by the packet (RFC 8200 §4).
        var hops = 0
        while true {
            switch next {
            case IPProtocol.hopByHop, IPProtocol.ipv6Routing, IPProtocol.ipv6DestinationOptions:
                guard end &- l4 >= 8 else { return .truncated }
                let len = (Int(p.u8(l4 &+ 1)) &+ 1) &<< 3
                guard end &- l4 >= len else { return .truncated }
                next = p.u8(l4)
                l4 &+= len
            case IPProtocol.ipv6Fragment:
                guard end &- l4 >= 8 else { return .truncated }
                let fo = p.be16(l4 &+ 2)
                flags.insert(.fragment)
                if fo & 0xFFF8 != 0 { flags.insert(.laterFragment) }
                next = p.u8(l4)
                l4 &+= 8
            case IPProtocol.ah:
                guard end &- l4 >= 8 else { return .truncated }
                let len = (Int(p.u8(l4 &+ 1)) &+ 2) &<< 2
                guard end &- l4 >= len else { return .truncated }
                next = p.u8(l4)
                l4 &+= len
            default:
                hops = 100
            }
            if hops == 100 { break }
            hops &+= 1
            if hops > 8 { return .invalidPacket }
        }
        if !flags.contains(.laterFragment) {
            switch next {
            case IPProtocol.tcp:
                guard end &- l4 >= 20 else { return .truncated }
                let tcpFlags = p.u8(l4 &+ 13)
                if tcpFlags & 0x02 != 0 { flags.insert(.tcpSyn) }
                if tcpFlags & 0x05 != 0 {
                    flags.insert(.tcpClosing)
                    if tcpFlags & 0x04 != 0 { flags.insert(.tcpReset) }
                }
            case IPProtocol.udp, IPProtocol.icmpv6:
                guard end &- l4 >= 8 else { return .truncated }
            default: break
            }
        }
        m.pointee.flags = flags
        m.pointee.l3 = UInt16(truncatingIfNeeded: off)
        m.pointee.l4 = UInt16(truncatingIfNeeded: l4)
        m.pointee.proto = next
        return nil
    }

    /// IPv4 from a pod: anti-spoofing, then routed in the port's VRF.
    @inline(__always)
    mutating func podIPv4(
        _ p: UnsafeMutableRawPointer,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ port: UnsafePointer<PortEntry>
    ) -> Disposition {
        let l3 = Int(m.pointee.l3)
        let src = p.be32(l3 &+ 12)
        let dst = p.be32(l3 &+ 16)
        // Limited broadcast and multicast are not carried by this L3 overlay (checked first:
        // a pod's DHCP or IGMP from 0.0.0.0 is multicast, not spoofing).
        if dst >> 28 == 0xE || dst == 0xFFFF_FFFF { return .drop(.multicast) }
        let pf = port.pointee.flags
        if pf.contains(.antiSpoofing) && !(pf.contains(.hasIPv4) && src == port.pointee.ipv4) {
            return .drop(.spoofedSource)
        }
        m.pointee.vrf = port.pointee.vrf
        return .ip
    }

    /// IPv6 from a pod: neighbour discovery to arp-nd, anti-spoofing, then routed.
    @inline(__always)
    mutating func podIPv6(
        _ p: UnsafeMutableRawPointer,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ port: UnsafePointer<PortEntry>
    ) -> Disposition {
        let l3 = Int(m.pointee.l3)
        let src = p.be128(l3 &+ 8)
        let dst = p.be128(l3 &+ 24)
        if m.pointee.proto == IPProtocol.icmpv6 && !m.pointee.flags.contains(.laterFragment) {
            let type = p.u8(Int(m.pointee.l4))
            // Router/neighbour solicitations and advertisements (RFC 4861 types 133-137).
            if type >= 133 && type <= 137 { return .arpOrND }
        }
        // Multicast first: a pod's MLD reports come from :: or its link-local address.
        if dst >> 120 == 0xFF { return .drop(.multicast) }
        let pf = port.pointee.flags
        if pf.contains(.antiSpoofing) && !(pf.contains(.hasIPv6) && src == port.pointee.ipv6) {
            return .drop(.spoofedSource)
        }
        m.pointee.vrf = port.pointee.vrf
        return .ip
    }

    /// IPv4 on the fabric: tunnel packets to our underlay address are decapsulated; echo
    /// requests to it are answered. With an underlay VRF, the rest is routed there: to
    /// the underlay address only replies of translated flows (and ICMP errors about
    /// them) match anything, to other addresses only local pods (IP-fabric forwarding);
    /// route-lookup enforces both. Without one, anything else is not ours.
    @inline(__always)
    mutating func fabricIPv4(
        _ idx: UInt32,
        _ p: UnsafeMutableRawPointer,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ end: inout Int,
        _ port: UnsafePointer<PortEntry>,
        _ view: ForwardingView
    ) -> Disposition {
        let l3 = Int(m.pointee.l3)
        let routed = port.pointee.flags.contains(.underlayVRF)
        guard p.be32(l3 &+ 16) == port.pointee.ipv4 else {
            return routed ? underlayIPv4(p, m, port, toNode: false) : .drop(.notTunnel)
        }
        let proto = m.pointee.proto
        if m.pointee.flags.contains(.fragment) {
            // We never send outer fragments; a peer that does has an MTU problem to fix.
            // (Translations do not cover fragments either.)
            return proto == IPProtocol.udp ? .drop(.badTunnelOuter) : .drop(.notTunnel)
        }
        let l4 = Int(m.pointee.l4)
        if proto == IPProtocol.icmp {
            let type = p.u8(l4)
            if type == ICMPv4Header.echoRequest { return reflectEcho(idx, p, m, end) }
            guard routed else { return .drop(.notTunnel) }
            if ICMPv4Header.isError(type) {
                // Keyed by its quote (recordFlowKey): the reverse key of the flow it is about.
                let inner = l4 &+ 8
                guard NATRewrite.quotedFlow(p, inner: inner, end: end) != nil else { return .drop(.natNoMapping) }
                m.pointee.flags.insert(.natICMPError)
                m.pointee.scratch0 = UInt64(inner)
            }
            return underlayIPv4(p, m, port, toNode: true)
        }
        guard proto == IPProtocol.udp else {
            return routed ? underlayIPv4(p, m, port, toNode: true) : .drop(.notTunnel)
        }
        let dport = p.be16(l4 &+ 2)
        if dport == UDPPort.vxlan {
            // RFC 7348 §5: flags (I = 0x08), 24 reserved bits, VNI, 8 reserved bits.
            let vx = l4 &+ 8
            guard end &- vx >= 8 &+ 14 else { return .drop(.truncated) }
            guard p.u8(vx) & 0x08 != 0 else { return .drop(.invalidPacket) }
            let vni = p.be32(vx &+ 4) >> 8
            let vrf = view.vnis.lookup(vni)
            guard vrf != VNITable.miss, view.vrf(vrf) != nil else { return .drop(.invalidVNI) }
            let inner = vx &+ 8
            let et = p.be16(inner &+ 12)
            m.pointee.flags = [.decapsulated]
            m.pointee.vrf = vrf
            counters.count(.vxlanDecap)
            if et == EtherType.ipv4 {
                if let r = parseIPv4(p, inner &+ 14, &end, m) { return .drop(r) }
            } else if et == EtherType.ipv6 {
                if let r = parseIPv6(p, inner &+ 14, &end, m) { return .drop(r) }
            } else {
                return .drop(.unsupportedProtocol)
            }
            if m.pointee.offload.isActive, let r = decapsulatedOffload(idx, p, m) { return .drop(r) }
            return innerDestinationCheck(p, m)
        }
        if dport == UDPPort.mplsOverUDP || dport == UDPPort.contrailMPLSOverUDP {
            // RFC 7510: one label stack entry (label 20, TC 3, S 1, TTL 8), then the IP packet.
            let ls = l4 &+ 8
            guard end &- ls >= 4 &+ 20 else { return .drop(.truncated) }
            let entry = p.be32(ls)
            guard entry & 0x100 != 0 else { return .drop(.invalidLabel) }  // one label only
            guard entry & 0xFF != 0 else { return .drop(.ttlExpired) }
            let target = view.labelTarget(entry >> 12)
            guard target != ForwardingView.noNexthop, let nh = view.nexthop(target) else {
                return .drop(.invalidLabel)
            }
            m.pointee.flags = [.decapsulated, .forcedNexthop]
            m.pointee.nexthop = target
            m.pointee.label = 0
            m.pointee.vrf = nh.pointee.vrf
            counters.count(.mplsDecap)
            let version = p.u8(ls &+ 4) >> 4
            if version == 4 {
                if let r = parseIPv4(p, ls &+ 4, &end, m) { return .drop(r) }
            } else if version == 6 {
                if let r = parseIPv6(p, ls &+ 4, &end, m) { return .drop(r) }
            } else {
                return .drop(.invalidPacket)
            }
            if m.pointee.offload.isActive, let r = decapsulatedOffload(idx, p, m) { return .drop(r) }
            return innerDestinationCheck(p, m)
        }
        return routed ? underlayIPv4(p, m, port, toNode: true) : .drop(.notTunnel)
    }

    /// Untunneled IPv4 on a fabric with an underlay VRF: routed there (see fabricIPv4).
    @inline(__always)
    mutating func underlayIPv4(
        _ p: UnsafeMutableRawPointer,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ port: UnsafePointer<PortEntry>,
        toNode: Bool
    ) -> Disposition {
        let dst = p.be32(Int(m.pointee.l3) &+ 16)
        if dst >> 28 == 0xE || dst == 0xFFFF_FFFF { return .drop(.multicast) }
        if m.pointee.flags.contains(.checksumPartial) && !m.pointee.offload.isSuperframe {
            // Completed before translation updates it; the virtio-net header's partial
            // checksum (when the socket has them) no longer holds. A superframe keeps it:
            // rewrite segments a translated one, each segment summed in full.
            completeChecksum(p, m)
            m.pointee.offload.flags &= ~PacketOffload.needsChecksum
        }
        m.pointee.vrf = port.pointee.vrf
        m.pointee.flags.insert(toNode ? [.underlayRouted, .toNode] : .underlayRouted)
        return .ip
    }

    /// Fills in the TCP or UDP checksum of a packet whose sender left it to an offload that
    /// never ran (it holds only the pseudo-header sum): translation updates it
    /// incrementally and a pod's kernel checks it. Rare (a sender on this machine), so
    /// computed in full.
    @inline(never)
    func completeChecksum(_ p: UnsafeMutableRawPointer, _ m: UnsafeMutablePointer<PacketMeta>) {
        let proto = m.pointee.proto
        guard !m.pointee.flags.contains(.fragment), proto == IPProtocol.tcp || proto == IPProtocol.udp else { return }
        let l3 = Int(m.pointee.l3)
        let l4 = Int(m.pointee.l4)
        let length = l3 &+ Int(p.be16(l3 &+ 2)) &- l4
        let pseudo = Checksum.pseudoHeaderIPv4(
            src: p.be32(l3 &+ 12),
            dst: p.be32(l3 &+ 16),
            proto: proto,
            length: length
        )
        if proto == IPProtocol.tcp {
            TCPHeader(p + l4).updateChecksum(length: length, pseudoHeaderSum: pseudo)
        } else {
            UDPHeader(p + l4).updateChecksum(length: length, pseudoHeaderSum: pseudo)
        }
    }

    /// Decapsulated packets are unicast IP for a pod; multicast is not carried.
    @inline(__always)
    mutating func innerDestinationCheck(
        _ p: UnsafeMutableRawPointer,
        _ m: UnsafeMutablePointer<PacketMeta>
    ) -> Disposition {
        let l3 = Int(m.pointee.l3)
        if m.pointee.flags.contains(.ipv4) {
            let dst = p.be32(l3 &+ 16)
            if dst >> 28 == 0xE || dst == 0xFFFF_FFFF { return .drop(.multicast) }
        } else if p.u8(l3 &+ 24) == 0xFF {
            return .drop(.multicast)
        }
        return .ip
    }

    /// An echo request to the node's underlay address becomes its reply, in place, sent
    /// back where it came from (operators ping nodes).
    @inline(never)
    mutating func reflectEcho(
        _ idx: UInt32,
        _ p: UnsafeMutableRawPointer,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ end: Int
    ) -> Disposition {
        guard EchoResponder.reply(pool: pool, idx) else { return .drop(.notTunnel) }
        m.pointee.txPort = m.pointee.rxPort
        counters.count(.echoReply)
        return .output
    }
}
