// The gossip core of one node (DESIGN §4 "Gossip"): a GossipSub v1.1-shaped router as a pure state
// machine. The node layer carries its messages in the gossip frame channel of authenticated sessions.
//
// Inputs: `addPeer`/`removePeer` as sessions come and go, `receive` for every gossip frame,
// `subscribe`/`unsubscribe`/`publish` from the application, `tick` when `nextDeadline` passes.
// Outputs: `[GossipEffect]` — encoded messages to send, messages to deliver, graylist notices.
//
// A received frame goes: 1. graylist check (a peer scored below the graylist threshold costs no
// decoding and no validation) 2. decode 3. per-peer caps 4. seen check (duplicates are counted, not
// validated) 5. the application's validator 6. deliver + forward to the mesh except the source and
// peers known to have it. The heartbeat (1 s) maintains meshes and fanout, sends IHAVE gossip,
// penalises broken IWANT promises, decays scores and ages the caches.
//
// NOTE: a value type, not thread safe: the owner calls it sequentially. Dictionaries are only
// iterated in sorted order (or through the caller's seeded generator), so a seed replays exactly.

import UmbraCore

/// Peers are identified by their Ed25519 identity key (the session's remote static key).
public typealias GossipPeer = PublicKey

/// The application's verdict on a message, before it is forwarded.
public enum ValidationResult: Sendable, Equatable {
    /// Valid: delivered and forwarded.
    case accept
    /// Invalid (bad signature, malformed): dropped and the sender penalised (P4).
    case reject
    /// Not worth forwarding but not the sender's fault (stale seq, already known): dropped quietly.
    case ignore
    /// The validator answers later, by message id (`completeValidation`): until then the message is
    /// neither delivered nor forwarded, and further copies count as duplicates whose senders are
    /// remembered (they are not sent it again). Unanswered after `validationTimeout`: ignored.
    case pending
}

/// What the shell must do.
public enum GossipEffect: Sendable, Equatable {
    /// Send an encoded `GossipMessage` (at most `GossipMessage.maximumSize` bytes) to `peer`.
    case send([UInt8], to: GossipPeer)
    /// A new, valid message for the application. `from` is the peer it came from (our own
    /// publishes are not delivered back, so it is never nil today).
    case deliver(topic: Topic, data: [UInt8], id: MessageID, from: GossipPeer?)
    /// The peer's score fell below the graylist threshold: its messages are dropped from now on.
    case peerGraylisted(GossipPeer)
}

/// Running totals, for status and benchmarks.
public struct GossipCounters: Sendable, Equatable {
    /// PUBLISH messages received from peers (duplicates included).
    public var messagesReceived: UInt64 = 0
    /// Copies of messages already seen (the benchmark's duplicate count).
    public var duplicates: UInt64 = 0
    /// New valid messages handed to the application.
    public var delivered: UInt64 = 0
    /// Messages the validator rejected (and copies of rejected messages).
    public var invalid: UInt64 = 0
    /// Messages the validator ignored.
    public var ignored: UInt64 = 0
    /// Copies of received messages forwarded to mesh peers.
    public var forwarded: UInt64 = 0
    /// Our own messages published, and the copies sent for them.
    public var published: UInt64 = 0
    public var publishedCopies: UInt64 = 0
    /// Own publishes of data already seen (not sent again).
    public var duplicatePublishes: UInt64 = 0
    public var ihaveSent: UInt64 = 0
    public var ihaveReceived: UInt64 = 0
    /// IHAVEs not acted on (sender below the gossip threshold, over the per-heartbeat caps, topic not joined).
    public var ihaveIgnored: UInt64 = 0
    public var iwantSent: UInt64 = 0
    public var iwantReceived: UInt64 = 0
    /// Messages sent in answer to IWANTs.
    public var iwantServed: UInt64 = 0
    /// Requested ids not served (unknown, over the retransmission or per-heartbeat cap, low score).
    public var iwantRefused: UInt64 = 0
    public var brokenPromises: UInt64 = 0
    /// Frames dropped unread because their sender was graylisted.
    public var graylistedDrops: UInt64 = 0
    /// Times a peer's score crossed below the graylist threshold.
    public var graylistings: UInt64 = 0
    public var graftsSent: UInt64 = 0
    public var graftsReceived: UInt64 = 0
    /// GRAFTs answered with a PRUNE (full mesh, negative score, backoff).
    public var graftsRefused: UInt64 = 0
    /// GRAFTs during a backoff (penalised).
    public var graftsInBackoff: UInt64 = 0
    public var prunesSent: UInt64 = 0
    public var prunesReceived: UInt64 = 0
    /// Frames that did not decode (penalised) and frames of an unknown kind (not penalised).
    public var malformed: UInt64 = 0
    public var unknownKinds: UInt64 = 0
    /// Messages on topics we have not joined.
    public var unsubscribedDrops: UInt64 = 0
    /// Messages over a peer's per-heartbeat cap, dropped before validation.
    public var rateLimitedDrops: UInt64 = 0
    /// Frames from a peer that was never added.
    public var unknownPeerDrops: UInt64 = 0
    /// `addPeer` calls refused at `maximumPeers`.
    public var peersRefused: UInt64 = 0
    /// Peers that announced topics they already held: they restarted, and were greeted again.
    public var peersRestarted: UInt64 = 0
    public var heartbeats: UInt64 = 0
    /// Messages handed to a validator that answers later.
    public var validationsDeferred: UInt64 = 0
    /// Deferred messages dropped because `maximumPendingValidations` were waiting already.
    public var validationsShed: UInt64 = 0
    /// Deferred messages whose validator did not answer within `validationTimeout` (ignored).
    public var validationTimeouts: UInt64 = 0
    public init() {}
}

/// One peer as the router sees it.
public struct GossipPeerInfo: Sendable, Equatable {
    public var key: GossipPeer
    /// Topics the peer said it joined.
    public var topics: [Topic]
    /// Topics for which the peer is in our mesh.
    public var meshTopics: [Topic]
    public var score: Double
    /// We dialed it.
    public var outbound: Bool
    public var graylisted: Bool
}

public struct GossipRouter: Sendable {
    /// A message whose validator answers later: who sent it first (scored by the verdict) and who
    /// sent copies meanwhile (not sent it again when it is forwarded).
    struct PendingValidation: Sendable {
        var topic: Topic
        var data: [UInt8]
        var source: GossipPeer
        var holders: Set<GossipPeer>
        var expiresAt: Instant
    }

    struct PeerState: Sendable {
        var outbound: Bool
        var topics: Set<Topic> = []
        var graylisted = false
        /// When this peer was last seen to start over (a full re-subscription).
        var restartDetectedAt: Instant?
        // Per heartbeat:
        var messages = 0
        var ihaves = 0
        var idsAsked = 0
        var served = 0
    }

    public let localPeer: GossipPeer
    public let config: GossipConfig
    public internal(set) var counters = GossipCounters()

    var peerStates: [GossipPeer: PeerState] = [:]
    /// Our mesh per joined topic (an entry, possibly empty, for every joined topic).
    var meshes: [Topic: Set<GossipPeer>] = [:]
    /// Messages whose validator answers later, by id (bounded by `maximumPendingValidations`).
    var pendingValidations: [MessageID: PendingValidation] = [:]
    /// Peers we publish to on topics we have not joined, and when we last did.
    var fanout: [Topic: Set<GossipPeer>] = [:]
    var lastPublished: [Topic: Instant] = [:]
    /// (topic, peer) → until when no GRAFT may go either way.
    var backoffs: [Topic: [GossipPeer: Instant]] = [:]
    var backoffCount = 0
    var seen: SeenCache
    var cache: MessageCache
    var promises: Promises
    var scores: PeerScore
    var nextHeartbeat: Instant?
    var nextDecay: Instant?

    public init(localPeer: GossipPeer, config: GossipConfig = .init()) {
        self.localPeer = localPeer
        self.config = config
        self.seen = SeenCache(ttl: config.seenTTL, capacity: config.maximumSeen)
        self.cache = MessageCache(
            historyLength: config.historyLength, gossipWindow: config.gossipWindow,
            capacity: config.maximumCachedMessages)
        self.promises = Promises(capacity: config.maximumPromises)
        self.scores = PeerScore(params: config.score)
    }

    // MARK: - Introspection

    /// Connected peers, sorted by key.
    public var peers: [GossipPeer] { sorted(peerStates.keys) }
    /// Whether `peer` is connected to the router (O(1), unlike `peers`).
    public func hasPeer(_ peer: GossipPeer) -> Bool { peerStates[peer] != nil }
    /// How many peers are connected.
    public var peerCount: Int { peerStates.count }
    /// Topics we joined, sorted.
    public var subscriptions: [Topic] { meshes.keys.sorted() }
    /// Our mesh for `topic`, sorted (empty when not joined).
    public func mesh(_ topic: Topic) -> [GossipPeer] { sorted(meshes[topic] ?? []) }
    /// Our fanout for `topic`, sorted.
    public func fanoutPeers(_ topic: Topic) -> [GossipPeer] { sorted(fanout[topic] ?? []) }
    /// The peer's current score (0 for an unknown peer).
    public func score(of peer: GossipPeer) -> Double { scores.score(of: peer) }
    public func isGraylisted(_ peer: GossipPeer) -> Bool {
        scores.score(of: peer) < config.thresholds.graylistThreshold
    }
    /// When the (topic, peer) backoff ends, if one is running.
    public func backoff(_ peer: GossipPeer, topic: Topic) -> Instant? { backoffs[topic]?[peer] }
    public var seenCount: Int { seen.count }
    public var mcacheCount: Int { cache.count }
    public var promiseCount: Int { promises.count }
    /// Messages waiting for their validator's answer.
    public var pendingValidationCount: Int { pendingValidations.count }
    /// Whether `id` waits for its validator's answer.
    public func isPendingValidation(_ id: MessageID) -> Bool { pendingValidations[id] != nil }
    /// Copies received of a seen message after the first, or nil if the id is not in the seen cache.
    public func duplicates(of id: MessageID) -> Int? { seen[id].map { Int($0.duplicates) } }
    /// The earliest time `tick` has work (nil before the first call that passes `now`).
    public var nextDeadline: Instant? {
        switch (nextHeartbeat, nextDecay) {
        case (let heartbeat?, let decay?): min(heartbeat, decay)
        case (let heartbeat, let decay): heartbeat ?? decay
        }
    }

    public func peerInfo() -> [GossipPeerInfo] {
        peers.map { key in
            let state = peerStates[key]!
            return GossipPeerInfo(
                key: key, topics: state.topics.sorted(),
                meshTopics: meshes.keys.filter { meshes[$0]!.contains(key) }.sorted(),
                score: scores.score(of: key), outbound: state.outbound, graylisted: state.graylisted)
        }
    }

    // MARK: - Peers

    /// A session with `peer` came up. `colocationKey`: the peer's IP address bytes for the
    /// colocation penalty (P6), nil when exempt (loopback, private test ranges). `outbound`: we
    /// dialed it (meshes keep `dOut` such peers). Sends our subscriptions. A known peer, ourselves
    /// or a peer beyond `maximumPeers` is ignored.
    public mutating func addPeer(
        _ peer: GossipPeer, colocationKey: [UInt8]?, outbound: Bool, now: Instant
    ) -> [GossipEffect] {
        start(now)
        guard peer != localPeer, peerStates[peer] == nil else { return [] }
        guard peerStates.count < config.maximumPeers else {
            counters.peersRefused += 1
            return []
        }
        peerStates[peer] = PeerState(outbound: outbound)
        scores.connect(peer, colocationKey: colocationKey)
        var effects: [GossipEffect] = []
        sendSubscriptions(to: peer, &effects)
        checkGraylist(peer, &effects)
        return effects
    }

    /// The session with `peer` is gone. Its score is kept a while if it is not positive.
    public mutating func removePeer(_ peer: GossipPeer, now: Instant) {
        start(now)
        guard peerStates.removeValue(forKey: peer) != nil else { return }
        for topic in meshes.keys.sorted() where meshes[topic]!.remove(peer) != nil {
            scores.prune(peer, topic: topic)
        }
        for topic in fanout.keys.sorted() { fanout[topic]!.remove(peer) }
        promises.removePeer(peer)
        scores.disconnect(peer, now: now)
    }

    // MARK: - Application

    /// Joins `topic`: builds a mesh from the fanout and the topic's peers, tells every peer, grafts.
    public mutating func subscribe(
        _ topic: Topic, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [GossipEffect] {
        start(now)
        guard meshes[topic] == nil else { return [] }
        var effects: [GossipEffect] = []
        for peer in peers { send(.subscribe([topic]), to: peer, &effects) }
        var mesh = Set<GossipPeer>()
        let reusable = sorted(fanout[topic] ?? []).filter { canGraft($0, topic: topic, minimumScore: 0) }
        mesh.formUnion(reusable.shuffled(using: &rng).prefix(config.d))
        if mesh.count < config.d {
            let candidates = topicPeers(topic).filter {
                !mesh.contains($0) && canGraft($0, topic: topic, minimumScore: 0)
            }
            mesh.formUnion(candidates.shuffled(using: &rng).prefix(config.d - mesh.count))
        }
        fanout[topic] = nil
        lastPublished[topic] = nil
        meshes[topic] = mesh
        for peer in sorted(mesh) { graft(peer, topic: topic, now: now, &effects) }
        return effects
    }

    /// Leaves `topic`: tells every peer and prunes the mesh (with the short unsubscribe backoff).
    public mutating func unsubscribe(
        _ topic: Topic, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [GossipEffect] {
        start(now)
        guard let mesh = meshes.removeValue(forKey: topic) else { return [] }
        var effects: [GossipEffect] = []
        for peer in peers { send(.unsubscribe([topic]), to: peer, &effects) }
        for peer in sorted(mesh) {
            scores.prune(peer, topic: topic)
            sendPrune(topic, to: peer, backoff: config.unsubscribeBackoff, now: now, &effects)
        }
        return effects
    }

    /// Publishes our own message: with `floodPublish`, to every peer of the topic at or above the
    /// publish threshold; otherwise to the mesh, or (topic not joined) to a fanout set. It is not
    /// delivered back to us. Publishing data already seen sends nothing. Returns the message id.
    /// Precondition: `data.count <= config.maximumDataSize`.
    public mutating func publish(
        _ data: [UInt8], topic: Topic, now: Instant, rng: inout some RandomNumberGenerator
    ) -> (id: MessageID, effects: [GossipEffect]) {
        precondition(data.count <= min(config.maximumDataSize, GossipMessage.maximumDataSize), "gossip data too large")
        start(now)
        let id = MessageID(topic: topic, data: data)
        guard seen.insert(id, rejected: false, now: now) else {
            counters.duplicatePublishes += 1
            return (id, [])
        }
        cache.put(id, topic: topic, data: data)
        counters.published += 1
        var targets = Set<GossipPeer>()
        if config.floodPublish {
            let threshold = config.thresholds.publishThreshold
            targets.formUnion(topicPeers(topic).filter { scores.score(of: $0) >= threshold })
            targets.formUnion(meshes[topic] ?? [])
        } else if let mesh = meshes[topic] {
            targets = mesh
        } else {
            if (fanout[topic] ?? []).isEmpty {
                let threshold = config.thresholds.publishThreshold
                let candidates = topicPeers(topic).filter { scores.score(of: $0) >= threshold }
                fanout[topic] = Set(candidates.shuffled(using: &rng).prefix(config.d))
            }
            targets = fanout[topic] ?? []
            lastPublished[topic] = now
        }
        var effects: [GossipEffect] = []
        let frame = GossipMessage.publish(topic: topic, data: data).encoded()
        for peer in sorted(targets) {
            effects.append(.send(frame, to: peer))
            counters.publishedCopies += 1
        }
        return (id, effects)
    }

    /// Runs the score decay and the heartbeat when they are due.
    public mutating func tick(now: Instant, rng: inout some RandomNumberGenerator) -> [GossipEffect] {
        start(now)
        var effects: [GossipEffect] = []
        if let due = nextDecay, due <= now {
            nextDecay = Self.next(after: due, interval: config.score.decayInterval, now: now)
            scores.refresh(now: now)
            for peer in peers { checkGraylist(peer, &effects) }
        }
        if let due = nextHeartbeat, due <= now {
            nextHeartbeat = Self.next(after: due, interval: config.heartbeatInterval, now: now)
            heartbeat(now: now, rng: &rng, &effects)
        }
        return effects
    }

    // MARK: - Helpers

    /// Starts the timers on the first call that tells the time.
    mutating func start(_ now: Instant) {
        if nextHeartbeat == nil { nextHeartbeat = now + config.heartbeatInterval }
        if nextDecay == nil { nextDecay = now + config.score.decayInterval }
    }

    /// The next period after `due`, or a full period from now when the caller fell behind.
    static func next(after due: Instant, interval: Duration, now: Instant) -> Instant {
        let period = max(interval, .milliseconds(1))
        let next = due + period
        return next > now ? next : now + period
    }

    func sorted(_ peers: some Sequence<GossipPeer>) -> [GossipPeer] { peers.sorted(by: PublicKey.precedes) }

    /// Connected peers that joined `topic`, sorted.
    func topicPeers(_ topic: Topic) -> [GossipPeer] {
        sorted(peerStates.compactMap { $0.value.topics.contains(topic) ? $0.key : nil })
    }

    /// Whether `peer` may be added to the mesh of `topic` by us: connected, no backoff running (or
    /// still in its grace period), score at least `minimumScore`.
    func canGraft(_ peer: GossipPeer, topic: Topic, minimumScore: Double) -> Bool {
        peerStates[peer] != nil && backoffs[topic]?[peer] == nil && scores.score(of: peer) >= minimumScore
    }

    func isOutbound(_ peer: GossipPeer) -> Bool { peerStates[peer]?.outbound ?? false }

    /// Sends our whole subscription list to `peer`, in messages of at most `maximumTopics` topics.
    mutating func sendSubscriptions(to peer: GossipPeer, _ effects: inout [GossipEffect]) {
        let topics = subscriptions
        for start in stride(from: 0, to: topics.count, by: GossipMessage.maximumTopics) {
            send(
                .subscribe(Array(topics[start..<min(start + GossipMessage.maximumTopics, topics.count)])), to: peer,
                &effects)
        }
    }

    mutating func send(_ message: GossipMessage, to peer: GossipPeer, _ effects: inout [GossipEffect]) {
        effects.append(.send(message.encoded(), to: peer))
    }

    mutating func graft(_ peer: GossipPeer, topic: Topic, now: Instant, _ effects: inout [GossipEffect]) {
        scores.graft(peer, topic: topic, now: now)
        send(.graft(topic), to: peer, &effects)
        counters.graftsSent += 1
    }

    /// Sends a PRUNE and starts the backoff on our side too.
    mutating func sendPrune(
        _ topic: Topic, to peer: GossipPeer, backoff: Duration, now: Instant, _ effects: inout [GossipEffect]
    ) {
        addBackoff(peer, topic: topic, until: now + backoff)
        let seconds = UInt16(clamping: max(0, backoff.nanosecondsClamped / 1_000_000_000))
        send(.prune(topic, backoffSeconds: seconds), to: peer, &effects)
        counters.prunesSent += 1
    }

    mutating func addBackoff(_ peer: GossipPeer, topic: Topic, until: Instant) {
        if let current = backoffs[topic]?[peer] {
            backoffs[topic]![peer] = max(current, until)
            return
        }
        guard config.maximumBackoffs > 0 else { return }
        if backoffCount >= config.maximumBackoffs { evictEarliestBackoff() }
        backoffs[topic, default: [:]][peer] = until
        backoffCount += 1
    }

    private mutating func evictEarliestBackoff() {
        var earliest: (topic: Topic, peer: GossipPeer, until: Instant)?
        for topic in backoffs.keys.sorted() {
            for (peer, until) in backoffs[topic]! {
                if let current = earliest,
                    (current.until, current.topic) < (until, topic)
                        || ((current.until, current.topic) == (until, topic) && PublicKey.precedes(current.peer, peer))
                {
                    continue
                }
                earliest = (topic, peer, until)
            }
        }
        guard let earliest else { return }
        removeBackoff(earliest.peer, topic: earliest.topic)
    }

    mutating func removeBackoff(_ peer: GossipPeer, topic: Topic) {
        guard backoffs[topic]?.removeValue(forKey: peer) != nil else { return }
        backoffCount -= 1
        if backoffs[topic]!.isEmpty { backoffs[topic] = nil }
    }

    /// Adds `count` to the peer's behaviour penalty (P7).
    mutating func penalise(_ peer: GossipPeer, _ count: Double, _ effects: inout [GossipEffect]) {
        scores.addPenalty(peer, count)
        checkGraylist(peer, &effects)
    }

    /// Emits `.peerGraylisted` when the peer's score has just crossed below the graylist threshold.
    mutating func checkGraylist(_ peer: GossipPeer, _ effects: inout [GossipEffect]) {
        guard let state = peerStates[peer] else { return }
        let listed = isGraylisted(peer)
        guard listed != state.graylisted else { return }
        peerStates[peer]!.graylisted = listed
        if listed {
            counters.graylistings += 1
            effects.append(.peerGraylisted(peer))
        }
    }
}
