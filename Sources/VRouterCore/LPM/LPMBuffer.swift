// A growable, manually owned array of trivial elements for the LPM builder. The FIB takes
// the finished buffers over as they are, so a build never copies its result, and
// `applying` copies the previous FIB's arrays with one memcpy each.

@usableFromInline
struct LPMBuffer<Element: BitwiseCopyable> {
    @usableFromInline private(set) var base: UnsafeMutablePointer<Element>
    @usableFromInline private(set) var count: Int
    private(set) var capacity: Int
    /// HugeMemory's token for `base` (big finished arrays are huge-page backed).
    private var token: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        (base, token) = Self.storage(self.capacity)
        count = 0
    }

    static func storage(_ capacity: Int) -> (UnsafeMutablePointer<Element>, Int) {
        let (p, t) = HugeMemory.allocate(bytes: capacity * MemoryLayout<Element>.stride)
        return (p.bindMemory(to: Element.self, capacity: capacity), t)
    }

    /// A copy of `other` with room for `extra` more elements before it must grow.
    init(copying other: LPMBuffer, extra: Int) {
        self.init(capacity: other.count + extra)
        // Safe: the new buffer holds other.count + extra elements.
        base.update(from: other.base, count: other.count)
        count = other.count
    }

    func deallocate() { HugeMemory.free(UnsafeMutableRawPointer(base), token) }

    var bytes: Int { capacity * MemoryLayout<Element>.stride }

    /// Appends `n` uninitialized slots and returns the index of the first.
    @inline(__always)
    mutating func grow(by n: Int) -> Int {
        let start = count
        if count + n > capacity { reallocate(minimum: count + n) }
        count += n
        return start
    }

    @inline(__always)
    mutating func append(_ e: Element) {
        if count == capacity { reallocate(minimum: count + 1) }
        // Safe: count < capacity after the check above.
        (base + count).initialize(to: e)
        count += 1
    }

    @inline(__always)
    subscript(i: Int) -> Element {
        get {
            precondition(i >= 0 && i < count)
            return base[i]
        }
        nonmutating set {
            precondition(i >= 0 && i < count)
            base[i] = newValue
        }
    }

    /// Gives back the slack of a finished build (a 1M-route table grows in steps of 1.5x).
    mutating func shrinkToFit() {
        guard capacity > count + count / 64 + 16 else { return }
        let (fresh, t) = Self.storage(max(count, 1))
        fresh.update(from: base, count: count)
        deallocate()
        base = fresh
        token = t
        capacity = max(count, 1)
    }

    @inline(never)
    private mutating func reallocate(minimum: Int) {
        let newCapacity = max(minimum, capacity + capacity / 2, 16)
        let (fresh, t) = Self.storage(newCapacity)
        fresh.update(from: base, count: count)
        deallocate()
        base = fresh
        token = t
        capacity = newCapacity
    }
}
