// Packet memory: one preallocated region of fixed-size buffers plus a parallel array of
// per-packet metadata. Packets move through the dataplane as UInt32 buffer indices, so
// a frame of 256 packets is 1 KiB of indices and nothing is allocated or reference
// counted per packet. A pool belongs to one worker thread; nothing here is atomic.

/// Per-packet metadata, one cache line, kept apart from the packet bytes so that nodes
/// which only classify (flow lookup, next-node dispatch) touch one line per packet.
@frozen
public struct PacketMeta {
    /// Start of the frame's first byte within the buffer (headroom before it).
    public var offset: UInt16
    /// Frame length in bytes, from the Ethernet header on.
    public var length: UInt16
    public var rxPort: UInt16
    public var txPort: UInt16
    public var vrf: UInt16
    /// Buffer offsets of the (inner, after decapsulation) L3 and L4 headers.
    public var l3: UInt16
    public var l4: UInt16
    public var flags: PacketFlags
    public var proto: UInt8
    public var dropReason: UInt8
    public var next: UInt8
    public var spare: UInt8
    /// Flow hash of the inner 5-tuple (also the ECMP and outer-UDP-port entropy).
    public var hash: UInt32
    /// Resolved nexthop index (route result, label target, or flow action).
    public var nexthop: UInt32
    /// MPLS label or VNI carried by the route toward a tunnel nexthop.
    public var label: UInt32
    /// Flow-table slot that this packet hit or installed, or `PacketMeta.noFlow`.
    public var flow: UInt32
    public var aux: UInt32
    /// Capture timestamp (ns) carried from a pcap input to a pcap output.
    public var timestamp: UInt64
    public var scratch0: UInt64
    public var scratch1: UInt64

    public static let noFlow: UInt32 = .max
    public static let noPort: UInt16 = .max
}

/// Bits describing what ethernet-input found. Plain UInt16 so it stays trivially copyable.
@frozen
public struct PacketFlags: OptionSet, Sendable {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let ipv4 = PacketFlags(rawValue: 1 << 0)
    public static let ipv6 = PacketFlags(rawValue: 1 << 1)
    public static let fragment = PacketFlags(rawValue: 1 << 2)  // any fragment: ports not used
    public static let laterFragment = PacketFlags(rawValue: 1 << 3)  // offset > 0: no L4 header
    public static let vlan = PacketFlags(rawValue: 1 << 4)
    public static let decapsulated = PacketFlags(rawValue: 1 << 5)  // came in through a tunnel
    public static let forcedNexthop = PacketFlags(rawValue: 1 << 6)  // MPLS label named the nexthop
    public static let generated = PacketFlags(rawValue: 1 << 7)  // built by the dataplane (ICMP error)
    public static let dfSet = PacketFlags(rawValue: 1 << 8)
    public static let tcpSyn = PacketFlags(rawValue: 1 << 9)
    /// TCP FIN or RST: the flow is ending and ages out on the short timeout.
    public static let tcpClosing = PacketFlags(rawValue: 1 << 10)
    /// TCP RST (with tcpClosing): the connection ends in both directions at once.
    public static let tcpReset = PacketFlags(rawValue: 1 << 11)
    /// Received untunneled on the fabric and routed in the underlay VRF: it may only be
    /// delivered to a local pod (or, with `toNode`, be a reply of a translated flow).
    public static let underlayRouted = PacketFlags(rawValue: 1 << 12)
    /// Addressed to the node's underlay address and not a tunnel packet: only a reply (or
    /// ICMP error) of a translated flow can be for it.
    public static let toNode = PacketFlags(rawValue: 1 << 13)
    /// An ICMPv4 error about a translated flow: the flow key came from its quote, and the
    /// quote (at `scratch0`) is translated with it.
    public static let natICMPError = PacketFlags(rawValue: 1 << 14)
    /// The port layer says the TCP/UDP checksum is not filled in yet (a local sender's
    /// checksum offload: AF_PACKET's TP_STATUS_CSUMNOTREADY). Completed before the packet
    /// is translated or handed to a pod, which would otherwise see a wrong checksum.
    public static let checksumPartial = PacketFlags(rawValue: 1 << 15)
}

/// A pool of packet buffers, as a bundle of raw pointers: trivially copyable, so the hot
/// path holds it in registers with no retain/release. Lifetime is explicit: whoever
/// called `allocate` calls `deallocate` once, after every copy is done with it.
@frozen
public struct PacketPool: @unchecked Sendable {  // Safe: a pool is used by one thread at a time.
    /// Bytes before the frame in each fresh buffer: room to prepend an outer
    /// Ethernet/IPv4/UDP/VXLAN (50 B, 54 B tagged) on top of a generated ICMP error.
    public static let headroom = 128

    public let base: UnsafeMutableRawPointer
    public let metas: UnsafeMutablePointer<PacketMeta>
    @usableFromInline let freeStack: UnsafeMutablePointer<UInt32>
    @usableFromInline let freeTop: UnsafeMutablePointer<Int>
    public let count: Int
    public let bufferShift: Int
    /// Bytes from one buffer to the next: the buffer plus one cache line of "colour".
    /// With a power-of-two stride every packet's first line would fall in the same few
    /// L1 sets (2 KiB apart: 2 of 64 sets on a 32 KiB 8-way L1), and a frame of 256
    /// headers would thrash them; the extra line spreads consecutive buffers over all sets.
    public let stride: Int
    @usableFromInline let ownsMemory: Bool

    @inlinable public var bufferSize: Int { 1 &<< bufferShift }

    /// Memory a pool of `count` buffers of `bufferSize` needs (for callers that provide it).
    public static func bytesNeeded(count: Int, bufferSize: Int) -> Int { count * (bufferSize + 64) }
    /// Largest frame a buffer holds after the headroom.
    @inlinable public var maxFrameLength: Int { bufferSize &- Self.headroom }

    /// Allocates `count` buffers of `bufferSize` bytes (a power of two, 512...65536).
    public static func allocate(count: Int, bufferSize: Int = 2048) -> PacketPool {
        precondition(bufferSize.nonzeroBitCount == 1 && bufferSize >= 512 && bufferSize <= 65536)
        precondition(count > 0 && count < Int(UInt32.max))
        let mem = UnsafeMutableRawPointer.allocate(
            byteCount: bytesNeeded(count: count, bufferSize: bufferSize),
            alignment: 4096
        )
        return PacketPool(memory: mem, count: count, bufferSize: bufferSize, owns: true)
    }

    /// Wraps memory the caller owns (for example NUMA-local memory from libnuma), at least
    /// `bytesNeeded(count:bufferSize:)` bytes.
    public init(memory: UnsafeMutableRawPointer, count: Int, bufferSize: Int) {
        self.init(memory: memory, count: count, bufferSize: bufferSize, owns: false)
    }

    init(memory: UnsafeMutableRawPointer, count: Int, bufferSize: Int, owns: Bool) {
        base = memory
        self.count = count
        bufferShift = bufferSize.trailingZeroBitCount
        stride = bufferSize &+ 64
        ownsMemory = owns
        metas = .allocate(capacity: count)
        metas.initialize(repeating: PacketMeta.zero, count: count)
        freeStack = .allocate(capacity: count)
        // Lowest indices on top so a fresh pool hands out buffers in address order.
        for i in 0..<count { freeStack[i] = UInt32(count - 1 - i) }
        freeTop = .allocate(capacity: 1)
        freeTop.pointee = count
    }

    public func deallocate() {
        if ownsMemory { base.deallocate() }
        metas.deallocate()
        freeStack.deallocate()
        freeTop.deallocate()
    }

    /// Buffers currently free.
    @inlinable public var available: Int { freeTop.pointee }

    /// Takes a buffer and resets its metadata, or returns nil when the pool is empty.
    @inlinable @inline(__always)
    public func alloc() -> UInt32? {
        let top = freeTop.pointee
        guard top > 0 else { return nil }
        let idx = freeStack[top &- 1]
        freeTop.pointee = top &- 1
        // Safe: idx came from the free stack, so it is < count.
        metas[Int(idx)] = PacketMeta.fresh
        return idx
    }

    /// Fills `frame` up to `n` fresh buffers; returns how many it got.
    @inlinable
    public func alloc(into frame: inout Frame, upTo n: Int) -> Int {
        let room = min(n, frame.capacity &- frame.count)
        let got = min(room, freeTop.pointee)
        var top = freeTop.pointee
        for _ in 0..<got {
            top &-= 1
            let idx = freeStack[top]
            metas[Int(idx)] = PacketMeta.fresh
            frame.slots[frame.count] = idx
            frame.count &+= 1
        }
        freeTop.pointee = top
        return got
    }

    @inlinable @inline(__always)
    public func free(_ idx: UInt32) {
        let top = freeTop.pointee
        // Safe: every buffer is either free or held by exactly one owner, so the
        // stack (capacity == count) cannot overflow unless a buffer is freed twice.
        assert(top < count, "packet buffer freed twice")
        freeStack[top] = idx
        freeTop.pointee = top &+ 1
    }

    /// Frees every packet in the frame and empties it.
    @inlinable
    public func free(_ frame: inout Frame) {
        for i in 0..<frame.count { free(frame.slots[i]) }
        frame.count = 0
    }

    /// Start of buffer `idx` (its headroom included).
    @inlinable @inline(__always)
    public func buffer(_ idx: UInt32) -> UnsafeMutableRawPointer {
        base + Int(idx) &* stride
    }

    @inlinable @inline(__always)
    public func meta(_ idx: UInt32) -> UnsafeMutablePointer<PacketMeta> {
        metas + Int(idx)
    }

    /// First byte of the frame in buffer `idx`.
    @inlinable @inline(__always)
    public func packet(_ idx: UInt32) -> UnsafeMutableRawPointer {
        buffer(idx) + Int(metas[Int(idx)].offset)
    }

    /// Copies `bytes` into buffer `idx` after the headroom and sets its length.
    /// Returns false (copying nothing) when the frame does not fit.
    @discardableResult
    public func load(_ idx: UInt32, bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count <= maxFrameLength else { return false }
        let m = meta(idx)
        m.pointee.offset = UInt16(Self.headroom)
        m.pointee.length = UInt16(bytes.count)
        if let src = bytes.baseAddress {
            (buffer(idx) + Self.headroom).copyMemory(from: src, byteCount: bytes.count)
        }
        return true
    }

    /// The frame bytes of buffer `idx` (for tests, pcap writers and tap writes).
    public func bytes(_ idx: UInt32) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: packet(idx), count: Int(metas[Int(idx)].length))
    }
}

extension PacketMeta {
    /// All fields zero.
    @inlinable public init() {
        offset = 0
        length = 0
        rxPort = 0
        txPort = 0
        vrf = 0
        l3 = 0
        l4 = 0
        flags = []
        proto = 0
        dropReason = 0
        next = 0
        spare = 0
        hash = 0
        nexthop = 0
        label = 0
        flow = 0
        aux = 0
        timestamp = 0
        scratch0 = 0
        scratch1 = 0
    }
    @inlinable public static var zero: PacketMeta { PacketMeta() }
    /// A freshly allocated buffer's metadata. Computed, not a stored static, so allocating
    /// makes no lazy-initialisation call.
    @inlinable public static var fresh: PacketMeta {
        var m = PacketMeta()
        m.offset = UInt16(PacketPool.headroom)
        m.rxPort = noPort
        m.txPort = noPort
        m.flow = noFlow
        return m
    }
}
