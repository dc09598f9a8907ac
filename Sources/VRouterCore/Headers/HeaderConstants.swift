// Protocol numbers and header sizes the dataplane switches on. Plain static lets in
// caseless enums: they fold to immediates, and a switch over raw field values stays a
// compare against constants (an enum with raw values would add a failable init per packet).

/// EtherType values (IEEE 802 numbers registry).
public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let arp: UInt16 = 0x0806
    /// 802.1Q customer VLAN tag.
    public static let vlan: UInt16 = 0x8100
    public static let ipv6: UInt16 = 0x86DD
    /// 802.1ad service tag (QinQ outer tag).
    public static let qinq: UInt16 = 0x88A8
}

/// IP protocol / IPv6 next-header numbers (IANA "Assigned Internet Protocol Numbers").
public enum IPProtocol {
    public static let hopByHop: UInt8 = 0
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let ipv6Routing: UInt8 = 43
    public static let ipv6Fragment: UInt8 = 44
    public static let esp: UInt8 = 50
    public static let ah: UInt8 = 51
    public static let icmpv6: UInt8 = 58
    public static let ipv6NoNext: UInt8 = 59
    public static let ipv6DestinationOptions: UInt8 = 60
}

/// Well-known UDP ports of the overlay.
public enum UDPPort {
    /// VXLAN, RFC 7348 §5.
    public static let vxlan: UInt16 = 4789
    /// MPLS-in-UDP, RFC 7510 §3.
    public static let mplsOverUDP: UInt16 = 6635
    /// The port Contrail/Tungsten Fabric used for MPLSoUDP before RFC 7510; still accepted on decap.
    public static let contrailMPLSOverUDP: UInt16 = 51234
}

/// Header sizes in bytes (fixed parts).
public enum HeaderSize {
    public static let ethernet = 14
    public static let vlanTag = 4
    public static let ipv4 = 20
    public static let ipv6 = 40
    public static let udp = 8
    public static let tcp = 20
    public static let icmp = 8
    public static let vxlan = 8
    public static let mpls = 4
    /// Ethernet/IPv4 ARP body.
    public static let arp = 28
    /// Outer Ethernet + IPv4 + UDP + VXLAN (untagged).
    public static let vxlanOverhead = 50
    /// Outer Ethernet + IPv4 + UDP + one MPLS label (untagged).
    public static let mplsOverUDPOverhead = 46
}
