// The records stored under the cluster prefix: JSON objects that all carry `"version": 1`.
// A reader skips (counts and logs) a record whose version is newer than it knows or that does
// not parse, and keeps what it knew, so a newer writer or a corrupted key never takes routes
// away from an older node.

import Foundation
import VRouterAPI
import VRouterEtcd

/// The record schema this code writes and reads.
public let clusterRecordVersion = 1

/// A node of the cluster, on its lease: while the key exists the node is alive.
public struct NodeRecord: Codable, Sendable, Hashable {
    public var version = clusterRecordVersion
    public var name: String
    /// The node's underlay (fabric) address, where tunnels to its pods end.
    public var underlay: String
    /// The fabric port's MAC.
    public var mac: String?
    /// Encapsulations it decapsulates: "vxlan", "mplsudp".
    public var encapsulations: [String]
    /// Changes on every start of vrouterd; tells a restart from a steady node.
    public var bootID: String

    public init(name: String, underlay: String, mac: String? = nil, encapsulations: [String], bootID: String) {
        self.name = name
        self.underlay = underlay
        self.mac = mac
        self.encapsulations = encapsulations
        self.bootID = bootID
    }
}

/// A network as applied on some node (`vrouterctl apply -f`); every node learns it.
public struct NetworkEntry: Codable, Sendable, Hashable {
    public var version = clusterRecordVersion
    public var nad: NetworkAttachmentDefinition
    /// The node whose API applied it (for the operator).
    public var appliedBy: String

    public init(nad: NetworkAttachmentDefinition, appliedBy: String) {
        self.nad = nad
        self.appliedBy = appliedBy
    }

    public var key: NetworkKey { NetworkKey(namespace: nad.metadata.namespace ?? "default", name: nad.metadata.name) }

    public static func == (a: NetworkEntry, b: NetworkEntry) -> Bool {
        a.version == b.version && a.nad == b.nad && a.appliedBy == b.appliedBy
    }
    public func hash(into h: inout Hasher) { h.combine(key) }
}

/// Block affinity: `node` hands out addresses of `cidr` in `network` (Calico's model). Two
/// nodes never claim one block: the claim is a create-if-absent transaction.
public struct BlockClaim: Codable, Sendable, Hashable {
    public var version = clusterRecordVersion
    public var network: NetworkKey
    public var cidr: String
    public var node: String

    public init(network: NetworkKey, cidr: String, node: String) {
        self.network = network
        self.cidr = cidr
        self.node = node
    }
}

/// One address of a network taken by one pod interface, cluster-wide (create-if-absent), both
/// for addresses from the node's blocks and for requested ones (the annotation's `ips`).
public struct AddressClaim: Codable, Sendable, Hashable {
    public var version = clusterRecordVersion
    public var network: NetworkKey
    public var address: String
    public var node: String
    public var pod: PodKey
    public var interface: String

    public init(network: NetworkKey, address: String, node: String, pod: PodKey, interface: String) {
        self.network = network
        self.address = address
        self.node = node
        self.pod = pod
        self.interface = interface
    }
}

/// A pod interface as its node publishes it, on the node's lease: what other nodes need to
/// forward to it (addresses, the tunnel endpoint comes from the node record).
public struct EndpointRecord: Codable, Sendable, Hashable {
    public var version = clusterRecordVersion
    public var node: String
    public var network: NetworkKey
    public var pod: PodKey
    public var interface: String
    /// Addresses with their prefix length ("192.0.2.5/32", "2001:db8::5/128").
    public var addresses: [String]
    public var mac: String?
    /// The MPLS label the owning node assigned (MPLS over UDP).
    public var label: UInt32?
    /// The network's VNI (VXLAN).
    public var vni: UInt32?

    public init(
        node: String,
        network: NetworkKey,
        pod: PodKey,
        interface: String,
        addresses: [String],
        mac: String? = nil,
        label: UInt32? = nil,
        vni: UInt32? = nil
    ) {
        self.node = node
        self.network = network
        self.pod = pod
        self.interface = interface
        self.addresses = addresses
        self.mac = mac
        self.label = label
        self.vni = vni
    }
}

/// What reading one stored value gave.
enum Decoded<T> {
    case record(T)
    /// A version this code does not know (a newer writer).
    case newer(Int)
    /// Not JSON, no version, or the wrong shape for its key.
    case garbage(String)
}

private struct VersionProbe: Decodable { var version: Int? }

enum RecordCodec {
    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) -> Decoded<T> {
        let data = Data(bytes)
        let decoder = JSONDecoder()
        guard let probe = try? decoder.decode(VersionProbe.self, from: data) else {
            return .garbage("not a JSON object")
        }
        guard let v = probe.version else { return .garbage("no \"version\"") }
        guard v <= clusterRecordVersion else { return .newer(v) }
        guard v >= 1 else { return .garbage("version \(v)") }
        do {
            return .record(try decoder.decode(T.self, from: data))
        } catch let e as DecodingError {
            return .garbage(e.shortDescription)
        } catch {
            return .garbage("\(error)")
        }
    }

    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        // Encoding these plain records cannot fail.
        return [UInt8]((try? e.encode(value)) ?? Data())
    }
}

extension DecodingError {
    var shortDescription: String {
        switch self {
        case .dataCorrupted(let c), .keyNotFound(_, let c), .typeMismatch(_, let c), .valueNotFound(_, let c):
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            if case .keyNotFound(let k, _) = self { return "missing \"\(k.stringValue)\"" }
            return (path.isEmpty ? "" : path + ": ") + c.debugDescription
        @unknown default: return "\(self)"
        }
    }
}

/// Errors of the cluster layer that are not the store's own.
public enum ClusterError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalid(String)
    /// The network is used by these pods (on these nodes) and cannot be deleted.
    case networkInUse(NetworkKey, [AddressClaim])
    /// Someone else holds what was asked for.
    case conflict(String)
    case store(EtcdError)

    public var description: String {
        switch self {
        case .invalid(let s): return s
        case .networkInUse(let n, let claims):
            let users = claims.map { "\($0.pod) on \($0.node)" }
            let unique = Array(Set(users)).sorted()
            return "network \(n) is in use by \(unique.joined(separator: ", ")); delete those pods first"
        case .conflict(let s): return s
        case .store(let e): return e.description
        }
    }
}
