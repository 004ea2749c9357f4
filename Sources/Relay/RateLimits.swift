// The token bucket of relay circuits (the per-key window limiter is UmbraCore.WindowRateLimiter). A
// plain value driven by `now`; it never reads a clock.

import UmbraCore

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
