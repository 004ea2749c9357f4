// The identity key file on disk: `<data dir>/identity.key`, created with mode 0600 in a data dir
// created with mode 0700. A key file that group or others can read is refused, as ssh does.

import UmbraCore
import UmbraCrypto

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum IdentityStoreError: Error, CustomStringConvertible, Equatable {
    case notFound(path: String)
    case alreadyExists(path: String)
    case tooOpen(path: String, mode: UInt32)
    case unreadable(path: String, reason: String)
    case invalid(path: String, reason: String)
    case cannotCreate(path: String, reason: String)

    public var description: String {
        switch self {
        case .notFound(let path):
            "no identity at \(path); create one with `umbra identity new --data-dir \(DataDirectory.parent(of: path))`"
        case .alreadyExists(let path):
            "an identity already exists at \(path); it was left untouched (remove it first to replace it)"
        case .tooOpen(let path, let mode):
            "refusing to use \(path): its mode is \(String(mode & 0o777, radix: 8)), readable by group or others; "
                + "fix it with `chmod 600 \(path)`"
        case .unreadable(let path, let reason): "cannot read \(path): \(reason)"
        case .invalid(let path, let reason): "\(path) is not a valid identity file: \(reason)"
        case .cannotCreate(let path, let reason): "cannot create \(path): \(reason)"
        }
    }
}

/// Paths inside a node's data directory.
public struct DataDirectory: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// `--data-dir`, else `$UMBRA_DATA_DIR`, else `~/.umbra`.
    public static func resolve(_ option: String?) -> DataDirectory {
        if let option, !option.isEmpty { return DataDirectory(path: option) }
        if let env = getenv("UMBRA_DATA_DIR"), let value = String(validatingCString: env), !value.isEmpty {
            return DataDirectory(path: value)
        }
        let home = getenv("HOME").flatMap { String(validatingCString: $0) } ?? "."
        return DataDirectory(path: home + "/.umbra")
    }

    public var identityFile: String { path + "/identity.key" }
    public var controlSocket: String { path + "/control.sock" }

    static func parent(of file: String) -> String {
        guard let slash = file.lastIndex(of: "/") else { return "." }
        return String(file[..<slash])
    }

    /// Creates the directory (mode 0700) if it does not exist.
    public func create() throws(IdentityStoreError) {
        var components: [String] = []
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + part
            components.append(prefix)
        }
        for directory in components where access(directory, F_OK) != 0 {
            if mkdir(directory, 0o700) != 0 && errno != EEXIST {
                throw .cannotCreate(path: directory, reason: String(cString: strerror(errno)))
            }
            _ = IdentityStore.syncDirectory(DataDirectory.parent(of: directory))  // the new entry, durably
        }
    }
}

public enum IdentityStore {
    /// Creates a new identity file; refuses to overwrite an existing one.
    public static func create(in directory: DataDirectory) throws(IdentityStoreError) -> Identity {
        try directory.create()
        let path = directory.identityFile
        var rng = SecureRandomGenerator()
        let identity = Identity.generate(using: &rng)
        let text = IdentityFile.encode(identity)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == EEXIST { throw .alreadyExists(path: path) }
            throw .cannotCreate(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        fchmod(fd, 0o600)  // umask cannot widen it, but be explicit
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(fd) == 0 else {
            unlink(path)
            throw .cannotCreate(path: path, reason: String(cString: strerror(errno)))
        }
        // The new directory entry must be durable too: without this a crash can lose the file (and
        // with it the identity the node already announced) although its bytes were synced.
        guard syncDirectory(directory.path) else {
            unlink(path)
            throw .cannotCreate(path: path, reason: "cannot sync the directory: \(String(cString: strerror(errno)))")
        }
        return identity
    }

    /// fsync(2) of a directory, so the entries created in it survive a crash.
    static func syncDirectory(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return fsync(fd) == 0
    }

    /// Loads the identity, refusing a file readable by group or others.
    public static func load(from directory: DataDirectory) throws(IdentityStoreError) -> Identity {
        let path = directory.identityFile
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw .notFound(path: path) }
            throw .unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        guard info.st_mode & 0o077 == 0 else { throw .tooOpen(path: path, mode: UInt32(info.st_mode)) }
        guard info.st_size <= IdentityFile.maximumSize else {
            throw .invalid(path: path, reason: "larger than \(IdentityFile.maximumSize) bytes")
        }
        var buffer = [UInt8](repeating: 0, count: IdentityFile.maximumSize + 1)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count >= 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        guard let text = String(validating: buffer[..<count], as: UTF8.self) else {
            throw .invalid(path: path, reason: "not UTF-8 text")
        }
        do { return try IdentityFile.decode(text) } catch { throw .invalid(path: path, reason: error.description) }
    }

    /// Loads the identity, creating it first when the file does not exist.
    public static func loadOrCreate(in directory: DataDirectory) throws(IdentityStoreError) -> (Identity, created: Bool)
    {
        do { return (try load(from: directory), false) } catch .notFound {
            return (try create(in: directory), true)
        }
    }
}
