import UmbraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The runtime's clock: the wall clock read once at start, advanced by the monotonic clock, so
/// `now` is close to Unix time (handshake timestamps must grow across restarts) but never goes
/// backwards while the process runs.
public struct RuntimeClock: Sendable {
    private let startWall: UInt64
    private let startMonotonic: ContinuousClock.Instant

    public init() {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        startWall = UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
        startMonotonic = ContinuousClock.now
    }

    public var now: Instant {
        let elapsed = ContinuousClock.now - startMonotonic
        return Instant(nanoseconds: startWall) + elapsed
    }

    public var startedAt: Instant { Instant(nanoseconds: startWall) }
}
