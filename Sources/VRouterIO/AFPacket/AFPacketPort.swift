// The fabric port: an AF_PACKET socket on the underlay device with a TPACKET_V3 RX ring
// (variable-size frames packed into blocks; the kernel hands over whole blocks, user
// space walks them without syscalls and returns each block with one release store) and
// a TPACKET_V3 TX ring (fixed-size frames; a send() — here an io_uring SEND of 0 bytes —
// tells the kernel to transmit every frame marked SEND_REQUEST), both in one mmap.
//
// PACKET_QDISC_BYPASS hands TX frames straight to the driver (no qdisc, no tc, no taps);
// PACKET_IGNORE_OUTGOING keeps the kernel's own transmissions on the device out of the RX
// ring; PACKET_FANOUT (hash) spreads flows over several workers' sockets on one device.
// The device itself carries no IP address (DESIGN: Underlay): frames addressed to its MAC
// are PACKET_HOST and reach us without promiscuous mode; `promiscuous` adds a
// PACKET_MR_PROMISC membership (reference counted by the kernel, dropped with the socket)
// for setups that use another MAC than the device's.
//
// Offloads (`vnetHeader`): PACKET_VNET_HDR puts a virtio-net header in front of every
// frame in both rings. On RX it tells a UDP GSO train (a peer's superframe segmented and
// encapsulated, which a veth hands over whole) from an ordinary frame, with the size to
// cut it at; on TX the header is zero (nothing to offload in a slot). With `sendsTrains`
// a second socket, without rings (a ring socket sends only its ring), takes trains: one
// send of [header][outer Ethernet/IPv4/UDP][datagram payloads...] with gso_type UDP_L4,
// and the kernel (or the NIC) cuts it into the datagrams (USO). AF_PACKET takes no
// UDP-tunnel GSO (virtio's 0x20/0x40 types), which is why the trains are built whole.
//
// The ring walking itself lives in IOLoop (it fills frames of pool buffers); this type
// owns the sockets and the mapping, and knows the geometry.

import CVRouterShims
import Glibc
import Synchronization

// Safe (@unchecked Sendable): immutable after open; the mapping is only walked by the one IOLoop
// the port is added to.
public final class AFPacketPort: @unchecked Sendable {
    public struct Configuration: Sendable, Hashable {
        /// RX ring: `rxBlockCount` blocks of `rxBlockSize` bytes (a multiple of the page size).
        /// A block holds ~1800 minimum-size frames; 32 × 256 KiB absorbs ~58k frames of a
        /// burst while the worker is busy.
        public var rxBlockSize: Int = 256 * 1024
        public var rxBlockCount: Int = 32
        /// The kernel retires a partly filled block after this many milliseconds, which
        /// bounds RX latency under light load (a block is only visible once retired).
        public var rxBlockTimeoutMilliseconds: Int = 1
        /// TX ring: `txFrameCount` frames of `txFrameSize` bytes (frame = 48-byte header +
        /// the packet, so 2048 carries up to 2000-byte frames).
        public var txFrameSize: Int = 2048
        public var txFrameCount: Int = 1024
        public var qdiscBypass: Bool = true
        /// Join fanout group `id` (PACKET_FANOUT_HASH) so several sockets share the device.
        public var fanoutGroup: UInt16? = nil
        /// Steer the group with this classic BPF program instead (PACKET_FANOUT_CBPF; see
        /// FanoutSteering): socket i of the group gets the frames it returns i for,
        /// modulo the group's size, in the order the sockets joined.
        public var fanoutSteering: [BPFInstruction]? = nil
        public var promiscuous: Bool = false
        /// false: a transmit-only socket (no RX ring; bound with protocol 0 so the kernel
        /// never copies received frames to it). For traffic generators and TX fan-out.
        public var receives: Bool = true
        /// A virtio-net header in front of every ring frame (RX: UDP GSO trains are
        /// recognised and cut; TX: a header with nothing to offload whose hdr_len is the
        /// frame, so the kernel copies each frame whole into its skb).
        public var vnetHeader: Bool = false
        /// Open the second socket that sends UDP GSO trains (needs `vnetHeader`).
        public var sendsTrains: Bool = false

        public init() {}
    }

    public let interface: String
    public let namespace: NetworkNamespace
    public let interfaceIndex: Int32
    public let configuration: Configuration
    public let fd: CInt
    /// The socket that sends UDP GSO trains (-1 without `sendsTrains`).
    public let trainFD: CInt
    /// The shared mapping: RX blocks first, then TX frames.
    let map: UnsafeMutableRawPointer
    let mapLength: Int
    let rxLength: Int
    private let closed = Atomic<Bool>(false)
    private let totals = Mutex<(packets: UInt64, drops: UInt64, freezes: UInt64)>((0, 0, 0))

    var object: String { "AF_PACKET \(interface) in \(namespace)" }

    /// PACKET_VNET_HDR's header: the 10-byte legacy virtio_net_hdr.
    static let vnetHeaderLength = 10
    /// PACKET_FANOUT_FLAG_IGNORE_OUTGOING (linux/if_packet.h, 6.2; Debian 12's headers
    /// predate it).
    static let fanoutIgnoreOutgoing: Int32 = 0x4000

    /// Opens the port on `interface` (in `namespace`; the socket is made there, so it sees
    /// that namespace's device) and maps its rings.
    public static func open(
        interface: String,
        in namespace: NetworkNamespace = .current,
        configuration: Configuration = Configuration()
    ) throws(SystemError) -> AFPacketPort {
        try Sys.checkInterfaceName(interface, call: "AF_PACKET")
        let c = configuration
        let object = "AF_PACKET \(interface) in \(namespace)"
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard c.rxBlockSize % page == 0, c.rxBlockSize >= page, c.rxBlockCount >= 2,
            c.txFrameSize % Int(TPACKET_ALIGNMENT) == 0,
            c.txFrameSize >= Int(VRT_TPACKET3_HDRLEN) + 64, c.txFrameSize <= page * 16, c.txFrameCount >= 1
        else {
            throw SystemError(
                call: "AF_PACKET",
                object: object,
                errno: EINVAL,
                detail: "ring geometry: blocks must be whole pages, frames TPACKET_ALIGNMENT-aligned"
            )
        }
        let (fd, index) = try namespace.runHere { () throws(SystemError) -> (CInt, Int32) in
            let index = try Netlink(namespace: namespace, onThisThread: true).linkIndex(interface)
            // Protocol 0: no frames are queued to the socket before the rings exist and bind
            // picks ETH_P_ALL.
            let fd = try Sys.socket(AF_PACKET, Int32(SOCK_RAW.rawValue), 0, object: object)
            return (fd, index)
        }
        var mapped: UnsafeMutableRawPointer? = nil
        var mapLength = 0
        do throws(SystemError) {
            try Sys.setsockopt(
                fd,
                SOL_PACKET,
                PACKET_VERSION,
                Int32(TPACKET_V3.rawValue),
                call: "PACKET_VERSION",
                object: object
            )
            if c.vnetHeader {
                // Before the rings (EBUSY after): every frame in them gets the header.
                try Sys.setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, Int32(1), call: "PACKET_VNET_HDR", object: object)
            }
            // Drop malformed TX frames instead of stalling the ring on them.
            try Sys.setsockopt(fd, SOL_PACKET, PACKET_LOSS, Int32(1), call: "PACKET_LOSS", object: object)
            try Sys.setsockopt(
                fd,
                SOL_PACKET,
                PACKET_IGNORE_OUTGOING,
                Int32(1),
                call: "PACKET_IGNORE_OUTGOING",
                object: object
            )
            if c.receives {
                var rx = tpacket_req3()
                rx.tp_block_size = UInt32(c.rxBlockSize)
                rx.tp_block_nr = UInt32(c.rxBlockCount)
                rx.tp_frame_size = 2048
                rx.tp_frame_nr = UInt32(c.rxBlockSize / 2048 * c.rxBlockCount)
                rx.tp_retire_blk_tov = UInt32(c.rxBlockTimeoutMilliseconds)
                rx.tp_feature_req_word = UInt32(TP_FT_REQ_FILL_RXHASH)
                try Sys.setsockopt(fd, SOL_PACKET, PACKET_RX_RING, rx, call: "PACKET_RX_RING", object: object)
            }
            // TX: frames must not straddle blocks; one page-multiple block holds whole frames.
            let framesPerBlock = max(1, (page * 16) / c.txFrameSize)
            let txBlockSize = framesPerBlock * c.txFrameSize
            let blockBytes = (txBlockSize + page - 1) / page * page
            let txBlocks = (c.txFrameCount + framesPerBlock - 1) / framesPerBlock
            var tx = tpacket_req3()
            tx.tp_block_size = UInt32(blockBytes)
            tx.tp_block_nr = UInt32(txBlocks)
            tx.tp_frame_size = UInt32(c.txFrameSize)
            tx.tp_frame_nr = UInt32(blockBytes / c.txFrameSize * txBlocks)
            try Sys.setsockopt(fd, SOL_PACKET, PACKET_TX_RING, tx, call: "PACKET_TX_RING", object: object)
            if c.qdiscBypass {
                try Sys.setsockopt(
                    fd,
                    SOL_PACKET,
                    PACKET_QDISC_BYPASS,
                    Int32(1),
                    call: "PACKET_QDISC_BYPASS",
                    object: object
                )
            }
            let rxLength = c.receives ? c.rxBlockSize * c.rxBlockCount : 0
            mapLength = rxLength + blockBytes * txBlocks
            mapped = try Sys.mmap(mapLength, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, object: object)
            var sll = sockaddr_ll()
            sll.sll_family = UInt16(AF_PACKET)
            sll.sll_protocol = c.receives ? UInt16(ETH_P_ALL).bigEndian : 0
            sll.sll_ifindex = index
            try Sys.bind(fd, sll, object: object)
            if let group = c.fanoutGroup, c.receives {
                let mode = c.fanoutSteering == nil ? PACKET_FANOUT_HASH : PACKET_FANOUT_CBPF
                // PACKET_IGNORE_OUTGOING (above) covers a lone socket only: a fanout group
                // handed every frame one member sent back to the group (with two workers,
                // compare-kernel's n1 received and dropped as not_tunnel as many as it sent),
                // unless joined with PACKET_FANOUT_FLAG_IGNORE_OUTGOING (6.2+; older kernels
                // refuse the flag and the group is joined without it).
                let arg = Int32(group) | Int32(mode) << 16
                do throws(SystemError) {
                    try Sys.setsockopt(
                        fd,
                        SOL_PACKET,
                        PACKET_FANOUT,
                        arg | Self.fanoutIgnoreOutgoing << 16,
                        call: "PACKET_FANOUT",
                        object: object
                    )
                } catch  where error.errno == EINVAL {
                    try Sys.setsockopt(fd, SOL_PACKET, PACKET_FANOUT, arg, call: "PACKET_FANOUT", object: object)
                }
                if let program = c.fanoutSteering {
                    // Any member may set the group's program; each sets the same one.
                    var filters = program.map { sock_filter(code: $0.code, jt: $0.jt, jf: $0.jf, k: $0.k) }
                    try filters.withUnsafeMutableBufferPointer { b throws(SystemError) in
                        let prog = sock_fprog(len: UInt16(b.count), filter: b.baseAddress)
                        try Sys.setsockopt(
                            fd,
                            SOL_PACKET,
                            PACKET_FANOUT_DATA,
                            prog,
                            call: "PACKET_FANOUT_DATA",
                            object: object
                        )
                    }
                }
            }
            if c.promiscuous {
                var mr = packet_mreq()
                mr.mr_ifindex = index
                mr.mr_type = UInt16(PACKET_MR_PROMISC)
                try Sys.setsockopt(
                    fd,
                    SOL_PACKET,
                    PACKET_ADD_MEMBERSHIP,
                    mr,
                    call: "PACKET_ADD_MEMBERSHIP(PROMISC)",
                    object: object
                )
            }
            try Sys.setNonBlocking(fd, object: object)
            let trainFD = c.sendsTrains && c.vnetHeader ? try openTrainSocket(index, namespace, object: object) : -1
            // TX frames in the ring: each is laid out at frameSize strides within blocks.
            let port = AFPacketPort(
                interface: interface,
                namespace: namespace,
                index: index,
                configuration: c,
                fd: fd,
                trainFD: trainFD,
                map: mapped!,
                mapLength: mapLength,
                rxLength: rxLength,
                txBlockSize: blockBytes,
                txFramesPerBlock: blockBytes / c.txFrameSize,
                txFrameCount: Int(tx.tp_frame_nr)
            )
            return port
        } catch {
            if let mapped { Sys.munmap(mapped, mapLength) }
            Sys.close(fd)
            throw error
        }
    }

    /// The train socket: no rings, protocol 0 (it receives nothing), the 10-byte
    /// header, and a send buffer for a few 64 KB trains in flight.
    static func openTrainSocket(
        _ index: Int32,
        _ namespace: NetworkNamespace,
        object: String
    ) throws(SystemError)
        -> CInt
    {
        let fd = try namespace.runHere { () throws(SystemError) -> CInt in
            try Sys.socket(AF_PACKET, Int32(SOCK_RAW.rawValue), 0, object: object)
        }
        do throws(SystemError) {
            try Sys.setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, Int32(1), call: "PACKET_VNET_HDR", object: object)
            // No PACKET_QDISC_BYPASS here: the direct path drops any packet the kernel
            // has to segment in software (dev_direct_xmit sends only the skb it was
            // given), so on a device without UDP segmentation offload (ethtool -K tx off,
            // most NICs without USO) every train would be lost with ENOBUFS. Through the
            // qdisc layer the kernel cuts the train when the device cannot.
            // SO_SNDBUFFORCE (root) past wmem_max; a plain SO_SNDBUF otherwise.
            if (try? Sys.setsockopt(
                fd,
                SOL_SOCKET,
                SO_SNDBUFFORCE,
                Int32(8 << 20),
                call: "SO_SNDBUFFORCE",
                object: object
            ))
                == nil
            {
                try Sys.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, Int32(8 << 20), call: "SO_SNDBUF", object: object)
            }
            var sll = sockaddr_ll()
            sll.sll_family = UInt16(AF_PACKET)
            sll.sll_protocol = 0
            sll.sll_ifindex = index
            try Sys.bind(fd, sll, object: object)
            try Sys.setNonBlocking(fd, object: object)
        } catch {
            Sys.close(fd)
            throw error
        }
        return fd
    }

    let txBlockSize: Int
    let txFramesPerBlock: Int
    /// Frames in the TX ring (tp_frame_nr, may be a little more than asked).
    public let txFrameCount: Int

    private init(
        interface: String,
        namespace: NetworkNamespace,
        index: Int32,
        configuration: Configuration,
        fd: CInt,
        trainFD: CInt,
        map: UnsafeMutableRawPointer,
        mapLength: Int,
        rxLength: Int,
        txBlockSize: Int,
        txFramesPerBlock: Int,
        txFrameCount: Int
    ) {
        self.interface = interface
        self.namespace = namespace
        self.interfaceIndex = index
        self.configuration = configuration
        self.fd = fd
        self.trainFD = trainFD
        self.map = map
        self.mapLength = mapLength
        self.rxLength = rxLength
        self.txBlockSize = txBlockSize
        self.txFramesPerBlock = txFramesPerBlock
        self.txFrameCount = txFrameCount
    }

    deinit { close() }

    /// Unmaps the rings and closes the socket. The port must no longer be in an IOLoop.
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        Sys.munmap(map, mapLength)
        Sys.close(fd)
        if trainFD >= 0 { Sys.close(trainFD) }
    }

    public struct Statistics: Sendable, Hashable {
        /// Frames the socket saw, including those dropped (the kernel counts drops in both).
        public var packets: UInt64
        /// Frames dropped because the RX ring had no free block (the worker fell behind).
        public var drops: UInt64
        /// Times the ring was frozen (no free block) — TPACKET_V3's "queue freeze" count.
        public var freezes: UInt64
    }

    /// PACKET_STATISTICS since the port opened (the kernel resets its counters on each
    /// read; this accumulates them). Any thread.
    public func statistics() throws(SystemError) -> Statistics {
        var st = tpacket_stats_v3()
        try Sys.getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, call: "PACKET_STATISTICS", object: object)
        return totals.withLock { t in
            t.packets &+= UInt64(st.tp_packets)
            t.drops &+= UInt64(st.tp_drops)
            t.freezes &+= UInt64(st.tp_freeze_q_cnt)
            return Statistics(packets: t.packets, drops: t.drops, freezes: t.freezes)
        }
    }

    /// The raw geometry the IOLoop walks: trivially copyable, no reference to the port.
    var rings: AFPacketRings {
        AFPacketRings(
            rx: map,
            rxBlockSize: configuration.rxBlockSize,
            rxBlockCount: configuration.receives ? configuration.rxBlockCount : 0,
            tx: map + rxLength,
            txBlockSize: txBlockSize,
            txFramesPerBlock: txFramesPerBlock,
            txFrameSize: configuration.txFrameSize,
            txFrameCount: txFrameCount,
            vnetHeaderLength: configuration.vnetHeader ? AFPacketPort.vnetHeaderLength : 0
        )
    }
}

/// Ring geometry as plain pointers and sizes.

struct AFPacketRings {
    let rx: UnsafeMutableRawPointer
    let rxBlockSize: Int
    let rxBlockCount: Int
    let tx: UnsafeMutableRawPointer
    let txBlockSize: Int
    let txFramesPerBlock: Int
    let txFrameSize: Int
    let txFrameCount: Int
    /// Bytes of virtio-net header in front of each ring frame (0 or 10).
    let vnetHeaderLength: Int

    @inline(__always)
    func txFrame(_ i: Int) -> UnsafeMutableRawPointer {
        let block = i / txFramesPerBlock
        let within = i &- block &* txFramesPerBlock
        let offset: Int = block &* txBlockSize &+ within &* txFrameSize
        return tx + offset
    }
}
