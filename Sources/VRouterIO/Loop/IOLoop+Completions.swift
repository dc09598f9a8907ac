// Reaping the completion queue: read completions become received frames (and the read is
// re-armed with a fresh buffer), write completions free their buffers.

import CURing
import CVRouterShims
import Glibc
import VRouterCore

extension IOLoop {
    /// Errors in a row after which a tap is declared dead instead of re-armed forever.
    static let deadAfterErrors: Int32 = 16

    /// Processes completions until the CQ is empty or `frame` is full. With `dropping`,
    /// reads that complete while `frame` is full are freed (counted) instead of left queued.

    func reap(into frame: UnsafeMutablePointer<Frame>, dropping: Bool) {
        let cq = ring.pointee.cq
        var head = cq.khead.pointee
        // Safe: the kernel publishes CQEs before its release store of ktail.
        let tail = vrt_load_acquire_u32(cq.ktail)
        var seen: UInt32 = 0
        let superframes = configuration.superframesPerFrame
        while head != tail {
            if (frame.pointee.isFull || superframesTaken >= superframes) && !dropping { break }
            let cqe = cq.cqes + Int(head & cq.ring_mask)
            complete(cqe.pointee.user_data, cqe.pointee.res, cqe.pointee.flags, into: frame)
            head &+= 1
            seen &+= 1
        }
        if seen > 0 {
            io_uring_cq_advance(ring, seen)
            counters.completions &+= UInt64(seen)
        }
        if bigRing != nil { bigRing!.refill(pool) }
    }

    @inline(__always)
    func complete(_ userData: UInt64, _ res: Int32, _ flags: UInt32, into frame: UnsafeMutablePointer<Frame>) {
        let port = UInt16(truncatingIfNeeded: userData &>> 32)
        let idx = UInt32(truncatingIfNeeded: userData)
        let slot = slots + Int(port)
        switch UserData.Kind(rawValue: UInt8(truncatingIfNeeded: userData &>> 56)) {
        case .tapRead where slot.pointee.vnet:
            completeBigRead(port, slot, res, flags, into: frame)
        case .tapRead:
            slot.pointee.readsOutstanding &-= 1
            if res > 0 && slot.pointee.state == .active {
                slot.pointee.consecutiveErrors = 0
                slot.pointee.counters.rxPackets &+= 1
                slot.pointee.counters.rxBytes &+= UInt64(res)
                if Int(res) >= pool.maxFrameLength {
                    // tun truncates a frame to the read's length without saying so: a read
                    // that filled the buffer may have lost the frame's tail (a pod MTU larger
                    // than the pool's buffers). Dropped, counted.
                    pool.free(idx)
                    slot.pointee.counters.rxDrops &+= 1
                } else if frame.pointee.isFull {
                    pool.free(idx)
                    slot.pointee.counters.rxDrops &+= 1
                    counters.stashDrops &+= 1
                } else {
                    let m = pool.meta(idx)
                    m.pointee.offset = UInt16(PacketPool.headroom)
                    m.pointee.length = UInt16(truncatingIfNeeded: res)
                    m.pointee.rxPort = port
                    frame.pointee.append(idx)
                }
                rearm(port, slot)
            } else {
                pool.free(idx)
                readFailed(port, slot, res)
            }
        case .tapWrite:
            slot.pointee.writesOutstanding &-= 1
            sent(slot, idx, res)
        case .afPoll:
            slot.pointee.pollArmed = false
        case .trainSend:
            slot.pointee.trainsOutstanding &-= 1
            sent(slot, idx, res)
        case .afKick:
            slot.pointee.kicksOutstanding &-= 1
            if res < 0 {
                // Frames marked SEND_REQUEST stay in the ring; kick again before the next wait.
                slot.pointee.counters.txErrors &+= 1
                if slot.pointee.state == .active { slot.pointee.kickAgain = true }
            }
        case .wake:
            wakeArmed = false
            if res > 0 || res == -EAGAIN {
                wakePending = true
                counters.wakeups &+= 1
            }
            if !closing { armWake() }
        case .cancel, .none:
            break
        }
    }

    /// A tap write or a train send completed: its buffer goes back to the pool, the port
    /// counts it.
    @inline(__always)
    func sent(_ slot: UnsafeMutablePointer<IOPortSlot>, _ idx: UInt32, _ res: Int32) {
        pool.free(idx)
        if res >= 0 {
            slot.pointee.counters.txPackets &+= 1
            slot.pointee.counters.txBytes &+= UInt64(res)
        } else {
            slot.pointee.counters.txErrors &+= 1
        }
    }

    @inline(__always)
    func rearm(_ port: UInt16, _ slot: UnsafeMutablePointer<IOPortSlot>) {
        if !armRead(port) {
            slot.pointee.deficit &+= 1
            readDeficit &+= 1
        }
    }

    func readFailed(_ port: UInt16, _ slot: UnsafeMutablePointer<IOPortSlot>, _ res: Int32) {
        guard slot.pointee.state == .active else { return }
        if res == -ECANCELED { return }
        // EAGAIN: nothing to read after all. Our tap fds are O_NONBLOCK, and io_uring hands
        // EAGAIN back when it stops polling for a read (it retries a polled read a limited
        // number of times, and under load most wakeups of a queue's 32 reads find the frame
        // taken by another) and issues it once more from its io-wq. Seen here with iperf3
        // through a busy 2-core VM. Not an error: re-arm, and never count it towards dead
        // (16 in a row used to stop a busy pod's port for good).
        if res == -EAGAIN || res == -EINTR {
            counters.readsRetried &+= 1
            rearm(port, slot)
            return
        }
        slot.pointee.counters.rxErrors &+= 1
        slot.pointee.consecutiveErrors &+= 1
        // EBADFD: the device is gone (its namespace was deleted); 0: nothing will come.
        // Other errors re-arm, but a port failing every read is stopped rather than spun on.
        if res == -EBADFD || res == -EBADF || res == 0 || slot.pointee.consecutiveErrors >= Self.deadAfterErrors {
            slot.pointee.state = .dead
            return
        }
        rearm(port, slot)
    }

    /// Queues one read into a fresh buffer. False when the pool or the SQ is exhausted.
    @inline(__always)
    func armRead(_ port: UInt16) -> Bool {
        if slots[Int(port)].vnet { return armBigRead(port, slots + Int(port)) }
        guard let idx = pool.alloc() else { return false }
        guard let sqe = nextSQE() else {
            pool.free(idx)
            return false
        }
        let slot = slots + Int(port)
        let buf = pool.buffer(idx) + PacketPool.headroom
        let len = UInt32(pool.maxFrameLength)
        if usesRegisteredBuffers {
            io_uring_prep_read_fixed(sqe, slot.pointee.fd, buf, len, 0, 0)
        } else {
            io_uring_prep_read(sqe, slot.pointee.fd, buf, len, 0)
        }
        io_uring_sqe_set_data64(sqe, UserData.make(.tapRead, port: port, buffer: idx))
        slot.pointee.readsOutstanding &+= 1
        return true
    }

    /// Re-arms reads that failed for lack of buffers, now that some may be free.

    func refillReads() {
        for i in 0..<portCount {
            let port = portList[i]
            let slot = slots + Int(port)
            while slot.pointee.deficit > 0 {
                guard slot.pointee.state == .active else {
                    readDeficit -= Int(slot.pointee.deficit)
                    slot.pointee.deficit = 0
                    break
                }
                guard armRead(port) else { return }
                slot.pointee.deficit &-= 1
                readDeficit &-= 1
            }
            if readDeficit == 0 { return }
        }
    }
}
