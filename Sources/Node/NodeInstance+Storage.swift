// The node's storage glue: what the node keeps on its disk and how it gets it back, through host
// requests (UmbraCore/Storage.swift). The node emits `.storage(StorageRequest)` effects; the shell
// performs them in order and feeds each answer back through `storageCompleted`.
//
// Today two namespaces, both owned by the DHT:
// - "dht.records": the signed records this node holds (for others, and its own stored copies).
//   Key: record key (32) | publisher (32). Value: `RecordDiskEntry`. Written as the store changes:
//   every DHT call whose records were stored, replaced, expired or evicted issues one write batch.
// - "dht.contacts": the routing table. Key: public key (32). Value: the contact (public key,
//   endpoint). Written as a diff against what the issued writes leave on disk, at most once every
//   `contactsInterval` and with at most one write in flight. An empty table is never written: a
//   node that lost every contact keeps the last ones it had to rejoin from.
//
// At `start` the node loads both. Every loaded record goes through the store's checks again
// (signature, expiry, key and value rules, quotas, per-source caps): the disk is trusted no more
// than the network. What fails them is deleted from disk (or overwritten with what the store holds).
// The loaded contacts join the bootstrap seeds, and the node looks itself up through them.
//
// Everything here is reached from NodeInstance through three hooks: `storageStart` (in `start`),
// `storageAbsorbDHT` (after every batch of DHT effects) and `storageDeadline` (in `nextDeadline`).

import Kademlia
import UmbraCore

/// Settings of the node's persistence.
public struct StorageNodeConfig: Sendable {
    /// Whether the node persists its DHT records and routing table through `.storage` effects. Off
    /// by default: a shell that answers no storage requests must not be sent any.
    public var isEnabled = false
    /// The routing table is compared with what is on disk at most this often.
    public var contactsInterval: Duration = .seconds(5)

    public init() {}
}

extension StorageNamespace {
    /// Signed DHT records held by this node.
    public static let dhtRecords = StorageNamespace("dht.records")
    /// The DHT routing table's contacts.
    public static let dhtContacts = StorageNamespace("dht.contacts")
}

/// Counters of the storage glue.
public struct StorageCounters: Sendable, Equatable {
    public var requestsIssued: UInt64 = 0
    public var completions: UInt64 = 0
    public var failures: UInt64 = 0
    /// Records loaded from disk and accepted again by the store.
    public var recordsRestored: UInt64 = 0
    /// Records loaded from disk that the store refused (expired, forged, over a cap, ...) or that did
    /// not decode; they are removed from disk.
    public var recordsRejected: UInt64 = 0
    public var contactsLoaded: UInt64 = 0
    public var recordWrites: UInt64 = 0
    public var contactWrites: UInt64 = 0

    public init() {}
}

/// The on-disk form of one held record: `version 1 | has source (bool) | [source endpoint] |
/// SignedRecord`.
public struct RecordDiskEntry: Sendable, Equatable {
    public static let version: UInt8 = 1
    public var record: SignedRecord
    public var source: Endpoint?

    public init(record: SignedRecord, source: Endpoint?) {
        self.record = record
        self.source = source
    }

    public static func key(_ key: Key256, publisher: PublicKey) -> [UInt8] { key.bytes + publisher.bytes }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: record.encodedSize + 24)
        writer.write(Self.version)
        writer.write(source != nil)
        if let source { writer.write(source) }
        writer.write(raw: record.encoded())
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> RecordDiskEntry {
        var reader = ByteReader(bytes)
        let version = try reader.readUInt8()
        guard version == Self.version else { throw .unknownTag(field: "record entry version", value: UInt64(version)) }
        let source: Endpoint? = try reader.readBool(field: "has source") ? try reader.readEndpoint() : nil
        let record = try SignedRecord.decode(from: &reader)
        try reader.expectEnd()
        return RecordDiskEntry(record: record, source: source)
    }
}

/// The node's side of its storage requests.
struct StorageState: Sendable {
    enum Purpose: Sendable, Equatable {
        case loadRecords, loadContacts, writeRecords, writeContacts
    }

    enum Phase: Sendable, Equatable {
        /// Persistence is off (`StorageNodeConfig.isEnabled`), or `start` has not run.
        case off
        /// Waiting for the loads; contacts are not written until the saved ones are known.
        case loading
        /// Both namespaces are loaded.
        case ready
    }

    var phase = Phase.off
    var nextToken: UInt64 = 1
    var inFlight: [StorageToken: Purpose] = [:]
    /// The contacts the issued writes leave on disk (nil: not known, e.g. after a failed write).
    var savedContacts: [PublicKey: Endpoint]? = [:]
    var nextContactsCheck: Instant?
    var counters = StorageCounters()

    mutating func issue(_ operation: StorageOperation, for purpose: Purpose) -> StorageRequest {
        let token = StorageToken(nextToken)
        nextToken += 1
        inFlight[token] = purpose
        counters.requestsIssued += 1
        return StorageRequest(token: token, operation: operation)
    }

    var isWritingContacts: Bool { inFlight.values.contains(.writeContacts) }
}

extension NodeInstance {
    // MARK: - Status

    public var storageCounters: StorageCounters { storage.counters }

    /// Whether the saved records and contacts have been loaded (always false with persistence off).
    public var storageIsReady: Bool { storage.phase == .ready }

    // MARK: - Hooks

    /// At `start`: turns the record store's change log on and loads both namespaces.
    mutating func storageStart(now: Instant, into effects: inout [NodeEffect]) {
        guard config.storage.isEnabled, storage.phase == .off else { return }
        dht.trackRecordChanges()
        storage.phase = .loading
        effects.append(.storage(storage.issue(.load(.dhtRecords), for: .loadRecords)))
        effects.append(.storage(storage.issue(.load(.dhtContacts), for: .loadContacts)))
    }

    /// After every batch of DHT effects: writes the record store's changes, and the routing table
    /// when its check is due.
    mutating func storageAbsorbDHT(now: Instant, into effects: inout [NodeEffect]) {
        guard storage.phase != .off else { return }
        let changes = Self.recordMutations(dht.drainRecordChanges())
        if !changes.isEmpty {
            storage.counters.recordWrites += 1
            effects.append(.storage(storage.issue(.write(changes), for: .writeRecords)))
        }
        guard storage.phase == .ready, let due = storage.nextContactsCheck, due <= now else { return }
        guard !storage.isWritingContacts else { return }  // checked again once the write completes
        storage.nextContactsCheck = now + config.storage.contactsInterval
        let contacts = dht.table.contacts
        guard !contacts.isEmpty else { return }
        let saved = storage.savedContacts ?? [:]
        var current: [PublicKey: Endpoint] = [:]
        for contact in contacts { current[contact.publicKey] = contact.endpoint }
        var mutations: [StorageMutation] = []
        for contact in contacts.sorted(by: { Self.keyOrder($0.publicKey, $1.publicKey) })
        where storage.savedContacts?[contact.publicKey] != contact.endpoint {
            var writer = ByteWriter(capacity: 56)
            writer.write(contact)
            mutations.append(.put(.dhtContacts, key: contact.publicKey.bytes, value: writer.bytes))
        }
        for key in saved.keys.sorted(by: Self.keyOrder) where current[key] == nil {
            mutations.append(.delete(.dhtContacts, key: key.bytes))
        }
        guard !mutations.isEmpty else { return }
        storage.savedContacts = current
        storage.counters.contactWrites += 1
        effects.append(.storage(storage.issue(.write(mutations), for: .writeContacts)))
    }

    /// When the routing table is next compared with the disk (nil: not now).
    var storageDeadline: Instant? {
        guard storage.phase == .ready, !storage.isWritingContacts else { return nil }
        return storage.nextContactsCheck
    }

    // MARK: - Completions

    /// The shell finished a `.storage` request. Loaded records are re-validated and restored, loaded
    /// contacts seed a join; write completions free the slot for the next contacts write. An
    /// unknown token is ignored.
    public mutating func storageCompleted(
        _ completion: StorageCompletion, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        if kernel.partStorage.remove(completion.token) != nil {
            // A part's request (the ledger's locks and entries): the parts hear of it.
            var effects: [NodeEffect] = []
            broadcast(.notice(.storageCompleted(completion)), now: now, rng: &rng, into: &effects)
            return effects
        }
        guard let purpose = storage.inFlight.removeValue(forKey: completion.token) else { return [] }
        storage.counters.completions += 1
        var effects: [NodeEffect] = []
        switch (purpose, completion.outcome) {
        case (_, .failed):
            storage.counters.failures += 1
            // A write that failed may or may not be on disk: the next contacts write puts every
            // contact again. A failed load leaves the namespace as it is on disk (not deleted).
            if purpose == .writeContacts { storage.savedContacts = nil }
            if purpose == .loadContacts { storage.savedContacts = nil }
        case (.loadRecords, .loaded(let entries)):
            restoreRecords(entries, now: now, into: &effects)
        case (.loadContacts, .loaded(let entries)):
            restoreContacts(entries, now: now, rng: &rng, into: &effects)
        case (.loadRecords, .written), (.loadContacts, .written), (.writeRecords, _), (.writeContacts, _):
            break
        }
        if storage.phase == .loading,
            !storage.inFlight.values.contains(where: { $0 == .loadRecords || $0 == .loadContacts })
        {
            storage.phase = .ready
            storage.nextContactsCheck = now + config.storage.contactsInterval
        }
        storageAbsorbDHT(now: now, into: &effects)
        return effects
    }

    private mutating func restoreRecords(_ entries: [StorageEntry], now: Instant, into effects: inout [NodeEffect]) {
        var fixes: [StorageMutation] = []
        var restored: [[UInt8]: SignedRecord] = [:]
        for entry in entries {
            guard let decoded = try? RecordDiskEntry.decode(entry.value),
                RecordDiskEntry.key(decoded.record.key, publisher: decoded.record.publisher) == entry.key
            else {
                storage.counters.recordsRejected += 1
                fixes.append(.delete(.dhtRecords, key: entry.key))
                continue
            }
            let record = decoded.record
            // A record with no source is one this node stored itself; only its own records may be,
            // so anyone else's is charged to the unknown source (a tampered disk gets no free pass).
            let source =
                decoded.source ?? (record.publisher == identity.publicKey ? nil : RecordStore.unknownSource)
            switch dht.restoreRecord(record, source: source, now: now) {
            case .stored, .replaced, .unchanged:
                storage.counters.recordsRestored += 1
                restored[entry.key] = record
            case .refused:
                storage.counters.recordsRejected += 1
                // What the store holds for this slot (a newer record that arrived meanwhile) is
                // written back; if nothing, the entry goes.
                if let held = dht.store.record(for: record.key, publisher: record.publisher, now: now) {
                    let source = decoded.source
                    fixes.append(
                        .put(
                            .dhtRecords, key: entry.key,
                            value: RecordDiskEntry(record: held, source: source).encoded()))
                } else {
                    fixes.append(.delete(.dhtRecords, key: entry.key))
                }
            }
        }
        // Restoring logged every record as a change; those already on disk need no write.
        var mutations: [StorageMutation] = []
        for change in dht.drainRecordChanges() {
            if case .held(let record, _) = change,
                restored[RecordDiskEntry.key(record.key, publisher: record.publisher)] == record
            {
                continue
            }
            mutations += Self.recordMutations([change])
        }
        mutations += fixes
        if !mutations.isEmpty {
            storage.counters.recordWrites += 1
            effects.append(.storage(storage.issue(.write(mutations), for: .writeRecords)))
        }
    }

    private mutating func restoreContacts(
        _ entries: [StorageEntry], now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        var saved: [PublicKey: Endpoint] = [:]
        var loaded: [NodeContact] = []
        for entry in entries {
            var reader = ByteReader(entry.value)
            guard let contact = try? reader.readNodeContact(), reader.isAtEnd, contact.publicKey.bytes == entry.key
            else { continue }  // a bad entry is not on `savedContacts`, so it is never deleted: harmless
            saved[contact.publicKey] = contact.endpoint
            if contact.isShareable, contact.publicKey != identity.publicKey { loaded.append(contact) }
        }
        storage.savedContacts = saved
        storage.counters.contactsLoaded += UInt64(loaded.count)
        guard !loaded.isEmpty else { return }
        let seeds = (config.bootstrap + config.dhtSeeds).map {
            NodeContact(publicKey: $0.publicKey, endpoint: $0.endpoint)
        }
        let known = Set(seeds.map(\.publicKey))
        absorb(
            dht.bootstrap(seeds + loaded.filter { !known.contains($0.publicKey) }, now: now, rng: &rng), now: now,
            rng: &rng, into: &effects)
    }

    /// The write-batch form of record store changes.
    static func recordMutations(_ changes: [RecordChange]) -> [StorageMutation] {
        changes.map { change in
            switch change {
            case .held(let record, let source):
                .put(
                    .dhtRecords, key: RecordDiskEntry.key(record.key, publisher: record.publisher),
                    value: RecordDiskEntry(record: record, source: source).encoded())
            case .dropped(let key, let publisher):
                .delete(.dhtRecords, key: RecordDiskEntry.key(key, publisher: publisher))
            }
        }
    }
}
