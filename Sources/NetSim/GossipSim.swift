// GossipSim: the gossip and proposal cores at network scale (DESIGN §4 "Gossip", "Service
// proposals"). Every node runs the real `GossipRouter` with the node's defaults; providers publish
// real signed proposals (`SignedProposal.make`), and joining nodes run the real
// `ProposalSyncClient` against peers that answer with a real `ProposalStore.respond(to:now:)`.
// Messages travel encoded (the router's own wire bytes) over virtual links, one message per
// datagram, with a seeded RNG and a virtual clock: the same seed replays exactly.
//
// Scenario (`run`):
// 1. Nodes start at random times in [0, startSpread): each joins `Topic.proposals` and dials
//    `outboundPeers` random other nodes (as if picked from its DHT routing table). A connection comes
//    up one RTT after the dial (the session handshake), as `addPeer` on both sides (outbound on the
//    dialer, no colocation key). Inbound connections are accepted up to the router's peer cap.
// 2. Warm-up: meshes form. Then each provider publishes its offer at a random offset within one
//    refresh interval and re-signs it (a higher seq, so a new message) every interval.
// 3. Steady state starts one interval later (every provider's offer is live everywhere). Over the
//    measurement window: gossip bytes in and out per node, and `trackedMessages` propagations
//    (the first regular publish at or after each of evenly spaced times in the window; the last may
//    fall just after it): every node's first delivery,
//    and, `duplicateSettle` later, the router's duplicate count for the id at every node.
// 4. At the end of the window `joiners` new nodes join, one per `joinSpacing`: each dials
//    `outboundPeers` random nodes and, once `syncAfterConnections` sessions are up, syncs from them;
//    gossip deliveries count too. Measured: time until it holds 99 % and 100 % of the offers that
//    were live when it started.
//
// Model shortcuts (each one honest about what it leaves out):
// - No session layer: a connection is up one RTT after the dial; datagrams carry the encoded gossip
//   or sync message, and the byte counts add the per-datagram overhead of the real path
//   (`datagramOverhead`: transport header 16 + AEAD tag 16 + frame channel 1 + IPv4/UDP 28). No
//   bandwidth or queueing delay is modelled: a burst of sync pages arrives after one link delay.
// - Validation at the N initial nodes: decode + `SignedProposal.verify` run once per distinct
//   message for the whole network, and the verdict (the signature and field rules do not depend on
//   the node) is cached by message bytes; only the time rules (expired, issued in the future) are
//   re-checked per call. That saves CPU at 10,000 nodes, not behaviour. A full `ProposalStore` per
//   node (N × P entries of a few hundred bytes each, gigabytes at 10,000 × 500) is replaced by the
//   newest seq each node accepted per provider, which is exactly the store's rule for offers (higher
//   seq wins; older or equal is stale, ignored). A node asked for a sync page builds a real
//   `ProposalStore` from the offers it actually accepted, at that moment. Joining nodes keep a real
//   store and verify everything themselves.
// - Links: NetSim's (`SimLinks`, Links.swift): a stable one-way base latency per directed pair
//   (uniform in the link range), plus jitter, FIFO per directed pair; `lossRate` per datagram in
//   both directions, sync pages included. A dial's handshake takes the pair's base round trip.

import Gossip
import Proposals
import UmbraCore

public struct GossipSimConfig: Sendable {
    public var nodes = 1000
    public var providers = 100
    public var seed: UInt64 = 1
    /// One-way latency 10–100 ms per pair (RTT 20–200 ms), 5 % jitter, 1 % loss.
    public var link = LinkModel(minimumLatency: .milliseconds(10), maximumLatency: .milliseconds(100), lossRate: 0.01)
    /// The router's configuration: the node's defaults.
    public var gossip = GossipConfig()
    public var sync = ProposalSyncConfig()
    /// Gossip connections each node dials.
    public var outboundPeers = 8
    /// Nodes start at random times within this span (so heartbeats are out of phase).
    public var startSpread: Duration = .seconds(5)
    public var warmUp: Duration = .seconds(30)
    public var refreshInterval: Duration = SignedProposal.refreshInterval
    public var proposalLifetime: Duration = SignedProposal.defaultLifetime
    public var measurementWindow: Duration = .seconds(60)
    /// Propagations measured (at most one per publish; spread evenly over the window).
    public var trackedMessages = 20
    /// How long after a tracked publish its duplicates are counted (well within the seen TTL).
    public var duplicateSettle: Duration = .seconds(10)
    public var joiners = 5
    public var joinSpacing: Duration = .seconds(2)
    /// A joiner starts its sync when this many of its connections are up (later ones are added).
    public var syncAfterConnections = 4
    /// How long each joiner is watched.
    public var joinTimeout: Duration = .seconds(20)
    /// Non-provider nodes that publish a tampered copy of a live proposal during the window (its
    /// signature no longer verifies): none may be delivered anywhere.
    public var forgeries = 0
    public var networkID = "umbra-sim"
    /// Bytes each datagram costs beyond the gossip message: transport header (16), AEAD tag (16),
    /// frame channel (1), IPv4 + UDP headers (28).
    public var datagramOverhead = 16 + 16 + 1 + 28

    public init() {}
}

public struct GossipSimResult: Sendable, Codable, Equatable {
    /// p50 / p99 / max of a measurement over the tracked messages (or joiners), in milliseconds.
    public struct Spread: Sendable, Codable, Equatable {
        public var p50: Double
        public var p99: Double
        public var max: Double
    }

    /// One tracked propagation.
    public struct Tracked: Sendable, Codable, Equatable {
        /// Virtual time of the publish, in seconds.
        public var publishedAt: Double
        /// Bytes of the signed proposal.
        public var size: Int
        /// Time until 50 %, 99 %, 100 % of the N nodes held it (nil: never within the settle time).
        public var reach50Ms: Double?
        public var reach99Ms: Double?
        public var reach100Ms: Double?
        /// Nodes that never got it.
        public var missing: Int
        public var duplicatesMean: Double
        public var duplicatesMax: Int
    }

    /// One joining node.
    public struct Join: Sendable, Codable, Equatable {
        /// Offers live when it started.
        public var live: Int
        public var held: Int
        public var hold99Ms: Double?
        public var hold100Ms: Double?
        /// Time until the sync client covered the whole key space (nil: it did not).
        public var syncCompleteMs: Double?
        public var syncPages: UInt64
        public var syncRequests: UInt64
        public var syncBytesIn: UInt64
    }

    public var nodes: Int
    public var providers: Int
    public var seed: UInt64
    public var lossRate: Double
    /// At the start of the window, over the N nodes.
    public var peersMean: Double
    public var meshMean: Double
    public var meshMin: Int
    public var meshMax: Int
    /// Propagation, across the tracked messages.
    public var trackedCount: Int
    public var trackedReachingAll: Int
    public var reach50: Spread
    public var reach99: Spread
    /// Over the messages that reached every node.
    public var reach100: Spread
    /// Copies received after the first, per node per tracked message.
    public var duplicatesMean: Double
    public var duplicatesP99: Int
    public var duplicatesMax: Int
    /// Gossip bytes per node per minute in the window (datagram overhead included).
    public var bytesInPerMinuteMean: Double
    public var bytesInPerMinuteP99: Double
    public var bytesOutPerMinuteMean: Double
    public var bytesOutPerMinuteP99: Double
    public var datagramsPerNodePerMinute: Double
    /// Proposals published network-wide per minute in the window.
    public var publishesPerMinute: Double
    public var proposalBytesMean: Double
    /// The joins.
    public var joins: [Join]
    public var join99: Spread
    /// Over the joiners that reached 100 %.
    public var join100: Spread
    public var joinersComplete: Int
    /// Forged messages published, and deliveries of them anywhere (must be 0).
    public var forgeries: Int
    public var forgedDeliveries: Int
    /// Router counters summed over all nodes.
    public var invalidMessages: UInt64
    public var ihaveSent: UInt64
    public var iwantSent: UInt64
    public var iwantServed: UInt64
    public var brokenPromises: UInt64
    public var graftsSent: UInt64
    public var prunesSent: UInt64
    public var graylistings: UInt64
    public var datagramsSent: UInt64
    public var datagramsLost: UInt64
    public var eventsProcessed: UInt64
    public var virtualSeconds: Double
    public var tracked: [Tracked]
}

public struct GossipSim {
    private final class RouterBox {
        var router: GossipRouter
        init(_ router: GossipRouter) { self.router = router }
    }

    private enum Event {
        case start(node: Int)
        case connect(dialer: Int, listener: Int)
        case gossip([UInt8], from: Int, to: Int)
        case timer(node: Int, generation: UInt64)
        case publish(provider: Int)
        case forge(node: Int)
        case countDuplicates(tracked: Int)
        case join(joiner: Int)
        case sync([UInt8], from: Int, to: Int)
        case syncTimer(joiner: Int, generation: UInt64)
    }

    /// The cached verdict on a message's bytes (see the header: validation shortcut).
    private enum Verdict {
        case invalid
        case offer(provider: Int, round: UInt32, issuedAt: Instant, expiresAt: Instant)
    }

    private struct ProviderInfo {
        var node: Int
        var country: String
        var ipType: ServiceProposal.IPType
        var pricePerGiB: UInt64
        var pricePerMinute: UInt64
        var capacity: UInt32
        var endpoint: Endpoint
    }

    private struct TrackState {
        var id: MessageID
        var publishedAt: Instant
        var size: Int
        /// Nanoseconds after the publish, per node (UInt64.max: not yet).
        var firstDelivery: [UInt64]
        var duplicates: [Int] = []
    }

    private struct JoinState {
        var node: Int
        var startedAt: Instant
        var store = ProposalStore()
        var client: ProposalSyncClient
        var connected: [PublicKey] = []
        var syncStarted = false
        var live: Int
        var missing: Set<Int>
        var hold99: Instant?
        var hold100: Instant?
        var syncComplete: Instant?
        var armed: UInt64?
        var generation: UInt64 = 0
        var syncBytesIn: UInt64 = 0
    }

    private static let serviceType = "ip-tunnel"
    private static let countries = ["DE", "NL", "US", "SE", "CH", "FR", "GB", "JP", "SG", "CA"]

    public let config: GossipSimConfig
    private var rng: SeededRandom
    private var queue = EventQueue<Event>()
    private var now = Instant.zero
    private var eventsProcessed: UInt64 = 0

    // Nodes: 0..<N start with the network, N..<N+K are the joiners.
    private var identities: [Identity] = []
    private var keys: [PublicKey] = []
    private var byKey: [PublicKey: Int] = [:]
    /// Boxed, so a call mutates the router in place (no copy of its tables per event).
    private var routers: [RouterBox] = []
    private var isUp: [Bool] = []
    private var startTime: [Instant] = []
    private var armed: [UInt64?] = []
    private var generation: [UInt64] = []

    // Links.
    private var links: SimLinks
    private var sent: UInt64 = 0
    private var lost: UInt64 = 0

    // Proposals.
    private var providers: [ProviderInfo] = []
    private var providerOfKey: [PublicKey: Int] = [:]
    /// Every offer each provider signed, oldest first (round r is `published[p][r - 1]`).
    private var published: [[SignedProposal]] = []
    private var verdicts: [[UInt8]: Verdict] = [:]
    /// Newest round of each provider's offer each initial node accepted: `held[node * P + provider]`.
    private var held: [UInt32] = []

    // Measurements.
    private var windowStart = Instant.zero
    private var windowEnd = Instant.zero
    private var bytesIn: [UInt64] = []
    private var bytesOut: [UInt64] = []
    private var datagramsInWindow: UInt64 = 0
    private var publishesInWindow = 0
    private var proposalBytes: [Int] = []
    private var trackTimes: [Instant] = []
    private var tracks: [TrackState] = []
    private var trackedIDs: [MessageID: Int] = [:]
    private var forgedIDs: Set<MessageID> = []
    private var forgedDeliveries = 0
    private var forgeryCount = 0
    private var joins: [JoinState] = []
    private var meshSnapshot: (peers: Double, mean: Double, min: Int, max: Int) = (0, 0, 0, 0)

    public init(config: GossipSimConfig) {
        precondition(config.nodes >= 2 && config.providers >= 1 && config.providers <= config.nodes)
        self.config = config
        self.rng = SeededRandom(seed: config.seed)
        self.links = SimLinks(model: config.link)
        var keyRNG = SeededRandom(seed: config.seed ^ 0x0060_5519)
        let total = config.nodes + config.joiners
        for index in 0..<total {
            let identity = Identity.generate(using: &keyRNG)
            identities.append(identity)
            keys.append(identity.publicKey)
            byKey[identity.publicKey] = index
            routers.append(RouterBox(GossipRouter(localPeer: identity.publicKey, config: config.gossip)))
        }
        isUp = Array(repeating: false, count: total)
        startTime = Array(repeating: .zero, count: total)
        armed = Array(repeating: nil, count: total)
        generation = Array(repeating: 0, count: total)
        bytesIn = Array(repeating: 0, count: total)
        bytesOut = Array(repeating: 0, count: total)
        held = Array(repeating: 0, count: config.nodes * config.providers)
    }

    // MARK: - Scenario

    /// Runs the whole scenario and returns the measurements.
    public mutating func run() -> GossipSimResult {
        let count = config.nodes
        let spread = UInt64(max(1, config.startSpread.nanosecondsClamped))
        for node in 0..<count {
            startTime[node] = Instant(nanoseconds: UInt64.random(in: 0..<spread, using: &rng))
            queue.push(.start(node: node), at: startTime[node].nanoseconds)
        }

        let providerNodes = Array(0..<count).shuffled(using: &rng).prefix(config.providers)
        let interval = UInt64(max(1, config.refreshInterval.nanosecondsClamped))
        for (index, node) in providerNodes.enumerated() {
            let info = ProviderInfo(
                node: node, country: Self.countries.randomElement(using: &rng)!,
                ipType: ServiceProposal.IPType.allCases.randomElement(using: &rng)!,
                pricePerGiB: UInt64.random(in: 500_000...5_000_000, using: &rng),
                pricePerMinute: UInt64.random(in: 0...20_000, using: &rng),
                capacity: UInt32.random(in: 4...64, using: &rng),
                endpoint: Endpoint(
                    address: .v4(UInt32.random(in: 0x0100_0000...0xDFFF_FFFF, using: &rng)),
                    port: UInt16.random(in: 1024...65535, using: &rng)))
            providers.append(info)
            providerOfKey[keys[node]] = index
            published.append([])
            let first = (Instant.zero + config.warmUp).nanoseconds + UInt64.random(in: 0..<interval, using: &rng)
            queue.push(.publish(provider: index), at: first)
        }

        windowStart = Instant.zero + config.warmUp + config.refreshInterval
        windowEnd = windowStart + config.measurementWindow
        let window = config.measurementWindow.nanosecondsClamped
        for index in 0..<config.trackedMessages {
            let offset = window / Int64(max(1, config.trackedMessages)) * Int64(index)
            trackTimes.append(windowStart + .nanoseconds(offset))
        }
        let providerSet = Set(providerNodes)
        for _ in 0..<config.forgeries {
            let at = windowStart.nanoseconds + UInt64.random(in: 0..<UInt64(max(1, window)), using: &rng)
            var node = Int.random(in: 0..<count, using: &rng)
            while providerSet.contains(node) && providerSet.count < count {
                node = Int.random(in: 0..<count, using: &rng)
            }
            queue.push(.forge(node: node), at: at)
        }
        for joiner in 0..<config.joiners {
            queue.push(.join(joiner: joiner), at: (windowEnd + config.joinSpacing * joiner).nanoseconds)
        }

        runEvents(until: windowStart)
        snapshotMeshes()
        let lastTrack = (trackTimes.last ?? windowStart) + config.duplicateSettle + .seconds(5)
        let lastJoin = windowEnd + config.joinSpacing * max(0, config.joiners - 1) + config.joinTimeout
        runEvents(until: max(windowEnd, lastTrack, lastJoin))
        return result()
    }

    // MARK: - Events

    private mutating func runEvents(until deadline: Instant) {
        while let next = queue.nextTime, next <= deadline.nanoseconds {
            let (time, event) = queue.pop()!
            now = Instant(nanoseconds: time)
            eventsProcessed += 1
            switch event {
            case .start(let node): startNode(node)
            case .connect(let dialer, let listener): connect(dialer, listener)
            case .gossip(let bytes, let from, let to): receiveGossip(bytes, from: from, to: to)
            case .timer(let node, let generation):
                guard isUp[node], self.generation[node] == generation else { continue }
                armed[node] = nil
                let effects = routers[node].router.tick(now: now, rng: &rng)
                apply(effects, from: node)
            case .publish(let provider): publish(provider)
            case .forge(let node): forge(node)
            case .countDuplicates(let tracked): countDuplicates(tracked)
            case .join(let joiner): join(joiner)
            case .sync(let bytes, let from, let to): receiveSync(bytes, from: from, to: to)
            case .syncTimer(let joiner, let generation):
                guard joins[joiner].generation == generation else { continue }
                joins[joiner].armed = nil
                let effects = joins[joiner].client.tick(now: now)
                applySync(effects, joiner: joiner)
            }
        }
        if now < deadline { now = deadline }
    }

    /// Joins the topic and dials `outboundPeers` random other nodes.
    private mutating func startNode(_ node: Int) {
        isUp[node] = true
        let effects = routers[node].router.subscribe(.proposals, now: now, rng: &rng)
        apply(effects, from: node)
        var targets = Set<Int>()
        let limit = min(config.outboundPeers, config.nodes - 1)
        while targets.count < limit {
            let target = Int.random(in: 0..<config.nodes, using: &rng)
            if target != node { targets.insert(target) }
        }
        for target in targets.sorted() {
            // A node not started yet is reached once it is up; the handshake takes one round trip.
            let at = max(now, startTime[target]).nanoseconds + links.roundTrip(node, target, rng: &rng)
            queue.push(.connect(dialer: node, listener: target), at: at)
        }
    }

    private mutating func connect(_ dialer: Int, _ listener: Int) {
        var effects = routers[listener].router.addPeer(keys[dialer], colocationKey: nil, outbound: false, now: now)
        apply(effects, from: listener)
        effects = routers[dialer].router.addPeer(keys[listener], colocationKey: nil, outbound: true, now: now)
        apply(effects, from: dialer)
        if dialer >= config.nodes { joinerConnected(dialer - config.nodes, to: listener) }
    }

    private mutating func receiveGossip(_ bytes: [UInt8], from: Int, to: Int) {
        guard isUp[to] else { return }
        countIn(bytes.count, at: to)
        let box = routers[to]
        var generator = rng
        let effects = box.router.receive(bytes, from: keys[from], now: now, rng: &generator) { topic, data in
            self.validate(topic: topic, data: data, at: to)
        }
        rng = generator
        apply(effects, from: to)
    }

    private mutating func apply(_ effects: [GossipEffect], from node: Int) {
        for effect in effects {
            switch effect {
            case .send(let bytes, let peer):
                guard let target = byKey[peer] else { continue }
                countOut(bytes.count, at: node)
                transmit(.gossip(bytes, from: node, to: target), from: node, to: target)
            case .deliver(_, _, let id, _):
                if let index = trackedIDs[id], node < config.nodes,
                    tracks[index].firstDelivery[node] == .max
                {
                    tracks[index].firstDelivery[node] = now.nanoseconds - tracks[index].publishedAt.nanoseconds
                }
                if forgedIDs.contains(id) { forgedDeliveries += 1 }
            case .peerGraylisted:
                break
            }
        }
        arm(node)
    }

    private mutating func arm(_ node: Int) {
        guard isUp[node], let deadline = routers[node].router.nextDeadline else { return }
        let at = deadline.nanoseconds > now.nanoseconds ? deadline.nanoseconds : now.nanoseconds + 1_000_000
        if let current = armed[node], current <= at { return }
        generation[node] += 1
        armed[node] = at
        queue.push(.timer(node: node, generation: generation[node]), at: at)
    }

    // MARK: - Validation

    /// What the node's validator would say about `data` at `node` now (see the header comment).
    private mutating func validate(topic: Topic, data: [UInt8], at node: Int) -> ValidationResult {
        guard topic == .proposals else { return .reject }
        if node >= config.nodes { return joinerInsert(data, joiner: node - config.nodes, fromGossip: true) }
        let verdict: Verdict
        if let cached = verdicts[data] {
            verdict = cached
        } else {
            verdict = verdictOf(data)
            verdicts[data] = verdict
        }
        guard case .offer(let provider, let round, let issuedAt, let expiresAt) = verdict else { return .reject }
        guard expiresAt > now, issuedAt <= now + SignedProposal.maximumClockSkew else { return .reject }
        let slot = node * config.providers + provider
        // The store's rule for offers: a higher seq replaces, anything else is stale (ignored).
        guard round > held[slot] else { return .ignore }
        held[slot] = round
        return .accept
    }

    /// Decodes and verifies once; the time rules are checked per call by the caller.
    private func verdictOf(_ data: [UInt8]) -> Verdict {
        let signed: SignedProposal
        do throws(ProposalError) {
            signed = try SignedProposal(decoding: data)
            try signed.verify(networkID: config.networkID, now: signed.issuedAt)
        } catch {
            return .invalid
        }
        guard case .offer = signed.content, let provider = providerOfKey[signed.provider],
            let round = published[provider].firstIndex(of: signed)
        else {
            // Validly signed but not one of ours: cannot happen in this scenario.
            return .invalid
        }
        return .offer(
            provider: provider, round: UInt32(round + 1), issuedAt: signed.issuedAt, expiresAt: signed.expiresAt)
    }

    // MARK: - Publishing

    private mutating func publish(_ index: Int) {
        let info = providers[index]
        let offer = ServiceProposal(
            provider: keys[info.node], seq: now.nanoseconds, issuedAt: now, expiresAt: now + config.proposalLifetime,
            serviceType: Self.serviceType, location: .init(country: info.country, ipType: info.ipType),
            pricePerGiB: info.pricePerGiB, pricePerMinute: info.pricePerMinute, capacity: info.capacity,
            contacts: .init(direct: [info.endpoint]))
        let signed: SignedProposal
        do throws(ProposalError) {
            signed = try SignedProposal.make(offer: offer, identity: identities[info.node], networkID: config.networkID)
        } catch {
            preconditionFailure("the simulated offer breaks a rule: \(error)")
        }
        published[index].append(signed)
        held[info.node * config.providers + index] = UInt32(published[index].count)
        let data = signed.encoded()
        let (id, effects) = routers[info.node].router.publish(data, topic: .proposals, now: now, rng: &rng)

        if now >= windowStart, now < windowEnd {
            publishesInWindow += 1
            proposalBytes.append(data.count)
        }
        if tracks.count < trackTimes.count, now >= trackTimes[tracks.count] {
            var firstDelivery = [UInt64](repeating: .max, count: config.nodes)
            firstDelivery[info.node] = 0
            trackedIDs[id] = tracks.count
            queue.push(.countDuplicates(tracked: tracks.count), at: (now + config.duplicateSettle).nanoseconds)
            tracks.append(TrackState(id: id, publishedAt: now, size: data.count, firstDelivery: firstDelivery))
        }
        apply(effects, from: info.node)
        queue.push(.publish(provider: index), at: (now + config.refreshInterval).nanoseconds)
    }

    /// A node publishes a live offer with its price changed: the signature no longer matches.
    private mutating func forge(_ node: Int) {
        guard let index = (0..<providers.count).filter({ !published[$0].isEmpty }).randomElement(using: &rng),
            var signed = published[index].last, case .offer(var offer) = signed.content
        else { return }
        offer.pricePerGiB /= 2
        signed.content = .offer(offer)
        let data = signed.encoded()
        let (id, effects) = routers[node].router.publish(data, topic: .proposals, now: now, rng: &rng)
        forgedIDs.insert(id)
        forgeryCount += 1
        apply(effects, from: node)
    }

    private mutating func countDuplicates(_ index: Int) {
        let id = tracks[index].id
        tracks[index].duplicates = (0..<config.nodes).compactMap { routers[$0].router.duplicates(of: id) }
    }

    // MARK: - Joining

    private mutating func join(_ index: Int) {
        let node = config.nodes + index
        isUp[node] = true
        startTime[node] = now
        var live = Set<Int>()
        for provider in providers.indices where (published[provider].last?.expiresAt ?? .zero) > now {
            live.insert(provider)
        }
        joins.append(
            JoinState(
                node: node, startedAt: now, client: ProposalSyncClient(config: config.sync), live: live.count,
                missing: live))
        let effects = routers[node].router.subscribe(.proposals, now: now, rng: &rng)
        apply(effects, from: node)
        var targets = Set<Int>()
        while targets.count < min(config.outboundPeers, config.nodes) {
            targets.insert(Int.random(in: 0..<config.nodes, using: &rng))
        }
        for target in targets.sorted() {
            let at = now.nanoseconds + links.roundTrip(node, target, rng: &rng)
            queue.push(.connect(dialer: node, listener: target), at: at)
        }
    }

    private mutating func joinerConnected(_ index: Int, to peer: Int) {
        joins[index].connected.append(keys[peer])
        let effects: [SyncEffect]
        if joins[index].syncStarted {
            effects = joins[index].client.addPeers([keys[peer]], now: now)
        } else if joins[index].connected.count >= min(config.syncAfterConnections, config.outboundPeers) {
            joins[index].syncStarted = true
            effects = joins[index].client.start(peers: joins[index].connected, now: now, rng: &rng)
        } else {
            effects = []
        }
        applySync(effects, joiner: index)
    }

    private mutating func receiveSync(_ bytes: [UInt8], from: Int, to: Int) {
        guard let message = try? ProposalSyncMessage(decoding: bytes) else { return }
        if to >= config.nodes {
            let index = to - config.nodes
            joins[index].syncBytesIn += UInt64(bytes.count + config.datagramOverhead)
            let (items, effects) = joins[index].client.handle(message, from: keys[from], now: now)
            for item in items { _ = joinerInsert(item, joiner: index, fromGossip: false) }
            applySync(effects, joiner: index)
            return
        }
        // A node answers from the offers it accepted, in a real store built now.
        var store = ProposalStore()
        for provider in providers.indices {
            let round = Int(held[to * config.providers + provider])
            if round > 0 { _ = store.insert(published[provider][round - 1], now: now) }
        }
        for reply in store.respond(to: message, now: now) {
            transmit(.sync(reply.encoded(), from: to, to: from), from: to, to: from)
        }
    }

    private mutating func applySync(_ effects: [SyncEffect], joiner index: Int) {
        let node = joins[index].node
        for case .send(let message, let peer) in effects {
            guard let target = byKey[peer] else { continue }
            transmit(.sync(message.encoded(), from: node, to: target), from: node, to: target)
        }
        if joins[index].client.isComplete, joins[index].syncComplete == nil { joins[index].syncComplete = now }
        guard let deadline = joins[index].client.nextDeadline else { return }
        let at = max(deadline.nanoseconds, now.nanoseconds + 1)
        if let current = joins[index].armed, current <= at { return }
        joins[index].generation += 1
        joins[index].armed = at
        queue.push(.syncTimer(joiner: index, generation: joins[index].generation), at: at)
    }

    /// Verifies and stores a proposal at a joiner (from a sync page or from gossip), as the node
    /// does; returns the gossip verdict.
    private mutating func joinerInsert(_ data: [UInt8], joiner index: Int, fromGossip: Bool) -> ValidationResult {
        let signed: SignedProposal
        do throws(ProposalError) {
            signed = try SignedProposal(decoding: data)
            try signed.verify(networkID: config.networkID, now: now)
        } catch {
            return .reject
        }
        switch joins[index].store.insert(signed, now: now) {
        case .added, .replaced, .withdrawn, .tombstoneStored:
            if let provider = providerOfKey[signed.provider], joins[index].missing.remove(provider) != nil {
                let live = joins[index].live
                let held = live - joins[index].missing.count
                if joins[index].hold99 == nil, held * 100 >= live * 99 { joins[index].hold99 = now }
                if joins[index].hold100 == nil, joins[index].missing.isEmpty { joins[index].hold100 = now }
            }
            return .accept
        case .duplicate, .stale:
            return .ignore
        case .refused(let error):
            return error == .storeFull || error == .overQuota ? .ignore : .reject
        }
    }

    // MARK: - Links

    /// Sends one datagram over the links: lost with `lossRate`, else delivered in order.
    private mutating func transmit(_ event: Event, from: Int, to: Int) {
        sent += 1
        guard let at = links.transmit(from: from, to: to, now: now.nanoseconds, rng: &rng) else {
            lost += 1
            return
        }
        queue.push(event, at: at)
    }

    private mutating func countOut(_ size: Int, at node: Int) {
        guard now >= windowStart, now < windowEnd else { return }
        bytesOut[node] += UInt64(size + config.datagramOverhead)
        datagramsInWindow += 1
    }

    private mutating func countIn(_ size: Int, at node: Int) {
        guard now >= windowStart, now < windowEnd else { return }
        bytesIn[node] += UInt64(size + config.datagramOverhead)
    }

    // MARK: - Results

    private mutating func snapshotMeshes() {
        let meshes = (0..<config.nodes).map { routers[$0].router.mesh(.proposals).count }
        let peers = (0..<config.nodes).map { routers[$0].router.peers.count }
        meshSnapshot = (
            Double(peers.reduce(0, +)) / Double(config.nodes), Double(meshes.reduce(0, +)) / Double(config.nodes),
            meshes.min() ?? 0, meshes.max() ?? 0
        )
    }

    private func result() -> GossipSimResult {
        let count = config.nodes
        var tracked: [GossipSimResult.Tracked] = []
        var allDuplicates: [Int] = []
        for track in tracks {
            let delays = track.firstDelivery.sorted()
            func reach(_ share: Double) -> Double? {
                let rank = min(count, max(1, Int((share * Double(count)).rounded(.up))))
                let delay = delays[rank - 1]
                return delay == .max ? nil : Double(delay) / 1e6
            }
            allDuplicates += track.duplicates
            tracked.append(
                .init(
                    publishedAt: track.publishedAt.since(.zero).seconds, size: track.size, reach50Ms: reach(0.5),
                    reach99Ms: reach(0.99), reach100Ms: reach(1), missing: delays.filter { $0 == .max }.count,
                    duplicatesMean: Double(track.duplicates.reduce(0, +)) / Double(max(1, track.duplicates.count)),
                    duplicatesMax: track.duplicates.max() ?? 0))
        }
        allDuplicates.sort()

        let minutes = config.measurementWindow.seconds / 60
        let inRates = (0..<count).map { Double(bytesIn[$0]) / minutes }.sorted()
        let outRates = (0..<count).map { Double(bytesOut[$0]) / minutes }.sorted()

        let joinResults = joins.map { join -> GossipSimResult.Join in
            func since(_ instant: Instant?) -> Double? { instant.map { $0.since(join.startedAt).seconds * 1000 } }
            return .init(
                live: join.live, held: join.live - join.missing.count, hold99Ms: since(join.hold99),
                hold100Ms: since(join.hold100), syncCompleteMs: since(join.syncComplete),
                syncPages: join.client.counters.pagesReceived, syncRequests: join.client.counters.requestsSent,
                syncBytesIn: join.syncBytesIn)
        }

        var counters = GossipCounters()
        for box in routers {
            let c = box.router.counters
            counters.invalid += c.invalid
            counters.ihaveSent += c.ihaveSent
            counters.iwantSent += c.iwantSent
            counters.iwantServed += c.iwantServed
            counters.brokenPromises += c.brokenPromises
            counters.graftsSent += c.graftsSent
            counters.prunesSent += c.prunesSent
            counters.graylistings += c.graylistings
        }

        return GossipSimResult(
            nodes: count, providers: config.providers, seed: config.seed, lossRate: config.link.lossRate,
            peersMean: meshSnapshot.peers, meshMean: meshSnapshot.mean, meshMin: meshSnapshot.min,
            meshMax: meshSnapshot.max, trackedCount: tracked.count,
            trackedReachingAll: tracked.filter { $0.reach100Ms != nil }.count,
            reach50: Self.spread(tracked.compactMap(\.reach50Ms)),
            reach99: Self.spread(tracked.compactMap(\.reach99Ms)),
            reach100: Self.spread(tracked.compactMap(\.reach100Ms)),
            duplicatesMean: Double(allDuplicates.reduce(0, +)) / Double(max(1, allDuplicates.count)),
            duplicatesP99: percentile(allDuplicates, 0.99) ?? 0, duplicatesMax: allDuplicates.last ?? 0,
            bytesInPerMinuteMean: inRates.reduce(0, +) / Double(count),
            bytesInPerMinuteP99: percentile(inRates, 0.99) ?? 0,
            bytesOutPerMinuteMean: outRates.reduce(0, +) / Double(count),
            bytesOutPerMinuteP99: percentile(outRates, 0.99) ?? 0,
            datagramsPerNodePerMinute: Double(datagramsInWindow) / Double(count) / minutes,
            publishesPerMinute: Double(publishesInWindow) / minutes,
            proposalBytesMean: Double(proposalBytes.reduce(0, +)) / Double(max(1, proposalBytes.count)),
            joins: joinResults, join99: Self.spread(joinResults.compactMap(\.hold99Ms)),
            join100: Self.spread(joinResults.compactMap(\.hold100Ms)),
            joinersComplete: joinResults.filter { $0.hold100Ms != nil }.count, forgeries: forgeryCount,
            forgedDeliveries: forgedDeliveries, invalidMessages: counters.invalid, ihaveSent: counters.ihaveSent,
            iwantSent: counters.iwantSent, iwantServed: counters.iwantServed, brokenPromises: counters.brokenPromises,
            graftsSent: counters.graftsSent, prunesSent: counters.prunesSent, graylistings: counters.graylistings,
            datagramsSent: sent, datagramsLost: lost, eventsProcessed: eventsProcessed,
            virtualSeconds: now.since(.zero).seconds, tracked: tracked)
    }

    private static func spread(_ values: [Double]) -> GossipSimResult.Spread {
        let sorted = values.sorted()
        return .init(p50: percentile(sorted, 0.5) ?? 0, p99: percentile(sorted, 0.99) ?? 0, max: sorted.last ?? 0)
    }
}
