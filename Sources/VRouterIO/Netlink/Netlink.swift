// An rtnetlink socket (libmnl) bound to one network namespace. The socket is opened on
// a short-lived thread inside the namespace (see NamespaceThread); from then on every
// request made through it acts in that namespace, from whatever thread calls it.
// Requests are synchronous: send, then read until the kernel's ack or the dump's end.
// Errors carry the kernel's extended-ack text when it gives one.

import CMnl
import Glibc

public final class Netlink {
    public let namespace: NetworkNamespace
    private let socket: OpaquePointer
    private let portID: UInt32
    private var sequence: UInt32
    private let sendBuffer: UnsafeMutableRawPointer
    private let receiveBuffer: UnsafeMutableRawPointer
    static let sendBufferSize = 16 * 1024
    // Dumps arrive in datagrams of up to ~32 KiB; a larger buffer never truncates them.
    static let receiveBufferSize = 64 * 1024

    /// Opens a NETLINK_ROUTE socket in `namespace` (the process's own by default).
    public convenience init(namespace: NetworkNamespace = .current) throws(SystemError) {
        try self.init(namespace: namespace, onThisThread: namespace == .current)
    }

    /// With `onThisThread`, the socket is opened in the calling thread's namespace, which
    /// the caller (a namespace thread) says is `namespace`.
    init(namespace: NetworkNamespace, onThisThread: Bool) throws(SystemError) {
        self.namespace = namespace
        let object = namespace.description
        let open = { () throws(SystemError) -> OpaquePointer in
            guard let s = mnl_socket_open2(NETLINK_ROUTE, Int32(SOCK_CLOEXEC.rawValue)) else {
                throw SystemError(call: "socket(NETLINK_ROUTE)", object: object, errno: errno)
            }
            return s
        }
        let s = onThisThread ? try open() : try namespace.run(open)
        guard mnl_socket_bind(s, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let e = errno
            mnl_socket_close(s)
            throw SystemError(call: "bind(NETLINK_ROUTE)", object: object, errno: e)
        }
        var one: Int32 = 1
        // Best effort: without them errors are still reported, just without the text.
        _ = mnl_socket_setsockopt(s, NETLINK_EXT_ACK, &one, socklen_t(4))
        _ = mnl_socket_setsockopt(s, NETLINK_CAP_ACK, &one, socklen_t(4))
        socket = s
        portID = mnl_socket_get_portid(s)
        sequence = UInt32(truncatingIfNeeded: time(nil))
        sendBuffer = .allocate(byteCount: Self.sendBufferSize, alignment: 16)
        receiveBuffer = .allocate(byteCount: Self.receiveBufferSize, alignment: 16)
    }

    deinit {
        mnl_socket_close(socket)
        sendBuffer.deallocate()
        receiveBuffer.deallocate()
    }

    // MARK: messages

    /// Starts a request in the send buffer: header, then `Header` zeroed as the family
    /// header (ifinfomsg, ifaddrmsg, rtmsg), which `fill` sets along with attributes.
    func message<Header>(
        _ type: Int,
        flags: Int32,
        header: Header.Type,
        _ fill: (UnsafeMutablePointer<nlmsghdr>, UnsafeMutablePointer<Header>) -> Void
    ) -> UnsafeMutablePointer<nlmsghdr> {
        sendBuffer.initializeMemory(as: UInt8.self, repeating: 0, count: Self.sendBufferSize)
        let nlh = mnl_nlmsg_put_header(sendBuffer)!
        nlh.pointee.nlmsg_type = UInt16(type)
        nlh.pointee.nlmsg_flags = UInt16(Int32(NLM_F_REQUEST) | flags)
        sequence &+= 1
        nlh.pointee.nlmsg_seq = sequence
        let h = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<Header>.size)!.bindMemory(to: Header.self, capacity: 1)
        fill(nlh, h)
        precondition(Int(nlh.pointee.nlmsg_len) <= Self.sendBufferSize, "netlink request overflowed its buffer")
        return nlh
    }

    /// Sends a request built by `message` with NLM_F_ACK and waits for its ack.
    func perform(
        _ nlh: UnsafeMutablePointer<nlmsghdr>,
        call: String,
        object: @autoclosure () -> String
    ) throws(SystemError) {
        try request(nlh, call: call, object: object(), each: { _ in })
    }

    /// Sends with NLM_F_ACK and hands each reply before the ack (a GET's answer) to `each`.
    func request(
        _ nlh: UnsafeMutablePointer<nlmsghdr>,
        call: String,
        object: @autoclosure () -> String,
        each: (UnsafeMutablePointer<nlmsghdr>) -> Void
    ) throws(SystemError) {
        nlh.pointee.nlmsg_flags |= UInt16(NLM_F_ACK)
        try send(nlh, call: call, object: object())
        try receive(
            sequence: nlh.pointee.nlmsg_seq,
            call: call,
            object: object(),
            each: { m throws(SystemError) in each(m) }
        )
    }

    /// Sends a dump request and calls `each` for every message of the answer. Restarts the
    /// dump (up to 3 times) when the kernel says it was interrupted by a change.
    func dump(
        _ build: () -> UnsafeMutablePointer<nlmsghdr>,
        call: String,
        object: @autoclosure () -> String,
        each: (UnsafeMutablePointer<nlmsghdr>) throws(SystemError) -> Void
    ) throws(SystemError) {
        var attempts = 0
        while true {
            attempts += 1
            let nlh = build()
            nlh.pointee.nlmsg_flags |= UInt16(NLM_F_DUMP)
            try send(nlh, call: call, object: object())
            let interrupted = try receive(sequence: nlh.pointee.nlmsg_seq, call: call, object: object(), each: each)
            if !interrupted || attempts == 3 { return }
        }
    }

    private func send(_ nlh: UnsafeMutablePointer<nlmsghdr>, call: String, object: String) throws(SystemError) {
        _ = try Sys.retrying("sendto(\(call))", object) { mnl_socket_sendto(socket, nlh, Int(nlh.pointee.nlmsg_len)) }
    }

    /// Reads until the ack (error == 0), an error, or NLMSG_DONE for `sequence`.
    /// Returns whether a dump was flagged NLM_F_DUMP_INTR.
    @discardableResult
    private func receive(
        sequence: UInt32,
        call: String,
        object: String,
        each: (UnsafeMutablePointer<nlmsghdr>) throws(SystemError) -> Void
    ) throws(SystemError) -> Bool {
        var interrupted = false
        while true {
            let n = try Sys.retrying("recvfrom(\(call))", object) {
                mnl_socket_recvfrom(socket, receiveBuffer, Self.receiveBufferSize)
            }
            let finished = try Self.walkReplies(
                receiveBuffer,
                length: n,
                sequence: sequence,
                portID: portID,
                call: call,
                object: object,
                interrupted: &interrupted,
                each: each
            )
            if finished { return interrupted }
        }
    }

    /// Walks the messages of one datagram the kernel sent in answer to request `sequence`
    /// from `portID`: hands each answer to `each`, skips stale answers to earlier requests,
    /// notes NLM_F_DUMP_INTR in `interrupted`, and returns true at the ack or the end of a
    /// dump (false: more datagrams follow). A netlink error becomes the thrown SystemError.
    /// Pure (no socket): what the kernel sends is parsed here and in the parse* functions,
    /// which the netlink fuzzer drives directly.
    public static func walkReplies(
        _ datagram: UnsafeMutableRawPointer,
        length: Int,
        sequence: UInt32,
        portID: UInt32,
        call: String = "netlink",
        object: String = "reply",
        interrupted: inout Bool,
        each: (UnsafeMutablePointer<nlmsghdr>) throws(SystemError) -> Void
    ) throws(SystemError) -> Bool {
        var nlh = datagram.assumingMemoryBound(to: nlmsghdr.self)
        var left = Int32(clamping: length)
        while messageFits(nlh, left) {
            defer { nlh = mnl_nlmsg_next(nlh, &left) }
            // Stale answers to an earlier request (after an error we stopped reading).
            guard nlh.pointee.nlmsg_seq == sequence, nlh.pointee.nlmsg_pid == portID || nlh.pointee.nlmsg_pid == 0
            else { continue }
            if Int32(nlh.pointee.nlmsg_flags) & NLM_F_DUMP_INTR != 0 { interrupted = true }
            switch Int32(nlh.pointee.nlmsg_type) {
            case NLMSG_DONE:
                return true
            case NLMSG_ERROR:
                // nlmsgerr: 0 (an ack) or -errno, then the request's header.
                guard Int(nlh.pointee.nlmsg_len) >= MemoryLayout<nlmsghdr>.size + 4 else {
                    throw SystemError(call: call, object: object, errno: EPROTO, detail: "a truncated netlink error")
                }
                let code = mnl_nlmsg_get_payload(nlh)!.loadUnaligned(as: Int32.self)
                if code == 0 { return true }
                // Anything but a negated errno is a damaged message, not an error number.
                let errno = code < 0 && code != .min ? -code : EPROTO
                throw SystemError(call: call, object: object, errno: errno, detail: Self.extendedAck(nlh))
            case NLMSG_NOOP, NLMSG_OVERRUN:
                continue
            default:
                try each(nlh)
            }
        }
        return false
    }

    /// Whether a whole message starts at `nlh` in the `left` bytes that remain. Not libmnl's
    /// mnl_nlmsg_ok: it compares the length as a signed int, so a message claiming 2 GiB or
    /// more passed it and was read far past the datagram.
    static func messageFits(_ nlh: UnsafeMutablePointer<nlmsghdr>, _ left: Int32) -> Bool {
        let size = MemoryLayout<nlmsghdr>.size
        return Int(left) >= size && Int(nlh.pointee.nlmsg_len) >= size && Int(nlh.pointee.nlmsg_len) <= Int(left)
    }

    /// NLMSGERR_ATTR_MSG from an error message, if the kernel attached one.
    static func extendedAck(_ nlh: UnsafeMutablePointer<nlmsghdr>) -> String? {
        let flags = Int32(nlh.pointee.nlmsg_flags)
        guard flags & NLM_F_ACK_TLVS != 0 else { return nil }
        let payload = mnl_nlmsg_get_payload(nlh)!
        // nlmsgerr = error code + the request's header (capped) or the whole request.
        let end = Int(nlh.pointee.nlmsg_len) - MemoryLayout<nlmsghdr>.size
        var offset = 4 + MemoryLayout<nlmsghdr>.size
        guard offset <= end else { return nil }
        if flags & NLM_F_CAPPED == 0 { offset = 4 + Int((payload + 4).loadUnaligned(as: nlmsghdr.self).nlmsg_len) }
        offset = (offset + 3) & ~3
        guard offset < end else { return nil }
        var result: String? = nil
        forEachAttribute(payload + offset, length: end - offset) { type, data, len in
            if type == UInt16(NLMSGERR_ATTR_MSG.rawValue), len > 0 {
                let bytes = UnsafeRawBufferPointer(start: data, count: len)
                let text = bytes.prefix { $0 != 0 }
                result = String(decoding: text, as: UTF8.self)
            }
        }
        return result
    }

    /// Walks the attributes in [start, start+length): (type without nest flags, payload, payload length).
    static func forEachAttribute(
        _ start: UnsafeMutableRawPointer,
        length: Int,
        _ body: (UInt16, UnsafeMutableRawPointer, Int) -> Void
    ) {
        var attr = start.assumingMemoryBound(to: nlattr.self)
        var left = Int32(length)
        while mnl_attr_ok(attr, left) {
            let type = mnl_attr_get_type(attr)
            let len = Int(mnl_attr_get_payload_len(attr))
            body(type, mnl_attr_get_payload(attr)!, len)
            let next = mnl_attr_next(attr)!
            left -= Int32(UnsafeRawPointer(next) - UnsafeRawPointer(attr))
            attr = next
        }
    }

    /// The family header (ifinfomsg, ifaddrmsg, rtmsg) of a message; nil when the message is
    /// too short to hold one.
    static func familyHeader<Header>(_ nlh: UnsafeMutablePointer<nlmsghdr>, _: Header.Type) -> Header? {
        guard Int(nlh.pointee.nlmsg_len) >= MemoryLayout<nlmsghdr>.size + MemoryLayout<Header>.size else { return nil }
        return mnl_nlmsg_get_payload(nlh)!.loadUnaligned(as: Header.self)
    }

    /// Attributes of a message after its family header of `headerSize` bytes, up to the
    /// message's own length (libmnl's payload tail rounds it up, past the datagram's end
    /// when the last message's length is not a multiple of 4).
    static func forEachAttribute(
        _ nlh: UnsafeMutablePointer<nlmsghdr>,
        headerSize: Int,
        _ body: (UInt16, UnsafeMutableRawPointer, Int) -> Void
    ) {
        let start = mnl_nlmsg_get_payload_offset(nlh, headerSize)!
        let length = Int(nlh.pointee.nlmsg_len) - (UnsafeRawPointer(start) - UnsafeRawPointer(nlh))
        guard length > 0 else { return }
        forEachAttribute(start, length: length, body)
    }

    static func string(_ data: UnsafeMutableRawPointer, _ len: Int) -> String {
        String(decoding: UnsafeRawBufferPointer(start: data, count: len).prefix { $0 != 0 }, as: UTF8.self)
    }

    /// "link eth0 in netns vrtb" — how errors name what they were about.
    func object(_ what: String) -> String { "\(what) in \(namespace)" }
}

extension NetworkNamespace {
    /// An rtnetlink socket acting in this namespace.
    public func netlink() throws(SystemError) -> Netlink { try Netlink(namespace: self) }
}
