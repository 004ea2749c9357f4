// The market part of the node: signed service proposals spread by gossip, held in a bounded store,
// fetched in bulk by a joining node, and published by a provider (DESIGN §4, docs/architecture.md
// §Market).
//
// - Gossip peers. Every kept peer (bootstrap, gossip neighbour, relay) joins the gossip router when
//   its session comes up; a peer that sends us gossip first joins as inbound and is kept too, so its
//   loss is noticed. The node keeps `outboundGossipPeers` outbound neighbours, picked at random from
//   the DHT routing table; a neighbour that does not answer within `gossipDialTimeout` is replaced.
// - Validation. A published proposal is decoded, verified (signature, version, limits, times) and
//   inserted into the store before the router forwards it: new, newer or withdrawing proposals are
//   accepted; duplicates, older seqs (replays) and expired or not-yet-valid ones are ignored (a peer
//   forwarding near the expiry is not malicious); everything else is rejected, which costs the
//   sender score and gets a flooder graylisted.
// - Join sync. Once `syncStartPeers` gossip peers are up (or `syncStartDelay` after the first), the
//   sync client fetches the live set in range-paged bursts from them (ProposalSyncClient); every item
//   is verified like a gossiped one. Sync requests from peers are answered from the store, rate
//   limited per peer.
// - Provider role. With `provide` set, the node signs its proposal, stores and flood-publishes it,
//   refreshes it every `refreshInterval` (new seq), publishes again as its gossip mesh forms, indexes itself in the DHT (provider index record), and on `withdraw` publishes a tombstone.

import Gossip
import Kademlia
import Proposals
import UmbraCore

/// What a provider offers (`umbra up --provide`).
public struct ProvideConfig: Sendable, Equatable {
    public var serviceType = "ip-tunnel"
    public var location = ServiceProposal.Location(country: "ZZ")
    public var pricePerGiB: UInt64 = 0
    public var pricePerMinute: UInt64 = 0
    public var capacity: UInt32 = 64
    public var access: ServiceProposal.AccessPolicy = .open

    public init() {}
}

public struct MarketConfig: Sendable {
    public var gossip = GossipConfig()
    /// Outbound gossip neighbours kept (besides the bootstrap peers, which count).
    public var outboundGossipPeers = 8
    /// A gossip neighbour whose session is not up after this is given up and replaced.
    public var gossipDialTimeout: Duration = .seconds(5)
    /// How often the neighbour set is topped up.
    public var maintenanceInterval: Duration = .seconds(2)
    public var store = ProposalStoreConfig()
    public var sync = ProposalSyncConfig()
    /// The join sync starts once this many gossip peers are up, or `syncStartDelay` after the first.
    public var syncStartPeers = 3
    public var syncStartDelay: Duration = .seconds(1)
    /// Sync requests answered per peer per minute (each is answered by a burst of pages).
    public var syncRequestsPerMinute = 64
    /// Peers whose sync request rate is tracked at most.
    public var maximumSyncRequesters = 1024
    /// Set to provide a service.
    public var provide: ProvideConfig?
    public var refreshInterval = SignedProposal.refreshInterval
    public var proposalLifetime = SignedProposal.defaultLifetime
    /// A provider whose contacts change publishes again, at most this often.
    public var minimumRepublishInterval: Duration = .seconds(2)
    /// Private and loopback peers share no IP-colocation penalty (test networks on one host).
    public var exemptPrivateColocation = true

    public init() {}
}

/// Counters of the market part.
public struct MarketCounters: Sendable, Equatable {
    public var proposalsAccepted: UInt64 = 0
    public var proposalsIgnored: UInt64 = 0
    public var proposalsRejected: UInt64 = 0
    public var syncItemsAccepted: UInt64 = 0
    public var syncItemsRefused: UInt64 = 0
    public var syncRequestsServed: UInt64 = 0
    public var syncRequestsRefused: UInt64 = 0
    public var syncPagesSent: UInt64 = 0
    public var syncMalformed: UInt64 = 0
    public var gossipDials: UInt64 = 0
    public var gossipDialsAbandoned: UInt64 = 0
    public var proposalsPublished: UInt64 = 0
    public var withdrawalsPublished: UInt64 = 0
    public init() {}
}

/// The provider's own offer, as `umbra status` shows it.
public struct ProviderStatus: Sendable, Equatable {
    public var proposal: ServiceProposal?
    public var withdrawn: Bool
    public var nextRefresh: Instant?
}

/// The market part at a glance.
public struct MarketStatus: Sendable {
    public var gossipPeers: [GossipPeerInfo]
    public var meshSize: Int
    public var gossipCounters: GossipCounters
    public var proposals: Int
    public var tombstones: Int
    public var storeCounters: ProposalStore.Counters
    public var syncPhase: ProposalSyncClient.Phase
    public var syncCounters: ProposalSyncClient.Counters
    public var syncStartedAt: Instant?
    public var syncFinishedAt: Instant?
    public var counters: MarketCounters
    public var provider: ProviderStatus?
}

struct MarketState: Sendable {
    var gossip: GossipRouter
    var store: ProposalStore
    var sync: ProposalSyncClient
    var counters = MarketCounters()
    var firstPeerAt: Instant?
    var syncStartedAt: Instant?
    var syncFinishedAt: Instant?
    var nextMaintenance: Instant?
    /// Gossip neighbours dialled and not up yet, with when they were dialled.
    var pendingGossipDials: [PublicKey: Instant] = [:]
    /// Sync requests per peer in the current minute.
    var syncRequestWindows: [PublicKey: (start: Instant, count: Int)] = [:]
    // Provider role.
    var own: SignedProposal?
    var lastSeq: UInt64 = 0
    var nextRefresh: Instant?
    var withdrawn = false
    var indexPublished = false
    var republishedAtMeshSizes: Set<Int> = []
    /// Proposals asked of their providers directly (found in the DHT index): request id → provider.
    var directFetches: [UInt32: (provider: PublicKey, at: Instant)] = [:]

    init(identity: Identity, config: MarketConfig) {
        gossip = GossipRouter(localPeer: identity.publicKey, config: config.gossip)
        store = ProposalStore(config: config.store)
        sync = ProposalSyncClient(config: config.sync)
    }
}

extension NodeInstance {
    // MARK: - Hooks

    mutating func marketStart(now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]) {
        absorb(market.gossip.subscribe(.proposals, now: now, rng: &rng), now: now, rng: &rng, into: &effects)
        market.nextMaintenance = now + config.market.maintenanceInterval
        if config.market.provide != nil { market.nextRefresh = now }
    }

    mutating func marketTick(now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]) {
        absorb(market.gossip.tick(now: now, rng: &rng), now: now, rng: &rng, into: &effects)
        republishAsMeshForms(now: now, rng: &rng, into: &effects)
        absorbSync(market.sync.tick(now: now), now: now, rng: &rng, into: &effects)
        noteSyncProgress(now: now)
        startSyncIfDue(now: now, rng: &rng, into: &effects)
        if let due = market.nextMaintenance, due <= now {
            market.nextMaintenance = now + config.market.maintenanceInterval
            _ = market.store.expire(now: now)
            maintainGossipPeers(now: now, rng: &rng, into: &effects)
        }
        if let due = market.nextRefresh, due <= now, !market.withdrawn {
            publishOwnProposal(now: now, rng: &rng, into: &effects)
        } else if let own = market.own?.offer, !market.withdrawn, own.contacts != proposalContacts,
            now.since(own.issuedAt) >= config.market.minimumRepublishInterval
        {
            // Reachability or relays changed (a NATed provider got its reservations): say so now.
            publishOwnProposal(now: now, rng: &rng, into: &effects)
        }
    }

    var marketDeadline: Instant? {
        var candidates: [Instant] = []
        if let deadline = market.gossip.nextDeadline { candidates.append(deadline) }
        if let deadline = market.sync.nextDeadline { candidates.append(deadline) }
        if let deadline = market.nextMaintenance { candidates.append(deadline) }
        if let deadline = market.nextRefresh, !market.withdrawn { candidates.append(deadline) }
        if market.syncStartedAt == nil, let first = market.firstPeerAt {
            candidates.append(first + config.market.syncStartDelay)
        }
        return candidates.min()
    }

    mutating func marketPeerUp(
        _ key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        market.pendingGossipDials.removeValue(forKey: key)
        guard dials[key] != nil else { return }  // on-demand sessions (DHT queries) do not gossip
        addGossipPeer(key, outbound: true, now: now, rng: &rng, into: &effects)
    }

    mutating func marketPeerDown(
        _ key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        market.pendingGossipDials.removeValue(forKey: key)
        if market.gossip.peers.contains(key) {
            market.gossip.removePeer(key, now: now)
            absorbSync(market.sync.peerLost(key, now: now), now: now, rng: &rng, into: &effects)
        }
        // A gossip neighbour is replaced rather than redialled; an inbound one is let go.
        removeDialTarget(key, kind: .gossip)
        if dials[key] == nil { sessions.setPersistent(key, false) }
    }

    mutating func marketGossip(
        _ payload: [UInt8], from key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        if !market.gossip.peers.contains(key) {
            // An inbound gossip peer: kept (so that its loss is reported) while it gossips with us.
            addGossipPeer(key, outbound: false, now: now, rng: &rng, into: &effects)
            guard market.gossip.peers.contains(key) else { return }  // refused (peer cap)
            sessions.setPersistent(key, true)
        }
        // The store is moved out for the validator (the router and the store are both parts of
        // `self`); moving, not copying, keeps it uniquely referenced.
        var store = market.store
        market.store = ProposalStore(config: ProposalStoreConfig(capacity: 0))
        var accepted: UInt64 = 0
        var ignored: UInt64 = 0
        var rejected: UInt64 = 0
        let networkID = config.sessions.networkID
        let gossipEffects = market.gossip.receive(payload, from: key, now: now, rng: &rng) { topic, data in
            guard topic == .proposals else { return .reject }
            let verdict = Self.validation(of: store.verifyAndInsert(data, networkID: networkID, now: now))
            switch verdict {
            case .accept: accepted += 1
            case .ignore: ignored += 1
            case .reject: rejected += 1
            }
            return verdict
        }
        market.store = store
        market.counters.proposalsAccepted += accepted
        market.counters.proposalsIgnored += ignored
        market.counters.proposalsRejected += rejected
        absorb(gossipEffects, now: now, rng: &rng, into: &effects)
    }

    mutating func marketSync(
        _ payload: [UInt8], from key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        let message: ProposalSyncMessage
        do { message = try ProposalSyncMessage(decoding: payload) } catch {
            market.counters.syncMalformed += 1
            counters.framesRejected += 1
            effects.append(.event(.frameRejected(key, reason: "proposal sync: \(error)")))
            return
        }
        switch message {
        case .request:
            guard admitSyncRequest(from: key, now: now) else {
                market.counters.syncRequestsRefused += 1
                return
            }
            market.counters.syncRequestsServed += 1
            for page in market.store.respond(to: message, now: now) {
                market.counters.syncPagesSent += 1
                sendFrame(.proposalSync, page.encoded(), to: key, now: now, rng: &rng, into: &effects)
            }
        case .page(let page) where market.directFetches[page.requestID]?.provider == key:
            // The answer to `fetchProposals`: only the provider's own entries are taken.
            if page.isLast { market.directFetches.removeValue(forKey: page.requestID) }
            let networkID = config.sessions.networkID
            for item in page.items {
                guard (try? SignedProposal(decoding: item))?.provider == key else { continue }
                switch Self.validation(of: market.store.verifyAndInsert(item, networkID: networkID, now: now)) {
                case .accept, .ignore: market.counters.syncItemsAccepted += 1
                case .reject: market.counters.syncItemsRefused += 1
                }
            }
        case .page:
            let (items, syncEffects) = market.sync.handle(message, from: key, now: now)
            let networkID = config.sessions.networkID
            for item in items {
                switch Self.validation(of: market.store.verifyAndInsert(item, networkID: networkID, now: now)) {
                case .accept, .ignore: market.counters.syncItemsAccepted += 1
                case .reject: market.counters.syncItemsRefused += 1
                }
            }
            absorbSync(syncEffects, now: now, rng: &rng, into: &effects)
            noteSyncProgress(now: now)
        }
    }

    // MARK: - Commands and queries

    /// Live proposals matching the filters, cheapest first, then by our measured RTT to the provider.
    public func proposals(
        serviceType: String, country: String? = nil, maxPricePerGiB: UInt64? = nil,
        maxPricePerMinute: UInt64? = nil, now: Instant, limit: Int = .max
    ) -> [ServiceProposal] {
        market.store.query(
            serviceType: serviceType, country: country, maxPricePerGiB: maxPricePerGiB,
            maxPricePerMinute: maxPricePerMinute, consumer: identity.publicKey, now: now, limit: limit,
            rtt: { rtts[$0] })
    }

    /// Asks `provider` (at `endpoint`, e.g. from its peer record) for its own proposal of
    /// `serviceType`, for a provider found in the DHT's provider index before gossip brought its
    /// offer. The request rides in the handshake (0-RTT); the answer is verified and stored like a
    /// gossiped proposal.
    public mutating func fetchProposal(
        of provider: PublicKey, serviceType: String, at endpoint: Endpoint, now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        guard provider != identity.publicKey, !endpoint.isRelayPath else { return [] }
        market.directFetches = market.directFetches.filter { now.since($0.value.at) < .seconds(10) }
        guard market.directFetches.count < 256 else { return [] }
        if sessions.snapshot(of: provider) == nil {
            guard sessions.addPeer(provider, endpoint: endpoint) else { return [] }
        }
        // Random ids; a page counts as this answer only when its id and its sender both match.
        let requestID = UInt32(truncatingIfNeeded: rng.next())
        market.directFetches[requestID] = (provider, now)
        let key = ProposalID(provider: provider, serviceType: serviceType).syncKey
        guard let range = KeyRange(key, key) else { return [] }
        let request = ProposalSyncMessage.request(.init(requestID: requestID, range: range, maxPages: 1))
        var effects: [NodeEffect] = []
        sendFrame(.proposalSync, request.encoded(), to: provider, early: true, now: now, rng: &rng, into: &effects)
        return effects
    }

    /// Whether the store holds a live offer of `provider` for `serviceType`.
    public func holdsProposal(of provider: PublicKey, serviceType: String, now: Instant) -> Bool {
        market.store.offer(for: ProposalID(provider: provider, serviceType: serviceType), now: now) != nil
    }

    /// The RTT measured to a peer (pings of kept peers), if any.
    public func measuredRTT(to peer: PublicKey) -> Duration? { rtts[peer] }

    /// Withdraws this provider's proposal: a signed tombstone is stored and flood-published, and no
    /// refresh follows. Called on a clean shutdown.
    public mutating func withdraw(now: Instant, rng: inout some RandomNumberGenerator) -> [NodeEffect] {
        guard let own = market.own, !market.withdrawn else { return [] }
        market.withdrawn = true
        market.nextRefresh = nil
        market.lastSeq = max(market.lastSeq + 1, own.seq + 1)
        // The tombstone outlives every offer it withdraws (each expires within `proposalLifetime`).
        let withdrawal = ProposalWithdrawal(
            provider: identity.publicKey, seq: market.lastSeq, issuedAt: now,
            expiresAt: now + config.market.proposalLifetime, serviceType: own.serviceType)
        guard
            let signed = try? SignedProposal.make(
                withdrawal: withdrawal, identity: identity, networkID: config.sessions.networkID)
        else { return [] }
        _ = market.store.insert(signed, now: now)
        market.counters.withdrawalsPublished += 1
        var effects: [NodeEffect] = []
        absorb(
            market.gossip.publish(signed.encoded(), topic: .proposals, now: now, rng: &rng).effects, now: now,
            rng: &rng, into: &effects)
        return effects
    }

    public var marketStatus: MarketStatus {
        MarketStatus(
            gossipPeers: market.gossip.peerInfo(), meshSize: market.gossip.mesh(.proposals).count,
            gossipCounters: market.gossip.counters, proposals: market.store.count,
            tombstones: market.store.tombstoneCount, storeCounters: market.store.counters,
            syncPhase: market.sync.phase, syncCounters: market.sync.counters, syncStartedAt: market.syncStartedAt,
            syncFinishedAt: market.syncFinishedAt, counters: market.counters,
            provider: config.market.provide.map { _ in
                ProviderStatus(
                    proposal: market.own?.offer, withdrawn: market.withdrawn, nextRefresh: market.nextRefresh)
            })
    }

    // MARK: - Internals

    /// How a store outcome maps to a gossip verdict (see the header).
    static func validation(of outcome: ProposalStore.InsertOutcome) -> ValidationResult {
        switch outcome {
        case .added, .replaced, .withdrawn, .tombstoneStored: .accept
        case .duplicate, .stale: .ignore
        case .refused(let error):
            switch error {
            case .expired, .notYetValid, .storeFull, .overQuota: .ignore
            default: .reject
            }
        }
    }

    private mutating func addGossipPeer(
        _ key: PublicKey, outbound: Bool, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        guard !market.gossip.peers.contains(key) else { return }
        let endpoint = sessions.snapshot(of: key)?.endpoint
        absorb(
            market.gossip.addPeer(key, colocationKey: colocationKey(endpoint), outbound: outbound, now: now),
            now: now, rng: &rng, into: &effects)
        guard market.gossip.peers.contains(key) else { return }
        if market.firstPeerAt == nil { market.firstPeerAt = now }
        if market.syncStartedAt != nil, !market.sync.isFinished {
            absorbSync(market.sync.addPeers([key], now: now), now: now, rng: &rng, into: &effects)
        }
        startSyncIfDue(now: now, rng: &rng, into: &effects)
    }

    /// A provider publishes again as its mesh forms (first peer, then `dLow` or all of its peers):
    /// a publish before the mesh exists reaches only direct peers, which cannot forward it yet.
    private mutating func republishAsMeshForms(
        now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        guard market.own != nil, !market.withdrawn else { return }
        let mesh = market.gossip.mesh(.proposals).count
        let full = min(config.market.gossip.dLow, market.gossip.peers.count)
        for step in [1, full] where mesh >= step && step > 0 && !market.republishedAtMeshSizes.contains(step) {
            market.republishedAtMeshSizes.insert(step)
            publishOwnProposal(now: now, rng: &rng, into: &effects)
            return
        }
    }

    /// The IP-colocation key of an endpoint: its IPv4 address or IPv6 /64; none for relay paths
    /// and (when exempt) private and loopback addresses.
    private func colocationKey(_ endpoint: Endpoint?) -> [UInt8]? {
        guard let endpoint, !endpoint.isRelayPath else { return nil }
        let address = endpoint.address
        if config.market.exemptPrivateColocation, address.isLoopback || address.isPrivate || address.isLinkLocal {
            return nil
        }
        let bytes = address.bytes
        return bytes.count == 4 ? bytes : Array(bytes.prefix(8))
    }

    private mutating func startSyncIfDue(
        now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        guard market.syncStartedAt == nil, let first = market.firstPeerAt else { return }
        let peers = market.gossip.peers
        guard peers.count >= config.market.syncStartPeers || now >= first + config.market.syncStartDelay,
            !peers.isEmpty
        else { return }
        market.syncStartedAt = now
        absorbSync(market.sync.start(peers: peers, now: now, rng: &rng), now: now, rng: &rng, into: &effects)
        noteSyncProgress(now: now)
    }

    private mutating func noteSyncProgress(now: Instant) {
        if market.syncFinishedAt == nil, market.syncStartedAt != nil, market.sync.isFinished {
            market.syncFinishedAt = now
        }
    }

    private mutating func admitSyncRequest(from key: PublicKey, now: Instant) -> Bool {
        var window = market.syncRequestWindows[key] ?? (now, 0)
        if now.since(window.start) >= .seconds(60) { window = (now, 0) }
        guard window.count < config.market.syncRequestsPerMinute else { return false }
        window.count += 1
        if market.syncRequestWindows[key] == nil,
            market.syncRequestWindows.count >= config.market.maximumSyncRequesters
        {
            // Forget windows that are over; when none is, refuse the newcomer.
            market.syncRequestWindows = market.syncRequestWindows.filter { now.since($0.value.start) < .seconds(60) }
            guard market.syncRequestWindows.count < config.market.maximumSyncRequesters else { return false }
        }
        market.syncRequestWindows[key] = window
        return true
    }

    /// Keeps `outboundGossipPeers` outbound neighbours: replaces those that never came up and dials
    /// random DHT contacts for the rest.
    private mutating func maintainGossipPeers(
        now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        for (key, dialled) in market.pendingGossipDials.sorted(by: { Self.keyOrder($0.key, $1.key) })
        where now.since(dialled) >= config.market.gossipDialTimeout {
            market.pendingGossipDials.removeValue(forKey: key)
            market.counters.gossipDialsAbandoned += 1
            removeDialTarget(key, kind: .gossip)
            if !sessions.isEstablished(key) { sessions.removePeer(key) }
        }
        let outbound = market.gossip.peerInfo().filter(\.outbound).count + market.pendingGossipDials.count
        var wanted = config.market.outboundGossipPeers - outbound
        guard wanted > 0 else { return }
        let current = Set(market.gossip.peers)
        var candidates = dht.table.contacts.filter {
            !current.contains($0.publicKey) && dials[$0.publicKey] == nil && $0.publicKey != identity.publicKey
        }
        candidates.shuffle(using: &rng)
        for contact in candidates {
            guard wanted > 0 else { break }
            wanted -= 1
            market.counters.gossipDials += 1
            market.pendingGossipDials[contact.publicKey] = now
            effects += addDialTarget(
                DialTarget(publicKey: contact.publicKey, endpoint: contact.endpoint), kind: .gossip, now: now,
                rng: &rng)
        }
    }

    /// Signs, stores and flood-publishes this provider's current offer, and schedules the refresh.
    private mutating func publishOwnProposal(
        now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        guard let provide = config.market.provide else { return }
        market.nextRefresh = now + config.market.refreshInterval
        // Milliseconds since the epoch grow across restarts; +1 covers two refreshes in one ms.
        market.lastSeq = max(market.lastSeq + 1, UInt64(max(0, now.nanoseconds / 1_000_000)))
        let offer = ServiceProposal(
            provider: identity.publicKey, seq: market.lastSeq, issuedAt: now,
            expiresAt: now + config.market.proposalLifetime, serviceType: provide.serviceType,
            location: provide.location, pricePerGiB: provide.pricePerGiB, pricePerMinute: provide.pricePerMinute,
            capacity: provide.capacity, access: provide.access,
            contacts: proposalContacts)
        guard
            let signed = try? SignedProposal.make(
                offer: offer, identity: identity, networkID: config.sessions.networkID)
        else { return }
        market.own = signed
        _ = market.store.insert(signed, now: now)
        market.counters.proposalsPublished += 1
        absorb(
            market.gossip.publish(signed.encoded(), topic: .proposals, now: now, rng: &rng).effects, now: now,
            rng: &rng, into: &effects)
        if !market.indexPublished, dht.table.count > 0 {
            market.indexPublished = true
            let value = ProviderIndexValue(
                serviceType: provide.serviceType, country: provide.location.country, provider: identity.publicKey)
            effects +=
                publish(
                    kind: .providerIndex,
                    key: RecordKey.providerIndex(serviceType: provide.serviceType, country: provide.location.country),
                    value: value.encoded(), now: now, rng: &rng
                ).effects
        }
    }

    /// How consumers reach this provider: what its peer record says (the reachability verdict's
    /// endpoints and the relays holding reservations for it), else its advertised endpoints.
    var proposalContacts: ServiceProposal.Contacts {
        guard let record = relayPeerRecord else {
            return ServiceProposal.Contacts(direct: Array(config.advertisedEndpoints.prefix(4)))
        }
        return ServiceProposal.Contacts(
            direct: Array(record.endpoints.filter { !$0.isRelayPath }.prefix(4)),
            relays: record.relays.prefix(4).map {
                ServiceProposal.Relay(publicKey: $0.publicKey, endpoint: $0.endpoint)
            })
    }

    mutating func absorb(
        _ gossipEffects: [GossipEffect], now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        for effect in gossipEffects {
            switch effect {
            case .send(let bytes, let peer):
                sendFrame(.gossip, bytes, to: peer, now: now, rng: &rng, into: &effects)
            case .deliver:
                break  // already validated into the store
            case .peerGraylisted(let peer):
                effects.append(.event(.frameRejected(peer, reason: "gossip peer graylisted (score too low)")))
            }
        }
    }

    private mutating func absorbSync(
        _ syncEffects: [SyncEffect], now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        for case .send(let message, let peer) in syncEffects {
            sendFrame(.proposalSync, message.encoded(), to: peer, now: now, rng: &rng, into: &effects)
        }
    }
}
