// The addresses a transport checksum covers (RFC 768/9293 for IPv4, RFC 8200 §8.1 for IPv6),
// as a value the builders take so one UDP/TCP/ICMPv6 writer serves both families.

@frozen
public enum PseudoHeader: Sendable {
    case ipv4(source: IPv4Address, destination: IPv4Address)
    case ipv6(source: IPv6Address, destination: IPv6Address)

    /// Partial sum for `Checksum.compute(..., initial:)` over `length` bytes of `proto`.
    @inlinable
    public func sum(proto: UInt8, length: Int) -> UInt32 {
        switch self {
        case .ipv4(let s, let d):
            Checksum.pseudoHeaderIPv4(src: s.value, dst: d.value, proto: proto, length: length)
        case .ipv6(let s, let d):
            Checksum.pseudoHeaderIPv6(src: s.value, dst: d.value, nextHeader: proto, length: length)
        }
    }
}
