// The reservation side of a NATed node, as a pure state machine (DESIGN §4 "Relay"). It keeps
// `desiredRelays` reservations among the candidate relays the node layer supplies, renews them at
// half their TTL, re-reserves at once when a relay's session comes back (a restarted relay has lost
// its table and must have us back within seconds), fails over to another candidate when one
// refuses or stops answering (with exponential backoff per relay), and tells the node layer which
// relays to list in its peer record.
//
// Inputs: `setCandidates(_:now:)`, `relayConnected(_:now:)`, `relayLost(_:now:)`,
// `handle(_:from:now:)` for relay messages from a relay, `tick(now:)` when `nextDeadline` passes.
// Outputs: `[RelayClientEffect]`. The shell answers `.connect` with `relayConnected` (at once when
// a session already exists) and keeps that peer connected until `.release`.
//
// Per relay: idle → connecting → requesting → reserved → (renewal) requesting → reserved …; a lost
// session turns a reservation into `connecting` while still holding it, until it either comes back
// (re-reserve) or `connectTimeout` passes (fail over).

import UmbraCore

/// A relay as the node layer knows it: its key and where to dial it.
public struct RelayContact: Hashable, Sendable, CustomStringConvertible {
    public var publicKey: PublicKey
    public var endpoint: Endpoint

    public init(publicKey: PublicKey, endpoint: Endpoint) {
        self.publicKey = publicKey
        self.endpoint = endpoint
    }

    public var description: String { "\(NodeAddress(publicKey: publicKey))@\(endpoint)" }
}

public struct RelayClientConfig: Sendable {
    /// How many reservations to hold at once.
    public var desiredRelays = 2
    /// Most candidate relays remembered.
    public var maximumCandidates = 32
    /// How long a relay has to become connected after `.connect` (or after its session was lost).
    public var connectTimeout: Duration = .seconds(10)
    /// How long a relay has to answer `reserve`.
    public var requestTimeout: Duration = .seconds(5)
    /// Backoff before a relay that refused or failed is tried again: doubles per failure, capped.
    public var retryBackoff: Duration = .seconds(5)
    public var maximumRetryBackoff: Duration = .seconds(10 * 60)
    /// Renewals are never scheduled sooner than this after a grant (guards against tiny TTLs).
    public var minimumRenewInterval: Duration = .seconds(5)
    public init() {}
}

public enum RelayClientEffect: Equatable, Sendable {
    case send(RelayMessage, to: PublicKey)
    /// Dial this relay and keep the session up; answer with `relayConnected`.
    case connect(RelayContact)
    /// This relay is no longer needed as a kept peer.
    case release(RelayContact)
    /// The relays to list in our peer record changed (republish it).
    case relaysChanged([RelayContact])
    /// A relay told us a circuit with `peer` was refused or closed (or a datagram dropped).
    case circuitEnded(relay: PublicKey, peer: PublicKey, code: CircuitCode)
}

/// A reservation we hold, as shown by `umbra status`.
public struct RelayClientReservation: Equatable, Sendable {
    public var relay: RelayContact
    public var expiresAt: Instant
    /// When it will be renewed (or was due to be: a renewal may be in flight).
    public var renewAt: Instant
    public var limits: CircuitLimits
    public var isConnected: Bool
}

public struct RelayClientCounters: Equatable, Sendable {
    public var requestsSent: UInt64 = 0
    public var reservationsGranted: UInt64 = 0
    public var refusals: [ReservationStatus: UInt64] = [:]
    public var timeouts: UInt64 = 0
    public var failovers: UInt64 = 0
    public var unexpectedMessages: UInt64 = 0
    public init() {}
}

public struct RelayClient: Sendable {
    public let config: RelayClientConfig
    public private(set) var counters = RelayClientCounters()
    /// The relays last announced with `.relaysChanged`.
    public private(set) var advertised: [RelayContact] = []

    private struct Held: Sendable {
        var expiresAt: Instant
        var renewAt: Instant
        var limits: CircuitLimits
    }

    private enum Phase: Sendable {
        case idle
        /// Waiting for `relayConnected`; `held` is a reservation from before the session was lost.
        case connecting(since: Instant, held: Held?)
        case requesting(id: UInt32, sentAt: Instant, held: Held?)
        case reserved(Held)

        var held: Held? {
            switch self {
            case .idle: nil
            case .connecting(_, let held), .requesting(_, _, let held): held
            case .reserved(let held): held
            }
        }

        var isActive: Bool { if case .idle = self { false } else { true } }
    }

    private struct Slot: Sendable {
        var contact: RelayContact
        /// False once the node layer dropped it from the candidates (kept while still in use).
        var isCandidate = true
        var isConnected = false
        var phase = Phase.idle
        var failures = 0
        var retryAt: Instant?
    }

    private var slots: [PublicKey: Slot] = [:]
    /// Slot keys in preference order (the candidates' order, then retired ones still in use).
    private var order: [PublicKey] = []
    private var nextRequestID: UInt32 = 1

    public init(config: RelayClientConfig = RelayClientConfig()) {
        self.config = config
    }

    /// Reservations held now (including those being renewed or waiting for a reconnect).
    public var activeReservations: [RelayClientReservation] {
        order.compactMap { key in
            guard let slot = slots[key], let held = slot.phase.held else { return nil }
            return RelayClientReservation(
                relay: slot.contact, expiresAt: held.expiresAt, renewAt: held.renewAt, limits: held.limits,
                isConnected: slot.isConnected)
        }
    }

    /// The candidate relays, in preference order.
    public var candidates: [RelayContact] { order.compactMap { slots[$0] }.filter(\.isCandidate).map(\.contact) }

    // MARK: - Inputs

    /// Replaces the candidate relays (in preference order; duplicates and entries past
    /// `maximumCandidates` are dropped). A relay we hold a reservation on stays in use until it
    /// fails, even when it is no longer a candidate.
    public mutating func setCandidates(_ contacts: [RelayContact], now: Instant) -> [RelayClientEffect] {
        var seen = Set<PublicKey>()
        let fresh = contacts.filter { seen.insert($0.publicKey).inserted }.prefix(config.maximumCandidates)
        var newOrder: [PublicKey] = []
        for contact in fresh {
            if var slot = slots[contact.publicKey] {
                slot.isCandidate = true
                if !slot.phase.isActive { slot.contact = contact }
                slots[contact.publicKey] = slot
            } else {
                slots[contact.publicKey] = Slot(contact: contact)
            }
            newOrder.append(contact.publicKey)
        }
        for key in order where !seen.contains(key) {
            if slots[key]?.phase.isActive == true {
                slots[key]?.isCandidate = false
                newOrder.append(key)
            } else {
                slots[key] = nil
            }
        }
        order = newOrder
        var effects: [RelayClientEffect] = []
        reconcile(now: now, effects: &effects)
        return effects
    }

    /// A session with `relay` is up: ask for (or renew) the reservation now if we want one there.
    public mutating func relayConnected(_ relay: PublicKey, now: Instant) -> [RelayClientEffect] {
        guard var slot = slots[relay] else { return [] }
        slot.isConnected = true
        slots[relay] = slot
        var effects: [RelayClientEffect] = []
        switch slot.phase {
        case .idle: break
        case .connecting(_, let held), .requesting(_, _, let held):
            request(relay, held: held, now: now, effects: &effects)
        case .reserved(let held): request(relay, held: held, now: now, effects: &effects)
        }
        reconcile(now: now, effects: &effects)
        return effects
    }

    /// The session with `relay` ended. A reservation there is kept (and still advertised) for
    /// `connectTimeout`: if the relay comes back we re-reserve, otherwise we fail over.
    public mutating func relayLost(_ relay: PublicKey, now: Instant) -> [RelayClientEffect] {
        guard var slot = slots[relay] else { return [] }
        slot.isConnected = false
        switch slot.phase {
        case .idle, .connecting: break
        case .requesting(_, _, let held): slot.phase = .connecting(since: now, held: held)
        case .reserved(let held): slot.phase = .connecting(since: now, held: held)
        }
        slots[relay] = slot
        var effects: [RelayClientEffect] = []
        reconcile(now: now, effects: &effects)
        return effects
    }

    /// Handles a relay message from `relay`: reservation results and circuit statuses.
    public mutating func handle(_ message: RelayMessage, from relay: PublicKey, now: Instant) -> [RelayClientEffect] {
        var effects: [RelayClientEffect] = []
        switch message {
        case .reserveResult(let requestID, let status, let ttl, let limits):
            guard let slot = slots[relay], case .requesting(requestID, _, _) = slot.phase else {
                counters.unexpectedMessages += 1
                return []
            }
            if status == .ok, ttl > 0 {
                let lifetime = Duration.seconds(Int64(ttl))
                let renewAt = now + max(lifetime / 2, min(config.minimumRenewInterval, lifetime))
                slots[relay]?.phase = .reserved(Held(expiresAt: now + lifetime, renewAt: renewAt, limits: limits))
                slots[relay]?.failures = 0
                counters.reservationsGranted += 1
            } else {
                counters.refusals[status, default: 0] += 1
                fail(
                    relay, now: now, backoff: status == .notARelay ? config.maximumRetryBackoff : nil, effects: &effects
                )
            }
        case .circuitStatus(let peer, let code):
            effects.append(.circuitEnded(relay: relay, peer: peer, code: code))
        default:
            counters.unexpectedMessages += 1
        }
        reconcile(now: now, effects: &effects)
        return effects
    }

    /// Timeouts, renewals and retries.
    public mutating func tick(now: Instant) -> [RelayClientEffect] {
        var effects: [RelayClientEffect] = []
        for key in order {
            guard let slot = slots[key] else { continue }
            switch slot.phase {
            case .idle:
                if let retryAt = slot.retryAt, retryAt <= now { slots[key]?.retryAt = nil }
            case .connecting(let since, let held):
                if since + config.connectTimeout <= now || (held.map { $0.expiresAt <= now } ?? false) {
                    counters.timeouts += 1
                    fail(key, now: now, backoff: nil, effects: &effects)
                }
            case .requesting(_, let sentAt, let held):
                if let held, held.expiresAt <= now {
                    fail(key, now: now, backoff: nil, effects: &effects)
                } else if sentAt + config.requestTimeout <= now {
                    counters.timeouts += 1
                    if var held {
                        // A renewal went unanswered: keep the reservation, try again after a backoff.
                        slots[key]?.failures += 1
                        held.renewAt = now + backoff(failures: slots[key]?.failures ?? 1)
                        slots[key]?.phase = .reserved(held)
                    } else {
                        fail(key, now: now, backoff: nil, effects: &effects)
                    }
                }
            case .reserved(let held):
                if held.expiresAt <= now {
                    fail(key, now: now, backoff: nil, effects: &effects)
                } else if held.renewAt <= now {
                    if slot.isConnected {
                        request(key, held: held, now: now, effects: &effects)
                    } else {
                        slots[key]?.phase = .connecting(since: now, held: held)
                    }
                }
            }
        }
        reconcile(now: now, effects: &effects)
        return effects
    }

    /// The earliest instant at which `tick` has work to do.
    public var nextDeadline: Instant? {
        var earliest: Instant?
        func consider(_ instant: Instant?) {
            guard let instant else { return }
            earliest = min(earliest ?? instant, instant)
        }
        for slot in slots.values {
            switch slot.phase {
            case .idle: consider(slot.retryAt)
            case .connecting(let since, let held):
                consider(since + config.connectTimeout)
                consider(held?.expiresAt)
            case .requesting(_, let sentAt, let held):
                consider(sentAt + config.requestTimeout)
                consider(held?.expiresAt)
            case .reserved(let held):
                consider(held.renewAt)
                consider(held.expiresAt)
            }
        }
        return earliest
    }

    /// Drops every reservation (the node is shutting down or stopped being NATed): `unreserve` to
    /// each connected relay that holds one, `.release` for all, and an empty relay list.
    public mutating func releaseAll(now: Instant) -> [RelayClientEffect] {
        var effects: [RelayClientEffect] = []
        for key in order {
            guard let slot = slots[key], slot.phase.isActive else { continue }
            if slot.phase.held != nil, slot.isConnected { effects.append(.send(.unreserve, to: key)) }
            effects.append(.release(slot.contact))
            slots[key]?.phase = .idle
        }
        order = order.filter { slots[$0]?.isCandidate ?? false }
        slots = slots.filter { $0.value.isCandidate }
        publishIfChanged(effects: &effects)
        return effects
    }

    // MARK: - Internals

    private mutating func request(_ relay: PublicKey, held: Held?, now: Instant, effects: inout [RelayClientEffect]) {
        let id = nextRequestID
        nextRequestID &+= 1
        if nextRequestID == 0 { nextRequestID = 1 }
        slots[relay]?.phase = .requesting(id: id, sentAt: now, held: held)
        counters.requestsSent += 1
        effects.append(.send(.reserve(requestID: id), to: relay))
    }

    private func backoff(failures: Int) -> Duration {
        var delay = config.retryBackoff
        for _ in 1..<max(1, min(failures, 32)) where delay < config.maximumRetryBackoff { delay = delay * 2 }
        return min(delay, config.maximumRetryBackoff)
    }

    /// The relay refused or failed: stop using it, back off, and let `reconcile` pick another.
    private mutating func fail(
        _ relay: PublicKey, now: Instant, backoff fixed: Duration?, effects: inout [RelayClientEffect]
    ) {
        guard var slot = slots[relay], slot.phase.isActive else { return }
        slot.failures += 1
        slot.retryAt = now + (fixed ?? backoff(failures: slot.failures))
        slot.phase = .idle
        counters.failovers += 1
        effects.append(.release(slot.contact))
        if slot.isCandidate {
            slots[relay] = slot
        } else {
            slots[relay] = nil
            order.removeAll { $0 == relay }
        }
    }

    /// Starts on more candidates until `desiredRelays` are in use, then announces the relay list
    /// if it changed.
    private mutating func reconcile(now: Instant, effects: inout [RelayClientEffect]) {
        var active = slots.values.count(where: { $0.phase.isActive })
        for key in order where active < config.desiredRelays {
            guard let slot = slots[key], slot.isCandidate, !slot.phase.isActive,
                slot.retryAt.map({ $0 <= now }) ?? true
            else { continue }
            slots[key]?.retryAt = nil
            active += 1
            if slot.isConnected {
                request(key, held: nil, now: now, effects: &effects)
            } else {
                slots[key]?.phase = .connecting(since: now, held: nil)
                effects.append(.connect(slot.contact))
            }
        }
        publishIfChanged(effects: &effects)
    }

    private mutating func publishIfChanged(effects: inout [RelayClientEffect]) {
        let current = order.compactMap { key in slots[key].flatMap { $0.phase.held != nil ? $0.contact : nil } }
        // Only a change of membership is announced (a reordering alone does not need a republish).
        guard Set(current) != Set(advertised) else { return }
        advertised = current
        effects.append(.relaysChanged(current))
    }
}
