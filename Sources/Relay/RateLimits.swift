// Small rate limiters shared by the relay cores. Both are plain values driven by `now`; neither
// reads a clock.

import UmbraCore

/// At most `limit` events per key in each fixed window of `window`, for at most `capacity` keys.
/// When the table is full, a new key first clears expired windows, then evicts the key whose window
/// started earliest (it is the closest to expiring anyway).
struct WindowRateLimiter<Key: Hashable & Sendable>: Sendable {
    private struct Entry: Sendable {
        var start: Instant
        var count: Int
    }

    let limit: Int
    let window: Duration
    let capacity: Int
    private var entries: [Key: Entry] = [:]

    init(limit: Int, window: Duration, capacity: Int) {
        self.limit = limit
        self.window = window
        self.capacity = max(1, capacity)
    }

    var trackedKeys: Int { entries.count }

    /// Counts one event for `key` and says whether it is within the limit. A refused event does not
    /// count against later windows.
    mutating func allow(_ key: Key, now: Instant) -> Bool {
        if var entry = entries[key], now < entry.start + window {
            guard entry.count < limit else { return false }
            entry.count += 1
            entries[key] = entry
            return true
        }
        if entries[key] == nil, entries.count >= capacity {
            prune(now: now)
            if entries.count >= capacity, let oldest = entries.min(by: { $0.value.start < $1.value.start }) {
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

/// A token bucket of `burst` units refilled at `rate` units per second.
struct TokenBucket: Sendable {
    let rate: Double
    let burst: Double
    private(set) var tokens: Double
    private var updatedAt: Instant

    init(rate: Double, burst: Double, now: Instant) {
        self.rate = max(0, rate)
        self.burst = max(0, burst)
        self.tokens = self.burst
        self.updatedAt = now
    }

    /// Takes `amount` units if the bucket holds them.
    mutating func take(_ amount: Double, now: Instant) -> Bool {
        refill(now: now)
        guard tokens >= amount else { return false }
        tokens -= amount
        return true
    }

    /// When the bucket will hold `amount` units again (now if it already does or never will).
    func readyAt(_ amount: Double, now: Instant) -> Instant {
        var copy = self
        copy.refill(now: now)
        guard copy.tokens < amount, copy.rate > 0, amount <= copy.burst else { return now }
        let seconds = (amount - copy.tokens) / copy.rate
        return now + .nanoseconds(Int64(min(seconds * 1e9, 1e15).rounded(.up)))
    }

    private mutating func refill(now: Instant) {
        let elapsed = now.since(updatedAt).seconds
        tokens = min(burst, tokens + elapsed * rate)
        if now > updatedAt { updatedAt = now }
    }
}
