// The provider side of the dialogue (DESIGN §4 "Dialogue"), as a pure state machine. Consumers ask
// for a session; the server admits them against its terms (service type, tunnel mode, proposal
// seq, access policy, capacity, the address pool, a per-consumer request rate), hands each admitted
// consumer one inner address, keeps every session alive with keepalives and accounts its bytes.
//
// Inputs: `handle(_:from:now:rng:)` for every dialogue message from a consumer (identified by the
// public key of its end-to-end session), `account(_:bytesIn:bytesOut:now:)` from the data plane,
// `end(_:code:now:)` and `endAll(code:now:)` from the node, `tick(now:)` when `nextDeadline` passes.
// Outputs: `[DialogueServerEffect]`: sends, and sessions opened and ended (the node configures and
// tears down the tunnel for them).
//
// Rules:
// - one session per consumer. A request repeating the requestID of the consumer's live session is
//   answered with the same accept (the first may have been lost); a new requestID replaces the
//   session (the old one ends `consumerClosed`; the consumer usually gets its address back).
// - admission order: shutting down, request rate, access policy, service type, mode, proposal seq,
//   capacity, the source's share of it, pool. The first failing check is the reject code.
// - one source may hold at most `sourceShares` of the capacity: per address (IPv4 /32, IPv6 /64)
//   and per wide prefix (IPv4 /24, IPv6 /48), so one host with free identities cannot book the
//   whole provider (issue #12.5); beyond its share it hears `noCapacity`. Loopback and private
//   sources (tests, demos, namespaces: many nodes on 127.0.0.1) count per socket instead; relayed
//   consumers (address unknown) are not counted until bonds make admission stake-weighted.
// - both ends send a keepalive every interval; any message for a session counts as hearing from it;
//   a session silent for `deadAfterMissedKeepalives` intervals ends `dead` (the consumer is told,
//   in case only one direction failed). A keepalive or status for a session the server does not
//   know is answered `end(providerClosed)`, so a consumer of a restarted provider learns at once.
// - optional per-session byte and time limits end a session `overLimit`.
//
// NOTE: a value type with no locks: the node layer calls it from one task.

import UmbraCore

/// Who may open sessions.
public enum AccessPolicy: Hashable, Sendable {
    case open
    /// Only these consumer keys.
    case allowList(Set<PublicKey>)

    public func admits(_ consumer: PublicKey) -> Bool {
        switch self {
        case .open: true
        case .allowList(let keys): keys.contains(consumer)
        }
    }
}

public struct DialogueServerConfig: Sendable {
    /// The only service type this provider answers.
    public var serviceType = "ip-tunnel"
    /// Most live sessions (the proposal's capacity).
    public var capacity = 64
    /// The shares of `capacity` one source address (or socket) and one wide prefix may hold.
    public var sourceShares = SourceShares(addressShare: 0.25, prefixShare: 0.5)
    public var accessPolicy = AccessPolicy.open
    /// The inner IPv4 block; its first usable address is the provider's.
    public var pool = IPv4Network.defaultPool
    /// Resolvers handed to consumers (at most 4; extra ones are not sent).
    public var dnsServers: [IPAddress] = [.v4(0x0101_0101), .v4(0x0909_0909)]
    public var mtu: UInt16 = 1420
    public var keepaliveInterval: Duration = .seconds(5)
    /// A session is dead when nothing was heard for this many keepalive intervals.
    public var deadAfterMissedKeepalives = 3
    public var supportedModes: Set<TunnelMode> = [.fullTunnel, .split]
    /// Most session requests one consumer may send per minute (retransmissions included).
    public var requestsPerMinute = 20
    /// Consumers whose request rate is tracked (the oldest window is evicted when full).
    public var maximumTrackedConsumers = 1024
    /// Requests naming a proposal seq below this are refused `outdatedProposal`. The node raises it
    /// when the provider's terms change.
    public var minimumProposalSeq: UInt64 = 0
    /// Optional per-session limits: bytes in both directions, and duration. Crossing one ends the
    /// session `overLimit`.
    public var sessionByteLimit: UInt64?
    public var sessionDurationLimit: Duration?

    public init() {}

    /// The keepalive interval in whole seconds, as sent in `accept` (at least 1).
    public var keepaliveSeconds: UInt16 {
        UInt16(clamping: max(1, keepaliveInterval.nanosecondsClamped / 1_000_000_000))
    }

    /// How long a session may stay silent.
    public var deadAfter: Duration { .seconds(Int(keepaliveSeconds) * max(1, deadAfterMissedKeepalives)) }
}

/// A live session, as shown by `umbra status` and billed by the payments layer.
public struct ServerSession: Hashable, Sendable {
    public var consumer: PublicKey
    /// Where the consumer's session came from when it was admitted (nil: relayed, or unknown).
    public var source: Endpoint?
    public var sessionID: UInt64
    public var requestID: UInt64
    public var mode: TunnelMode
    /// The consumer's inner address (with the pool's prefix length).
    public var innerIPv4: InterfaceAddress
    public var openedAt: Instant
    public var lastHeard: Instant
    /// Bytes the data plane accounted: from the consumer (`bytesIn`) and to it (`bytesOut`).
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    /// The consumer's latest `status` report.
    public var lastReport: StatusReport?

    /// The consumer's inner address.
    public var address: IPAddress { innerIPv4.address }
}

/// What the shell must do for the dialogue server.
public enum DialogueServerEffect: Equatable, Sendable {
    case send(DialogueMessage, to: PublicKey)
    /// A session was admitted: route its inner address to the consumer.
    case sessionOpened(ServerSession)
    /// A session is over: stop routing its address (already released in the pool).
    case sessionEnded(ServerSession, EndCode)
}

public struct DialogueServerCounters: Equatable, Sendable {
    public var requests: UInt64 = 0
    public var accepted: UInt64 = 0
    /// Accepts sent again for a retransmitted request.
    public var acceptsRepeated: UInt64 = 0
    public var rejected: [RejectCode: UInt64] = [:]
    /// Of the `noCapacity` rejections, those for a source over its share (the provider had room).
    public var rejectedOverSourceShare: UInt64 = 0
    public var ended: [EndCode: UInt64] = [:]
    public var keepalivesSent: UInt64 = 0
    public var keepalivesReceived: UInt64 = 0
    public var statusReports: UInt64 = 0
    /// Keepalives, status reports and ends naming a session this consumer does not hold.
    public var unknownSessions: UInt64 = 0
    /// Messages a server does not take (accept, reject).
    public var unexpectedMessages: UInt64 = 0
    public init() {}
}

public struct DialogueServer: Sendable {
    public let config: DialogueServerConfig
    public private(set) var counters = DialogueServerCounters()
    /// True after `endAll(code: .shuttingDown, …)`: every request is refused `shuttingDown`.
    public private(set) var isShuttingDown = false

    private struct Entry: Sendable {
        var session: ServerSession
        var grant: SessionGrant
        var nextKeepaliveAt: Instant
        var keepaliveSeq: UInt32 = 0
    }

    private var table: [PublicKey: Entry] = [:]
    private var consumerBySession: [UInt64: PublicKey] = [:]
    private var pool: AddressPool
    private var limiter: WindowRateLimiter<PublicKey>

    public init(config: DialogueServerConfig = DialogueServerConfig()) {
        self.config = config
        self.pool = AddressPool(network: config.pool)
        self.limiter = WindowRateLimiter(
            limit: config.requestsPerMinute, window: .seconds(60), capacity: config.maximumTrackedConsumers)
    }

    // MARK: - Snapshots

    /// Live sessions, ordered by opening time (then session id).
    public var sessions: [ServerSession] {
        table.values.map(\.session).sorted {
            $0.openedAt == $1.openedAt ? $0.sessionID < $1.sessionID : $0.openedAt < $1.openedAt
        }
    }

    public var activeSessions: Int { table.count }
    /// The provider's own inner address.
    public var gateway: IPAddress { pool.gateway }
    public var addressesInUse: Int { pool.count }

    public func session(of consumer: PublicKey) -> ServerSession? { table[consumer]?.session }

    public func session(id sessionID: UInt64) -> ServerSession? {
        consumerBySession[sessionID].flatMap { table[$0]?.session }
    }

    /// The session holding inner address `address` (for the data plane's anti-spoofing check).
    public func session(at address: IPAddress) -> ServerSession? {
        pool.holder(of: address).flatMap { table[$0]?.session }
    }

    // MARK: - Messages

    /// Handles a dialogue message from `consumer` (authenticated by its session). `source` is the
    /// address its session comes from (nil when relayed): requests count against its share.
    public mutating func handle(
        _ message: DialogueMessage, from consumer: PublicKey, source: Endpoint? = nil, now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> [DialogueServerEffect] {
        var effects: [DialogueServerEffect] = []
        switch message {
        case .request(let requestID, let serviceType, let proposalSeq, let mode, _):
            counters.requests += 1
            if var entry = table[consumer], entry.session.requestID == requestID {
                entry.session.lastHeard = now
                table[consumer] = entry
                counters.acceptsRepeated += 1
                effects.append(
                    .send(
                        .accept(requestID: requestID, sessionID: entry.session.sessionID, grant: entry.grant),
                        to: consumer))
                return effects
            }
            if let code = refusal(
                consumer, source: source, serviceType: serviceType, proposalSeq: proposalSeq, mode: mode, now: now)
            {
                reject(requestID, code, to: consumer, effects: &effects)
                return effects
            }
            if table[consumer] != nil {
                endSession(of: consumer, code: .consumerClosed, notify: false, effects: &effects)
            }
            open(
                requestID: requestID, mode: mode, for: consumer, source: source, now: now, rng: &rng, effects: &effects)
        case .keepalive(let sessionID, _):
            guard heard(sessionID, from: consumer, now: now, effects: &effects) else { break }
            counters.keepalivesReceived += 1
        case .status(let sessionID, let report):
            guard heard(sessionID, from: consumer, now: now, effects: &effects) else { break }
            counters.statusReports += 1
            table[consumer]?.session.lastReport = report
        case .end(let sessionID, let code):
            guard table[consumer]?.session.sessionID == sessionID else {
                counters.unknownSessions += 1
                break
            }
            endSession(of: consumer, code: code, notify: false, effects: &effects)
        case .accept, .reject:
            counters.unexpectedMessages += 1
        }
        return effects
    }

    /// Adds data-plane bytes to a session (`bytesIn` from the consumer, `bytesOut` to it). Ends the
    /// session `overLimit` when it crosses `sessionByteLimit`.
    public mutating func account(
        _ sessionID: UInt64, bytesIn: UInt64, bytesOut: UInt64, now: Instant
    ) -> [DialogueServerEffect] {
        guard let consumer = consumerBySession[sessionID], var entry = table[consumer] else { return [] }
        entry.session.bytesIn =
            entry.session.bytesIn.addingReportingOverflow(bytesIn).overflow
            ? .max : entry.session.bytesIn + bytesIn
        entry.session.bytesOut =
            entry.session.bytesOut.addingReportingOverflow(bytesOut).overflow
            ? .max : entry.session.bytesOut + bytesOut
        table[consumer] = entry
        var effects: [DialogueServerEffect] = []
        if let limit = config.sessionByteLimit {
            let (total, overflow) = entry.session.bytesIn.addingReportingOverflow(entry.session.bytesOut)
            if overflow || total > limit { endSession(of: consumer, code: .overLimit, notify: true, effects: &effects) }
        }
        return effects
    }

    /// Ends one session from the provider side (the consumer is told `code`).
    public mutating func end(
        _ sessionID: UInt64, code: EndCode = .providerClosed, now: Instant
    ) -> [DialogueServerEffect] {
        guard let consumer = consumerBySession[sessionID] else { return [] }
        var effects: [DialogueServerEffect] = []
        endSession(of: consumer, code: code, notify: true, effects: &effects)
        return effects
    }

    /// Ends every session (each consumer is told `code`). With `.shuttingDown` the server also
    /// refuses every later request.
    public mutating func endAll(code: EndCode, now: Instant) -> [DialogueServerEffect] {
        if code == .shuttingDown { isShuttingDown = true }
        var effects: [DialogueServerEffect] = []
        for session in sessions { endSession(of: session.consumer, code: code, notify: true, effects: &effects) }
        return effects
    }

    // MARK: - Timers

    /// Ends silent and over-time sessions, and sends the keepalives that are due.
    public mutating func tick(now: Instant) -> [DialogueServerEffect] {
        var effects: [DialogueServerEffect] = []
        for session in sessions {
            guard var entry = table[session.consumer] else { continue }
            if now >= entry.session.lastHeard + config.deadAfter {
                endSession(of: session.consumer, code: .dead, notify: true, effects: &effects)
                continue
            }
            if let limit = config.sessionDurationLimit, now >= entry.session.openedAt + limit {
                endSession(of: session.consumer, code: .overLimit, notify: true, effects: &effects)
                continue
            }
            if now >= entry.nextKeepaliveAt {
                effects.append(
                    .send(.keepalive(sessionID: session.sessionID, seq: entry.keepaliveSeq), to: session.consumer))
                entry.keepaliveSeq &+= 1
                entry.nextKeepaliveAt = now + config.keepaliveInterval
                counters.keepalivesSent += 1
                table[session.consumer] = entry
            }
        }
        limiter.prune(now: now)
        return effects
    }

    /// The earliest instant at which `tick` has work to do.
    public var nextDeadline: Instant? {
        table.values.lazy.map { entry in
            var deadline = min(entry.nextKeepaliveAt, entry.session.lastHeard + self.config.deadAfter)
            if let limit = self.config.sessionDurationLimit { deadline = min(deadline, entry.session.openedAt + limit) }
            return deadline
        }.min()
    }

    // MARK: - Admission

    private mutating func refusal(
        _ consumer: PublicKey, source: Endpoint?, serviceType: String, proposalSeq: UInt64, mode: TunnelMode,
        now: Instant
    ) -> RejectCode? {
        if isShuttingDown { return .shuttingDown }
        guard limiter.allow(consumer, now: now) else { return .rateLimited }
        guard config.accessPolicy.admits(consumer) else { return .notAllowed }
        guard serviceType == config.serviceType else { return .unknownService }
        guard config.supportedModes.contains(mode) else { return .unsupportedMode }
        guard proposalSeq >= config.minimumProposalSeq else { return .outdatedProposal }
        // The consumer's own session is replaced, so it does not count against the capacity.
        let others = table.count - (table[consumer] == nil ? 0 : 1)
        guard others < config.capacity else { return .noCapacity }
        if let source {
            let holders = table.values.lazy.filter { $0.session.consumer != consumer }.compactMap(\.session.source)
            guard config.sourceShares.admits(source, holders: holders, capacity: config.capacity) else {
                counters.rejectedOverSourceShare += 1
                return .noCapacity
            }
        }
        if table[consumer] == nil, pool.count >= pool.capacity { return .poolExhausted }
        return nil
    }

    private mutating func reject(
        _ requestID: UInt64, _ code: RejectCode, to consumer: PublicKey, effects: inout [DialogueServerEffect]
    ) {
        counters.rejected[code, default: 0] += 1
        let reason = DialogueMessage.truncatedReason(code.description)
        effects.append(.send(.reject(requestID: requestID, code: code, reason: reason), to: consumer))
    }

    private mutating func open(
        requestID: UInt64, mode: TunnelMode, for consumer: PublicKey, source: Endpoint?, now: Instant,
        rng: inout some RandomNumberGenerator, effects: inout [DialogueServerEffect]
    ) {
        guard let address = pool.allocate(for: consumer) else {
            return reject(requestID, .poolExhausted, to: consumer, effects: &effects)
        }
        var sessionID = rng.next()
        while sessionID == 0 || consumerBySession[sessionID] != nil { sessionID = rng.next() }
        let inner = InterfaceAddress(address: address, prefixLength: config.pool.prefixLength)
        let grant = SessionGrant(
            innerIPv4: inner, innerIPv6: nil, gateway: pool.gateway,
            dnsServers: Array(config.dnsServers.prefix(DialogueMessage.maximumDNSServers)),
            mtu: max(DialogueMessage.minimumMTU, config.mtu), keepaliveSeconds: config.keepaliveSeconds)
        let session = ServerSession(
            consumer: consumer, source: source, sessionID: sessionID, requestID: requestID, mode: mode,
            innerIPv4: inner,
            openedAt: now, lastHeard: now)
        table[consumer] = Entry(session: session, grant: grant, nextKeepaliveAt: now + config.keepaliveInterval)
        consumerBySession[sessionID] = consumer
        counters.accepted += 1
        effects.append(.send(.accept(requestID: requestID, sessionID: sessionID, grant: grant), to: consumer))
        effects.append(.sessionOpened(session))
    }

    // MARK: - Sessions

    /// Marks `sessionID` heard from `consumer`; a session the consumer does not hold is answered
    /// `end(providerClosed)` and returns false.
    private mutating func heard(
        _ sessionID: UInt64, from consumer: PublicKey, now: Instant, effects: inout [DialogueServerEffect]
    ) -> Bool {
        guard table[consumer]?.session.sessionID == sessionID else {
            counters.unknownSessions += 1
            effects.append(.send(.end(sessionID: sessionID, code: .providerClosed), to: consumer))
            return false
        }
        table[consumer]?.session.lastHeard = now
        return true
    }

    private mutating func endSession(
        of consumer: PublicKey, code: EndCode, notify: Bool, effects: inout [DialogueServerEffect]
    ) {
        guard let entry = table.removeValue(forKey: consumer) else { return }
        consumerBySession[entry.session.sessionID] = nil
        pool.release(consumer)
        counters.ended[code, default: 0] += 1
        if notify { effects.append(.send(.end(sessionID: entry.session.sessionID, code: code), to: consumer)) }
        effects.append(.sessionEnded(entry.session, code))
    }
}
