import Foundation
import Glibc
import Testing
import VRouterCore
import VRouterTestSupport

@testable import VRouterIO

@Suite(.enabled(if: isRoot, "needs root for namespaces and AF_PACKET"), .serialized)
struct AFPacketPortTests {
    static let macA = MACAddress("02:00:5e:30:00:0a")!
    static let macB = MACAddress("02:00:5e:30:00:0b")!
    static let marker: [UInt8] = Array("VRTIO-AFP".utf8)

    /// Two namespaces joined by a veth pair (IPv6 off so that no ND/MLD chatter mixes in).
    static func makeFabric(_ s: Scratch) throws -> (a: NetworkNamespace, b: NetworkNamespace, ea: String, eb: String) {
        let a = try s.namespace("A")
        let b = try s.namespace("B")
        for ns in [a, b] {
            let r = try run(
                [ipTool]
                    + inNamespace(
                        ns,
                        [
                            "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                            "net.ipv6.conf.default.disable_ipv6=1",
                        ]
                    )
            )
            #expect(r.status == 0, "\(r.error)")
        }
        let ea = s.name("a")
        let eb = s.name("b")
        let nlA = try a.netlink()
        let nlB = try b.netlink()
        try nlA.createVeth(ea, peer: eb, peerNamespace: b)
        try nlA.setMAC(ea, macA)
        try nlB.setMAC(eb, macB)
        try nlA.setUp(ea)
        try nlB.setUp(eb)
        return (a, b, ea, eb)
    }

    static func bytes(_ mac: MACAddress) -> [UInt8] {
        (0..<6).map { UInt8(truncatingIfNeeded: mac.value >> UInt64(40 - 8 * $0)) }
    }

    /// Test frame `i`: to B's MAC (or broadcast every 7th), EtherType 0x88B5, marker, index,
    /// a pattern; 60...1514 bytes. Every 10th is 802.1Q-tagged (VLAN 100).
    static func frame(_ i: Int, from src: MACAddress, to dst: MACAddress, tags: Bool = true) -> [UInt8] {
        var f = i % 7 == 6 ? bytes(.broadcast) : bytes(dst)
        f += bytes(src)
        if tags && i % 10 == 9 { f += [0x81, 0x00, 0x20, 0x64] }  // PCP 1, VID 100
        f += [0x88, 0xB5]
        f += marker
        f += [UInt8(i >> 8), UInt8(i & 0xFF)]
        let size = 60 + (i * 37) % (1514 - 60 - 4)
        while f.count < size { f.append(UInt8(truncatingIfNeeded: f.count &* 7 &+ i)) }
        return f
    }

    static func hasMarker(_ p: UnsafeRawBufferPointer) -> Bool {
        guard p.count >= marker.count else { return false }
        for off in 0...(p.count - marker.count) where p[off] == marker[0] {
            if zip(marker, p[off..<(off + marker.count)]).allSatisfy({ $0 == $1 }) { return true }
        }
        return false
    }

    @Test func rxRingReceivesExactlyWhatThePeerSent() throws {
        let s = Scratch("r")
        let pool = PacketPool.allocate(count: 4096)
        defer { pool.deallocate() }
        var loop: IOLoop? = nil
        var port: AFPacketPort? = nil
        defer {
            loop?.close()
            port?.close()
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let f = try Self.makeFabric(s)
        var config = AFPacketPort.Configuration()
        config.rxBlockSize = 64 * 1024
        config.rxBlockCount = 64
        port = try AFPacketPort.open(interface: f.eb, in: f.b, configuration: config)
        loop = try IOLoop(pool: pool)
        try loop!.add(port!, as: 7)

        let n = 300
        let sent = (0..<n).map { Self.frame($0, from: Self.macA, to: Self.macB) }
        // A plain raw socket in A sends them (an outside sender, one send per frame).
        let sender = """
            import socket, sys
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            s.bind((sys.argv[1], 0))
            for line in sys.stdin:
                s.send(bytes.fromhex(line.strip()))
            """
        let r = try run(
            [ipTool] + inNamespace(f.a, [systemPython, "-c", sender, f.ea]),
            input: sent.map { $0.map { String(format: "%02x", $0) }.joined() }.joined(separator: "\n") + "\n"
        )
        #expect(r.status == 0, "\(r.error)")

        var received: [[UInt8]] = []
        var frame = Frame.allocate()
        defer { frame.deallocate() }
        let deadline = ContinuousClock.now + .seconds(10)
        while received.count < n && ContinuousClock.now < deadline {
            _ = loop!.rx(into: &frame, maxWait: .milliseconds(20))
            for i in 0..<frame.count {
                let idx = frame[i]
                #expect(pool.meta(idx).pointee.rxPort == 7)
                #expect(pool.meta(idx).pointee.timestamp > 0)
                let b = pool.bytes(idx)
                if Self.hasMarker(b) { received.append(Array(b)) }
            }
            pool.free(&frame)
            loop!.tx(&frame)
        }
        #expect(received.count == n)
        // Byte for byte and in order, VLAN tags put back where they were.
        for i in 0..<min(n, received.count) where received[i] != sent[i] {
            Issue.record("frame \(i): got \(received[i].count) bytes, sent \(sent[i].count)")
            break
        }
        let c = loop!.counters(port: 7)
        #expect(c.rxPackets >= UInt64(n))
        #expect(c.rxDrops == 0)
        let st = try port!.statistics()
        #expect(st.packets >= UInt64(n))
        #expect(st.drops == 0)
        loop!.remove(port: 7)
        #expect(pool.available == pool.count)
    }

    @Test func txRingFramesArriveAtThePeer() throws {
        let s = Scratch("x")
        let pool = PacketPool.allocate(count: 1024)
        defer { pool.deallocate() }
        var loop: IOLoop? = nil
        var port: AFPacketPort? = nil
        defer {
            loop?.close()
            port?.close()
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let f = try Self.makeFabric(s)
        var config = AFPacketPort.Configuration()
        config.txFrameCount = 64  // smaller than the batch below: the ring must be reused
        port = try AFPacketPort.open(interface: f.eb, in: f.b, configuration: config)
        loop = try IOLoop(pool: pool)
        try loop!.add(port!, as: 2)

        // The oracle: a raw socket in A that prints every marked frame it sees.
        let n = 200
        let ready = NSTemporaryDirectory() + "\(s.tag)-ready"
        defer { unlink(ready) }
        let receiver = """
            import socket, sys
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
            s.bind((sys.argv[1], 0))
            s.settimeout(5)
            open(sys.argv[2], "w").close()
            got = []
            while len(got) < int(sys.argv[3]):
                try:
                    d = s.recv(65535)
                except socket.timeout:
                    break
                if b"VRTIO-AFP" in d:
                    got.append(d.hex())
            print("\\n".join(got))
            """
        let rx = try Child.start(
            [ipTool] + inNamespace(f.a, [systemPython, "-c", receiver, f.ea, ready, String(n)])
        )
        defer { rx.end() }
        let waitUntil = ContinuousClock.now + .seconds(10)
        while access(ready, F_OK) != 0 && ContinuousClock.now < waitUntil { usleep(10_000) }

        // Untagged frames only: a raw socket without PACKET_AUXDATA cannot see stripped tags.
        let sent = (0..<n).map { Self.frame($0, from: Self.macB, to: Self.macA, tags: false) }
        var frame = Frame.allocate()
        defer { frame.deallocate() }
        var queued = 0
        // Batches of 50: the 64-frame ring wraps several times; a full ring drops (counted),
        // so wait for the kernel to hand frames back between batches.
        while queued < n {
            for i in queued..<min(n, queued + 50) {
                let idx = pool.alloc()!
                sent[i].withUnsafeBytes { _ = pool.load(idx, bytes: $0) }
                pool.meta(idx).pointee.txPort = 2
                frame.append(idx)
            }
            queued = min(n, queued + 50)
            loop!.tx(&frame)
            var scratch = Frame.allocate(capacity: 16)
            _ = loop!.rx(into: &scratch, maxWait: .milliseconds(20))
            pool.free(&scratch)
            scratch.deallocate()
        }
        let result = rx.finish()
        let got = result.output.split(separator: "\n").map { line in
            stride(from: 0, to: line.count, by: 2).map { UInt8(line.dropFirst($0).prefix(2), radix: 16)! }
        }
        #expect(got.count == n, "\(result.error)")
        for i in 0..<min(n, got.count) where got[i] != sent[i] {
            Issue.record("frame \(i) differs: \(got[i].count) bytes vs \(sent[i].count)")
            break
        }
        let c = loop!.counters(port: 2)
        #expect(c.txPackets == UInt64(n))
        #expect(c.txDrops == 0)
        #expect(c.txErrors == 0)
        #expect(pool.available == pool.count)
    }

    @Test func fanoutSpreadsOneDeviceOverSeveralSockets() throws {
        let s = Scratch("f")
        let pool = PacketPool.allocate(count: 4096)
        defer { pool.deallocate() }
        var loops: [IOLoop] = []
        var ports: [AFPacketPort] = []
        defer {
            for l in loops { l.close() }
            for p in ports { p.close() }
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let f = try Self.makeFabric(s)
        var config = AFPacketPort.Configuration()
        config.fanoutGroup = UInt16(getpid() & 0xFFFF)
        for i in 0..<2 {
            let p = try AFPacketPort.open(interface: f.eb, in: f.b, configuration: config)
            ports.append(p)
            let l = try IOLoop(pool: pool)
            try l.add(p, as: 1)
            loops.append(l)
            _ = i
        }
        // 64 flows (different UDP ports) so the hash has something to spread.
        let sender = """
            import socket, sys, struct
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            s.bind((sys.argv[1], 0))
            dst = bytes.fromhex(sys.argv[2]); src = bytes.fromhex(sys.argv[3])
            def csum(b):
                t = sum(struct.unpack("!%dH" % (len(b)//2), b)); t = (t & 0xffff) + (t >> 16); t = (t & 0xffff) + (t >> 16)
                return (~t) & 0xffff
            for i in range(512):
                payload = b"VRTIO-AFP" + bytes(19)
                udp = struct.pack("!HHHH", 40000 + i % 64, 9, 8 + len(payload), 0) + payload
                ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0, bytes([198,18,0,1]), bytes([198,18,0,2]))
                ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
                s.send(dst + src + b"\\x08\\x00" + ip + udp)
            """
        let hex = { (m: MACAddress) in Self.bytes(m).map { String(format: "%02x", $0) }.joined() }
        let r = try run(
            [ipTool] + inNamespace(f.a, [systemPython, "-c", sender, f.ea, hex(Self.macB), hex(Self.macA)])
        )
        #expect(r.status == 0, "\(r.error)")
        var counts = [0, 0]
        var frame = Frame.allocate()
        defer { frame.deallocate() }
        let deadline = ContinuousClock.now + .seconds(10)
        while counts[0] + counts[1] < 512 && ContinuousClock.now < deadline {
            for (i, l) in loops.enumerated() {
                _ = l.rx(into: &frame, maxWait: .milliseconds(5))
                for j in 0..<frame.count where Self.hasMarker(pool.bytes(frame[j])) { counts[i] += 1 }
                pool.free(&frame)
                l.tx(&frame)
            }
        }
        // Each frame reaches exactly one socket of the group, and both get some.
        #expect(counts[0] + counts[1] == 512)
        #expect(counts[0] > 0 && counts[1] > 0, "fanout split \(counts)")
    }

    @Test func promiscuousMembershipLastsAsLongAsTheSocket() throws {
        let s = Scratch("m")
        defer {
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let f = try Self.makeFabric(s)
        let nl = try f.b.netlink()
        #expect(try nl.link(f.eb).promiscuity == 0)
        var c = AFPacketPort.Configuration()
        c.promiscuous = true
        let port = try AFPacketPort.open(interface: f.eb, in: f.b, configuration: c)
        #expect(try nl.link(f.eb).promiscuity == 1)
        port.close()
        #expect(try nl.link(f.eb).promiscuity == 0)
    }

    @Test func openErrorsNameTheDeviceAndNamespace() throws {
        let s = Scratch("o")
        defer {
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let b = try s.namespace("B")
        do {
            _ = try AFPacketPort.open(interface: "nosuch0", in: b)
            Issue.record("opened a missing device")
        } catch {
            #expect(error.errno == ENODEV)
            #expect(error.description.contains("nosuch0"))
            #expect(error.description.contains("netns \(b.name!)"))
        }
        var bad = AFPacketPort.Configuration()
        bad.rxBlockSize = 1000
        #expect(throws: SystemError.self) { _ = try AFPacketPort.open(interface: "lo", in: b, configuration: bad) }
    }
}
