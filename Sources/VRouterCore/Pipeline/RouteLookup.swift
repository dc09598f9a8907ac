// route-lookup: for flow-cache misses, the VRF's LPM gives the (nexthop, label) the
// destination routes to (an MPLS label already named its nexthop: no lookup), and the
// result is installed in the flow cache so the flow's next packets skip this node.
// No route: an ICMP destination-unreachable goes back to the source (rate-limited) and
// the packet is dropped as `no_route`. Resolved packets join the hits on ipList.
//
// The frame's destination lookups are made first, together: the misses of each VRF and
// family go to the FIB's batch lookup, whose loads overlap (one at a time, each lookup's
// loads are dependent: ~23 M/s at 1M routes against ~150–200 M/s batched).

extension Pipeline {
    @inline(__always)
    mutating func routeLookup(_ view: ForwardingView, now: UInt32) {
        let n = missList.count
        guard n > 0 else { return }
        let pool = self.pool
        lookupDestinations(view)
        for i in 0..<n {
            let idx = missList[i]
            let m = pool.meta(idx)
            let flags = m.pointee.flags
            if flags.contains(.toNode) {
                // Only a translation's reverse entry is for the node's address; this one
                // is stale (re-checked), set up by an earlier packet of this frame, or missing.
                if resumeReverse(m, view, now: now) {
                    ipList.append(idx)
                } else {
                    drop(idx, .natNoMapping)
                }
                continue
            }
            if !flags.contains(.forcedNexthop) {
                guard resolve(m, pool.buffer(idx), view, first: missRoutes[i]) else {
                    icmpError(idx, .unreachable, view: view, now: now)
                    continue
                }
            }
            let kind = view.nexthop(m.pointee.nexthop)?.pointee.kind ?? .invalid
            if kind == .sourceNAT {
                translateNew(idx, m, view, now: now)
                continue
            }
            if flags.contains(.underlayRouted) && kind != .encap {
                // Untunneled from the fabric: local pods only, never back out (no transit).
                drop(idx, .notTunnel)
                continue
            }
            if m.pointee.flow != PacketMeta.noFlow && flags.contains(.ipv4) { untranslateStale(m) }
            install(m, view, now: now)
            ipList.append(idx)
        }
    }

    /// Records the resolved action in the flow cache: over the stale entry of the same key
    /// (insert replaces an existing key's action), or as a new entry (a full table evicts
    /// its least recently used candidate; a VRF over its quota gets no entry, and its
    /// packets keep taking this slower path). Slots found by flow-lookup are not reused
    /// here: an insert earlier in this loop may have moved entries between slots.
    @inline(__always)
    mutating func install(_ m: UnsafeMutablePointer<PacketMeta>, _ view: ForwardingView, now: UInt32) {
        let value = FlowValue(
            nexthop: m.pointee.nexthop,
            label: m.pointee.label,
            generation: view.vrfs[Int(m.pointee.vrf)].generation,
            flags: m.pointee.flags.contains(.tcpClosing) ? .closing : []
        )
        let v4 = m.pointee.flags.contains(.ipv4)
        let pos = Int(m.pointee.aux)
        let r =
            v4
            ? flows4.insert(keys4[pos], hash: hashes4[pos], value: value, now: now)
            : flows6.insert(keys6[pos], hash: hashes6[pos], value: value, now: now)
        guard case .success(let slot) = r else {
            m.pointee.flow = PacketMeta.noFlow
            counters.count(.flowInstallFailed)
            return
        }
        let fresh = m.pointee.flow == PacketMeta.noFlow
        m.pointee.flow = slot
        // A stale entry's packet was counted by flow-lookup's hit already.
        guard fresh else { return }
        counters.count(.flowInstalled)
        let bytes = Int(m.pointee.length)
        if v4 { flows4.touch(slot, bytes: bytes, now: now) } else { flows6.touch(slot, bytes: bytes, now: now) }
    }

    /// The LPM results of the frame's misses (`missRoutes[i]` for `missList[i]`; `LPM.miss`
    /// for those that route otherwise, have no VRF, or are left to `resolve`'s own lookup).
    /// Misses are grouped by VRF and family over the whole frame, not in runs of
    /// neighbours: with pods of several VRFs sending at once a run is one or two packets
    /// long, and one lookup alone waits for each of its loads in turn (2 VRFs: runs of 2 on
    /// average). A counting sort over the first `lpmGroups` (VRF, family) pairs of the frame
    /// puts each pair's misses together, each pair is one batch lookup, and the results are
    /// put back in frame order; misses of further pairs (a frame of many VRFs) are looked up
    /// one at a time by `resolve`.
    @inline(__always)
    mutating func lookupDestinations(_ view: ForwardingView) {
        let n = missList.count
        let pool = self.pool
        let groups = Self.lpmGroups
        let groupKeys = lpmGroupKeys
        let groupStarts = lpmGroupStarts
        var used = 0
        // Which group each miss belongs to (`groups`: none), and how many each has.
        for g in 0...groups { groupStarts[g] = 0 }
        for i in 0..<n {
            missRoutes[i] = LPM.miss
            let m = pool.meta(missList[i])
            let flags = m.pointee.flags
            // The install after it reads the alternate bucket too (find, then a free lane or
            // a cuckoo move): its line is requested now, so those misses overlap.
            if m.pointee.flow == PacketMeta.noFlow && !flags.contains(.toNode) {
                let pos = Int(m.pointee.aux)
                if flags.contains(.ipv4) {
                    flows4.request(flows4.bucket(flows4.alternateBucket(hashes4[pos])), true)
                } else {
                    flows6.request(flows6.bucket(flows6.alternateBucket(hashes6[pos])), true)
                }
            }
            var g = groups
            // Safe: i < n ≤ Frame.defaultCapacity, the size of missGroups.
            if !flags.contains(.toNode) && !flags.contains(.forcedNexthop) && view.vrf(m.pointee.vrf) != nil {
                let key = UInt32(m.pointee.vrf) | (flags.contains(.ipv4) ? 0 : 0x1_0000)
                g = 0
                while g < used && groupKeys[g] != key { g &+= 1 }
                if g == used && used < groups {
                    groupKeys[g] = key
                    used &+= 1
                }
            }
            missGroups[i] = UInt8(truncatingIfNeeded: g)
            groupStarts[g] &+= 1
        }
        guard used > 0 else { return }
        // Counting sort: each group's misses in frame order at lpmPositions[start..<end].
        var sum = 0
        for g in 0..<used {
            let c = groupStarts[g]
            groupStarts[g] = sum
            sum &+= c
        }
        for i in 0..<n {
            let g = Int(missGroups[i])
            guard g < used else { continue }
            lpmPositions[groupStarts[g]] = UInt16(truncatingIfNeeded: i)
            groupStarts[g] &+= 1
        }
        // Now groupStarts[g] is the end of group g; one batch lookup per group.
        var start = 0
        for g in 0..<used {
            let end = groupStarts[g]
            let v4 = groupKeys[g] & 0x1_0000 == 0
            for k in start..<end {
                let i = Int(lpmPositions[k])
                let idx = missList[i]
                let m = pool.meta(idx)
                let p = pool.buffer(idx)
                let l3 = Int(m.pointee.l3)
                // Safe: k - start < n ≤ Frame.defaultCapacity, the size of both key arrays.
                if v4 { lpmKeys4[k &- start] = p.be32(l3 &+ 16) } else { lpmKeys6[k &- start] = p.be128(l3 &+ 24) }
            }
            // Safe: the group's VRF was checked above (view.vrf != nil).
            let vrf = view.vrfs + Int(groupKeys[g] & 0xFFFF)
            if v4 {
                vrf.pointee.v4.lookup(lpmKeys4, lpmResults, count: end &- start)
            } else {
                vrf.pointee.v6.lookup(lpmKeys6, lpmResults, count: end &- start)
            }
            for k in start..<end { missRoutes[Int(lpmPositions[k])] = lpmResults[k &- start] }
            start = end
        }
    }

    /// LPM in the packet's VRF; fills meta.nexthop/label. `first` is the LPM result for
    /// the packet's own VRF when the frame's batch made it (`LPM.miss` otherwise: looked up
    /// here). A VRF-translate nexthop routes again in its VRF (once: a second translate is
    /// no route). An SNAT nexthop is left for the caller (translateNew routes in the
    /// underlay VRF itself). False when there is no route.
    @inline(__always)
    mutating func resolve(
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ p: UnsafeMutableRawPointer,
        _ view: ForwardingView,
        first: UInt32 = LPM.miss
    ) -> Bool {
        let found = first != LPM.miss ? routeTarget(first, view) : lookupRoute(vrf: m.pointee.vrf, m, p, view)
        guard let t = found else { return false }
        m.pointee.nexthop = t.nexthop
        m.pointee.label = t.label
        guard let nh = view.nexthop(t.nexthop) else { return true }  // rewrite drops it
        if nh.pointee.kind == .vrfTranslate {
            guard let u = lookupRoute(vrf: nh.pointee.vrf, m, p, view), let unh = view.nexthop(u.nexthop),
                unh.pointee.kind != .vrfTranslate && unh.pointee.kind != .sourceNAT
            else { return false }
            m.pointee.nexthop = u.nexthop
            m.pointee.label = u.label
        }
        return true
    }

    /// The route of the packet's destination in VRF `vrf`, or nil.
    @inline(__always)
    func lookupRoute(
        vrf id: UInt16,
        _ m: UnsafeMutablePointer<PacketMeta>,
        _ p: UnsafeMutableRawPointer,
        _ view: ForwardingView
    ) -> RouteTarget? {
        guard let vrf = view.vrf(id) else { return nil }
        let l3 = Int(m.pointee.l3)
        let r =
            m.pointee.flags.contains(.ipv4)
            ? vrf.pointee.v4.lookup(p.be32(l3 &+ 16))
            : vrf.pointee.v6.lookup(p.be128(l3 &+ 24))
        return routeTarget(r, view)
    }

    /// What an LPM result names, or nil for a miss.
    @inline(__always)
    func routeTarget(_ r: UInt32, _ view: ForwardingView) -> RouteTarget? {
        guard r != LPM.miss, Int(r) < view.resultCount else { return nil }
        return view.results[Int(r)]
    }
}
