// Prometheus metrics for a running node. The dataplane's counters stay plain per-worker
// UInt64s (one add per event on the hot path, nothing more); a scrape sums them over
// the workers and copies the totals into the registry, together with flow-table
// occupancy and table sizes read from the control state. Control-plane metrics (API
// requests) go through swift-metrics into the same registry (vrouterd bootstraps
// MetricsSystem with `factory`).

import Foundation
import Prometheus
import Synchronization
import VRouterAPI
import VRouterCore

public final class NodeMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    public var factory: PrometheusMetricsFactory { PrometheusMetricsFactory(registry: registry) }
    let service: NodeService
    /// Counters and gauges by name and labels, so a label set that disappeared (a port or
    /// VRF removed) is unregistered instead of reported forever.
    private let exported = Mutex<Exported>(Exported())

    struct Exported {
        var counters: [String: Counter] = [:]
        var gauges: [String: Gauge] = [:]
    }

    public init(service: NodeService) { self.service = service }

    /// The Prometheus text for one scrape.
    public func scrape() -> String {
        exported.withLock { ex in
            var seenCounters: Set<String> = []
            var seenGauges: Set<String> = []
            func counter(_ name: String, _ help: String, _ labels: [(String, String)], _ value: UInt64) {
                let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
                seenCounters.insert(key)
                let c =
                    ex.counters[key]
                    ?? registry.makeCounter(
                        descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help),
                        labels: labels
                    )
                ex.counters[key] = c
                c.reset()
                c.increment(by: Int64(truncatingIfNeeded: min(value, UInt64(Int64.max))))
            }
            func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Int) {
                let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
                seenGauges.insert(key)
                let g =
                    ex.gauges[key]
                    ?? registry.makeGauge(
                        descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help),
                        labels: labels
                    )
                ex.gauges[key] = g
                g.set(Int64(value))
            }

            let cs = service.workerCounters
            func sum(_ f: (Counters) -> UInt64) -> UInt64 { cs.reduce(0) { $0 &+ f($1) } }
            // interfaces() sums each port's counters over the workers.
            for itf in service.interfaces() {
                let l = [("port", itf.name), ("kind", itf.kind)]
                counter("vrouter_port_rx_packets_total", "Packets received on the port", l, itf.rxPackets)
                counter("vrouter_port_rx_bytes_total", "Bytes received on the port", l, itf.rxBytes)
                counter(
                    "vrouter_port_tx_packets_total",
                    "Packets sent on the port (a UDP GSO train's datagrams one each)",
                    l,
                    itf.txPackets
                )
                counter("vrouter_port_tx_bytes_total", "Bytes sent on the port", l, itf.txBytes)
                counter(
                    "vrouter_port_rx_drops_total",
                    "Packets received on the port and dropped (any reason)",
                    l,
                    itf.drops
                )
                if let r = itf.ringDrops {
                    counter(
                        "vrouter_port_ring_drops_total",
                        "Frames the kernel dropped before vrouterd read them (AF_PACKET RX ring full)",
                        l,
                        r
                    )
                }
            }
            for r in DropReason.allCases {
                counter(
                    "vrouter_drops_total",
                    "Packets dropped, by reason",
                    [("reason", r.name)],
                    sum { $0.dropCount(r) }
                )
            }
            for e in PipelineEvent.allCases {
                counter(
                    "vrouter_events_total",
                    "Pipeline events that are not drops",
                    [("event", e.name)],
                    sum { $0.events[e.rawValue] }
                )
            }
            let st = service.status()
            gauge("vrouter_flows", "Flow-table entries in use, over all workers", [], st.flows)
            gauge("vrouter_flow_capacity", "Flow-table slots, over all workers", [], service.flowCapacity)
            gauge("vrouter_workers", "Forwarding workers", [], st.workers)
            gauge(
                "vrouter_tables_version",
                "Version of the tables the workers use",
                [],
                Int(truncatingIfNeeded: st.tablesVersion)
            )
            if let range = service.config.snat {
                gauge("vrouter_snat_ports", "Ports of the node's SNAT range (per protocol)", [], range.count)
                for (proto, s) in service.snatStats() {
                    gauge("vrouter_snat_flows", "Translated flows alive (fabric SNAT)", [("proto", proto)], s.flows)
                    gauge(
                        "vrouter_snat_ports_in_use",
                        "SNAT ports at least one translated flow uses",
                        [("proto", proto)],
                        s.portsInUse
                    )
                }
            }
            if service.clusterAgent != nil, let c = try? service.clusterInfo() {
                func total(_ name: String, _ help: String, _ value: Int) {
                    counter("vrouter_cluster_" + name + "_total", help, [], UInt64(max(0, value)))
                }
                gauge("vrouter_cluster_connected", "1 while the watch on etcd is open", [], c.connected ? 1 : 0)
                gauge(
                    "vrouter_cluster_revision",
                    "The etcd revision this node has seen last",
                    [],
                    Int(truncatingIfNeeded: c.revision)
                )
                gauge("vrouter_cluster_nodes", "Other nodes of the cluster alive (their lease)", [], c.nodes.count)
                gauge("vrouter_cluster_routes", "Routes to other nodes' pods programmed now", [], c.routesProgrammed)
                gauge("vrouter_cluster_publish_pending", "This node's records not yet written", [], c.publishPending)
                total("routes_learned", "Routes to other nodes' pods added", c.routesLearned)
                total("routes_withdrawn", "Routes to other nodes' pods removed", c.routesWithdrawn)
                total("resyncs", "Full listings after the first (a broken watch or a compaction)", c.resyncs)
                total("compactions", "Watches that met a compacted revision", c.compactions)
                total("watch_restarts", "Watches that ended in an error and were started again", c.watchRestarts)
                total("store_errors", "Calls to etcd that failed", c.storeErrors)
                total("skipped_records", "Records skipped: garbage or of a newer version", c.skippedRecords)
                total("lease_regrants", "Leases granted again after one was lost", c.leaseRegrants)
            }
            let t = service.tableSizes()
            gauge("vrouter_ports", "Ports (vifs) in the tables", [], t.ports)
            gauge("vrouter_nexthops", "Nexthops in the tables", [], t.nexthops)
            gauge("vrouter_mpls_labels", "Entries in the MPLS label table", [], t.labels)
            gauge("vrouter_vxlan_vnis", "Entries in the VNI table", [], t.vnis)
            gauge("vrouter_vrfs", "VRFs", [], t.vrfs.count)
            for (name, v4, v6) in t.vrfs {
                gauge("vrouter_vrf_routes", "Routes in a VRF", [("vrf", name), ("family", "ipv4")], v4)
                gauge("vrouter_vrf_routes", "Routes in a VRF", [("vrf", name), ("family", "ipv6")], v6)
            }
            for (k, c) in ex.counters where !seenCounters.contains(k) {
                registry.unregisterCounter(c)
                ex.counters[k] = nil
            }
            for (k, g) in ex.gauges where !seenGauges.contains(k) {
                registry.unregisterGauge(g)
                ex.gauges[k] = nil
            }
            return registry.emitToString()
        }
    }

    /// The metrics endpoint's responder: GET /metrics.
    public func respond(_ r: APIRequest) -> APIResponse {
        guard r.path == "/metrics" else { return .error(.notFound("no resource \(r.path) (metrics are at /metrics)")) }
        guard r.method == "GET" || r.method == "HEAD" else {
            return .error(APIError(405, "\(r.method) is not allowed on /metrics"))
        }
        return APIResponse(
            status: 200,
            body: Data(scrape().utf8),
            contentType: "text/plain; version=0.0.4; charset=utf-8"
        )
    }
}
