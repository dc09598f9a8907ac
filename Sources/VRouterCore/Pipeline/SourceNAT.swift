// One worker's share of the node's SNAT port range, and which of its ports translations
// use. A translation is unique on (protocol, node port, remote address, remote port),
// the reverse key, so a port can serve translations to different remote endpoints (as
// Linux's masquerade does); but a port no translation uses is always taken first, in
// round-robin order, so a port is reused only after every flow on it aged out and then
// only once the cursor has come round. Workers own disjoint ports (every `slices`-th
// port from `first + slice`), so replies, which the fabric's receive steering sends to
// the worker owning their destination port, find their flow in that worker's table.

/// The node's SNAT port range as one worker uses it.
public struct SNATPortRange: Hashable, Sendable {
    public var first: UInt16
    public var last: UInt16
    /// This worker's share: the ports `first + slice + k * slices`.
    public var slice: Int
    public var slices: Int

    public init(first: UInt16, last: UInt16, slice: Int = 0, slices: Int = 1) {
        precondition(first >= 1 && first <= last, "SNAT port range must be 1...65535 and ordered")
        precondition(slices >= 1 && slice >= 0 && slice < slices, "SNAT slice out of range")
        self.first = first
        self.last = last
        self.slice = slice
        self.slices = slices
    }

    /// Ports this worker owns.
    public var count: Int {
        let total = Int(last) - Int(first) + 1
        return total > slice ? (total - slice + slices - 1) / slices : 0
    }

    /// The worker (of `slices`) that owns `port`, or nil when the port is outside the range.
    public func owner(of port: UInt16) -> Int? {
        port >= first && port <= last ? (Int(port) - Int(first)) % slices : nil
    }
}

/// Counts kept per translated protocol, index 0 TCP, 1 UDP, 2 ICMP.
@frozen
public struct SNATProtocolStats: Hashable, Sendable {
    /// Translated flows (forward/reverse pairs) alive.
    public var flows: Int = 0
    /// Ports that at least one of them uses.
    public var portsInUse: Int = 0
    public init(flows: Int = 0, portsInUse: Int = 0) {
        self.flows = flows
        self.portsInUse = portsInUse
    }
}

@usableFromInline
struct SourceNATHeader {
    @usableFromInline var cursors: (Int, Int, Int) = (0, 0, 0)
    @usableFromInline var stats: (SNATProtocolStats, SNATProtocolStats, SNATProtocolStats) = (.init(), .init(), .init())
    /// The underlay VRF and address translations use (learned from the SNAT nexthop: one
    /// fabric per node). Reverse keys are made from them.
    @usableFromInline var reverseVRF: UInt16 = 0
    @usableFromInline var address: UInt32 = 0
}

/// One worker's translation state, as raw pointers (trivially copyable, no refcounting).
@frozen
public struct SourceNAT: @unchecked Sendable {  // Safe: used by its worker's thread only.
    public let range: SNATPortRange?
    /// Ports this worker owns (0 without a range).
    public let owned: Int
    /// Translations per port, per protocol (3 × owned).
    @usableFromInline let uses: UnsafeMutablePointer<UInt16>
    @usableFromInline let header: UnsafeMutablePointer<SourceNATHeader>

    /// Most probes for a port shared with other remote endpoints before giving up.
    @inlinable static var sharedProbes: Int { 256 }

    public init(range: SNATPortRange?) {
        self.range = range
        owned = range?.count ?? 0
        uses = .allocate(capacity: max(1, 3 * owned))
        uses.initialize(repeating: 0, count: max(1, 3 * owned))
        header = .allocate(capacity: 1)
        header.initialize(to: SourceNATHeader())
    }

    public func deallocate() {
        uses.deallocate()
        header.deallocate()
    }

    /// Index of a translated protocol (TCP 0, UDP 1, ICMP 2), or nil.
    @inlinable @inline(__always)
    static func protocolIndex(_ proto: UInt8) -> Int? {
        switch proto {
        case IPProtocol.tcp: 0
        case IPProtocol.udp: 1
        case IPProtocol.icmp: 2
        default: nil
        }
    }

    @inlinable
    func port(at i: Int) -> UInt16 {
        // Safe: i < owned, so the port is ≤ range.last.
        UInt16(truncatingIfNeeded: Int(range!.first) &+ range!.slice &+ i &* range!.slices)
    }

    /// This worker's index of `port`, or nil when it does not own it.
    @inlinable
    func index(of port: UInt16) -> Int? {
        guard let r = range, port >= r.first, port <= r.last else { return nil }
        let d = Int(port) &- Int(r.first)
        guard d % r.slices == r.slice else { return nil }
        return d / r.slices
    }

    @inlinable
    func cursor(_ proto: Int) -> Int {
        switch proto {
        case 0: header.pointee.cursors.0
        case 1: header.pointee.cursors.1
        default: header.pointee.cursors.2
        }
    }

    @inlinable
    func setCursor(_ proto: Int, _ v: Int) {
        switch proto {
        case 0: header.pointee.cursors.0 = v
        case 1: header.pointee.cursors.1 = v
        default: header.pointee.cursors.2 = v
        }
    }

    /// Counts of one protocol (TCP, UDP or ICMP).
    public func stats(proto: UInt8) -> SNATProtocolStats {
        switch Self.protocolIndex(proto) {
        case 0: header.pointee.stats.0
        case 1: header.pointee.stats.1
        case 2: header.pointee.stats.2
        default: SNATProtocolStats()
        }
    }

    @inlinable
    func update(_ proto: Int, _ body: (inout SNATProtocolStats) -> Void) {
        switch proto {
        case 0: body(&header.pointee.stats.0)
        case 1: body(&header.pointee.stats.1)
        default: body(&header.pointee.stats.2)
        }
    }

    /// A port for a new translation of protocol `proto`: first one no translation uses
    /// (round-robin from the protocol's cursor), else one whose translations all go to
    /// other remote endpoints (`isFree(port)` says the reverse key is unused). Nil when
    /// none is left. Counts the translation.
    @inlinable
    func allocate(proto: UInt8, isFree: (UInt16) -> Bool) -> UInt16? {
        guard owned > 0, let pi = Self.protocolIndex(proto) else { return nil }
        let u = uses + pi &* owned
        var c = cursor(pi)
        if stats(proto: proto).portsInUse < owned {
            for _ in 0..<owned {
                let i = c
                c = c &+ 1 == owned ? 0 : c &+ 1
                if u[i] == 0 {
                    setCursor(pi, c)
                    return take(pi, i)
                }
            }
        }
        for _ in 0..<Swift.min(owned, Self.sharedProbes) {
            let i = c
            c = c &+ 1 == owned ? 0 : c &+ 1
            if u[i] < UInt16.max && isFree(port(at: i)) {
                setCursor(pi, c)
                return take(pi, i)
            }
        }
        setCursor(pi, c)
        return nil
    }

    @inlinable
    func take(_ pi: Int, _ i: Int) -> UInt16 {
        let u = uses + pi &* owned
        let fresh = u[i] == 0
        u[i] &+= 1
        update(pi) { s in
            s.flows &+= 1
            if fresh { s.portsInUse &+= 1 }
        }
        return port(at: i)
    }

    /// A translation of `proto` on `port` ended.
    @inlinable
    func release(proto: UInt8, port: UInt16) {
        guard let pi = Self.protocolIndex(proto), let i = index(of: port) else { return }
        let u = uses + pi &* owned
        guard u[i] > 0 else { return }
        u[i] &-= 1
        let freed = u[i] == 0
        update(pi) { s in
            s.flows &-= 1
            if freed { s.portsInUse &-= 1 }
        }
    }

    /// Forgets every translation (the flow tables were emptied).
    public func reset() {
        uses.update(repeating: 0, count: max(1, 3 * owned))
        header.pointee.stats = (.init(), .init(), .init())
    }

    // MARK: Keys

    @inlinable var reverseVRF: UInt16 { header.pointee.reverseVRF }
    @inlinable var address: UInt32 { header.pointee.address }

    @inlinable
    func learn(reverseVRF: UInt16, address: UInt32) {
        header.pointee.reverseVRF = reverseVRF
        header.pointee.address = address
    }

    /// The reverse key of a forward key translated to `port`: from the remote end to the
    /// node's address and port (ICMP: the identifier as the destination port, as
    /// flow keys carry it).
    @inlinable
    func reverseKey(_ f: IPv4FlowKey, port: UInt16) -> IPv4FlowKey {
        let icmp = f.proto == IPProtocol.icmp
        return IPv4FlowKey(
            vrf: reverseVRF,
            proto: f.proto,
            src: f.dst.value,
            dst: address,
            sport: icmp ? 0 : f.dport,
            dport: port
        )
    }

    /// The forward key of a reverse key whose pod is `pod` (address) in `vrf` with port
    /// (or identifier) `port`.
    @inlinable
    static func forwardKey(_ r: IPv4FlowKey, vrf: UInt16, pod: UInt32, port: UInt16) -> IPv4FlowKey {
        let icmp = r.proto == IPProtocol.icmp
        return IPv4FlowKey(
            vrf: vrf,
            proto: r.proto,
            src: pod,
            dst: r.src.value,
            sport: icmp ? 0 : port,
            dport: icmp ? port : r.sport
        )
    }
}
