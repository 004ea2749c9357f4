// Read-only questions about the routing table: membership, the closest contacts to a key, which
// buckets are idle, random ids for refresh lookups, and snapshots for persistence and status.

import UmbraCore

extension RoutingTable {
    // MARK: Membership

    public func contains(_ id: NodeID) -> Bool { contact(for: id) != nil }

    /// The contact with `id` if it is in a bucket (replacement caches are not searched).
    public func contact(for id: NodeID) -> NodeContact? {
        guard let index = bucketIndex(for: id), let position = slots[index].position(of: id) else { return nil }
        return slots[index].entries[position].contact
    }

    /// Index of the bucket `id` falls in: the common prefix length with `localID` (0...255);
    /// `nil` for `localID` itself.
    public func bucketIndex(for id: NodeID) -> Int? {
        let length = localID.commonPrefixLength(with: id)
        return length < Key256.bitCount ? length : nil
    }

    // MARK: Closest contacts

    /// Up to `count` contacts closest to `target` by XOR distance, closest first.
    ///
    /// Visits buckets outward from the target's bucket `b` instead of sorting the table: with
    /// `b = commonPrefixLength(localID, target)`, contacts of bucket `b` are closer than 2^(255-b);
    /// every contact of a deeper bucket differs from the target first at bit `b`; and a contact of a
    /// shallower bucket `i < b` differs first at bit `i`. So the order of groups is: bucket `b`,
    /// then all deeper buckets together, then `b-1`, `b-2`, …, `0`, and only within a group is a
    /// sort needed.
    public func closest(to target: Key256, count wanted: Int) -> [NodeContact] {
        guard wanted > 0, count > 0 else { return [] }
        let targetBucket = localID.commonPrefixLength(with: target)  // 256 when target == localID
        var result: [NodeContact] = []
        result.reserveCapacity(min(wanted, count))

        func take(_ group: some Sequence<NodeContact>) {
            let remaining = wanted - result.count
            guard remaining > 0 else { return }
            let sorted = group.map { ($0.id.xorDistance(to: target), $0) }.sorted { $0.0 < $1.0 }
            result.append(contentsOf: sorted.prefix(remaining).map(\.1))
        }

        if targetBucket < Key256.bitCount {
            take(slots[targetBucket].entries.lazy.map(\.contact))
            if let deepest = deepestNonEmptyIndex, deepest > targetBucket {
                take(slots[(targetBucket + 1)...deepest].lazy.flatMap(\.entries).map(\.contact))
            }
        }
        for index in stride(from: targetBucket - 1, through: 0, by: -1) where result.count < wanted {
            take(slots[index].entries.lazy.map(\.contact))
        }
        return result
    }

    // MARK: Refresh

    /// Buckets (by index) whose last activity is `refreshInterval` or more ago. Only buckets up to
    /// the deepest non-empty one + 1 are considered (deeper ones are all "near us" and covered by a
    /// lookup of our own neighbourhood); an empty table needs no refresh (there is no one to ask).
    public func bucketsNeedingRefresh(now: Instant) -> [Int] {
        refreshRange.filter { now >= slots[$0].lastChanged + config.refreshInterval }
    }

    /// The earliest instant some bucket needs a refresh (for the core's next deadline), `nil` when
    /// the table is empty.
    public var nextRefreshDeadline: Instant? {
        refreshRange.lazy.map { slots[$0].lastChanged + config.refreshInterval }.min()
    }

    /// A uniformly random id in bucket `index`: it shares exactly `index` leading bits with `localID`.
    public func randomID(inBucket index: Int, using rng: inout some RandomNumberGenerator) -> NodeID {
        precondition(index >= 0 && index < Key256.bitCount, "bucket index out of range")
        let random = Key256.random(using: &rng)
        let local = [localID.words.0, localID.words.1, localID.words.2, localID.words.3]
        let noise = [random.words.0, random.words.1, random.words.2, random.words.3]
        var mixed = [UInt64](repeating: 0, count: 4)
        for word in 0..<4 {
            // How many of this word's bits belong to the shared prefix.
            let prefixBits = min(max(index - word * 64, 0), 64)
            let mask: UInt64 = prefixBits == 0 ? 0 : ~0 << UInt64(64 - prefixBits)
            mixed[word] = (local[word] & mask) | (noise[word] & ~mask)
        }
        let id = Key256(words: (mixed[0], mixed[1], mixed[2], mixed[3]))
        // Bit `index` is random so far; it must differ from ours.
        return localID.commonPrefixLength(with: id) > index ? id.flippingBit(index) : id
    }

    // MARK: Snapshots

    /// All contacts, bucket by bucket (shallowest first), least-recently-seen first within a
    /// bucket: the order to persist and to restore with `observe`.
    public var contacts: [NodeContact] { slots.flatMap { $0.entries.map(\.contact) } }

    /// A bucket's state for status reports.
    public struct BucketSnapshot: Sendable, Equatable {
        public var index: Int
        /// Contacts in the bucket.
        public var contacts: Int
        /// Candidates in its replacement cache.
        public var replacements: Int
        /// Its last activity (insert, confirmation or refresh lookup).
        public var lastChanged: Instant

        public init(index: Int, contacts: Int, replacements: Int, lastChanged: Instant) {
            self.index = index
            self.contacts = contacts
            self.replacements = replacements
            self.lastChanged = lastChanged
        }
    }

    /// Buckets holding contacts or replacements, shallowest first.
    public var buckets: [BucketSnapshot] {
        slots.indices.compactMap { index in
            let bucket = slots[index]
            guard !bucket.entries.isEmpty || !bucket.replacements.isEmpty else { return nil }
            return BucketSnapshot(
                index: index, contacts: bucket.entries.count, replacements: bucket.replacements.count,
                lastChanged: bucket.lastChanged)
        }
    }

    /// The replacement cache of bucket `index`, most recent last.
    public func replacements(inBucket index: Int) -> [NodeContact] {
        precondition(index >= 0 && index < Key256.bitCount, "bucket index out of range")
        return slots[index].replacements
    }

    // MARK: Helpers

    /// The highest index of a bucket holding contacts, `nil` for an empty table.
    var deepestNonEmptyIndex: Int? { slots.lastIndex { !$0.entries.isEmpty } }

    /// The buckets that refresh considers: 0 through the deepest non-empty one + 1 (capped at 255).
    private var refreshRange: Range<Int> {
        guard let deepest = deepestNonEmptyIndex else { return 0..<0 }
        return 0..<min(deepest + 2, Key256.bitCount)
    }
}
