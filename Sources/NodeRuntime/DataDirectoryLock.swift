// One node per data dir: `umbra up` takes an exclusive flock(2) on `<data dir>/lock` before it does
// anything else with the directory — before loading the key, binding, or replaying the host-change
// journal — and holds it for the life of the process (the kernel drops it when the process exits,
// however it exits). A second `up` on a live data dir is refused without touching anything: it must
// not "recover" the running node's TUN device, routes, kill switch and DNS.
//
// The file holds the holder's pid, for the error message only; the lock is the flock, not the file.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum DataDirectoryLockError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Another process holds the lock.
    case inUse(directory: String, pid: Int32?)
    case cannotLock(path: String, reason: String)

    public var description: String {
        switch self {
        case .inUse(let directory, let pid):
            "the data dir \(directory) is in use by "
                + (pid.map { "process \($0)" } ?? "another process")
                + " (an `umbra up` that is still running); nothing was changed. Stop it with "
                + "`umbra down --data-dir \(directory)`, or start this node with another --data-dir"
        case .cannotLock(let path, let reason): "cannot lock \(path): \(reason)"
        }
    }
}

/// An exclusive lock on a data dir, held until `release()` or the process exits.
public final class DataDirectoryLock: Sendable {
    public static let fileName = "lock"
    public let path: String
    private let descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    /// Creates the directory if needed (mode 0700) and locks it, or throws `.inUse` naming the
    /// holder. Never blocks.
    public static func acquire(_ directory: DataDirectory) throws(DataDirectoryLockError) -> DataDirectoryLock {
        do { try directory.create() } catch {
            throw .cannotLock(path: directory.path, reason: error.description)
        }
        let path = directory.path + "/" + fileName
        // Close-on-exec: a spawned `ip` or `nft` must not inherit (and outlive us with) the lock.
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .cannotLock(path: path, reason: String(cString: strerror(errno))) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let busy = errno == EWOULDBLOCK
            let reason = String(cString: strerror(errno))
            let holder = busy ? readPID(fd) : nil
            close(fd)
            if busy { throw .inUse(directory: directory.path, pid: holder) }
            throw .cannotLock(path: path, reason: reason)
        }
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return DataDirectoryLock(path: path, descriptor: fd)
    }

    /// Whether another process holds the lock now (for tools and tests; takes and drops it).
    public static func isHeld(_ directory: DataDirectory) -> Bool {
        let fd = open(directory.path + "/" + fileName, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return false
        }
        return errno == EWOULDBLOCK
    }

    /// Drops the lock (the process exiting does the same).
    public func release() {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }

    private static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[..<count], as: UTF8.self)
        return Int32(text.split(separator: "\n").first.map(String.init) ?? "")
    }
}
