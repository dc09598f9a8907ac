// The cluster layer against a real 3-member etcd: racing claims, networks in use, and the
// engine (publisher + watcher) through lease expiry, lease loss, an unreachable store and a
// resync across a compaction.

import Foundation
import Logging
import Synchronization
import Testing
import VRouterAPI
import VRouterEtcd
import VRouterTestSupport

@testable import VRouterCluster

extension LiveEtcd {
    @Suite struct ClusterLiveTests {
        static let blue = NetworkKey(namespace: "default", name: "blue")

        static func endpoint(_ node: String, _ pod: String, _ ip: String) -> EndpointRecord {
            EndpointRecord(
                node: node,
                network: blue,
                pod: PodKey(namespace: "default", name: pod),
                interface: "eth0",
                addresses: [ip + "/32"],
                label: 16,
                vni: 100
            )
        }

        static func node(_ name: String, boot: String = "1") -> NodeRecord {
            NodeRecord(
                name: name,
                underlay: "198.18.0.\(name.utf8.first! & 0x3f)",
                encapsulations: ["vxlan"],
                bootID: boot
            )
        }

        @Test func claimsRaceToOneWinnerAndNetworksInUseCannotBeDeleted() async throws {
            let lab = try EtcdLab(members: 3)
            defer { lab.cleanup() }
            let keys = try ClusterKeys(prefix: "/vrt")
            let stores = try (1...3).map { ClusterStore(client: try lab.client(members: [$0]), keys: keys) }

            // Six nodes race for one block and for one address: exactly one of each wins.
            let blockWins = try await withThrowingTaskGroup(of: Bool.self) { g in
                for n in 0..<6 {
                    g.addTask {
                        let claim = BlockClaim(network: Self.blue, cidr: "192.0.2.64/26", node: "n\(n)")
                        return try await stores[n % 3].claimBlock(claim) == .claimed
                    }
                }
                return try await g.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(blockWins == 1)
            let blocks = try await stores[0].blocks(of: Self.blue)
            #expect(blocks.count == 1)
            let owner = try #require(blocks.first?.node)
            // Claiming again is idempotent for the owner and names the owner for others.
            #expect(
                try await stores[1].claimBlock(BlockClaim(network: Self.blue, cidr: "192.0.2.64/26", node: owner))
                    == .alreadyOurs
            )
            let other = owner == "n0" ? "n1" : "n0"
            let lost = try await stores[2].claimBlock(
                BlockClaim(network: Self.blue, cidr: "192.0.2.64/26", node: other)
            )
            #expect(lost == .taken(by: BlockClaim(network: Self.blue, cidr: "192.0.2.64/26", node: owner)))
            await #expect(throws: ClusterError.self) {
                try await stores[0].releaseBlock(Self.blue, cidr: "192.0.2.64/26", node: other)
            }

            let addressWins = try await withThrowingTaskGroup(of: Bool.self) { g in
                for n in 0..<6 {
                    g.addTask {
                        let c = AddressClaim(
                            network: Self.blue,
                            address: "192.0.2.70",
                            node: "n\(n)",
                            pod: PodKey(namespace: "default", name: "p\(n)"),
                            interface: "eth0"
                        )
                        return try await stores[n % 3].claimAddress(c) == .claimed
                    }
                }
                return try await g.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(addressWins == 1)

            // A network: two applies of a new one create it once; the same content is unchanged.
            let nad = NetworkAttachmentDefinition(
                metadata: .init(
                    name: "blue",
                    namespace: "default",
                    annotations: ["opencontrail.org/cidr": "192.0.2.0/24"]
                )
            )
            let applied = try await withThrowingTaskGroup(of: ClusterStore.Applied.self) { g in
                for n in 0..<2 {
                    g.addTask { try await stores[n].applyNetwork(NetworkEntry(nad: nad, appliedBy: "n\(n)")) }
                }
                return try await g.reduce(into: []) { $0.append($1) }
            }
            #expect(applied.sorted { "\($0)" < "\($1)" } == [.created, .unchanged])
            var changed = nad
            changed.metadata.annotations?["opencontrail.org/cidr"] = "198.51.100.0/24"
            #expect(try await stores[0].applyNetwork(NetworkEntry(nad: changed, appliedBy: "n0")) == .updated)

            // In use: refused, naming the pod and node; after the claim is released it goes.
            let claim = try #require(try await stores[0].addressClaims(of: Self.blue).first)
            do {
                try await stores[1].deleteNetwork(Self.blue)
                Issue.record("deleted a network in use")
            } catch {
                #expect(error == .networkInUse(Self.blue, [claim]))
                #expect("\(error)".contains("\(claim.pod) on \(claim.node)"))
            }
            #expect(try await stores[0].networks().count == 1)
            try await stores[0].releaseAddress(claim)
            #expect(try await stores[1].deleteNetwork(Self.blue))
            #expect(try await stores[1].deleteNetwork(Self.blue) == false)
        }

        /// Collects what a watcher delivers.
        final class Collector: Sendable {
            let updates = Mutex<[ClusterUpdate]>([])
            var intents: [ClusterIntent] { updates.withLock { $0.flatMap(\.intents) } }
            func wait(for what: String, seconds: Double = 15, _ done: ([ClusterIntent]) -> Bool) async throws {
                let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
                while !done(intents) {
                    guard ContinuousClock.now < deadline else {
                        throw Failure("no \(what) within \(seconds) s; got \(intents)")
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
        }

        @Test func peersLearnPodsAndForgetThemWhenTheLeaseEndsOrIsLost() async throws {
            let lab = try EtcdLab(members: 3)
            defer { lab.cleanup() }
            let keys = try ClusterKeys(prefix: "/vrt")
            let logger = Logger(label: "test")
            let ttl: Int64 = 3  // etcd's minimum in the lab (1.5 election timeouts)

            let a = ClusterPublisher(
                client: try lab.client(),
                keys: keys,
                node: Self.node("a"),
                ttl: ttl,
                logger: logger
            )
            let p1 = Self.endpoint("a", "p1", "192.0.2.2")
            let p2 = Self.endpoint("a", "p2", "192.0.2.3")
            await a.publish(p1)
            await a.publish(p2)
            let aTask = Task { await a.run() }

            let watcher = ClusterWatcher(client: try lab.client(), keys: keys, localNode: "b", logger: logger)
            let seen = Collector()
            let wTask = Task { await watcher.run { u in seen.updates.withLock { $0.append(u) } } }
            defer { wTask.cancel() }
            try await seen.wait(for: "node a and its pods") {
                Set($0) == [.nodeUp(Self.node("a")), .endpointUp(p1), .endpointUp(p2)]
            }

            // The lease is revoked behind the publisher's back: peers withdraw, the publisher
            // notices at its next keepalive, grants a new lease and publishes again.
            let lost = try #require(await a.status.leaseID)
            try await lab.client().revokeLease(lost)
            try await seen.wait(for: "the withdrawal and the return") { i in
                i.filter { $0 == .endpointUp(p1) }.count == 2 && i.contains(.endpointDown(p1))
                    && i.filter { $0 == .nodeUp(Self.node("a")) }.count == 2
            }
            #expect(await a.status.regrants == 1)
            #expect(await a.status.leaseID != lost)

            // vrouterd killed: the publisher stops without revoking; within TTL + 1 s (plus the
            // watch's delivery) the peer has withdrawn node a and both pods.
            let probe = try lab.client()
            let term = try await probe.range(.key("/")).header.raftTerm
            aTask.cancel()
            await aTask.value
            let killed = ContinuousClock.now
            let before = seen.intents.count
            try await seen.wait(for: "the withdrawal after the lease expired", seconds: Double(ttl) + 3) { i in
                Set(i.dropFirst(before)) == [.endpointDown(p1), .endpointDown(p2), .nodeDown(name: "a")]
            }
            let took = ContinuousClock.now - killed
            // The bound holds with a steady leader; an election (this machine is shared and
            // busy) restarts every lease's TTL on the new leader (etcd#9395).
            if try await probe.range(.key("/")).header.raftTerm == term {
                #expect(took < .seconds(ttl + 1) + .milliseconds(900), "withdrawn after \(took)")
            }
            #expect(watcher.status.remoteEndpoints == 0 && watcher.status.remoteNodes == 0)
        }

        @Test func anUnreachableStoreWithdrawsNothingAndAResyncAcrossACompactionMissesNoDelete() async throws {
            let lab = try EtcdLab(members: 3)
            defer { lab.cleanup() }
            let keys = try ClusterKeys(prefix: "/vrt")
            let logger = Logger(label: "test")
            let writer = try lab.client()
            let store = ClusterStore(client: writer, keys: keys)

            let pods = (2..<6).map { Self.endpoint("a", "p\($0)", "192.0.2.\($0)") }
            for p in pods {
                try await writer.put(
                    Array(keys.endpoint(node: p.node, pod: p.pod, interface: p.interface).utf8),
                    RecordCodec.encode(p)
                )
            }
            // Garbage and a newer record in the prefix are skipped, not fatal.
            try await writer.put(keys.node("junk"), "{{{")
            try await writer.put(keys.node("future"), #"{"version":7,"name":"future"}"#)
            _ = store

            // The watcher talks to member 1 only, so stopping it cuts the watcher off.
            let watcher = ClusterWatcher(
                client: try lab.client(members: [1], timeout: .seconds(1)),
                keys: keys,
                localNode: "b",
                logger: logger
            )
            let seen = Collector()
            let wTask = Task { await watcher.run { u in seen.updates.withLock { $0.append(u) } } }
            defer { wTask.cancel() }
            try await seen.wait(for: "the pods") { Set($0) == Set(pods.map { .endpointUp($0) }) }
            #expect(watcher.status.view.skippedGarbage == 1 && watcher.status.view.skippedNewer == 1)

            try lab.stop(1)
            // Meanwhile: one pod deleted, one added, and history compacted past both.
            try await writer.delete(.key(keys.endpoint(node: "a", pod: pods[0].pod, interface: "eth0")))
            let added = Self.endpoint("a", "p9", "192.0.2.9")
            let last = try await writer.put(
                Array(keys.endpoint(node: "a", pod: added.pod, interface: "eth0").utf8),
                RecordCodec.encode(added)
            ).header.revision
            try await writer.compact(last)
            // Unreachable for a while: nothing is withdrawn.
            try await Task.sleep(for: .seconds(2))
            #expect(!watcher.status.connected)
            #expect(!seen.intents.contains { if case .endpointDown = $0 { true } else { false } })

            try lab.start(1)
            try await seen.wait(for: "the resync") { i in
                i.contains(.endpointDown(pods[0])) && i.contains(.endpointUp(added))
            }
            // Exactly those two changes: nothing else flapped.
            #expect(seen.intents.count == pods.count + 2)
            #expect(watcher.status.resyncs >= 1)
            #expect(watcher.status.remoteEndpoints == pods.count)
        }
    }
}
