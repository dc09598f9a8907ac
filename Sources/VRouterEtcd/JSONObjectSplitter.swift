// Cuts a byte stream of concatenated JSON objects (the gateway's streaming answers: one
// `{"result":…}` per message, newline-separated) into whole objects as the bytes arrive, in
// any chunking. It tracks only brace depth and string state, so its cost is one pass over each
// byte, and it holds at most one unfinished object, which may not exceed `limit` bytes.

import NIOCore

struct JSONObjectSplitter {
    enum Failure: Error, Equatable {
        /// A byte outside any object that is not whitespace.
        case garbage(UInt8)
        /// An object grew past the limit before it closed.
        case tooLarge
    }

    let limit: Int
    private var pending: [UInt8] = []
    private var depth = 0
    private var inString = false
    private var escaped = false

    init(limit: Int) { self.limit = limit }

    /// True while an object has started and not closed.
    var isMidObject: Bool { depth > 0 }

    /// Feeds bytes; hands each completed object to `emit`.
    mutating func feed(_ buffer: ByteBuffer, _ emit: ([UInt8]) -> Void) throws(Failure) {
        try buffer.withUnsafeReadableBytes { raw throws(Failure) in
            var start = 0  // first byte of `raw` not yet copied into `pending`
            for i in 0..<raw.count {
                let b = raw[i]
                if depth == 0 {
                    switch b {
                    case UInt8(ascii: "{"):
                        depth = 1
                        start = i
                    case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"):
                        start = i + 1
                    default:
                        throw Failure.garbage(b)
                    }
                    continue
                }
                if inString {
                    if escaped {
                        escaped = false
                    } else if b == UInt8(ascii: "\\") {
                        escaped = true
                    } else if b == UInt8(ascii: "\"") {
                        inString = false
                    }
                    continue
                }
                switch b {
                case UInt8(ascii: "\""): inString = true
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 {
                        guard pending.count + (i + 1 - start) <= limit else { throw Failure.tooLarge }
                        pending.append(contentsOf: raw[start...i])
                        let object = pending
                        pending.removeAll(keepingCapacity: false)
                        start = i + 1
                        emit(object)
                    }
                default: break
                }
            }
            if depth > 0 {
                guard pending.count + (raw.count - start) <= limit else { throw Failure.tooLarge }
                pending.append(contentsOf: raw[start...])
            }
        }
    }
}
