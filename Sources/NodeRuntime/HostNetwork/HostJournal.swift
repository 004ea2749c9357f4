// The crash-safe undo log of every change the tunnel makes to the host: `<data dir>/tunnel-host.json`.
//
// Write-ahead: before the node changes anything (adds a route, an nftables table, rewrites
// /etc/resolv.conf, sets a sysctl) it appends the action that undoes the change and makes the file
// durable (write a temporary file, fsync, rename over the journal, fsync the directory). So after a
// crash at any point the journal lists at least everything that was done — possibly one action more,
// whose change never happened. `rollback` runs the undo actions newest first and treats "it is not
// there" answers from ip/nft ("No such process", "No such file or directory", "Cannot find device",
// "does not exist") as done, which is what makes that extra action, and changes the kernel already
// dropped (routes of a TUN device that closed with the crashed process), harmless.
//
// An undo action that fails for any other reason stays in the journal (the file is rewritten with
// just those), and the report says so: the next start (`recover`) retries it. The file is deleted
// only when nothing is left to undo.
//
// Entries carry a scope ("consumer", "provider") so a node that is both can take one side down
// without touching the other; `recover` undoes every scope.
//
// Thread safety: one lock around the entries and the file; commands of a rollback run under it.

#if os(Linux)
import Foundation
import Glibc
import Synchronization

/// One way to put the host back as it was. Stored as JSON; operators may read it.
public enum HostUndoAction: Codable, Equatable, Sendable, CustomStringConvertible {
    /// Delete a route: the full argv, e.g. `["ip", "route", "del", "203.0.113.7/32", "via", "192.0.2.1", "dev", "eth0"]`.
    case deleteRoute(argv: [String])
    /// `ip link del NAME`.
    case deleteLink(name: String)
    /// `nft delete table FAMILY NAME`.
    case deleteNftTable(family: String, name: String)
    /// Put a file's bytes back in place (or remove it if it did not exist). Written in place, not
    /// renamed over, because the file may be a bind mount (`ip netns exec` mounts
    /// /etc/netns/NS/resolv.conf over /etc/resolv.conf).
    case restoreFile(path: String, previousContentsBase64: String, existed: Bool)
    /// `sysctl -w KEY=VALUE`.
    case restoreSysctl(key: String, previousValue: String)

    public var description: String {
        switch self {
        case .deleteRoute(let argv): argv.joined(separator: " ")
        case .deleteLink(let name): "ip link del \(name)"
        case .deleteNftTable(let family, let name): "nft delete table \(family) \(name)"
        case .restoreFile(let path, _, let existed): existed ? "restore \(path)" : "remove \(path)"
        case .restoreSysctl(let key, let value): "sysctl -w \(key)=\(value)"
        }
    }

    /// A `.restoreFile` for the file's current state.
    /// Refuses a dangling symlink: writing would create its target, and undoing that by removing
    /// `path` would remove the link instead.
    public static func restoring(file path: String) throws(HostJournalError) -> HostUndoAction {
        var link = stat()
        var target = stat()
        if lstat(path, &link) == 0, link.st_mode & S_IFMT == S_IFLNK, stat(path, &target) != 0 {
            throw .cannotReadFile(path: path, reason: "it is a symbolic link to a missing file")
        }
        switch HostFiles.read(path) {
        case .success(let bytes?):
            return .restoreFile(path: path, previousContentsBase64: Data(bytes).base64EncodedString(), existed: true)
        case .success(nil):
            return .restoreFile(path: path, previousContentsBase64: "", existed: false)
        case .failure(let error):
            throw .cannotReadFile(path: path, reason: error.reason)
        }
    }
}

/// What a rollback did.
public struct HostRollbackReport: Sendable, CustomStringConvertible {
    /// Undone now.
    public var undone: [HostUndoAction] = []
    /// Already gone (the change never happened, or the kernel removed it with its device).
    public var alreadyGone: [HostUndoAction] = []
    /// Could not be undone; these stay in the journal for the next start.
    public var failed: [(action: HostUndoAction, reason: String)] = []
    /// The journal itself could not be read or written.
    public var journalError: String?

    public init() {}

    /// Nothing failed: the host is as it was, and the journal file is gone.
    public var isComplete: Bool { failed.isEmpty && journalError == nil }

    public var description: String {
        var lines: [String] = []
        for action in undone { lines.append("undid: \(action)") }
        for action in alreadyGone { lines.append("already gone: \(action)") }
        for (action, reason) in failed {
            lines.append("FAILED (kept in the journal for the next start): \(action): \(reason)")
        }
        if let journalError { lines.append("journal: \(journalError)") }
        return lines.isEmpty ? "nothing to undo" : lines.joined(separator: "\n")
    }
}

public final class HostJournal: Sendable {
    public static let fileName = "tunnel-host.json"

    public struct Entry: Codable, Equatable, Sendable {
        public var scope: String
        public var action: HostUndoAction
    }

    private struct File: Codable {
        var version: Int
        var entries: [Entry]
    }

    public let path: String
    private let entries: Mutex<[Entry]>

    /// Opens the journal at `path`, keeping the entries of an earlier run if the file exists (then
    /// `rollback` also undoes those). Throws if the file exists but cannot be read — it is never
    /// overwritten blindly, since it may be the only record of how to repair the host.
    public init(path: String) throws(HostJournalError) {
        self.path = path
        self.entries = Mutex(try Self.load(path))
    }

    /// The journal in a node's data directory.
    public convenience init(in directory: DataDirectory) throws(HostJournalError) {
        try self.init(path: directory.path + "/" + Self.fileName)
    }

    /// The entries not yet undone, oldest first.
    public var pending: [Entry] { entries.withLock { $0 } }

    /// Appends an undo action and makes it durable. Call before making the change it undoes.
    public func record(_ action: HostUndoAction, scope: String) throws(HostJournalError) {
        try entries.withLock { entries throws(HostJournalError) in
            try Self.save(entries + [Entry(scope: scope, action: action)], to: path)
            entries.append(Entry(scope: scope, action: action))
        }
    }

    /// Removes the newest matching entry: the change it would undo was refused, so there is nothing
    /// to undo (and undoing it could remove something that was there before, not ours).
    public func discard(_ action: HostUndoAction, scope: String) throws(HostJournalError) {
        try entries.withLock { entries throws(HostJournalError) in
            guard let index = entries.lastIndex(of: Entry(scope: scope, action: action)) else { return }
            var remaining = entries
            remaining.remove(at: index)
            try Self.save(remaining, to: path)
            entries = remaining
        }
    }

    /// Undoes the entries of `scope` (nil: all), newest first. Entries that fail stay in the journal;
    /// the file is removed once it is empty.
    @discardableResult
    public func rollback(scope: String? = nil, runner: HostCommand) -> HostRollbackReport {
        entries.withLock { entries in
            var report = HostRollbackReport()
            var keep = [Bool](repeating: true, count: entries.count)
            for index in entries.indices.reversed() where scope == nil || entries[index].scope == scope {
                let action = entries[index].action
                switch Self.undo(action, runner: runner) {
                case .undone:
                    report.undone.append(action)
                    keep[index] = false
                case .alreadyGone:
                    report.alreadyGone.append(action)
                    keep[index] = false
                case .failed(let reason):
                    report.failed.append((action, reason))
                }
            }
            let remaining = entries.indices.filter { keep[$0] }.map { entries[$0] }
            do throws(HostJournalError) {
                if remaining.isEmpty {
                    try Self.remove(path)
                } else {
                    try Self.save(remaining, to: path)
                }
            } catch {
                report.journalError = error.description
            }
            entries = remaining
            return report
        }
    }

    /// At node start: undoes whatever an earlier run left behind (it crashed, or was killed before
    /// taking the tunnel down). No file: nothing to do.
    public static func recover(at path: String, runner: HostCommand) -> HostRollbackReport {
        do throws(HostJournalError) {
            return try HostJournal(path: path).rollback(runner: runner)
        } catch {
            var report = HostRollbackReport()
            report.journalError = error.description + "; fix or remove it after undoing its entries by hand"
            return report
        }
    }

    // MARK: - Undoing

    private enum Outcome {
        case undone
        case alreadyGone
        case failed(String)
    }

    /// What ip, nft and friends say when the thing to remove is not there.
    static let alreadyGoneMessages = [
        "No such process",  // ip route del: no such route
        "No such file or directory",  // nft delete table: no such table
        "Cannot find device",  // ip: the device is gone (with its routes)
        "does not exist",
        "No such device",
    ]

    private static func undo(_ action: HostUndoAction, runner: HostCommand) -> Outcome {
        switch action {
        case .deleteRoute(let argv): return runTolerating(argv, runner: runner)
        case .deleteLink(let name): return runTolerating(["ip", "link", "del", name], runner: runner)
        case .deleteNftTable(let family, let name):
            return runTolerating(["nft", "delete", "table", family, name], runner: runner)
        case .restoreSysctl(let key, let value):
            do {
                try runner.run(["sysctl", "-w", "\(key)=\(value)"])
                return .undone
            } catch {
                return .failed(error.description)
            }
        case .restoreFile(let path, let contents, let existed):
            guard existed else {
                if unlink(path) == 0 { return .undone }
                return errno == ENOENT ? .alreadyGone : .failed("cannot remove \(path): \(errnoText())")
            }
            guard let bytes = Data(base64Encoded: contents) else {
                return .failed("the journal's copy of \(path) is not valid base64")
            }
            if let failure = HostFiles.writeInPlace(path, [UInt8](bytes)) { return .failed(failure) }
            return .undone
        }
    }

    private static func runTolerating(_ argv: [String], runner: HostCommand) -> Outcome {
        do {
            let output = try runner.runAllowingFailure(argv)
            if output.succeeded { return .undone }
            let message = output.errorText
            if alreadyGoneMessages.contains(where: { message.contains($0) }) { return .alreadyGone }
            return .failed(
                HostCommandError.failed(argv: output.argv, status: output.status, standardError: message).description)
        } catch {
            return .failed(error.description)
        }
    }

    // MARK: - The file

    private static func load(_ path: String) throws(HostJournalError) -> [Entry] {
        let bytes: [UInt8]
        switch HostFiles.read(path) {
        case .success(nil): return []
        case .success(let contents?): bytes = contents
        case .failure(let error): throw .cannotReadFile(path: path, reason: error.reason)
        }
        do {
            let file = try JSONDecoder().decode(File.self, from: Data(bytes))
            guard file.version == 1 else {
                throw HostJournalError.unreadable(path: path, reason: "unknown version \(file.version)")
            }
            return file.entries
        } catch let error as HostJournalError {
            throw error
        } catch {
            throw .unreadable(path: path, reason: "\(error)")
        }
    }

    private static func save(_ entries: [Entry], to path: String) throws(HostJournalError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do {
            data = try encoder.encode(File(version: 1, entries: entries))
        } catch {
            throw .cannotWrite(path: path, reason: "\(error)")
        }
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .cannotWrite(path: temporary, reason: errnoText()) }
        let bytes = [UInt8](data) + [UInt8(ascii: "\n")]
        let written = HostFiles.writeAll(fd, bytes)
        let synced = fsync(fd) == 0
        close(fd)
        guard written, synced, rename(temporary, path) == 0 else {
            let reason = errnoText()
            unlink(temporary)
            throw .cannotWrite(path: path, reason: reason)
        }
        HostFiles.syncDirectory(of: path)
    }

    private static func remove(_ path: String) throws(HostJournalError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw .cannotWrite(path: path, reason: errnoText()) }
        HostFiles.syncDirectory(of: path)
    }
}

public enum HostJournalError: Error, Equatable, Sendable, CustomStringConvertible {
    case cannotReadFile(path: String, reason: String)
    case unreadable(path: String, reason: String)
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotReadFile(let path, let reason): "cannot read \(path): \(reason)"
        case .unreadable(let path, let reason):
            "the host-change journal \(path) is damaged (\(reason)); it was left in place"
        case .cannotWrite(let path, let reason):
            "cannot write the host-change journal \(path): \(reason); the host was not changed further "
                + "(is the data directory writable?)"
        }
    }
}

// MARK: - File helpers

/// Small POSIX file helpers for the journal and the files it restores.
enum HostFiles {
    /// The whole file (up to 1 MiB), nil if it does not exist.
    struct Failure: Error {
        var reason: String
    }

    static func read(_ path: String) -> Result<[UInt8]?, Failure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return errno == ENOENT ? .success(nil) : .failure(Failure(reason: errnoText())) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while bytes.count <= 1 << 20 {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(Failure(reason: errnoText()))
            }
            if count == 0 { return .success(bytes) }
            bytes += buffer[0..<count]
        }
        return .failure(Failure(reason: "larger than 1 MiB"))
    }

    /// Truncates and rewrites the file through its existing inode (bind mounts and symlinks stay
    /// intact), creating it (0644) if needed. Returns an error message, nil on success.
    static func writeInPlace(_ path: String, _ bytes: [UInt8]) -> String? {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return "cannot open \(path): \(errnoText())" }
        defer { close(fd) }
        guard writeAll(fd, bytes), fsync(fd) == 0 else { return "cannot write \(path): \(errnoText())" }
        return nil
    }

    static func writeAll(_ fd: CInt, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let count = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += count
        }
        return true
    }

    /// Makes a rename or unlink in the directory durable. Best effort.
    static func syncDirectory(of path: String) {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let fd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }
#endif
