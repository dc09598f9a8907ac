// The fabric's receive steering program, run by a small classic-BPF interpreter written
// here from the instruction set's definition (linux/filter.h), over packets built by
// hand: each reply of a translated flow goes to the worker owning its port; the rest
// spreads on the source port or the flow hash.

import Testing
import VRouterCore

@testable import VRouterIO

/// Classic BPF as the kernel runs a fanout program: A, X, 16 scratch words; absolute and
/// indirect loads relative to the IPv4 header; ancillary loads for the EtherType and the
/// flow hash. Returns nil where the kernel would abort the program (a load out of bounds
/// returns 0 in the kernel: the same here).
func runBPF(_ prog: [BPFInstruction], packet: [UInt8], etherType: UInt32 = 0x0800, rxHash: UInt32 = 0xABCD) -> UInt32 {
    var a: UInt32 = 0
    var x: UInt32 = 0
    var mem = [UInt32](repeating: 0, count: 16)
    var pc = 0
    func load(_ off: Int, _ size: Int) -> UInt32? {
        guard off >= 0, off + size <= packet.count else { return nil }
        return (0..<size).reduce(UInt32(0)) { $0 << 8 | UInt32(packet[off + $1]) }
    }
    while pc < prog.count {
        let i = prog[pc]
        pc += 1
        switch i.code {
        case 0x20, 0x28, 0x30:  // ld abs
            if i.k == 0xFFFF_F000 {
                a = etherType
                continue
            }
            if i.k == 0xFFFF_F020 {
                a = rxHash
                continue
            }
            guard let v = load(Int(i.k), i.code == 0x20 ? 4 : i.code == 0x28 ? 2 : 1) else { return 0 }
            a = v
        case 0x48, 0x50:  // ld ind
            guard let v = load(Int(x) + Int(i.k), i.code == 0x48 ? 2 : 1) else { return 0 }
            a = v
        case 0x60: a = mem[Int(i.k)]
        case 0x02: mem[Int(i.k)] = a
        case 0xB1:
            guard let v = load(Int(i.k), 1) else { return 0 }
            x = (v & 0xF) * 4
        case 0x04: a &+= i.k
        case 0x14: a &-= i.k
        case 0x54: a &= i.k
        case 0x64: a <<= i.k
        case 0x0C: a &+= x
        case 0x07: x = a
        case 0x05: pc += Int(i.k)
        case 0x15: pc += Int(a == i.k ? i.jt : i.jf)
        case 0x25: pc += Int(a > i.k ? i.jt : i.jf)
        case 0x35: pc += Int(a >= i.k ? i.jt : i.jf)
        case 0x45: pc += Int(a & i.k != 0 ? i.jt : i.jf)
        case 0x16: return a
        default:
            Issue.record("unknown BPF opcode \(i.code)")
            return 0
        }
    }
    Issue.record("the program ran off its end")
    return 0
}

/// IPv4 packets (no Ethernet: the program sees the IP header first).
private func ip(_ proto: UInt8, src: IPv4Address, dst: IPv4Address, fragment: UInt16 = 0, _ l4: [UInt8]) -> [UInt8] {
    var b = [UInt8](repeating: 0, count: 20 + l4.count)
    b.withUnsafeMutableBytes { raw in
        _ = PacketBuilder.ipv4(raw.baseAddress!, source: src, destination: dst, proto: proto, payloadLength: l4.count)
        raw.baseAddress!.setBE16(6, fragment)
    }
    b.replaceSubrange(20..., with: l4)
    return b
}

/// The same packet with 4 bytes of IPv4 options (IHL 6).
private func withOptions(_ p: [UInt8]) -> [UInt8] {
    var b = p
    b[0] = 0x46
    b.insert(contentsOf: [1, 1, 1, 0], at: 20)
    b[2] = UInt8(b.count >> 8)
    b[3] = UInt8(b.count & 0xFF)
    return b
}

private func ports(_ sport: UInt16, _ dport: UInt16, _ length: Int = 8) -> [UInt8] {
    var b = [UInt8](repeating: 0, count: length)
    b[0] = UInt8(sport >> 8)
    b[1] = UInt8(sport & 0xFF)
    b[2] = UInt8(dport >> 8)
    b[3] = UInt8(dport & 0xFF)
    return b
}

private func icmp(_ type: UInt8, id: UInt16 = 0, _ rest: [UInt8] = []) -> [UInt8] {
    [type, 0, 0, 0, UInt8(id >> 8), UInt8(id & 0xFF), 0, 1] + rest
}

@Suite struct FanoutSteeringTests {
    static let node = IPv4Address(198, 18, 0, 1)
    static let world = IPv4Address(203, 0, 113, 200)
    static let prog = FanoutSteering.program(first: 20000, last: 29999)

    /// The worker (of `workers`) the kernel would pick: the program's result modulo them.
    func worker(_ packet: [UInt8], workers: UInt32 = 3, etherType: UInt32 = 0x0800) -> UInt32 {
        runBPF(Self.prog, packet: packet, etherType: etherType) % workers
    }

    @Test func repliesGoToTheWorkerOwningTheirPort() {
        for (port, owner) in [(UInt16(20000), 0), (20001, 1), (20002, 2), (20003, 0), (29999, 9999 % 3)] {
            let range = SNATPortRange(first: 20000, last: 29999, slice: owner, slices: 3)
            #expect(range.owner(of: port) == owner)
            #expect(worker(ip(17, src: Self.world, dst: Self.node, ports(53, port))) == UInt32(owner))
            #expect(worker(ip(6, src: Self.world, dst: Self.node, ports(80, port, 20))) == UInt32(owner))
            #expect(worker(withOptions(ip(6, src: Self.world, dst: Self.node, ports(80, port, 20)))) == UInt32(owner))
            #expect(worker(ip(1, src: Self.world, dst: Self.node, icmp(0, id: port))) == UInt32(owner))
            // An error quoting what the node sent from that port (IP header with options:
            // the quote's header length is read, not assumed).
            let sent = withOptions(ip(17, src: Self.node, dst: Self.world, ports(port, 33434)))
            #expect(worker(ip(1, src: Self.world, dst: Self.node, icmp(11, sent))) == UInt32(owner))
            let ping = ip(1, src: Self.node, dst: Self.world, icmp(8, id: port))
            #expect(worker(ip(1, src: Self.world, dst: Self.node, icmp(3, ping))) == UInt32(owner))
        }
    }

    @Test func everythingElseSpreadsAsBefore() {
        // Tunnel packets on their outer source port (the inner flow's hash).
        #expect(runBPF(Self.prog, packet: ip(17, src: Self.world, dst: Self.node, ports(50001, 4789))) == 50001)
        #expect(runBPF(Self.prog, packet: ip(17, src: Self.world, dst: Self.node, ports(50002, 19999))) == 50002)
        #expect(runBPF(Self.prog, packet: ip(17, src: Self.world, dst: Self.node, ports(50003, 30000))) == 50003)
        // No ports to read: the kernel's flow hash.
        #expect(runBPF(Self.prog, packet: ip(47, src: Self.world, dst: Self.node, [0, 0, 8, 0])) == 0xABCD)
        #expect(
            runBPF(Self.prog, packet: ip(17, src: Self.world, dst: Self.node, fragment: 0x0010, ports(1, 20000)))
                == 0xABCD
        )
        #expect(runBPF(Self.prog, packet: [0, 1, 8, 0], etherType: 0x0806) == 0xABCD)
        #expect(runBPF(Self.prog, packet: ip(1, src: Self.world, dst: Self.node, icmp(8, id: 20001))) == 0xABCD)
        #expect(runBPF(Self.prog, packet: ip(1, src: Self.world, dst: Self.node, icmp(0, id: 30000))) == 0xABCD)
    }

    @Test func everyJumpLandsInsideTheProgram() {
        for (i, ins) in Self.prog.enumerated() where ins.code & 0x07 == 0x05 && ins.code != 0x05 {
            #expect(i + 1 + Int(ins.jt) < Self.prog.count && i + 1 + Int(ins.jf) < Self.prog.count)
        }
        #expect(Self.prog.last?.code == 0x16)
    }
}
