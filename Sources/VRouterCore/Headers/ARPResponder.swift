// Proxy ARP (Contrail's vRouter answers every pod ARP request with its own MAC): the
// request is turned into the reply in place, 8 field stores.

public enum ARPResponder {
    /// Turns the Ethernet/IPv4 ARP request in buffer `idx` into a reply saying the target
    /// IP is at `mac`, addressed to the asker (RFC 826). Tags and meta are kept; the frame
    /// ends with the minimum Ethernet payload (46 bytes: the ARP message and its padding)
    /// when the request was longer, so bytes a request carried after that are not sent back.
    /// Returns false, leaving the buffer as it was, for anything but a request, and for
    /// requests that must not be answered: probes from 0.0.0.0 (RFC 5227 §2.1.1 — a reply
    /// would tell the prober its own address is taken) and gratuitous ARP (sender = target).
    public static func reply(pool: PacketPool, _ idx: UInt32, mac: MACAddress) -> Bool {
        let m = pool.meta(idx)
        let offset = Int(m.pointee.offset)
        let length = Int(m.pointee.length)
        guard offset + length <= pool.bufferSize else { return false }
        let frame = pool.buffer(idx) + offset
        let parsed = PacketParser.parse(frame, length: length)
        guard parsed.isValid, parsed.family == .arp else { return false }
        let arp = ARPHeader(frame + parsed.l3Offset)
        guard arp.operation == ARPHeader.request else { return false }
        let asker = arp.senderMAC
        let askerIP = arp.senderIP
        let wanted = arp.targetIP
        guard askerIP != .any, askerIP != wanted else { return false }
        let eth = EthernetHeader(frame)
        eth.destination = asker
        eth.source = mac
        arp.operation = ARPHeader.reply
        arp.senderMAC = mac
        arp.senderIP = wanted
        arp.targetMAC = asker
        arp.targetIP = askerIP
        m.pointee.length = UInt16(min(length, parsed.l3Offset + 46))
        m.pointee.flags.insert(.generated)
        return true
    }
}
