// Reachability from all the evidence (DESIGN §4 "NAT traversal"), as a pure state machine. Every
// node runs one; it plays three parts:
//
// - requester N: collects the reflexive addresses peers report (`observed`, with the reporter's own
//   address), the sessions peers opened to it unsolicited (`sessionUp`, `sentInitiation`) and its
//   own socket endpoints (`config.localEndpoints`, fed by the shell). The rule (docs/architecture.md
//   §10 "The reachability rule"):
//   1. Scope: when any reporter sits at a global address, only global reporters count (what the
//      internet sees); otherwise (one LAN, one machine) the local ones do.
//   2. `public(E)` without any test when a strict majority of those reporters see us at E and E is
//      one of our own socket endpoints: nothing translates between them and us.
//   3. `public(E)` when peers at `unsolicitedSources` distinct addresses we never sent a handshake
//      to opened sessions to us and see us at E: their handshakes came in unasked.
//   4. Otherwise, when reporters at `agreeingReporters` distinct addresses agree on E (or E changes,
//      or `recheckInterval` passes), ask up to `peersPerCheck` peers P for a dial-back
//      (`dialBackRequest`, one nonce per peer). A `dialBackProbe` with one of those nonces from a
//      peer other than the one asked, at an address other than the helper's and ours, proves E
//      accepts unsolicited handshakes: `public(E)`. When every asked peer refused or `checkTimeout`
//      passed, and rules 2 and 3 do not hold: `private` (positive evidence wins: a failed check in
//      a small network only means nobody was left to dial).
// - helper P: `handleDialBackRequest` refuses an endpoint that is not at the request's own source IP
//   (so nobody can aim probes at a third party), rate-limits (before any other work), and orders a
//   random other eligible peer Q to dial (`dialBackOrder`).
// - prober Q: `handleDialBackOrder` rate-limits and queues orders (bounded) and emits `.dialProbe`,
//   which the shell turns into a fresh handshake to the target carrying `dialBackProbe` as 0-RTT
//   data, so the probe travels from Q's socket through a NAT mapping N never opened.
//
// Inputs: the calls above plus `setPeers`, `dialBackRefused`, `probeReceived`, `tick` when
// `nextDeadline` passes. Outputs: `[ReachabilityEffect]`. `basis` says which rule gave the verdict.

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

/// Which evidence a `public` or `private` verdict rests on.
public enum ReachabilityBasis: String, Equatable, Sendable {
    /// Most reporters see us at one of our own socket endpoints (no translation in between).
    case ownAddress = "own-address"
    /// Peers at several addresses we never dialled opened sessions to us.
    case unsolicitedInbound = "unsolicited-inbound"
    /// A peer that was not asked, at an address other than the helper's and ours, dialled us back.
    case dialBack = "dial-back"
    /// A dial-back check failed and nothing says otherwise.
    case checkFailed = "check-failed"
}

public struct ReachabilityConfig: Sendable {
    /// Accept private and loopback observations and endpoints (loopback and namespace tests).
    public var allowPrivate = false
    /// Distinct reporters (at distinct addresses, when their addresses are known) that must agree
    /// on an endpoint before it is checked.
    public var agreeingReporters = 2
    /// Our own socket endpoints: the listen address, or every interface address with the listen
    /// port when the socket is bound to a wildcard address (the shell fills this in).
    public var localEndpoints: [Endpoint] = []
    /// Distinct source addresses of unsolicited inbound sessions that must see us at one endpoint.
    public var unsolicitedSources = 2
    /// Addresses we sent handshakes to, remembered (for telling unsolicited sessions apart).
    public var maximumContacted = 4096
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
    /// Verdicts from our own address or from unsolicited inbound sessions (no check needed).
    public var verdictsOwnAddress: UInt64 = 0
    public var verdictsUnsolicited: UInt64 = 0
    public var unsolicitedSessions: UInt64 = 0
    public var probesAccepted: UInt64 = 0
    /// Probes that did not count: unknown or stale nonce, or sent by the very peer that was asked,
    /// or from the helper's address or ours.
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
    /// The rule the current verdict rests on (nil while `unknown`).
    public private(set) var basis: ReachabilityBasis?
    public private(set) var counters = ReachabilityCounters()
    /// The peers dial-back requests go to (and orders, on the helper side, unless the shell passes
    /// its own list).
    public private(set) var peers: [PublicKey] = []

    private struct Observation: Sendable {
        var endpoint: Endpoint
        /// The reporter's own address as we see it (nil: unknown, judged by `endpoint`).
        var reporterAddress: IPAddress?
        var at: Instant
    }

    private struct Check: Sendable {
        var endpoint: Endpoint
        var deadline: Instant
        /// Nonce → the peer asked with it.
        var asked: [UInt64: PublicKey]
        /// Nonce → the address of the peer asked (a probe from there proves nothing).
        var askedAddresses: [UInt64: IPAddress]
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
    /// Peers whose direct session came in unasked, with their address.
    private var unsolicited: [PublicKey: IPAddress] = [:]
    /// Addresses we sent handshakes to (bounded, oldest first out).
    private var contacted: Set<IPAddress> = []
    private var contactedOrder: [IPAddress] = []
    private var peerAddresses: [PublicKey: IPAddress] = [:]
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

    /// A peer reported the endpoint it sees us at; `reporterAddress` is the address its session with
    /// us comes from (nil when unknown: the endpoint's own scope is used). Unspecified endpoints are
    /// ignored; private, loopback and link-local ones only count while no reporter is global (a LAN,
    /// one machine), or with `allowPrivate`.
    public mutating func observed(
        _ endpoint: Endpoint, reporter: PublicKey, reporterAddress: IPAddress? = nil, now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> [ReachabilityEffect] {
        guard !endpoint.address.isUnspecified, endpoint.port != 0 else {
            counters.observationsIgnored += 1
            return []
        }
        if observations[reporter] == nil, observations.count >= config.maximumReporters,
            let oldest = observations.min(by: { $0.value.at < $1.value.at })
        {
            observations[oldest.key] = nil
        }
        observations[reporter] = Observation(endpoint: endpoint, reporterAddress: reporterAddress?.unmapped, at: now)
        return evaluate(now: now, rng: &rng)
    }

    /// We sent a handshake initiation (or a dial-back probe) to `address`: a session from there is
    /// not unsolicited (a NAT lets answers in from any address we sent to).
    public mutating func sentInitiation(to address: IPAddress) {
        let address = address.unmapped
        guard contacted.insert(address).inserted else { return }
        contactedOrder.append(address)
        if contactedOrder.count > config.maximumContacted { contacted.remove(contactedOrder.removeFirst()) }
    }

    /// A direct session with `peer` at `address` came up. `punched`: it grew out of a relayed one
    /// (we sent to the peer first). It counts as unsolicited inbound when we never sent a handshake
    /// to that address.
    public mutating func sessionUp(
        _ peer: PublicKey, address: IPAddress, punched: Bool = false, now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> [ReachabilityEffect] {
        let address = address.unmapped
        guard !punched, !address.isUnspecified, !contacted.contains(address) else {
            unsolicited[peer] = nil
            return []
        }
        if unsolicited[peer] == nil { counters.unsolicitedSessions += 1 }
        unsolicited[peer] = address
        if unsolicited.count > config.maximumReporters, let first = unsolicited.keys.first(where: { $0 != peer }) {
            unsolicited[first] = nil
        }
        return evaluate(now: now, rng: &rng)
    }

    /// The peers to ask for dial-backs (duplicates dropped, at most `maximumPeers`), with the
    /// addresses their sessions come from where known. A check that was waiting for peers starts now.
    public mutating func setPeers(
        _ list: [PublicKey], addresses: [PublicKey: IPAddress] = [:], now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> [ReachabilityEffect] {
        var seen = Set<PublicKey>()
        peers = Array(list.filter { seen.insert($0).inserted }.prefix(config.maximumPeers))
        peerAddresses = [:]
        for peer in peers { peerAddresses[peer] = addresses[peer]?.unmapped }
        var effects: [ReachabilityEffect] = []
        if waitingForPeers, !peers.isEmpty, let endpoint = checkedEndpoint {
            startCheck(endpoint, now: now, rng: &rng, effects: &effects)
        }
        return effects
    }

    /// Adds one peer to ask for dial-backs (ignored when already listed or the list is full):
    /// constant work per session that comes up, whatever the number of sessions.
    public mutating func addPeer(
        _ peer: PublicKey, address: IPAddress?, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [ReachabilityEffect] {
        guard peers.count < config.maximumPeers, peerAddresses[peer] == nil, !peers.contains(peer) else { return [] }
        peers.append(peer)
        peerAddresses[peer] = address?.unmapped
        var effects: [ReachabilityEffect] = []
        if waitingForPeers, let endpoint = checkedEndpoint {
            startCheck(endpoint, now: now, rng: &rng, effects: &effects)
        }
        return effects
    }

    /// Removes one peer from the dial-back list. Returns true when the list is now empty, so the
    /// caller can refill it from its sessions (rare: it holds up to `maximumPeers`).
    @discardableResult
    public mutating func removePeer(_ peer: PublicKey) -> Bool {
        if let index = peers.firstIndex(of: peer) {
            peers.remove(at: index)
            peerAddresses[peer] = nil
        }
        return peers.isEmpty
    }

    /// A `dialBackProbe(nonce)` arrived from `peer` at `source`. It counts when the nonce belongs to
    /// the check in flight, `peer` is not the peer that was asked with it, and `source` is neither
    /// the asked peer's address nor one of ours (a second identity on the helper's host, or a probe
    /// over our own LAN, proves nothing about strangers).
    public mutating func probeReceived(
        nonce: UInt64, from peer: PublicKey, source: IPAddress? = nil, now: Instant
    ) -> [ReachabilityEffect] {
        guard let current = check, let asked = current.asked[nonce], asked != peer else {
            counters.probesIgnored += 1
            return []
        }
        if let source = source?.unmapped {
            if let helper = current.askedAddresses[nonce], helper == source {
                counters.probesIgnored += 1
                return []
            }
            if ownAddresses.contains(source) {
                counters.probesIgnored += 1
                return []
            }
        }
        counters.probesAccepted += 1
        counters.checksPublic += 1
        var effects: [ReachabilityEffect] = []
        finish(.public(current.endpoint), basis: .dialBack, now: now, effects: &effects)
        return effects
    }

    /// The helper `peer` refused the request with `nonce`. When every asked peer has refused, the
    /// verdict is `private` (unless other evidence says public).
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
            checkFailed(now: now, effects: &effects)
        }
        return effects
    }

    // MARK: - Helper

    /// `requester` asks to be dialled at `endpoint`; `observedSource` is the source address of its
    /// session as this node sees it, and `peers` the peers that could dial (the requester is
    /// excluded here), of which only those `isEligible` accepts are picked. Refuses an endpoint at
    /// another IP address, a non-public one, or a requester over its rate, before any work that
    /// grows with the peer list; otherwise orders one random other peer to probe.
    public mutating func handleDialBackRequest(
        from requester: PublicKey, nonce: UInt64, endpoint: Endpoint, observedSource: Endpoint?, now: Instant,
        peers candidates: [PublicKey], isEligible: (PublicKey) -> Bool = { _ in true },
        rng: inout some RandomNumberGenerator
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
        // A random start and one pass: no sort, no copy of the list.
        var prober: PublicKey?
        if !candidates.isEmpty {
            let start = Int.random(in: 0..<candidates.count, using: &rng)
            for offset in 0..<candidates.count {
                let candidate = candidates[(start + offset) % candidates.count]
                if candidate != requester, isEligible(candidate) {
                    prober = candidate
                    break
                }
            }
        }
        guard let prober else { return refuse(.noPeers) }
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
            return probeReceived(nonce: nonce, from: peer, source: observedSource?.address, now: now)
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
            checkFailed(now: now, effects: &effects)
        }
        let before = observations.count
        observations = observations.filter { now < $0.value.at + config.observationLifetime }
        if observations.count != before, check == nil { effects += evaluate(now: now, rng: &rng) }
        if check == nil, let due = nextCheckAt, due <= now {
            nextCheckAt = nil
            if let (endpoint, basis) = positiveEvidence(now: now) {
                finish(.public(endpoint), basis: basis, now: now, effects: &effects)
            } else if let endpoint = agreed(now: now) ?? checkedEndpoint {
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

    /// The session with `peer` is gone: an unsolicited session no longer counts.
    public mutating func sessionDown(_ peer: PublicKey) {
        unsolicited[peer] = nil
    }

    private func isAcceptable(_ address: IPAddress) -> Bool {
        let address = address.unmapped
        if address.isUnspecified { return false }
        return config.allowPrivate || Self.isGlobal(address)
    }

    static func isGlobal(_ address: IPAddress) -> Bool {
        let address = address.unmapped
        return !(address.isUnspecified || address.isPrivate || address.isLoopback || address.isLinkLocal)
    }

    /// The addresses that are ours: our socket endpoints' and the ones peers see us at.
    private var ownAddresses: Set<IPAddress> {
        var own = Set(config.localEndpoints.map(\.address.unmapped))
        for observation in observations.values { own.insert(observation.endpoint.address.unmapped) }
        return own
    }

    /// The fresh observations that count (rule 1): the global reporters' when there is any, else all.
    private func scopedObservations(now: Instant?) -> [(reporter: PublicKey, observation: Observation)] {
        let lifetime = config.observationLifetime
        let fresh = observations.filter { entry in now.map { $0 < entry.value.at + lifetime } ?? true }
        let global = fresh.filter { Self.isGlobal($0.value.reporterAddress ?? $0.value.endpoint.address) }
        let scoped = global.isEmpty ? fresh : global
        return scoped.map { ($0.key, $0.value) }
    }

    /// Rules 2 and 3: the endpoint we are publicly reachable at without any test, if any.
    private func positiveEvidence(now: Instant?) -> (Endpoint, ReachabilityBasis)? {
        let scoped = scopedObservations(now: now)
        guard !scoped.isEmpty else { return nil }
        let local = Set(config.localEndpoints)
        var tally: [Endpoint: Int] = [:]
        for entry in scoped { tally[entry.observation.endpoint, default: 0] += 1 }
        if let (endpoint, count) = tally.max(by: { ($0.value, $1.key.description) < ($1.value, $0.key.description) }),
            local.contains(endpoint), 2 * count > scoped.count
        {
            return (endpoint, .ownAddress)
        }
        var sources: [Endpoint: Set<IPAddress>] = [:]
        for entry in scoped {
            guard let address = unsolicited[entry.reporter] else { continue }
            sources[entry.observation.endpoint, default: []].insert(address)
        }
        let proven = sources.filter { $0.value.count >= config.unsolicitedSources }
            .max { ($0.value.count, $1.key.description) < ($1.value.count, $0.key.description) }
        if let proven { return (proven.key, .unsolicitedInbound) }
        return nil
    }

    /// Applies rules 2–4 after new evidence: a verdict without a test, or a dial-back check of the
    /// endpoint reporters agree on.
    private mutating func evaluate(now: Instant, rng: inout some RandomNumberGenerator) -> [ReachabilityEffect] {
        var effects: [ReachabilityEffect] = []
        if let (endpoint, basis) = positiveEvidence(now: now) {
            if status != .public(endpoint) {
                if basis == .ownAddress { counters.verdictsOwnAddress += 1 } else { counters.verdictsUnsolicited += 1 }
            }
            check = nil
            waitingForPeers = false
            checkedEndpoint = endpoint
            finish(.public(endpoint), basis: basis, now: now, effects: &effects)
            return effects
        }
        guard let agreed = agreed(now: now), agreed != checkedEndpoint else { return [] }
        startCheck(agreed, now: now, rng: &rng, effects: &effects)
        return effects
    }

    /// The endpoint reported by the most distinct reporters (at least `agreeingReporters`, counted
    /// by address where known), the most recently reported one on a tie, among the observations
    /// that count. Observations past their lifetime do not count when `now` is given.
    private func agreed(now: Instant?) -> Endpoint? {
        var tally: [Endpoint: (sources: Set<String>, latest: Instant)] = [:]
        for (reporter, observation) in scopedObservations(now: now) where isAcceptable(observation.endpoint.address) {
            var entry = tally[observation.endpoint] ?? ([], .zero)
            entry.sources.insert(observation.reporterAddress.map { "\($0)" } ?? reporter.description)
            entry.latest = max(entry.latest, observation.at)
            tally[observation.endpoint] = entry
        }
        let best = tally.max { lhs, rhs in
            if lhs.value.sources.count != rhs.value.sources.count {
                return lhs.value.sources.count < rhs.value.sources.count
            }
            if lhs.value.latest != rhs.value.latest { return lhs.value.latest < rhs.value.latest }
            return lhs.key.description < rhs.key.description
        }
        guard let best, best.value.sources.count >= config.agreeingReporters else { return nil }
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
        var askedAddresses: [UInt64: IPAddress] = [:]
        for peer in peers.shuffled(using: &rng).prefix(config.peersPerCheck) {
            var nonce = rng.next()
            while asked[nonce] != nil { nonce = rng.next() }
            asked[nonce] = peer
            askedAddresses[nonce] = peerAddresses[peer]
            effects.append(.send(.dialBackRequest(nonce: nonce, endpoint: endpoint), to: peer))
        }
        check = Check(
            endpoint: endpoint, deadline: now + config.checkTimeout, asked: asked, askedAddresses: askedAddresses,
            outstanding: Set(asked.keys))
    }

    /// A check found no way in: `private`, unless rules 2 and 3 say public.
    private mutating func checkFailed(now: Instant, effects: inout [ReachabilityEffect]) {
        if let (endpoint, basis) = positiveEvidence(now: now) {
            finish(.public(endpoint), basis: basis, now: now, effects: &effects)
        } else {
            finish(.private, basis: .checkFailed, now: now, effects: &effects)
        }
    }

    private mutating func finish(
        _ verdict: ReachabilityStatus, basis: ReachabilityBasis, now: Instant, effects: inout [ReachabilityEffect]
    ) {
        check = nil
        nextCheckAt = now + config.recheckInterval
        self.basis = basis
        guard verdict != status else { return }
        status = verdict
        effects.append(.statusChanged(verdict))
    }
}
