// A file in memory that a target hands to code reading by path (a capture, a routes file):
// made in /dev/shm and unlinked at once, so nothing is left behind however the run ends;
// read through /proc/self/fd. One per target, rewritten for each input.

import Glibc

public struct MemoryFile: Sendable {
    public let fd: CInt
    /// The path the code under test opens.
    public var path: String { "/proc/self/fd/\(fd)" }

    /// `tag` names it in /dev/shm while it is made (with the process id).
    public init(_ tag: String) {
        let name = "/dev/shm/vrt-fuzz-\(tag)-\(getpid())"
        fd = open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        precondition(fd >= 0, "\(name): errno \(errno)")
        unlink(name)
    }

    /// Makes `bytes` the file's whole content.
    public func replace(with bytes: UnsafeRawBufferPointer) {
        require(ftruncate(fd, 0) == 0, "cannot truncate the memory file")
        if let base = bytes.baseAddress {
            require(pwrite(fd, base, bytes.count, 0) == bytes.count, "cannot write the memory file")
        }
    }
}
