// The node config (YAML), as vrouterd reads it at start and from its state snapshots:
// NodeConfig.parse (YAML, then every key, value and cross-reference), makeTables (the
// compiled dataplane tables), a routes file, and the snapshot writer read back.
//
// Input: the YAML text, then optionally a NUL byte and a routes file's lines. The routes
// file is written to a memory file that every VRF with `routesFile` (and the first VRF,
// when there are lines) is pointed at, so no other file is ever read.
//
// Checked: bad input is a ConfigError with a message, never a crash; a config that
// validates compiles into tables (or names what it cannot); the snapshot vrouterd would
// write of it reads back, and writing that again gives the same text.

import FuzzSupport
import Glibc
import VRouterControl
import VRouterCore

let routesFile = MemoryFile("routes")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let all = UnsafeRawBufferPointer(start: data, count: size)
    let split = all.firstIndex(of: 0) ?? size
    let text = String(decoding: all[..<split], as: UTF8.self)
    let routes =
        split < size
        ? UnsafeRawBufferPointer(rebasing: all[(split + 1)...]) : UnsafeRawBufferPointer(start: nil, count: 0)
    routesFile.replace(with: routes)

    var config: NodeConfig
    do {
        config = try NodeConfig.parse(text, file: "fuzz.yaml")
    } catch {
        require(!error.description.isEmpty, "an empty config error")
        return 0
    }
    for i in config.vrfs.indices where config.vrfs[i].routesFile != nil || (i == 0 && !routes.isEmpty) {
        config.vrfs[i].routesFile = routesFile.path
    }
    do {
        var compiled = try config.makeTables()
        _ = compiled.builder.build()
    } catch {
        require(!error.description.isEmpty, "an empty table error")
    }

    // The snapshot vrouterd writes of this node must read back as the same node.
    let written = config.yaml(routeFiles: [], journalSequence: 7)
    let reread: NodeConfig
    do {
        reread = try NodeConfig.parse(written, file: "snapshot.yaml")
    } catch {
        require(false, "the snapshot of a valid config does not read back: \(error)\n\(written)")
        return 0
    }
    let again = reread.yaml(routeFiles: [], journalSequence: 7)
    require(again == written, "the snapshot changes when read back and written again:\n\(written)\n---\n\(again)")
    return 0
}
