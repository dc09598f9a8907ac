import Testing

@testable import VRouterCore

/// Random operation sequences against a Dictionary model, for both key types. The model
/// cannot predict which bucket a key lands in, so it learns evictions from the table and
/// checks them: the victim must be one of the new key's 4 candidates and the least
/// recently used of them.
@Suite struct FlowTableModelTests {
    struct ModelEntry: Equatable {
        var value: FlowValue
    }

    /// A small key space over few VRFs so buckets fill, collide, evict and move.
    static func v4Key(_ rng: inout SplitMix64, space: Int) -> IPv4FlowKey {
        let i = Int(rng.next() % UInt64(space))
        return IPv4FlowKey(
            vrf: UInt16(i % 4),
            proto: i % 3 == 0 ? 6 : 17,
            src: 0xC633_6400 | UInt32(i & 0xFF),
            dst: 0xCB00_7100 | UInt32((i >> 8) & 0xFF),
            sport: UInt16(1024 + i % 7),
            dport: 443
        )
    }

    static func v6Key(_ rng: inout SplitMix64, space: Int) -> IPv6FlowKey {
        let i = Int(rng.next() % UInt64(space))
        let prefix = IPv6Address("2001:db8::")!.value
        return IPv6FlowKey(
            vrf: UInt16(i % 4),
            proto: 17,
            src: prefix | UInt128(i & 0xFF),
            dst: prefix | UInt128(i >> 8) << 64 | 1,
            sport: UInt16(i % 5),
            dport: 53
        )
    }

    @Test func ipv4MatchesModel() {
        for seed in 1...4 as ClosedRange<UInt64> {
            Self.run(seed: seed, capacity: [40, 64, 128, 200][Int(seed - 1)], space: 2000, makeKey: Self.v4Key)
        }
    }

    @Test func ipv6MatchesModel() {
        for seed in 11...13 as ClosedRange<UInt64> {
            Self.run(seed: seed, capacity: [40, 64, 160][Int(seed - 11)], space: 2000, makeKey: Self.v6Key)
        }
    }

    static func run<Key: FlowKey>(
        seed: UInt64,
        capacity: Int,
        space: Int,
        makeKey: (inout SplitMix64, Int) -> Key
    ) {
        var rng = SplitMix64(seed: seed)
        let table = FlowTable<Key>(capacity: capacity, vrfLimit: 8)
        defer { table.deallocate() }
        var model: [Key: FlowValue] = [:]
        var quotas = [Int](repeating: Int.max, count: 8)
        var now: UInt32 = 1000
        let idle: UInt32 = 2000
        let closing: UInt32 = 50
        var sawEviction = false
        var sawMove = false
        var sawQuota = false
        var sawExpire = false

        func candidates(_ key: Key) -> [UInt32] {
            let h = table.hash(key)
            let b1 = table.primaryBucket(h)
            let b2 = table.alternateBucket(h)
            return [b1 << 1, b1 << 1 | 1, b2 << 1, b2 << 1 | 1]
        }
        func checkValue(_ key: Key, _ slot: UInt32) {
            #expect(table.key(at: slot) == key)
            #expect(table.value(at: slot) == model[key], "\(key)")
        }

        for step in 0..<6000 {
            now &+= UInt32(rng.next() % 4)
            let op = rng.next() % 100
            let key = makeKey(&rng, space)
            switch op {
            case 0..<35:  // insert
                let before = table.stats
                let cands = candidates(key).compactMap { s in table.key(at: s).map { (s, $0) } }
                let candKeys = Set(cands.map { $0.1 })
                let value = FlowValue(
                    nexthop: UInt32(truncatingIfNeeded: rng.next()) & 0xF_FFFF,
                    label: UInt32(step),
                    generation: UInt32(rng.next() % 3),
                    flags: rng.next() % 10 == 0 ? .closing : [],
                    packets: rng.next() % 2,  // zero: the table relies on empty lanes' counters being zero
                    bytes: 64 * (rng.next() % 2)
                )
                let result = table.insert(key, hash: table.hash(key), value: value, now: now)
                let vrf = Int(key.vrf)
                let vrfCount = model.keys.filter { Int($0.vrf) == vrf }.count
                if var existing = model[key] {
                    // Present: action replaced, counters kept, lastSeen refreshed.
                    guard case .success(let slot) = result else {
                        Issue.record("insert of a present key failed: \(result)")
                        return
                    }
                    existing.nexthop = value.nexthop
                    existing.label = value.label
                    existing.generation = value.generation
                    existing.flags = value.flags
                    existing.lastSeen = now
                    model[key] = existing
                    checkValue(key, slot)
                } else if vrfCount >= quotas[vrf] {
                    #expect(result == .failure(.quotaExceeded))
                    #expect(table.stats.quotaExceeded == before.quotaExceeded + 1)
                    sawQuota = true
                } else {
                    guard case .success(let slot) = result else {
                        Issue.record("insert failed: \(result)")
                        return
                    }
                    let evicted = table.stats.evictions - before.evictions
                    #expect(evicted <= 1)
                    if table.stats.moves > before.moves { sawMove = true }
                    if evicted == 1 {
                        sawEviction = true
                        // The victim is the least recently used candidate; only when
                        // all four candidates were empty (at capacity) is it another
                        // entry.
                        let gone = Set(model.keys.filter { table.lookup($0) == FlowTable<Key>.miss })
                        #expect(gone.count == 1, "exactly one flow evicted")
                        if let victim = gone.first {
                            if candKeys.isEmpty {
                                #expect(model.count == capacity)
                            } else {
                                #expect(candKeys.contains(victim), "victim is a candidate")
                                let victimAge = now &- model[victim]!.lastSeen
                                for k in candKeys {
                                    guard let v = model[k] else {
                                        Issue.record("table holds \(k), the model does not")
                                        continue
                                    }
                                    #expect(now &- v.lastSeen <= victimAge, "evicted a more recent flow")
                                }
                            }
                            model[victim] = nil
                        }
                    } else {
                        #expect(model.count < capacity, "no eviction only below capacity")
                    }
                    var stored = value
                    stored.lastSeen = now
                    model[key] = stored
                    checkValue(key, slot)
                }
            case 35..<60:  // lookup, and touch on a hit
                let slot = table.lookup(key)
                #expect((slot != FlowTable<Key>.miss) == (model[key] != nil))
                if slot != FlowTable<Key>.miss {
                    checkValue(key, slot)
                    let bytes = Int(rng.next() % 1500)
                    table.touch(slot, bytes: bytes, now: now)
                    model[key]!.packets += 1
                    model[key]!.bytes += UInt64(bytes)
                    model[key]!.lastSeen = now
                }
            case 60..<66:  // update (re-resolve) on a hit
                let slot = table.lookup(key)
                if slot != FlowTable<Key>.miss {
                    let v = FlowValue(nexthop: 7, label: 8, generation: 9, flags: [.drop])
                    table.update(slot, v)
                    model[key]!.nexthop = 7
                    model[key]!.label = 8
                    model[key]!.generation = 9
                    model[key]!.flags = [.drop]
                    checkValue(key, slot)
                }
            case 66..<70:  // mark closing
                let slot = table.lookup(key)
                if slot != FlowTable<Key>.miss {
                    table.addFlags(slot, .closing)
                    model[key]!.flags.insert(.closing)
                }
            case 70..<80:  // remove by key, or by slot
                let present = model[key] != nil
                if rng.next() % 2 == 0 {
                    #expect(table.remove(key) == present)
                } else {
                    let slot = table.lookup(key)
                    #expect(slot == FlowTable<Key>.miss || table.remove(slot))
                }
                model[key] = nil
            case 80..<86:  // partial or full expiry sweep
                let full = rng.next() % 3 == 0
                let scan = full ? table.slotCount : Int(rng.next() % 40)
                let dead = Set(
                    model.filter { k, v in
                        now &- v.lastSeen > (v.flags.isDisjoint(with: .shortLived) ? idle : closing)
                    }.keys
                )
                let n = table.expire(now: now, idleTimeout: idle, closingTimeout: closing, maxScan: scan)
                let gone = Set(model.keys.filter { table.lookup($0) == FlowTable<Key>.miss })
                #expect(gone.count == n)
                #expect(gone.isSubset(of: dead), "expired a live flow")
                if full { #expect(gone == dead, "full sweep left an idle flow") }
                if n > 0 { sawExpire = true }
                for k in gone { model[k] = nil }
            case 86..<88:  // quota change
                let vrf = UInt16(rng.next() % 4)
                let q = rng.next() % 3 == 0 ? nil : Int(rng.next() % UInt64(capacity / 2 + 1))
                table.setQuota(vrf: vrf, max: q)
                quotas[Int(vrf)] = q ?? Int.max
                #expect((table.quota(vrf: vrf) ?? Int.max) == quotas[Int(vrf)])
            case 88..<89 where rng.next() % 5 == 0:  // drop a whole VRF (rarely: it drains)
                let vrf = UInt16(rng.next() % 4)
                let expected = model.keys.filter { $0.vrf == vrf }.count
                #expect(table.removeAll(vrf: vrf) == expected)
                model = model.filter { $0.key.vrf != vrf }
            default:  // batched lookup over random keys equals single lookups and the model
                var keys = (0..<Int(rng.next() % 300)).map { _ in makeKey(&rng, space) }
                if keys.isEmpty { keys = [key] }
                let hashes = keys.map { table.hash($0) }
                var slots = [UInt32](repeating: 0, count: keys.count)
                table.lookup(keys: keys, hashes: hashes, count: keys.count, slots: &slots)
                for (i, k) in keys.enumerated() {
                    #expect(slots[i] == table.find(k, hash: hashes[i]))
                    #expect((slots[i] != FlowTable<Key>.miss) == (model[k] != nil))
                }
            }
            // Invariants after every operation.
            #expect(table.count == model.count)
            #expect(table.count <= capacity)
            if step % 97 == 0 {
                for vrf in 0..<4 as Range<UInt16> {
                    #expect(table.count(vrf: vrf) == model.keys.filter { $0.vrf == vrf }.count)
                }
                var listed: [Key: FlowValue] = [:]
                table.forEach { _, k, v in listed[k] = v }
                #expect(listed == model)
            }
        }
        #expect(
            sawEviction && sawQuota && sawExpire,
            "seed \(seed): eviction \(sawEviction) quota \(sawQuota) expire \(sawExpire) move \(sawMove) stats \(table.stats)"
        )
        #expect(sawMove, "sequence exercised cuckoo moves")
    }
}
