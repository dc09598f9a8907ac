// Watches against a real etcd: history from a revision, compaction, progress, and a watch that
// breaks when its member goes and resumes elsewhere without losing an event.

import Foundation
import Testing
import VRouterTestSupport

@testable import VRouterEtcd

extension LiveEtcd {
    @Suite struct WatchTests {
        @Test func watchFromARevisionDeliversHistoryInOrderWithPrevKV() async throws {
            let lab = try EtcdLab(members: 1)
            defer { lab.cleanup() }
            let etcd = try lab.client()
            defer { etcd.close() }

            let r1 = try await etcd.put("/w/a", "1").header.revision
            try await etcd.put("/w/b", "2")
            try await etcd.put("/w/a", "1b")
            try await etcd.delete(.key("/w/b"))
            try await etcd.put("/x/other", "not watched")

            let seen = try await etcd.watch(WatchRequest(.prefix("/w/"), startRevision: r1 + 1, prevKV: true)) {
                stream in
                #expect(stream.created.created)
                #expect(stream.created.header.revision == r1 + 4)
                var events: [WatchEvent] = []
                for try await r in stream {
                    events += r.events
                    if events.count == 3 { break }
                }
                return events
            }
            #expect(seen.map(\.kind) == [.put, .put, .delete])
            #expect(seen.map(\.kv.keyString) == ["/w/b", "/w/a", "/w/b"])
            #expect(seen[1].prevKV?.valueString == "1" && seen[1].kv.valueString == "1b")
            #expect(seen[2].prevKV?.valueString == "2" && seen[2].kv.modRevision == r1 + 3)
            #expect(zip(seen, seen.dropFirst()).allSatisfy { $0.kv.modRevision < $1.kv.modRevision })

            // Live events arrive after the confirmation, and progress messages on a quiet watch
            // (the lab asks etcd for one every 2 s) carry the store's revision.
            let (live, progress) = try await etcd.watch(WatchRequest(.prefix("/w/"), progressNotify: true)) { stream in
                try await etcd.put("/w/live", "now")
                var live: WatchEvent?
                var progress: Int64?
                for try await r in stream {
                    if let e = r.events.first { live = e }
                    if r.isProgress { progress = r.header.revision }
                    if live != nil && progress != nil { break }
                }
                return (live, progress)
            }
            #expect(live?.kv.keyString == "/w/live")
            #expect(progress == live?.kv.modRevision)
        }

        @Test func watchFromACompactedRevisionReportsTheCompactRevision() async throws {
            let lab = try EtcdLab(members: 1)
            defer { lab.cleanup() }
            let etcd = try lab.client()
            defer { etcd.close() }

            let old = try await etcd.put("/c/a", "1").header.revision
            for i in 0..<5 { try await etcd.put("/c/a", "\(i)") }
            let now = try await etcd.put("/c/a", "last").header.revision
            try await etcd.compact(now - 1)
            await #expect(throws: EtcdError.compacted(requested: old, compactRevision: now - 1)) {
                try await etcd.watch(WatchRequest(.prefix("/c/"), startRevision: old)) { stream in
                    for try await _ in stream {}
                }
            }
            // From the compact revision on, it works.
            let first = try await etcd.watch(WatchRequest(.prefix("/c/"), startRevision: now - 1)) { stream in
                for try await r in stream { return r.events.first?.kv.modRevision }
                return nil
            }
            #expect(first == now - 1)
        }

        @Test func aWatchBrokenByItsMemberResumesOnAnotherWithoutLosingEvents() async throws {
            let lab = try EtcdLab(members: 3)
            defer { lab.cleanup() }
            let etcd = try lab.client()
            let writer = try lab.client()
            defer {
                etcd.close()
                writer.close()
            }
            let start = try await writer.put("/r/start", "0").header.revision

            // Writes go on throughout; the watch's member is killed in the middle. A write
            // caught in the election it may cause comes back indeterminate: the writer reads
            // the key back to learn whether it applied (nobody else writes it), and writes
            // again if not. Writer and watcher run side by side: the first to fail ends both
            // (a writer that gave up would leave the watch waiting for writes that never come).
            enum Outcome {
                case written([Int64])
                case seen([Int64], breaks: Int)
            }
            var written: [Int64] = []
            var seen: [Int64] = []
            var breaks = 0
            try await withThrowingTaskGroup(of: Outcome.self) { group in
                group.addTask {
                    var revisions: [Int64] = []
                    for i in 0..<40 {
                        let key = "/r/k\(i % 5)"
                        while true {
                            do {
                                revisions.append(
                                    try await writer.put(key, "\(i)", timeout: .seconds(10)).header.revision
                                )
                                break
                            } catch EtcdError.indeterminate {
                                if let kv = try await writer.get(key), kv.valueString == "\(i)" {
                                    revisions.append(kv.modRevision)
                                    break
                                }
                            }
                        }
                        try await Task.sleep(for: .milliseconds(25))
                    }
                    return .written(revisions)
                }
                group.addTask {
                    var seen: [Int64] = []
                    var next = start + 1
                    var breaks = 0
                    while seen.count < 40 {
                        do {
                            try await etcd.watch(WatchRequest(.prefix("/r/k"), startRevision: next)) { stream in
                                let member = lab.endpoints.firstIndex(of: stream.endpoint.description)! + 1
                                for try await r in stream {
                                    for e in r.events {
                                        seen.append(e.kv.modRevision)
                                        next = e.kv.modRevision + 1
                                    }
                                    if seen.count >= 10 && breaks == 0 {
                                        breaks += 1
                                        try lab.kill(member)
                                    }
                                    if seen.count >= 40 { return }
                                }
                            }
                        } catch let e as EtcdError {
                            guard case .watchClosed = e else { throw e }
                        }
                    }
                    return .seen(seen, breaks: breaks)
                }
                for try await outcome in group {
                    switch outcome {
                    case .written(let w): written = w
                    case .seen(let s, let b): (seen, breaks) = (s, b)
                    }
                }
            }
            #expect(breaks == 1)
            #expect(seen == written, "every write seen once, in order, across the break")
        }
    }
}
