// The control socket's file: its directory is made, a stale socket left by a crash is
// replaced, a live one (another vrouterd answering) is refused, and the socket is
// created 0600 so only root can connect (the permission check is the kernel's: connect
// needs write permission on the socket file).

import Foundation
import Glibc
import VRouterAPI

public enum ControlSocket {
    public static let defaultPath = UnixHTTPClient.defaultSocket

    /// Makes `path` free for a new socket, or throws naming why it cannot be.
    public static func prepare(_ path: String) throws(ServiceError) {
        guard path.utf8.count < 108 else { throw ServiceError("socket path \(path) is longer than 107 bytes") }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty {
            do {
                try FileManager.default.createDirectory(
                    atPath: dir,
                    withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o755]
                )
            } catch {
                throw ServiceError(
                    "socket directory \(dir): \(error.localizedDescription) (run as root, or choose --socket PATH)"
                )
            }
        }
        var st = stat()
        guard lstat(path, &st) == 0 else { return }  // nothing there
        guard st.st_mode & S_IFMT == S_IFSOCK else {
            throw ServiceError("\(path) exists and is not a socket; refusing to replace it")
        }
        if isLive(path) { throw ServiceError("another vrouterd is serving \(path)") }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw ServiceError("removing the stale socket \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Whether something accepts connections on the socket at `path`.
    public static func isLive(_ path: String) -> Bool { UnixHTTPClient.isLive(path) }

    /// Runs `bind` with a umask that makes the socket file 0600 from its creation (no
    /// window in which others could connect), then sets the mode explicitly as well.
    public static func bindPrivate<T>(_ path: String, _ bind: () throws -> T) throws -> T {
        let old = umask(0o177)
        let r: T
        do {
            r = try bind()
            umask(old)
        } catch {
            umask(old)
            throw error
        }
        guard chmod(path, 0o600) == 0 else { throw ServiceError("chmod \(path): \(String(cString: strerror(errno)))") }
        return r
    }

    public static func remove(_ path: String) {
        var st = stat()
        if lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK { unlink(path) }
    }
}
