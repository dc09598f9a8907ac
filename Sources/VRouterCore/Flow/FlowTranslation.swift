// How a flow entry says "translate" (fabric SNAT). A translated flow is a pinned pair:
//
//   forward  (pod VRF,      proto, pod → remote,      pod port → remote port)
//            nexthop: the underlay nexthop out of the fabric,  label: source | node port
//   reverse  (underlay VRF, proto, remote → node addr, remote port → node port)
//            nexthop: the pod's encap nexthop,                 label: destination | pod port
//
// (ICMP echo keys carry the identifier as the destination port in both directions, so
// the forward key has the pod's identifier and the reverse key the node's.) The new
// address is in the nexthop the entry names: the underlay nexthop's source is the node's
// underlay address, the encap nexthop's `address` is the pod's. So a translated hit reads
// the same one entry line and one nexthop line as any hit; the label's top bit, never set
// in an MPLS label (20 bits) or a VNI (24 bits), is the only test the others pay.

@frozen
public enum FlowTranslation {
    /// Set in the label of both entries of a translated pair.
    @inlinable public static var translated: UInt32 { 0x8000_0000 }
    /// Set in the reverse entry's label: rewrite the destination (else the source).
    @inlinable public static var destination: UInt32 { 0x4000_0000 }

    /// Label of a forward entry: the source becomes the node's address and `port`.
    @inlinable @inline(__always)
    public static func source(port: UInt16) -> UInt32 { translated | UInt32(port) }

    /// Label of a reverse entry: the destination becomes the pod's address and `port`.
    @inlinable @inline(__always)
    public static func destination(port: UInt16) -> UInt32 { translated | destination | UInt32(port) }

    @inlinable @inline(__always)
    public static func isTranslated(_ label: UInt32) -> Bool { label & translated != 0 }

    @inlinable @inline(__always)
    public static func isDestination(_ label: UInt32) -> Bool { label & destination != 0 }

    /// The port (or ICMP identifier) a translated label carries.
    @inlinable @inline(__always)
    public static func port(_ label: UInt32) -> UInt16 { UInt16(truncatingIfNeeded: label) }
}
