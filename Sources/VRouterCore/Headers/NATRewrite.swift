// Address and port translation of IPv4 packets in place (fabric SNAT), with every
// checksum the change touches updated incrementally (RFC 1624), never recomputed: the
// IPv4 header checksum, the TCP/UDP checksum (its pseudo-header holds the address), the
// ICMP checksum for an echo identifier. An ICMP error quoting a translated packet gets
// the same translation inside its quote (RFC 5508 §4.2), and its own checksum follows
// every word that changed under it.
//
// Cost of `rewrite` on a TCP or UDP packet: two 4-byte and two 2-byte stores, two
// checksum folds; ~20 instructions.

public enum NATRewrite {
    /// Rewrites the source (`destination` false) or destination address of the IPv4
    /// packet at `l3` to `address`, and its port (TCP, UDP) or echo identifier (ICMP) at
    /// `l4` to `port`. The transport header must be present (not a later fragment).
    @inlinable @inline(__always)
    public static func rewrite(
        _ p: UnsafeMutableRawPointer,
        l3: Int,
        l4: Int,
        proto: UInt8,
        destination: Bool,
        address: UInt32,
        port: UInt16
    ) {
        let addressOffset = l3 &+ (destination ? 16 : 12)
        let oldAddress = p.be32(addressOffset)
        p.setBE32(addressOffset, address)
        p.setBE16(l3 &+ 10, Checksum.update(p.be16(l3 &+ 10), old: oldAddress, new: address))
        if proto == IPProtocol.icmp {
            // No pseudo-header: only the identifier changes under the ICMP checksum.
            let old = p.be16(l4 &+ 4)
            p.setBE16(l4 &+ 4, port)
            p.setBE16(l4 &+ 2, Checksum.update(p.be16(l4 &+ 2), old: old, new: port))
            return
        }
        let portOffset = l4 &+ (destination ? 2 : 0)
        let oldPort = p.be16(portOffset)
        p.setBE16(portOffset, port)
        let checksumOffset = l4 &+ (proto == IPProtocol.tcp ? 16 : 6)
        let c = p.be16(checksumOffset)
        // UDP over IPv4 may carry no checksum (0): it stays without one (RFC 768).
        if proto == IPProtocol.udp && c == 0 { return }
        var n = Checksum.update(c, old: oldAddress, new: address, oldPort: oldPort, newPort: port)
        // A computed UDP checksum of 0 is sent as all ones (RFC 768).
        if proto == IPProtocol.udp && n == 0 { n = 0xFFFF }
        p.setBE16(checksumOffset, n)
    }

    /// Translates an ICMPv4 error about a translated flow. The error is at `l3` (its ICMP
    /// header at `l4`), the quoted packet's IPv4 header at `inner`, and the error's IP
    /// packet ends at `end`; the quote holds at least its IP header and 8 bytes.
    ///
    /// `destination` true: an error from outside about a packet the node translated on
    /// its way out. The error's destination and the quote's source (the node's address)
    /// become `address`, the quote's source port or echo identifier `port`. False: an
    /// error from a pod about a reply the node translated on its way in: the error's
    /// source and the quote's destination become `address`, the quote's destination port
    /// `port`.
    public static func rewriteError(
        _ p: UnsafeMutableRawPointer,
        l3: Int,
        l4: Int,
        inner: Int,
        end: Int,
        destination: Bool,
        address: UInt32,
        port: UInt16
    ) {
        // The error's own header.
        let outerOffset = l3 &+ (destination ? 16 : 12)
        let outerOld = p.be32(outerOffset)
        p.setBE32(outerOffset, address)
        p.setBE16(l3 &+ 10, Checksum.update(p.be16(l3 &+ 10), old: outerOld, new: address))

        // The quote: the side that faced the translation is the other one.
        var icmp = p.be16(l4 &+ 2)
        let quoteAddress = inner &+ (destination ? 12 : 16)
        let oldAddress = p.be32(quoteAddress)
        p.setBE32(quoteAddress, address)
        icmp = Checksum.update(icmp, old: oldAddress, new: address)
        let oldIPSum = p.be16(inner &+ 10)
        let newIPSum = Checksum.update(oldIPSum, old: oldAddress, new: address)
        p.setBE16(inner &+ 10, newIPSum)
        icmp = Checksum.update(icmp, old: oldIPSum, new: newIPSum)

        let proto = p.u8(inner &+ 9)
        let innerL4 = inner &+ Int(p.u8(inner) & 0x0F) &<< 2
        if proto == IPProtocol.icmp {
            let oldID = p.be16(innerL4 &+ 4)
            p.setBE16(innerL4 &+ 4, port)
            icmp = Checksum.update(icmp, old: oldID, new: port)
            let oldSum = p.be16(innerL4 &+ 2)
            let newSum = Checksum.update(oldSum, old: oldID, new: port)
            p.setBE16(innerL4 &+ 2, newSum)
            icmp = Checksum.update(icmp, old: oldSum, new: newSum)
        } else {
            let portOffset = innerL4 &+ (destination ? 0 : 2)
            let oldPort = p.be16(portOffset)
            p.setBE16(portOffset, port)
            icmp = Checksum.update(icmp, old: oldPort, new: port)
            // The quoted transport checksum, when the quote reaches it (TCP's is at 16).
            let sumOffset = innerL4 &+ (proto == IPProtocol.tcp ? 16 : 6)
            let quoted = sumOffset &+ 2 <= end && (proto == IPProtocol.tcp || proto == IPProtocol.udp)
            if quoted, !(proto == IPProtocol.udp && p.be16(sumOffset) == 0) {
                let oldSum = p.be16(sumOffset)
                var newSum = Checksum.update(
                    oldSum,
                    old: oldAddress,
                    new: address,
                    oldPort: oldPort,
                    newPort: port
                )
                if proto == IPProtocol.udp && newSum == 0 { newSum = 0xFFFF }
                p.setBE16(sumOffset, newSum)
                icmp = Checksum.update(icmp, old: oldSum, new: newSum)
            }
        }
        p.setBE16(l4 &+ 2, icmp)
    }

    /// The flow key fields of the packet an ICMPv4 error quotes, or nil when the quote is
    /// not something a translation could have sent (not IPv4, shorter than its header
    /// and 8 bytes, a later fragment, not TCP/UDP/ICMP echo request or reply). `inner` is
    /// the quote's offset; `end` the error's end.
    @inlinable
    public static func quotedFlow(
        _ p: UnsafeRawPointer,
        inner: Int,
        end: Int
    ) -> (proto: UInt8, src: UInt32, dst: UInt32, sport: UInt16, dport: UInt16)? {
        guard end &- inner >= 28 else { return nil }
        let vihl = p.u8(inner)
        let ihl = Int(vihl & 0x0F) &<< 2
        guard vihl >> 4 == 4, ihl >= 20, end &- inner >= ihl &+ 8 else { return nil }
        guard p.be16(inner &+ 6) & 0x1FFF == 0 else { return nil }
        let proto = p.u8(inner &+ 9)
        let l4 = inner &+ ihl
        let src = p.be32(inner &+ 12)
        let dst = p.be32(inner &+ 16)
        switch proto {
        case IPProtocol.tcp, IPProtocol.udp:
            return (proto, src, dst, p.be16(l4), p.be16(l4 &+ 2))
        case IPProtocol.icmp:
            let type = p.u8(l4)
            guard type == ICMPv4Header.echoRequest || type == ICMPv4Header.echoReply else { return nil }
            return (proto, src, dst, 0, p.be16(l4 &+ 4))
        default:
            return nil
        }
    }
}
