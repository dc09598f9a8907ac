// Which worker's fabric socket the kernel gives a received frame, when translated flows
// need it: a classic BPF program for PACKET_FANOUT_CBPF (the kernel takes its result
// modulo the group's sockets, which join in worker order). A reply of a translated flow
// must reach the worker that translated it, the one owning its destination port (worker
// w owns the ports whose offset from the range's first, modulo the worker count, is w:
// SNATPortRange), so for those the result is that offset: TCP and UDP steer on the
// destination port, ICMP echo replies on their identifier, ICMP errors on the source port
// (or identifier) of the packet they quote, which the node sent. Everything else spreads
// as PACKET_FANOUT_HASH spreads it: TCP and UDP on their source port (tunnel packets
// carry the inner flow's hash there), the rest on the kernel's flow hash.
//
// The kernel runs it with the packet's data at the IPv4 header (the Ethernet header is
// pulled before fanout demultiplexes); the EtherType comes from skb->protocol.

/// One classic BPF instruction, as struct sock_filter lays it out.
public struct BPFInstruction: Sendable, Hashable {
    public var code: UInt16
    public var jt: UInt8
    public var jf: UInt8
    public var k: UInt32
    public init(code: UInt16, jt: UInt8 = 0, jf: UInt8 = 0, k: UInt32 = 0) {
        self.code = code
        self.jt = jt
        self.jf = jf
        self.k = k
    }
}

public enum FanoutSteering {
    // Opcodes (linux/bpf_common.h, linux/filter.h).
    public static let ldAbsW: UInt16 = 0x20
    public static let ldAbsH: UInt16 = 0x28
    public static let ldAbsB: UInt16 = 0x30
    public static let ldIndH: UInt16 = 0x48
    public static let ldIndB: UInt16 = 0x50
    public static let ldMem: UInt16 = 0x60
    public static let ldxMSH: UInt16 = 0xB1
    public static let st: UInt16 = 0x02
    public static let aluAddK: UInt16 = 0x04
    public static let aluSubK: UInt16 = 0x14
    public static let aluAndK: UInt16 = 0x54
    public static let aluLshK: UInt16 = 0x64
    public static let aluAddX: UInt16 = 0x0C
    public static let ja: UInt16 = 0x05
    public static let jeqK: UInt16 = 0x15
    public static let jgtK: UInt16 = 0x25
    public static let jgeK: UInt16 = 0x35
    public static let jsetK: UInt16 = 0x45
    public static let tax: UInt16 = 0x07
    public static let retA: UInt16 = 0x16
    /// SKF_AD_OFF + SKF_AD_PROTOCOL and + SKF_AD_RXHASH (ancillary loads).
    public static let protocolField: UInt32 = 0xFFFF_F000
    public static let rxHashField: UInt32 = 0xFFFF_F000 &+ 32

    /// The program for the node's SNAT ports `first...last`.
    public static func program(first: UInt16, last: UInt16) -> [BPFInstruction] {
        var a = Assembler()
        a.emit(ldAbsW, k: protocolField)  // EtherType (host order)
        a.branch(jeqK, 0x0800, false: "hash")
        a.emit(ldAbsH, k: 6)  // flags and fragment offset
        a.branch(jsetK, 0x1FFF, true: "hash")  // a later fragment: no transport header
        a.emit(ldxMSH, k: 0)  // X = IPv4 header length
        a.emit(ldAbsB, k: 9)
        a.branch(jeqK, 17, true: "ports")
        a.branch(jeqK, 6, true: "ports")
        a.branch(jeqK, 1, true: "icmp", false: "hash")

        a.label("ports")
        a.emit(ldIndH, k: 2)  // destination port
        a.rangeCheck(first, last, outside: "source")
        a.label("source")
        a.emit(ldIndH, k: 0)
        a.emit(retA)

        a.label("icmp")
        a.emit(ldIndB, k: 0)  // type
        a.branch(jeqK, 0, true: "echo")
        a.branch(jeqK, 3, true: "error")
        a.branch(jeqK, 11, true: "error")
        a.branch(jeqK, 12, true: "error", false: "hash")
        a.label("echo")
        a.emit(ldIndH, k: 4)  // identifier
        a.rangeCheck(first, last, outside: "hash")

        a.label("error")  // the quote's IPv4 header is 8 bytes into the ICMP message
        a.emit(ldIndB, k: 8 + 9)  // its protocol, kept while X moves to its transport header
        a.emit(st, k: 0)
        a.emit(ldIndB, k: 8)
        a.emit(aluAndK, k: 0x0F)
        a.emit(aluLshK, k: 2)
        a.emit(aluAddX)
        a.emit(aluAddK, k: 8)
        a.emit(tax)  // X = the quote's transport header
        a.emit(ldMem, k: 0)
        a.branch(jeqK, 1, true: "quoted-echo")
        a.branch(jeqK, 17, true: "quoted-ports")
        a.branch(jeqK, 6, true: "quoted-ports", false: "hash")
        a.label("quoted-ports")
        a.emit(ldIndH, k: 0)  // the quoted source port: the node's
        a.rangeCheck(first, last, outside: "hash")
        a.label("quoted-echo")
        a.emit(ldIndH, k: 4)
        a.rangeCheck(first, last, outside: "hash")

        a.label("hash")
        a.emit(ldAbsW, k: rxHashField)
        a.emit(retA)
        return a.finish()
    }

    /// Labels resolved to the 8-bit forward offsets classic BPF jumps take.
    struct Assembler {
        var code: [BPFInstruction] = []
        var labels: [String: Int] = [:]
        /// (instruction, true target, false target); nil: the next instruction.
        var fixups: [(Int, String?, String?)] = []
        var rangeCount = 0

        mutating func emit(_ op: UInt16, k: UInt32 = 0) { code.append(BPFInstruction(code: op, k: k)) }

        mutating func branch(_ op: UInt16, _ k: UInt32, true t: String? = nil, false f: String? = nil) {
            fixups.append((code.count, t, f))
            code.append(BPFInstruction(code: op, k: k))
        }

        mutating func label(_ name: String) { labels[name] = code.count }

        /// A in first...last: return A - first; else go to `outside`.
        mutating func rangeCheck(_ first: UInt16, _ last: UInt16, outside: String) {
            rangeCount += 1
            let inside = "in-range-\(rangeCount)"
            branch(jgeK, UInt32(first), false: outside)
            branch(jgtK, UInt32(last), true: outside, false: inside)
            label(inside)
            emit(aluSubK, k: UInt32(first))
            emit(retA)
        }

        func finish() -> [BPFInstruction] {
            var out = code
            for (at, t, f) in fixups {
                func offset(_ l: String?) -> UInt8 {
                    guard let l else { return 0 }
                    let target = labels[l]!
                    precondition(target > at && target - at - 1 <= 255, "BPF jump out of range")
                    return UInt8(target - at - 1)
                }
                out[at].jt = offset(t)
                out[at].jf = offset(f)
            }
            return out
        }
    }
}
