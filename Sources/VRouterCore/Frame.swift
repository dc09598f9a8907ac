// A frame: a fixed-capacity vector of packet buffer indices, as in VPP (≤256 per frame).
// Its storage is allocated once by its owner and reused for every batch.

@frozen
public struct Frame: @unchecked Sendable {  // Safe: owned by one worker thread.
    public static let defaultCapacity = 256

    public let slots: UnsafeMutablePointer<UInt32>
    public let capacity: Int
    public var count: Int

    public static func allocate(capacity: Int = Frame.defaultCapacity) -> Frame {
        precondition(capacity > 0)
        let p = UnsafeMutablePointer<UInt32>.allocate(capacity: capacity)
        return Frame(slots: p, capacity: capacity, count: 0)
    }

    public func deallocate() { slots.deallocate() }

    @inlinable @inline(__always) public var isEmpty: Bool { count == 0 }
    @inlinable @inline(__always) public var isFull: Bool { count == capacity }

    @inlinable @inline(__always)
    public subscript(i: Int) -> UInt32 {
        get { slots[i] }
        nonmutating set { slots[i] = newValue }
    }

    /// Appends; the caller guarantees room (frames are sized for the worst case of
    /// their producer, see Pipeline).
    @inlinable @inline(__always)
    public mutating func append(_ idx: UInt32) {
        assert(count < capacity, "frame overflow")
        slots[count] = idx
        count &+= 1
    }

    @inlinable @inline(__always)
    public mutating func removeAll() { count = 0 }
}
