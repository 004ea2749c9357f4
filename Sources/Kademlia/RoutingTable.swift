// The Kademlia routing table: 256 k-buckets indexed by the length of the common prefix with our id.
// Each bucket keeps its contacts in least-recently-seen order (head = oldest) plus a replacement
// cache. A full bucket never drops a contact on hearsay: the newcomer waits in the cache while the
// DHT core pings the oldest (ping-before-evict), and only a failed ping or `maxFailures` failed RPCs
// remove it. IP-prefix diversity caps bound how much of a bucket, and of the table, one /24 or /48
// can fill. Idle buckets are reported for refresh.
//
// A pure value: no clock, no randomness of its own, no I/O. `now` comes in with every event.
// Queries (lookups, refresh, persistence) live in RoutingTable+Queries.swift.

import UmbraCore

// MARK: - Configuration

/// Tunables of a `RoutingTable`. Defaults follow the Kademlia paper (k = 20) and S/Kademlia-style
/// subnet caps.
public struct RoutingTableConfig: Sendable {
    /// Bucket size: the most contacts one bucket holds.
    public var k = 20
    /// Per bucket: the most candidates kept for when a contact leaves. The oldest is dropped first.
    public var replacementCacheSize = 20
    /// The most contacts sharing an IPv4 /24 or IPv6 /48 in one bucket.
    public var maxPerSubnetInBucket = 2
    /// The most contacts sharing an IPv4 /24 or IPv6 /48 in the whole table.
    public var maxPerSubnetInTable = 10
    /// Loopback, private (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) and link-local
    /// addresses are neither counted nor limited by the subnet caps (local tests and LANs).
    public var diversityExemptsPrivate = true
    /// A bucket with no activity for this long needs a refresh lookup.
    public var refreshInterval: Duration = .seconds(15 * 60)
    /// Consecutive failed RPCs before a contact is dropped.
    public var maxFailures = 2
    /// A ping-before-evict that was never reported back is abandoned after this long, so a lost
    /// report cannot freeze a full bucket: the next newcomer starts a new check.
    public var evictionCheckTimeout: Duration = .seconds(60)

    public init() {}
}

// MARK: - RoutingTable

/// The set of peers this node knows to be reachable, organised by XOR distance from `localID`.
///
/// Contract: only contacts that proved reachable (answered a request or a ping) are passed to
/// `observe`. Invariants: a bucket never holds more than `k` contacts, an id is in at most one of a
/// bucket's contact list and replacement cache, the contact list never violates the subnet caps,
/// and each bucket has at most one eviction check in flight.
///
/// NOTE: a value type; the owner (the DHT core) mutates it from one place at a time.
public struct RoutingTable: Sendable {
    public let localID: NodeID
    public let config: RoutingTableConfig
    /// The number of contacts in all buckets (replacement caches not included).
    public private(set) var count = 0

    /// Always `Key256.bitCount` buckets; bucket `i` holds ids sharing exactly `i` leading bits with
    /// `localID`. Empty buckets cost no heap (empty arrays).
    var slots: [Bucket]
    /// How many contacts of each counted subnet are in the table (exempt addresses not included).
    var subnetCounts: [Subnet: Int] = [:]

    public init(localID: NodeID, config: RoutingTableConfig = .init(), now: Instant) {
        precondition(config.k >= 1, "k must be at least 1")
        precondition(config.replacementCacheSize >= 0, "replacementCacheSize must not be negative")
        precondition(config.maxPerSubnetInBucket >= 1 && config.maxPerSubnetInTable >= 1, "subnet caps must be ≥ 1")
        precondition(config.maxFailures >= 1, "maxFailures must be at least 1")
        self.localID = localID
        self.config = config
        self.slots = Array(repeating: Bucket(lastChanged: now), count: Key256.bitCount)
    }

    /// What `observe` did with a contact.
    public enum ObserveResult: Equatable, Sendable {
        /// New contact, appended at the most-recently-seen end of its bucket.
        case inserted
        /// Already there: moved to the most-recently-seen end, endpoint refreshed, failures reset.
        case updated
        /// Bucket full: the caller must PING `oldest` and report with `evictionCheckFinished`.
        /// The new contact waits in the replacement cache.
        case pendingEviction(oldest: NodeContact)
        /// Bucket full and an eviction check is already in flight: kept in the replacement cache.
        case cached
        /// The contact is this node.
        case rejectedSelf
        /// A subnet cap (per bucket or per table) would be exceeded. An existing contact that moved
        /// into a crowded subnet is removed.
        case rejectedDiversity
        /// The endpoint cannot be handed to others (port 0, the discard-only 100::/64, unspecified,
        /// multicast): the table only holds contacts every decoder accepts and anyone may dial.
        case rejectedEndpoint
    }

    // MARK: Events

    /// A contact proved reachable (it answered our request, or answered our ping). Only such
    /// contacts enter the table.
    public mutating func observe(_ contact: NodeContact, now: Instant) -> ObserveResult {
        guard let index = bucketIndex(for: contact.id) else { return .rejectedSelf }
        guard contact.isShareable else { return .rejectedEndpoint }

        if let position = slots[index].position(of: contact.id) {
            let old = slots[index].entries.remove(at: position)
            account(old.contact.endpoint, by: -1)
            if old.contact.endpoint != contact.endpoint && !admits(contact.endpoint, inBucket: index) {
                // It roamed into a subnet that is already full: keeping the stale endpoint is useless.
                count -= 1
                if slots[index].pendingCheck?.oldest == contact.id { slots[index].pendingCheck = nil }
                promoteReplacement(inBucket: index)
                return .rejectedDiversity
            }
            slots[index].entries.append(Bucket.Entry(contact: contact, failures: 0))
            account(contact.endpoint, by: 1)
            slots[index].lastChanged = now
            return .updated
        }

        guard admits(contact.endpoint, inBucket: index) else { return .rejectedDiversity }

        if slots[index].entries.count < config.k {
            slots[index].replacements.removeAll { $0.id == contact.id }
            append(contact, toBucket: index)
            slots[index].lastChanged = now
            return .inserted
        }

        cache(contact, inBucket: index)
        if let pending = slots[index].pendingCheck, now < pending.started + config.evictionCheckTimeout {
            return .cached
        }
        let oldest = slots[index].entries[0].contact
        slots[index].pendingCheck = PendingCheck(oldest: oldest.id, started: now)
        return .pendingEviction(oldest: oldest)
    }

    /// The answer to a ping-before-evict. Responded: the oldest moves to the most-recently-seen end
    /// and the candidate stays cached. Not responded: the oldest is evicted and the most recent
    /// replacement that fits the subnet caps takes its place.
    ///
    /// A report for a contact that has no check in flight (for example one that was abandoned after
    /// `evictionCheckTimeout`) still counts: an answer as a sighting, silence as one failure.
    public mutating func evictionCheckFinished(oldest id: NodeID, responded: Bool, now: Instant) {
        guard let index = bucketIndex(for: id) else { return }
        let wasPending = slots[index].pendingCheck?.oldest == id
        if wasPending { slots[index].pendingCheck = nil }
        guard let position = slots[index].position(of: id) else { return }
        if responded {
            let entry = slots[index].entries.remove(at: position)
            slots[index].entries.append(Bucket.Entry(contact: entry.contact, failures: 0))
            slots[index].lastChanged = now
        } else if wasPending {
            removeEntry(at: position, inBucket: index)
        } else {
            recordFailure(id, now: now)
        }
    }

    /// An RPC to `id` failed (timeout). After `maxFailures` consecutive failures the contact is
    /// removed and the most recent fitting replacement promoted. A success (`observe`) resets the
    /// counter. A failing candidate in a replacement cache is dropped from it.
    public mutating func recordFailure(_ id: NodeID, now: Instant) {
        guard let index = bucketIndex(for: id) else { return }
        guard let position = slots[index].position(of: id) else {
            slots[index].replacements.removeAll { $0.id == id }
            return
        }
        slots[index].entries[position].failures += 1
        if slots[index].entries[position].failures >= config.maxFailures {
            removeEntry(at: position, inBucket: index)
        }
    }

    /// Removes `id` (from its bucket, promoting a replacement, or from a replacement cache).
    public mutating func remove(_ id: NodeID) {
        guard let index = bucketIndex(for: id) else { return }
        if let position = slots[index].position(of: id) {
            removeEntry(at: position, inBucket: index)
        } else {
            slots[index].replacements.removeAll { $0.id == id }
        }
    }

    /// A lookup for a target in `bucket` was started: the bucket is not idle any more.
    public mutating func markRefreshed(bucket index: Int, now: Instant) {
        precondition(index >= 0 && index < Key256.bitCount, "bucket index out of range")
        slots[index].lastChanged = now
    }

    // MARK: Bucket maintenance

    /// Appends a contact that passed the caps to a bucket with room.
    private mutating func append(_ contact: NodeContact, toBucket index: Int) {
        slots[index].entries.append(Bucket.Entry(contact: contact, failures: 0))
        account(contact.endpoint, by: 1)
        count += 1
    }

    /// Removes a contact, cancels its eviction check, and fills the space from the replacement cache.
    private mutating func removeEntry(at position: Int, inBucket index: Int) {
        let entry = slots[index].entries.remove(at: position)
        account(entry.contact.endpoint, by: -1)
        count -= 1
        if slots[index].pendingCheck?.oldest == entry.contact.id { slots[index].pendingCheck = nil }
        promoteReplacement(inBucket: index)
    }

    /// Moves the most recent replacement that fits the subnet caps into the bucket, if it has room.
    /// Replacements that do not fit stay cached: the caps may allow them later.
    private mutating func promoteReplacement(inBucket index: Int) {
        guard slots[index].entries.count < config.k else { return }
        for position in slots[index].replacements.indices.reversed()
        where admits(slots[index].replacements[position].endpoint, inBucket: index) {
            let candidate = slots[index].replacements.remove(at: position)
            append(candidate, toBucket: index)
            return
        }
    }

    /// Puts a candidate at the most-recent end of the replacement cache (no duplicates, capped).
    private mutating func cache(_ contact: NodeContact, inBucket index: Int) {
        guard config.replacementCacheSize > 0 else { return }
        slots[index].replacements.removeAll { $0.id == contact.id }
        if slots[index].replacements.count >= config.replacementCacheSize {
            slots[index].replacements.removeFirst(slots[index].replacements.count - config.replacementCacheSize + 1)
        }
        slots[index].replacements.append(contact)
    }
}

// MARK: - Storage

extension RoutingTable {
    /// One k-bucket.
    struct Bucket: Sendable {
        struct Entry: Sendable {
            var contact: NodeContact
            /// Consecutive failed RPCs since the contact was last seen.
            var failures: Int
        }

        /// Least-recently-seen first.
        var entries: [Entry] = []
        /// Candidates for when a contact leaves, most recent last. Subnet caps are checked when one
        /// is promoted, not here.
        var replacements: [NodeContact] = []
        /// The ping-before-evict in flight, if any (at most one per bucket).
        var pendingCheck: PendingCheck?
        /// The last time a contact here was inserted or confirmed, or a refresh lookup started.
        var lastChanged: Instant

        init(lastChanged: Instant) { self.lastChanged = lastChanged }

        func position(of id: NodeID) -> Int? { entries.firstIndex { $0.contact.id == id } }
    }

    /// A ping of a full bucket's oldest contact, started at `started`.
    struct PendingCheck: Sendable {
        var oldest: NodeID
        var started: Instant
    }
}
