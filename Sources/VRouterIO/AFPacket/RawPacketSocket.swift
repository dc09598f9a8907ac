// A plain AF_PACKET socket for the control plane's own frames on the fabric (ARP for
// underlay neighbours): a handful of packets a second, so sendto/recv with poll, no
// rings. The worker's TPACKET rings carry the data traffic; the kernel delivers ARP to
// both, and the pipeline only answers ARP for our own address.

import CVRouterShims
import Glibc
import VRouterCore

public final class RawPacketSocket: @unchecked Sendable {  // Safe: fd use is serialised by its one owner.
    public let interface: String
    public let interfaceIndex: Int32
    public let fd: CInt
    private var closed = false

    /// Opens a socket on `interface` in `namespace` receiving frames of `etherType`.
    public static func open(
        interface: String,
        in namespace: NetworkNamespace = .current,
        etherType: UInt16
    ) throws(SystemError) -> RawPacketSocket {
        try Sys.checkInterfaceName(interface, call: "AF_PACKET")
        let object = "AF_PACKET raw \(interface) in \(namespace)"
        let (fd, index) = try namespace.runHere { () throws(SystemError) -> (CInt, Int32) in
            let index = try Netlink(namespace: namespace, onThisThread: true).linkIndex(interface)
            let fd = try Sys.socket(AF_PACKET, Int32(SOCK_RAW.rawValue), Int32(etherType.bigEndian), object: object)
            return (fd, index)
        }
        do throws(SystemError) {
            var sll = sockaddr_ll()
            sll.sll_family = UInt16(AF_PACKET)
            sll.sll_protocol = etherType.bigEndian
            sll.sll_ifindex = index
            try Sys.bind(fd, sll, object: object)
            try Sys.setNonBlocking(fd, object: object)
        } catch {
            Sys.close(fd)
            throw error
        }
        return RawPacketSocket(interface: interface, index: index, fd: fd)
    }

    private init(interface: String, index: Int32, fd: CInt) {
        self.interface = interface
        interfaceIndex = index
        self.fd = fd
    }

    deinit { close() }

    public func close() {
        guard !closed else { return }
        closed = true
        Sys.close(fd)
    }

    /// Sends one whole Ethernet frame.
    public func send(_ frame: [UInt8]) throws(SystemError) {
        var sll = sockaddr_ll()
        sll.sll_family = UInt16(AF_PACKET)
        sll.sll_ifindex = interfaceIndex
        sll.sll_halen = 6
        let object = "AF_PACKET raw \(interface)"
        let n = frame.withUnsafeBytes { buf in
            withUnsafePointer(to: &sll) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.sendto(fd, buf.baseAddress, buf.count, 0, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                }
            }
        }
        if n < 0 { throw SystemError(call: "sendto", object: object, errno: errno) }
    }

    /// The next frame, waiting at most `timeoutMilliseconds`; nil on timeout.
    public func receive(timeoutMilliseconds: Int32) -> [UInt8]? {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeoutMilliseconds) > 0 else { return nil }
        var buf = [UInt8](repeating: 0, count: 2048)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Array(buf[0..<n])
    }
}
