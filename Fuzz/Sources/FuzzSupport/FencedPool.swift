import VRouterCore

/// A packet pool whose buffers are fenced for AddressSanitizer. The pool is one allocation
/// to ASan, so a write past one buffer's end would land silently in the next; here the
/// 64-byte line after every small buffer (the pool's cache colouring, which nothing may use)
/// is poisoned, and so is every other big buffer (a big buffer's capacity runs to the next
/// one's first byte, so the fence after a big buffer is a whole big buffer, held and never
/// handed out). Any access to a fence is reported with the stack that made it. Every byte
/// of every buffer starts as `fill`, so a target can run an input twice with different
/// fills and see whether anything read bytes outside the frames it was given.
public final class FencedPool {
    public let pool: PacketPool
    /// Big buffers the pool hands out (each followed by a fence).
    public let bigBuffers: Int
    let memory: UnsafeMutableRawPointer
    let size: Int
    var fences: [UInt32] = []

    public init(count: Int, bufferSize: Int, bigBuffers: Int = 0, fill: UInt8) {
        self.bigBuffers = bigBuffers
        size = PacketPool.bytesNeeded(count: count, bufferSize: bufferSize, bigBuffers: 2 * bigBuffers)
        memory = .allocate(byteCount: size, alignment: 4096)
        memory.initializeMemory(as: UInt8.self, repeating: fill, count: size)
        pool = PacketPool(memory: memory, count: count, bufferSize: bufferSize, bigBuffers: 2 * bigBuffers)
        for i in 0..<count {
            poison(pool.buffer(UInt32(i)) + bufferSize, pool.stride - bufferSize)
        }
        // Big buffers at even positions are handed out; those at odd positions are fences.
        let big = (0..<2 * bigBuffers).map { _ in pool.allocBig()! }.sorted()
        for (k, idx) in big.enumerated().reversed() {
            if k % 2 == 0 {
                pool.free(idx)
            } else {
                fences.append(idx)
                poison(pool.buffer(idx), pool.capacity(idx))
            }
        }
    }

    /// Makes the pool as it was new: every buffer free, handed out in the same order as
    /// by a fresh pool, and filled with `fill` again. All buffers must be free.
    public func renew(fill: UInt8) {
        precondition(
            pool.available == pool.count && pool.bigAvailable == bigBuffers,
            "renew with buffers in use"
        )
        let all = (0..<pool.count).map { _ in pool.alloc()! }
        for idx in all.sorted(by: >) {
            pool.buffer(idx).initializeMemory(as: UInt8.self, repeating: fill, count: pool.bufferSize)
            pool.free(idx)
        }
        let big = (0..<bigBuffers).map { _ in pool.allocBig()! }
        for idx in big.sorted(by: >) {
            pool.buffer(idx).initializeMemory(as: UInt8.self, repeating: fill, count: pool.capacity(idx))
            pool.free(idx)
        }
    }

    /// Whether every buffer is free again.
    public var allFree: Bool { pool.available == pool.count && pool.bigAvailable == bigBuffers }

    deinit {
        unpoison(memory, size)
        pool.deallocate()
        memory.deallocate()
    }
}
