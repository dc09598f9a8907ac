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

    /// Bytes this table allocated: buckets (or the memory it was given), per-VRF counts
    /// and quotas, batch scratch and header.
    public var memoryBytes: Int {
        (Int(bucketMask) + 1) * Self.blockSize + vrfLimit * 8 + Self.batchLimit * (8 + 2)
            + MemoryLayout<FlowTableHeader>.stride
    }

    /// First occupied slot at or after `slot` (optionally of one VRF), or nil. Lets the
    /// control plane page through a live table a few hundred entries per call.
    public func nextOccupied(from slot: Int, vrf: UInt16? = nil) -> UInt32? {
        var s = Swift.max(0, slot)
        while s < slotCount {
            let bucket = UInt32(s >> 3)
            let blk = block(bucket)
            var lanes = Self.occupiedLanes(blk)
            var best = -1
            while lanes != 0 {
                let lane = Self.lane(ofBit: lanes.trailingZeroBitCount)
                lanes &= lanes &- 1
                guard lane >= s & 7, best < 0 || lane < best else { continue }
                if let vrf, Self.key(entry(blk, lane)).vrf != vrf { continue }
                best = lane
            }
            if best >= 0 { return bucket << 3 | UInt32(best) }
            s = (s | 7) + 1
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
