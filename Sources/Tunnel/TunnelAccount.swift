// Per-session traffic accounting: what one tunnel session moved each way, what was dropped and why,
// and how fast it is moving now. The data plane updates it once per packet (or once per batch, with
// the batch's totals); the control plane reads it for metrics, logs, the API and, later, payments.
//
// Directions are named from the owner's point of view, relative to the tunnel:
//
//                      `sent` (into the tunnel, to the peer)   `received` (out of the tunnel)
//   on a provider      internet → consumer ("download")        consumer → internet ("upload")
//   on a consumer      consumer → internet ("upload")          internet → consumer ("download")
//
// Bytes are IP packet lengths (the inner packet's total length), not the encrypted datagrams, so
// both ends of a session count the same traffic. `received` counts only packets the filter accepted;
// refused ones are counted in `drops` instead.
//
// The rate meter reports the bytes of the last complete window (1 second by default) scaled to bytes
// per second: windows are aligned to the instant the meter started, so the same sequence of
// (now, bytes) always gives the same rates. Cheap and exact; it lags by up to one window, which is
// what a "current speed" display wants. Nothing here allocates after `init`.

import UmbraCore

// MARK: - Rate meter

/// Bytes per second each way over the last complete fixed window. Driven by `now`; deterministic.
/// `record` and `rates` are O(1) and allocation-free.
public struct RateMeter: Equatable, Sendable {
    /// A pair of rates in bytes per second.
    public struct Rates: Equatable, Sendable {
        public var sent: UInt64
        public var received: UInt64

        public init(sent: UInt64, received: UInt64) {
            self.sent = sent
            self.received = received
        }
    }

    /// The shortest window accepted (shorter ones are raised to it).
    public static let minimumWindow: Duration = .milliseconds(1)

    /// The window length in nanoseconds.
    public let windowNanoseconds: UInt64
    /// Start of the window being filled, in nanoseconds (a multiple of the window after the start).
    private var windowStart: UInt64
    private var currentSent: UInt64 = 0
    private var currentReceived: UInt64 = 0
    /// Totals of the window just before `windowStart`; zero when it saw nothing or is older.
    private var lastSent: UInt64 = 0
    private var lastReceived: UInt64 = 0

    /// A meter whose first window starts at `now`.
    public init(window: Duration = .seconds(1), now: Instant) {
        let nanoseconds = max(window.nanosecondsClamped, Self.minimumWindow.nanosecondsClamped)
        self.windowNanoseconds = UInt64(nanoseconds)
        self.windowStart = now.nanoseconds
    }

    /// Counts `bytes` sent at `now`. An instant before the current window counts in it.
    public mutating func record(sent bytes: Int, now: Instant) {
        advance(to: now)
        currentSent &+= UInt64(clamping: bytes)
    }

    /// Counts `bytes` received at `now`. An instant before the current window counts in it.
    public mutating func record(received bytes: Int, now: Instant) {
        advance(to: now)
        currentReceived &+= UInt64(clamping: bytes)
    }

    /// The rates of the last window that ended at or before `now`, in bytes per second. Zero before
    /// the first window ends and after a window with no traffic.
    public func rates(at now: Instant) -> Rates {
        switch windowsPassed(until: now) {
        case 0: Rates(sent: perSecond(lastSent), received: perSecond(lastReceived))
        case 1: Rates(sent: perSecond(currentSent), received: perSecond(currentReceived))
        default: Rates(sent: 0, received: 0)
        }
    }

    /// Whole windows from `windowStart` to `now` (0 when `now` is inside it or earlier).
    private func windowsPassed(until now: Instant) -> UInt64 {
        guard now.nanoseconds > windowStart else { return 0 }
        return (now.nanoseconds - windowStart) / windowNanoseconds
    }

    private mutating func advance(to now: Instant) {
        let passed = windowsPassed(until: now)
        guard passed > 0 else { return }
        if passed == 1 {
            lastSent = currentSent
            lastReceived = currentReceived
        } else {
            lastSent = 0
            lastReceived = 0
        }
        currentSent = 0
        currentReceived = 0
        windowStart += passed * windowNanoseconds  // <= now, so no overflow
    }

    /// `bytes` over one window as bytes per second, rounded down, saturating. Integer arithmetic
    /// (no libm, nothing platform-dependent).
    private func perSecond(_ bytes: UInt64) -> UInt64 {
        let product = bytes.multipliedFullWidth(by: 1_000_000_000)
        guard product.high < windowNanoseconds else { return .max }
        return windowNanoseconds.dividingFullWidth(product).quotient
    }
}

// MARK: - Drop counters

/// Packets refused, by reason: the egress policy's on a provider, the inbound filter's on a consumer.
public struct TunnelDropCounts: Equatable, Sendable {
    public private(set) var malformed: UInt64 = 0
    public private(set) var spoofedSource: UInt64 = 0
    public private(set) var blockedPort: UInt64 = 0
    public private(set) var fragmentedHeader: UInt64 = 0
    public private(set) var ipOptions: UInt64 = 0
    public private(set) var misaddressed: UInt64 = 0
    /// Indexed by `EgressBlockCategory.rawValue`; allocated once, updated in place.
    private var byCategory = [UInt64](repeating: 0, count: EgressBlockCategory.allCases.count)

    public init() {}

    /// Packets refused because their destination was blocked under `category`.
    public func blockedDestination(_ category: EgressBlockCategory) -> UInt64 {
        byCategory[Int(category.rawValue)]
    }

    /// Every refused packet.
    public var total: UInt64 {
        var sum = malformed &+ spoofedSource &+ blockedPort &+ fragmentedHeader &+ ipOptions &+ misaddressed
        for count in byCategory { sum &+= count }
        return sum
    }

    /// Counts one packet refused by the egress policy.
    public mutating func record(_ reason: EgressDropReason) {
        switch reason {
        case .malformed: malformed &+= 1
        case .spoofedSource: spoofedSource &+= 1
        case .blockedDestination(let category): byCategory[Int(category.rawValue)] &+= 1
        case .blockedPort: blockedPort &+= 1
        case .fragmentedHeader: fragmentedHeader &+= 1
        case .ipOptions: ipOptions &+= 1
        }
    }

    /// Counts one packet refused by the inbound filter.
    public mutating func record(_ reason: InboundDropReason) {
        switch reason {
        case .malformed: malformed &+= 1
        case .misaddressed: misaddressed &+= 1
        }
    }
}

// MARK: - Account

/// One tunnel session's traffic: bytes and packets each way, drops by reason, the current rates.
/// See the file header for what `sent` and `received` mean on each side. A value; not thread safe
/// (one data-plane task owns it; others read copies).
public struct TunnelAccount: Equatable, Sendable {
    /// When the session's tunnel opened.
    public let openedAt: Instant
    /// Bytes put into the tunnel toward the peer (IP total lengths).
    public private(set) var sentBytes: UInt64 = 0
    /// Packets put into the tunnel toward the peer.
    public private(set) var sentPackets: UInt64 = 0
    /// Bytes that came out of the tunnel from the peer and were accepted.
    public private(set) var receivedBytes: UInt64 = 0
    /// Packets that came out of the tunnel from the peer and were accepted.
    public private(set) var receivedPackets: UInt64 = 0
    /// Packets from the peer that were refused, by reason.
    public private(set) var drops = TunnelDropCounts()
    /// The rates each way.
    public private(set) var meter: RateMeter

    /// An empty account for a tunnel opened at `openedAt`, measuring rates over `rateWindow`.
    public init(openedAt: Instant, rateWindow: Duration = .seconds(1)) {
        self.openedAt = openedAt
        self.meter = RateMeter(window: rateWindow, now: openedAt)
    }

    /// Counts `packets` packets totalling `bytes` bytes sent at `now` (one packet by default; a
    /// batch at once).
    public mutating func recordSent(bytes: Int, packets: Int = 1, now: Instant) {
        sentBytes &+= UInt64(clamping: bytes)
        sentPackets &+= UInt64(clamping: packets)
        meter.record(sent: bytes, now: now)
    }

    /// Counts `packets` accepted packets totalling `bytes` bytes received at `now`.
    public mutating func recordReceived(bytes: Int, packets: Int = 1, now: Instant) {
        receivedBytes &+= UInt64(clamping: bytes)
        receivedPackets &+= UInt64(clamping: packets)
        meter.record(received: bytes, now: now)
    }

    /// Counts a packet the egress policy refused.
    public mutating func recordDrop(_ reason: EgressDropReason) { drops.record(reason) }

    /// Counts a packet the inbound filter refused.
    public mutating func recordDrop(_ reason: InboundDropReason) { drops.record(reason) }

    /// The current rates (see `RateMeter.rates(at:)`).
    public func rates(at now: Instant) -> RateMeter.Rates { meter.rates(at: now) }

    /// How long the tunnel has been open at `now`.
    public func age(at now: Instant) -> Duration { now.since(openedAt) }
}
