// Test-side helpers for the Headers suites. Everything here is written independently of
// the code under test: bytes are assembled by hand, checksums come from a byte-at-a-time
// RFC 1071 reference, and out-of-bounds reads are caught by a guard page.

import Glibc
import Testing

@testable import VRouterCore

/// Hex string ("45 00 00 1c ...", whitespace and newlines ignored) to bytes.
func hex(_ s: String) -> [UInt8] {
    let digits = s.utf8.filter { !($0 == 0x20 || $0 == 0x0A || $0 == 0x09) }
    precondition(digits.count % 2 == 0, "odd hex digit count")
    func v(_ c: UInt8) -> UInt8 {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: preconditionFailure("bad hex digit")
        }
    }
    return stride(from: 0, to: digits.count, by: 2).map { v(digits[$0]) << 4 | v(digits[$0 + 1]) }
}

func hexString(_ b: some Collection<UInt8>) -> String {
    b.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
}

/// RFC 1071 reference: byte-pair sum with end-around carry, complemented.
func refChecksum(_ b: [UInt8], initial: UInt32 = 0) -> UInt16 {
    var s: UInt32 = initial
    var i = 0
    while i + 1 < b.count {
        s += UInt32(b[i]) << 8 | UInt32(b[i + 1])
        i += 2
    }
    if i < b.count { s += UInt32(b[i]) << 8 }
    while s >> 16 != 0 { s = (s & 0xFFFF) + (s >> 16) }
    return ~UInt16(s)
}

/// True when the bytes (checksum included) verify.
func refVerifies(_ b: [UInt8], pseudo: [UInt8] = []) -> Bool {
    refChecksum(pseudo + b) == 0
}

func pseudo4(_ src: [UInt8], _ dst: [UInt8], proto: UInt8, length: Int) -> [UInt8] {
    src + dst + [0, proto, UInt8(length >> 8), UInt8(length & 0xFF)]
}

func pseudo6(_ src: [UInt8], _ dst: [UInt8], nextHeader: UInt8, length: Int) -> [UInt8] {
    src + dst + [
        UInt8(length >> 24 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF),
    ]
        + [0, 0, 0, nextHeader]
}

func be16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) << 8 | UInt16(b[i + 1]) }
func be32(_ b: [UInt8], _ i: Int) -> UInt32 { UInt32(be16(b, i)) << 16 | UInt32(be16(b, i + 2)) }

/// Byte assembly for test packets, independent of PacketBuilder.
struct ByteWriter {
    var b: [UInt8] = []
    mutating func u8(_ v: UInt8) { b.append(v) }
    mutating func u16(_ v: UInt16) { b += [UInt8(v >> 8), UInt8(v & 0xFF)] }
    mutating func u32(_ v: UInt32) {
        u16(UInt16(v >> 16))
        u16(UInt16(v & 0xFFFF))
    }
    mutating func bytes(_ v: [UInt8]) { b += v }
    mutating func set16(_ at: Int, _ v: UInt16) {
        b[at] = UInt8(v >> 8)
        b[at + 1] = UInt8(v & 0xFF)
    }
}

// Addresses from the documentation ranges the project allows.
enum T {
    static let macA = hex("02 00 00 00 00 0a")
    static let macB = hex("02 00 00 00 00 0b")
    static let vrouterMAC = hex("00 00 5e 00 01 00")
    static let ip4A = hex("c0 00 02 0a")  // 192.0.2.10
    static let ip4B = hex("c6 33 64 14")  // 198.51.100.20
    static let ip4Gw = hex("c0 00 02 01")  // 192.0.2.1
    static let ul1 = hex("c6 12 00 01")  // 198.18.0.1
    static let ul2 = hex("c6 12 00 02")  // 198.18.0.2
    static let ip6A = hex("20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 0a")  // 2001:db8::a
    static let ip6B = hex("20 01 0d b8 00 01 00 00 00 00 00 00 00 00 00 0b")  // 2001:db8:1::b
    static let ip6Gw = hex("20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01")  // 2001:db8::1

    static func mac(_ b: [UInt8]) -> MACAddress { MACAddress(b.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) }
    static func v4(_ b: [UInt8]) -> IPv4Address { IPv4Address(b.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }) }
    static func v6(_ b: [UInt8]) -> IPv6Address { IPv6Address(b.reduce(UInt128(0)) { $0 << 8 | UInt128($1) }) }
}

/// Hand-assembled frames (the test's own, not the builders').
enum Frames {
    static func ethernet(
        dst: [UInt8] = T.macB,
        src: [UInt8] = T.macA,
        type: UInt16,
        tags: [(UInt16, UInt16)] = []
    )
        -> [UInt8]
    {
        var w = ByteWriter()
        w.bytes(dst)
        w.bytes(src)
        for (tpid, tci) in tags {
            w.u16(tpid)
            w.u16(tci)
        }
        w.u16(type)
        return w.b
    }

    /// IPv4 header with checksum from the reference; `flags` is the flags/offset word.
    static func ipv4(
        src: [UInt8] = T.ip4A,
        dst: [UInt8] = T.ip4B,
        proto: UInt8,
        payload: Int,
        options: [UInt8] = [],
        ttl: UInt8 = 64,
        id: UInt16 = 0x1234,
        flags: UInt16 = 0,
        tos: UInt8 = 0
    ) -> [UInt8] {
        precondition(options.count % 4 == 0)
        var w = ByteWriter()
        let hl = 20 + options.count
        w.u8(0x40 | UInt8(hl / 4))
        w.u8(tos)
        w.u16(UInt16(hl + payload))
        w.u16(id)
        w.u16(flags)
        w.u8(ttl)
        w.u8(proto)
        w.u16(0)
        w.bytes(src)
        w.bytes(dst)
        w.bytes(options)
        w.set16(10, refChecksum(w.b))
        return w.b
    }

    static func ipv6(
        src: [UInt8] = T.ip6A,
        dst: [UInt8] = T.ip6B,
        nextHeader: UInt8,
        payload: Int,
        hopLimit: UInt8 = 64
    )
        -> [UInt8]
    {
        var w = ByteWriter()
        w.u32(0x6000_0000)
        w.u16(UInt16(payload))
        w.u8(nextHeader)
        w.u8(hopLimit)
        w.bytes(src)
        w.bytes(dst)
        return w.b
    }

    /// UDP header + payload with the checksum over `pseudo` (none when nil).
    static func udp(sport: UInt16, dport: UInt16, payload: [UInt8], pseudo: [UInt8]? = nil) -> [UInt8] {
        var w = ByteWriter()
        w.u16(sport)
        w.u16(dport)
        w.u16(UInt16(8 + payload.count))
        w.u16(0)
        w.bytes(payload)
        if let pseudo {
            let c = refChecksum(pseudo + w.b)
            w.set16(6, c == 0 ? 0xFFFF : c)
        }
        return w.b
    }

    static func tcp(
        sport: UInt16,
        dport: UInt16,
        flags: UInt8,
        options: [UInt8] = [],
        payload: [UInt8] = [],
        pseudo: [UInt8]
    ) -> [UInt8] {
        precondition(options.count % 4 == 0)
        var w = ByteWriter()
        w.u16(sport)
        w.u16(dport)
        w.u32(0x0102_0304)
        w.u32(0)
        w.u8(UInt8((20 + options.count) / 4) << 4)
        w.u8(flags)
        w.u16(0xFFFF)
        w.u16(0)
        w.u16(0)
        w.bytes(options)
        w.bytes(payload)
        w.set16(16, refChecksum(pseudo + w.b))
        return w.b
    }

    static func icmp(
        type: UInt8,
        code: UInt8 = 0,
        rest: UInt32 = 0,
        payload: [UInt8] = [],
        pseudo: [UInt8] = []
    )
        -> [UInt8]
    {
        var w = ByteWriter()
        w.u8(type)
        w.u8(code)
        w.u16(0)
        w.u32(rest)
        w.bytes(payload)
        w.set16(2, refChecksum(pseudo + w.b))
        return w.b
    }

    /// Ethernet/IPv4/UDP frame.
    static func udp4(
        sport: UInt16 = 40000,
        dport: UInt16 = 53,
        payload: [UInt8] = Array(0..<18),
        tags: [(UInt16, UInt16)] = [],
        options: [UInt8] = [],
        flags: UInt16 = 0,
        ttl: UInt8 = 64,
        src: [UInt8] = T.ip4A,
        dst: [UInt8] = T.ip4B,
        dstMAC: [UInt8] = T.macB
    ) -> [UInt8] {
        let u = udp(
            sport: sport,
            dport: dport,
            payload: payload,
            pseudo: pseudo4(src, dst, proto: 17, length: 8 + payload.count)
        )
        return ethernet(dst: dstMAC, type: 0x0800, tags: tags)
            + ipv4(src: src, dst: dst, proto: 17, payload: u.count, options: options, ttl: ttl, flags: flags) + u
    }

    /// Ethernet/IPv6/UDP frame.
    static func udp6(
        sport: UInt16 = 40000,
        dport: UInt16 = 53,
        payload: [UInt8] = Array(0..<18),
        src: [UInt8] = T.ip6A,
        dst: [UInt8] = T.ip6B,
        hopLimit: UInt8 = 64,
        dstMAC: [UInt8] = T.macB
    ) -> [UInt8] {
        let u = udp(
            sport: sport,
            dport: dport,
            payload: payload,
            pseudo: pseudo6(src, dst, nextHeader: 17, length: 8 + payload.count)
        )
        return ethernet(dst: dstMAC, type: 0x86DD)
            + ipv6(src: src, dst: dst, nextHeader: 17, payload: u.count, hopLimit: hopLimit) + u
    }
}

/// A buffer whose end is followed by an inaccessible page: bytes placed with `place` end
/// exactly at the guard, so any read past `length` faults instead of passing silently.
final class GuardedBuffer {
    let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    let pages: Int
    let base: UnsafeMutableRawPointer

    init(capacity: Int = 4096) {
        pages = (capacity + pageSize - 1) / pageSize
        let total = (pages + 1) * pageSize
        let p = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        precondition(p != MAP_FAILED)
        base = p!
        precondition(mprotect(base + pages * pageSize, pageSize, PROT_NONE) == 0)
    }
    deinit { munmap(base, (pages + 1) * pageSize) }

    /// Copies `bytes` to end right before the guard page and returns where they start.
    func place(_ bytes: [UInt8]) -> UnsafeRawPointer {
        let start = base + pages * pageSize - bytes.count
        bytes.withUnsafeBytes { if let s = $0.baseAddress { start.copyMemory(from: s, byteCount: bytes.count) } }
        return UnsafeRawPointer(start)
    }
    func place(_ bytes: ArraySlice<UInt8>) -> UnsafeRawPointer { place(Array(bytes)) }
}

/// A small pool for one test, released at the end of the scope.
func withPool<R>(count: Int = 64, bufferSize: Int = 2048, _ body: (PacketPool) throws -> R) rethrows -> R {
    let pool = PacketPool.allocate(count: count, bufferSize: bufferSize)
    defer { pool.deallocate() }
    return try body(pool)
}

extension PacketPool {
    /// Allocates a buffer and loads `bytes` at the standard headroom.
    func loaded(_ bytes: [UInt8]) -> UInt32 {
        let idx = alloc()!
        bytes.withUnsafeBytes { _ = load(idx, bytes: $0) }
        return idx
    }
    /// The frame bytes of `idx` as an array.
    func array(_ idx: UInt32) -> [UInt8] { Array(bytes(idx)) }
}

/// Runs `body` with a zeroed scratch buffer of `count` bytes and returns its contents.
func scratch(_ count: Int = 256, _ body: (UnsafeMutableRawPointer) -> Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    let n = out.withUnsafeMutableBytes { body($0.baseAddress!) }
    return Array(out[0..<n])
}
