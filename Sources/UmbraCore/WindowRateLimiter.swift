// A per-key fixed-window rate limiter, shared by the cores that rate-limit requests (relay
// reservations and dial-backs, dialogue session requests). A plain value driven by `now`; it never
// reads a clock.

/// At most `limit` events per key in each fixed window of `window`, for at most `capacity` keys.
/// When the table is full, a new key first clears expired windows, then evicts the key whose window
/// started earliest (it is the closest to expiring anyway); among equals, the one that arrived first,
/// so a seed replays exactly.
public struct WindowRateLimiter<Key: Hashable & Sendable>: Sendable {
    private struct Entry: Sendable {
        var start: Instant
        var count: Int
        /// Arrival order, for a deterministic choice among windows that started together.
        var order: UInt64
    }

    public let limit: Int
    public let window: Duration
    public let capacity: Int
    private var entries: [Key: Entry] = [:]
    private var arrivals: UInt64 = 0

    public init(limit: Int, window: Duration, capacity: Int) {
        self.limit = limit
        self.window = window
        self.capacity = max(1, capacity)
    }

    public var trackedKeys: Int { entries.count }

    /// Counts one event for `key` and says whether it is within the limit. A refused event does not
    /// count against later windows.
    public mutating func allow(_ key: Key, now: Instant) -> Bool {
        if var entry = entries[key], now < entry.start + window {
            guard entry.count < limit else { return false }
            entry.count += 1
            entries[key] = entry
            return true
        }
        if entries[key] == nil, entries.count >= capacity {
            prune(now: now)
            if entries.count >= capacity,
                let oldest = entries.min(by: { ($0.value.start, $0.value.order) < ($1.value.start, $1.value.order) })
            {
                entries[oldest.key] = nil
            }
        }
        guard limit > 0 else { return false }
        arrivals += 1
        entries[key] = Entry(start: now, count: 1, order: arrivals)
        return true
    }

    /// Forgets every window that has ended.
    public mutating func prune(now: Instant) {
        entries = entries.filter { now < $0.value.start + window }
    }
}
