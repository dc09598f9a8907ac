// Per-port and per-loop counters: plain integers owned by the loop's thread (VPP style, no
// atomics). The control side reads them through the worker (a snapshot it publishes).

/// What one port did in one IOLoop.
@frozen
public struct LoopPortCounters: Sendable, Hashable {
    public var rxPackets: UInt64 = 0
    public var rxBytes: UInt64 = 0
    /// Frames not taken in: too big for a pool buffer, truncated by the kernel, or
    /// arriving while the pool was empty (tap reads that could not be re-armed).
    public var rxDrops: UInt64 = 0
    /// Failed reads (the kernel's error in the CQE).
    public var rxErrors: UInt64 = 0
    /// Frames handed to the kernel (tap: write completed; AF_PACKET: queued in the TX ring).
    public var txPackets: UInt64 = 0
    public var txBytes: UInt64 = 0
    /// Frames dropped before the kernel saw them: TX ring full, too big for a TX frame,
    /// no submission slot.
    public var txDrops: UInt64 = 0
    /// Failed writes / TX ring kicks.
    public var txErrors: UInt64 = 0

    public init() {}
}

/// What one IOLoop did, for telling syscalls per packet and idle waits apart.
@frozen
public struct LoopCounters: Sendable, Hashable {
    /// io_uring_enter calls (submissions and waits together).
    public var enters: UInt64 = 0
    /// Of those, waits for completions (the loop had nothing to do).
    public var waits: UInt64 = 0
    public var completions: UInt64 = 0
    /// Frames whose txPort named no port of this loop.
    public var txNoPort: UInt64 = 0
    /// Received frames dropped while a port removal drained (the stash was full).
    public var stashDrops: UInt64 = 0
    public var wakeups: UInt64 = 0
    /// Tap reads that completed with EAGAIN (io_uring stopped polling for them) and were
    /// re-armed.
    public var readsRetried: UInt64 = 0

    public init() {}
}
