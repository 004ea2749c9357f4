// The requester side of the join sync: a pure state machine that fetches the live proposal set from a
// few peers in parallel (DESIGN §4: a joining node must hold ≥ 99 % of it within 3 s over 20–200 ms
// links with loss, so there is no page-per-round-trip pagination).
//
// 1. `start` splits the key space into `rangesPerPeer` ranges per peer (over up to `maximumPeers`
//    peers) and sends one request per range; each is answered by a burst of up to 256 pages.
// 2. Every page adds its declared range to `coverage` (exact, a `KeyRangeSet`) and hands its items
//    to the caller, which verifies and stores them.
// 3. When a request's last page arrives, the parts of its range still uncovered (lost pages, or where
//    the responder's page cap stopped it) are asked for again at once.
// 4. A request with no page for 2× the peer's RTT (300 ms...3 s) times out: its uncovered parts go to
//    another peer when there is one. A range that times out `maximumAttempts` times in a row with no
//    page at all is abandoned.
// Every table is capped: requests in flight, requests in all, queued ranges, coverage ranges.

import UmbraCore

/// The knobs of a `ProposalSyncClient`.
public struct ProposalSyncConfig: Sendable {
    /// Peers the key space is first split over; further peers given to `start` are kept in reserve.
    public var maximumPeers = 4
    public var rangesPerPeer = 4
    /// Asked for in each request (the responder caps it at `ProposalStore.maximumPagesPerRequest`).
    public var maxPagesPerRequest: UInt16 = 256
    public var maximumOutstanding = 32
    /// Requests in all over one sync.
    public var maximumRequests = 4096
    /// Consecutive timeouts with no page before a range is abandoned.
    public var maximumAttempts = 8
    /// The timeout before any RTT is known.
    public var initialTimeout: Duration = .seconds(1)
    public var minimumTimeout: Duration = .milliseconds(300)
    public var maximumTimeout: Duration = .seconds(3)
    /// Peers known (given to `start` and `addPeers`).
    public var maximumKnownPeers = 16
    /// Ranges waiting for a free request slot; more are found again by a rescan of the coverage.
    public var maximumPending = 4096
    /// Disjoint ranges in `coverage`; a page that would need more is used but not recorded.
    public var maximumCoverageRanges = 8192

    public init() {}
}

/// What the sync client asks its shell to do.
public enum SyncEffect: Equatable, Sendable {
    case send(ProposalSyncMessage, to: PublicKey)
}

/// Fetches the live proposal set from peers. NOTE: a value type driven by one caller at a time.
public struct ProposalSyncClient: Sendable {
    public enum Phase: Equatable, Sendable {
        case idle
        case syncing
        /// The whole key space is covered.
        case complete
        /// Some ranges could not be fetched (no usable peer, attempts or request budget exhausted).
        case gaveUp
    }

    public struct Counters: Equatable, Sendable {
        public var requestsSent: UInt64 = 0
        public var pagesReceived: UInt64 = 0
        public var itemsReceived: UInt64 = 0
        public var timeouts: UInt64 = 0
        /// Pages for an unknown request, or from a peer other than the one asked; and requests.
        public var unexpectedMessages: UInt64 = 0
        /// Pages declaring a range outside their request's.
        public var invalidPages: UInt64 = 0
        /// Pages whose range could not be recorded (coverage at its cap).
        public var unrecordedPages: UInt64 = 0
        public var abandonedRanges: UInt64 = 0

        public init() {}
    }

    struct Request: Sendable {
        var peer: PublicKey
        var range: KeyRange
        var attempt: Int
        var sentAt: Instant
        var lastActivity: Instant
        var pages = 0
        var isOutstanding = true
    }

    struct Pending: Sendable {
        var range: KeyRange
        var attempt: Int
        /// A peer that just failed this range, avoided when another is usable.
        var avoid: PublicKey?
    }

    struct Peer: Sendable {
        var order: Int
        var isLost = false
        var smoothedRTT: Duration?
        /// Timeouts without a page since this peer's last page.
        var failures = 0
        var outstanding = 0
    }

    public let config: ProposalSyncConfig
    public private(set) var phase: Phase = .idle
    /// The key ranges whose live entries have been received.
    public private(set) var coverage = KeyRangeSet()
    public private(set) var counters = Counters()

    /// `coverage` plus the abandoned ranges: what is not asked for again.
    private var settled = KeyRangeSet()
    private var peers: [PublicKey: Peer] = [:]
    /// Every request of this sync (at most `maximumRequests`), so late pages still count.
    private var requests: [UInt32: Request] = [:]
    private var outstanding: [UInt32] = []
    private var pending: [Pending] = []
    private var pendingHead = 0
    private var nextRequestID: UInt32 = 0

    public init(config: ProposalSyncConfig = .init()) {
        self.config = config
    }

    public var isComplete: Bool { phase == .complete }
    /// Complete, or given up: nothing more will be sent until `addPeers`.
    public var isFinished: Bool { phase == .complete || phase == .gaveUp }
    public var outstandingRequests: Int { outstanding.count }

    // MARK: Events

    /// Starts (or restarts) a sync from `peers`, in an order shuffled by `rng`.
    public mutating func start(
        peers candidates: [PublicKey], now: Instant, rng: inout some RandomNumberGenerator
    ) -> [SyncEffect] {
        let config = self.config
        self = ProposalSyncClient(config: config)
        phase = .syncing
        nextRequestID = UInt32(truncatingIfNeeded: rng.next())
        var known: [PublicKey] = []
        for peer in candidates.shuffled(using: &rng)
        where !known.contains(peer) && known.count < config.maximumKnownPeers {
            known.append(peer)
        }
        for (order, peer) in known.enumerated() { peers[peer] = Peer(order: order) }
        let active = max(1, min(known.count, config.maximumPeers))
        for range in KeyRange.splitting(into: active * max(1, config.rangesPerPeer)) {
            pending.append(Pending(range: range, attempt: 1, avoid: nil))
        }
        return dispatch(now: now)
    }

    /// A message from `peer`. Returns the items of an expected page (signed proposal bytes for the
    /// caller to verify and insert) and what to send next.
    public mutating func handle(
        _ message: ProposalSyncMessage, from peer: PublicKey, now: Instant
    ) -> (items: [[UInt8]], effects: [SyncEffect]) {
        guard case .page(let page) = message, var request = requests[page.requestID], request.peer == peer else {
            counters.unexpectedMessages += 1
            return ([], [])
        }
        guard request.range.contains(page.covered) else {
            counters.invalidPages += 1
            return ([], [])
        }
        counters.pagesReceived += 1
        counters.itemsReceived += UInt64(page.items.count)
        if coverage.insert(page.covered, limit: config.maximumCoverageRanges) {
            settled.insert(page.covered)
        } else {
            counters.unrecordedPages += 1
        }

        var effects: [SyncEffect] = []
        if request.isOutstanding {
            if request.pages == 0 { recordRTT(now.since(request.sentAt), of: peer) }
            request.pages += 1
            request.lastActivity = now
            peers[peer]?.failures = 0
            requests[page.requestID] = request
            if page.isLast { finish(page.requestID, nextAttempt: 1, avoid: nil) }
        }
        if phase == .syncing { effects = dispatch(now: now) }
        return (page.items, effects)
    }

    /// Times out requests whose deadline has passed and asks again for what they left uncovered.
    public mutating func tick(now: Instant) -> [SyncEffect] {
        guard phase == .syncing else { return [] }
        for id in outstanding {
            guard let request = requests[id], deadline(of: request) <= now else { continue }
            counters.timeouts += 1
            if request.pages == 0 {
                peers[request.peer]?.failures += 1
                finish(id, nextAttempt: request.attempt + 1, avoid: request.peer)
            } else {
                finish(id, nextAttempt: 1, avoid: request.peer)
            }
        }
        return dispatch(now: now)
    }

    /// `peer` is gone (its session closed): its requests go to other peers, with no attempt charged.
    public mutating func peerLost(_ peer: PublicKey, now: Instant) -> [SyncEffect] {
        guard peers[peer] != nil else { return [] }
        peers[peer]?.isLost = true
        for id in outstanding {
            guard let request = requests[id], request.peer == peer else { continue }
            finish(id, nextAttempt: request.attempt, avoid: peer)
        }
        return phase == .syncing ? dispatch(now: now) : []
    }

    /// More peers to sync from; a sync that gave up tries its uncovered ranges again.
    public mutating func addPeers(_ candidates: [PublicKey], now: Instant) -> [SyncEffect] {
        guard phase != .idle, phase != .complete else { return [] }
        for peer in candidates where peers[peer] == nil && peers.count < config.maximumKnownPeers {
            peers[peer] = Peer(order: peers.count)
        }
        if phase == .gaveUp {
            phase = .syncing
            settled = coverage
        }
        return dispatch(now: now)
    }

    /// When `tick` next has work: the earliest request deadline, nil when nothing is in flight.
    public var nextDeadline: Instant? {
        guard phase == .syncing else { return nil }
        return outstanding.compactMap { requests[$0].map(deadline(of:)) }.min()
    }

    // MARK: Requests

    /// Ends an outstanding request and queues the parts of its range still uncovered.
    private mutating func finish(_ id: UInt32, nextAttempt: Int, avoid: PublicKey?) {
        guard var request = requests[id], request.isOutstanding else { return }
        request.isOutstanding = false
        requests[id] = request
        outstanding.removeAll { $0 == id }
        peers[request.peer]?.outstanding -= 1

        let room = max(0, config.maximumPending - (pending.count - pendingHead))
        let gaps = settled.gaps(in: request.range, limit: room)
        if nextAttempt > config.maximumAttempts {
            for gap in gaps { settled.insert(gap) }
            counters.abandonedRanges += UInt64(gaps.count)
            return
        }
        for gap in gaps { pending.append(Pending(range: gap, attempt: nextAttempt, avoid: avoid)) }
    }

    /// Sends queued ranges while request slots are free, then settles the phase: complete when
    /// everything is covered, given up when nothing is in flight and nothing more can be sent.
    private mutating func dispatch(now: Instant) -> [SyncEffect] {
        guard phase == .syncing else { return [] }
        var effects: [SyncEffect] = []
        if !coverage.isFull {
            sendQueued(into: &effects, now: now)
            if outstanding.isEmpty, pendingHead == pending.count {
                // Ranges dropped while the queue was full, or left after `addPeers`.
                for gap in settled.gaps(in: .full, limit: config.maximumPending) {
                    pending.append(Pending(range: gap, attempt: 1, avoid: nil))
                }
                sendQueued(into: &effects, now: now)
            }
        }
        if coverage.isFull {
            phase = .complete
            outstanding.removeAll()
        } else if outstanding.isEmpty {
            phase = .gaveUp
        }
        if pendingHead > 1024, pendingHead * 2 > pending.count {
            pending.removeFirst(pendingHead)
            pendingHead = 0
        }
        return effects
    }

    private mutating func sendQueued(into effects: inout [SyncEffect], now: Instant) {
        while pendingHead < pending.count, outstanding.count < config.maximumOutstanding,
            requests.count < config.maximumRequests
        {
            let item = pending[pendingHead]
            // Late pages may have covered it since it was queued.
            if settled.contains(item.range) {
                pendingHead += 1
                continue
            }
            guard let peer = choosePeer(avoiding: item.avoid) else { return }
            pendingHead += 1
            effects.append(send(item.range, attempt: item.attempt, to: peer, now: now))
        }
    }

    private mutating func send(_ range: KeyRange, attempt: Int, to peer: PublicKey, now: Instant) -> SyncEffect {
        while requests[nextRequestID] != nil { nextRequestID &+= 1 }
        let id = nextRequestID
        nextRequestID &+= 1
        requests[id] = Request(peer: peer, range: range, attempt: attempt, sentAt: now, lastActivity: now)
        outstanding.append(id)
        peers[peer]?.outstanding += 1
        counters.requestsSent += 1
        let request = ProposalSyncMessage.Request(requestID: id, range: range, maxPages: config.maxPagesPerRequest)
        return .send(.request(request), to: peer)
    }

    /// The usable peer with the fewest failures, preferring the first `maximumPeers` (the reserve
    /// takes over from failing ones), then the least loaded; `avoid` only if it is the only one.
    private func choosePeer(avoiding avoid: PublicKey?) -> PublicKey? {
        let usable = peers.filter { !$0.value.isLost }
        let candidates = usable.count > 1 ? usable.filter { $0.key != avoid } : usable
        return candidates.min { lhs, rhs in
            let left = (lhs.value.failures, lhs.value.order >= config.maximumPeers ? 1 : 0, lhs.value.outstanding)
            let right = (rhs.value.failures, rhs.value.order >= config.maximumPeers ? 1 : 0, rhs.value.outstanding)
            return left != right ? left < right : lhs.value.order < rhs.value.order
        }?.key
    }

    // MARK: Timing

    private mutating func recordRTT(_ sample: Duration, of peer: PublicKey) {
        guard let previous = peers[peer]?.smoothedRTT else {
            peers[peer]?.smoothedRTT = sample
            return
        }
        peers[peer]?.smoothedRTT = (previous * 7 + sample) / 8
    }

    /// 2× the peer's smoothed RTT (or the slowest known peer's, or half the initial timeout), clamped.
    private func timeout(for peer: PublicKey) -> Duration {
        let known = peers[peer]?.smoothedRTT ?? peers.values.compactMap(\.smoothedRTT).max()
        guard let rtt = known else { return config.initialTimeout }
        return min(max(rtt * 2, config.minimumTimeout), config.maximumTimeout)
    }

    private func deadline(of request: Request) -> Instant { request.lastActivity + timeout(for: request.peer) }
}
