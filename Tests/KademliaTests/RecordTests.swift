import Testing
import UmbraCore
import UmbraCrypto
import UmbraTestKit

@testable import Kademlia

// MARK: - Fixtures

private let start = t0
private let hour = Duration.seconds(3600)

private let alice = identity(1)
private let bob = identity(2)
private let carol = identity(3)

private func peerRecord(
    _ who: Identity, seq: UInt64 = 1, expiresAt: Instant = start + hour, endpoints: [Endpoint] = [endpoint(1)],
    networkID: String = network
) -> SignedRecord {
    SignedRecord.peer(
        PeerRecordValue(endpoints: endpoints), seq: seq, expiresAt: expiresAt, identity: who, networkID: networkID)
}

private func providerRecord(
    _ who: Identity, service: String = "wireguard", country: String = "DE", seq: UInt64 = 1,
    expiresAt: Instant = start + hour
) -> SignedRecord {
    SignedRecord.providerIndex(
        serviceType: service, country: country, seq: seq, expiresAt: expiresAt, identity: who, networkID: network)
}

/// A snapshot of everything observable about a store except its refusal counters.
private struct Snapshot: Equatable {
    var count: Int
    var nextExpiry: Instant?
    var records: [[SignedRecord]]

    init(_ store: RecordStore, keys: [Key256]) {
        count = store.count
        nextExpiry = store.nextExpiry
        records = keys.map { store.records(for: $0, now: start) }
    }
}

private let watchedKeys = [
    RecordKey.peer(alice.publicKey), RecordKey.peer(bob.publicKey), RecordKey.peer(carol.publicKey),
    RecordKey.providerIndex(serviceType: "wireguard", country: "DE"),
    RecordKey.providerIndex(serviceType: "wireguard", country: "FR"),
]

/// Stores `record` into `store`, expecting `reason`, the counter for it at 1, every other counter at 0
/// and nothing else changed.
private func expectRefused(
    _ record: SignedRecord, _ reason: RecordRefusal, store: inout RecordStore, now: Instant = start,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let before = Snapshot(store, keys: watchedKeys + [record.key])
    let result = store.store(record, now: now)
    #expect(result == .refused(reason), sourceLocation: sourceLocation)
    #expect(store.refusals[reason] == 1, sourceLocation: sourceLocation)
    #expect(store.refusals.values.reduce(0, +) == 1, sourceLocation: sourceLocation)
    #expect(Snapshot(store, keys: watchedKeys + [record.key]) == before, sourceLocation: sourceLocation)
}

// MARK: - Validation

@Suite("Record store validation")
struct RecordValidationTests {
    @Test("a valid peer record and provider entry are stored and returned")
    func storesValid() {
        var store = RecordStore(networkID: network)
        let peer = peerRecord(alice)
        let provider = providerRecord(alice)
        let first = store.store(peer, now: start)
        let second = store.store(provider, now: start)
        #expect(first == .stored)
        #expect(second == .stored)
        #expect(store.count == 2)
        #expect(store.records(for: peer.key, now: start) == [peer])
        #expect(store.records(for: provider.key, now: start) == [provider])
        #expect(store.record(for: peer.key, publisher: alice.publicKey, now: start) == peer)
        #expect(store.refusals.isEmpty)
        #expect(store.usage(of: alice.publicKey) == .init(records: 2, bytes: peer.encodedSize + provider.encodedSize))
    }

    @Test("forged: a flipped signature byte is refused")
    func forgedSignature() {
        var store = RecordStore(networkID: network)
        var record = peerRecord(alice)
        record.signature[10] ^= 0x01
        expectRefused(record, .forged, store: &store)
    }

    @Test("forged: a changed field under the original signature is refused")
    func forgedField() {
        var store = RecordStore(networkID: network)
        var record = peerRecord(alice, seq: 5)
        record.seq = 6
        expectRefused(record, .forged, store: &store)
    }

    @Test("forged: a record signed for another network id is refused")
    func forgedOtherNetwork() {
        var store = RecordStore(networkID: network)
        let record = peerRecord(alice, networkID: "umbra-other")
        #expect(record.verifySignature(networkID: "umbra-other"))
        expectRefused(record, .forged, store: &store)
    }

    @Test("forged: another publisher's key on a valid signature is refused")
    func forgedPublisher() {
        var store = RecordStore(networkID: network)
        var record = providerRecord(alice)
        record.publisher = bob.publicKey
        expectRefused(record, .forged, store: &store)
    }

    @Test("stale: a lower seq, or the same seq with different content, is refused")
    func stale() {
        var store = RecordStore(networkID: network)
        let stored = store.store(peerRecord(alice, seq: 10), now: start)
        #expect(stored == .stored)
        expectRefused(peerRecord(alice, seq: 9), .stale, store: &store)

        var sameSeq = RecordStore(networkID: network)
        let storedAgain = sameSeq.store(peerRecord(alice, seq: 10), now: start)
        #expect(storedAgain == .stored)
        expectRefused(peerRecord(alice, seq: 10, endpoints: [endpoint(2)]), .stale, store: &sameSeq)
    }

    @Test("expired: expiresAt at or before now is refused")
    func expired() {
        var store = RecordStore(networkID: network)
        expectRefused(peerRecord(alice, expiresAt: start), .expired, store: &store)
        var earlier = RecordStore(networkID: network)
        expectRefused(peerRecord(alice, expiresAt: start - .seconds(1)), .expired, store: &earlier)
    }

    @Test("oversized: a value over 1000 bytes is refused before anything else")
    func oversized() {
        var store = RecordStore(networkID: network)
        let record = SignedRecord.make(
            kind: .peer, key: RecordKey.peer(alice.publicKey), value: [UInt8](repeating: 7, count: 1001), seq: 1,
            expiresAt: start + hour, identity: alice, networkID: network)
        expectRefused(record, .oversized, store: &store)

        // Even an expired, unsigned record with an oversized value counts as oversized.
        var worse = RecordStore(networkID: network)
        let unsigned = SignedRecord(
            kind: .peer, key: .zero, publisher: alice.publicKey, seq: 0, expiresAt: .zero,
            value: [UInt8](repeating: 0, count: 70_000), signature: [])
        expectRefused(unsigned, .oversized, store: &worse)
    }

    @Test("a value of exactly 1000 bytes passes the size check")
    func maximumValueSize() {
        var store = RecordStore(networkID: network)
        // 1000 bytes that are not a peer record value: refused for the value, not its size.
        let record = SignedRecord.make(
            kind: .peer, key: RecordKey.peer(alice.publicKey), value: [UInt8](repeating: 7, count: 1000), seq: 1,
            expiresAt: start + hour, identity: alice, networkID: network)
        expectRefused(record, .malformedValue, store: &store)
    }

    @Test("too far in future: expiresAt beyond now + maximum lifetime is refused")
    func tooFarInFuture() {
        var store = RecordStore(networkID: network)
        let limit = start + store.config.maximumLifetime
        expectRefused(
            peerRecord(alice, expiresAt: limit + .nanoseconds(1)), .tooFarInFuture, store: &store)
        let atLimit = store.store(peerRecord(alice, expiresAt: limit), now: start)
        #expect(atLimit == .stored)

        var saturated = RecordStore(networkID: network)
        expectRefused(
            peerRecord(alice, expiresAt: Instant(nanoseconds: .max)), .tooFarInFuture, store: &saturated)
    }

    @Test("wrong key: a peer record away from its publisher's key is refused")
    func wrongKeyPeer() {
        var store = RecordStore(networkID: network)
        let squat = SignedRecord.make(
            kind: .peer, key: RecordKey.peer(bob.publicKey), value: PeerRecordValue(endpoints: [endpoint(1)]).encoded(),
            seq: 1, expiresAt: start + hour, identity: alice, networkID: network)
        expectRefused(squat, .wrongKey, store: &store)
    }

    @Test("wrong key: a provider entry under another service's or country's key is refused")
    func wrongKeyProvider() {
        var store = RecordStore(networkID: network)
        let value = ProviderIndexValue(serviceType: "wireguard", country: "DE", provider: alice.publicKey)
        let record = SignedRecord.make(
            kind: .providerIndex, key: RecordKey.providerIndex(serviceType: "wireguard", country: "FR"),
            value: value.encoded(), seq: 1, expiresAt: start + hour, identity: alice, networkID: network)
        expectRefused(record, .wrongKey, store: &store)
    }

    @Test("malformed value: bytes that do not decode for the kind are refused")
    func malformedValue() {
        var store = RecordStore(networkID: network)
        let peer = SignedRecord.make(
            kind: .peer, key: RecordKey.peer(alice.publicKey), value: [1, 0, 0], seq: 1, expiresAt: start + hour,
            identity: alice, networkID: network)
        expectRefused(peer, .malformedValue, store: &store)

        var other = RecordStore(networkID: network)
        let provider = SignedRecord.make(
            kind: .providerIndex, key: RecordKey.providerIndex(serviceType: "wireguard", country: "DE"),
            value: PeerRecordValue(endpoints: [endpoint(1)]).encoded(), seq: 1, expiresAt: start + hour,
            identity: alice, networkID: network)
        expectRefused(provider, .malformedValue, store: &other)
    }

    @Test("malformed value: a provider entry naming someone other than its publisher is refused")
    func providerNotPublisher() {
        var store = RecordStore(networkID: network)
        let value = ProviderIndexValue(serviceType: "wireguard", country: "DE", provider: bob.publicKey)
        let record = SignedRecord.make(
            kind: .providerIndex, key: RecordKey.providerIndex(serviceType: "wireguard", country: "DE"),
            value: value.encoded(), seq: 1, expiresAt: start + hour, identity: alice, networkID: network)
        expectRefused(record, .malformedValue, store: &store)
    }

    @Test("over quota: a publisher's record count is capped")
    func overQuotaRecords() {
        var config = RecordStoreConfig()
        config.maximumRecordsPerPublisher = 2
        var store = RecordStore(networkID: network, config: config)
        let first = store.store(providerRecord(alice, country: "DE"), now: start)
        let second = store.store(providerRecord(alice, country: "FR"), now: start)
        #expect(first == .stored && second == .stored)
        expectRefused(providerRecord(alice, country: "NL"), .overQuota, store: &store)
        // Another publisher is not affected.
        let other = store.store(providerRecord(bob, country: "NL"), now: start)
        #expect(other == .stored)
    }

    @Test("over quota: a publisher's bytes are capped")
    func overQuotaBytes() {
        let one = providerRecord(alice, country: "DE")
        var config = RecordStoreConfig()
        config.maximumBytesPerPublisher = one.encodedSize * 2 - 1
        var store = RecordStore(networkID: network, config: config)
        let first = store.store(one, now: start)
        #expect(first == .stored)
        expectRefused(providerRecord(alice, country: "FR"), .overQuota, store: &store)
        #expect(store.usage(of: alice.publicKey) == .init(records: 1, bytes: one.encodedSize))
    }

    @Test("over quota: records per key are capped")
    func overQuotaPerKey() {
        var config = RecordStoreConfig()
        config.maximumRecordsPerKey = 2
        var store = RecordStore(networkID: network, config: config)
        let first = store.store(providerRecord(alice), now: start)
        let second = store.store(providerRecord(bob), now: start)
        #expect(first == .stored && second == .stored)
        expectRefused(providerRecord(carol), .overQuota, store: &store)
        // A replacement under a full key is still accepted.
        let replaced = store.store(providerRecord(bob, seq: 2), now: start)
        #expect(replaced == .replaced)
    }

    @Test("store full: the total record cap refuses new (key, publisher) pairs")
    func storeFull() {
        var config = RecordStoreConfig()
        config.maximumRecords = 2
        var store = RecordStore(networkID: network, config: config)
        let first = store.store(peerRecord(alice), now: start)
        let second = store.store(peerRecord(bob), now: start)
        #expect(first == .stored && second == .stored)
        expectRefused(peerRecord(carol), .storeFull, store: &store)
        let replaced = store.store(peerRecord(alice, seq: 2), now: start)
        #expect(replaced == .replaced)
    }

    @Test("refusals are counted per reason across calls")
    func countsAccumulate() {
        var store = RecordStore(networkID: network)
        var forged = peerRecord(alice)
        forged.signature[0] ^= 0xFF
        _ = store.store(forged, now: start)
        _ = store.store(forged, now: start)
        _ = store.store(peerRecord(alice, expiresAt: start), now: start)
        #expect(store.refusals == [.forged: 2, .expired: 1])
        #expect(store.count == 0)
    }

    @Test("refusal labels are stable", arguments: RecordRefusal.allCases)
    func refusalLabels(reason: RecordRefusal) {
        let expected: [RecordRefusal: String] = [
            .forged: "forged", .stale: "stale", .expired: "expired", .oversized: "oversized",
            .overQuota: "over_quota", .wrongKey: "wrong_key", .tooFarInFuture: "too_far_in_future",
            .malformedValue: "malformed_value", .storeFull: "store_full",
        ]
        #expect(reason.rawValue == expected[reason])
    }
}

// MARK: - Sequence numbers and expiry

@Suite("Record store seq and expiry")
struct RecordStoreLifecycleTests {
    @Test("the highest seq wins and replaces")
    func highestSeqWins() {
        var store = RecordStore(networkID: network)
        let old = peerRecord(alice, seq: 1)
        let new = peerRecord(alice, seq: 2, expiresAt: start + hour * 2, endpoints: [endpoint(2), endpoint(3)])
        let first = store.store(old, now: start)
        let second = store.store(new, now: start)
        #expect(first == .stored)
        #expect(second == .replaced)
        #expect(store.count == 1)
        #expect(store.records(for: old.key, now: start) == [new])
        #expect(store.usage(of: alice.publicKey) == .init(records: 1, bytes: new.encodedSize))
        #expect(store.nextExpiry == new.expiresAt)
        let back = store.store(old, now: start)
        #expect(back == .refused(.stale))
    }

    @Test("storing the identical record again is unchanged and not counted")
    func unchanged() {
        var store = RecordStore(networkID: network)
        let record = providerRecord(alice)
        let first = store.store(record, now: start)
        let again = store.store(record, now: start + .seconds(5))
        #expect(first == .stored)
        #expect(again == .unchanged)
        #expect(store.count == 1)
        #expect(store.refusals.isEmpty)
        #expect(store.usage(of: alice.publicKey) == .init(records: 1, bytes: record.encodedSize))
    }

    @Test("replacement frees the replaced record's bytes: no quota leaks over many replacements")
    func replacementDoesNotLeak() {
        let probe = peerRecord(alice)
        var config = RecordStoreConfig()
        config.maximumBytesPerPublisher = probe.encodedSize
        config.maximumRecordsPerPublisher = 1
        var store = RecordStore(networkID: network, config: config)
        for seq in UInt64(1)...300 {
            let result = store.store(
                peerRecord(alice, seq: seq, expiresAt: start + hour + .seconds(Int64(seq))), now: start)
            #expect(result == (seq == 1 ? .stored : .replaced))
        }
        #expect(store.count == 1)
        #expect(store.usage(of: alice.publicKey) == .init(records: 1, bytes: probe.encodedSize))
        #expect(store.nextExpiry == start + hour + .seconds(300))
        // Superseded expiry entries are compacted away.
        #expect(store.expiryEntryCount <= 2 * store.count + 65)
        // A bigger replacement still counts its own size.
        let bigger = peerRecord(alice, seq: 301, endpoints: [endpoint(1), endpoint(2)])
        let refused = store.store(bigger, now: start)
        #expect(refused == .refused(.overQuota))
    }

    @Test("expire removes expired records and records(for:) hides them before that")
    func expiry() {
        var store = RecordStore(networkID: network)
        let short = providerRecord(alice, expiresAt: start + .seconds(60))
        let long = providerRecord(bob, expiresAt: start + hour)
        let first = store.store(short, now: start)
        let second = store.store(long, now: start)
        #expect(first == .stored && second == .stored)
        #expect(store.nextExpiry == short.expiresAt)

        // Hidden at its expiry instant, even before `expire` runs.
        #expect(store.records(for: short.key, now: short.expiresAt) == [long])
        #expect(store.record(for: short.key, publisher: alice.publicKey, now: short.expiresAt) == nil)
        #expect(store.count == 2)

        #expect(store.expire(now: short.expiresAt - .nanoseconds(1)) == 0)
        #expect(store.expire(now: short.expiresAt) == 1)
        #expect(store.count == 1)
        #expect(store.usage(of: alice.publicKey) == .init())
        #expect(store.nextExpiry == long.expiresAt)
        #expect(store.expire(now: long.expiresAt + hour) == 1)
        #expect(store.count == 0)
        #expect(store.nextExpiry == nil)
        #expect(store.records(for: long.key, now: start) == [])
    }

    @Test("an expired record neither blocks a lower seq nor counts against quotas")
    func expiredDoesNotBlock() {
        var config = RecordStoreConfig()
        config.maximumRecords = 1
        var store = RecordStore(networkID: network, config: config)
        let old = peerRecord(alice, seq: 50, expiresAt: start + .seconds(10))
        let first = store.store(old, now: start)
        #expect(first == .stored)
        let later = start + .seconds(20)
        let restarted = store.store(peerRecord(bob, seq: 1, expiresAt: later + hour), now: later)
        #expect(restarted == .stored)
        let lower = store.store(peerRecord(alice, seq: 1, expiresAt: later + .seconds(30)), now: later + .seconds(1))
        #expect(lower == .refused(.storeFull))
        #expect(store.count == 1)
    }

    @Test("records under a key are ordered by publisher bytes")
    func ordering() {
        var store = RecordStore(networkID: network)
        let entries = [alice, bob, carol].map { providerRecord($0) }
        for entry in entries.reversed() { _ = store.store(entry, now: start) }
        let publishers = store.records(for: entries[0].key, now: start).map(\.publisher.bytes)
        #expect(publishers == entries.map(\.publisher.bytes).sorted { $0.lexicographicallyPrecedes($1) })
        #expect(publishers.count == 3)
    }

    @Test("nextExpiry follows replacements and expiries over many records", arguments: [UInt64(1), 7, 42])
    func nextExpiryTracks(seed: UInt64) {
        var rng = SplitMix(seed: seed)
        var store = RecordStore(networkID: network)
        let publishers = (10..<18).map { identity(UInt8($0)) }
        var seqs = [UInt64](repeating: 0, count: publishers.count)
        var now = start
        for _ in 0..<200 {
            let index = Int(rng.next() % UInt64(publishers.count))
            seqs[index] += 1
            let lifetime = Duration.seconds(Int64(rng.next() % 600) + 1)
            _ = store.store(peerRecord(publishers[index], seq: seqs[index], expiresAt: now + lifetime), now: now)
            now = now + .seconds(Int64(rng.next() % 20))
            if rng.next() % 4 == 0 { store.expire(now: now) }
            let live = publishers.compactMap {
                store.record(for: RecordKey.peer($0.publicKey), publisher: $0.publicKey, now: .zero)
            }
            #expect(store.count == live.count)
            #expect(store.nextExpiry == live.map(\.expiresAt).min())
            #expect(store.expiryEntryCount <= 2 * store.count + 65)
        }
    }
}

/// A small deterministic generator for the property test.
private struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: - Codecs

@Suite("Record codecs")
struct RecordCodecTests {
    @Test("a record round-trips through its wire form", arguments: SignedRecord.Kind.allCases)
    func roundTrip(kind: SignedRecord.Kind) throws {
        let record = kind == .peer ? peerRecord(alice) : providerRecord(alice)
        let bytes = record.encoded()
        #expect(bytes.count == record.encodedSize)
        var reader = ByteReader(bytes + [0xEE])
        let decoded = try SignedRecord.decode(from: &reader)
        #expect(decoded == record)
        #expect(reader.remaining == 1)
        #expect(decoded.verifySignature(networkID: network))
    }

    @Test("a record with a 1000-byte value round-trips")
    func maximumValueRoundTrip() throws {
        let record = SignedRecord.make(
            kind: .providerIndex, key: .zero, value: [UInt8](repeating: 0xAB, count: 1000), seq: .max,
            expiresAt: Instant(nanoseconds: .max), identity: bob, networkID: network)
        var reader = ByteReader(record.encoded())
        #expect(try SignedRecord.decode(from: &reader) == record)
        #expect(reader.isAtEnd)
    }

    @Test("every truncation of a record is refused as truncated")
    func truncated() {
        let bytes = providerRecord(alice).encoded()
        for length in 0..<bytes.count {
            var reader = ByteReader(bytes[..<length])
            do throws(DecodeError) {
                let record = try SignedRecord.decode(from: &reader)
                Issue.record("length \(length) decoded \(record)")
            } catch {
                guard case .truncated = error else {
                    Issue.record("length \(length): \(error)")
                    continue
                }
            }
        }
    }

    @Test("a value length over the limit is refused before reading it")
    func valueTooLong() {
        var bytes = providerRecord(alice).encoded()
        let lengthOffset = 1 + 32 + 32 + 8 + 8
        bytes[lengthOffset] = 0xE9  // 1001, little-endian
        bytes[lengthOffset + 1] = 0x03
        var reader = ByteReader(bytes)
        #expect(throws: DecodeError.lengthTooLarge(offset: lengthOffset, length: 1001, limit: 1000)) {
            _ = try SignedRecord.decode(from: &reader)
        }
    }

    /// Kind bytes no version assigns: 0, the first byte after the known kinds, and 0xFF.
    static let unknownKinds: [UInt8] = [0, (SignedRecord.Kind.allCases.map(\.rawValue).max() ?? 0) + 1, 0xFF]

    @Test("an unknown kind is refused", arguments: unknownKinds)
    func unknownKind(byte: UInt8) {
        #expect(SignedRecord.Kind(rawValue: byte) == nil)
        var bytes = peerRecord(alice).encoded()
        bytes[0] = byte
        var reader = ByteReader(bytes)
        #expect(throws: DecodeError.unknownTag(field: "record kind", value: UInt64(byte))) {
            _ = try SignedRecord.decode(from: &reader)
        }
    }

    @Test("peer record values round-trip")
    func peerValueRoundTrip() throws {
        let v6 = Endpoint(address: .v6(high: 0x2001_0DB8_0000_0000, low: 1), port: 65535)
        let values = [
            PeerRecordValue(endpoints: [endpoint(1)]),
            PeerRecordValue(
                endpoints: [endpoint(1), v6], relays: [NodeContact(publicKey: bob.publicKey, endpoint: v6)]),
            PeerRecordValue(endpoints: [], relays: [NodeContact(publicKey: bob.publicKey, endpoint: endpoint(2))]),
            PeerRecordValue(
                endpoints: (1...6).map { endpoint($0) },
                relays: [alice, bob, carol, identity(9)].map { NodeContact(publicKey: $0.publicKey, endpoint: v6) }),
        ]
        for value in values {
            let bytes = value.encoded()
            #expect(try PeerRecordValue.decode(bytes) == value)
        }
        #expect(PeerRecordValue(endpoints: [endpoint(1)]).encoded() == [1, 1, 4, 10, 0, 0, 1, 0x8B, 0x12, 0])
    }

    @Test(
        "malformed peer record values are refused",
        arguments: [
            ([], "truncated"),
            ([2, 1, 4, 10, 0, 0, 1, 0x8B, 0x12, 0], "unknown version"),
            ([1, 0, 0], "neither endpoints nor relays"),
            ([1, 7] + [UInt8](repeating: 0, count: 100), "7 endpoints"),
            ([1, 1, 4, 10, 0, 0, 1, 0x8B, 0x12], "missing relay count"),
            ([1, 1, 4, 10, 0, 0, 1, 0x8B, 0x12, 5] + [UInt8](repeating: 1, count: 160), "5 relays"),
            ([1, 1, 4, 10, 0, 0, 1, 0x8B, 0x12, 1] + [UInt8](repeating: 1, count: 31), "short relay key"),
            ([1, 1, 4, 10, 0, 0, 1, 0x8B, 0x12, 1] + [UInt8](repeating: 1, count: 32), "relay without endpoint"),
            ([1, 1, 6, 1, 0] + [UInt8](repeating: 0, count: 13) + [5, 0x8B, 0x12, 0], "a relay path endpoint"),
            ([1, 1, 4, 10, 0, 0, 1, 0x8B, 0x12, 0, 0], "trailing byte"),
            ([1, 1, 4, 10, 0, 0, 1, 0, 0, 0], "port 0"),
            ([1, 1, 5, 10, 0, 0, 1, 0x8B, 0x12, 0], "address family 5"),
        ] as [([UInt8], String)]
    )
    func peerValueRejects(bytes: [UInt8], why: String) {
        #expect(throws: DecodeError.self, "\(why)") { _ = try PeerRecordValue.decode(bytes) }
    }

    @Test("peer value errors are specific")
    func peerValueErrors() {
        #expect(throws: DecodeError.trailingBytes(count: 1)) {
            _ = try PeerRecordValue.decode([1, 1, 4, 10, 0, 0, 1, 0x8B, 0x12, 0, 0])
        }
        #expect(throws: DecodeError.lengthTooLarge(offset: 1, length: 9, limit: 6)) {
            _ = try PeerRecordValue.decode([1, 9])
        }
        #expect(throws: DecodeError.unknownTag(field: "peer record version", value: 2)) {
            _ = try PeerRecordValue.decode([2])
        }
    }

    @Test("provider index values round-trip")
    func providerValueRoundTrip() throws {
        for (service, country) in [
            ("wireguard", "DE"), ("a", "US"), (String(repeating: "z9-", count: 10) + "ab", "ZZ"),
        ] {
            let value = ProviderIndexValue(serviceType: service, country: country, provider: carol.publicKey)
            let bytes = value.encoded()
            #expect(bytes.count == 1 + 2 + service.utf8.count + 2 + 32)
            #expect(try ProviderIndexValue.decode(bytes) == value)
        }
    }

    @Test(
        "malformed provider index values are refused",
        arguments: [
            ("", "DE", "empty service type"),
            ("WireGuard", "DE", "uppercase service type"),
            ("wire_guard", "DE", "underscore"),
            ("wiregüard", "DE", "non-ASCII"),
            (String(repeating: "a", count: 33), "DE", "33 bytes"),
            ("wireguard", "de", "lowercase country"),
            ("wireguard", "D", "one-letter country"),
            ("wireguard", "DEU", "alpha-3 country"),
            ("wireguard", "D1", "digit in country"),
        ]
    )
    func providerValueRejects(service: String, country: String, why: String) {
        let bytes = ProviderIndexValue(serviceType: service, country: country, provider: alice.publicKey).encoded()
        #expect(throws: DecodeError.self, "\(why)") { _ = try ProviderIndexValue.decode(bytes) }
        #expect(
            !ProviderIndexValue.isValidServiceType(service) || !ProviderIndexValue.isValidCountry(country), "\(why)")
    }

    @Test("provider index values refuse trailing bytes, truncation and unknown versions")
    func providerValueFraming() {
        let bytes = ProviderIndexValue(serviceType: "wireguard", country: "DE", provider: alice.publicKey).encoded()
        #expect(throws: DecodeError.trailingBytes(count: 1)) { _ = try ProviderIndexValue.decode(bytes + [0]) }
        for length in 0..<bytes.count {
            #expect(throws: DecodeError.self) { _ = try ProviderIndexValue.decode(Array(bytes[..<length])) }
        }
        var wrongVersion = bytes
        wrongVersion[0] = 2
        #expect(throws: DecodeError.unknownTag(field: "provider index version", value: 2)) {
            _ = try ProviderIndexValue.decode(wrongVersion)
        }
    }
}

// MARK: - Canonical bytes

@Suite("Record canonical bytes")
struct RecordCanonicalTests {
    /// A fixed identity and record: if the signed format changes by one bit, these pins fail. The
    /// expected values were checked against an independent Ed25519/BLAKE2b implementation.
    static let pinned: (identity: Identity, record: SignedRecord) = {
        let identity: Identity
        do { identity = try Identity(seed: (0..<32).map { UInt8($0) }) } catch { fatalError("\(error)") }
        let record = SignedRecord.peer(
            PeerRecordValue(endpoints: [Endpoint(address: .v4(0x0A00_0001), port: 4747)]), seq: 7,
            expiresAt: Instant(nanoseconds: 1_700_000_000_000_000_000), identity: identity, networkID: "umbra-test")
        return (identity, record)
    }()

    @Test("signed bytes are pinned")
    func signedBytesPinned() {
        let record = Self.pinned.record
        let bytes = record.signedBytes(networkID: "umbra-test")
        // domain tag | 00 | len 10 | "umbra-test" | kind 1 | key | publisher | seq 7 | expiry | len 10 | value
        let expected =
            "756d6272612f7265636f72642f7631000a00756d6272612d7465737401f6f6ea78f191469886743ef174b8ec986cb009"
            + "3072827891ab968a7d200a6cac03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8070000"
            + "000000000000002a36fe9c97170a000101040a0000018b1200"
        #expect(Hex.encode(bytes) == expected)
        // Domain tag, separator and network id lead.
        #expect(Array(bytes.prefix(16)) == Array("umbra/record/v1".utf8) + [0])
    }

    @Test("the signature and wire form are pinned")
    func signaturePinned() {
        let record = Self.pinned.record
        let signature =
            "ed277abdc57c423570d07f67034f156dc719055c75e7919e52aa5c0f2dde347fa8e433628d12ad595b05108e8719f33d"
            + "29c9aa3c7d88d21a47a3c8d6e9e41f0f"
        let wire =
            "01f6f6ea78f191469886743ef174b8ec986cb0093072827891ab968a7d200a6cac03a107bff3ce10be1d70dd18e74bc0"
            + "9967e4d6309ba50d5f1ddc8664125531b8070000000000000000002a36fe9c97170a000101040a0000018b1200ed277a"
            + "bdc57c423570d07f67034f156dc719055c75e7919e52aa5c0f2dde347fa8e433628d12ad595b05108e8719f33d29c9aa"
            + "3c7d88d21a47a3c8d6e9e41f0f"
        #expect(Hex.encode(record.signature) == signature)
        #expect(Hex.encode(record.encoded()) == wire)
        #expect(record.verifySignature(networkID: "umbra-test"))
    }

    @Test("record keys are pinned and normalise the country's case")
    func keysPinned() {
        #expect(
            RecordKey.peer(Self.pinned.identity.publicKey).description
                == "f6f6ea78f191469886743ef174b8ec986cb0093072827891ab968a7d200a6cac")
        let key = RecordKey.providerIndex(serviceType: "wireguard", country: "DE")
        #expect(key.description == "2ed1519a2afb171b498a0f6e18431c716d0a4e574f08460a3325c38522f2347b")
        #expect(RecordKey.providerIndex(serviceType: "wireguard", country: "de") == key)
        #expect(RecordKey.providerIndex(serviceType: "wireguard", country: "FR") != key)
        #expect(RecordKey.providerIndex(serviceType: "wireguar", country: "dDE") != key)
        #expect(RecordKey.peer(alice.publicKey) != RecordKey.peer(bob.publicKey))
        #expect(RecordKey.peer(alice.publicKey) != alice.nodeID)
    }

    @Test("the signature covers kind and network id")
    func domainSeparation() {
        var record = Self.pinned.record
        #expect(!record.verifySignature(networkID: "umbra-test2"))
        #expect(!record.verifySignature(networkID: ""))
        record.kind = .providerIndex
        #expect(!record.verifySignature(networkID: "umbra-test"))
    }
}
