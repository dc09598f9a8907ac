// The route set a FIB was built from, kept so that `applying` can rebuild only what a
// batch of changes touched. Sorted by (address, length), one entry per prefix, as three
// flat arrays: 9 bytes per IPv4 route, 21 per IPv6 route (counted as the FIB's ribBytes).
//
// The order matters to the builder: a prefix sorts before every prefix it contains, and
// the prefixes inside any aligned block are one contiguous run.

struct RouteList<K: FixedWidthInteger & UnsignedInteger & Sendable>: Sendable {
    var addrs: [K] = []
    var lens: [UInt8] = []
    var values: [UInt32] = []

    var count: Int { addrs.count }
    var bytes: Int {
        addrs.capacity * MemoryLayout<K>.stride + lens.capacity + values.capacity * 4
    }

    init() {}

    /// Sorted and deduplicated: for equal prefixes the last one in `routes` wins.
    init(unsorted routes: [(addr: K, len: UInt8, value: UInt32)]) {
        var sorted = true
        var i = 1
        while i < routes.count {
            let a = routes[i - 1]
            let b = routes[i]
            if !(a.addr < b.addr || (a.addr == b.addr && a.len < b.len)) {
                sorted = false
                break
            }
            i += 1
        }
        addrs.reserveCapacity(routes.count)
        lens.reserveCapacity(routes.count)
        values.reserveCapacity(routes.count)
        if sorted {
            for r in routes {
                addrs.append(r.addr)
                lens.append(r.len)
                values.append(r.value)
            }
            return
        }
        // The position breaks ties so the last duplicate wins whatever the sort's stability.
        var order = Array(0..<routes.count)
        routes.withUnsafeBufferPointer { rs in
            order.sort { x, y in
                let a = rs[x]
                let b = rs[y]
                if a.addr != b.addr { return a.addr < b.addr }
                if a.len != b.len { return a.len < b.len }
                return x < y
            }
            var k = 0
            while k < order.count {
                var last = order[k]
                while k + 1 < order.count, rs[order[k + 1]].addr == rs[last].addr,
                    rs[order[k + 1]].len == rs[last].len
                {
                    k += 1
                    last = order[k]
                }
                addrs.append(rs[last].addr)
                lens.append(rs[last].len)
                values.append(rs[last].value)
                k += 1
            }
        }
    }

    /// First index whose (address, length) is not below (addr, len).
    func lowerBound(_ addr: K, _ len: UInt8) -> Int {
        var lo = 0
        var hi = addrs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if addrs[mid] < addr || (addrs[mid] == addr && lens[mid] < len) {
                lo = mid + 1
            } else {
                hi = mid
            }
        }
        return lo
    }

    /// First index whose address is not below addr.
    func lowerBound(_ addr: K) -> Int { lowerBound(addr, 0) }

    /// Index of the exact prefix, if present.
    func find(_ addr: K, _ len: UInt8) -> Int? {
        let i = lowerBound(addr, len)
        return i < count && addrs[i] == addr && lens[i] == len ? i : nil
    }

    /// Marks a deletion in a list of changes (route values are below LPM.maxValue).
    static var deleted: UInt32 { .max }

    /// This list with `changes` (sorted, one per prefix; value `deleted` = delete) merged
    /// in. One linear pass: at 1M routes about the cost of copying the arrays.
    func merging(_ changes: RouteList<K>) -> RouteList<K> {
        var out = RouteList()
        out.addrs.reserveCapacity(count + changes.count)
        out.lens.reserveCapacity(count + changes.count)
        out.values.reserveCapacity(count + changes.count)
        var i = 0
        var j = 0
        while i < count || j < changes.count {
            let takeOld: Bool
            var same = false
            if j == changes.count {
                takeOld = true
            } else if i == count {
                takeOld = false
            } else {
                let a = addrs[i]
                let b = changes.addrs[j]
                if a != b {
                    takeOld = a < b
                } else if lens[i] != changes.lens[j] {
                    takeOld = lens[i] < changes.lens[j]
                } else {
                    takeOld = false
                    same = true
                }
            }
            if takeOld {
                // Copy the run of old routes below the next change in one go.
                var e = i + 1
                if j < changes.count {
                    let b = changes.addrs[j]
                    let bl = changes.lens[j]
                    let bound = lowerBound(b, bl)
                    e = max(e, min(bound, count))
                } else {
                    e = count
                }
                out.addrs.append(contentsOf: addrs[i..<e])
                out.lens.append(contentsOf: lens[i..<e])
                out.values.append(contentsOf: values[i..<e])
                i = e
            } else {
                if changes.values[j] != Self.deleted {
                    out.addrs.append(changes.addrs[j])
                    out.lens.append(changes.lens[j])
                    out.values.append(changes.values[j])
                }
                if same { i += 1 }
                j += 1
            }
        }
        return out
    }
}
