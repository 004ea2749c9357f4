// What a storing node keeps of other nodes' signed records (DESIGN §4). A value type with no clock:
// `now` comes in with every call. Every table is capped (DESIGN §1.5): records and bytes in all,
// records and bytes per publisher, records per key, and records per source (the address a STORE
// came from, and its wide prefix: `SourcePrefix`). Refusals are counted per reason for metrics.
//
// Free identities make per-publisher quotas cheap to multiply (issue #12.7: 3,200 identities filled
// 50,000 records in 27 s and every honest STORE was refused until they expired). So a full store
// evicts: a record from a source holding fewer records than the heaviest source pushes out that
// source's record that expires soonest. A flood from one host or prefix therefore stays within its
// share and cannot keep anyone else out. Records stored without a source (our own) are never
// evicted.
//
// Indexes: records by key then publisher (so `records(for:)` costs the records under that key),
// usage per publisher (quota checks in O(1)), and a min-heap of expiries with lazy deletion whose top
// is always a stored record (so `nextExpiry` is exact and `expire` pops only what it removes, plus
// superseded entries; the heap is rebuilt when superseded entries outnumber stored records).

import HeapModule
import UmbraCore

/// Why a store refused a record. The raw values are the metric/report labels.
public enum RecordRefusal: String, Error, CaseIterable, Sendable, Codable {
    /// The signature is not the publisher's over the record's canonical bytes for this network.
    case forged
    /// The store holds a higher seq for (key, publisher), or the same seq with different content.
    case stale
    /// `expiresAt` is not after `now`.
    case expired
    /// The value is longer than `SignedRecord.maximumValueBytes`.
    case oversized
    /// The publisher's record count or byte quota, or the key's record cap, would be exceeded.
    case overQuota = "over_quota"
    /// The key is not the one the record's kind and value derive.
    case wrongKey = "wrong_key"
    /// `expiresAt` is further ahead than `RecordStoreConfig.maximumLifetime`.
    case tooFarInFuture = "too_far_in_future"
    /// The value does not decode for the record's kind, or a provider entry names someone other than
    /// its publisher.
    case malformedValue = "malformed_value"
    /// The store holds `maximumRecords` already.
    case storeFull = "store_full"
}

/// A change to what a store holds, reported to a persistence layer (`RecordStore.tracksChanges`).
public enum RecordChange: Sendable, Equatable {
    /// Stored or replaced: the record now held for its (key, publisher), and the source it is charged
    /// to (nil: none; a STORE from an unknown address reports `RecordStore.unknownSource`).
    case held(SignedRecord, source: Endpoint?)
    /// Expired or evicted: nothing is held for (key, publisher) any more.
    case dropped(key: Key256, publisher: PublicKey)
}

/// The caps of a `RecordStore`.
public struct RecordStoreConfig: Sendable {
    public var maximumRecords = 50_000
    /// Charged as the sum of `SignedRecord.encodedSize` of all records.
    public var maximumBytes = 32 * 1024 * 1024
    /// The shares of `maximumRecords` that records stored from one source address (IPv4 /32, IPv6
    /// /64, or one socket for loopback and private sources) and from one wide prefix (IPv4 /24, IPv6
    /// /48) may hold.
    public var sourceShares = SourceShares(addressShare: 1.0 / 64, prefixShare: 1.0 / 16)
    public var maximumRecordsPerPublisher = 16
    /// Charged as the sum of `SignedRecord.encodedSize` of the publisher's records.
    public var maximumBytesPerPublisher = 16 * 1024
    /// Provider index keys are shared by every provider of a service in a country.
    public var maximumRecordsPerKey = 64
    /// `expiresAt` may be at most `now` + this.
    public var maximumLifetime: Duration = .seconds(24 * 3600)

    public init() {}
}

/// Signed records held for others, one per (key, publisher). NOTE: a value type; the owner serialises
/// access (the node core is driven by one caller at a time).
public struct RecordStore: Sendable {
    public enum StoreResult: Equatable, Sendable {
        /// A new (key, publisher) record.
        case stored
        /// A higher seq replaced the held record.
        case replaced
        /// The very same record is already held.
        case unchanged
        case refused(RecordRefusal)
    }

    public let networkID: String
    public let config: RecordStoreConfig

    /// Stored records (expired ones included until `expire` runs).
    public private(set) var count = 0
    /// Their encoded bytes.
    public private(set) var bytes = 0
    /// Records pushed out of a full store to make room for one from a lighter source.
    public private(set) var evictions: UInt64 = 0
    /// Refusals counted per reason.
    public private(set) var refusals: [RecordRefusal: UInt64] = [:]
    /// Whether stores, replacements, expiries and evictions are logged in `changes` (off: nothing is
    /// kept). A persistence layer turns it on and drains the log after every call.
    public var tracksChanges = false
    /// Changes since the last `drainChanges`, oldest first (only while `tracksChanges`).
    public private(set) var changes: [RecordChange] = []

    private var recordsByKey: [Key256: [PublicKey: SignedRecord]] = [:]
    private var usageByPublisher: [PublicKey: Usage] = [:]
    private var expiries = ExpiryHeap()

    /// One stored record, by its place.
    private struct RecordRef: Hashable, Sendable {
        var key: Key256
        var publisher: PublicKey
    }

    /// The source keys each record is charged to (records without a source are not listed).
    private var sourceOf: [RecordRef: (address: SourcePrefix, prefix: SourcePrefix?)] = [:]
    private var refsByAddress: [SourcePrefix: Set<RecordRef>] = [:]
    private var countByPrefix: [SourcePrefix: Int] = [:]

    /// The source every STORE whose sender's address is not known shares (one that came through a
    /// relay): `Endpoint.unknown`, so such STOREs are capped together like one address.
    public static let unknownSource = Endpoint.unknown

    /// What one publisher has stored here.
    struct Usage: Equatable, Sendable {
        var records = 0
        var bytes = 0
    }

    public init(networkID: String, config: RecordStoreConfig = .init()) {
        self.networkID = networkID
        self.config = config
    }

    /// The earliest expiry among stored records (for the core's deadline), nil if empty.
    public var nextExpiry: Instant? { expiries.top?.expiresAt }

    // MARK: Storing

    /// Validates and keeps `record`. One record per (key, publisher): the highest seq wins; an equal
    /// seq with different content is `stale`, with identical content `unchanged`. Expired records are
    /// dropped first, so they neither block a new record nor count against any quota.
    ///
    /// Checks, in order: oversized, expired, too far in future, forged, key/value rules (wrong key,
    /// malformed value), seq, then quotas (publisher records and bytes, key, source address and
    /// prefix, store). `source` is where the STORE came from (nil: our own record, never evicted;
    /// a sender whose address is not known passes `unknownSource`). A full store evicts from the heaviest source when
    /// `source` holds fewer records than it (see the file header).
    public mutating func store(_ record: SignedRecord, now: Instant, source: Endpoint? = nil) -> StoreResult {
        expire(now: now)
        if let refusal = validate(record, now: now) { return refuse(refusal) }

        let existing = recordsByKey[record.key]?[record.publisher]
        if let existing {
            if record.seq < existing.seq { return refuse(.stale) }
            if record.seq == existing.seq { return existing == record ? .unchanged : refuse(.stale) }
        }

        // A replacement frees the replaced record's share of the publisher's quota.
        let usage = usageByPublisher[record.publisher] ?? Usage()
        let updated = Usage(
            records: usage.records + (existing == nil ? 1 : 0),
            bytes: usage.bytes - (existing?.encodedSize ?? 0) + record.encodedSize)
        guard updated.records <= config.maximumRecordsPerPublisher, updated.bytes <= config.maximumBytesPerPublisher
        else { return refuse(.overQuota) }
        if existing == nil {
            guard (recordsByKey[record.key]?.count ?? 0) < config.maximumRecordsPerKey else {
                return refuse(.overQuota)
            }
        }
        let ref = RecordRef(key: record.key, publisher: record.publisher)
        let keys = source.map(SourcePrefix.keys(for:))
        if let keys, !fitsSourceCaps(keys, replacing: ref) { return refuse(.overQuota) }
        let growth = record.encodedSize - (existing?.encodedSize ?? 0)
        while count + (existing == nil ? 1 : 0) > config.maximumRecords || bytes + growth > config.maximumBytes {
            guard let keys, evictForLighterSource(keys.address, sparing: ref) else { return refuse(.storeFull) }
        }

        if existing != nil { uncharge(ref) }
        recordsByKey[record.key, default: [:]][record.publisher] = record
        usageByPublisher[record.publisher] = updated
        bytes += growth
        if let keys { charge(ref, to: keys) }
        expiries.push(.init(record))
        if existing == nil {
            count += 1
        } else {
            discardSupersededTop()
            compactIfNeeded()
        }
        if tracksChanges {
            changes.append(.held(record, source: source))
        }
        return existing == nil ? .stored : .replaced
    }

    /// Returns the logged changes and empties the log.
    public mutating func drainChanges() -> [RecordChange] {
        defer { changes.removeAll() }
        return changes
    }

    // MARK: Sources

    /// Whether one more record (or a replacement of `ref`) from a source with `keys` fits its shares.
    private func fitsSourceCaps(
        _ keys: (address: SourcePrefix, prefix: SourcePrefix?), replacing ref: RecordRef
    ) -> Bool {
        let held = sourceOf[ref]
        let atAddress = (refsByAddress[keys.address]?.count ?? 0) - (held?.address == keys.address ? 1 : 0)
        guard atAddress < config.sourceShares.addressLimit(of: config.maximumRecords) else { return false }
        if let prefix = keys.prefix {
            let atPrefix = (countByPrefix[prefix] ?? 0) - (held?.prefix == prefix ? 1 : 0)
            guard atPrefix < config.sourceShares.prefixLimit(of: config.maximumRecords) else { return false }
        }
        return true
    }

    /// Removes the soonest-expiring record of the source address holding the most records, if that
    /// is more than `address` holds (after one more). False when nothing may be evicted.
    private mutating func evictForLighterSource(_ address: SourcePrefix, sparing ref: RecordRef) -> Bool {
        let mine = refsByAddress[address]?.count ?? 0
        guard
            let heaviest = refsByAddress.max(by: { one, two in
                one.value.count == two.value.count
                    ? "\(one.key)" > "\(two.key)" : one.value.count < two.value.count
            }), heaviest.value.count > mine + 1
        else { return false }
        let byKey = recordsByKey
        let victim = heaviest.value.filter { $0 != ref }.compactMap { byKey[$0.key]?[$0.publisher] }
            .min {
                if $0.expiresAt != $1.expiresAt { return $0.expiresAt < $1.expiresAt }
                if $0.key != $1.key { return $0.key < $1.key }
                return $0.publisher.bytes.lexicographicallyPrecedes($1.publisher.bytes)
            }
        guard let victim else { return false }
        remove(victim)
        evictions += 1
        discardSupersededTop()
        return true
    }

    private mutating func charge(_ ref: RecordRef, to keys: (address: SourcePrefix, prefix: SourcePrefix?)) {
        sourceOf[ref] = keys
        refsByAddress[keys.address, default: []].insert(ref)
        if let prefix = keys.prefix { countByPrefix[prefix, default: 0] += 1 }
    }

    private mutating func uncharge(_ ref: RecordRef) {
        guard let keys = sourceOf.removeValue(forKey: ref) else { return }
        refsByAddress[keys.address]?.remove(ref)
        if refsByAddress[keys.address]?.isEmpty == true { refsByAddress[keys.address] = nil }
        if let prefix = keys.prefix {
            let left = (countByPrefix[prefix] ?? 1) - 1
            countByPrefix[prefix] = left > 0 ? left : nil
        }
    }

    /// Records charged to the source address (or socket) of `endpoint` (for tests and reports).
    public func recordCount(fromSource endpoint: Endpoint) -> Int {
        refsByAddress[SourcePrefix.keys(for: endpoint).address]?.count ?? 0
    }

    /// Why this store would refuse `record` on its own merits (size, expiry, signature, key and
    /// value rules; not seq or quotas), or nil. Lookups use it to drop records a store would refuse.
    public func refusal(for record: SignedRecord, now: Instant) -> RecordRefusal? { validate(record, now: now) }

    /// The first rule `record` breaks before the seq and quota checks, or nil.
    private func validate(_ record: SignedRecord, now: Instant) -> RecordRefusal? {
        if record.value.count > SignedRecord.maximumValueBytes { return .oversized }
        if record.expiresAt <= now { return .expired }
        if record.expiresAt > now + config.maximumLifetime { return .tooFarInFuture }
        if !record.verifySignature(networkID: networkID) { return .forged }
        switch record.kind {
        case .peer:
            guard record.key == RecordKey.peer(record.publisher) else { return .wrongKey }
            guard (try? PeerRecordValue.decode(record.value)) != nil else { return .malformedValue }
        case .providerIndex:
            guard let value = try? ProviderIndexValue.decode(record.value), value.provider == record.publisher else {
                return .malformedValue
            }
            guard record.key == RecordKey.providerIndex(serviceType: value.serviceType, country: value.country) else {
                return .wrongKey
            }
        case .text:
            guard let value = try? TextRecordValue.decode(record.value) else { return .malformedValue }
            guard record.key == RecordKey.text(value.name) else { return .wrongKey }
        }
        return nil
    }

    private mutating func refuse(_ reason: RecordRefusal) -> StoreResult {
        refusals[reason, default: 0] += 1
        return .refused(reason)
    }

    // MARK: Reading

    /// Live records under `key`, ordered by publisher bytes; expired ones are not returned.
    public func records(for key: Key256, now: Instant) -> [SignedRecord] {
        guard let byPublisher = recordsByKey[key] else { return [] }
        return byPublisher.values.filter { $0.expiresAt > now }
            .sorted { $0.publisher.bytes.lexicographicallyPrecedes($1.publisher.bytes) }
    }

    /// The live record of `publisher` under `key`, if held.
    public func record(for key: Key256, publisher: PublicKey, now: Instant) -> SignedRecord? {
        guard let record = recordsByKey[key]?[publisher], record.expiresAt > now else { return nil }
        return record
    }

    /// What `publisher` is charged for (for tests and reports).
    func usage(of publisher: PublicKey) -> Usage { usageByPublisher[publisher] ?? Usage() }

    /// Heap entries, live and superseded (for tests: the heap stays bounded).
    var expiryEntryCount: Int { expiries.count }

    // MARK: Expiry

    /// Drops records whose `expiresAt` is at or before `now`; returns how many.
    @discardableResult
    public mutating func expire(now: Instant) -> Int {
        var removed = 0
        while let top = expiries.top, top.expiresAt <= now {
            expiries.popTop()
            guard let record = recordsByKey[top.key]?[top.publisher], top.matches(record) else { continue }
            remove(record)
            removed += 1
        }
        discardSupersededTop()
        return removed
    }

    private mutating func remove(_ record: SignedRecord) {
        uncharge(RecordRef(key: record.key, publisher: record.publisher))
        bytes -= record.encodedSize
        recordsByKey[record.key]?[record.publisher] = nil
        if recordsByKey[record.key]?.isEmpty == true { recordsByKey[record.key] = nil }
        var usage = usageByPublisher[record.publisher] ?? Usage()
        usage.records -= 1
        usage.bytes -= record.encodedSize
        usageByPublisher[record.publisher] = usage.records > 0 ? usage : nil
        count -= 1
        if tracksChanges { changes.append(.dropped(key: record.key, publisher: record.publisher)) }
    }

    /// Keeps the invariant that the heap's top is a stored record.
    private mutating func discardSupersededTop() {
        while let top = expiries.top, !isStored(top) { expiries.popTop() }
    }

    /// Rebuilds the heap from the stored records once superseded entries outnumber them, so a
    /// publisher bumping seq in a loop cannot grow it without bound.
    private mutating func compactIfNeeded() {
        guard expiries.count > 2 * count + 64 else { return }
        expiries = ExpiryHeap(recordsByKey.values.flatMap { $0.values.map(ExpiryHeap.Entry.init) })
    }

    private func isStored(_ entry: ExpiryHeap.Entry) -> Bool {
        guard let record = recordsByKey[entry.key]?[entry.publisher] else { return false }
        return entry.matches(record)
    }
}

// MARK: - Expiry heap

/// A min-heap of record expiries over swift-collections' `Heap` (the project's one priority queue),
/// named for the store's lazy deletion. Entries are not removed when a record is replaced; they are
/// recognised as superseded by their seq and expiry.
struct ExpiryHeap: Sendable {
    struct Entry: Sendable, Comparable {
        var expiresAt: Instant
        var key: Key256
        var publisher: PublicKey
        var seq: UInt64

        init(_ record: SignedRecord) {
            expiresAt = record.expiresAt
            key = record.key
            publisher = record.publisher
            seq = record.seq
        }

        func matches(_ record: SignedRecord) -> Bool { record.seq == seq && record.expiresAt == expiresAt }

        /// Expiry first; key, publisher and seq break ties, so the order is total and deterministic.
        static func < (lhs: Entry, rhs: Entry) -> Bool {
            if lhs.expiresAt != rhs.expiresAt { return lhs.expiresAt < rhs.expiresAt }
            if lhs.key != rhs.key { return lhs.key < rhs.key }
            if lhs.publisher != rhs.publisher {
                return lhs.publisher.bytes.lexicographicallyPrecedes(rhs.publisher.bytes)
            }
            return lhs.seq < rhs.seq
        }
    }

    private var entries = Heap<Entry>()

    init() {}

    /// Builds the heap in one O(n) pass.
    init(_ entries: [Entry]) { self.entries = Heap(entries) }

    var count: Int { entries.count }
    var top: Entry? { entries.min }

    mutating func push(_ entry: Entry) { entries.insert(entry) }

    mutating func popTop() { _ = entries.popMin() }
}
