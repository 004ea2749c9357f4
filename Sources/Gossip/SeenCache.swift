// The ids of recently seen messages, so a message is validated and forwarded once. Bounded twice:
// entries expire after the TTL, and beyond `capacity` the oldest go first.

import UmbraCore

struct SeenCache: Sendable {
    struct Entry: Sendable {
        var expiry: Instant
        /// The validator rejected the message: a later copy is penalised like the first.
        var rejected: Bool
        /// Copies received after the first.
        var duplicates: UInt32 = 0
    }

    let ttl: Duration
    let capacity: Int
    private(set) var entries: [MessageID: Entry] = [:]
    /// Ids in insertion order, which is expiry order (one TTL, `now` never goes back); from `head`.
    private var order: [(id: MessageID, expiry: Instant)] = []
    private var head = 0

    init(ttl: Duration, capacity: Int) {
        self.ttl = ttl
        self.capacity = max(1, capacity)
    }

    var count: Int { entries.count }

    func contains(_ id: MessageID) -> Bool { entries[id] != nil }

    subscript(id: MessageID) -> Entry? { entries[id] }

    /// Remembers `id` unless it is already there; returns whether it was new.
    @discardableResult
    mutating func insert(_ id: MessageID, rejected: Bool, now: Instant) -> Bool {
        guard entries[id] == nil else { return false }
        while entries.count >= capacity, popOldest() {}
        let expiry = now + ttl
        entries[id] = Entry(expiry: expiry, rejected: rejected)
        order.append((id, expiry))
        return true
    }

    /// Marks a seen message invalid (a deferred validation rejected it): later copies cost their
    /// senders as an invalid delivery.
    mutating func markRejected(_ id: MessageID) {
        entries[id]?.rejected = true
    }

    /// Counts a further copy of a seen message; returns its entry, or nil if it was not seen.
    mutating func noteDuplicate(_ id: MessageID) -> Entry? {
        guard var entry = entries[id] else { return nil }
        entry.duplicates &+= 1
        entries[id] = entry
        return entry
    }

    /// Forgets every id whose TTL has passed.
    mutating func expire(now: Instant) {
        while head < order.count, order[head].expiry <= now { _ = popOldest() }
        compact()
    }

    /// Removes the oldest entry; false when there is none.
    private mutating func popOldest() -> Bool {
        guard head < order.count else { return false }
        let (id, expiry) = order[head]
        head += 1
        if entries[id]?.expiry == expiry { entries[id] = nil }
        compact()
        return true
    }

    private mutating func compact() {
        if head > 1024 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }
}
