// The relay side (a publicly reachable node started with `umbra up --relay`), as a pure state
// machine (DESIGN §4 "Relay"). NATed nodes hold reservations here; anyone connected may then open a
// circuit to a reserved node by sending `forward(to:)`. A circuit carries the two ends' own
// end-to-end session datagrams: the relay sees sizes, never content.
//
// Inputs: `handle(_:from:ipKey:now:isConnected:)` for every relay message from a peer,
// `peerLost(_:now:)` when a session ends, `tick(now:)` when `nextDeadline` passes.
// Outputs: `[RelayServerEffect]` (only sends).
//
// Rules:
// - one reservation per peer (a renewal refreshes it); caps in total, per IP key (an IPv4 address
//   or an IPv6 /64), per wide prefix (an IPv4 /24 or an IPv6 /48: `reservationPrefixShare` of the
//   total, so one operator's block cannot fill the relay) and, for loopback and private sources,
//   per socket (many nodes share 127.0.0.1 in tests; one process must not fill the relay with
//   fresh identities); reservation requests rate-limited per peer. A reservation outlives a disconnect (until its TTL) so a
//   restarted peer's state is not lost, but circuits only open to a peer that `isConnected`.
// - a circuit is a pair of peers; it opens on the first `forward` towards a reserved, connected
//   target, and then carries traffic both ways. Circuits opened from one source address (or
//   socket) and one wide prefix are capped at `circuitShares` of `maximumCircuits`. A `forward` to an unreserved peer without a
//   circuit is refused: no unsolicited traffic via the relay.
// - each circuit has a byte limit (both directions together), a duration limit and a token bucket;
//   crossing a limit closes that circuit alone and tells both ends. A datagram over the rate is
//   dropped (the sender hears `rateLimited` at most once per `rateLimitedNoticeInterval`).
//
// NOTE: a value type with no locks: the node layer calls it from one task.

import UmbraCore

public struct RelayServerConfig: Sendable {
    /// When false this node is not a relay: `reserve` is answered `notARelay`, `forward` `noReservation`.
    public var isEnabled = true
    public var maximumReservations = 128
    /// Most reservations whose holders share one IP key (nil keys are exempt), or one socket for
    /// loopback and private sources.
    public var maximumReservationsPerIP = 4
    /// The share of `maximumReservations` one wide prefix (IPv4 /24, IPv6 /48) may hold; never
    /// below `maximumReservationsPerIP`.
    public var reservationPrefixShare = 0.125
    /// The shares of `maximumCircuits` that circuits opened from one source address (or socket) and
    /// from one wide prefix may hold.
    public var circuitShares = SourceShares(addressShare: 0.125, prefixShare: 0.25)
    public var reservationTTL: Duration = .seconds(60 * 60)
    /// Most `reserve` requests one peer may send per minute (renewals included).
    public var reservationRequestsPerMinute = 6
    public var maximumCircuits = 256
    /// Most circuits one peer may be an end of.
    public var maximumCircuitsPerPeer = 16
    /// Most bytes (both directions) one circuit carries before it is cut.
    public var circuitByteLimit: UInt64 = 1 << 30
    /// Longest time one circuit stays open.
    public var circuitDurationLimit: Duration = .seconds(60 * 60)
    /// Forwarding rate of one circuit (both directions), bytes per second, and its burst.
    public var circuitBytesPerSecond: Double = 4 * 1024 * 1024
    public var circuitBurstBytes: Double = 1024 * 1024
    /// At most one `rateLimited` notice per circuit per this interval.
    public var rateLimitedNoticeInterval: Duration = .seconds(1)
    /// Peers whose reservation-request rate is tracked (the oldest window is evicted when full).
    public var maximumTrackedRequesters = 1024

    public init() {}

    /// The limits granted with a reservation, as sent in `reserveResult`.
    public var circuitLimits: CircuitLimits {
        CircuitLimits(
            bytes: circuitByteLimit, seconds: UInt32(clamping: circuitDurationLimit.nanosecondsClamped / 1_000_000_000))
    }
}

/// What the shell must do for the relay.
public enum RelayServerEffect: Equatable, Sendable {
    case send(RelayMessage, to: PublicKey)
}

/// A reservation, as shown by `umbra status`.
public struct RelayReservationInfo: Equatable, Sendable {
    public var peer: PublicKey
    public var ipKey: [UInt8]?
    public var createdAt: Instant
    public var expiresAt: Instant
}

/// A circuit, as shown by `umbra status`.
public struct RelayCircuitInfo: Equatable, Sendable {
    /// The end that opened the circuit, and the reserved end it was opened to.
    public var initiator: PublicKey
    public var target: PublicKey
    public var openedAt: Instant
    /// When the duration limit cuts it.
    public var closesAt: Instant
    /// Bytes and datagrams relayed so far, both directions.
    public var bytes: UInt64
    public var datagrams: UInt64
}

public struct RelayServerCounters: Equatable, Sendable {
    public var reservationsAccepted: UInt64 = 0
    public var reservationsRenewed: UInt64 = 0
    public var reservationsRefused: [ReservationStatus: UInt64] = [:]
    public var reservationsExpired: UInt64 = 0
    public var reservationsReleased: UInt64 = 0
    public var circuitsOpened: UInt64 = 0
    /// Circuits closed, by the code both ends were told.
    public var circuitsClosed: [CircuitCode: UInt64] = [:]
    /// `forward`s that were not relayed, by the code the sender was told (or would have been, for
    /// throttled `rateLimited` notices).
    public var forwardsRefused: [CircuitCode: UInt64] = [:]
    public var bytesRelayed: UInt64 = 0
    public var datagramsRelayed: UInt64 = 0
    /// Messages a relay does not take (results, deliveries, dial-back and punch messages).
    public var unexpectedMessages: UInt64 = 0
    public init() {}
}

public struct RelayServer: Sendable {
    public let config: RelayServerConfig
    public private(set) var counters = RelayServerCounters()

    private struct Reservation: Sendable {
        var ipKey: [UInt8]?
        /// The holder's source endpoint, when known (per-prefix and per-socket caps).
        var source: Endpoint?
        var createdAt: Instant
        var expiresAt: Instant
    }

    /// A circuit's two ends in a canonical order, so (A,B) and (B,A) are one circuit.
    private struct Pair: Hashable, Sendable {
        var low: PublicKey
        var high: PublicKey

        init(_ one: PublicKey, _ other: PublicKey) {
            if one.bytes.lexicographicallyPrecedes(other.bytes) {
                (low, high) = (one, other)
            } else {
                (low, high) = (other, one)
            }
        }

        func contains(_ key: PublicKey) -> Bool { low == key || high == key }
        func other(than key: PublicKey) -> PublicKey { low == key ? high : low }
    }

    private struct Circuit: Sendable {
        var initiator: PublicKey
        /// The initiator's source endpoint, when known (per-source circuit caps).
        var initiatorSource: Endpoint?
        var target: PublicKey
        var openedAt: Instant
        var closesAt: Instant
        var bytes: UInt64 = 0
        var datagrams: UInt64 = 0
        var bucket: TokenBucket
        var lastRateNotice: Instant?
    }

    private var reservationTable: [PublicKey: Reservation] = [:]
    private var circuitTable: [Pair: Circuit] = [:]
    private var requestLimiter: WindowRateLimiter<PublicKey>

    public init(config: RelayServerConfig = RelayServerConfig()) {
        self.config = config
        self.requestLimiter = WindowRateLimiter(
            limit: config.reservationRequestsPerMinute, window: .seconds(60), capacity: config.maximumTrackedRequesters)
    }

    // MARK: - Snapshots

    public var activeReservations: Int { reservationTable.count }
    public var activeCircuits: Int { circuitTable.count }

    /// Live reservations, ordered by expiry.
    public var reservations: [RelayReservationInfo] {
        reservationTable.map {
            RelayReservationInfo(
                peer: $0.key, ipKey: $0.value.ipKey, createdAt: $0.value.createdAt, expiresAt: $0.value.expiresAt)
        }
        .sorted {
            $0.expiresAt == $1.expiresAt
                ? $0.peer.bytes.lexicographicallyPrecedes($1.peer.bytes) : $0.expiresAt < $1.expiresAt
        }
    }

    /// Open circuits, ordered by opening time.
    public var circuits: [RelayCircuitInfo] {
        circuitTable.values.map {
            RelayCircuitInfo(
                initiator: $0.initiator, target: $0.target, openedAt: $0.openedAt, closesAt: $0.closesAt,
                bytes: $0.bytes, datagrams: $0.datagrams)
        }
        .sorted { $0.openedAt < $1.openedAt }
    }

    /// Whether `peer` holds a live reservation.
    public func hasReservation(_ peer: PublicKey, now: Instant) -> Bool {
        reservationTable[peer].map { $0.expiresAt > now } ?? false
    }

    /// The key used for the per-IP reservation cap: an IPv4 address, or an IPv6 /64; `nil` (exempt)
    /// for loopback, private, link-local and unspecified addresses (test ranges).
    public static func ipKey(for address: IPAddress) -> [UInt8]? {
        let address = address.unmapped
        guard !address.isLoopback, !address.isPrivate, !address.isLinkLocal, !address.isUnspecified else {
            return nil
        }
        switch address {
        case .v4: return address.bytes
        case .v6: return Array(address.bytes.prefix(8))
        }
    }

    // MARK: - Messages

    /// Handles a relay message from `peer` (authenticated by its session). `ipKey` is the per-IP
    /// cap key of the peer's source address (see `ipKey(for:)`); `source` that address itself (nil
    /// for a peer reached through a relay: it counts under no prefix); `isConnected` says whether the node
    /// currently has a session with a peer.
    public mutating func handle(
        _ message: RelayMessage, from peer: PublicKey, ipKey: [UInt8]?, source: Endpoint? = nil, now: Instant,
        isConnected: (PublicKey) -> Bool
    ) -> [RelayServerEffect] {
        var effects: [RelayServerEffect] = []
        switch message {
        case .reserve(let requestID):
            let status = reserve(peer, ipKey: ipKey, source: source, now: now)
            let granted = status == .ok
            effects.append(
                .send(
                    .reserveResult(
                        requestID: requestID, status: status,
                        ttlSeconds: granted
                            ? UInt32(clamping: config.reservationTTL.nanosecondsClamped / 1_000_000_000) : 0,
                        limits: granted ? config.circuitLimits : .none),
                    to: peer))
        case .unreserve:
            if reservationTable.removeValue(forKey: peer) != nil { counters.reservationsReleased += 1 }
        case .forward(let target, let bytes):
            forward(
                bytes, from: peer, source: source, to: target, now: now, isConnected: isConnected, effects: &effects)
        case .circuitStatus(let other, .closed):
            let pair = Pair(peer, other)
            if circuitTable[pair] != nil { close(pair, code: .closed, notifying: [other], effects: &effects) }
        case .circuitStatus, .reserveResult, .deliver, .dialBackRequest, .dialBackOrder, .dialBackProbe,
            .dialBackRefused, .punchConnect, .punchConnectReply, .punchSync, .relayAvailable:
            counters.unexpectedMessages += 1
        }
        return effects
    }

    /// The session with `peer` ended: every circuit it is an end of closes, and the other end hears
    /// `targetGone`. Its reservation stays until the TTL (it may come back), but no circuit opens
    /// to it while it is not connected.
    public mutating func peerLost(_ peer: PublicKey, now: Instant) -> [RelayServerEffect] {
        var effects: [RelayServerEffect] = []
        for pair in sortedPairs() where pair.contains(peer) {
            close(pair, code: .targetGone, notifying: [pair.other(than: peer)], effects: &effects)
        }
        return effects
    }

    // MARK: - Timers

    /// Expires reservations and cuts circuits at their duration limit.
    public mutating func tick(now: Instant) -> [RelayServerEffect] {
        var effects: [RelayServerEffect] = []
        for (peer, reservation) in reservationTable where reservation.expiresAt <= now {
            reservationTable[peer] = nil
            counters.reservationsExpired += 1
        }
        for pair in sortedPairs() where circuitTable[pair]!.closesAt <= now {
            close(pair, code: .overTimeLimit, notifying: [pair.low, pair.high], effects: &effects)
        }
        requestLimiter.prune(now: now)
        return effects
    }

    /// The earliest instant at which `tick` has work to do.
    public var nextDeadline: Instant? {
        let expiries = reservationTable.values.lazy.map(\.expiresAt).min()
        let cuts = circuitTable.values.lazy.map(\.closesAt).min()
        return [expiries, cuts].compactMap { $0 }.min()
    }

    // MARK: - Reservations

    private mutating func reserve(
        _ peer: PublicKey, ipKey: [UInt8]?, source: Endpoint?, now: Instant
    ) -> ReservationStatus {
        let status = admit(peer, ipKey: ipKey, source: source, now: now)
        guard status == .ok else {
            counters.reservationsRefused[status, default: 0] += 1
            return status
        }
        if let existing = reservationTable[peer], existing.expiresAt > now {
            reservationTable[peer] = Reservation(
                ipKey: ipKey, source: source, createdAt: existing.createdAt, expiresAt: now + config.reservationTTL)
            counters.reservationsRenewed += 1
        } else {
            reservationTable[peer] = Reservation(
                ipKey: ipKey, source: source, createdAt: now, expiresAt: now + config.reservationTTL)
            counters.reservationsAccepted += 1
        }
        return .ok
    }

    private mutating func admit(
        _ peer: PublicKey, ipKey: [UInt8]?, source: Endpoint?, now: Instant
    ) -> ReservationStatus {
        guard config.isEnabled else { return .notARelay }
        guard requestLimiter.allow(peer, now: now) else { return .refusedPerPeer }
        // Expired entries are not counted (tick may not have run yet).
        let live = reservationTable.filter { $0.key != peer && $0.value.expiresAt > now }
        if let ipKey, live.values.count(where: { $0.ipKey == ipKey }) >= config.maximumReservationsPerIP {
            return .refusedPerIP
        }
        if let source {
            let keys = SourcePrefix.keys(for: source)
            let holders = live.values.compactMap { $0.source.map(SourcePrefix.keys(for:)) }
            if case .socket = keys.address,
                holders.count(where: { $0.address == keys.address }) >= config.maximumReservationsPerIP
            {
                return .refusedPerIP
            }
            let prefixLimit = SourceShares(addressShare: 0, prefixShare: config.reservationPrefixShare)
                .prefixLimit(of: config.maximumReservations, floor: config.maximumReservationsPerIP)
            if let prefix = keys.prefix, holders.count(where: { $0.prefix == prefix }) >= prefixLimit {
                return .refusedPerIP
            }
        }
        guard live.count < config.maximumReservations else { return .refusedFull }
        if reservationTable.count >= config.maximumReservations {
            // Make room by dropping the expired ones tick has not removed yet.
            for (key, reservation) in reservationTable where reservation.expiresAt <= now {
                reservationTable[key] = nil
                counters.reservationsExpired += 1
            }
        }
        return .ok
    }

    // MARK: - Circuits

    private mutating func forward(
        _ bytes: [UInt8], from sender: PublicKey, source: Endpoint?, to target: PublicKey, now: Instant,
        isConnected: (PublicKey) -> Bool, effects: inout [RelayServerEffect]
    ) {
        func refuse(_ code: CircuitCode) {
            counters.forwardsRefused[code, default: 0] += 1
            effects.append(.send(.circuitStatus(peer: target, code: code), to: sender))
        }
        let pair = Pair(sender, target)
        if circuitTable[pair] == nil {
            guard sender != target, config.isEnabled, hasReservation(target, now: now) else {
                return refuse(.noReservation)
            }
            guard isConnected(target) else { return refuse(.targetGone) }
            guard circuitTable.count < config.maximumCircuits,
                circuitCount(of: sender) < config.maximumCircuitsPerPeer,
                circuitCount(of: target) < config.maximumCircuitsPerPeer
            else { return refuse(.tooManyCircuits) }
            if let source {
                let holders = circuitTable.values.lazy.compactMap(\.initiatorSource)
                guard config.circuitShares.admits(source, holders: holders, capacity: config.maximumCircuits) else {
                    return refuse(.tooManyCircuits)
                }
            }
            circuitTable[pair] = Circuit(
                initiator: sender, initiatorSource: source, target: target, openedAt: now,
                closesAt: now + config.circuitDurationLimit,
                bucket: TokenBucket(rate: config.circuitBytesPerSecond, burst: config.circuitBurstBytes, now: now))
            counters.circuitsOpened += 1
        } else if !isConnected(target) {
            counters.forwardsRefused[.targetGone, default: 0] += 1
            return close(pair, code: .targetGone, notifying: [sender], effects: &effects)
        }
        guard var circuit = circuitTable[pair] else { return }
        if circuit.closesAt <= now {
            counters.forwardsRefused[.overTimeLimit, default: 0] += 1
            return close(pair, code: .overTimeLimit, notifying: [sender, target], effects: &effects)
        }
        let (total, overflow) = circuit.bytes.addingReportingOverflow(UInt64(bytes.count))
        if overflow || total > config.circuitByteLimit {
            counters.forwardsRefused[.overByteLimit, default: 0] += 1
            return close(pair, code: .overByteLimit, notifying: [sender, target], effects: &effects)
        }
        guard circuit.bucket.take(Double(bytes.count), now: now) else {
            counters.forwardsRefused[.rateLimited, default: 0] += 1
            if circuit.lastRateNotice.map({ now >= $0 + config.rateLimitedNoticeInterval }) ?? true {
                circuit.lastRateNotice = now
                effects.append(.send(.circuitStatus(peer: target, code: .rateLimited), to: sender))
            }
            circuitTable[pair] = circuit
            return
        }
        circuit.bytes = total
        circuit.datagrams += 1
        circuitTable[pair] = circuit
        counters.bytesRelayed += UInt64(bytes.count)
        counters.datagramsRelayed += 1
        effects.append(.send(.deliver(peer: sender, bytes: bytes), to: target))
    }

    /// Removes a circuit and tells each of `notifying` (ends of it) that it closed with `code`.
    private mutating func close(
        _ pair: Pair, code: CircuitCode, notifying ends: [PublicKey], effects: inout [RelayServerEffect]
    ) {
        guard circuitTable.removeValue(forKey: pair) != nil else { return }
        counters.circuitsClosed[code, default: 0] += 1
        for end in ends where pair.contains(end) {
            effects.append(.send(.circuitStatus(peer: pair.other(than: end), code: code), to: end))
        }
    }

    private func circuitCount(of peer: PublicKey) -> Int {
        circuitTable.keys.count(where: { $0.contains(peer) })
    }

    /// Circuit keys in a fixed order, so effects come out deterministically.
    private func sortedPairs() -> [Pair] {
        circuitTable.keys.sorted {
            $0.low == $1.low
                ? $0.high.bytes.lexicographicallyPrecedes($1.high.bytes)
                : $0.low.bytes.lexicographicallyPrecedes($1.low.bytes)
        }
    }
}
