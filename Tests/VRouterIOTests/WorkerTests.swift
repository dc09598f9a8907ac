import Foundation
import Glibc
import Synchronization
import Testing
import VRouterCore
import VRouterTestSupport

@testable import VRouterIO

@Suite struct WorkerTests {
    @Test func workerIsPinnedAndNamed() throws {
        let cpu = CPU.allowed.last!
        let seen = Mutex<(cpu: Int, name: String)?>(nil)
        let w = try WorkerThread.start(name: "vrt-wtest", cpu: cpu) {
            let name = ((try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            // Spin a little so a migration would show.
            var x = 0
            for i in 0..<1_000_000 { x &+= i }
            let here = CPU.current
            seen.withLock { $0 = (here, name + (x == 0 ? "!" : "")) }
        }
        w.join()
        let s = seen.withLock { $0 }
        #expect(s?.cpu == cpu)
        #expect(s?.name == "vrt-wtest")
    }

    @Test func pinningToACPUOutsideTheMaskFails() {
        do {
            _ = try WorkerThread.start(name: "vrt-wbad", cpu: 4000) {}
            Issue.record("pinned to CPU 4000")
        } catch {
            #expect(error.errno == EINVAL)
            #expect(error.description.contains("cpu 4000"))
            #expect(error.description.contains("vrt-wbad"))
        }
    }

    @Test func localPoolIsUsableAndRegistersWithIOUring() throws {
        let local = try LocalPacketPool(count: 512, bufferSize: 2048, nearCPU: 0)
        if CPU.numaAvailable { #expect(local.node == CPU.node(of: 0)) } else { #expect(local.node == nil) }
        let pool = local.pool
        #expect(pool.available == 512)
        let idx = pool.alloc()!
        let data: [UInt8] = Array(0..<200)
        data.withUnsafeBytes { _ = pool.load(idx, bytes: $0) }
        #expect(Array(pool.bytes(idx)) == data)
        pool.free(idx)
        let loop = try IOLoop(pool: pool)
        #expect(loop.usesRegisteredBuffers)
        loop.close()
    }

    /// The shape vrouterd uses: a pinned worker owns its IOLoop and alternates rx → process
    /// → tx; the control thread stops it through the waker.
    @Test(.enabled(if: isRoot, "needs root for namespaces and taps"))
    func workerThreadServesATapUntilWoken() throws {
        let s = Scratch("w")
        let local = try LocalPacketPool(count: 1024, nearCPU: CPU.allowed.first)
        let tap = try TapPort.create(name: s.name("t"))
        defer {
            try? tap.delete()
            s.cleanup()
            #expect(s.leftovers().isEmpty)
        }
        let ns = try s.namespace("P")
        try tap.move(
            to: ns,
            .init(
                name: "eth0",
                mac: MACAddress("02:00:5e:40:00:02")!,
                addresses: [InterfaceAddress("203.0.113.9/32")!],
                routes: [Route(.defaultIPv4, via: IPAddress("192.0.2.1")!, onlink: true)]
            )
        )

        let waker = try IOLoopWaker()
        let stop = Atomic<Bool>(false)
        let answered = Atomic<Int>(0)
        let failure = Mutex<String?>(nil)
        let pool = local.pool
        let worker = try WorkerThread.start(name: "vrt-w0", cpu: CPU.allowed.last) {
            do {
                let loop = try IOLoop(pool: pool, waker: waker)
                defer { loop.close() }
                try loop.add(tap, as: 1)
                var rx = Frame.allocate()
                var tx = Frame.allocate()
                defer {
                    rx.deallocate()
                    tx.deallocate()
                }
                while !stop.load(ordering: .acquiring) {
                    _ = loop.rx(into: &rx, maxWait: .seconds(5))
                    _ = loop.takeWakeup()
                    for i in 0..<rx.count {
                        let idx = rx[i]
                        if ARPResponder.reply(pool: pool, idx, mac: .vrouter) || EchoResponder.reply(pool: pool, idx) {
                            pool.meta(idx).pointee.txPort = 1
                            tx.append(idx)
                            answered.add(1, ordering: .relaxed)
                        } else {
                            pool.free(idx)
                        }
                    }
                    rx.removeAll()
                    loop.tx(&tx)
                }
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
        }
        let ping = try run([ipTool] + inNamespace(ns, ["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.51.100.9"]))
        stop.store(true, ordering: .releasing)
        waker.wake()  // the worker is waiting up to 5 s in rx; this returns it at once
        worker.join()
        #expect(failure.withLock { $0 } == nil)
        #expect(ping.status == 0, "\(ping.output)")
        #expect(answered.load(ordering: .relaxed) >= 3)
        #expect(pool.available == pool.count)
    }
}
