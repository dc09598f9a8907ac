import VRouterCore

/// A packet pool whose buffers are fenced for AddressSanitizer. The pool is one allocation
/// to ASan, so a write past one buffer's end would land silently in the next; here the
/// 64-byte line after every buffer (the pool's cache colouring, which nothing may use) is
/// poisoned, and any access to it is reported with the stack that made it. Every byte of
/// every buffer starts as `fill`, so a target can run an input twice with different fills
/// and see whether anything read bytes outside the frames it was given.
public final class FencedPool {
    public let pool: PacketPool
    let memory: UnsafeMutableRawPointer
    let size: Int

    public init(count: Int, bufferSize: Int, fill: UInt8) {
        size = PacketPool.bytesNeeded(count: count, bufferSize: bufferSize)
        memory = .allocate(byteCount: size, alignment: 4096)
        memory.initializeMemory(as: UInt8.self, repeating: fill, count: size)
        pool = PacketPool(memory: memory, count: count, bufferSize: bufferSize)
        for i in 0..<count {
            poison(pool.buffer(UInt32(i)) + bufferSize, pool.stride - bufferSize)
        }
    }

    /// Makes the pool as it was new: every buffer free, handed out in the same order as
    /// by a fresh pool, and filled with `fill` again. All buffers must be free.
    public func renew(fill: UInt8) {
        precondition(pool.available == pool.count, "renew with buffers in use")
        let all = (0..<pool.count).map { _ in pool.alloc()! }
        for idx in all.sorted(by: >) {
            pool.buffer(idx).initializeMemory(as: UInt8.self, repeating: fill, count: pool.bufferSize)
            pool.free(idx)
        }
    }

    deinit {
        unpoison(memory, size)
        pool.deallocate()
        memory.deallocate()
    }
}
