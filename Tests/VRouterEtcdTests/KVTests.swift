// The client's KV, transaction and lease calls against a real etcd (tools/etcd-lab).

import Foundation
import Testing
import VRouterTestSupport

@testable import VRouterEtcd

extension LiveEtcd {
    @Suite struct KVTests {
        @Test func putRangeDeleteWithRevisionsLimitsAndPrevKV() async throws {
            let lab = try EtcdLab(members: 1)
            defer { lab.cleanup() }
            let etcd = try lab.client()
            defer { etcd.close() }

            let first = try await etcd.put("/t/a", "1")
            try await etcd.put("/t/b", "2")
            try await etcd.put("/t/c", "3")
            try await etcd.put("/u/x", "outside the prefix")
            let updated = try await etcd.put("/t/a", "1b", prevKV: true)
            #expect(updated.prevKV?.valueString == "1")
            #expect(updated.header.revision == first.header.revision + 4)

            let all = try await etcd.range(.prefix("/t/"))
            #expect(all.kvs.map(\.keyString) == ["/t/a", "/t/b", "/t/c"])
            #expect(all.count == 3)
            let a = try #require(all.kvs.first)
            #expect(a.valueString == "1b" && a.version == 2 && a.createRevision == first.header.revision)
            #expect(a.modRevision == updated.header.revision)

            // The past is readable until compacted.
            let before = try await etcd.range(.prefix("/t/"), revision: first.header.revision)
            #expect(before.kvs.map(\.valueString) == ["1"])

            let limited = try await etcd.range(.prefix("/t/"), limit: 2)
            #expect(limited.kvs.count == 2 && limited.more && limited.count == 3)
            let keys = try await etcd.range(.prefix("/t/"), keysOnly: true)
            #expect(keys.kvs.allSatisfy { $0.value.isEmpty } && keys.kvs.count == 3)
            let counted = try await etcd.range(.prefix("/t/"), countOnly: true)
            #expect(counted.kvs.isEmpty && counted.count == 3)
            #expect(try await etcd.get("/t/none") == nil)

            let deleted = try await etcd.delete(.prefix("/t/"), prevKV: true)
            #expect(deleted.deleted == 3)
            #expect(Set(deleted.prevKVs.map(\.keyString)) == ["/t/a", "/t/b", "/t/c"])
            #expect(try await etcd.range(.prefix("/t/")).kvs.isEmpty)
            #expect(try await etcd.get("/u/x")?.valueString == "outside the prefix")

            // Binary keys and values travel intact (base64 on the wire).
            let binaryKey: [UInt8] = [0x00, 0xff, 0x2f, 0x80]
            let binaryValue: [UInt8] = Array(0...255)
            try await etcd.put(binaryKey, binaryValue)
            let back = try await etcd.range(.key(binaryKey))
            #expect(back.kvs.first?.value == binaryValue)

            // Revisions out of range are their own errors.
            await #expect(throws: EtcdError.futureRevision(1_000_000)) {
                try await etcd.range(.prefix("/"), revision: 1_000_000)
            }
            let now = try await etcd.range(.key("/u/x")).header.revision
            try await etcd.compact(now)
            await #expect(throws: EtcdError.compacted(requested: first.header.revision, compactRevision: nil)) {
                try await etcd.range(.prefix("/t/"), revision: first.header.revision)
            }
        }

        @Test func prefixEndsCoverEdgeBytes() {
            #expect(KeyRange.prefixEnd(Array("/a/".utf8)) == Array("/a0".utf8))
            #expect(KeyRange.prefixEnd([0x61, 0xff]) == [0x62])
            #expect(KeyRange.prefixEnd([0xff, 0xff]) == [0])
            #expect(KeyRange.prefixEnd([]) == [0])
        }

        @Test func racingCreateIfAbsentHasExactlyOneWinner() async throws {
            let lab = try EtcdLab(members: 3)
            defer { lab.cleanup() }
            // One client per member, so the racing writes enter the cluster at different members.
            let clients = try (1...3).map { try lab.client(members: [$0]) }
            defer { for c in clients { c.close() } }

            for round in 0..<5 {
                let key = Array("/claims/block-\(round)".utf8)
                let results = try await withThrowingTaskGroup(of: (Int, TxnResponse).self) { group in
                    for claimer in 0..<6 {
                        let etcd = clients[claimer % 3]
                        group.addTask {
                            let r = try await etcd.txn(
                                [.absent(key)],
                                success: [.put(key: key, value: Array("node-\(claimer)".utf8))],
                                failure: [.range(.key(key))]
                            )
                            return (claimer, r)
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                let winners = results.filter { $0.1.succeeded }
                #expect(winners.count == 1, "round \(round): \(winners.count) winners")
                let owner = try await clients[0].range(.key(key)).kvs.first?.valueString
                #expect(owner == "node-\(winners.first?.0 ?? -1)")
                // Every loser was shown the winner's record in the same transaction.
                for (_, r) in results where !r.succeeded {
                    #expect(r.responses.first?.range?.kvs.first?.valueString == owner)
                }
            }

            // Compare-and-swap on the mod revision: the second writer with a stale revision loses.
            let etcd = clients[0]
            let key = Array("/claims/cas".utf8)
            let created = try await etcd.put(key, Array("v1".utf8))
            let rev = created.header.revision
            let a = try await etcd.txn([.unchanged(key, since: rev)], success: [.put(key: key, value: Array("a".utf8))])
            let b = try await etcd.txn([.unchanged(key, since: rev)], success: [.put(key: key, value: Array("b".utf8))])
            #expect(a.succeeded && !b.succeeded)
            // Comparisons on version, value and greater/less.
            let v = try await etcd.txn(
                [
                    Compare(key: key, .version(2)), Compare(key: key, .value(Array("a".utf8))),
                    Compare(key: key, .modRevision(rev), .greater),
                ],
                success: [.delete(.key(key), prevKV: true)]
            )
            #expect(v.succeeded)
            if case .delete(let d) = v.responses.first {
                #expect(d.deleted == 1 && d.prevKVs.first?.valueString == "a")
            }
        }

        @Test func leasesKeepKeysAliveAndExpiryDeletesThem() async throws {
            let lab = try EtcdLab(members: 3)
            defer { lab.cleanup() }
            let etcd = try lab.client()
            defer { etcd.close() }

            let kept = try await etcd.grantLease(ttl: 2)
            let dropped = try await etcd.grantLease(ttl: 2)
            // etcd raises a TTL under its minimum (1.5 election timeouts: 3 s in the lab).
            #expect(kept.ttl >= 2 && kept.id != 0 && kept.id != dropped.id)
            try await etcd.put("/lease/kept", "k", lease: kept.id)
            try await etcd.put("/lease/dropped", "d", lease: dropped.id)
            let status = try await etcd.leaseTimeToLive(kept.id, keys: true)
            #expect(status.grantedTTL == kept.ttl && status.keys == [Array("/lease/kept".utf8)])
            let start = try await etcd.range(.prefix("/lease/")).header.revision

            // Watch the prefix while one lease is kept alive and the other left to expire.
            let deleted = try await etcd.watch(WatchRequest(.prefix("/lease/"), startRevision: start + 1, prevKV: true))
            {
                stream -> WatchEvent? in
                let keeper = Task {
                    for _ in 0..<16 {
                        try await etcd.keepAliveOnce(kept.id)
                        try await Task.sleep(for: .milliseconds(500))
                    }
                }
                defer { keeper.cancel() }
                for try await r in stream {
                    if let e = r.events.first(where: { $0.kind == .delete }) { return e }
                }
                return nil
            }
            let event = try #require(deleted)
            #expect(event.kv.keyString == "/lease/dropped")
            #expect(event.prevKV?.valueString == "d" && event.prevKV?.lease == dropped.id)
            #expect(try await etcd.get("/lease/kept")?.valueString == "k")
            await #expect(throws: EtcdError.leaseNotFound(dropped.id)) { try await etcd.keepAliveOnce(dropped.id) }
            await #expect(throws: EtcdError.leaseNotFound(dropped.id)) { try await etcd.leaseTimeToLive(dropped.id) }
            // A put on a lease that is gone is refused, naming the lease.
            await #expect(throws: EtcdError.leaseNotFound(dropped.id)) {
                try await etcd.put("/lease/late", "x", lease: dropped.id)
            }

            // Revoking deletes the keys at once; revoking again is not an error.
            try await etcd.revokeLease(kept.id)
            #expect(try await etcd.get("/lease/kept") == nil)
            try await etcd.revokeLease(kept.id)
        }
    }
}
