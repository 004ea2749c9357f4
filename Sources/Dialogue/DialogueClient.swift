// The consumer side of the dialogue (DESIGN §4 "Dialogue"), as a pure state machine: one client per
// session with one provider. It asks for a session, retransmits the request (after 1 s, then 2 s
// more: three tries) and gives up after `openTimeout`; once accepted it sends a keepalive every
// interval the provider granted, declares the provider dead after `deadAfterMissedKeepalives`
// silent intervals, reports the consumer's meters on demand, and closes with `end`.
//
// Inputs: `open(…)`, `handle(_:from:now:)` for dialogue messages from the provider, `close(now:)`,
// `reportStatus(_:now:)`, `markStage(_:at:)`, `tick(now:)` when `nextDeadline` passes.
// Outputs: `[DialogueClientEffect]`.
//
// Phases: idle → requesting → open → closed; requesting → closed on reject or timeout. An accept
// that arrives after the client gave up is answered with `end(consumerClosed)`, so the provider
// frees the address at once instead of waiting for the keepalive timeout.
//
// Stage timings: the node marks the stages it measures (lookup, dial, handshake) with `markStage`;
// the client records when the request went out and when the accept came in. `timings` gives each
// stage's instant relative to the start instant passed to `open`, for `umbra status`.

import UmbraCore

public struct DialogueClientConfig: Sendable {
    /// Delays before each retransmission of the request (their count + 1 is the number of tries).
    public var retransmitDelays: [Duration] = [.seconds(1), .seconds(2)]
    /// From the first request to giving up with `.timeout`.
    public var openTimeout: Duration = .seconds(5)
    /// The provider is dead when nothing was heard for this many keepalive intervals.
    public var deadAfterMissedKeepalives = 3
    /// Bounds on the keepalive interval a provider may grant (its value is clamped to them).
    public var minimumKeepaliveInterval: Duration = .seconds(1)
    public var maximumKeepaliveInterval: Duration = .seconds(60)
    public init() {}
}

/// Why a session could not be opened.
public enum DialogueFailure: Equatable, Sendable, CustomStringConvertible {
    /// The provider did not answer within `openTimeout`.
    case timeout
    /// The provider refused, with its code and reason.
    case rejected(RejectCode, reason: String)
    /// The node closed the client before an answer came.
    case cancelled

    public var description: String {
        switch self {
        case .timeout: "the provider did not answer the session request"
        case .rejected(let code, let reason):
            reason.isEmpty ? "rejected (\(code.rawValue)): \(code)" : "rejected (\(code.rawValue)): \(reason)"
        case .cancelled: "cancelled"
        }
    }
}

/// An open session, as the consumer's node configures its tunnel from it.
public struct ClientSession: Hashable, Sendable {
    public var provider: PublicKey
    public var requestID: UInt64
    public var sessionID: UInt64
    public var mode: TunnelMode
    public var grant: SessionGrant
    public var openedAt: Instant
    /// The keepalive interval in use (the grant's, clamped to the client's bounds).
    public var keepaliveInterval: Duration

    public init(
        provider: PublicKey, requestID: UInt64, sessionID: UInt64, mode: TunnelMode, grant: SessionGrant,
        openedAt: Instant, keepaliveInterval: Duration
    ) {
        self.provider = provider
        self.requestID = requestID
        self.sessionID = sessionID
        self.mode = mode
        self.grant = grant
        self.openedAt = openedAt
        self.keepaliveInterval = keepaliveInterval
    }
}

/// What the shell must do for a dialogue client.
public enum DialogueClientEffect: Equatable, Sendable {
    case send(DialogueMessage, to: PublicKey)
    /// The provider accepted: bring the tunnel up.
    case opened(ClientSession)
    /// The session could not be opened.
    case failed(DialogueFailure)
    /// The open session is over: bring the tunnel down.
    case ended(EndCode)
}

/// The steps of getting a session, in order. The node marks the first three.
public enum DialogueStage: Int, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    /// The provider's contact was found (DHT or proposal lookup).
    case lookup
    /// A path to the provider was up (direct, punched or relayed).
    case dial
    /// The end-to-end Noise handshake completed.
    case handshake
    /// The session request went out.
    case requestSent
    /// The accept came in.
    case accepted

    public static func < (lhs: DialogueStage, rhs: DialogueStage) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .lookup: "lookup"
        case .dial: "dial"
        case .handshake: "handshake"
        case .requestSent: "request sent"
        case .accepted: "session accepted"
        }
    }
}

/// When a stage was reached: `elapsed` since the start instant, `duration` since the previous
/// marked stage (or the start).
public struct StageTiming: Hashable, Sendable {
    public var stage: DialogueStage
    public var at: Instant
    public var elapsed: Duration
    public var duration: Duration
}

public enum DialogueClientPhase: Equatable, Sendable {
    case idle
    /// Waiting for an answer to the `attempt`-th request.
    case requesting(attempt: Int)
    case open(ClientSession)
    case closed
}

public struct DialogueClientCounters: Equatable, Sendable {
    public var requestsSent: UInt64 = 0
    public var keepalivesSent: UInt64 = 0
    public var keepalivesReceived: UInt64 = 0
    public var statusReportsSent: UInt64 = 0
    /// Accepts for a request already accepted (retransmission answered twice).
    public var duplicateAccepts: UInt64 = 0
    /// Accepts that came after the client gave up (answered with `end`).
    public var lateAccepts: UInt64 = 0
    /// Messages from another peer, for another request or session, or of a kind a client does not take.
    public var unexpectedMessages: UInt64 = 0
    public init() {}
}

public struct DialogueClient: Sendable {
    public let config: DialogueClientConfig
    public private(set) var counters = DialogueClientCounters()
    /// The provider this client talks to (set by `open`).
    public private(set) var provider: PublicKey?
    /// When the attempt started (the start of `timings`).
    public private(set) var startedAt: Instant?

    private struct Request: Sendable {
        var message: DialogueMessage
        var requestID: UInt64
        var mode: TunnelMode
        var attempt: Int
        var nextRetryAt: Instant?
        var deadline: Instant
    }

    private struct Live: Sendable {
        var session: ClientSession
        var lastHeard: Instant
        var nextKeepaliveAt: Instant
        var keepaliveSeq: UInt32 = 0
    }

    private enum State: Sendable {
        case idle
        case requesting(Request)
        case open(Live)
        /// Over; `requestID` is remembered to answer a late accept.
        case closed(requestID: UInt64?)
    }

    private var state = State.idle
    private var marks: [DialogueStage: Instant] = [:]

    public init(config: DialogueClientConfig = DialogueClientConfig()) {
        self.config = config
    }

    // MARK: - Snapshots

    public var phase: DialogueClientPhase {
        switch state {
        case .idle: .idle
        case .requesting(let request): .requesting(attempt: request.attempt)
        case .open(let live): .open(live.session)
        case .closed: .closed
        }
    }

    /// The open session, if any.
    public var session: ClientSession? {
        if case .open(let live) = state { return live.session }
        return nil
    }

    /// When the request was (first) sent and when the accept came in.
    public var requestSentAt: Instant? { marks[.requestSent] }
    public var acceptedAt: Instant? { marks[.accepted] }

    /// The marked stages in stage order, relative to `startedAt`.
    public var timings: [StageTiming] {
        guard let start = startedAt else { return [] }
        var previous = start
        return DialogueStage.allCases.compactMap { stage in
            guard let at = marks[stage] else { return nil }
            defer { previous = max(previous, at) }
            return StageTiming(stage: stage, at: at, elapsed: at.since(start), duration: at.since(previous))
        }
    }

    // MARK: - Inputs

    /// Records when a stage the node measures was reached (the first mark of a stage wins).
    public mutating func markStage(_ stage: DialogueStage, at instant: Instant) {
        if marks[stage] == nil { marks[stage] = instant }
    }

    /// Asks `provider` for a session. `startedAt` is when the node began (before lookup); it
    /// defaults to `now`. Does nothing unless the client is idle.
    public mutating func open(
        provider: PublicKey, serviceType: String, proposalSeq: UInt64, mode: TunnelMode, wantsIPv6: Bool = false,
        startedAt: Instant? = nil, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [DialogueClientEffect] {
        guard case .idle = state else { return [] }
        precondition(DialogueMessage.isValidServiceType(serviceType), "an invalid service type")
        self.provider = provider
        self.startedAt = startedAt ?? now
        let requestID = rng.next()
        let message = DialogueMessage.request(
            requestID: requestID, serviceType: serviceType, proposalSeq: proposalSeq, mode: mode,
            wantsIPv6: wantsIPv6)
        state = .requesting(
            Request(
                message: message, requestID: requestID, mode: mode, attempt: 1,
                nextRetryAt: config.retransmitDelays.first.map { now + $0 }, deadline: now + config.openTimeout))
        markStage(.requestSent, at: now)
        counters.requestsSent += 1
        return [.send(message, to: provider)]
    }

    /// Handles a dialogue message from `peer`.
    public mutating func handle(
        _ message: DialogueMessage, from peer: PublicKey, now: Instant
    ) -> [DialogueClientEffect] {
        guard peer == provider else {
            counters.unexpectedMessages += 1
            return []
        }
        switch (state, message) {
        case (.requesting(let request), .accept(let requestID, let sessionID, let grant))
        where requestID == request.requestID:
            let interval = min(
                max(.seconds(Int(grant.keepaliveSeconds)), config.minimumKeepaliveInterval),
                config.maximumKeepaliveInterval)
            let session = ClientSession(
                provider: peer, requestID: requestID, sessionID: sessionID, mode: request.mode, grant: grant,
                openedAt: now, keepaliveInterval: interval)
            state = .open(Live(session: session, lastHeard: now, nextKeepaliveAt: now + interval))
            markStage(.accepted, at: now)
            return [.opened(session)]
        case (.requesting(let request), .reject(let requestID, let code, let reason))
        where requestID == request.requestID:
            state = .closed(requestID: requestID)
            return [.failed(.rejected(code, reason: reason))]
        case (.open(let live), .accept(let requestID, let sessionID, _))
        where requestID == live.session.requestID && sessionID == live.session.sessionID:
            counters.duplicateAccepts += 1
            return []
        case (.closed(let closedID), .accept(let requestID, let sessionID, _)) where requestID == closedID:
            counters.lateAccepts += 1
            return [.send(.end(sessionID: sessionID, code: .consumerClosed), to: peer)]
        case (.open(var live), .keepalive(let sessionID, _)) where sessionID == live.session.sessionID:
            live.lastHeard = now
            state = .open(live)
            counters.keepalivesReceived += 1
            return []
        case (.open(let live), .end(let sessionID, let code)) where sessionID == live.session.sessionID:
            state = .closed(requestID: live.session.requestID)
            return [.ended(code)]
        default:
            counters.unexpectedMessages += 1
            return []
        }
    }

    /// Closes the session (telling the provider), or gives up on a pending request.
    public mutating func close(now: Instant) -> [DialogueClientEffect] {
        switch state {
        case .idle:
            state = .closed(requestID: nil)
            return []
        case .requesting(let request):
            state = .closed(requestID: request.requestID)
            return [.failed(.cancelled)]
        case .open(let live):
            state = .closed(requestID: live.session.requestID)
            return [
                .send(.end(sessionID: live.session.sessionID, code: .consumerClosed), to: live.session.provider),
                .ended(.consumerClosed),
            ]
        case .closed:
            return []
        }
    }

    /// Sends the consumer's meters to the provider (only while open).
    public mutating func reportStatus(_ report: StatusReport, now: Instant) -> [DialogueClientEffect] {
        guard case .open(let live) = state else { return [] }
        counters.statusReportsSent += 1
        return [.send(.status(sessionID: live.session.sessionID, report: report), to: live.session.provider)]
    }

    // MARK: - Timers

    /// Retransmits or gives up a request; sends a due keepalive or declares the provider dead.
    public mutating func tick(now: Instant) -> [DialogueClientEffect] {
        switch state {
        case .idle, .closed:
            return []
        case .requesting(var request):
            guard let provider else { return [] }
            if now >= request.deadline {
                state = .closed(requestID: request.requestID)
                return [.failed(.timeout)]
            }
            guard let retryAt = request.nextRetryAt, now >= retryAt else { return [] }
            request.attempt += 1
            let delays = config.retransmitDelays
            request.nextRetryAt = request.attempt <= delays.count ? now + delays[request.attempt - 1] : nil
            state = .requesting(request)
            counters.requestsSent += 1
            return [.send(request.message, to: provider)]
        case .open(var live):
            let interval = live.session.keepaliveInterval
            if now >= live.lastHeard + interval * max(1, config.deadAfterMissedKeepalives) {
                state = .closed(requestID: live.session.requestID)
                return [
                    .send(.end(sessionID: live.session.sessionID, code: .dead), to: live.session.provider),
                    .ended(.dead),
                ]
            }
            guard now >= live.nextKeepaliveAt else { return [] }
            let message = DialogueMessage.keepalive(sessionID: live.session.sessionID, seq: live.keepaliveSeq)
            live.keepaliveSeq &+= 1
            live.nextKeepaliveAt = now + interval
            state = .open(live)
            counters.keepalivesSent += 1
            return [.send(message, to: live.session.provider)]
        }
    }

    /// The earliest instant at which `tick` has work to do.
    public var nextDeadline: Instant? {
        switch state {
        case .idle, .closed:
            return nil
        case .requesting(let request):
            return request.nextRetryAt.map { min($0, request.deadline) } ?? request.deadline
        case .open(let live):
            let dead = live.lastHeard + live.session.keepaliveInterval * max(1, config.deadAfterMissedKeepalives)
            return min(live.nextKeepaliveAt, dead)
        }
    }
}
