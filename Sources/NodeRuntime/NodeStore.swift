// The node's disk: `<data dir>/node.sqlite`, a SQLite database (GRDB, WAL mode, synchronous=FULL)
// that performs the node's storage requests (UmbraCore/Storage.swift) on its own serial queue, never
// on the packet event loop.
//
// One table, `entry (namespace, key, value)`: the key-value namespaces the cores choose
// ("dht.records", "dht.contacts", ...). The schema only ever grows by appended migrations.
//
// Threading: `submit` may be called from any thread (NodeDriver calls it on the event loop); requests
// run in the order submitted on `queue`. Whatever is queued when a drain starts runs in one
// transaction (group commit: one fsync for a burst of writes), and each completion is handed to its
// callback after the commit, on the store's queue.

import Dispatch
import Foundation
import GRDB
import Kademlia
import Node
import Synchronization
import UmbraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the store could not be opened. The descriptions say what to do.
public enum NodeStoreError: Error, Sendable, CustomStringConvertible {
    /// The file is not a SQLite database, or fails its integrity check.
    case corrupted(path: String, reason: String)
    /// The file was written by a newer umbra (it has migrations this one does not know).
    case newerVersion(path: String, unknown: [String])
    /// Anything else (permissions, a full disk, ...).
    case cannotOpen(path: String, reason: String)

    public var description: String {
        switch self {
        case .corrupted(let path, let reason):
            "the node store \(path) is damaged (\(reason)). Stop the node and move it aside (`mv \(path) "
                + "\(path).broken`, and its -wal and -shm files if present) to start with an empty store: "
                + "the node relearns its DHT records and contacts from the network (a bootstrap list may be "
                + "needed to rejoin)"
        case .newerVersion(let path, let unknown):
            "the node store \(path) was written by a newer umbra (unknown migrations: "
                + "\(unknown.joined(separator: ", "))). Run that version, or move the file aside to start "
                + "with an empty store"
        case .cannotOpen(let path, let reason): "cannot open the node store \(path): \(reason)"
        }
    }
}

/// The SQLite store behind a node's storage requests.
public final class NodeStore: Sendable {
    public static let fileName = "node.sqlite"
    public let path: String
    private let database: DatabasePool
    private let queue = DispatchQueue(label: "umbra.node-store")
    private let jobs = Mutex<[Job]>([])

    private struct Job: Sendable {
        var request: StorageRequest
        var completion: @Sendable (StorageCompletion) -> Void
    }

    /// One row of `entry`.
    struct Entry: Codable, FetchableRecord, PersistableRecord {
        static let databaseTableName = "entry"
        var namespace: String
        var key: Data
        var value: Data
    }

    /// The schema, migration by migration. Append only: a released migration is never edited.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: entry") { db in
            try db.create(table: "entry", options: [.withoutRowID]) { table in
                table.column("namespace", .text).notNull()
                table.column("key", .blob).notNull()
                table.column("value", .blob).notNull()
                table.primaryKey(["namespace", "key"])
            }
        }
        return migrator
    }

    /// Opens (creating if needed) the store at `path`, checks it and migrates it.
    public init(path: String) throws(NodeStoreError) {
        self.path = path
        var configuration = Configuration()
        configuration.label = "umbra.node-store"
        configuration.prepareDatabase { db in
            // WAL + FULL: a committed transaction is on disk (the WAL is fsynced at every commit).
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        // Created 0600 (SQLite gives its -wal and -shm files the same mode): not secret, but nobody's
        // business either.
        createPrivateFile(path)
        do {
            database = try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw Self.classify(error, path: path)
        }
        do {
            let (check, unknown) = try database.read { db in
                let check = try String.fetchAll(db, sql: "PRAGMA quick_check")
                let applied = try Self.migrator.appliedIdentifiers(db)
                let known = Set(Self.migrator.migrations)
                return (check, applied.filter { !known.contains($0) }.sorted())
            }
            guard check == ["ok"] else {
                throw NodeStoreError.corrupted(path: path, reason: check.prefix(3).joined(separator: "; "))
            }
            guard unknown.isEmpty else { throw NodeStoreError.newerVersion(path: path, unknown: unknown) }
            try Self.migrator.migrate(database)
        } catch let error as NodeStoreError {
            try? database.close()
            throw error
        } catch {
            try? database.close()
            throw Self.classify(error, path: path)
        }
    }

    /// Opens `<directory>/node.sqlite` and imports a routing table file left by an older umbra
    /// (`routing-table.txt`, then removed). Returns the store and how many contacts were imported.
    public static func open(in directory: DataDirectory) throws(NodeStoreError) -> (NodeStore, imported: Int) {
        let store = try NodeStore(path: directory.path + "/" + fileName)
        let imported: Int
        do { imported = try store.importLegacyRoutingTable(from: directory) } catch {
            throw .cannotOpen(path: store.path, reason: "importing \(legacyRoutingTableFile): \(error)")
        }
        return (store, imported)
    }

    private static func classify(_ error: any Error, path: String) -> NodeStoreError {
        if let error = error as? DatabaseError,
            error.resultCode == .SQLITE_NOTADB || error.resultCode == .SQLITE_CORRUPT
        {
            return .corrupted(path: path, reason: error.message ?? "\(error.resultCode)")
        }
        return .cannotOpen(path: path, reason: "\(error)")
    }

    // MARK: - Requests

    /// Queues `request`; `completion` is called on the store's queue once it is performed (a write:
    /// once it is durable). Requests are performed in the order submitted.
    public func submit(_ request: StorageRequest, completion: @escaping @Sendable (StorageCompletion) -> Void) {
        let first = jobs.withLock { jobs in
            jobs.append(Job(request: request, completion: completion))
            return jobs.count == 1
        }
        if first { queue.async { self.drain() } }
    }

    /// Performs a request and waits for it (tests, and the import at open).
    public func perform(_ request: StorageRequest) async -> StorageCompletion {
        await withCheckedContinuation { continuation in
            submit(request) { continuation.resume(returning: $0) }
        }
    }

    /// Waits for every request submitted so far, then closes the database. Nothing may be submitted
    /// afterwards.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                try? self.database.close()
                continuation.resume()
            }
        }
    }

    /// Runs everything queued in one transaction (store queue only).
    private func drain() {
        let batch = jobs.withLock { jobs in
            defer { jobs.removeAll() }
            return jobs
        }
        guard !batch.isEmpty else { return }
        var outcomes: [StorageOutcome]
        do {
            outcomes = try database.write { db in
                try batch.map { try Self.perform($0.request.operation, in: db) }
            }
        } catch {
            let reason = "\(Self.classify(error, path: path))"
            outcomes = Array(repeating: .failed(reason), count: batch.count)
        }
        for (job, outcome) in zip(batch, outcomes) {
            job.completion(StorageCompletion(token: job.request.token, outcome: outcome))
        }
    }

    private static func perform(_ operation: StorageOperation, in db: Database) throws -> StorageOutcome {
        switch operation {
        case .load(let namespace):
            let rows = try Row.fetchAll(
                db, sql: "SELECT key, value FROM entry WHERE namespace = ? ORDER BY key", arguments: [namespace.name])
            return .loaded(
                rows.map { row in
                    let key: Data = row["key"]
                    let value: Data = row["value"]
                    return StorageEntry(key: [UInt8](key), value: [UInt8](value))
                })
        case .loadRange(let namespace, let from, let below, let limit):
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT key, value FROM entry WHERE namespace = ? AND key >= ? AND key < ? ORDER BY key LIMIT ?",
                arguments: [namespace.name, Data(from), Data(below), max(0, limit)])
            return .loaded(
                rows.map { row in
                    let key: Data = row["key"]
                    let value: Data = row["value"]
                    return StorageEntry(key: [UInt8](key), value: [UInt8](value))
                })
        case .write(let mutations):
            for mutation in mutations {
                switch mutation {
                case .put(let namespace, let key, let value):
                    try Entry(namespace: namespace.name, key: Data(key), value: Data(value)).insert(
                        db, onConflict: .replace)
                case .delete(let namespace, let key):
                    try db.execute(
                        sql: "DELETE FROM entry WHERE namespace = ? AND key = ?",
                        arguments: [namespace.name, Data(key)])
                }
            }
            return .written
        }
    }

    // MARK: - The routing table file of older versions

    /// What umbra wrote before this store: the routing table in the bootstrap-list format.
    public static let legacyRoutingTableFile = "routing-table.txt"

    /// Imports `<directory>/routing-table.txt` into "dht.contacts" and removes the file. Returns how
    /// many contacts were imported (0: no file).
    func importLegacyRoutingTable(from directory: DataDirectory) throws -> Int {
        let path = directory.path + "/" + Self.legacyRoutingTableFile
        guard let text = readSmallFile(path) else { return 0 }
        let contacts = BootstrapList.parse(text).contacts.compactMap { contact in
            contact.endpoint.map { NodeContact(publicKey: contact.publicKey, endpoint: $0) }
        }
        try database.write { db in
            for contact in contacts {
                var writer = ByteWriter(capacity: 56)
                writer.write(contact)
                try Entry(
                    namespace: StorageNamespace.dhtContacts.name, key: Data(contact.publicKey.bytes),
                    value: Data(writer.bytes)
                ).insert(db, onConflict: .replace)
            }
        }
        unlink(path)
        return contacts.count
    }
}

/// Creates `path` with mode 0600 if it does not exist (an existing file is left alone).
private func createPrivateFile(_ path: String) {
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
    if fd >= 0 { close(fd) }
}

/// The text of a file of at most 256 KiB (the rest is ignored), nil if it cannot be opened.
private func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 256 * 1024)
    let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard count >= 0 else { return nil }
    return String(decoding: buffer[..<count], as: UTF8.self)
}
