// Making and removing pod ports across the parts, for the API's interfaces, CNI pods and the
// journal's replay: the tables check and set the ids aside, the devices are made and handed
// to the workers with no lock held, then the tables enter them and publish once. All or
// nothing: a failure undoes the devices made and the reservation.

import Glibc
import VRouterAPI
import VRouterCore
import VRouterIO

/// A port of a batch that could not be made, and why.
struct PortFailure: Error {
    var index: Int
    var error: APIError
}

extension NodeService {
    /// Makes pod ports: their taps (re-attached when `reattach` and a persistent one
    /// survived), the workers' queues, their table entries (published once) and `record`
    /// queued for the journal. Returns their reservations (ids, labels) and the journal ticket.
    func makePorts(
        _ batch: [PodPort],
        reattach: Bool,
        record: StateRecord? = nil
    ) throws(PortFailure) -> ([PortReservation], Journal.Ticket) {
        let reserved = try tables.reservePorts(batch)
        var taps: [TapPort?] = []
        for (i, r) in reserved.enumerated() {
            guard r.port.tap != nil else {
                taps.append(nil)
                continue
            }
            do {
                taps.append(
                    try ports.makeTap(r.port, queues: max(workers.count, 1), reattach: reattach, gateways: r.gateways)
                )
            } catch {
                ports.delete(taps.compactMap { $0 })
                tables.release(reserved)
                // A name another link has is the node's state (409); the rest, the request's.
                let status = error.errno == EEXIST ? 409 : 400
                throw PortFailure(index: i, error: APIError(status, "interface '\(r.port.name)': \(error)"))
            }
        }
        // The workers serve the taps before the tables route to them.
        for (r, tap) in zip(reserved, taps) {
            guard let tap else { continue }
            for (w, worker) in workers.enumerated() {
                let c = WorkerCommand(.addTap(r.id, tap, w))
                worker.perform(c)
                if let e = c.error { log.error("worker could not take the tap", metadata: ["error": "\(e)"]) }
            }
        }
        // Listed before the tables enter them, so that a snapshot taken in between has the
        // interface in its config file for every route to it.
        for (r, tap) in zip(reserved, taps) { ports.add(r.port.interface(label: r.label), tap: tap) }
        do {
            let ticket = try tables.commitPorts(reserved, record: record)
            return (reserved, ticket)
        } catch {
            for r in reserved { for w in workers { w.perform(WorkerCommand(.removePort(r.id))) } }
            ports.delete(ports.remove(reserved.map(\.port.name)))
            throw PortFailure(index: 0, error: error)
        }
    }

    /// Removes pod ports: out of the tables (published once, so nothing routes to them),
    /// then out of the workers, then the devices go.
    @discardableResult
    func removePorts(_ names: [String], record: StateRecord? = nil) throws(APIError) -> Journal.Ticket {
        let (ids, ticket) = try tables.removePorts(names, record: record)
        for id in ids { for w in workers { w.perform(WorkerCommand(.removePort(id))) } }
        ports.delete(ports.remove(names))
        tables.drained(names)
        return ticket
    }

    /// Removes whichever of `names` are still ports (a pod's vifs being released), one by
    /// one when the batch is refused (a route points at one of them); failures are logged.
    func releasePorts(_ names: [String], container: String) {
        let present = tables.read { m in names.filter { m.compiled.portIDs[$0] != nil } }
        guard !present.isEmpty else { return }
        do { try removePorts(present) } catch {
            log.error("releasing pod interfaces", metadata: ["container": "\(container)", "error": "\(error)"])
            for n in present { _ = try? removePorts([n]) }
        }
    }

    // MARK: the API's interfaces

    public func addInterface(_ spec: InterfaceSpec) throws(APIError) -> InterfaceInfo {
        try validName(spec.name, "interface")
        guard let mac = MACAddress(spec.mac) else { throw .badRequest("mac '\(spec.mac)' is not a MAC address") }
        guard !mac.isMulticast, mac.value != 0 else {
            throw .badRequest("mac '\(spec.mac)' is not a unicast address (a pod's MAC must be one)")
        }
        var port = PodPort(name: spec.name, vrf: spec.vrf, mac: mac)
        if let m = spec.mtu {
            guard (68...9000).contains(m) else { throw .badRequest("mtu \(m) is outside 68...9000") }
            port.mtu = m
        }
        if let a = spec.ipv4 { port.ipv4 = try address(a) }
        if let a = spec.ipv6 {
            // The kernel keeps no IPv6 on a link below IPv6's minimum MTU (it refused the address).
            guard port.mtu >= 1280 else { throw .badRequest("ipv6 needs an mtu of at least 1280 (mtu is \(port.mtu))") }
            port.ipv6 = try address(a)
        }
        if let l = spec.label {
            guard (16...TableBuilder.maxLabel).contains(l) else {
                throw .badRequest("label \(l) is outside 16...1048575")
            }
            port.label = .fixed(l)
        }
        port.antiSpoofing = spec.antiSpoofing ?? true
        port.offloads = spec.offloads ?? true
        port.defaultRoute = spec.defaultRoute ?? true
        for (what, name) in [("tap name", spec.tap.name), ("tap ifname", spec.tap.ifname)] {
            if let name, let why = CNIEnvironment.invalidInterfaceName(name) {
                throw .badRequest("\(what) '\(name)': \(why)")
            }
        }
        port.tap = PodPort.Device(
            name: spec.tap.name,
            netns: spec.tap.netns,
            ifname: spec.tap.ifname,
            persistent: spec.tap.persistent ?? false
        )
        if let n = spec.tap.netns, !NetworkNamespace.at(n).exists {
            throw .notFound("network namespace '\(n)' does not exist")
        }
        let made: [PortReservation]
        let ticket: Journal.Ticket
        do { (made, ticket) = try makePorts([port], reattach: true, record: .addInterface(spec)) } catch {
            throw error.error
        }
        sync(ticket)
        return interfaceInfo(port.interface(label: made[0].label), made[0].id)
    }

    public func deleteInterface(_ name: String) throws(APIError) {
        sync(try removePorts([name], record: .deleteInterface(name)))
    }

    /// "a.b.c.d" or "a.b.c.d/len" as the API takes an interface address.
    private func address<A: PoolAddress>(_ text: String) throws(APIError) -> PodAddress<A> {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, A(parsing: parts[0]) != nil else { throw .badRequest("'\(text)' is not an address") }
        guard let a = PodAddress<A>(text) else {
            throw .badRequest("'\(text)': prefix length must be 0...\(A.width)")
        }
        return a
    }

    func validName(_ n: String, _ what: String) throws(APIError) {
        guard !n.isEmpty, n.utf8.count <= 63, n.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != UInt8(ascii: "/") })
        else {
            throw .badRequest("\(what) name '\(n)' must be 1-63 printable characters without spaces or '/'")
        }
    }
}
