// Runs of TCP segments for GRO: a packet repeated as the next segments of its flow, which
// random mutation alone would almost never make (each sequence number the previous one
// plus its payload, the checksum still right).

import VRouterCore

enum TCPRun {
    /// Advances the sequence number of the TCP segment in `frame` (found behind Ethernet,
    /// a VLAN tag, IPv4 or IPv6, and VXLAN or MPLS over UDP toward the fabric) by
    /// `segments` times its payload, updating its checksum incrementally (RFC 1624), so a
    /// valid checksum stays valid and a wrong one stays wrong. Anything else is left as is.
    static func advance(_ frame: UnsafeMutableRawPointer, length: Int, segments: Int) {
        guard let (tcp, payload) = find(UnsafeRawPointer(frame), length, ethernet: 0, depth: 0), payload > 0 else {
            return
        }
        let old = frame.be32(tcp + 4)
        let new = old &+ UInt32(truncatingIfNeeded: payload &* segments)
        frame.setBE32(tcp + 4, new)
        var sum = UInt32(~frame.be16(tcp + 16))
        for (o, n) in [(UInt16(old >> 16), UInt16(new >> 16)), (UInt16(old & 0xFFFF), UInt16(new & 0xFFFF))] {
            sum += UInt32(~o) + UInt32(n)
        }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        frame.setBE16(tcp + 16, ~UInt16(sum))
    }

    /// The TCP header's offset and payload length in the frame whose Ethernet header is at
    /// `ethernet`.
    static func find(_ p: UnsafeRawPointer, _ n: Int, ethernet e: Int, depth: Int) -> (Int, Int)? {
        guard depth < 3, e + 14 <= n else { return nil }
        var type = p.be16(e + 12)
        var l3 = e + 14
        if type == 0x8100 {
            guard l3 + 4 <= n else { return nil }
            type = p.be16(l3 + 2)
            l3 += 4
        }
        return ip(p, n, l3, type, depth: depth)
    }

    static func ip(_ p: UnsafeRawPointer, _ n: Int, _ l3: Int, _ type: UInt16, depth: Int) -> (Int, Int)? {
        let proto: UInt8
        let l4: Int
        let end: Int
        if type == 0x0800 {
            guard l3 + 20 <= n else { return nil }
            l4 = l3 + Int(p.u8(l3) & 0xF) * 4
            end = min(n, l3 + Int(p.be16(l3 + 2)))
            proto = p.u8(l3 + 9)
        } else if type == 0x86DD {
            guard l3 + 40 <= n else { return nil }
            l4 = l3 + 40
            end = min(n, l4 + Int(p.be16(l3 + 4)))
            proto = p.u8(l3 + 6)
        } else {
            return nil
        }
        if proto == 6 {
            guard l4 + 20 <= end else { return nil }
            let header = Int(p.u8(l4 + 12) >> 4) * 4
            guard header >= 20, l4 + header <= end else { return nil }
            return (l4, end - l4 - header)
        }
        guard proto == 17, l4 + 8 <= end else { return nil }
        switch p.be16(l4 + 2) {
        case 4789:  // VXLAN: its header, then the inner Ethernet frame
            return find(p, end, ethernet: l4 + 16, depth: depth + 1)
        case 6635:  // MPLS over UDP: labels to the bottom of the stack, then IP
            var at = l4 + 8
            while at + 4 <= end {
                let bottom = p.u8(at + 2) & 1 != 0
                at += 4
                if bottom, at < end {
                    return ip(p, end, at, p.u8(at) >> 4 == 6 ? 0x86DD : 0x0800, depth: depth + 1)
                }
            }
            return nil
        default:
            return nil
        }
    }
}
