import Synchronization
import UmbraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The runtime's clock: Unix time that never goes backwards while the process runs.
///
/// Every reading re-reads the wall clock (signed records and proposals expire by wall time, so a
/// node that started before an NTP step, or slept in a suspended VM, must see the real date) and
/// the monotonic clock. `now` is the later of the wall clock and the last reading advanced by the
/// monotonic time since: a wall clock stepped forward is followed at once; a wall clock stepped
/// back is not (handshake timestamps must grow, timers must not stall), and `now` runs on the
/// monotonic clock until the wall clock catches up.
public struct RuntimeClock: Sendable {
    private final class State: Sendable {
        let last: Mutex<(wall: UInt64, monotonic: UInt64)>
        init(wall: UInt64, monotonic: UInt64) { last = Mutex((wall, monotonic)) }
    }

    private let startWall: UInt64
    private let wall: @Sendable () -> UInt64
    private let monotonic: @Sendable () -> UInt64
    private let state: State

    /// The system's clocks (CLOCK_REALTIME, CLOCK_MONOTONIC).
    public init() {
        self.init(wall: { Self.read(CLOCK_REALTIME) }, monotonic: { Self.read(CLOCK_MONOTONIC) })
    }

    /// Clocks given as functions returning nanoseconds (tests step them).
    public init(wall: @escaping @Sendable () -> UInt64, monotonic: @escaping @Sendable () -> UInt64) {
        self.wall = wall
        self.monotonic = monotonic
        startWall = wall()
        state = State(wall: startWall, monotonic: monotonic())
    }

    public var now: Instant {
        let value = state.last.withLock { last in
            // Read under the lock, so readings are ordered like the monotonic clock.
            let wallNow = wall()
            let monotonicNow = max(monotonic(), last.monotonic)
            let advanced = last.wall &+ (monotonicNow &- last.monotonic)
            let next = max(wallNow, advanced)
            last = (next, monotonicNow)
            return next
        }
        return Instant(nanoseconds: value)
    }

    public var startedAt: Instant { Instant(nanoseconds: startWall) }

    private static func read(_ clock: clockid_t) -> UInt64 {
        var spec = timespec()
        clock_gettime(clock, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }
}
