// The storage part: what the node keeps on its disk for the DHT and how it gets it back, through
// storage requests (UmbraCore/Storage.swift). The part asks through the kernel
// (`NodeKernel.requestStorage`, which emits `.storage(StorageRequest)`); the shell performs the
// requests in order and feeds each answer back through `NodeInstance.storageCompleted`, which
// reaches the part as the notice `storageCompleted`.
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
// The part loads at `start` (it is the first part, so the record store logs every change from
// then on), writes the table when its `nextDeadline` is due, and has one hook the router calls
// directly: `dhtAbsorbed`, after every batch of DHT effects the router carries out (the DHT lives
// in the kernel, and every one of its calls may change the store: waiting for an event would let
// a change pile up with the next).

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

/// The storage part: the DHT's records and routing table on disk.
public struct StoragePart: NodePart {
    public static var channels: [FrameChannel] { [] }

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

    let config: NodeConfig
    var phase = Phase.off
    var inFlight: [StorageToken: Purpose] = [:]
    /// The contacts the issued writes leave on disk (nil: not known, e.g. after a failed write).
    var savedContacts: [PublicKey: Endpoint]? = [:]
    var nextContactsCheck: Instant?
    var counters = StorageCounters()

    init(config: NodeConfig) { self.config = config }

    public mutating func handle(
        _ event: PartEvent, node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        switch event {
        case .start:
            start(&node)
        case .notice(.storageCompleted(let completion)):
            completed(completion, &node, now: now, rng: &rng)
        case .tick, .peerUp, .peerDown, .pathChanged, .frame, .notice:
            break
        }
    }

    /// Whether the saved records and contacts have been loaded (always false with persistence off).
    var isReady: Bool { phase == .ready }

    private mutating func issue(_ operation: StorageOperation, for purpose: Purpose, _ node: inout NodeKernel) {
        guard let token = node.requestStorage(operation) else { return }
        inFlight[token] = purpose
        counters.requestsIssued += 1
    }

    var isWritingContacts: Bool { inFlight.values.contains(.writeContacts) }

    // MARK: - Start, and the hook after DHT effects

    /// At `start`: turns the record store's change log on and loads both namespaces.
    private mutating func start(_ node: inout NodeKernel) {
        guard config.storage.isEnabled, phase == .off else { return }
        node.dht.trackRecordChanges()
        phase = .loading
        issue(.load(.dhtRecords), for: .loadRecords, &node)
        issue(.load(.dhtContacts), for: .loadContacts, &node)
    }

    /// After every batch of DHT effects: writes the record store's changes, and the routing table
    /// when its check is due.
    mutating func dhtAbsorbed(_ node: inout NodeKernel, now: Instant) {
        guard phase != .off else { return }
        let changes = Self.recordMutations(node.dht.drainRecordChanges())
        if !changes.isEmpty {
            counters.recordWrites += 1
            issue(.write(changes), for: .writeRecords, &node)
        }
        guard phase == .ready, let due = nextContactsCheck, due <= now else { return }
        guard !isWritingContacts else { return }  // checked again once the write completes
        nextContactsCheck = now + config.storage.contactsInterval
        let contacts = node.dht.table.contacts
        guard !contacts.isEmpty else { return }
        let saved = savedContacts ?? [:]
        var current: [PublicKey: Endpoint] = [:]
        for contact in contacts { current[contact.publicKey] = contact.endpoint }
        var mutations: [StorageMutation] = []
        for contact in contacts.sorted(by: { NodeKernel.keyOrder($0.publicKey, $1.publicKey) })
        where savedContacts?[contact.publicKey] != contact.endpoint {
            var writer = ByteWriter(capacity: 56)
            writer.write(contact)
            mutations.append(.put(.dhtContacts, key: contact.publicKey.bytes, value: writer.bytes))
        }
        for key in saved.keys.sorted(by: NodeKernel.keyOrder) where current[key] == nil {
            mutations.append(.delete(.dhtContacts, key: key.bytes))
        }
        guard !mutations.isEmpty else { return }
        savedContacts = current
        counters.contactWrites += 1
        issue(.write(mutations), for: .writeContacts, &node)
    }

    /// When the routing table is next compared with the disk (nil: not now).
    public var nextDeadline: Instant? {
        guard phase == .ready, !isWritingContacts else { return nil }
        return nextContactsCheck
    }

    // MARK: - Completions

    /// The shell finished one of this part's requests. Loaded records are re-validated and
    /// restored, loaded contacts seed a join; write completions free the slot for the next contacts
    /// write. A token of another part's is not this part's business.
    private mutating func completed(
        _ completion: StorageCompletion, _ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        guard let purpose = inFlight.removeValue(forKey: completion.token) else { return }
        counters.completions += 1
        switch (purpose, completion.outcome) {
        case (_, .failed):
            counters.failures += 1
            // A write that failed may or may not be on disk: the next contacts write puts every
            // contact again. A failed load leaves the namespace as it is on disk (not deleted).
            if purpose == .writeContacts { savedContacts = nil }
            if purpose == .loadContacts { savedContacts = nil }
        case (.loadRecords, .loaded(let entries)):
            restoreRecords(entries, &node, now: now)
        case (.loadContacts, .loaded(let entries)):
            restoreContacts(entries, &node, now: now, rng: &rng)
        case (.loadRecords, .written), (.loadContacts, .written), (.writeRecords, _), (.writeContacts, _):
            break
        }
        if phase == .loading,
            !inFlight.values.contains(where: { $0 == .loadRecords || $0 == .loadContacts })
        {
            phase = .ready
            nextContactsCheck = now + config.storage.contactsInterval
        }
        dhtAbsorbed(&node, now: now)
    }

    private mutating func restoreRecords(_ entries: [StorageEntry], _ node: inout NodeKernel, now: Instant) {
        var fixes: [StorageMutation] = []
        var restored: [[UInt8]: SignedRecord] = [:]
        for entry in entries {
            guard let decoded = try? RecordDiskEntry.decode(entry.value),
                RecordDiskEntry.key(decoded.record.key, publisher: decoded.record.publisher) == entry.key
            else {
                counters.recordsRejected += 1
                fixes.append(.delete(.dhtRecords, key: entry.key))
                continue
            }
            let record = decoded.record
            // A record with no source is one this node stored itself; only its own records may be,
            // so anyone else's is charged to the unknown source (a tampered disk gets no free pass).
            let source =
                decoded.source ?? (record.publisher == node.identity.publicKey ? nil : RecordStore.unknownSource)
            switch node.dht.restoreRecord(record, source: source, now: now) {
            case .stored, .replaced, .unchanged:
                counters.recordsRestored += 1
                restored[entry.key] = record
            case .refused:
                counters.recordsRejected += 1
                // What the store holds for this slot (a newer record that arrived meanwhile) is
                // written back; if nothing, the entry goes.
                if let held = node.dht.store.record(for: record.key, publisher: record.publisher, now: now) {
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
        for change in node.dht.drainRecordChanges() {
            if case .held(let record, _) = change,
                restored[RecordDiskEntry.key(record.key, publisher: record.publisher)] == record
            {
                continue
            }
            mutations += Self.recordMutations([change])
        }
        mutations += fixes
        if !mutations.isEmpty {
            counters.recordWrites += 1
            issue(.write(mutations), for: .writeRecords, &node)
        }
    }

    private mutating func restoreContacts(
        _ entries: [StorageEntry], _ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        var saved: [PublicKey: Endpoint] = [:]
        var loaded: [NodeContact] = []
        for entry in entries {
            var reader = ByteReader(entry.value)
            guard let contact = try? reader.readNodeContact(), reader.isAtEnd, contact.publicKey.bytes == entry.key
            else { continue }  // a bad entry is not on `savedContacts`, so it is never deleted: harmless
            saved[contact.publicKey] = contact.endpoint
            if contact.isShareable, contact.publicKey != node.identity.publicKey { loaded.append(contact) }
        }
        savedContacts = saved
        counters.contactsLoaded += UInt64(loaded.count)
        guard !loaded.isEmpty else { return }
        let seeds = (config.bootstrap + config.dhtSeeds).map {
            NodeContact(publicKey: $0.publicKey, endpoint: $0.endpoint)
        }
        let known = Set(seeds.map(\.publicKey))
        let dhtEffects = node.dht.bootstrap(
            seeds + loaded.filter { !known.contains($0.publicKey) }, now: now, rng: &rng)
        node.queue(dhtEffects)
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
