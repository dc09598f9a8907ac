// What `flow list` and metrics read. Off the hot path: the control plane asks the worker
// (between frames) or reads a quiesced table.

extension FlowTable {
    /// Entries in the table.
    @inlinable public var count: Int { header.pointee.count }

    /// Entries of one VRF.
    public func count(vrf: UInt16) -> Int {
        Int(vrf) < vrfLimit ? Int(vrfCounts[Int(vrf)]) : 0
    }

    public var stats: FlowTableStats { header.pointee.stats }

    public func resetStats() { header.pointee.stats = FlowTableStats() }

    /// Bytes this table allocated: buckets and counters (or the memory it was given),
    /// per-VRF counts and quotas, scratch and header.
    public var memoryBytes: Int {
        Self.bucketBytes(capacity: capacity) + vrfLimit * 8 + Self.batchLimit * (2 + 4 + 8)
            + Self.cuckooNodes * 12 + MemoryLayout<FlowTableHeader>.stride
    }

    /// First occupied slot at or after `slot` (optionally of one VRF), or nil. Lets the
    /// control plane page through a live table a few hundred entries per call.
    public func nextOccupied(from slot: Int, vrf: UInt16? = nil) -> UInt32? {
        var s = Swift.max(0, slot)
        while s < slotCount {
            let e = entry(UInt32(s >> 1), s & 1)
            if Self.isOccupied(e) && (vrf == nil || Key.load(e).vrf == vrf!) { return UInt32(s) }
            s += 1
        }
        return nil
    }

    /// Calls `body` for every entry (of `vrf` if given) in slot order.
    public func forEach(vrf: UInt16? = nil, _ body: (UInt32, Key, FlowValue) throws -> Void) rethrows {
        var s = 0
        while let slot = nextOccupied(from: s, vrf: vrf) {
            // Safe: nextOccupied returned an occupied slot.
            try body(slot, key(at: slot)!, value(at: slot)!)
            s = Int(slot) + 1
        }
    }
}
