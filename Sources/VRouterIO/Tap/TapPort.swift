// A pod's tap: the fd(s) stay in vrouterd, the device lives in the pod's namespace under
// the name the pod sees (eth0, net1…). Made persistent (TUNSETPERSIST), the device and its
// configuration outlive vrouterd; on restart `attach` finds it again by entering the pod's
// namespace on a short-lived thread and opening it by name.
//
// Offloads (`offloads: true`): IFF_VNET_HDR with a 12-byte virtio-net header on every
// read and write, and TUNSETOFFLOAD with checksum, TSO4/6 (+ECN) and, where the kernel
// has them (6.2+), USO4/6. The flags say what we can *receive*: they turn on the tap
// device's TSO/USO features, so the pod's TCP hands us 64 KB superframes with partial
// checksums (one read instead of 45), and UDP GSO sockets their trains. Writes may
// carry superframes whatever the flags (the kernel takes GSO from user space always),
// which is how coalesced segments reach the pod in one write. Without offloads the
// kernel hands us only complete, checksummed frames of at most the device MTU (+14),
// and expects the same from us. The flags are set (or cleared) on every open, so a
// persistent tap re-attached with other settings gets them.
//
// Namespace lifetime: a tap fd is a socket of the namespace /dev/net/tun was opened in,
// and holds a reference on it. A tap made in the host and moved into the pod (`create` +
// `move`, the CNI ADD path) leaves the pod's namespace free to die with the pod; the
// device dies with it and IOLoop marks the port dead. An fd opened inside the pod's
// namespace (`create(in:)`, and necessarily `attach` after a restart) keeps that namespace
// alive, device included, until the fd is closed — so CNI DEL must reach vrouterd, or the
// port must be closed when the pod's namespace name disappears.
//
// Reads and writes go through IOLoop (io_uring); the fds are non-blocking so that an
// io_uring read with nothing queued waits on the tap's poll queue instead of occupying an
// io-wq worker thread.

import CVRouterShims
import Glibc
import Synchronization
import VRouterCore

public final class TapPort: Sendable {
    /// How the device should look inside the pod's namespace.
    public struct Configuration: Sendable, Hashable {
        public var name: String
        public var mac: MACAddress?
        public var mtu: Int?
        public var addresses: [InterfaceAddress]
        /// Routes through this device; a route's `device` is set to `name` when nil.
        public var routes: [Route]
        public var up: Bool
        /// Frames the pod's kernel may queue for vrouterd before dropping (the tap's
        /// txqueuelen; nil leaves the kernel's 1000).
        public var txQueueLength: Int?

        public init(
            name: String,
            mac: MACAddress? = nil,
            mtu: Int? = nil,
            addresses: [InterfaceAddress] = [],
            routes: [Route] = [],
            up: Bool = true,
            txQueueLength: Int? = TapPort.podTxQueueLength
        ) {
            self.name = name
            self.mac = mac
            self.mtu = mtu
            self.addresses = addresses
            self.routes = routes
            self.up = up
            self.txQueueLength = txQueueLength
        }
    }

    /// The txqueuelen pods' taps get. With the kernel's 1000, a TCP sender in a pod overflowed
    /// its tap while the worker was busy with the other direction: 86–315 retransmits in a
    /// 2-second iperf3 across nodes (tools/demo); with 4096, none, at the same throughput.
    public static let podTxQueueLength = 4096

    struct State {
        var name: String
        var namespace: NetworkNamespace
        var fds: [CInt]
        var persistent: Bool
        var offloads: TapOffloads
    }
    private let state: Mutex<State>

    /// One fd per queue (IFF_MULTI_QUEUE when more than one); each queue is read by one worker.
    public var fds: [CInt] { state.withLock { $0.fds } }
    public var fd: CInt { state.withLock { $0.fds.first ?? -1 } }
    /// The device's current name, in `namespace`.
    public var name: String { state.withLock { $0.name } }
    public var namespace: NetworkNamespace { state.withLock { $0.namespace } }
    public var isPersistent: Bool { state.withLock { $0.persistent } }
    public var isOpen: Bool { state.withLock { !$0.fds.isEmpty } }
    /// What TUNSETOFFLOAD accepted (empty: opened without offloads).
    public var offloads: TapOffloads { state.withLock { $0.offloads } }
    /// Reads and writes carry a virtio-net header (`VirtioNet.headerLength` bytes).
    public var hasVirtioHeader: Bool { !offloads.isEmpty }

    private init(name: String, namespace: NetworkNamespace, fds: [CInt], persistent: Bool, offloads: TapOffloads) {
        state = Mutex(State(name: name, namespace: namespace, fds: fds, persistent: persistent, offloads: offloads))
    }

    deinit {
        state.withLock { s in
            for fd in s.fds { Sys.close(fd) }
            s.fds = []
        }
    }

    var object: String { state.withLock { "tap \($0.name) in \($0.namespace)" } }

    // MARK: create, attach

    /// Creates a tap called `name` in `namespace` (the host's by default) with `queues`
    /// queues, persistent or not. (Made in another namespace, its fds pin that namespace;
    /// see the top of this file.) Fails with EEXIST if a link of that name exists (TUNSETIFF
    /// alone would attach to an existing tap, or fail obscurely on another kind).
    public static func create(
        name: String,
        in namespace: NetworkNamespace = .current,
        persistent: Bool = false,
        queues: Int = 1,
        offloads: Bool = false
    ) throws(SystemError) -> TapPort {
        try Sys.checkInterfaceName(name, call: "TUNSETIFF")
        precondition(queues >= 1 && queues <= 256)
        let object = "tap \(name) in \(namespace)"
        let (fds, negotiated) = try namespace.runHere { () throws(SystemError) -> ([CInt], TapOffloads) in
            let nl = try Netlink(namespace: namespace, onThisThread: true)
            if (try? nl.link(name)) != nil {
                throw SystemError(
                    call: "TUNSETIFF",
                    object: object,
                    errno: EEXIST,
                    detail: "a link with this name already exists"
                )
            }
            var fds: [CInt] = []
            do throws(SystemError) {
                for _ in 0..<queues {
                    fds.append(try openQueue(name, multiQueue: queues > 1, virtioHeader: offloads, object: object))
                }
                let negotiated = try setOffloads(fds[0], offloads, object: object)
                if persistent {
                    try Sys.ioctl(fds[0], VRT_TUNSETPERSIST, 1, call: "ioctl(TUNSETPERSIST)", object: object)
                }
                return (fds, negotiated)
            } catch {
                for fd in fds { Sys.close(fd) }
                throw error
            }
        }
        return TapPort(name: name, namespace: namespace, fds: fds, persistent: persistent, offloads: negotiated)
    }

    /// Re-attaches to the persistent tap `name` in `namespace` (after a vrouterd restart).
    /// Refuses (ENODEV) when there is no such device or it is not a persistent tap —
    /// TUNSETIFF on a missing name would silently create a new, unconfigured device.
    public static func attach(
        name: String,
        in namespace: NetworkNamespace,
        queues: Int = 1,
        offloads: Bool = false
    ) throws(SystemError) -> TapPort {
        try Sys.checkInterfaceName(name, call: "TUNSETIFF(attach)")
        let object = "tap \(name) in \(namespace)"
        let (fds, negotiated) = try namespace.runHere { () throws(SystemError) -> ([CInt], TapOffloads) in
            let link = try Netlink(namespace: namespace, onThisThread: true).link(name)
            guard link.kind == "tun" else {
                throw SystemError(
                    call: "TUNSETIFF(attach)",
                    object: object,
                    errno: ENODEV,
                    detail: "link is a \(link.kind ?? "device without a kind"), not a tap"
                )
            }
            var fds: [CInt] = []
            do throws(SystemError) {
                for _ in 0..<queues {
                    fds.append(
                        try openQueueRetryingBusy(name, multiQueue: queues > 1, virtioHeader: offloads, object: object)
                    )
                }
                // If the device vanished between the check and TUNSETIFF we just created a
                // fresh one: it would not be persistent.
                let flags = try getFlags(fds[0], object: object)
                guard flags & Int32(IFF_PERSIST) != 0 else {
                    throw SystemError(
                        call: "TUNSETIFF(attach)",
                        object: object,
                        errno: ENODEV,
                        detail: "the tap is not persistent"
                    )
                }
                return (fds, try setOffloads(fds[0], offloads, object: object))
            } catch {
                for fd in fds { Sys.close(fd) }
                throw error
            }
        }
        return TapPort(name: name, namespace: namespace, fds: fds, persistent: true, offloads: negotiated)
    }

    /// EBUSY means another fd is still attached to the (single-queue) tap. Right after the
    /// previous owner closed it that can be a process forked meanwhile, still holding a copy
    /// of the fd until its exec closes it: wait up to a second before believing it.
    static func openQueueRetryingBusy(
        _ name: String,
        multiQueue: Bool,
        virtioHeader: Bool,
        object: String
    )
        throws(SystemError) -> CInt
    {
        var attempt = 0
        while true {
            do {
                return try openQueue(name, multiQueue: multiQueue, virtioHeader: virtioHeader, object: object)
            } catch  where error.errno == EBUSY && attempt < 20 {
                attempt += 1
                usleep(50_000)
            }
        }
    }

    static func openQueue(
        _ name: String,
        multiQueue: Bool,
        virtioHeader: Bool = false,
        object: String
    )
        throws(SystemError) -> CInt
    {
        let fd = try Sys.open("/dev/net/tun", O_RDWR | O_NONBLOCK, object: object)
        var ifr = ifreq()
        setName(&ifr, name)
        var flags = Int32(IFF_TAP) | Int32(IFF_NO_PI)
        if multiQueue { flags |= Int32(IFF_MULTI_QUEUE) }
        if virtioHeader { flags |= Int32(IFF_VNET_HDR) }
        ifr.ifr_ifru.ifru_flags = Int16(truncatingIfNeeded: flags)
        do {
            try Sys.ioctl(fd, VRT_TUNSETIFF, &ifr, call: "ioctl(TUNSETIFF)", object: object)
        } catch {
            Sys.close(fd)
            throw error
        }
        return fd
    }

    /// Sets the device's virtio-net header size and offloads (the device's, so once for
    /// all queues): the full set, then without USO (kernels before 6.2), then checksum and
    /// TSO only. Without `on`, clears them (a re-attached tap may have had them).
    static func setOffloads(_ fd: CInt, _ on: Bool, object: String) throws(SystemError) -> TapOffloads {
        guard on else {
            try Sys.ioctl(fd, VRT_TUNSETOFFLOAD, 0, call: "ioctl(TUNSETOFFLOAD)", object: object)
            return []
        }
        var size = Int32(VirtioNet.headerLength)
        try Sys.ioctl(fd, VRT_TUNSETVNETHDRSZ, &size, call: "ioctl(TUNSETVNETHDRSZ)", object: object)
        var lastError: SystemError? = nil
        for set in [TapOffloads.all, TapOffloads.all.subtracting([.uso4, .uso6]), [.checksum, .tso4, .tso6]] {
            do {
                try Sys.ioctl(fd, VRT_TUNSETOFFLOAD, Int32(set.rawValue), call: "ioctl(TUNSETOFFLOAD)", object: object)
                return set
            } catch  where error.errno == EINVAL {
                lastError = error
            }
        }
        throw lastError!
    }

    static func getFlags(_ fd: CInt, object: String) throws(SystemError) -> Int32 {
        var ifr = ifreq()
        try Sys.ioctl(fd, VRT_TUNGETIFF, &ifr, call: "ioctl(TUNGETIFF)", object: object)
        return Int32(UInt16(bitPattern: ifr.ifr_ifru.ifru_flags))
    }

    static func setName(_ ifr: inout ifreq, _ name: String) {
        withUnsafeMutableBytes(of: &ifr.ifr_ifrn.ifrn_name) { raw in
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            // Safe: checkInterfaceName bounded the name to IFNAMSIZ-1 bytes.
            for (i, b) in name.utf8.enumerated() where i < raw.count - 1 { raw[i] = b }
        }
    }

    // MARK: configuration

    /// Sets or clears TUNSETPERSIST: a persistent device survives the last fd closing.
    public func setPersistent(_ on: Bool) throws(SystemError) {
        let fd = self.fd
        guard fd >= 0 else {
            throw SystemError(call: "ioctl(TUNSETPERSIST)", object: object, errno: EBADF, detail: "port is closed")
        }
        try Sys.ioctl(fd, VRT_TUNSETPERSIST, on ? 1 : 0, call: "ioctl(TUNSETPERSIST)", object: object)
        state.withLock { $0.persistent = on }
    }

    /// Moves the device into `target` as `configuration.name` (rename and move in one
    /// netlink request), then sets MAC, MTU, addresses, up and routes there. The fds keep
    /// working. On failure the device is left where the failing step found it; callers
    /// undo with `delete()`.
    public func move(to target: NetworkNamespace, _ configuration: Configuration) throws(SystemError) {
        let (current, from) = state.withLock { ($0.name, $0.namespace) }
        try Netlink(namespace: from).moveLink(current, to: target, newName: configuration.name)
        state.withLock {
            $0.name = configuration.name
            $0.namespace = target
        }
        try configure(configuration)
    }

    /// Applies `configuration` to the device where it is now (a name change renames it).
    public func configure(_ c: Configuration) throws(SystemError) {
        let (current, ns) = state.withLock { ($0.name, $0.namespace) }
        let nl = try Netlink(namespace: ns)
        if c.name != current {
            try nl.setUp(current, false)
            try nl.renameLink(current, to: c.name)
            state.withLock { $0.name = c.name }
        }
        if let mac = c.mac { try nl.setMAC(c.name, mac) }
        if let mtu = c.mtu { try nl.setMTU(c.name, mtu) }
        if let q = c.txQueueLength { try nl.setTxQueueLength(c.name, q) }
        for a in c.addresses { try nl.addAddress(a, to: c.name) }
        // Routes need the device up (the kernel refuses a nexthop on a down link).
        try nl.setUp(c.name, c.up)
        if c.up {
            for var r in c.routes {
                if r.device == nil { r.device = c.name }
                try nl.addRoute(r)
            }
        }
    }

    // MARK: teardown

    /// Closes the fds. A persistent device stays (with its configuration); a non-persistent
    /// one disappears with its last fd.
    public func close() {
        let fds = state.withLock { s in
            defer { s.fds = [] }
            return s.fds
        }
        for fd in fds { Sys.close(fd) }
    }

    /// Removes the device: clears persistence, closes the fds, and deletes the link if it
    /// is still there (someone else holding a queue). Idempotent: a device already gone
    /// (its namespace deleted, say) is not an error.
    public func delete() throws(SystemError) {
        if isOpen { try? setPersistent(false) }
        close()
        let (name, ns) = state.withLock { ($0.name, $0.namespace) }
        try Self.delete(name: name, in: ns)
    }

    /// Removes several devices as `delete()` does, but those sharing a namespace in one
    /// batch: they are put in an interface group of their own and the group is deleted
    /// with one request, so the kernel waits out its RCU grace periods once for all of
    /// them rather than once each (a pod's four taps: ~20 ms instead of ~140 ms). Each is
    /// then deleted individually, which closes its fds and removes whatever the batch
    /// missed. Returns the failures (the others are removed regardless).
    public static func deleteAll(_ taps: [TapPort]) -> [SystemError] {
        var byNamespace: [NetworkNamespace: [TapPort]] = [:]
        for t in taps { byNamespace[t.namespace, default: []].append(t) }
        for (ns, group) in byNamespace where group.count > 1 && ns.exists {
            // A group number no other link of the namespace has: the doomed taps alone.
            guard let nl = try? Netlink(namespace: ns), let links = try? nl.links() else { continue }
            let used = Set(links.map(\.group))
            var id = UInt32(0x7672_0000) | (UInt32(truncatingIfNeeded: getpid()) & 0xFFFF)
            while used.contains(id) { id &+= 1 }
            var grouped = 0
            for t in group where (try? nl.setGroup(t.name, id)) != nil { grouped &+= 1 }
            if grouped > 0 { try? nl.deleteGroup(id) }
        }
        var failures: [SystemError] = []
        for t in taps {
            do { try t.delete() } catch { failures.append(error) }
        }
        return failures
    }

    /// Deletes the tap `name` in `namespace` without an fd (CNI DEL while vrouterd is down).
    /// Succeeds when the device or the namespace is already gone.
    public static func delete(name: String, in namespace: NetworkNamespace) throws(SystemError) {
        guard namespace.exists else { return }
        let nl = try Netlink(namespace: namespace)
        guard let link = try? nl.link(name) else { return }
        guard link.kind == "tun" else {
            throw SystemError(
                call: "RTM_DELLINK",
                object: "tap \(name) in \(namespace)",
                errno: EINVAL,
                detail: "link is a \(link.kind ?? "device without a kind"), not a tap"
            )
        }
        do {
            try nl.deleteLink(name)
        } catch  where error.errno == ENODEV {
        }
    }
}

/// TUNSETOFFLOAD flags (include/uapi/linux/if_tun.h; USO since 6.2, newer than Debian 12's
/// headers, hence spelled out).
public struct TapOffloads: OptionSet, Sendable, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let checksum = TapOffloads(rawValue: 0x01)
    public static let tso4 = TapOffloads(rawValue: 0x02)
    public static let tso6 = TapOffloads(rawValue: 0x04)
    public static let tsoECN = TapOffloads(rawValue: 0x08)
    public static let uso4 = TapOffloads(rawValue: 0x20)
    public static let uso6 = TapOffloads(rawValue: 0x40)
    public static let all: TapOffloads = [.checksum, .tso4, .tso6, .tsoECN, .uso4, .uso6]

    /// "csum tso4 tso6 tso-ecn uso4 uso6", in that order; "off" when empty.
    public var names: [String] {
        let all: [(TapOffloads, String)] = [
            (.checksum, "csum"), (.tso4, "tso4"), (.tso6, "tso6"), (.tsoECN, "tso-ecn"), (.uso4, "uso4"),
            (.uso6, "uso6"),
        ]
        return all.filter { contains($0.0) }.map(\.1)
    }
}

extension NetworkNamespace {
    /// `run`, or straight on the calling thread for the process's own namespace.
    func runHere<R>(_ body: () throws(SystemError) -> R) throws(SystemError) -> R {
        self == .current ? try body() : try run(body)
    }
}
