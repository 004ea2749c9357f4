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
// Replaying the journal runs commands as root, so the file is trusted only if (1) it is a regular
// file owned by this process's uid and not writable by group or others, (2) its MAC (BLAKE2b keyed
// from the node's identity secret, `HostJournalKey`) matches, and (3) every entry is a typed undo
// operation whose fields validate (a link or table name, a route, a rule, a sysctl from a short
// list, a resolv.conf). The argv is built here from those fields; nothing executable is read from
// the file. A journal that fails any check is left in place and nothing in it is run.
//
// Entries carry a scope ("consumer", "provider") so a node that is both can take one side down
// without touching the other; `recover` undoes every scope.
//
// Thread safety: one lock around the entries and the file; commands of a rollback run under it.

#if os(Linux)
import Foundation
import Glibc
import Synchronization
import UmbraCore
import UmbraCrypto

/// A route as the journal records it: typed fields from which the code builds the `ip route` argv.
/// Nothing executable is read from the journal; `validate()` refuses anything but plain values.
public struct HostRoute: Codable, Equatable, Sendable, CustomStringConvertible {
    /// 4 or 6.
    public var family: Int
    /// nil: a unicast route; "unreachable".
    public var type: String?
    /// "default" or a prefix such as `0.0.0.0/1`, `::/1`.
    public var destination: String
    public var gateway: String?
    public var device: String?
    /// nil: the main table.
    public var table: UInt32?

    public init(
        family: Int = 4, type: String? = nil, destination: String, gateway: String? = nil, device: String? = nil,
        table: UInt32? = nil
    ) {
        self.family = family
        self.type = type
        self.destination = destination
        self.gateway = gateway
        self.device = device
        self.table = table
    }

    /// `ip -F route VERB …` for this route (VERB: add, del).
    public func argv(_ verb: String) -> [String] {
        var argv = ["ip", "-\(family)", "route", verb]
        if let type { argv.append(type) }
        argv.append(destination)
        if let gateway { argv += ["via", gateway] }
        if let device { argv += ["dev", device] }
        if let table { argv += ["table", String(table)] }
        return argv
    }

    public var description: String { argv("del").joined(separator: " ") }

    func validate() throws(HostJournalError.Invalid) {
        guard family == 4 || family == 6 else { throw .init("route family \(family)") }
        guard type == nil || type == "unreachable" else { throw .init("route type \(type ?? "")") }
        guard destination == "default" || HostRoute.isPrefix(destination, family: family) else {
            throw .init("route destination \(destination)")
        }
        if let gateway {
            guard let address = IPAddress(parsing: gateway), HostRoute.family(of: address) == family else {
                throw .init("route gateway \(gateway)")
            }
        }
        if let device { try HostJournal.checkName(device, what: "device") }
        if let table { guard table != 0 else { throw .init("route table 0") } }
    }

    static func family(of address: IPAddress) -> Int { if case .v4 = address { 4 } else { 6 } }

    static func isPrefix(_ text: String, family: Int) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPAddress(parsing: String(parts[0])),
            HostRoute.family(of: address) == family, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }),
            let length = Int(parts[1]), length <= (family == 4 ? 32 : 128)
        else { return false }
        return true
    }
}

/// A policy rule as the journal records it (`ip -F rule del priority P [fwmark M] lookup T
/// [suppress_prefixlength N]`).
public struct HostRule: Codable, Equatable, Sendable, CustomStringConvertible {
    public var family: Int
    public var priority: UInt32
    public var fwmark: UInt32?
    /// A table number, or nil for `main`.
    public var table: UInt32?
    public var suppressPrefixLength: Int?

    public init(family: Int, priority: UInt32, fwmark: UInt32?, table: UInt32?, suppressPrefixLength: Int? = nil) {
        self.family = family
        self.priority = priority
        self.fwmark = fwmark
        self.table = table
        self.suppressPrefixLength = suppressPrefixLength
    }

    public func argv(_ verb: String) -> [String] {
        var argv = ["ip", "-\(family)", "rule", verb, "priority", String(priority)]
        if let fwmark { argv += ["fwmark", "0x" + String(fwmark, radix: 16)] }
        argv += ["lookup", table.map { String($0) } ?? "main"]
        if let suppressPrefixLength { argv += ["suppress_prefixlength", String(suppressPrefixLength)] }
        return argv
    }

    public var description: String { argv("del").joined(separator: " ") }

    func validate() throws(HostJournalError.Invalid) {
        guard family == 4 || family == 6 else { throw .init("rule family \(family)") }
        if let table { guard table != 0 else { throw .init("rule table 0") } }
        if let suppressPrefixLength {
            guard (0...128).contains(suppressPrefixLength) else { throw .init("suppress_prefixlength") }
        }
    }
}

/// One way to put the host back as it was: a typed operation, never a command line. The code builds
/// the argv (`HostRoute.argv`, …); a journal whose values do not validate is refused whole. Stored as
/// JSON; operators may read it.
public enum HostUndoAction: Codable, Equatable, Sendable, CustomStringConvertible {
    /// `ip route del …` of this route.
    case deleteRoute(HostRoute)
    /// `ip rule del …` of this rule.
    case deleteRule(HostRule)
    /// `ip link del NAME`.
    case deleteLink(name: String)
    /// `nft delete table FAMILY NAME` (family ip, ip6 or inet).
    case deleteNftTable(family: String, name: String)
    /// Put a file's bytes back in place (or remove it if it did not exist), but only while the file
    /// still holds what we wrote (`writtenContentsBase64`): if someone changed it since, their
    /// version is left alone. Written in place, not renamed over, because the file may be a bind
    /// mount (`ip netns exec` mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf). Only files
    /// named resolv.conf.
    case restoreFile(path: String, previousContentsBase64: String, existed: Bool, writtenContentsBase64: String)
    /// `sysctl -w KEY=VALUE` (KEY from `HostJournal.restorableSysctls`).
    case restoreSysctl(key: String, previousValue: String)

    public var description: String {
        switch self {
        case .deleteRoute(let route): route.description
        case .deleteRule(let rule): rule.description
        case .deleteLink(let name): "ip link del \(name)"
        case .deleteNftTable(let family, let name): "nft delete table \(family) \(name)"
        case .restoreFile(let path, _, let existed, _): existed ? "restore \(path)" : "remove \(path)"
        case .restoreSysctl(let key, let value): "sysctl -w \(key)=\(value)"
        }
    }

    /// Throws unless every field is a plain value of its kind.
    func validate() throws(HostJournalError.Invalid) {
        switch self {
        case .deleteRoute(let route): try route.validate()
        case .deleteRule(let rule): try rule.validate()
        case .deleteLink(let name): try HostJournal.checkName(name, what: "link")
        case .deleteNftTable(let family, let name):
            guard ["ip", "ip6", "inet"].contains(family) else { throw .init("nft family \(family)") }
            try HostJournal.checkName(name, what: "nft table")
        case .restoreFile(let path, let previous, _, let written):
            guard path.hasPrefix("/"), path.split(separator: "/").last == "resolv.conf",
                !path.split(separator: "/").contains(where: { $0 == ".." })
            else { throw .init("file \(path) (only resolv.conf is ever restored)") }
            guard Data(base64Encoded: previous) != nil, Data(base64Encoded: written) != nil else {
                throw .init("file contents are not base64")
            }
        case .restoreSysctl(let key, let value):
            guard HostJournal.restorableSysctls.contains(key) else { throw .init("sysctl \(key)") }
            guard !value.isEmpty, value.count <= 8, value.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw .init("sysctl value \(value)")
            }
        }
    }

    /// A `.restoreFile` for the file's current state, to be undone only while it holds `written`.
    /// Refuses a dangling symlink: writing would create its target, and undoing that by removing
    /// `path` would remove the link instead.
    public static func restoring(file path: String, written: [UInt8]) throws(HostJournalError) -> HostUndoAction {
        var link = stat()
        var target = stat()
        if lstat(path, &link) == 0, link.st_mode & S_IFMT == S_IFLNK, stat(path, &target) != 0 {
            throw .cannotReadFile(path: path, reason: "it is a symbolic link to a missing file")
        }
        let writtenBase64 = Data(written).base64EncodedString()
        switch HostFiles.read(path) {
        case .success(let bytes?):
            return .restoreFile(
                path: path, previousContentsBase64: Data(bytes).base64EncodedString(), existed: true,
                writtenContentsBase64: writtenBase64)
        case .success(nil):
            return .restoreFile(
                path: path, previousContentsBase64: "", existed: false, writtenContentsBase64: writtenBase64)
        case .failure(let error):
            throw .cannotReadFile(path: path, reason: error.reason)
        }
    }
}

/// The key that authenticates a data dir's journal: derived from the node's identity secret, so a
/// journal planted by anyone without that secret is refused.
public struct HostJournalKey: Sendable {
    let bytes: [UInt8]

    public init(identity: Identity) { self.init(secret: identity.seed) }

    public init(secret: [UInt8]) {
        bytes = BLAKE2b.hash(Array("umbra/host-journal/v1".utf8), outputLength: 32, key: Array(secret.prefix(64)))
    }

    func mac(_ body: [UInt8]) -> [UInt8] { BLAKE2b.hash(body, outputLength: 32, key: bytes) }
}

/// What a rollback did.
public struct HostRollbackReport: Sendable, CustomStringConvertible {
    /// Undone now.
    public var undone: [HostUndoAction] = []
    /// Already gone (the change never happened, or the kernel removed it with its device).
    public var alreadyGone: [HostUndoAction] = []
    /// Not undone on purpose: the file changed since we wrote it, so the newer version stays.
    public var leftAlone: [(action: HostUndoAction, reason: String)] = []
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
        for (action, reason) in leftAlone { lines.append("left alone: \(action): \(reason)") }
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
        /// Hex BLAKE2b-256 of `canonicalBody(entries)` keyed by `HostJournalKey`.
        var mac: String?
    }

    static let version = 2

    public let path: String
    private let key: HostJournalKey
    private let entries: Mutex<[Entry]>

    /// Opens the journal at `path`, keeping the entries of an earlier run if the file exists (then
    /// `rollback` also undoes those). Throws if the file exists but cannot be read or is not
    /// trusted (owner, mode, MAC, entries) — it is never overwritten blindly, since it may be the
    /// only record of how to repair the host.
    public init(path: String, key: HostJournalKey) throws(HostJournalError) {
        self.path = path
        self.key = key
        self.entries = Mutex(try Self.load(path, key: key))
    }

    /// Sysctls an undo may set: the provider only ever changes IP forwarding.
    public static let restorableSysctls: Set<String> = ["net.ipv4.ip_forward"]

    /// A link, table or device name: 1 to 64 bytes of letters, digits, `_`, `-`, `.`.
    static func checkName(_ name: String, what: String) throws(HostJournalError.Invalid) {
        guard !name.isEmpty, name.utf8.count <= 64, !name.hasPrefix("-"),
            name.unicodeScalars.allSatisfy({
                $0.isASCII
                    && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0))
            })
        else { throw .init("\(what) name \(name)") }
    }

    /// The entries not yet undone, oldest first.
    public var pending: [Entry] { entries.withLock { $0 } }

    /// Appends an undo action and makes it durable. Call before making the change it undoes.
    public func record(_ action: HostUndoAction, scope: String) throws(HostJournalError) {
        try entries.withLock { entries throws(HostJournalError) in
            try Self.save(entries + [Entry(scope: scope, action: action)], to: path, key: key)
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
            try Self.save(remaining, to: path, key: key)
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
                case .leftAlone(let reason):
                    report.leftAlone.append((action, reason))
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
                    try Self.save(remaining, to: path, key: key)
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
    public static func recover(at path: String, key: HostJournalKey, runner: HostCommand) -> HostRollbackReport {
        do throws(HostJournalError) {
            return try HostJournal(path: path, key: key).rollback(runner: runner)
        } catch {
            var report = HostRollbackReport()
            report.journalError =
                error.description + "; nothing in it was run: undo its entries by hand, then remove it"
            return report
        }
    }

    // MARK: - Undoing

    private enum Outcome {
        case undone
        case alreadyGone
        case leftAlone(String)
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
        case .deleteRoute(let route): return runTolerating(route.argv("del"), runner: runner)
        case .deleteRule(let rule): return runTolerating(rule.argv("del"), runner: runner)
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
        case .restoreFile(let path, let contents, let existed, let written):
            guard let bytes = Data(base64Encoded: contents), let ours = Data(base64Encoded: written) else {
                return .failed("the journal's copy of \(path) is not valid base64")
            }
            // Only while the file still holds what we wrote: a newer version (the operator's, a DHCP
            // client's) is not ours to replace with bytes that went stale meanwhile.
            switch HostFiles.read(path) {
            case .success(let current?) where current != [UInt8](ours):
                return .leftAlone("it changed since the tunnel wrote it; the current version stays")
            case .success(nil) where existed:
                return .leftAlone("it was removed since the tunnel wrote it")
            case .failure(let error): return .failed("cannot read \(path): \(error.reason)")
            default: break
            }
            guard existed else {
                if unlink(path) == 0 { return .undone }
                return errno == ENOENT ? .alreadyGone : .failed("cannot remove \(path): \(errnoText())")
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

    /// The bytes the MAC covers: the entries as sorted-key JSON, after a domain tag and the version.
    static func canonicalBody(_ entries: [Entry]) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array("umbra/host-journal/v\(version)\n".utf8) + [UInt8](try encoder.encode(entries))
    }

    private static func load(_ path: String, key: HostJournalKey) throws(HostJournalError) -> [Entry] {
        let bytes: [UInt8]
        switch HostFiles.readTrusted(path) {
        case .success(nil): return []
        case .success(let contents?): bytes = contents
        case .failure(let error as HostJournalError): throw error
        case .failure(let error): throw .cannotReadFile(path: path, reason: "\(error)")
        }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: Data(bytes))
        } catch {
            throw .unreadable(path: path, reason: "\(error)")
        }
        guard file.version == version else {
            throw .unreadable(
                path: path, reason: "version \(file.version), not \(version) (written by an older umbra?)")
        }
        let expected: [UInt8]
        do { expected = key.mac(try canonicalBody(file.entries)) } catch {
            throw .unreadable(path: path, reason: "\(error)")
        }
        guard let mac = file.mac, HostJournal.hex(expected) == mac else {
            throw .untrusted(
                path: path, reason: "its MAC does not match this node's identity key, so this node did not write it")
        }
        for entry in file.entries {
            do throws(HostJournalError.Invalid) { try entry.action.validate() } catch {
                throw .untrusted(path: path, reason: "an entry holds an invalid \(error.what)")
            }
        }
        return file.entries
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    private static func save(_ entries: [Entry], to path: String, key: HostJournalKey) throws(HostJournalError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do {
            let mac = hex(key.mac(try canonicalBody(entries)))
            data = try encoder.encode(File(version: version, entries: entries, mac: mac))
        } catch {
            throw .cannotWrite(path: path, reason: "\(error)")
        }
        let temporary = path + ".tmp"
        unlink(temporary)  // O_EXCL below: never write through a file or link someone else placed
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
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
    /// The file is not one this process may replay: wrong owner or mode, MAC mismatch, or an entry
    /// that is not a plain typed value.
    case untrusted(path: String, reason: String)

    /// An undo action field that does not validate.
    public struct Invalid: Error {
        public var what: String
        init(_ what: String) { self.what = what }
    }

    public var description: String {
        switch self {
        case .cannotReadFile(let path, let reason): "cannot read \(path): \(reason)"
        case .unreadable(let path, let reason):
            "the host-change journal \(path) is damaged (\(reason)); it was left in place"
        case .untrusted(let path, let reason):
            "refusing the host-change journal \(path): \(reason); nothing in it was run and it was left in place"
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
        return readAll(fd).map { Optional($0) }
    }

    static func readAll(_ fd: CInt) -> Result<[UInt8], Failure> {
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

    /// The journal's bytes, nil if it does not exist; fails unless it is a regular file (not a
    /// symlink) owned by this process's effective uid and not writable by group or others.
    static func readTrusted(_ path: String) -> Result<[UInt8]?, any Error> {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return .success(nil) }
            if errno == ELOOP {
                return .failure(HostJournalError.untrusted(path: path, reason: "it is a symbolic link"))
            }
            return .failure(Failure(reason: errnoText()))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .failure(Failure(reason: errnoText())) }
        guard info.st_mode & S_IFMT == S_IFREG else {
            return .failure(HostJournalError.untrusted(path: path, reason: "it is not a regular file"))
        }
        guard info.st_uid == geteuid() else {
            return .failure(
                HostJournalError.untrusted(
                    path: path, reason: "it is owned by uid \(info.st_uid), not by this process's uid \(geteuid())"))
        }
        guard info.st_mode & 0o022 == 0 else {
            return .failure(
                HostJournalError.untrusted(
                    path: path,
                    reason: "its mode \(String(info.st_mode & 0o777, radix: 8)) lets group or others write it"))
        }
        return readAll(fd).map { Optional($0) }.mapError { $0 }
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
