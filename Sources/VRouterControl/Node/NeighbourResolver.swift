// Underlay neighbours: the fabric device has no address in the kernel, so vrouterd
// resolves the MACs of remote nodes (or of the underlay gateway, for nodes outside the
// fabric's subnet) itself, by ARP on its own raw socket. Entries are refreshed every
// 30 s and forgotten after 90 s without an answer; a change republishes the tables (the
// tunnel templates carry the MAC). Peers' own requests teach us their MAC too.

import Foundation
import Logging
import Synchronization
import VRouterCore
import VRouterIO

final class NeighbourResolver: @unchecked Sendable {  // Safe: `entries` is used by the resolver thread only.
    unowned let service: NodeService
    let fabric: NodeConfig.Interface
    let fabricPort: UInt16
    private let running = Atomic<Bool>(false)
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)

    static let refresh: TimeInterval = 30
    static let forget: TimeInterval = 90
    static let retry: TimeInterval = 1

    struct Entry {
        var mac: MACAddress?
        var confirmed: Date?
        var asked: Date?
    }
    private var entries: [IPv4Address: Entry] = [:]
    /// Remote nodes whose MAC we resolve, by the address we ARP for.
    private var nodesByNextHop: [IPv4Address: [NodeConfig.RemoteNode]] = [:]

    init(service: NodeService, fabric: NodeConfig.Interface) {
        self.service = service
        self.fabric = fabric
        fabricPort = service.portIDs[fabric.name]!
    }

    /// Picks up remote nodes added (or removed) at run time.
    func watch() { rescan.store(true, ordering: .releasing) }
    private let rescan = Atomic<Bool>(false)

    /// The underlay gateway, when the underlay VRF routes through it and its MAC is not
    /// configured: resolved like a node, for the untunneled traffic that leaves through it.
    private var gateway: IPv4Address?

    /// Next hops to resolve for the remote nodes the node has now (and the gateway).
    private func targets() -> [IPv4Address: [NodeConfig.RemoteNode]] {
        let (nodes, gatewayNexthop) = service.tables.read { ($0.remoteNodes, $0.compiled.fabric?.gateway) }
        let own = fabric.ipv4!
        let mask = IPv4Prefix.mask(fabric.ipv4PrefixLength)
        var out: [IPv4Address: [NodeConfig.RemoteNode]] = [:]
        for node in nodes where node.mac == nil {
            let onLink = fabric.ipv4PrefixLength == 32 || node.address.value & mask == own.value & mask
            let hop = onLink || fabric.gateway == nil ? node.address : fabric.gateway!
            out[hop, default: []].append(node)
        }
        gateway = gatewayNexthop != nil && fabric.gatewayMAC == nil ? fabric.gateway : nil
        if let g = gateway, out[g] == nil { out[g] = [] }
        return out
    }

    func start() {
        running.store(true, ordering: .releasing)
        let t = Thread { [self] in
            run()
            done.signal()
        }
        t.name = "vrt-arp"
        thread = t
        t.start()
    }

    func stop() {
        guard thread != nil else { return }
        running.store(false, ordering: .releasing)
        done.wait()
        thread = nil
    }

    private func run() {
        let socket: RawPacketSocket
        do {
            socket = try RawPacketSocket.open(interface: fabric.device!, etherType: EtherType.arp)
        } catch {
            service.log.error("neighbour resolution disabled", metadata: ["error": "\(error)"])
            return
        }
        defer { socket.close() }
        rescan.store(true, ordering: .releasing)
        while running.load(ordering: .acquiring) {
            if rescan.exchange(false, ordering: .acquiringAndReleasing) {
                nodesByNextHop = targets()
                for hop in nodesByNextHop.keys where entries[hop] == nil { entries[hop] = Entry() }
                for hop in entries.keys where nodesByNextHop[hop] == nil { entries[hop] = nil }
                // A new node behind a neighbour already known gets its MAC at once.
                for (hop, e) in entries { if let mac = e.mac { publish(hop, mac) } }
            }
            let now = Date()
            for (ip, e) in entries {
                let stale = e.confirmed.map { now.timeIntervalSince($0) > Self.refresh } ?? true
                let due = e.asked.map { now.timeIntervalSince($0) > Self.retry } ?? true
                if stale && due {
                    try? socket.send(request(for: ip))
                    entries[ip]?.asked = now
                }
                if let c = e.confirmed, now.timeIntervalSince(c) > Self.forget, e.mac != nil {
                    service.log.warning("underlay neighbour stopped answering", metadata: ["address": "\(ip)"])
                    entries[ip]?.mac = nil
                    entries[ip]?.confirmed = nil
                    publish(ip, nil)
                }
            }
            guard let frame = socket.receive(timeoutMilliseconds: 200) else { continue }
            learn(frame)
        }
    }

    private func request(for ip: IPv4Address) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 60)  // padded to the Ethernet minimum
        _ = bytes.withUnsafeMutableBytes {
            PacketBuilder.arpRequestFrame($0.baseAddress!, senderMAC: fabric.mac, senderIP: fabric.ipv4!, targetIP: ip)
        }
        return bytes
    }

    private func learn(_ frame: [UInt8]) {
        guard frame.count >= 42 else { return }
        let (sender, mac) = frame.withUnsafeBytes { b -> (IPv4Address, MACAddress) in
            let a = ARPHeader(b.baseAddress! + 14)
            return (a.senderIP, a.senderMAC)
        }
        guard entries[sender] != nil else { return }
        let changed = entries[sender]?.mac != mac
        entries[sender]?.mac = mac
        entries[sender]?.confirmed = Date()
        if changed {
            service.log.info("underlay neighbour resolved", metadata: ["address": "\(sender)", "mac": "\(mac)"])
            publish(sender, mac)
        }
    }

    /// Rewrites the tunnel nexthops of the nodes behind `hop` with its MAC (zero: unresolved),
    /// and the underlay gateway's nexthop when `hop` is the gateway.
    private func publish(_ hop: IPv4Address, _ mac: MACAddress?) {
        let nodes = nodesByNextHop[hop] ?? []
        let fabricPort = self.fabricPort
        let isGateway = hop == gateway
        do {
            try service.update { builder, compiled in
                if isGateway, let nh = compiled.fabric?.gateway {
                    try builder.setNexthop(nh, .underlay(port: fabricPort, via: hop, mac: mac ?? .zero))
                }
                for node in nodes {
                    guard let nh = compiled.nodeNexthops[node.name] else { continue }
                    try builder.setNexthop(
                        nh,
                        .tunnel(
                            node.encap,
                            port: fabricPort,
                            destination: node.address,
                            underlayMAC: mac ?? .zero,
                            innerMAC: node.innerMAC
                        )
                    )
                }
            }
        } catch {
            service.log.error("publishing a neighbour change failed", metadata: ["error": "\(error)"])
        }
    }
}
