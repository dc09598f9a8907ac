// Packet memory: one preallocated region of fixed-size buffers plus a parallel array of
// per-packet metadata. Packets move through the dataplane as UInt32 buffer indices, so
// a frame of 256 packets is 1 KiB of indices and nothing is allocated or reference
// counted per packet. A pool belongs to one worker thread; nothing here is atomic.
//
// Superframes (a pod's 64 KB TCP segment with offloads, a UDP GSO train) need ~64 KB in
// one piece. Rather than chaining small buffers (every header walk and copy would have to
// cross buffer boundaries), the pool's region ends with a second class of *big* buffers,
// each a run of `bigSpan` consecutive small-buffer slots: the memory of slots i..<i+span
// is contiguous (stride included), so a big buffer is named by its first slot's index
// and `buffer(_:)`, `meta(_:)` and `packet(_:)` work on it unchanged. Only `free` tells
// the classes apart (one compare against `bigStart`); each class has its own free stack.

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
    /// Segmentation and checksum offload state (a superframe, a partial checksum).
    public var offload: PacketOffload

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
    /// What a big buffer holds after the headroom at least: the largest frame a 16-bit
    /// length can describe, with slack for a tunnel header written in front of it.
    public static let bigFrameLength = 65535

    public let base: UnsafeMutableRawPointer
    public let metas: UnsafeMutablePointer<PacketMeta>
    @usableFromInline let freeStack: UnsafeMutablePointer<UInt32>
    @usableFromInline let freeTop: UnsafeMutablePointer<Int>
    /// Small buffers: indices 0..<count.
    public let count: Int
    public let bufferShift: Int
    /// Bytes from one buffer to the next: the buffer plus one cache line of "colour".
    /// With a power-of-two stride every packet's first line would fall in the same few
    /// L1 sets (2 KiB apart: 2 of 64 sets on a 32 KiB 8-way L1), and a frame of 256
    /// headers would thrash them; the extra line spreads consecutive buffers over all sets.
    public let stride: Int
    /// Big buffers: `bigCount` of them, big buffer k at index `bigStart + k * bigSpan`.
    public let bigCount: Int
    public let bigSpan: Int
    public let bigStart: UInt32
    @usableFromInline let bigStack: UnsafeMutablePointer<UInt32>
    @usableFromInline let bigTop: UnsafeMutablePointer<Int>
    @usableFromInline let ownsMemory: Bool

    @inlinable public var bufferSize: Int { 1 &<< bufferShift }

    /// Small-buffer slots a big buffer spans for `bufferSize`.
    public static func bigSpan(bufferSize: Int) -> Int {
        let need = headroom + bigFrameLength + 64
        return (need + bufferSize + 63) / (bufferSize + 64)
    }

    /// Memory a pool of `count` buffers of `bufferSize` (and `bigBuffers` big ones) needs
    /// (for callers that provide it).
    public static func bytesNeeded(count: Int, bufferSize: Int, bigBuffers: Int = 0) -> Int {
        (count + bigBuffers * bigSpan(bufferSize: bufferSize)) * (bufferSize + 64)
    }
    /// Largest frame a small buffer holds after the headroom.
    @inlinable public var maxFrameLength: Int { bufferSize &- Self.headroom }
    /// Largest frame a big buffer holds after the headroom (≥ 65535).
    @inlinable public var bigMaxFrameLength: Int { bigSpan &* stride &- Self.headroom }
    /// Bytes of the whole region (small and big buffers), for registering it with the kernel.
    @inlinable public var regionLength: Int { (count &+ bigCount &* bigSpan) &* stride }

    /// Allocates `count` buffers of `bufferSize` bytes (a power of two, 512...65536) and
    /// `bigBuffers` big ones.
    public static func allocate(count: Int, bufferSize: Int = 2048, bigBuffers: Int = 0) -> PacketPool {
        precondition(bufferSize.nonzeroBitCount == 1 && bufferSize >= 512 && bufferSize <= 65536)
        precondition(count > 0 && bigBuffers >= 0)
        precondition(count + bigBuffers * bigSpan(bufferSize: bufferSize) < Int(UInt32.max))
        let mem = UnsafeMutableRawPointer.allocate(
            byteCount: bytesNeeded(count: count, bufferSize: bufferSize, bigBuffers: bigBuffers),
            alignment: 4096
        )
        return PacketPool(memory: mem, count: count, bufferSize: bufferSize, bigBuffers: bigBuffers, owns: true)
    }

    /// Wraps memory the caller owns (for example NUMA-local memory from libnuma), at least
    /// `bytesNeeded(count:bufferSize:bigBuffers:)` bytes.
    public init(memory: UnsafeMutableRawPointer, count: Int, bufferSize: Int, bigBuffers: Int = 0) {
        self.init(memory: memory, count: count, bufferSize: bufferSize, bigBuffers: bigBuffers, owns: false)
    }

    init(memory: UnsafeMutableRawPointer, count: Int, bufferSize: Int, bigBuffers: Int, owns: Bool) {
        base = memory
        self.count = count
        bufferShift = bufferSize.trailingZeroBitCount
        stride = bufferSize &+ 64
        ownsMemory = owns
        bigCount = bigBuffers
        bigSpan = Self.bigSpan(bufferSize: bufferSize)
        bigStart = UInt32(count)
        let slots = count + bigBuffers * bigSpan
        metas = .allocate(capacity: slots)
        metas.initialize(repeating: PacketMeta.zero, count: slots)
        freeStack = .allocate(capacity: count)
        // Lowest indices on top so a fresh pool hands out buffers in address order.
        for i in 0..<count { freeStack[i] = UInt32(count - 1 - i) }
        freeTop = .allocate(capacity: 1)
        freeTop.pointee = count
        bigStack = .allocate(capacity: max(bigBuffers, 1))
        for k in 0..<bigBuffers { bigStack[k] = UInt32(count + (bigBuffers - 1 - k) * bigSpan) }
        bigTop = .allocate(capacity: 1)
        bigTop.pointee = bigBuffers
    }

    public func deallocate() {
        if ownsMemory { base.deallocate() }
        metas.deallocate()
        freeStack.deallocate()
        freeTop.deallocate()
        bigStack.deallocate()
        bigTop.deallocate()
    }

    /// Small buffers currently free.
    @inlinable public var available: Int { freeTop.pointee }
    /// Big buffers currently free.
    @inlinable public var bigAvailable: Int { bigTop.pointee }

    /// Whether `idx` names a big buffer.
    @inlinable @inline(__always)
    public func isBig(_ idx: UInt32) -> Bool { idx >= bigStart }

    /// Bytes of buffer `idx`, headroom included (the bound for `offset + length`).
    @inlinable @inline(__always)
    public func capacity(_ idx: UInt32) -> Int { idx >= bigStart ? bigSpan &* stride : bufferSize }

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

    /// Takes a big buffer (≥ `bigMaxFrameLength` after the headroom) and resets its
    /// metadata, or returns nil when none is free.
    @inlinable @inline(__always)
    public func allocBig() -> UInt32? {
        let top = bigTop.pointee
        guard top > 0 else { return nil }
        let idx = bigStack[top &- 1]
        bigTop.pointee = top &- 1
        // Safe: idx came from the big stack, so it is a big buffer's first slot.
        metas[Int(idx)] = PacketMeta.fresh
        return idx
    }

    /// A buffer for a frame of `length` bytes after the headroom: small when it fits.
    @inlinable @inline(__always)
    public func alloc(forLength length: Int) -> UInt32? {
        length <= maxFrameLength ? alloc() : (length <= bigMaxFrameLength ? allocBig() : nil)
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
        if idx >= bigStart {
            let top = bigTop.pointee
            assert(top < bigCount, "big packet buffer freed twice")
            bigStack[top] = idx
            bigTop.pointee = top &+ 1
            return
        }
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
        guard bytes.count <= capacity(idx) &- Self.headroom, bytes.count <= 0xFFFF else { return false }
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
        offload = PacketOffload()
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
