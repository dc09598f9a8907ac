// Keeping a node's state across restarts, crash included. The state directory holds:
//   snapshot-N/config.yaml (+ routes-*.txt)  the whole node as a config file (loadable by
//                                             the ordinary loader), with stateVersion and
//                                             the journal sequence it includes;
//   current -> snapshot-N                     switched by an atomic rename of a symlink;
//   journal.jsonl                              one line per API change after the snapshot,
//                                             fsynced before the API answers.
// A restart loads `current` and replays the journal lines past its sequence. Snapshots
// are written (atomically: files fsynced, then the symlink swapped) at start and when
// the journal grows long, and the journal is then truncated.

import Foundation
import VRouterAPI
import VRouterCore

public final class StatePersistence: @unchecked Sendable {  // Safe: used under the node's journal writer lock.
    public let directory: String
    private var journalHandle: FileHandle?
    /// The last journal record loaded (the node's numbering goes on from it).
    private(set) var sequence = 0
    private(set) var journalLength = 0
    /// What the last `load` cut off the journal's end: a record torn by a crash while it was
    /// written (never acknowledged: the API answers after the fsync), from `line` on.
    public private(set) var droppedTail: DroppedTail?
    public struct DroppedTail: Sendable, Equatable {
        public var line: Int
        public var bytes: Int
    }
    static let compactAfter = 20_000

    public init(directory: String) throws(ServiceError) {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(
                atPath: directory,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
        } catch {
            throw ServiceError("state directory \(directory): \(error.localizedDescription)")
        }
    }

    var currentPath: String { directory + "/current" }
    var journalPath: String { directory + "/journal.jsonl" }

    /// The saved node, with the journal records written after it, or nil on a first start.
    public func load() throws(ServiceError) -> (NodeConfig, [StateRecord])? {
        guard FileManager.default.fileExists(atPath: currentPath + "/config.yaml") else { return nil }
        let config: NodeConfig
        do {
            config = try NodeConfig.load(path: currentPath + "/config.yaml")
        } catch {
            throw ServiceError(
                "state \(currentPath)/config.yaml is unreadable, refusing to start with a silent reset: \(error.description)"
            )
        }
        var records: [StateRecord] = []
        sequence = config.journalSequence
        droppedTail = nil
        if let data = FileManager.default.contents(atPath: journalPath), !data.isEmpty {
            let decoder = JSONDecoder()
            // Where the last complete record ends, and the first line after it that is not one.
            var goodEnd = 0
            var bad: (line: Int, start: Int)?
            var lineNo = 0
            var start = data.startIndex
            while start < data.endIndex {
                lineNo += 1
                let newline = data[start...].firstIndex(of: UInt8(ascii: "\n"))
                let end = newline ?? data.endIndex
                let next = newline.map { $0 + 1 } ?? data.endIndex
                defer { start = next }
                // A record is a whole line: one without its newline was cut short by a crash.
                guard newline != nil, let entry = try? decoder.decode(JournalEntry.self, from: data[start..<end]) else {
                    if bad == nil { bad = (lineNo, start) }
                    continue
                }
                if let bad {
                    // A complete record after a damaged line: not a torn append but corruption,
                    // and dropping what follows would lose acknowledged changes.
                    throw ServiceError(
                        "state journal \(journalPath) line \(bad.line) is corrupt (complete records follow it), refusing to start with a silent reset"
                    )
                }
                goodEnd = next - data.startIndex
                guard entry.sequence > config.journalSequence else { continue }
                records.append(entry.record)
                sequence = entry.sequence
            }
            if let bad {
                // A torn tail: the write of a record that was never acknowledged (a crash while
                // it was written, or the zeros a file system leaves after one). The complete
                // records stay; the rest is cut off so that the next append starts on a line
                // of its own.
                droppedTail = DroppedTail(line: bad.line, bytes: data.count - goodEnd)
                guard truncate(journalPath, off_t(goodEnd)) == 0 else {
                    throw ServiceError(
                        "state journal \(journalPath): cannot cut its torn tail: \(String(cString: strerror(errno)))"
                    )
                }
            }
        }
        return (config, records)
    }

    /// The networks and pods of the current snapshot (nil when it has none).
    public func loadCNI() throws(ServiceError) -> CNISnapshot? {
        guard let data = FileManager.default.contents(atPath: currentPath + "/cni.json") else { return nil }
        do {
            return try JSONDecoder().decode(CNISnapshot.self, from: data)
        } catch {
            throw ServiceError(
                "state \(currentPath)/cni.json is unreadable, refusing to start with a silent reset: \(error)"
            )
        }
    }

    /// Appends records (numbered by the journal) and fsyncs them once. Errors are reported,
    /// not thrown: the changes are made.
    func append(_ entries: [JournalEntry]) throws(ServiceError) {
        var lines = Data()
        do {
            let encoder = JSONEncoder()
            for e in entries { lines += try encoder.encode(e) + Data("\n".utf8) }
        } catch { throw ServiceError("state journal: \(error)") }
        do {
            if journalHandle == nil {
                if !FileManager.default.fileExists(atPath: journalPath) {
                    FileManager.default.createFile(
                        atPath: journalPath,
                        contents: nil,
                        attributes: [.posixPermissions: 0o600]
                    )
                }
                journalHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: journalPath))
                try journalHandle!.seekToEnd()
            }
            try journalHandle!.write(contentsOf: lines)
            try journalHandle!.synchronize()
            journalLength += entries.count
            sequence = entries.last?.sequence ?? sequence
        } catch {
            throw ServiceError("state journal \(journalPath): \(error.localizedDescription)")
        }
    }

    /// Writes a snapshot of `config` (with `routes` per VRF name, already in routes-file
    /// lines) that includes the journal up to `sequence`, and truncates the journal.
    func snapshot(
        _ config: NodeConfig,
        routes: [String: [String]],
        extra: [String: Data] = [:],
        sequence: Int
    ) throws(ServiceError) {
        self.sequence = max(self.sequence, sequence)
        let fm = FileManager.default
        let name = "snapshot-\(sequence)-\(UInt64(Date().timeIntervalSince1970 * 1000))"
        let dir = directory + "/" + name
        do {
            try fm.createDirectory(
                atPath: dir,
                withIntermediateDirectories: false,
                attributes: [.posixPermissions: 0o700]
            )
            for (vrf, lines) in routes {
                try write(dir + "/routes-\(vrf).txt", Data((lines.joined(separator: "\n") + "\n").utf8))
            }
            for (file, data) in extra { try write(dir + "/" + file, data) }
            try write(
                dir + "/config.yaml",
                Data(config.yaml(routeFiles: Set(routes.keys), journalSequence: sequence).utf8)
            )
            try fsyncPath(dir)
            // Swap `current` atomically: a new symlink renamed over the old one.
            let link = directory + "/current.tmp"
            try? fm.removeItem(atPath: link)
            try fm.createSymbolicLink(atPath: link, withDestinationPath: name)
            guard rename(link, currentPath) == 0 else {
                throw ServiceError("rename \(link): \(String(cString: strerror(errno)))")
            }
            try fsyncPath(directory)
        } catch let e as ServiceError {
            throw e
        } catch {
            throw ServiceError("state snapshot \(dir): \(error.localizedDescription)")
        }
        // The journal up to `sequence` is in the snapshot now.
        try? journalHandle?.close()
        journalHandle = nil
        _ = truncate(journalPath, 0)
        journalLength = 0
        // Older snapshots go.
        for entry in (try? fm.contentsOfDirectory(atPath: directory)) ?? []
        where entry.hasPrefix("snapshot-") && entry != name {
            try? fm.removeItem(atPath: directory + "/" + entry)
        }
    }

    private func write(_ path: String, _ data: Data) throws {
        guard FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: 0o600])
        else {
            throw ServiceError("cannot write \(path)")
        }
        try fsyncPath(path)
    }

    private func fsyncPath(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ServiceError("open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw ServiceError("fsync \(path): \(String(cString: strerror(errno)))") }
    }
}

struct JournalEntry: Codable {
    var sequence: Int
    var record: StateRecord
}
