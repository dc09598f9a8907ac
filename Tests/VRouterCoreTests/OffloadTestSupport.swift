// Superframes for the offload suites, assembled by hand: a TCP or UDP packet far larger
// than any MTU with the metadata a tap with TSO/USO would give it (partial checksum,
// segment size) and that ethernet-input would record (l3, l4, family, protocol).

import Testing

@testable import VRouterCore

struct TCPSpec {
    var src4 = T.ip4A
    var dst4 = T.ip4B
    var src6 = T.ip6A
    var dst6 = T.ip6B
    var v6 = false
    var sport: UInt16 = 40000
    var dport: UInt16 = 5201
    var seq: UInt32 = 0xFFFF_F000  // wraps inside the superframe
    var ack: UInt32 = 0x1122_3344
    var flags: UInt8 = 0x18  // ACK PSH
    var window: UInt16 = 501
    /// NOP NOP timestamps (12 bytes): the options a Linux sender puts on every segment.
    var options: [UInt8] = [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78]
    var ttl: UInt8 = 64
    var tos: UInt8 = 0
    var id: UInt16 = 0xFFF0  // wraps too
    var ipFlags: UInt16 = 0x4000  // DF
    var payload: [UInt8] = []
    var dstMAC = T.vrouterMAC
    var srcMAC = T.macA

    /// TCP header (+ payload) with `checksum`: the complete one, or the pseudo-header sum
    /// only (`partial`, as a TSO sender leaves it).
    func tcp(partial: Bool) -> [UInt8] {
        var w = ByteWriter()
        w.u16(sport)
        w.u16(dport)
        w.u32(seq)
        w.u32(ack)
        w.u8(UInt8((20 + options.count) / 4) << 4)
        w.u8(flags)
        w.u16(window)
        w.u16(0)
        w.u16(0)
        w.bytes(options)
        w.bytes(payload)
        let ps = pseudo(proto: 6, length: w.b.count)
        if partial {
            // The pseudo-header sum, not complemented.
            w.set16(16, ~refChecksum(ps))
        } else {
            w.set16(16, refChecksum(ps + w.b))
        }
        return w.b
    }

    func pseudo(proto: UInt8, length: Int) -> [UInt8] {
        v6 ? pseudo6(src6, dst6, nextHeader: proto, length: length) : pseudo4(src4, dst4, proto: proto, length: length)
    }

    func ip(proto: UInt8, payload count: Int) -> [UInt8] {
        v6
            ? Frames.ipv6(src: src6, dst: dst6, nextHeader: proto, payload: count, hopLimit: ttl)
            : Frames.ipv4(
                src: src4,
                dst: dst4,
                proto: proto,
                payload: count,
                ttl: ttl,
                id: id,
                flags: ipFlags,
                tos: tos
            )
    }

    func frame(partial: Bool = true) -> [UInt8] {
        let t = tcp(partial: partial)
        return Frames.ethernet(dst: dstMAC, src: srcMAC, type: v6 ? 0x86DD : 0x0800) + ip(proto: 6, payload: t.count)
            + t
    }

    func udpFrame(partial: Bool = true) -> [UInt8] {
        var w = ByteWriter()
        w.u16(sport)
        w.u16(dport)
        w.u16(UInt16(truncatingIfNeeded: 8 + payload.count))
        w.u16(0)
        w.bytes(payload)
        let ps = pseudo(proto: 17, length: w.b.count)
        w.set16(6, partial ? ~refChecksum(ps) : refChecksum(ps + w.b))
        return Frames.ethernet(dst: dstMAC, src: srcMAC, type: v6 ? 0x86DD : 0x0800) + ip(proto: 17, payload: w.b.count)
            + w.b
    }
}

/// A payload whose every byte depends on its position (a misplaced chunk shows).
func pattern(_ n: Int, seed: Int = 7) -> [UInt8] {
    (0..<n).map { UInt8(truncatingIfNeeded: ($0 &* 131) ^ ($0 >> 8) ^ seed) }
}

extension PacketPool {
    /// Loads `bytes` into a big buffer with the metadata of a received superframe
    /// (or of an ordinary packet when `gsoSize` is 0) whose IP header starts at `l2`.
    func superframe(
        _ bytes: [UInt8],
        l2: Int = 14,
        gsoType: UInt8,
        gsoSize: Int,
        partial: Bool = true,
        big: Bool = true
    ) -> UInt32 {
        let idx = big ? allocBig()! : alloc()!
        bytes.withUnsafeBytes { _ = load(idx, bytes: $0) }
        let m = meta(idx)
        let l3 = PacketPool.headroom + l2
        let v4 = bytes[l2] >> 4 == 4
        let ihl = v4 ? Int(bytes[l2] & 0x0F) * 4 : 40
        m.pointee.l3 = UInt16(l3)
        m.pointee.l4 = UInt16(l3 + ihl)
        m.pointee.proto = v4 ? bytes[l2 + 9] : bytes[l2 + 6]
        m.pointee.flags = v4 ? [.ipv4] : [.ipv6]
        if v4 && bytes[l2 + 6] & 0x40 != 0 { m.pointee.flags.insert(.dfSet) }
        var o = PacketOffload()
        o.gsoType = gsoType
        o.gsoSize = UInt16(gsoSize)
        if partial {
            o.flags = PacketOffload.needsChecksum
            o.checksumStart = UInt16(l3 + ihl)
            o.checksumOffset = m.pointee.proto == 6 ? 16 : 6
        }
        m.pointee.offload = o
        return idx
    }
}

/// A pool with big buffers for the offload suites.
func withBigPool<R>(count: Int = 512, big: Int = 8, _ body: (PacketPool) throws -> R) rethrows -> R {
    let pool = PacketPool.allocate(count: count, bufferSize: 2048, bigBuffers: big)
    defer { pool.deallocate() }
    return try body(pool)
}

/// Records an issue naming the first differing byte (64 KB frames are too long to print).
func expectSameBytes(_ got: [UInt8], _ want: [UInt8], _ what: String, sourceLocation: SourceLocation = #_sourceLocation)
{
    guard got != want else { return }
    let at = (0..<min(got.count, want.count)).first { got[$0] != want[$0] } ?? min(got.count, want.count)
    let near = { (b: [UInt8]) in hexString(b[max(0, at - 4)..<min(b.count, at + 8)]) }
    Issue.record(
        "\(what): \(got.count) bytes against \(want.count), first difference at byte \(at): \(near(got)) / \(near(want))",
        sourceLocation: sourceLocation
    )
}
