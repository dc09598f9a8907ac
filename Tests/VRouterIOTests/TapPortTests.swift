import Foundation
import Glibc
import Testing
import VRouterCore
import VRouterTestSupport

@testable import VRouterIO

@Suite(.enabled(if: isRoot, "needs root for namespaces and taps"), .serialized)
struct TapPortTests {
    func waitUntilGone(_ name: String, _ nl: Netlink) -> Bool {
        for _ in 0..<100 {
            if (try? nl.link(name)) == nil { return true }
            usleep(20_000)
        }
        return false
    }

    static let podMAC = MACAddress("02:00:5e:20:00:02")!
    static let podAddress = InterfaceAddress("203.0.113.2/32")!
    static let gateway = IPAddress("192.0.2.1")!

    /// The pod's view: eth0 with a /32, a default route to a gateway only reachable onlink.
    static func podConfiguration(_ name: String = "eth0") -> TapPort.Configuration {
        TapPort.Configuration(
            name: name,
            mac: podMAC,
            mtu: 1400,
            addresses: [podAddress],
            routes: [Route(.defaultIPv4, via: gateway, onlink: true)]
        )
    }
    /// The pod sends one frame from its eth0 (an AF_PACKET socket in `ns`, with a zeroed
    /// virtio-net header when `vnetHeader`) whose payload starts with `marker`; the frames
    /// the loop receives with that payload within 5 s, counted once the first is seen.
    static func framesFromPod(
        marked marker: String,
        vnetHeader: Bool,
        _ ns: NetworkNamespace,
        _ loop: IOLoop,
        _ pool: PacketPool,
        _ frame: inout Frame
    ) throws -> Int {
        let sender = """
            import socket
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            \(vnetHeader ? "s.setsockopt(263, 15, 1)  # SOL_PACKET, PACKET_VNET_HDR" : "")
            s.bind(("eth0", 0))
            s.send(\(vnetHeader ? "bytes(10) + " : "")b"\\x02" * 12 + b"\\x88\\xb5" + b"\(marker)" + bytes(60))
            """
        let r = try run([ipTool] + inNamespace(ns, [systemPython, "-c", sender]))
        #expect(r.status == 0, "\(r.error)")
        let wanted = Array(marker.utf8)
        var seen = 0
        let deadline = ContinuousClock.now + .seconds(5)
        while seen == 0 && ContinuousClock.now < deadline {
            _ = loop.rx(into: &frame, maxWait: .milliseconds(20))
            for i in 0..<frame.count {
                let p = pool.bytes(frame[i])
                if p.count >= 14 + wanted.count && Array(p[14..<(14 + wanted.count)]) == wanted { seen += 1 }
            }
            pool.free(&frame)
            loop.tx(&frame)
        }
        return seen
    }

    /// With the pool registered (READ_FIXED/WRITE_FIXED) and without (plain READ/WRITE).
    @Test(arguments: [true, false])
    func pingThroughATapAnsweredByTheIOLoop(registered: Bool) throws {
        let s = Scratch("t")
        let pool = PacketPool.allocate(count: 1024)
        defer { pool.deallocate() }
        var loop: IOLoop? = nil
        var tap: TapPort? = nil
        defer {
            loop?.close()
            try? tap?.delete()
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let ns = try s.namespace("P")
        tap = try TapPort.create(name: s.name("t"))
        let t = tap!
        try t.move(to: ns, Self.podConfiguration())
        #expect(t.name == "eth0")
        #expect(t.namespace == ns)

        // The pod sees eth0 exactly as configured.
        let nl = try ns.netlink()
        let eth0 = try nl.link("eth0")
        #expect(eth0.kind == "tun")
        #expect(eth0.mac == Self.podMAC)
        #expect(eth0.mtu == 1400)
        #expect(eth0.isUp)
        #expect(eth0.txQueueLength == UInt32(TapPort.podTxQueueLength))
        #expect(try nl.addresses(of: "eth0").map(\.address).contains(Self.podAddress))
        #expect(try nl.routes().contains(Route(.defaultIPv4, via: Self.gateway, device: "eth0", onlink: true)))
        #expect(try !Netlink().links().contains { $0.name == s.name("t") })

        var lc = IOLoop.Configuration()
        lc.registerBuffers = registered
        loop = try IOLoop(pool: pool, configuration: lc)
        let l = loop!
        #expect(l.usesRegisteredBuffers == registered)
        try l.add(t, as: 1)
        var rxFrame = Frame.allocate()
        var txFrame = Frame.allocate()
        defer {
            pool.free(&rxFrame)
            rxFrame.deallocate()
            txFrame.deallocate()
        }

        let ping = try Child.start(
            [ipTool] + inNamespace(ns, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.7"])
        )
        defer { ping.end() }
        var firstIPv4OrARP: (etherType: UInt16, arpOp: UInt16, target: IPv4Address)? = nil
        var arpReplies = 0
        var echoReplies = 0
        let deadline = ContinuousClock.now + .seconds(15)
        while ping.isRunning && ContinuousClock.now < deadline {
            _ = l.rx(into: &rxFrame, maxWait: .milliseconds(50))
            for i in 0..<rxFrame.count {
                let idx = rxFrame[i]
                #expect(pool.meta(idx).pointee.rxPort == 1)
                let p = pool.packet(idx)
                let type = p.be16(12)
                if firstIPv4OrARP == nil && (type == 0x0806 || type == 0x0800) {
                    firstIPv4OrARP = (
                        type, type == 0x0806 ? p.be16(20) : 0, IPv4Address(type == 0x0806 ? p.be32(38) : 0)
                    )
                }
                if ARPResponder.reply(pool: pool, idx, mac: .vrouter) {
                    arpReplies += 1
                } else if EchoResponder.reply(pool: pool, idx) {
                    echoReplies += 1
                } else {
                    pool.free(idx)  // IPv6 router solicitations and the like
                    continue
                }
                pool.meta(idx).pointee.txPort = 1
                txFrame.append(idx)
            }
            rxFrame.removeAll()
            l.tx(&txFrame)
        }
        let result = ping.finish()
        #expect(result.status == 0, "ping: \(result.output) \(result.error)")
        #expect(result.output.contains("3 packets transmitted, 3 received"))
        #expect(firstIPv4OrARP?.etherType == 0x0806, "the pod's first IPv4 frame should be its ARP for the gateway")
        #expect(firstIPv4OrARP?.arpOp == ARPHeader.request)
        #expect(firstIPv4OrARP?.target == IPv4Address("192.0.2.1")!)
        #expect(arpReplies >= 1)
        #expect(echoReplies == 3)
        // A write is counted when its completion is reaped; the last reply's may still be in
        // flight when ping exits (seen in CI): reap until they are all in, or 2 s.
        let reapUntil = ContinuousClock.now + .seconds(2)
        while l.counters(port: 1).txPackets < UInt64(arpReplies + echoReplies) && ContinuousClock.now < reapUntil {
            _ = l.rx(into: &rxFrame, maxWait: .milliseconds(20))
            pool.free(&rxFrame)
        }
        let c = l.counters(port: 1)
        #expect(c.rxPackets >= 4)
        #expect(c.txPackets == UInt64(arpReplies + echoReplies))
        #expect(c.rxErrors == 0 && c.txErrors == 0)
        // Every buffer is back once the loop lets go of the tap.
        l.remove(port: 1)
        #expect(pool.available == pool.count)
    }

    @Test func persistentTapSurvivesItsFdAndReattachesInsideTheNamespace() throws {
        let s = Scratch("p")
        let pool = PacketPool.allocate(count: 256)
        defer { pool.deallocate() }
        var taps: [TapPort] = []
        defer {
            for t in taps { try? t.delete() }
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let ns = try s.namespace("P")
        let nl = try ns.netlink()

        // Made directly in the pod's namespace, persistent, configured, then the fd closed
        // (vrouterd exits): the device and its configuration stay.
        let first = try TapPort.create(name: "eth0", in: ns, persistent: true)
        taps.append(first)
        try first.configure(Self.podConfiguration())
        #expect(first.isPersistent)
        first.close()
        let kept = try nl.link("eth0")
        #expect(kept.kind == "tun")
        #expect(kept.mac == Self.podMAC)
        #expect(try nl.addresses(of: "eth0").map(\.address).contains(Self.podAddress))
        #expect(try nl.routes().contains(Route(.defaultIPv4, via: Self.gateway, device: "eth0", onlink: true)))

        // vrouterd restarts: re-attach by the name the pod sees, from a namespace thread.
        let again = try TapPort.attach(name: "eth0", in: ns)
        taps.append(again)
        #expect(again.isOpen)
        #expect(try nl.link("eth0").index == kept.index)
        // The re-attached fd carries the pod's traffic: its ARP for the gateway arrives.
        let loop = try IOLoop(pool: pool)
        defer { loop.close() }
        try loop.add(again, as: 3)
        let ping = try Child.start(
            [ipTool] + inNamespace(ns, ["ping", "-c", "2", "-i", "0.3", "-W", "1", "198.51.100.7"])
        )
        defer { ping.end() }
        var frame = Frame.allocate()
        defer { frame.deallocate() }
        var sawARP = false
        let deadline = ContinuousClock.now + .seconds(10)
        while !sawARP && ContinuousClock.now < deadline {
            _ = loop.rx(into: &frame, maxWait: .milliseconds(50))
            for i in 0..<frame.count where pool.packet(frame[i]).be16(12) == 0x0806 { sawARP = true }
            pool.free(&frame)
            loop.tx(&frame)
        }
        #expect(sawARP)
        _ = ping.finish()
        loop.remove(port: 3)

        // A second attach to a single-queue tap that is already attached is refused.
        #expect(throws: SystemError.self) { _ = try TapPort.attach(name: "eth0", in: ns) }

        // Nothing to attach to: a clear error, and no device made by accident.
        do {
            _ = try TapPort.attach(name: "net9", in: ns)
            Issue.record("attach to a missing tap succeeded")
        } catch {
            #expect(error.errno == ENODEV)
            #expect(error.description.contains("net9"))
            #expect(error.description.contains("netns \(ns.name!)"))
        }
        #expect(throws: SystemError.self) { try nl.link("net9") }
        // Not a tap.
        try nl.createVeth(s.name("v"), peer: s.name("w"))
        #expect(throws: SystemError.self) { _ = try TapPort.attach(name: s.name("v"), in: ns) }

        // CNI DEL: clear persistence and remove.
        try again.delete()
        #expect(waitUntilGone("eth0", nl))
        // Idempotent, also by name with no fd.
        try again.delete()
        try TapPort.delete(name: "eth0", in: ns)

        // Without TUNSETPERSIST the device goes with its fd.
        let transient = try TapPort.create(name: "net1", in: ns, persistent: false)
        taps.append(transient)
        #expect(try nl.link("net1").kind == "tun")
        transient.close()
        // Gone once the last reference to the fd is (a process forked meanwhile by another
        // test may hold a copy until its exec).
        #expect(waitUntilGone("net1", nl))
    }

    @Test func tapNamesAreCheckedAndClashesRefused() throws {
        let s = Scratch("c")
        defer {
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let ns = try s.namespace("P")
        #expect(throws: SystemError.self) { _ = try TapPort.create(name: "eth0/x", in: ns) }
        let t = try TapPort.create(name: "eth0", in: ns)
        defer { try? t.delete() }
        do {
            _ = try TapPort.create(name: "eth0", in: ns)
            Issue.record("a second eth0 was created")
        } catch {
            #expect(error.errno == EEXIST)
            #expect(error.description.contains("tap eth0 in netns \(ns.name!)"))
        }
        // Moving into a namespace that does not exist names it.
        do {
            try t.move(to: .named(s.name("gone")), Self.podConfiguration("eth1"))
            Issue.record("move to a missing namespace succeeded")
        } catch {
            #expect(error.errno == ENOENT)
            #expect(error.description.contains(s.name("gone")))
        }
    }

    @Test func podNamespaceDeletedUnderARunningLoop() throws {
        let s = Scratch("d")
        let pool = PacketPool.allocate(count: 256)
        defer { pool.deallocate() }
        defer {
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let ns = try s.namespace("P")
        // Made in the host and moved, as the CNI does: the fd's socket then holds the host's
        // namespace, not the pod's (an fd opened inside the pod's namespace would keep it
        // alive after its name is gone; see TapPort).
        let tap = try TapPort.create(name: s.name("t"), persistent: true)
        try tap.move(to: ns, Self.podConfiguration())
        let loop = try IOLoop(pool: pool)
        defer { loop.close() }
        try loop.add(tap, as: 5)
        var frame = Frame.allocate()
        defer { frame.deallocate() }
        _ = loop.rx(into: &frame, maxWait: .milliseconds(10))
        pool.free(&frame)
        #expect(!loop.isDead(port: 5))

        // The pod goes away with vrouterd still holding the tap: the device is destroyed
        // with its namespace, the outstanding reads fail, the port is marked dead.
        try ns.delete()
        let deadline = ContinuousClock.now + .seconds(10)
        while !loop.isDead(port: 5) && ContinuousClock.now < deadline {
            _ = loop.rx(into: &frame, maxWait: .milliseconds(20))
            pool.free(&frame)
        }
        #expect(loop.isDead(port: 5))
        #expect(loop.counters(port: 5).rxErrors > 0)
        // Writes to it are dropped and counted, not sent.
        let idx = pool.alloc()!
        pool.meta(idx).pointee.length = 60
        pool.meta(idx).pointee.txPort = 5
        frame.append(idx)
        loop.tx(&frame)
        #expect(loop.counters(port: 5).txDrops == 1)
        // A frame for a port the loop does not have is dropped and counted too.
        let other = pool.alloc()!
        pool.meta(other).pointee.length = 60
        pool.meta(other).pointee.txPort = 77
        frame.append(other)
        loop.tx(&frame)
        #expect(loop.counters.txNoPort == 1)
        loop.remove(port: 5)
        #expect(pool.available == pool.count)
        // Deleting what is already gone is not an error (CNI DEL after the pod's netns).
        try tap.delete()
    }

    @Test func multiQueueTapGivesOneFdPerQueue() throws {
        let s = Scratch("m")
        let pool = PacketPool.allocate(count: 512)
        defer { pool.deallocate() }
        var tap: TapPort? = nil
        defer {
            try? tap?.delete()
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let ns = try s.namespace("P")
        tap = try TapPort.create(name: "eth0", in: ns, persistent: true, queues: 2)
        let t = tap!
        #expect(t.fds.count == 2)
        #expect(Set(t.fds).count == 2)
        try t.configure(Self.podConfiguration())
        // Two loops (two workers), one queue each; the pod's ARP reaches one of them.
        let loops = [try IOLoop(pool: pool), try IOLoop(pool: pool)]
        defer { for l in loops { l.close() } }
        try loops[0].add(t, as: 1, queue: 0)
        try loops[1].add(t, as: 1, queue: 1)
        #expect(throws: SystemError.self) { try loops[1].add(t, as: 2, queue: 2) }
        let ping = try Child.start(
            [ipTool] + inNamespace(ns, ["ping", "-c", "2", "-i", "0.3", "-W", "1", "198.51.100.7"])
        )
        defer { ping.end() }
        var frame = Frame.allocate()
        defer { frame.deallocate() }
        var arps = 0
        let deadline = ContinuousClock.now + .seconds(10)
        while arps == 0 && ContinuousClock.now < deadline {
            for l in loops {
                _ = l.rx(into: &frame, maxWait: .milliseconds(20))
                for i in 0..<frame.count where pool.packet(frame[i]).be16(12) == 0x0806 { arps += 1 }
                pool.free(&frame)
                l.tx(&frame)
            }
        }
        #expect(arps > 0)
        _ = ping.finish()
        // A detached multi-queue tap re-attaches with all its queues.
        for l in loops { l.remove(port: 1) }
        t.close()
        let again = try TapPort.attach(name: "eth0", in: ns, queues: 2)
        #expect(again.fds.count == 2)
        tap = again
    }

    /// A tap with offloads: TUNSETOFFLOAD takes checksum and TSO at least, and a TCP
    /// superframe the pod's kernel hands over (written here by a packet socket in the pod
    /// with a virtio-net header, as TCP with TSO makes them) is read whole into a big buffer
    /// with its GSO state; an ordinary frame lands in a small buffer. With one multishot
    /// read (where the kernel has them) and with single reads.
    @Test(arguments: [true, false])
    func aTapWithOffloadsHandsOverSuperframesWhole(multishot: Bool) throws {
        let s = Scratch("o")
        let pool = PacketPool.allocate(count: 512, bufferSize: 2048, bigBuffers: 8)
        defer { pool.deallocate() }
        var tap: TapPort? = nil
        defer {
            try? tap?.delete()
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let ns = try s.namespace("P")
        tap = try TapPort.create(name: s.name("t"), offloads: true)
        let t = tap!
        #expect(t.offloads.isSuperset(of: [.checksum, .tso4, .tso6]), "\(t.offloads.names)")
        #expect(t.hasVirtioHeader)
        try t.move(to: ns, Self.podConfiguration())
        var lc = IOLoop.Configuration()
        lc.multishotReads = multishot
        let loop = try IOLoop(pool: pool, configuration: lc)
        defer { loop.close() }
        try loop.add(t, as: 1)
        #expect(loop.slots[1].multishot == loop.usesMultishotReads)
        #expect(loop.slots[1].readsOutstanding == (loop.usesMultishotReads ? 1 : Int32(lc.readsPerTap)))
        if !multishot { #expect(!loop.usesMultishotReads) }

        let sender = """
            import socket, struct
            def csum(b):
                s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
                while s >> 16: s = (s & 0xFFFF) + (s >> 16)
                return ~s & 0xFFFF
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            s.setsockopt(263, 15, 1)  # SOL_PACKET, PACKET_VNET_HDR
            s.bind(("eth0", 0))
            eth = bytes.fromhex("00005e000100" "02005e200002" "0800")
            src, dst = socket.inet_aton("203.0.113.2"), socket.inet_aton("198.51.100.7")
            def frame(payload, flags, port):
                ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 7, 0x4000, 64, 6, 0, src, dst)
                ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
                pseudo = (sum(struct.unpack("!4H", src + dst)) + 6 + 20 + len(payload)) % 0xFFFF
                tcp = struct.pack("!HHIIBBHHH", port, 80, 1000, 1, 5 << 4, flags, 65535, pseudo, 0)
                return eth + ip + tcp + payload
            # A superframe: 8 segments of 1300 bytes (the last 840), partial checksum.
            s.send(struct.pack("<BBHHHH", 1, 1, 54, 1300, 34, 16) + frame(bytes(range(256)) * 40, 0x18, 40000))
            # An ordinary frame: no offload.
            s.send(bytes(10) + frame(b"small", 0x18, 40001))
            """
        let r = try run([ipTool] + inNamespace(ns, [systemPython, "-c", sender]))
        #expect(r.status == 0, "\(r.error)")
        var frame = Frame.allocate()
        defer { frame.deallocate() }
        var superframe: (big: Bool, length: Int, offload: PacketOffload)? = nil
        var small: (big: Bool, length: Int, offload: PacketOffload)? = nil
        let deadline = ContinuousClock.now + .seconds(5)
        while (superframe == nil || small == nil) && ContinuousClock.now < deadline {
            _ = loop.rx(into: &frame, maxWait: .milliseconds(20))
            for i in 0..<frame.count {
                let idx = frame[i]
                let p = pool.packet(idx)
                let m = pool.meta(idx).pointee
                // IPv4 TCP from our ports only (the pod's kernel sends its own frames too).
                guard m.length > 54, p.be16(12) == 0x0800, p.u8(23) == 6 else { continue }
                let seen = (pool.isBig(idx), Int(m.length), m.offload)
                if p.be16(34) == 40000 { superframe = seen }
                if p.be16(34) == 40001 { small = seen }
            }
            pool.free(&frame)
            loop.tx(&frame)
        }
        #expect(superframe?.big == true)
        #expect(superframe?.length == 14 + 40 + 10240)
        #expect(superframe?.offload.gsoType == VirtioNet.gsoTCPv4)
        #expect(superframe?.offload.gsoSize == 1300)
        #expect(superframe?.offload.checksumStart == UInt16(PacketPool.headroom + 34))
        #expect(small?.big == false)
        #expect(small?.length == 14 + 40 + 5)
        #expect(small?.offload.isActive == false)
        #expect(!loop.isDead(port: 1))
    }

    /// A burst from the pod larger than the ring of big buffers lent to the kernel: the
    /// multishot read takes frames until the ring is empty, ends (ENOBUFS), and is armed
    /// again once the ring is refilled; every frame arrives, in order, and every buffer
    /// comes home when the port is removed.
    @Test func aBurstLargerThanTheReadRingArrivesWhole() throws {
        let s = Scratch("b")
        let pool = PacketPool.allocate(count: 512, bufferSize: 2048, bigBuffers: 8)
        defer { pool.deallocate() }
        var tap: TapPort? = nil
        defer {
            try? tap?.delete()
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let ns = try s.namespace("B")
        tap = try TapPort.create(name: s.name("t"), offloads: true)
        try tap!.move(to: ns, Self.podConfiguration())
        let loop = try IOLoop(pool: pool)
        defer { loop.close() }
        try loop.add(tap!, as: 2)
        // 200 frames, sequence-numbered, at once (the ring holds 4 buffers).
        let sender = """
            import socket, struct
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            s.setsockopt(263, 15, 1)  # SOL_PACKET, PACKET_VNET_HDR
            s.bind(("eth0", 0))
            for i in range(200):
                s.send(bytes(10) + b"\\x02" * 12 + b"\\x88\\xb5" + b"BURST" + struct.pack("!H", i) + bytes(50))
            """
        let r = try run([ipTool] + inNamespace(ns, [systemPython, "-c", sender]))
        #expect(r.status == 0, "\(r.error)")
        var frame = Frame.allocate()
        defer { frame.deallocate() }
        var seen: [Int] = []
        let deadline = ContinuousClock.now + .seconds(5)
        while seen.count < 200 && ContinuousClock.now < deadline {
            _ = loop.rx(into: &frame, maxWait: .milliseconds(20))
            for i in 0..<frame.count {
                let p = pool.bytes(frame[i])
                if p.count > 21 && p[12] == 0x88 && p[13] == 0xB5 && p[14] == UInt8(ascii: "B") {
                    seen.append(Int(p[19]) << 8 | Int(p[20]))
                }
            }
            pool.free(&frame)
            loop.tx(&frame)
        }
        #expect(seen == Array(0..<200))
        #expect(loop.counters(port: 2).rxDrops == 0)
        #expect(!loop.isDead(port: 2))
        loop.remove(port: 2)
        loop.close()
        #expect(pool.available == pool.count)
        #expect(pool.bigAvailable == pool.bigCount)
    }

    /// A kernel that has multishot reads but refuses one for a tap (EINVAL): the port goes
    /// over to single reads, counts no error, and still receives.
    @Test func aRefusedMultishotReadFallsBackToSingleReads() throws {
        let s = Scratch("m")
        let pool = PacketPool.allocate(count: 512, bufferSize: 2048, bigBuffers: 8)
        defer { pool.deallocate() }
        var tap: TapPort? = nil
        defer {
            try? tap?.delete()
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let ns = try s.namespace("M")
        tap = try TapPort.create(name: s.name("t"), offloads: true)
        try tap!.move(to: ns, Self.podConfiguration())
        // The loop's own reads are single ones, so that what receives below is what the
        // fallback leaves.
        var lc = IOLoop.Configuration()
        lc.readsPerTap = 4
        lc.multishotReads = false
        let loop = try IOLoop(pool: pool, configuration: lc)
        defer { loop.close() }
        try loop.add(tap!, as: 5)
        let slot = loop.slots + 5
        var frame = Frame.allocate()
        defer { frame.deallocate() }
        // The refusal as io_uring delivers it for a multishot read: it ends, no buffer taken.
        slot.pointee.multishot = true
        slot.pointee.readsTarget = 1
        slot.pointee.readsOutstanding &+= 1
        withUnsafeMutablePointer(to: &frame) { f in
            loop.complete(UserData.make(.tapRead, port: 5, buffer: 0), -EINVAL, 0, into: f)
        }
        loop.tx(&frame)
        #expect(!slot.pointee.multishot)
        #expect(slot.pointee.readsTarget == 4)
        #expect(loop.counters(port: 5).rxErrors == 0)
        #expect(!loop.isDead(port: 5))
        #expect(try Self.framesFromPod(marked: "SINGLE", vnetHeader: true, ns, loop, pool, &frame) == 1)
        loop.remove(port: 5)
        #expect(pool.available == pool.count)
    }

    @Test func framesLargerThanAPoolBufferAreDroppedNotTruncated() throws {
        let s = Scratch("j")
        let pool = PacketPool.allocate(count: 256)  // 2048-byte buffers: frames up to 1919 bytes
        defer { pool.deallocate() }
        var tap: TapPort? = nil
        defer {
            try? tap?.delete()
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let ns = try s.namespace("P")
        tap = try TapPort.create(name: s.name("t"))
        // A pod MTU the pool cannot hold.
        var config = Self.podConfiguration()
        config.mtu = 3000
        try tap!.move(to: ns, config)
        var lc = IOLoop.Configuration()
        lc.submissionEntries = 32
        lc.completionEntries = 64
        let loop = try IOLoop(pool: pool, configuration: lc)
        defer { loop.close() }
        try loop.add(tap!, as: 1)
        // The loop refuses more reads than its completion queue can take.
        let second = try TapPort.create(name: s.name("u"))
        defer { try? second.delete() }
        do {
            try loop.add(second, as: 2)
            Issue.record("a second tap fit into a 64-entry completion queue")
        } catch {
            #expect(error.errno == ENOSPC)
            #expect(error.description.contains("completionEntries"))
        }

        let sender = """
            import socket
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            s.bind(("eth0", 0))
            s.send(b"\\x02" * 12 + b"\\x88\\xb5" + b"BIG" + bytes(2500))
            s.send(b"\\x02" * 12 + b"\\x88\\xb5" + b"SMALL" + bytes(60))
            """
        let r = try run([ipTool] + inNamespace(ns, [systemPython, "-c", sender]))
        #expect(r.status == 0, "\(r.error)")
        var frame = Frame.allocate()
        defer { frame.deallocate() }
        var small = 0
        var big = 0
        let deadline = ContinuousClock.now + .seconds(5)
        while small == 0 && ContinuousClock.now < deadline {
            _ = loop.rx(into: &frame, maxWait: .milliseconds(20))
            for i in 0..<frame.count {
                let p = pool.bytes(frame[i])
                if p.count > 17 && p[14] == UInt8(ascii: "S") { small += 1 }
                if p.count > 17 && p[14] == UInt8(ascii: "B") { big += 1 }
            }
            pool.free(&frame)
            loop.tx(&frame)
        }
        #expect(small == 1)
        #expect(big == 0)
        #expect(loop.counters(port: 1).rxDrops == 1)
        #expect(!loop.isDead(port: 1))
    }

    /// io_uring completes a polled tap read with EAGAIN when it stops polling for it (under
    /// load, with many reads on one queue): the read is re-armed, the port stays alive, and
    /// nothing is counted as a read error. (16 such completions in a row used to mark a busy
    /// pod's port dead, and vrouterd stopped forwarding to it.)
    @Test func readsCompletingWithEAGAINAreRearmedNotFatal() throws {
        let s = Scratch("e")
        let pool = PacketPool.allocate(count: 256)
        defer { pool.deallocate() }
        var tap: TapPort? = nil
        defer {
            try? tap?.delete()
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let ns = try s.namespace("P")
        tap = try TapPort.create(name: s.name("t"))
        try tap!.move(to: ns, Self.podConfiguration())
        var lc = IOLoop.Configuration()
        lc.readsPerTap = 4
        let loop = try IOLoop(pool: pool, configuration: lc)
        defer { loop.close() }
        try loop.add(tap!, as: 3)
        let slot = loop.slots + 3
        #expect(slot.pointee.readsOutstanding == 4)
        var frame = Frame.allocate()
        defer { frame.deallocate() }
        // Far more EAGAIN completions than the dead threshold, as io_uring delivers them:
        // each for an outstanding read holding a buffer.
        for _ in 0..<(Int(IOLoop.deadAfterErrors) * 4) {
            let idx = pool.alloc()!
            slot.pointee.readsOutstanding &+= 1
            withUnsafeMutablePointer(to: &frame) { f in
                loop.complete(UserData.make(.tapRead, port: 3, buffer: idx), -EAGAIN, 0, into: f)
            }
        }
        loop.tx(&frame)  // submits the re-armed reads
        #expect(!loop.isDead(port: 3))
        #expect(loop.counters(port: 3).rxErrors == 0)
        #expect(loop.counters.readsRetried == UInt64(IOLoop.deadAfterErrors) * 4)
        // Each completion re-armed one read: the real four plus the simulated ones.
        #expect(slot.pointee.readsOutstanding == 4 + Int32(IOLoop.deadAfterErrors) * 4)
        // The port still receives: a frame sent by the pod arrives.
        #expect(try Self.framesFromPod(marked: "AGAIN", vnetHeader: false, ns, loop, pool, &frame) == 1)
        loop.remove(port: 3)
        #expect(pool.available == pool.count)
    }
}
