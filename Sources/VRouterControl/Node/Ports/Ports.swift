// The ports part of the node: the set of interfaces (the fabric, every pod port) and their
// devices, the only part that does device I/O. Its lock guards the set only; making a tap
// in a pod's namespace or removing one happens outside it, so one pod's devices never wait
// for another's.

import Glibc
import Logging
import Synchronization
import VRouterCore
import VRouterIO

final class Ports: @unchecked Sendable {  // Safe: the set is behind `model`; taps are thread-safe.
    private struct Model {
        /// In config order, then as added.
        var interfaces: [NodeConfig.Interface]
        var taps: [String: TapPort] = [:]
    }
    private let model: Mutex<Model>
    let log: Logger

    init(_ interfaces: [NodeConfig.Interface], log: Logger) {
        model = Mutex(Model(interfaces: interfaces))
        self.log = log
    }

    // MARK: the set

    var interfaces: [NodeConfig.Interface] { model.withLock { $0.interfaces } }
    var fabric: NodeConfig.Interface? { model.withLock { m in m.interfaces.first { $0.kind == .fabric } } }
    var taps: [(String, TapPort)] { model.withLock { m in m.taps.map { ($0.key, $0.value) } } }
    func tap(_ name: String) -> TapPort? { model.withLock { $0.taps[name] } }
    /// Ports whose tap is open.
    var open: Set<String> { model.withLock { m in Set(m.taps.filter { $0.value.isOpen }.map(\.key)) } }

    /// A config interface's tap, made at start.
    func adopt(_ name: String, _ tap: TapPort) { model.withLock { $0.taps[name] = tap } }

    /// Records a port made (its tap open, its table entries in).
    func add(_ itf: NodeConfig.Interface, tap: TapPort?) {
        model.withLock { m in
            m.interfaces.append(itf)
            if let tap { m.taps[itf.name] = tap }
        }
    }

    /// Forgets ports (taken out of the tables and the workers); returns their taps, for the
    /// caller to close or delete outside the lock.
    func remove(_ names: [String]) -> [TapPort] {
        let doomed = Set(names)
        return model.withLock { m in
            m.interfaces.removeAll { doomed.contains($0.name) }
            return names.compactMap { m.taps.removeValue(forKey: $0) }
        }
    }

    /// Every tap, forgotten (the node stops), with whether its interface is persistent.
    func removeAll() -> [(TapPort, persistent: Bool)] {
        model.withLock { m in
            defer { m.taps.removeAll() }
            return m.taps.map { name, tap in
                (tap, m.interfaces.first { $0.name == name }?.tap?.persistent == true)
            }
        }
    }

    // MARK: devices (no lock held)

    /// The pod's tap: a persistent one that survived a restart (or a crash) is re-attached
    /// inside the pod's namespace as it is (`reattach`); otherwise a new one is made there.
    func makeTap(
        _ port: PodPort,
        queues: Int,
        reattach: Bool,
        gateways: (IPv4Address?, IPv6Address?)
    ) throws(SystemError) -> TapPort {
        guard let t = port.tap else {
            throw SystemError(call: "TUNSETIFF", object: "interface \(port.name)", errno: EINVAL, detail: "no tap")
        }
        let ns = t.netns.map { NetworkNamespace.at($0) } ?? .current
        let ifname = t.ifname ?? t.name
        if t.persistent, reattach,
            let existing = try? TapPort.attach(name: ifname, in: ns, queues: queues, offloads: port.offloads)
        {
            log.info(
                "re-attached persistent tap",
                metadata: ["interface": "\(port.name)", "netns": "\(ns)", "ifname": "\(ifname)"]
            )
            return existing
        }
        if !reattach, t.persistent, ns != .current {
            // A new pod interface (CNI ADD) is made in the pod's namespace under its final
            // name: moving a device between namespaces costs the kernel a synchronize_net()
            // (15-20 ms each here, measured with strace), which four interfaces made
            // the biggest part of an ADD. The tap's fd then keeps the namespace alive
            // until DEL closes it, as a re-attached tap's does after a restart.
            let tap = try TapPort.create(
                name: ifname,
                in: ns,
                persistent: true,
                queues: queues,
                offloads: port.offloads
            )
            do {
                try tap.configure(port.tapConfiguration(name: ifname, gateways: gateways))
            } catch {
                try? tap.delete()
                throw error
            }
            log.debug("tap ready", metadata: ["interface": "\(port.name)", "netns": "\(ns)", "ifname": "\(ifname)"])
            return tap
        }
        let tap = try TapPort.create(name: t.name, persistent: t.persistent, queues: queues, offloads: port.offloads)
        do {
            if ns == .current && ifname == t.name {
                try tap.configure(port.tapConfiguration(name: ifname, gateways: gateways))
            } else {
                try tap.move(to: ns, port.tapConfiguration(name: ifname, gateways: gateways))
            }
        } catch {
            // Only what we made goes: the tap by its fd (wherever the failed step left it).
            // A device of the pod's name that was there before (the move failed on it) stays.
            try? tap.delete()
            throw error
        }
        log.info("tap ready", metadata: ["interface": "\(port.name)", "netns": "\(ns)", "ifname": "\(ifname)"])
        return tap
    }

    /// Removes devices. Removing one waits out RCU grace periods in the kernel (~35 ms a tap
    /// here); a pod's taps go as one batch and share the wait.
    func delete(_ taps: [TapPort]) {
        for error in TapPort.deleteAll(taps) {
            log.warning("removing tap failed", metadata: ["error": "\(error)"])
        }
    }
}

extension Ports {
    /// Runs `body` with the set held (a snapshot, inside the attachments' lock and around the
    /// tables': the one place two parts' locks nest).
    func withInterfaces<R>(_ body: ([NodeConfig.Interface]) -> R) -> R { model.withLock { body($0.interfaces) } }
}
