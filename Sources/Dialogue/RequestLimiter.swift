// A small per-key rate limiter for session requests. A plain value driven by `now`; it never reads
// a clock. (The relay core has the same shape; Dialogue depends on UmbraCore only.)

import UmbraCore

/// At most `limit` events per key in each fixed window of `window`, for at most `capacity` keys.
/// When the table is full, a new key first clears expired windows, then evicts the key whose window
/// started earliest (it is the closest to expiring anyway).
struct RequestLimiter: Sendable {
    private struct Entry: Sendable {
        var start: Instant
        var count: Int
    }

    let limit: Int
    let window: Duration
    let capacity: Int
    private var entries: [PublicKey: Entry] = [:]

    init(limit: Int, window: Duration, capacity: Int) {
        self.limit = limit
        self.window = window
        self.capacity = max(1, capacity)
    }

    var trackedKeys: Int { entries.count }

    /// Counts one event for `key` and says whether it is within the limit.
    mutating func allow(_ key: PublicKey, now: Instant) -> Bool {
        if var entry = entries[key], now < entry.start + window {
            guard entry.count < limit else { return false }
            entry.count += 1
            entries[key] = entry
            return true
        }
        if entries[key] == nil, entries.count >= capacity {
            prune(now: now)
            if entries.count >= capacity,
                let oldest = entries.min(by: {
                    $0.value.start == $1.value.start
                        ? $0.key.bytes.lexicographicallyPrecedes($1.key.bytes) : $0.value.start < $1.value.start
                })
            {
                entries[oldest.key] = nil
            }
        }
        guard limit > 0 else { return false }
        entries[key] = Entry(start: now, count: 1)
        return true
    }

    /// Forgets every window that has ended.
    mutating func prune(now: Instant) {
        entries = entries.filter { now < $0.value.start + window }
    }
}
