// A worker's packet pool in memory local to the worker's NUMA node (numa_alloc_onnode),
// so buffer writes by the kernel (tap reads, ring copies) and the pipeline's header reads
// stay on one memory controller. Without NUMA (containers, small VMs) it falls back to
// anonymous mmap. Either way transparent huge pages are requested (fewer TLB misses over a
// pool of tens of MiB) and every page is touched up front, so the first packets do not
// pay for page faults and io_uring can register the region at once.

import CNuma
import Glibc
import VRouterCore

public final class LocalPacketPool: @unchecked Sendable {  // Safe: the pool is used by one worker at a time.
    public let pool: PacketPool
    /// The node the memory is bound to; nil when NUMA was unavailable (plain mmap).
    public let node: Int?
    public let byteCount: Int
    private let memory: UnsafeMutableRawPointer

    /// `count` buffers of `bufferSize` bytes near `cpu` (the worker's CPU; its node is
    /// looked up), or on node `node` when given.
    public init(
        count: Int,
        bufferSize: Int = 2048,
        bigBuffers: Int = 0,
        nearCPU cpu: Int? = nil,
        node explicitNode: Int? = nil
    ) throws(SystemError) {
        precondition(bufferSize.nonzeroBitCount == 1 && bufferSize >= 512 && bufferSize <= 65536)
        precondition(count > 0 && count < Int(UInt32.max) && bigBuffers >= 0)
        let bytes = PacketPool.bytesNeeded(count: count, bufferSize: bufferSize, bigBuffers: bigBuffers)
        var node = explicitNode ?? cpu.flatMap { CPU.node(of: $0) }
        var mem: UnsafeMutableRawPointer? = nil
        if let n = node, CPU.numaAvailable {
            mem = numa_alloc_onnode(bytes, Int32(n))
        }
        if mem == nil {
            node = nil
            let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let p, p != MAP_FAILED else {
                throw SystemError(call: "mmap(\(bytes) bytes)", object: "packet pool", errno: errno)
            }
            mem = p
        }
        _ = madvise(mem, bytes, MADV_HUGEPAGE)
        // Fault every page in now, on the bound node.
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var off = 0
        while off < bytes {
            mem!.storeBytes(of: 0, toByteOffset: off, as: UInt8.self)
            off += page
        }
        memory = mem!
        byteCount = bytes
        self.node = node
        pool = PacketPool(memory: mem!, count: count, bufferSize: bufferSize, bigBuffers: bigBuffers)
    }

    deinit {
        pool.deallocate()  // metadata and free stack; not the memory (we own it)
        if node != nil { numa_free(memory, byteCount) } else { munmap(memory, byteCount) }
    }
}
