// What the fuzz targets share: reading an input front to back, failing an invariant so
// that libFuzzer keeps the input, and AddressSanitizer's manual poisoning (for memory a
// target carves into pieces itself, like a packet pool, where ASan sees one allocation).

/// A fuzzer's input, read front to back. Reads past the end give zeros and empty slices,
/// so a target never has to check what is left before deciding how to use it.
public struct FuzzInput {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var position = 0

    public init(_ data: UnsafeRawPointer, _ count: Int) {
        bytes = UnsafeRawBufferPointer(start: data, count: count)
    }

    public var isAtEnd: Bool { position >= bytes.count }
    public var remaining: Int { max(0, bytes.count - position) }

    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func bigEndian16() -> UInt16 { UInt16(byte()) << 8 | UInt16(byte()) }

    /// Up to `count` bytes (fewer at the end of the input).
    public mutating func take(_ count: Int) -> UnsafeRawBufferPointer {
        let n = min(max(0, count), remaining)
        defer { position += n }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<position + n])
    }

    /// Everything not read yet.
    public mutating func rest() -> UnsafeRawBufferPointer { take(remaining) }
}

/// Stops the run when an invariant does not hold: the message is printed and libFuzzer
/// saves the input as a crash.
public func require(
    _ condition: @autoclosure () -> Bool,
    _ message: @autoclosure () -> String,
    file: StaticString = #fileID,
    line: UInt = #line
) {
    if !condition() { fatalError("invariant broken: \(message())", file: file, line: line) }
}

/// Fails with every problem a checker reported.
public func require(
    noProblems problems: [String],
    _ what: @autoclosure () -> String,
    file: StaticString = #fileID,
    line: UInt = #line
) {
    if !problems.isEmpty {
        fatalError("invariant broken (\(what())):\n  " + problems.joined(separator: "\n  "), file: file, line: line)
    }
}

// Targets are always built with -sanitize=address, so the runtime is linked in.
@_silgen_name("__asan_poison_memory_region")
func asanPoison(_ address: UnsafeRawPointer, _ size: Int)
@_silgen_name("__asan_unpoison_memory_region")
func asanUnpoison(_ address: UnsafeRawPointer, _ size: Int)

/// Marks memory no code may touch until `unpoison`: any access is reported as a
/// use-after-poison with the stack that made it.
public func poison(_ address: UnsafeRawPointer, _ size: Int) { asanPoison(address, size) }
public func unpoison(_ address: UnsafeRawPointer, _ size: Int) { asanUnpoison(address, size) }
