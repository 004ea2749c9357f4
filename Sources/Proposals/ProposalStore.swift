// The proposals a node knows (DESIGN §4): one entry per (provider, service type), an offer or a
// tombstone, the highest seq winning. A value type with no clock: `now` comes in with every call.
// Bounded (DESIGN §1.5): `capacity` entries in all, `maximumEntriesPerProvider` per provider; when full,
// the entry expiring soonest makes room (or the newcomer is refused if it would expire soonest itself).
//
// Indexes: entries by sync key (`ProposalID.syncKey`); the sync keys sorted (for range reads by the
// join sync; inserting a new id costs a binary search and a shift of the array, replacing costs
// nothing); offers by service type (queries); entries per provider (quota); and a min-heap of
// expiries with lazy deletion whose top is always a stored entry (expiry and eviction), rebuilt when
// superseded heap entries outnumber the stored ones.

import HeapModule
import UmbraCore

/// The caps of a `ProposalStore`.
public struct ProposalStoreConfig: Sendable {
    /// Offers and tombstones together.
    public var capacity = 100_000
    /// Offers and tombstones of one provider (one per service type).
    public var maximumEntriesPerProvider = 16

    public init(capacity: Int = 100_000, maximumEntriesPerProvider: Int = 16) {
        self.capacity = capacity
        self.maximumEntriesPerProvider = maximumEntriesPerProvider
    }
}

/// Offers and tombstones held by a node. NOTE: a value type; the owner serialises access (the node
/// core is driven by one caller at a time).
public struct ProposalStore: Sendable {
    public enum InsertOutcome: Equatable, Sendable {
        /// A new offer (no entry for its id, or a tombstone with a lower seq).
        case added
        /// A higher seq replaced the held offer.
        case replaced
        /// The very same proposal (same seq, same bytes) is already held.
        case duplicate
        /// The held entry has a higher seq, or the same seq with other bytes: a replay or a stale copy.
        case stale
        /// A tombstone removed the held offer (and is now held in its place).
        case withdrawn
        /// A tombstone was stored with no offer to remove (none held, or an older tombstone).
        case tombstoneStored
        case refused(ProposalError)
    }

    /// What happened to proposals handed to the store, for metrics.
    public struct Counters: Equatable, Sendable {
        public var added: UInt64 = 0
        public var replaced: UInt64 = 0
        public var duplicate: UInt64 = 0
        public var stale: UInt64 = 0
        public var withdrawn: UInt64 = 0
        public var tombstoneStored: UInt64 = 0
        /// Entries removed to make room for a proposal expiring later.
        public var evicted: UInt64 = 0
        /// Entries removed by `expire(now:)`.
        public var expired: UInt64 = 0
        public var refusals: [ProposalError.Reason: UInt64] = [:]

        public init() {}
    }

    struct Entry: Sendable {
        var signed: SignedProposal
        /// `signed.encoded()`, kept for sync pages and duplicate checks.
        var bytes: [UInt8]
        /// Tells a live heap entry from a superseded one.
        var generation: UInt64
    }

    public let config: ProposalStoreConfig
    public private(set) var counters = Counters()
    /// Offers held (expired ones included until `expire` runs).
    public private(set) var count = 0
    /// Tombstones held.
    public private(set) var tombstoneCount = 0

    var entries: [Key256: Entry] = [:]
    /// Every key of `entries`, ascending.
    var sortedKeys: [Key256] = []
    private var offersByType: [String: Set<Key256>] = [:]
    private var entriesPerProvider: [PublicKey: Int] = [:]
    private var expiries = ProposalExpiryHeap()
    private var nextGeneration: UInt64 = 0

    public init(config: ProposalStoreConfig = .init()) {
        self.config = config
    }

    public init(capacity: Int) {
        self.init(config: ProposalStoreConfig(capacity: capacity))
    }

    /// The earliest expiry among held entries (for the core's deadline), nil if empty.
    public var nextExpiry: Instant? { expiries.top?.expiresAt }

    // MARK: Inserting

    /// Decodes `bytes`, verifies the proposal for `networkID` at `now`, then inserts it.
    public mutating func verifyAndInsert(_ bytes: [UInt8], networkID: String, now: Instant) -> InsertOutcome {
        let signed: SignedProposal
        do throws(ProposalError) {
            signed = try SignedProposal(decoding: bytes)
            try signed.verify(networkID: networkID, now: now)
        } catch {
            return refuse(error)
        }
        return insert(signed, now: now)
    }

    /// Inserts a proposal the caller has verified (`SignedProposal.verify`); only expiry and size are
    /// checked again. Expired entries are dropped first. The newest seq per id wins: a tombstone with
    /// a seq at least the offer's removes it and stays until it expires, so an older offer cannot come
    /// back; an offer after a tombstone needs a higher seq.
    public mutating func insert(_ signed: SignedProposal, now: Instant) -> InsertOutcome {
        expire(now: now)
        guard signed.expiresAt > now else { return refuse(.expired) }
        let bytes = signed.encoded()
        guard bytes.count <= SignedProposal.maximumEncodedSize else { return refuse(.oversized(bytes.count)) }

        let key = signed.id.syncKey
        let isOffer = signed.kind == .offer
        if let held = entries[key] {
            if signed.seq == held.signed.seq, bytes == held.bytes {
                counters.duplicate += 1
                return .duplicate
            }
            // An equal seq only wins when a tombstone meets an offer.
            let wins =
                signed.seq > held.signed.seq
                || (signed.seq == held.signed.seq && !isOffer && held.signed.kind == .offer)
            guard wins else {
                counters.stale += 1
                return .stale
            }
            let heldOffer = held.signed.kind == .offer
            replace(key: key, held: held, with: signed, bytes: bytes)
            switch (heldOffer, isOffer) {
            case (true, true):
                counters.replaced += 1
                return .replaced
            case (false, true):
                counters.added += 1
                return .added
            case (true, false):
                counters.withdrawn += 1
                return .withdrawn
            case (false, false):
                counters.tombstoneStored += 1
                return .tombstoneStored
            }
        }

        guard entriesPerProvider[signed.provider, default: 0] < config.maximumEntriesPerProvider else {
            return refuse(.overQuota)
        }
        if count + tombstoneCount >= config.capacity {
            // Room is made by the entry expiring soonest, unless that would be the newcomer.
            guard config.capacity > 0, let soonest = expiries.top, soonest.expiresAt < signed.expiresAt else {
                return refuse(.storeFull)
            }
            remove(key: soonest.key)
            counters.evicted += 1
        }
        add(key: key, signed: signed, bytes: bytes)
        if isOffer {
            counters.added += 1
            return .added
        }
        counters.tombstoneStored += 1
        return .tombstoneStored
    }

    private mutating func refuse(_ error: ProposalError) -> InsertOutcome {
        counters.refusals[error.reason, default: 0] += 1
        return .refused(error)
    }

    private mutating func add(key: Key256, signed: SignedProposal, bytes: [UInt8]) {
        let entry = makeEntry(signed, bytes: bytes)
        entries[key] = entry
        sortedKeys.insert(key, at: insertionIndex(of: key))
        entriesPerProvider[signed.provider, default: 0] += 1
        index(entry, key: key)
        expiries.push(.init(expiresAt: signed.expiresAt, key: key, generation: entry.generation))
    }

    private mutating func replace(key: Key256, held: Entry, with signed: SignedProposal, bytes: [UInt8]) {
        unindex(held, key: key)
        let entry = makeEntry(signed, bytes: bytes)
        entries[key] = entry
        index(entry, key: key)
        expiries.push(.init(expiresAt: signed.expiresAt, key: key, generation: entry.generation))
        discardSupersededTop()
        compactIfNeeded()
    }

    private mutating func remove(key: Key256) {
        guard let entry = entries.removeValue(forKey: key) else { return }
        let position = insertionIndex(of: key)
        if position < sortedKeys.count, sortedKeys[position] == key { sortedKeys.remove(at: position) }
        let provider = entry.signed.provider
        let remaining = entriesPerProvider[provider, default: 1] - 1
        entriesPerProvider[provider] = remaining > 0 ? remaining : nil
        unindex(entry, key: key)
        discardSupersededTop()
    }

    private mutating func makeEntry(_ signed: SignedProposal, bytes: [UInt8]) -> Entry {
        nextGeneration += 1
        return Entry(signed: signed, bytes: bytes, generation: nextGeneration)
    }

    /// Counts `entry` and lists an offer under its service type.
    private mutating func index(_ entry: Entry, key: Key256) {
        guard let offer = entry.signed.offer else {
            tombstoneCount += 1
            return
        }
        count += 1
        offersByType[offer.serviceType, default: []].insert(key)
    }

    private mutating func unindex(_ entry: Entry, key: Key256) {
        guard let offer = entry.signed.offer else {
            tombstoneCount -= 1
            return
        }
        count -= 1
        offersByType[offer.serviceType]?.remove(key)
        if offersByType[offer.serviceType]?.isEmpty == true { offersByType[offer.serviceType] = nil }
    }

    /// The first index of `sortedKeys` whose key is not below `key`.
    func insertionIndex(of key: Key256) -> Int {
        var low = 0
        var high = sortedKeys.count
        while low < high {
            let middle = (low + high) / 2
            if sortedKeys[middle] < key { low = middle + 1 } else { high = middle }
        }
        return low
    }

    // MARK: Expiry

    /// Drops entries whose `expiresAt` is at or before `now`; returns how many.
    @discardableResult
    public mutating func expire(now: Instant) -> Int {
        var removed = 0
        while let top = expiries.top, top.expiresAt <= now {
            expiries.popTop()
            guard entries[top.key]?.generation == top.generation else { continue }
            remove(key: top.key)
            removed += 1
        }
        discardSupersededTop()
        counters.expired += UInt64(removed)
        return removed
    }

    /// Keeps the invariant that the heap's top is a stored entry.
    private mutating func discardSupersededTop() {
        while let top = expiries.top, entries[top.key]?.generation != top.generation { expiries.popTop() }
    }

    /// Rebuilds the heap once superseded entries outnumber stored ones, so a provider bumping its seq
    /// in a loop cannot grow it without bound.
    private mutating func compactIfNeeded() {
        guard expiries.count > 2 * entries.count + 64 else { return }
        expiries = ProposalExpiryHeap(
            entries.map { .init(expiresAt: $0.value.signed.expiresAt, key: $0.key, generation: $0.value.generation) })
    }

    /// Heap entries, live and superseded (for tests: the heap stays bounded).
    var expiryEntryCount: Int { expiries.count }

    // MARK: Reading

    /// The live offer for `id`, if held.
    public func offer(for id: ProposalID, now: Instant) -> SignedProposal? {
        guard let entry = entries[id.syncKey], entry.signed.kind == .offer, entry.signed.expiresAt > now else {
            return nil
        }
        return entry.signed
    }

    /// Whether a live tombstone for (provider, service type) is held.
    public func isWithdrawn(provider: PublicKey, serviceType: String, now: Instant) -> Bool {
        let id = ProposalID(provider: provider, serviceType: serviceType)
        guard let entry = entries[id.syncKey] else { return false }
        return entry.signed.kind == .withdrawal && entry.signed.expiresAt > now
    }

    /// Every live offer, in sync key order.
    public func offers(now: Instant) -> [ServiceProposal] {
        sortedKeys.compactMap { key in
            guard let offer = entries[key]?.signed.offer, offer.expiresAt > now else { return nil }
            return offer
        }
    }

    /// The signed wire bytes of every live offer, in sync key order (to forward or republish).
    public func signedOffers(now: Instant) -> [[UInt8]] {
        sortedKeys.compactMap { key in
            guard let entry = entries[key], entry.signed.kind == .offer, entry.signed.expiresAt > now else {
                return nil
            }
            return entry.bytes
        }
    }

    /// Live offers of `serviceType`, optionally only in `country`, at most the given prices, and
    /// admitting `consumer`; cheapest first: by price per GiB, then per minute, then measured RTT
    /// (known before unknown, lower first), then provider key bytes. At most `limit` results.
    public func query(
        serviceType: String, country: String? = nil, maxPricePerGiB: UInt64? = nil,
        maxPricePerMinute: UInt64? = nil, consumer: PublicKey? = nil, now: Instant, limit: Int = .max,
        rtt: (PublicKey) -> Duration? = { _ in nil }
    ) -> [ServiceProposal] {
        guard let keys = offersByType[serviceType], limit > 0 else { return [] }
        var matches: [(offer: ServiceProposal, rtt: Duration?)] = []
        for key in keys {
            guard let offer = entries[key]?.signed.offer, offer.expiresAt > now else { continue }
            if let country, offer.location.country != country { continue }
            if let maxPricePerGiB, offer.pricePerGiB > maxPricePerGiB { continue }
            if let maxPricePerMinute, offer.pricePerMinute > maxPricePerMinute { continue }
            if let consumer, !offer.access.admits(consumer) { continue }
            matches.append((offer, rtt(offer.provider)))
        }
        matches.sort { lhs, rhs in
            if lhs.offer.pricePerGiB != rhs.offer.pricePerGiB { return lhs.offer.pricePerGiB < rhs.offer.pricePerGiB }
            if lhs.offer.pricePerMinute != rhs.offer.pricePerMinute {
                return lhs.offer.pricePerMinute < rhs.offer.pricePerMinute
            }
            switch (lhs.rtt, rhs.rtt) {
            case (let left?, let right?) where left != right: return left < right
            case (.some, nil): return true
            case (nil, .some): return false
            default: return lhs.offer.provider.bytes.lexicographicallyPrecedes(rhs.offer.provider.bytes)
            }
        }
        return matches.prefix(limit).map(\.offer)
    }
}

// MARK: - Expiry heap

/// A min-heap of entry expiries over swift-collections' `Heap` (the project's one priority queue),
/// named for the store's lazy deletion. Entries are not removed when a proposal is replaced; they are
/// recognised as superseded by their generation.
struct ProposalExpiryHeap: Sendable {
    struct Element: Sendable, Comparable {
        var expiresAt: Instant
        var key: Key256
        var generation: UInt64

        /// Expiry first; the sync key and generation break ties, so the order (and with it which
        /// entry a full store evicts) is total and deterministic.
        static func < (lhs: Element, rhs: Element) -> Bool {
            if lhs.expiresAt != rhs.expiresAt { return lhs.expiresAt < rhs.expiresAt }
            if lhs.key != rhs.key { return lhs.key < rhs.key }
            return lhs.generation < rhs.generation
        }
    }

    private var elements = Heap<Element>()

    init() {}

    /// Builds the heap in one O(n) pass.
    init(_ elements: [Element]) { self.elements = Heap(elements) }

    var count: Int { elements.count }
    var top: Element? { elements.min }

    mutating func push(_ element: Element) { elements.insert(element) }

    mutating func popTop() { _ = elements.popMin() }
}
