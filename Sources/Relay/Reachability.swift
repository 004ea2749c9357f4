// Reachability by dial-back (DESIGN §4 "NAT traversal"), as a pure state machine. Every node runs
// one; it plays three parts:
//
// - requester N: collects the reflexive addresses peers report (`observed`). When at least
//   `agreeingReporters` distinct reporters agree on one endpoint (or the agreed endpoint changes,
//   or `recheckInterval` passes), it asks up to `peersPerCheck` peers P for a dial-back
//   (`dialBackRequest`, one nonce per peer). A `dialBackProbe` with one of those nonces arriving
//   from a peer other than the one asked proves the endpoint accepts unsolicited handshakes:
//   `public(endpoint)`. When every asked peer refused or `checkTimeout` passed: `private`.
// - helper P: `handleDialBackRequest` refuses an endpoint that is not at the request's own source IP
//   (so nobody can aim probes at a third party), rate-limits, and orders a random other peer Q to
//   dial (`dialBackOrder`).
// - prober Q: `handleDialBackOrder` rate-limits and queues orders (bounded) and emits `.dialProbe`,
//   which the shell turns into a fresh handshake to the target carrying `dialBackProbe` as 0-RTT
//   data, so the probe travels from Q's socket through a NAT mapping N never opened.
//
// Inputs: the calls above plus `setPeers`, `dialBackRefused`, `probeReceived`, `tick` when
// `nextDeadline` passes. Outputs: `[ReachabilityEffect]`.

import UmbraCore

/// What a node knows about its own reachability.
public enum ReachabilityStatus: Equatable, Hashable, Sendable, CustomStringConvertible {
    case unknown
    /// Unsolicited handshakes reach this node at this endpoint.
    case `public`(Endpoint)
    /// Dial-backs did not get through (or nobody would try): behind a NAT or firewall.
    case `private`

    public var description: String {
        switch self {
        case .unknown: "unknown"
        case .public(let endpoint): "public at \(endpoint)"
        case .private: "private"
        }
    }
}

public struct ReachabilityConfig: Sendable {
    /// Accept private and loopback observations and endpoints (loopback and namespace tests).
    public var allowPrivate = false
    /// Distinct reporters that must agree on an endpoint before it is checked.
    public var agreeingReporters = 2
    /// Peers asked per check (each with its own nonce).
    public var peersPerCheck = 3
    public var checkTimeout: Duration = .seconds(5)
    public var recheckInterval: Duration = .seconds(10 * 60)
    /// Reporters remembered (the oldest observation is dropped when full) and for how long.
    public var maximumReporters = 32
    public var observationLifetime: Duration = .seconds(30 * 60)
    /// Peers remembered from `setPeers`.
    public var maximumPeers = 64

    // Helper side.
    /// Dial-back requests one requester may make per minute, and all requesters together.
    public var requestsPerRequesterPerMinute = 4
    public var requestsPerMinute = 60
    public var maximumTrackedRequesters = 256

    // Prober side.
    /// Orders one helper may send per minute.
    public var ordersPerHelperPerMinute = 20
    /// Probes dialled per second (token bucket) and the burst.
    public var probesPerSecond: Double = 2
    public var probeBurst: Double = 4
    /// Orders waiting for a token; orders older than `orderLifetime` are dropped (the requester
    /// has given up by then).
    public var maximumQueuedOrders = 16
    public var orderLifetime: Duration = .seconds(5)

    public init() {}
}

public enum ReachabilityEffect: Equatable, Sendable {
    case send(RelayMessage, to: PublicKey)
    case statusChanged(ReachabilityStatus)
    /// Dial `target` at `endpoint` with a fresh handshake carrying `dialBackProbe(nonce)` as 0-RTT
    /// data (prober side).
    case dialProbe(target: PublicKey, endpoint: Endpoint, nonce: UInt64)
}

public struct ReachabilityCounters: Equatable, Sendable {
    public var observationsIgnored: UInt64 = 0
    public var checksStarted: UInt64 = 0
    public var checksPublic: UInt64 = 0
    public var checksPrivate: UInt64 = 0
    public var probesAccepted: UInt64 = 0
    /// Probes that did not count: unknown or stale nonce, or sent by the very peer that was asked.
    public var probesIgnored: UInt64 = 0
    public var refusalsReceived: UInt64 = 0
    public var requestsHelped: UInt64 = 0
    public var requestsRefused: [DialBackRefusal: UInt64] = [:]
    public var ordersAccepted: UInt64 = 0
    public var ordersDropped: UInt64 = 0
    public var probesOrdered: UInt64 = 0
    public init() {}
}

public struct Reachability: Sendable {
    public let config: ReachabilityConfig
    public private(set) var status = ReachabilityStatus.unknown
    public private(set) var counters = ReachabilityCounters()
    /// The peers dial-back requests go to (and orders, on the helper side, unless the shell passes
    /// its own list).
    public private(set) var peers: [PublicKey] = []

    private struct Observation: Sendable {
        var endpoint: Endpoint
        var at: Instant
    }

    private struct Check: Sendable {
        var endpoint: Endpoint
        var deadline: Instant
        /// Nonce → the peer asked with it.
        var asked: [UInt64: PublicKey]
        /// Nonces not yet refused.
        var outstanding: Set<UInt64>
    }

    private struct Order: Sendable {
        var target: PublicKey
        var endpoint: Endpoint
        var nonce: UInt64
        var at: Instant
    }

    private var observations: [PublicKey: Observation] = [:]
    private var check: Check?
    /// The endpoint last checked (or being checked, or waiting for peers to be checked).
    private var checkedEndpoint: Endpoint?
    private var waitingForPeers = false
    private var nextCheckAt: Instant?
    private var requesterLimiter: WindowRateLimiter<PublicKey>
    private var requestLimiter: WindowRateLimiter<Bool>
    private var orderLimiter: WindowRateLimiter<PublicKey>
    private var probeBucket: TokenBucket
    private var queue: [Order] = []
    private var queueReadyAt: Instant?

    public init(config: ReachabilityConfig = ReachabilityConfig(), now: Instant) {
        self.config = config
        requesterLimiter = WindowRateLimiter(
            limit: config.requestsPerRequesterPerMinute, window: .seconds(60),
            capacity: config.maximumTrackedRequesters)
        requestLimiter = WindowRateLimiter(limit: config.requestsPerMinute, window: .seconds(60), capacity: 1)
        orderLimiter = WindowRateLimiter(
            limit: config.ordersPerHelperPerMinute, window: .seconds(60), capacity: config.maximumTrackedRequesters)
        probeBucket = TokenBucket(rate: config.probesPerSecond, burst: config.probeBurst, now: now)
    }

    /// Whether a check is in flight.
    public var isChecking: Bool { check != nil }
    /// The endpoint at least `agreeingReporters` reporters agree on, if any (ignoring expiry).
    public var agreedEndpoint: Endpoint? { agreed(now: nil) }
    public var queuedOrders: Int { queue.count }

    // MARK: - Requester

    /// A peer reported the endpoint it sees us at. Private, loopback, link-local and unspecified
    /// addresses are ignored unless `allowPrivate` (unspecified ones always).
    public mutating func observed(
        _ endpoint: Endpoint, reporter: PublicKey, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [ReachabilityEffect] {
        guard isAcceptable(endpoint.address) else {
            counters.observationsIgnored += 1
            return []
        }
        if observations[reporter] == nil, observations.count >= config.maximumReporters,
            let oldest = observations.min(by: { $0.value.at < $1.value.at })
        {
            observations[oldest.key] = nil
        }
        observations[reporter] = Observation(endpoint: endpoint, at: now)
        guard let agreed = agreed(now: now), agreed != checkedEndpoint else { return [] }
        var effects: [ReachabilityEffect] = []
        startCheck(agreed, now: now, rng: &rng, effects: &effects)
        return effects
    }

    /// The peers to ask for dial-backs (duplicates dropped, at most `maximumPeers`). A check that
    /// was waiting for peers starts now.
    public mutating func setPeers(
        _ list: [PublicKey], now: Instant, rng: inout some RandomNumberGenerator
    ) -> [ReachabilityEffect] {
        var seen = Set<PublicKey>()
        peers = Array(list.filter { seen.insert($0).inserted }.prefix(config.maximumPeers))
        var effects: [ReachabilityEffect] = []
        if waitingForPeers, !peers.isEmpty, let endpoint = checkedEndpoint {
            startCheck(endpoint, now: now, rng: &rng, effects: &effects)
        }
        return effects
    }

    /// A `dialBackProbe(nonce)` arrived from `peer`. It counts when the nonce belongs to the check
    /// in flight and `peer` is not the peer that was asked with it.
    public mutating func probeReceived(nonce: UInt64, from peer: PublicKey, now: Instant) -> [ReachabilityEffect] {
        guard let current = check, let asked = current.asked[nonce], asked != peer else {
            counters.probesIgnored += 1
            return []
        }
        counters.probesAccepted += 1
        counters.checksPublic += 1
        var effects: [ReachabilityEffect] = []
        finish(.public(current.endpoint), now: now, effects: &effects)
        return effects
    }

    /// The helper `peer` refused the request with `nonce`. When every asked peer has refused, the
    /// verdict is `private`.
    public mutating func dialBackRefused(
        nonce: UInt64, reason: DialBackRefusal, from peer: PublicKey, now: Instant
    ) -> [ReachabilityEffect] {
        guard var current = check, current.asked[nonce] == peer, current.outstanding.remove(nonce) != nil else {
            return []
        }
        counters.refusalsReceived += 1
        check = current
        var effects: [ReachabilityEffect] = []
        if current.outstanding.isEmpty {
            counters.checksPrivate += 1
            finish(.private, now: now, effects: &effects)
        }
        return effects
    }

    // MARK: - Helper

    /// `requester` asks to be dialled at `endpoint`; `observedSource` is the source address of its
    /// session as this node sees it, and `peers` the peers that could dial (the requester is
    /// excluded here). Refuses an endpoint at another IP address, a non-public one, or a requester
    /// over its rate; otherwise orders one random other peer to probe.
    public mutating func handleDialBackRequest(
        from requester: PublicKey, nonce: UInt64, endpoint: Endpoint, observedSource: Endpoint?, now: Instant,
        peers candidates: [PublicKey], rng: inout some RandomNumberGenerator
    ) -> [ReachabilityEffect] {
        func refuse(_ reason: DialBackRefusal) -> [ReachabilityEffect] {
            counters.requestsRefused[reason, default: 0] += 1
            return [.send(.dialBackRefused(nonce: nonce, reason: reason), to: requester)]
        }
        guard let source = observedSource, source.address.unmapped == endpoint.address.unmapped else {
            return refuse(.addressMismatch)
        }
        guard isAcceptable(endpoint.address) else { return refuse(.notPublic) }
        guard requesterLimiter.allow(requester, now: now), requestLimiter.allow(true, now: now) else {
            return refuse(.rateLimited)
        }
        let others = candidates.filter { $0 != requester }
        guard let prober = others.randomElement(using: &rng) else { return refuse(.noPeers) }
        counters.requestsHelped += 1
        return [.send(.dialBackOrder(target: requester, endpoint: endpoint, nonce: nonce), to: prober)]
    }

    // MARK: - Prober

    /// `helper` orders this node to dial `target` at `endpoint`. Over the helper's rate, for a
    /// non-public endpoint, or with the queue full, the order is dropped silently (the requester
    /// times out); otherwise `.dialProbe` comes out now or, when the probe rate is spent, from a
    /// later `tick`.
    public mutating func handleDialBackOrder(
        from helper: PublicKey, target: PublicKey, endpoint: Endpoint, nonce: UInt64, now: Instant
    ) -> [ReachabilityEffect] {
        guard isAcceptable(endpoint.address), target != helper, orderLimiter.allow(helper, now: now) else {
            counters.ordersDropped += 1
            return []
        }
        counters.ordersAccepted += 1
        if queue.isEmpty, probeBucket.take(1, now: now) {
            counters.probesOrdered += 1
            return [.dialProbe(target: target, endpoint: endpoint, nonce: nonce)]
        }
        guard queue.count < config.maximumQueuedOrders else {
            counters.ordersDropped += 1
            return []
        }
        queue.append(Order(target: target, endpoint: endpoint, nonce: nonce, at: now))
        queueReadyAt = probeBucket.readyAt(1, now: now)
        return []
    }

    /// Dispatches a dial-back message from `peer`: requests (helper), orders (prober), refusals and
    /// probes (requester). Other messages are ignored.
    public mutating func handle(
        _ message: RelayMessage, from peer: PublicKey, observedSource: Endpoint?, now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> [ReachabilityEffect] {
        switch message {
        case .dialBackRequest(let nonce, let endpoint):
            return handleDialBackRequest(
                from: peer, nonce: nonce, endpoint: endpoint, observedSource: observedSource, now: now, peers: peers,
                rng: &rng)
        case .dialBackOrder(let target, let endpoint, let nonce):
            return handleDialBackOrder(from: peer, target: target, endpoint: endpoint, nonce: nonce, now: now)
        case .dialBackRefused(let nonce, let reason):
            return dialBackRefused(nonce: nonce, reason: reason, from: peer, now: now)
        case .dialBackProbe(let nonce):
            return probeReceived(nonce: nonce, from: peer, now: now)
        default:
            return []
        }
    }

    // MARK: - Timers

    /// Check timeouts, periodic re-checks, queued probe orders, and forgetting old observations.
    public mutating func tick(now: Instant, rng: inout some RandomNumberGenerator) -> [ReachabilityEffect] {
        var effects: [ReachabilityEffect] = []
        if let current = check, current.deadline <= now {
            counters.checksPrivate += 1
            finish(.private, now: now, effects: &effects)
        }
        observations = observations.filter { now < $0.value.at + config.observationLifetime }
        if check == nil, let due = nextCheckAt, due <= now {
            nextCheckAt = nil
            if let endpoint = agreed(now: now) ?? checkedEndpoint {
                startCheck(endpoint, now: now, rng: &rng, effects: &effects)
            }
        }
        queue.removeAll { $0.at + config.orderLifetime <= now }
        while let order = queue.first, probeBucket.take(1, now: now) {
            queue.removeFirst()
            counters.probesOrdered += 1
            effects.append(.dialProbe(target: order.target, endpoint: order.endpoint, nonce: order.nonce))
        }
        queueReadyAt = queue.isEmpty ? nil : probeBucket.readyAt(1, now: now)
        return effects
    }

    /// The earliest instant at which `tick` has work to do.
    public var nextDeadline: Instant? {
        let oldest = observations.values.lazy.map(\.at).min().map { $0 + config.observationLifetime }
        return [check?.deadline, check == nil ? nextCheckAt : nil, queueReadyAt, oldest].compactMap { $0 }.min()
    }

    // MARK: - Internals

    private func isAcceptable(_ address: IPAddress) -> Bool {
        let address = address.unmapped
        if address.isUnspecified { return false }
        return config.allowPrivate || !(address.isPrivate || address.isLoopback || address.isLinkLocal)
    }

    /// The endpoint reported by the most distinct reporters (at least `agreeingReporters`), the most
    /// recently reported one on a tie. Observations past their lifetime do not count when `now` is given.
    private func agreed(now: Instant?) -> Endpoint? {
        var tally: [Endpoint: (count: Int, latest: Instant)] = [:]
        for observation in observations.values {
            if let now, observation.at + config.observationLifetime <= now { continue }
            let entry = tally[observation.endpoint] ?? (0, .zero)
            tally[observation.endpoint] = (entry.count + 1, max(entry.latest, observation.at))
        }
        let best = tally.max { lhs, rhs in
            if lhs.value.count != rhs.value.count { return lhs.value.count < rhs.value.count }
            if lhs.value.latest != rhs.value.latest { return lhs.value.latest < rhs.value.latest }
            return lhs.key.description < rhs.key.description
        }
        guard let best, best.value.count >= config.agreeingReporters else { return nil }
        return best.key
    }

    private mutating func startCheck(
        _ endpoint: Endpoint, now: Instant, rng: inout some RandomNumberGenerator, effects: inout [ReachabilityEffect]
    ) {
        checkedEndpoint = endpoint
        check = nil
        guard !peers.isEmpty else {
            waitingForPeers = true
            return
        }
        waitingForPeers = false
        nextCheckAt = nil
        counters.checksStarted += 1
        var asked: [UInt64: PublicKey] = [:]
        for peer in peers.shuffled(using: &rng).prefix(config.peersPerCheck) {
            var nonce = rng.next()
            while asked[nonce] != nil { nonce = rng.next() }
            asked[nonce] = peer
            effects.append(.send(.dialBackRequest(nonce: nonce, endpoint: endpoint), to: peer))
        }
        check = Check(
            endpoint: endpoint, deadline: now + config.checkTimeout, asked: asked, outstanding: Set(asked.keys))
    }

    private mutating func finish(_ verdict: ReachabilityStatus, now: Instant, effects: inout [ReachabilityEffect]) {
        check = nil
        nextCheckAt = now + config.recheckInterval
        guard verdict != status else { return }
        status = verdict
        effects.append(.statusChanged(verdict))
    }
}
