import Kademlia
import Node
import Testing
import UmbraCore

/// The storage glue fed by hand: start, completions, DHT changes, and the effects they give.
@Suite("StorageNode")
struct StorageNodeTests {
    static let t0 = Instant(nanoseconds: 1_000_000_000_000)

    static func node(seed: UInt64, bootstrap: [DialTarget] = []) -> (NodeInstance, SeededRandom) {
        var rng = SeededRandom(seed: seed)
        var config = NodeConfig()
        config.storage.isEnabled = true
        config.bootstrap = bootstrap
        let node = NodeInstance(identity: Identity.generate(using: &rng), config: config, now: t0, rng: &rng)
        return (node, rng)
    }

    static func requests(_ effects: [NodeEffect]) -> [StorageRequest] {
        effects.compactMap { if case .storage(let request) = $0 { request } else { nil } }
    }

    static func writes(_ effects: [NodeEffect]) -> [[StorageMutation]] {
        requests(effects).compactMap { if case .write(let mutations) = $0.operation { mutations } else { nil } }
    }

    static func textRecord(_ name: String, by identity: Identity, seq: UInt64 = 1, expiresAt: Instant) -> SignedRecord {
        let value = try! TextRecordValue(name: name, text: "hello \(name)")
        return SignedRecord.make(
            kind: .text, key: RecordKey.text(name), value: value.encoded(), seq: seq, expiresAt: expiresAt,
            identity: identity, networkID: NodeConfig().sessions.networkID)
    }

    static func entry(_ record: SignedRecord, source: Endpoint?) -> StorageEntry {
        StorageEntry(
            key: RecordDiskEntry.key(record.key, publisher: record.publisher),
            value: RecordDiskEntry(record: record, source: source).encoded())
    }

    /// Starts `node` and returns the two load tokens (records, contacts).
    static func start(_ node: inout NodeInstance, rng: inout SeededRandom) throws -> (StorageToken, StorageToken) {
        let loads = requests(node.start(now: t0, rng: &rng))
        try #require(loads.count == 2)
        guard case .load(.dhtRecords) = loads[0].operation, case .load(.dhtContacts) = loads[1].operation else {
            Issue.record("unexpected loads \(loads)")
            throw CancellationError()
        }
        #expect(loads[0].token != loads[1].token)
        return (loads[0].token, loads[1].token)
    }

    /// The namespace names are part of the disk format: a node must find what an older one wrote.
    @Test func theNamespacesKeepTheirOnDiskNames() {
        #expect(StorageNamespace.dhtRecords.name == "dht.records")
        #expect(StorageNamespace.dhtContacts.name == "dht.contacts")
    }

    @Test func storageOffEmitsNoRequests() {
        var rng = SeededRandom(seed: 1)
        var node = NodeInstance(identity: Identity.generate(using: &rng), config: NodeConfig(), now: Self.t0, rng: &rng)
        var effects = node.start(now: Self.t0, rng: &rng)
        effects += node.publish(kind: .text, key: RecordKey.text("a"), value: [], now: Self.t0, rng: &rng).effects
        #expect(Self.requests(effects).isEmpty)
        #expect(!node.storageIsReady)
    }

    @Test func startLoadsBothNamespacesAndTheStoreIsRestoredWithoutRewrites() throws {
        var (node, rng) = Self.node(seed: 2)
        let (records, contacts) = try Self.start(&node, rng: &rng)
        var keys = SeededRandom(seed: 99)
        let alice = Identity.generate(using: &keys)
        let good = Self.textRecord("good", by: alice, expiresAt: Self.t0 + .seconds(600))
        let source = Endpoint(address: .v4(0xC633_6401), port: 4747)
        let effects = node.storageCompleted(
            StorageCompletion(token: records, outcome: .loaded([Self.entry(good, source: source)])), now: Self.t0,
            rng: &rng)
        // The record is held again, charged to its source, and nothing is written back.
        #expect(node.dht.store.record(for: good.key, publisher: alice.publicKey, now: Self.t0) == good)
        #expect(node.dht.store.recordCount(fromSource: source) == 1)
        #expect(Self.writes(effects).isEmpty)
        #expect(node.storageCounters.recordsRestored == 1)
        #expect(!node.storageIsReady)  // contacts still loading
        _ = node.storageCompleted(StorageCompletion(token: contacts, outcome: .loaded([])), now: Self.t0, rng: &rng)
        #expect(node.storageIsReady)
    }

    @Test func loadedRecordsAreVerifiedAgainAndBadOnesAreDeletedFromDisk() throws {
        var (node, rng) = Self.node(seed: 3)
        let (records, _) = try Self.start(&node, rng: &rng)
        var keys = SeededRandom(seed: 98)
        let alice = Identity.generate(using: &keys)
        let good = Self.textRecord("good", by: alice, expiresAt: Self.t0 + .seconds(600))
        let expired = Self.textRecord("old", by: alice, expiresAt: Self.t0 - .seconds(1))
        var forged = Self.textRecord("forged", by: alice, expiresAt: Self.t0 + .seconds(600))
        forged.signature[0] ^= 1
        var garbled = Self.entry(Self.textRecord("garbled", by: alice, expiresAt: Self.t0 + .seconds(600)), source: nil)
        garbled.value[garbled.value.count / 2] ^= 0x40
        let truncated = StorageEntry(key: [1, 2, 3], value: [1])
        let entries = [
            Self.entry(good, source: nil), Self.entry(expired, source: nil), Self.entry(forged, source: nil), garbled,
            truncated,
        ]
        let effects = node.storageCompleted(
            StorageCompletion(token: records, outcome: .loaded(entries)), now: Self.t0, rng: &rng)
        #expect(node.dht.store.count == 1)
        #expect(node.storageCounters.recordsRestored == 1)
        #expect(node.storageCounters.recordsRejected == 4)
        let writes = Self.writes(effects)
        try #require(writes.count == 1)
        let deleted = Set(writes[0].compactMap { if case .delete(.dhtRecords, let key) = $0 { key } else { nil } })
        #expect(deleted == Set([entries[1].key, entries[2].key, garbled.key, truncated.key]))
        #expect(writes[0].count == 4)
    }

    @Test func aRecordOfAnotherPublisherWithoutSourceIsChargedToTheRelayedSource() throws {
        var (node, rng) = Self.node(seed: 4)
        let (records, _) = try Self.start(&node, rng: &rng)
        var keys = SeededRandom(seed: 97)
        let alice = Identity.generate(using: &keys)
        let record = Self.textRecord("x", by: alice, expiresAt: Self.t0 + .seconds(600))
        _ = node.storageCompleted(
            StorageCompletion(token: records, outcome: .loaded([Self.entry(record, source: nil)])), now: Self.t0,
            rng: &rng)
        #expect(node.dht.store.recordCount(fromSource: RecordStore.unknownSource) == 1)
    }

    @Test func storeChangesBecomeWritesAndExpiryADelete() throws {
        var (node, rng) = Self.node(seed: 5)
        _ = try Self.start(&node, rng: &rng)
        let (_, effects) = node.publish(
            kind: .text, key: RecordKey.text("mine"), value: try TextRecordValue(name: "mine", text: "t").encoded(),
            now: Self.t0, rng: &rng)
        let writes = Self.writes(effects)
        try #require(writes.count == 1)
        guard case .put(.dhtRecords, let key, let value) = writes[0].first else {
            Issue.record("expected a put, got \(writes)")
            return
        }
        let decoded = try RecordDiskEntry.decode(value)
        #expect(key == RecordDiskEntry.key(RecordKey.text("mine"), publisher: node.identity.publicKey))
        #expect(decoded.source == nil)
        #expect(decoded.record.publisher == node.identity.publicKey)
        // After its lifetime the record expires on a tick, and the disk is told.
        let later = Self.t0 + NodeConfig().dht.recordLifetime + .seconds(1)
        let expiry = Self.writes(node.tick(now: later, rng: &rng))
        #expect(expiry.flatMap { $0 }.contains(.delete(.dhtRecords, key: key)))
    }

    @Test func loadedContactsSeedAJoinAndAnUnknownTokenIsIgnored() throws {
        var (node, rng) = Self.node(seed: 6)
        let (records, contacts) = try Self.start(&node, rng: &rng)
        var keys = SeededRandom(seed: 96)
        let peer = NodeContact(
            publicKey: Identity.generate(using: &keys).publicKey, endpoint: Endpoint(address: .v4(0xC633_6402), port: 9)
        )
        var writer = ByteWriter()
        writer.write(peer)
        let unknown = node.storageCompleted(
            StorageCompletion(token: StorageToken(999), outcome: .written), now: Self.t0, rng: &rng)
        #expect(unknown.isEmpty)
        _ = node.storageCompleted(StorageCompletion(token: records, outcome: .loaded([])), now: Self.t0, rng: &rng)
        let effects = node.storageCompleted(
            StorageCompletion(
                token: contacts, outcome: .loaded([StorageEntry(key: peer.publicKey.bytes, value: writer.bytes)])),
            now: Self.t0, rng: &rng)
        // The join looks us up through the stored contact: a handshake goes to its endpoint.
        #expect(effects.contains { if case .send(_, peer.endpoint) = $0 { true } else { false } })
        #expect(node.storageCounters.contactsLoaded == 1)
        #expect(node.storageIsReady)
    }

    @Test func aFailedLoadLeavesTheDiskAloneAndTheNodeRuns() throws {
        var (node, rng) = Self.node(seed: 7)
        let (records, contacts) = try Self.start(&node, rng: &rng)
        var effects = node.storageCompleted(
            StorageCompletion(token: records, outcome: .failed("disk on fire")), now: Self.t0, rng: &rng)
        effects += node.storageCompleted(
            StorageCompletion(token: contacts, outcome: .failed("disk on fire")), now: Self.t0, rng: &rng)
        #expect(Self.writes(effects).isEmpty)
        #expect(node.storageCounters.failures == 2)
        #expect(node.storageIsReady)
    }
}
