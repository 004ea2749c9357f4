// DCUtR-style hole punching for one relayed end-to-end session (DESIGN §4 "NAT traversal"), as a
// pure state machine. Its messages travel inside the two ends' own session (over the relay).
//
// 1. The initiator (the end that dialled through the relay) sends `punchConnect(nonce, mine)` and
//    notes the time.
// 2. The responder answers `punchConnectReply(nonce, mine)`.
// 3. The initiator measures rtt = reply − connect, sends `punchSync(nonce)`, and punches rtt/2
//    later — when the sync reaches the responder, which punches on arrival. Both ends thus send
//    probes to each other's candidates at about the same moment, opening both NAT mappings.
// 4. The session layer roams to the direct path when an authenticated packet arrives on it and
//    tells us (`directPathConfirmed`). Without that within `attemptTimeout` the attempt failed;
//    the initiator retries up to `maximumAttempts`, then gives up for a while (`retryBackoff`,
//    doubling to `maximumRetryBackoff`) and starts a new round, for as long as the session stays
//    relayed.
//
// Inputs: `start`, `handle(_:now:)` for punch messages from the other end, `directPathConfirmed`,
// `directPathLost`, `cancel`, `tick(now:)` when `nextDeadline` passes. Outputs: `[HolePunchEffect]`.

import UmbraCore

public enum HolePunchRole: Sendable, Equatable {
    /// Dialled through the relay; drives attempts and retries.
    case initiator
    /// Was dialled through the relay; answers and punches on sync.
    case responder
}

/// The coarse state, for `umbra status`.
public enum HolePunchPhase: String, Sendable, Equatable {
    case idle, connecting, punching, direct, failed
}

public struct HolePunchConfig: Sendable {
    /// How long the initiator waits for `punchConnectReply` (one attempt).
    public var replyTimeout: Duration = .seconds(5)
    /// How long the responder waits for `punchSync` after replying.
    public var syncTimeout: Duration = .seconds(5)
    /// How long after punching an attempt waits for `directPathConfirmed`.
    public var attemptTimeout: Duration = .seconds(2)
    /// Attempts per round before giving up for a while.
    public var maximumAttempts = 3
    /// Pause after a failed round: doubles per failed round, capped.
    public var retryBackoff: Duration = .seconds(30)
    public var maximumRetryBackoff: Duration = .seconds(10 * 60)
    /// Most of the other end's candidates one burst is sent to (see `punchTargets`).
    public var maximumTargets = 4
    /// Most bursts towards one peer per `punchWindow`, and towards all peers together.
    public var maximumPunchesPerPeer = 6
    public var maximumPunchesInTotal = 64
    public var punchWindow: Duration = .seconds(60)
    public init() {}
}

public enum HolePunchEffect: Equatable, Sendable {
    /// Send this message to the other end over the (relayed) end-to-end session.
    case send(RelayMessage)
    /// Send probes (e.g. keepalives of the end-to-end session) to each of these endpoints now.
    case punch(endpoints: [Endpoint])
    /// A round of attempts failed; the session stays relayed and a new round starts at `retryAt`.
    case gaveUp(attempts: Int, retryAt: Instant)
}

public struct HolePunchCounters: Equatable, Sendable {
    public var attempts: UInt64 = 0
    public var punches: UInt64 = 0
    public var successes: UInt64 = 0
    public var roundsFailed: UInt64 = 0
    /// Messages with a stale nonce, or for the other role.
    public var ignoredMessages: UInt64 = 0
    public init() {}
}

public struct HolePunch: Sendable {
    public let role: HolePunchRole
    public let config: HolePunchConfig
    public private(set) var counters = HolePunchCounters()
    /// Our candidate endpoints, as sent (deduplicated, at most `RelayMessage.maximumCandidates`).
    public private(set) var localCandidates: [Endpoint] = []
    /// Attempts made in the current round.
    public private(set) var attempts = 0
    /// The round-trip time measured by the last exchange (initiator only).
    public private(set) var lastRTT: Duration?
    /// The other end's candidates from the last exchange.
    public private(set) var remoteCandidates: [Endpoint] = []

    private enum State: Sendable {
        case idle
        /// Initiator: `punchConnect` sent.
        case connecting(nonce: UInt64, sentAt: Instant)
        /// Initiator: `punchSync` sent; punch at `punchAt`.
        case syncing(nonce: UInt64, punchAt: Instant)
        /// Responder: replied, waiting for `punchSync`.
        case awaitingSync(nonce: UInt64, deadline: Instant)
        /// Punched; waiting for `directPathConfirmed` until `deadline`.
        case punched(deadline: Instant)
        case direct
        /// Initiator: a round failed; the next starts at `until`.
        case backoff(until: Instant)
    }

    private var state = State.idle
    private var baseNonce: UInt64 = 0
    private var nonceCounter: UInt64 = 0
    private var failedRounds = 0

    public init(role: HolePunchRole, config: HolePunchConfig = HolePunchConfig()) {
        self.role = role
        self.config = config
    }

    public var phase: HolePunchPhase {
        switch state {
        case .idle: .idle
        case .connecting: .connecting
        case .syncing, .awaitingSync, .punched: .punching
        case .direct: .direct
        case .backoff: .failed
        }
    }

    /// When the next round starts, after giving up.
    public var nextRoundAt: Instant? { if case .backoff(let until) = state { until } else { nil } }

    /// A candidate list: public (observed) endpoints first, then private (LAN) ones, duplicates
    /// dropped, at most `RelayMessage.maximumCandidates`.
    public static func candidates(
        public publicEndpoints: [Endpoint], private privateEndpoints: [Endpoint]
    )
        -> [Endpoint]
    {
        var seen = Set<Endpoint>()
        return Array(
            (publicEndpoints + privateEndpoints).filter { seen.insert($0).inserted }
                .prefix(RelayMessage.maximumCandidates))
    }

    /// The other end's candidates this node may send probes to: global unicast endpoints, and
    /// private ones on one of our own private networks (`SteeringPolicy`), of an address family we
    /// have an address in (any, while we know none), never loopback, link-local, unspecified,
    /// multicast, broadcast or port 0; duplicates dropped, at most `limit`. The candidates come from
    /// the peer: without this a peer could aim our bursts at our own host, our LAN or a victim.
    public static func punchTargets(_ candidates: [Endpoint], own: [IPAddress], limit: Int) -> [Endpoint] {
        let families = Set(own.filter { $0.scope == .global || $0.scope == .private }.map(\.isIPv4Family))
        var seen = Set<Endpoint>()
        return Array(
            candidates.filter { candidate in
                candidate.scope != .loopback && SteeringPolicy.admits(candidate, own: own)
                    && (families.isEmpty || families.contains(candidate.address.isIPv4Family))
                    && seen.insert(candidate).inserted
            }
            .prefix(max(0, limit)))
    }

    /// Replaces our candidates (used by the next exchange).
    public mutating func setLocalCandidates(_ endpoints: [Endpoint]) {
        localCandidates = Self.candidates(public: endpoints, private: [])
    }

    // MARK: - Inputs

    /// Initiator: starts a round of attempts (nonces are `nonce`, `nonce + 1`, … per attempt).
    public mutating func start(nonce: UInt64, localCandidates candidates: [Endpoint], now: Instant) -> [HolePunchEffect]
    {
        guard role == .initiator else { return [] }
        setLocalCandidates(candidates)
        baseNonce = nonce
        nonceCounter = 0
        failedRounds = 0
        attempts = 0
        var effects: [HolePunchEffect] = []
        attempt(now: now, effects: &effects)
        return effects
    }

    /// A punch message from the other end of the session.
    public mutating func handle(_ message: RelayMessage, now: Instant) -> [HolePunchEffect] {
        var effects: [HolePunchEffect] = []
        switch (role, message, state) {
        case (.responder, .punchConnect(let nonce, let candidates), _):
            remoteCandidates = Self.candidates(public: candidates, private: [])
            attempts += 1
            counters.attempts += 1
            state = .awaitingSync(nonce: nonce, deadline: now + config.syncTimeout)
            effects.append(.send(.punchConnectReply(nonce: nonce, candidates: localCandidates)))
        case (.responder, .punchSync(let nonce), .awaitingSync(let expected, _)) where nonce == expected:
            punch(now: now, effects: &effects)
        case (.initiator, .punchConnectReply(let nonce, let candidates), .connecting(let expected, let sentAt))
        where nonce == expected:
            remoteCandidates = Self.candidates(public: candidates, private: [])
            let rtt = now.since(sentAt)
            lastRTT = rtt
            effects.append(.send(.punchSync(nonce: nonce)))
            let punchAt = now + rtt / 2
            if punchAt <= now {
                punch(now: now, effects: &effects)
            } else {
                state = .syncing(nonce: nonce, punchAt: punchAt)
            }
        default:
            counters.ignoredMessages += 1
        }
        return effects
    }

    /// The session layer received an authenticated packet on a direct path: stop all attempts.
    public mutating func directPathConfirmed(now: Instant) -> [HolePunchEffect] {
        if case .direct = state { return [] }
        state = .direct
        counters.successes += 1
        failedRounds = 0
        return []
    }

    /// The direct path broke and the session is relayed again: the initiator starts a new round
    /// at once; the responder waits for it.
    public mutating func directPathLost(now: Instant) -> [HolePunchEffect] {
        guard case .direct = state else { return [] }
        state = .idle
        guard role == .initiator else { return [] }
        attempts = 0
        failedRounds = 0
        var effects: [HolePunchEffect] = []
        attempt(now: now, effects: &effects)
        return effects
    }

    /// The session ended (or no longer needs upgrading): forget everything in flight.
    public mutating func cancel() {
        state = .idle
        attempts = 0
    }

    /// Timeouts, the initiator's delayed punch, retries and new rounds.
    public mutating func tick(now: Instant) -> [HolePunchEffect] {
        var effects: [HolePunchEffect] = []
        switch state {
        case .idle, .direct:
            break
        case .connecting(_, let sentAt):
            if sentAt + config.replyTimeout <= now { attemptFailed(now: now, effects: &effects) }
        case .syncing(_, let punchAt):
            if punchAt <= now { punch(now: now, effects: &effects) }
        case .awaitingSync(_, let deadline):
            if deadline <= now { state = .idle }
        case .punched(let deadline):
            if deadline <= now { attemptFailed(now: now, effects: &effects) }
        case .backoff(let until):
            if until <= now {
                attempts = 0
                attempt(now: now, effects: &effects)
            }
        }
        return effects
    }

    /// The earliest instant at which `tick` has work to do.
    public var nextDeadline: Instant? {
        switch state {
        case .idle, .direct: nil
        case .connecting(_, let sentAt): sentAt + config.replyTimeout
        case .syncing(_, let punchAt): punchAt
        case .awaitingSync(_, let deadline), .punched(let deadline): deadline
        case .backoff(let until): until
        }
    }

    // MARK: - Internals

    private mutating func attempt(now: Instant, effects: inout [HolePunchEffect]) {
        let nonce = baseNonce &+ nonceCounter
        nonceCounter &+= 1
        attempts += 1
        counters.attempts += 1
        state = .connecting(nonce: nonce, sentAt: now)
        effects.append(.send(.punchConnect(nonce: nonce, candidates: localCandidates)))
    }

    private mutating func punch(now: Instant, effects: inout [HolePunchEffect]) {
        counters.punches += 1
        state = .punched(deadline: now + config.attemptTimeout)
        effects.append(.punch(endpoints: remoteCandidates))
    }

    private mutating func attemptFailed(now: Instant, effects: inout [HolePunchEffect]) {
        guard role == .initiator else {
            state = .idle
            return
        }
        if attempts < config.maximumAttempts {
            attempt(now: now, effects: &effects)
            return
        }
        failedRounds += 1
        counters.roundsFailed += 1
        var delay = config.retryBackoff
        for _ in 1..<max(1, min(failedRounds, 32)) where delay < config.maximumRetryBackoff { delay = delay * 2 }
        let retryAt = now + min(delay, config.maximumRetryBackoff)
        state = .backoff(until: retryAt)
        effects.append(.gaveUp(attempts: attempts, retryAt: retryAt))
    }
}
