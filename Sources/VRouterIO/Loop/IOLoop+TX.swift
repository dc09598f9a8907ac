// Transmitting: tap writes through io_uring (buffer freed on completion), AF_PACKET frames
// copied into the TX ring (buffer freed at once) and the ring kicked once per batch.

import CURing
import CVRouterShims
import Glibc
import VRouterCore

extension IOLoop {
    /// Sends every packet of `frame` to the port its `meta.txPort` names, then submits
    /// everything queued (this batch's writes and kicks, and rx's re-armed reads) with one
    /// io_uring_submit. Empties the frame; every buffer is freed (now, or when its write
    /// completes). Frames for unknown ports are dropped and counted (`counters.txNoPort`).

    public func tx(_ frame: inout Frame) {
        let n = frame.count
        var i = 0
        while i < n {
            let idx = frame[i]
            i &+= 1
            let m = pool.meta(idx)
            let port = m.pointee.txPort
            guard Int(port) < maxPorts else {
                pool.free(idx)
                counters.txNoPort &+= 1
                continue
            }
            let slot = slots + Int(port)
            guard slot.pointee.state == .active else {
                pool.free(idx)
                if slot.pointee.kind == .none { counters.txNoPort &+= 1 } else { slot.pointee.counters.txDrops &+= 1 }
                continue
            }
            switch slot.pointee.kind {
            case .tap:
                var buf = pool.buffer(idx) + Int(m.pointee.offset)
                var len = UInt32(m.pointee.length)
                if slot.pointee.vnet {
                    // The virtio-net header goes in the bytes before the frame.
                    guard m.pointee.offset >= VirtioNet.headerLength else {
                        pool.free(idx)
                        slot.pointee.counters.txDrops &+= 1
                        continue
                    }
                    buf -= VirtioNet.headerLength
                    len &+= UInt32(VirtioNet.headerLength)
                    writeVirtioHeader(buf, pool.buffer(idx), m, tail: true)
                }
                guard let sqe = nextSQE() else {
                    pool.free(idx)
                    slot.pointee.counters.txDrops &+= 1
                    continue
                }
                if usesRegisteredBuffers {
                    io_uring_prep_write_fixed(sqe, slot.pointee.fd, buf, len, 0, 0)
                } else {
                    io_uring_prep_write(sqe, slot.pointee.fd, buf, len, 0)
                }
                io_uring_sqe_set_data64(sqe, UserData.make(.tapWrite, port: port, buffer: idx))
                slot.pointee.writesOutstanding &+= 1
            case .afPacket where m.pointee.offload.gsoType != 0:
                sendTrain(port, slot, idx, m)
            case .afPacket:
                queueTXRing(slot, idx, m)
                pool.free(idx)
            case .none:
                pool.free(idx)
                counters.txNoPort &+= 1
            }
        }
        frame.count = 0
        for j in 0..<afCount {
            let port = afList[j]
            let slot = slots + Int(port)
            // Also re-kick after a failed kick: tpacket_snd stops at the first frame the
            // device refuses (ENOBUFS when the peer's queue is full) and leaves the rest
            // marked SEND_REQUEST; nothing else would send them.
            if slot.pointee.txQueued > 0 || slot.pointee.kickAgain {
                slot.pointee.txQueued = 0
                slot.pointee.kickAgain = false
                kick(port, slot)
            }
        }
        if pending > 0 { submit() }
    }

    /// Copies one packet into the next TX ring frame, or drops it when that frame is still
    /// owned by the kernel (ring full).
    @inline(__always)
    func queueTXRing(_ slot: UnsafeMutablePointer<IOPortSlot>, _ idx: UInt32, _ m: UnsafeMutablePointer<PacketMeta>) {
        let r = slot.pointee.rings!
        let head = slot.pointee.txHead
        let f = r.txFrame(head)
        let h = f.assumingMemoryBound(to: tpacket3_hdr.self)
        let len = Int(m.pointee.length)
        let vh = r.vnetHeaderLength
        // Safe: tp_status is the word the kernel release-stores when it is done with a frame.
        let status = vrt_load_acquire_u32(f + MemoryLayout<tpacket3_hdr>.offset(of: \.tp_status)!)
        guard status == UInt32(TP_STATUS_AVAILABLE), len &+ vh &+ VRT_TPACKET3_TX_DATA_OFFSET <= r.txFrameSize else {
            slot.pointee.counters.txDrops &+= 1
            return
        }
        // A virtio-net header first when the socket has them: nothing to offload, but its
        // hdr_len is the whole frame. tpacket_snd copies hdr_len bytes into the skb's linear
        // part and attaches the rest as zero-copy fragments of the ring's pages; a veth
        // (every frame crossing into another namespace) must then copy those fragments
        // into freshly allocated pages (skb_copy_ubufs). Profiled at 64 bytes: that copy,
        // its page allocations and the zero-copy completions were ~15% of a worker's CPU.
        if vh > 0 {
            let hdr = f + VRT_TPACKET3_TX_DATA_OFFSET
            hdr.initializeMemory(as: UInt8.self, repeating: 0, count: vh)
            hdr.storeBytes(of: UInt16(truncatingIfNeeded: len).littleEndian, toByteOffset: 2, as: UInt16.self)
        }
        // Safe: the length check above keeps the copy inside this frame.
        (f + (VRT_TPACKET3_TX_DATA_OFFSET &+ vh)).copyMemory(
            from: pool.buffer(idx) + Int(m.pointee.offset),
            byteCount: len
        )
        h.pointee.tp_next_offset = 0
        h.pointee.tp_len = UInt32(len &+ vh)
        h.pointee.tp_snaplen = UInt32(len &+ vh)
        vrt_store_release_u32(f + MemoryLayout<tpacket3_hdr>.offset(of: \.tp_status)!, UInt32(TP_STATUS_SEND_REQUEST))
        slot.pointee.txHead = head &+ 1 == r.txFrameCount ? 0 : head &+ 1
        slot.pointee.txQueued &+= 1
        slot.pointee.counters.txPackets &+= 1
        slot.pointee.counters.txBytes &+= UInt64(len)
    }

    /// A 0-byte send: the kernel transmits every SEND_REQUEST frame of the ring.

    func kick(_ port: UInt16, _ slot: UnsafeMutablePointer<IOPortSlot>) {
        guard let sqe = nextSQE() else {
            slot.pointee.kickAgain = true
            return
        }
        io_uring_prep_send(sqe, slot.pointee.fd, nil, 0, Int32(MSG_DONTWAIT))
        io_uring_sqe_set_data64(sqe, UserData.make(.afKick, port: port, buffer: 0))
        slot.pointee.kicksOutstanding &+= 1
    }

    /// Sends a UDP GSO train on the fabric's train socket: one SEND of [10-byte virtio-net
    /// header][frame], the buffer freed when it completes. Frames already in the TX ring
    /// are kicked first, so the ring's packets and the train leave in the frame's order.
    @inline(__always)
    func sendTrain(
        _ port: UInt16,
        _ slot: UnsafeMutablePointer<IOPortSlot>,
        _ idx: UInt32,
        _ m: UnsafeMutablePointer<PacketMeta>
    ) {
        let fd = slot.pointee.trainFD
        guard fd >= 0, m.pointee.offset >= AFPacketPort.vnetHeaderLength else {
            pool.free(idx)
            slot.pointee.counters.txDrops &+= 1
            return
        }
        if slot.pointee.txQueued > 0 {
            slot.pointee.txQueued = 0
            kick(port, slot)
        }
        guard let sqe = nextSQE() else {
            pool.free(idx)
            slot.pointee.counters.txDrops &+= 1
            return
        }
        let buf = pool.buffer(idx) + (Int(m.pointee.offset) &- AFPacketPort.vnetHeaderLength)
        writeVirtioHeader(buf, pool.buffer(idx), m, tail: false)
        io_uring_prep_send(sqe, fd, buf, Int(m.pointee.length) &+ AFPacketPort.vnetHeaderLength, 0)
        io_uring_sqe_set_data64(sqe, UserData.make(.trainSend, port: port, buffer: idx))
        slot.pointee.trainsOutstanding &+= 1
    }

    /// The virtio-net header for packet `m` (in the buffer at `base`) at `p`: 10 bytes, and
    /// with `tail` the 12-byte header's num_buffers (zero) too.
    @inline(__always)
    func writeVirtioHeader(
        _ p: UnsafeMutableRawPointer,
        _ base: UnsafeMutableRawPointer,
        _ m: UnsafeMutablePointer<PacketMeta>,
        tail: Bool
    ) {
        let o = m.pointee.offload
        var l4Length = 0
        if o.flags & PacketOffload.needsChecksum != 0 {
            // TCP: its header length for the hint; UDP: 8.
            l4Length =
                o.checksumOffset == 16
                ? Int(base.u8(Int(o.checksumStart) &+ 12) >> 4) &<< 2 : HeaderSize.udp
        }
        VirtioNet.header(for: m, l4Length: l4Length).write(to: p)
        if tail { p.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self) }
    }
}
