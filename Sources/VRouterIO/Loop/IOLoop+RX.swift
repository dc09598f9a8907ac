// Receiving: completed tap reads, then the AF_PACKET RX rings, into one frame.

import CURing
import CVRouterShims
import Glibc
import VRouterCore

extension IOLoop {
    /// Appends received frames from every port to `frame` (meta: offset, length, rxPort;
    /// AF_PACKET frames also carry the kernel's timestamp) and returns how many. When
    /// nothing is ready it waits up to `maxWait` for traffic or a wakeup (`takeWakeup()`);
    /// `.zero` never blocks. No syscall when packets are ready; the re-armed reads are
    /// submitted by the next `tx` (call it every round, even with an empty frame).

    public func rx(into frame: inout Frame, maxWait: Duration = .zero) -> Int {
        let start = frame.count
        guard !frame.isFull else { return 0 }
        superframesTaken = 0
        withUnsafeMutablePointer(to: &frame) { f in
            gather(into: f)
            if f.pointee.count > start { return }
            if maxWait <= .zero {
                if pending > 0 {
                    submit()
                    gather(into: f)
                }
                return
            }
            prepareToWait()
            let (s, atto) = maxWait.components
            waitAndReap(into: f, dropping: false, nanoseconds: s &* 1_000_000_000 &+ atto / 1_000_000_000)
            walkRings(into: f)
            if readDeficit > 0 { refillReads() }
        }
        return frame.count &- start
    }

    @inline(__always)
    func gather(into f: UnsafeMutablePointer<Frame>) {
        if !stash.pointee.isEmpty { takeStash(into: f) }
        reap(into: f, dropping: false)
        walkRings(into: f)
        if readDeficit > 0 { refillReads() }
    }

    func takeStash(into f: UnsafeMutablePointer<Frame>) {
        let s = stash
        var i = 0
        while i < s.pointee.count && !f.pointee.isFull {
            f.pointee.append(s.pointee[i])
            i += 1
        }
        // Keep the rest, in order.
        let left = s.pointee.count - i
        if left > 0 { s.pointee.slots.update(from: s.pointee.slots + i, count: left) }
        s.pointee.count = left
    }

    /// Before sleeping: a poll on every empty AF_PACKET ring, and TX kicks that failed.

    func prepareToWait() {
        for i in 0..<afCount {
            let port = afList[i]
            let slot = slots + Int(port)
            guard slot.pointee.state == .active else { continue }
            if slot.pointee.kickAgain {
                slot.pointee.kickAgain = false
                kick(port, slot)
            }
            if !slot.pointee.pollArmed, (slot.pointee.rings?.rxBlockCount ?? 0) > 0, let sqe = nextSQE() {
                io_uring_prep_poll_add(sqe, slot.pointee.fd, UInt32(POLLIN))
                io_uring_sqe_set_data64(sqe, UserData.make(.afPoll, port: port, buffer: 0))
                slot.pointee.pollArmed = true
            }
        }
    }

    @inline(__always)
    func walkRings(into f: UnsafeMutablePointer<Frame>) {
        for i in 0..<afCount {
            if f.pointee.isFull { return }
            walkRing(afList[i], into: f)
        }
    }

    /// Copies frames out of the port's retired RX blocks into pool buffers, returning each
    /// block to the kernel once walked. Stops (keeping its place) when the frame is full or
    /// the pool is empty — the ring then fills and the kernel counts drops, which is the
    /// backpressure we want.

    func walkRing(_ port: UInt16, into f: UnsafeMutablePointer<Frame>) {
        let slot = slots + Int(port)
        guard slot.pointee.state == .active, let r = slot.pointee.rings, r.rxBlockCount > 0 else { return }
        var block = slot.pointee.rxBlock
        var left = slot.pointee.rxLeft
        var next = slot.pointee.rxNext
        var packets: UInt64 = 0
        var bytes: UInt64 = 0
        var drops: UInt64 = 0
        let maxLength = pool.maxFrameLength
        while !f.pointee.isFull {
            let desc = r.rx + block &* r.rxBlockSize
            if left == 0 {
                // Safe: the kernel fills a block before its release store of TP_STATUS_USER.
                let status = vrt_load_acquire_u32(desc + VRT_TPACKET_BLOCK_STATUS_OFFSET)
                if status & UInt32(TP_STATUS_USER) == 0 { break }
                left = Int(desc.load(fromByteOffset: VRT_TPACKET_BLOCK_NUM_PKTS_OFFSET, as: UInt32.self))
                next = desc + Int(desc.load(fromByteOffset: VRT_TPACKET_BLOCK_FIRST_PKT_OFFSET, as: UInt32.self))
                if left == 0 {
                    vrt_store_release_u32(desc + VRT_TPACKET_BLOCK_STATUS_OFFSET, UInt32(TP_STATUS_KERNEL))
                    block = block &+ 1 == r.rxBlockCount ? 0 : block &+ 1
                    continue
                }
            }
            // Safe: `next` points at a tpacket3_hdr inside the retired block (the kernel
            // wrote num_pkts headers chained by tp_next_offset).
            let h = next!.assumingMemoryBound(to: tpacket3_hdr.self)
            let snap = Int(h.pointee.tp_snaplen)
            let vlan = h.pointee.tp_status & UInt32(TP_STATUS_VLAN_VALID) != 0
            let length = vlan ? snap &+ 4 : snap
            // With virtio-net headers: a UDP GSO train (a peer vRouter's, whole through a
            // veth) is cut into its datagrams; a superframe inside a tunnel (the kernel's
            // VXLAN sending TCP: gso TCPv4/v6, or UDP GSO whose partial checksum is the
            // inner one) goes whole into a big buffer, its inner superframe for the
            // pipeline to forward; a partial inner checksum is recorded. DATA_VALID is not:
            // a NIC vouches for the outer checksum, never for the inner one.
            let header =
                r.vnetHeaderLength > 0
                ? VirtioNet.Header(reading: UnsafeRawPointer(next!) + (Int(h.pointee.tp_mac) &- r.vnetHeaderLength))
                : VirtioNet.Header()
            let src = UnsafeRawPointer(next!) + Int(h.pointee.tp_mac)
            let ts = UInt64(h.pointee.tp_sec) &* 1_000_000_000 &+ UInt64(h.pointee.tp_nsec)
            if snap != Int(h.pointee.tp_len) || snap < 14 {
                drops &+= 1
            } else if header.gsoType != VirtioNet.gsoNone {
                let train =
                    header.gsoType == VirtioNet.gsoUDPL4 && !vlan
                    ? UDPTrain.shape(src, length: snap, segmentSize: Int(header.gsoSize)) : nil
                if let train, header.flags & VirtioNet.needsChecksum == 0 || Int(header.checksumStart) == train.l4 {
                    let before = f.pointee.count
                    guard
                        UDPTrain.split(
                            src,
                            length: snap,
                            l3: train.l3,
                            l4: train.l4,
                            count: train.count,
                            segmentSize: Int(header.gsoSize),
                            pool: pool,
                            into: f
                        )
                    else { break }  // no room in the frame or the pool: keep our place
                    for i in before..<f.pointee.count {
                        let m = pool.meta(f.pointee[i])
                        m.pointee.rxPort = port
                        m.pointee.timestamp = ts
                        bytes &+= UInt64(m.pointee.length)
                    }
                    packets &+= UInt64(f.pointee.count &- before)
                } else if length <= 0xFFFF, superframesTaken < configuration.superframesPerFrame {
                    guard let idx = pool.allocBig() else { break }
                    copyFrame(next!, h, src, snap, vlan, into: idx)
                    superframesTaken &+= 1
                    var inner = header
                    if vlan { inner.checksumStart &+= 4 }
                    inner.flags &= VirtioNet.needsChecksum
                    deliverFabric(idx, length, inner, h, port, ts, into: f)
                    packets &+= 1
                    bytes &+= UInt64(length)
                } else if length <= 0xFFFF {
                    break  // enough superframes for this frame: the next rx takes it
                } else {
                    drops &+= 1
                }
            } else if length > maxLength {
                drops &+= 1
            } else {
                guard let idx = pool.alloc() else { break }
                copyFrame(next!, h, src, snap, vlan, into: idx)
                var inner = header
                if vlan { inner.checksumStart &+= 4 }
                inner.flags &= VirtioNet.needsChecksum
                deliverFabric(idx, length, inner, h, port, ts, into: f)
                packets &+= 1
                bytes &+= UInt64(length)
            }
            left &-= 1
            if left > 0 {
                next = next! + Int(h.pointee.tp_next_offset)
            } else {
                vrt_store_release_u32(desc + VRT_TPACKET_BLOCK_STATUS_OFFSET, UInt32(TP_STATUS_KERNEL))
                block = block &+ 1 == r.rxBlockCount ? 0 : block &+ 1
            }
        }
        slot.pointee.rxBlock = block
        slot.pointee.rxLeft = left
        slot.pointee.rxNext = next
        slot.pointee.counters.rxPackets &+= packets
        slot.pointee.counters.rxBytes &+= bytes
        slot.pointee.counters.rxDrops &+= drops
    }

    /// Copies a ring frame into buffer `idx` at the headroom, putting back the 802.1Q tag
    /// the device stripped into the ring header (the pipeline sees the frame as it was on
    /// the wire).
    @inline(__always)
    func copyFrame(
        _ ringFrame: UnsafeMutableRawPointer,
        _ h: UnsafeMutablePointer<tpacket3_hdr>,
        _ src: UnsafeRawPointer,
        _ snap: Int,
        _ vlan: Bool,
        into idx: UInt32
    ) {
        let dst = pool.buffer(idx) + PacketPool.headroom
        // Safe: the caller chose a buffer that holds snap (+4 with a tag) bytes.
        if vlan {
            let tci = ringFrame.load(fromByteOffset: VRT_TPACKET3_VLAN_TCI_OFFSET, as: UInt16.self)
            var tpid = ringFrame.load(fromByteOffset: VRT_TPACKET3_VLAN_TPID_OFFSET, as: UInt16.self)
            if h.pointee.tp_status & UInt32(TP_STATUS_VLAN_TPID_VALID) == 0 || tpid == 0 { tpid = 0x8100 }
            dst.copyMemory(from: src, byteCount: 12)
            (dst + 12).storeBytes(of: tpid.bigEndian, as: UInt16.self)
            (dst + 14).storeBytes(of: tci.bigEndian, as: UInt16.self)
            (dst + 16).copyMemory(from: src + 12, byteCount: snap &- 12)
        } else {
            dst.copyMemory(from: src, byteCount: snap)
        }
    }

    @inline(__always)
    func deliverFabric(
        _ idx: UInt32,
        _ length: Int,
        _ header: VirtioNet.Header,
        _ h: UnsafeMutablePointer<tpacket3_hdr>,
        _ port: UInt16,
        _ timestamp: UInt64,
        into f: UnsafeMutablePointer<Frame>
    ) {
        let m = pool.meta(idx)
        m.pointee.offset = UInt16(PacketPool.headroom)
        m.pointee.length = UInt16(truncatingIfNeeded: length)
        m.pointee.rxPort = port
        m.pointee.timestamp = timestamp
        // A sender on this machine (a veth's other end) left the checksum to an offload
        // that never ran: the pipeline completes it where it matters (the header, when the
        // socket has them, says where it starts; untunneled packets need only the flag).
        if h.pointee.tp_status & UInt32(TP_STATUS_CSUMNOTREADY) != 0 { m.pointee.flags = .checksumPartial }
        if header.flags | header.gsoType != 0 && !VirtioNet.record(header, in: m) {
            m.pointee.offload.gsoType = 0xFF  // dropped as offload_invalid after decap
        }
        f.pointee.append(idx)
    }
}
