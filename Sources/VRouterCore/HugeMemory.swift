// Large, long-lived tables (FIB arrays, flow caches, packet pools) are read at random:
// with 4 KiB pages a 10 MB table needs thousands of TLB entries and most lookups pay a
// page walk on top of the cache miss. Regions of 2 MiB and more are mapped on their own
// and marked for transparent huge pages (MADV_HUGEPAGE; this kernel's THP is opt-in),
// smaller ones come from malloc. Not per packet: tables are built off the data path.

import Glibc

public enum HugeMemory {
    public static let hugePage = 2 << 20

    /// `bytes` of zeroed or uninitialised memory aligned to at least 64 bytes; returns the
    /// pointer and the length to pass to `free`.
    public static func allocate(bytes: Int) -> (UnsafeMutableRawPointer, Int) {
        let n = max(bytes, 1)
        if n >= hugePage {
            let length = (n + hugePage - 1) & ~(hugePage - 1)
            // Over-map by one huge page so the region can start on a 2 MiB boundary.
            if let raw = mmap(nil, length + hugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                raw != MAP_FAILED
            {
                let start = (Int(bitPattern: raw) + hugePage - 1) & ~(hugePage - 1)
                let lead = start - Int(bitPattern: raw)
                if lead > 0 { munmap(raw, lead) }
                let tail = hugePage - lead
                if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: start + length), tail) }
                let p = UnsafeMutableRawPointer(bitPattern: start)!
                _ = madvise(p, length, MADV_HUGEPAGE)
                return (p, -length)  // negative: mapped
            }
        }
        return (UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64), n)
    }

    public static func free(_ p: UnsafeMutableRawPointer, _ token: Int) {
        if token < 0 { munmap(p, -token) } else { p.deallocate() }
    }
}
