// The market part of the node: signed service proposals spread by gossip, held in a bounded store,
// fetched in bulk by a joining node, and published by a provider (DESIGN §4, docs/architecture.md
// §Market).
//
// - Gossip. The market owns the `proposals` topic of the gossip part (GossipPart.swift), which
//   also chooses the gossip peers; the market hears of them through notices.
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
//   refreshes it every `refreshInterval` (new seq), publishes again as its gossip mesh forms and
//   when its contacts change, indexes itself in the DHT (provider index record), and on `withdraw`
//   publishes a tombstone.

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
    /// Offers dropped because their provider has no provider bond (with a ledger only).
    public var proposalsUnbonded: UInt64 = 0
    public init() {}
}

/// The provider's own offer, as `umbra status` shows it.
public struct ProviderStatus: Sendable, Equatable {
    public var proposal: ServiceProposal?
    public var withdrawn: Bool
    public var nextRefresh: Instant?
    /// With a ledger: the provider bond the offer needs, when this node's is below it (the offer is
    /// not published, or withdrawn, until then).
    public var bondNeeded: UInt64?
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

public struct MarketPart: NodePart {
    public static let channels: [FrameChannel] = [.proposalSync]
    public static let gossipTopics: [Topic] = [.proposals]

    let identity: Identity
    let config: MarketConfig
    let networkID: String
    public internal(set) var store: ProposalStore
    var sync: ProposalSyncClient
    var counters = MarketCounters()
    /// The gossip peers, as the gossip part reports them (the join sync asks them).
    var gossipPeers: Set<PublicKey> = []
    var firstPeerAt: Instant?
    var syncStartedAt: Instant?
    var syncFinishedAt: Instant?
    var nextExpiry: Instant?
    /// Sync requests per peer in the current minute.
    var syncRequestWindows: [PublicKey: (start: Instant, count: Int)] = [:]
    /// Proposals asked of their providers directly (found in the DHT index): request id → provider.
    var directFetches: [UInt32: (provider: PublicKey, at: Instant)] = [:]
    /// How consumers reach this node, as the relay side last said (`NodeNotice.contactsChanged`).
    var contacts: ServiceProposal.Contacts
    var provider: ProviderRole?
    /// Providers' bonds, with a ledger (nil: no ledger, every signed offer counts).
    public internal(set) var bonds: ProviderBonds?
    /// The ledger part has reported the whole table once. Before that (the ledger is loading) offers
    /// are stored but neither forwarded nor offered, so the join sync at start is not lost.
    var bondsReported = false

    /// The provider role (`MarketConfig.provide` set): the offer and its refresh schedule.
    struct ProviderRole: Sendable {
        var offer: ProvideConfig
        var own: SignedProposal?
        var lastSeq: UInt64 = 0
        /// The next refresh; nil once withdrawn.
        var nextRefresh: Instant?
        /// Withdrawn (a tombstone published): no refresh follows.
        var tombstoned = false
        var indexPublished = false
        var republishedAtMeshSizes: Set<Int> = []
        /// Withdrawn because the provider bond fell below the minimum: published again once bonded.
        var withdrawnForBond = false
    }

    init(identity: Identity, config: NodeConfig) {
        self.identity = identity
        self.config = config.market
        self.networkID = config.sessions.networkID
        self.store = ProposalStore(config: config.market.store)
        self.sync = ProposalSyncClient(config: config.market.sync)
        self.contacts = ServiceProposal.Contacts(direct: Array(config.advertisedEndpoints.prefix(4)))
        self.provider = config.market.provide.map { ProviderRole(offer: $0) }
        // With a ledger, no provider counts until the ledger part reports the bonds.
        self.bonds = config.ledger.genesis.map {
            ProviderBonds(minimum: $0.minimumBonds.provider, bonds: [:], isComplete: true)
        }
    }

    public var nextDeadline: Instant? {
        var candidates: [Instant] = []
        if let deadline = sync.nextDeadline { candidates.append(deadline) }
        if let deadline = nextExpiry { candidates.append(deadline) }
        if let deadline = provider?.nextRefresh { candidates.append(deadline) }
        if syncStartedAt == nil, let first = firstPeerAt { candidates.append(first + config.syncStartDelay) }
        return candidates.min()
    }

    public mutating func handle(
        _ event: PartEvent, node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        switch event {
        case .start:
            nextExpiry = now + config.maintenanceInterval
            if provider != nil { provider!.nextRefresh = now }
        case .tick:
            tick(&node, now: now, rng: &rng)
        case .peerUp, .peerDown, .pathChanged:
            break  // gossip peers come and go through the gossip part's notices
        case .frame(_, let payload, let key):
            receiveSync(payload, from: key, &node, now: now, rng: &rng)
        case .notice(let notice):
            switch notice {
            case .gossipValidate(let topic, let data, let id, _) where topic == .proposals:
                guard admitsProvider(of: data) else {
                    counters.proposalsUnbonded += 1
                    counters.proposalsIgnored += 1
                    if !bondsReported { _ = store.verifyAndInsert(data, networkID: networkID, now: now) }
                    node.notify(.gossipVerdict(id, .ignore))
                    return
                }
                let outcome = store.verifyAndInsert(data, networkID: networkID, now: now)
                let verdict = Self.validation(of: outcome)
                noteStored(outcome, data, &node)
                switch verdict {
                case .accept: counters.proposalsAccepted += 1
                case .ignore, .pending: counters.proposalsIgnored += 1
                case .reject: counters.proposalsRejected += 1
                }
                node.notify(.gossipVerdict(id, verdict))
            case .gossipPeerAdded(let key):
                gossipPeers.insert(key)
                if firstPeerAt == nil { firstPeerAt = now }
                if syncStartedAt != nil, !sync.isFinished { apply(sync.addPeers([key], now: now), &node, now, &rng) }
                startSyncIfDue(&node, now: now, rng: &rng)
            case .gossipPeerRemoved(let key):
                gossipPeers.remove(key)
                apply(sync.peerLost(key, now: now), &node, now, &rng)
            case .gossipMeshChanged(let topic, let meshSize, let peers) where topic == .proposals:
                republishAsMeshForms(meshSize: meshSize, peers: peers, &node, now: now, rng: &rng)
            case .contactsChanged(let newContacts):
                contacts = newContacts
            case .providerBonds(let report):
                if bonds == nil { bonds = report } else { bonds!.merge(report) }
                if report.isComplete { bondsReported = true }
                ownBondChanged(&node, now: now, rng: &rng)
            default:
                break
            }
        }
    }

    private mutating func tick(_ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator) {
        apply(sync.tick(now: now), &node, now, &rng)
        noteSyncProgress(now: now)
        startSyncIfDue(&node, now: now, rng: &rng)
        if let due = nextExpiry, due <= now {
            nextExpiry = now + config.maintenanceInterval
            _ = store.expire(now: now)
        }
        guard let role = provider, role.nextRefresh != nil else { return }
        if let due = role.nextRefresh, due <= now {
            publishOwnProposal(&node, now: now, rng: &rng)
        } else if let own = role.own?.offer, own.contacts != contacts,
            now.since(own.issuedAt) >= config.minimumRepublishInterval
        {
            // Reachability or relays changed (a NATed provider got its reservations): say so now.
            publishOwnProposal(&node, now: now, rng: &rng)
        }
    }

    private mutating func receiveSync(
        _ payload: [UInt8], from key: PublicKey, _ node: inout NodeKernel, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        let message: ProposalSyncMessage
        do { message = try ProposalSyncMessage(decoding: payload) } catch {
            counters.syncMalformed += 1
            node.rejectFrame(from: key, reason: "proposal sync: \(error)")
            return
        }
        switch message {
        case .request:
            guard admitSyncRequest(from: key, now: now) else {
                counters.syncRequestsRefused += 1
                return
            }
            counters.syncRequestsServed += 1
            for page in store.respond(to: message, now: now) {
                counters.syncPagesSent += 1
                node.sendFrame(.proposalSync, page.encoded(), to: key, now: now, rng: &rng)
            }
        case .page(let page) where directFetches[page.requestID]?.provider == key:
            // The answer to `fetchProposal`: only the provider's own entries are taken.
            if page.isLast { directFetches.removeValue(forKey: page.requestID) }
            for item in page.items {
                guard (try? SignedProposal(decoding: item))?.provider == key else { continue }
                guard admitsProvider(of: item) || !bondsReported else {
                    counters.proposalsUnbonded += 1
                    continue
                }
                let outcome = store.verifyAndInsert(item, networkID: networkID, now: now)
                countSyncItem(outcome)
                noteStored(outcome, item, &node)
            }
        case .page:
            let (items, syncEffects) = sync.handle(message, from: key, now: now)
            for item in items {
                guard admitsProvider(of: item) || !bondsReported else {
                    counters.proposalsUnbonded += 1
                    continue
                }
                countSyncItem(store.verifyAndInsert(item, networkID: networkID, now: now))
            }
            apply(syncEffects, &node, now, &rng)
            noteSyncProgress(now: now)
        }
    }

    /// Tells the node's commands (a fetch, a discovery, a connect waiting for offers) that an offer
    /// was stored.
    private func noteStored(_ outcome: ProposalStore.InsertOutcome, _ bytes: [UInt8], _ node: inout NodeKernel) {
        switch outcome {
        case .added, .replaced:
            guard let offer = try? SignedProposal(decoding: bytes).offer else { return }
            node.notify(.offerStored(offer.provider, serviceType: offer.serviceType))
        default:
            break
        }
    }

    private mutating func countSyncItem(_ outcome: ProposalStore.InsertOutcome) {
        switch Self.validation(of: outcome) {
        case .accept, .ignore, .pending: counters.syncItemsAccepted += 1
        case .reject: counters.syncItemsRefused += 1
        }
    }

    // MARK: - Commands and queries

    /// Live proposals matching the filters, cheapest first, then by `rtt` to the provider.
    func proposals(
        serviceType: String, country: String?, maxPricePerGiB: UInt64?, maxPricePerMinute: UInt64?,
        now: Instant, limit: Int, rtt: (PublicKey) -> Duration?
    ) -> [ServiceProposal] {
        let found = store.query(
            serviceType: serviceType, country: country, maxPricePerGiB: maxPricePerGiB,
            maxPricePerMinute: maxPricePerMinute, consumer: identity.publicKey, now: now,
            limit: bonds == nil ? limit : .max, rtt: rtt)
        // Offers stored before their provider unbonded (or before the ledger reported) are held but
        // not offered.
        guard let bonds else { return found }
        return Array(found.lazy.filter { bonds.admits($0.provider) }.prefix(limit))
    }

    /// Asks `provider` at `endpoint` for its own proposal of `serviceType` (see
    /// `NodeInstance.fetchProposal`).
    mutating func fetchProposal(
        of provider: PublicKey, serviceType: String, at endpoint: Endpoint, _ node: inout NodeKernel, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        guard provider != identity.publicKey, !endpoint.address.isDiscardOnly else { return }
        directFetches = directFetches.filter { now.since($0.value.at) < .seconds(10) }
        guard directFetches.count < 256 else { return }
        if node.sessions.snapshot(of: provider) == nil {
            guard node.sessions.addPeer(provider, path: .direct(endpoint)) else { return }
        }
        // Random ids; a page counts as this answer only when its id and its sender both match.
        let requestID = UInt32(truncatingIfNeeded: rng.next())
        directFetches[requestID] = (provider, now)
        let key = ProposalID(provider: provider, serviceType: serviceType).syncKey
        guard let range = KeyRange(key, key) else { return }
        let request = ProposalSyncMessage.request(.init(requestID: requestID, range: range, maxPages: 1))
        node.sendFrame(.proposalSync, request.encoded(), to: provider, early: true, now: now, rng: &rng)
    }

    /// Withdraws this provider's proposal: a signed tombstone is stored and flood-published, and no
    /// refresh follows.
    mutating func withdraw(_ node: inout NodeKernel, now: Instant) {
        guard var role = provider, let own = role.own, !role.tombstoned else { return }
        role.tombstoned = true
        role.nextRefresh = nil
        role.lastSeq = max(role.lastSeq + 1, own.seq + 1)
        provider = role
        // The tombstone outlives every offer it withdraws (each expires within `proposalLifetime`).
        let withdrawal = ProposalWithdrawal(
            provider: identity.publicKey, seq: role.lastSeq, issuedAt: now,
            expiresAt: now + config.proposalLifetime, serviceType: own.serviceType)
        guard let signed = try? SignedProposal.make(withdrawal: withdrawal, identity: identity, networkID: networkID)
        else { return }
        _ = store.insert(signed, now: now)
        counters.withdrawalsPublished += 1
        node.notify(.gossipPublish(.proposals, signed.encoded()))
    }

    var providerStatus: ProviderStatus? {
        provider.map {
            ProviderStatus(
                proposal: $0.own?.offer, withdrawn: $0.tombstoned, nextRefresh: $0.nextRefresh,
                bondNeeded: bonds.flatMap { $0.admits(identity.publicKey) ? nil : max($0.minimum, 1) })
        }
    }

    // MARK: - Stakes

    /// Whether an offer's provider may offer services: always without a ledger; with one, only with a
    /// provider bond of at least the minimum. Withdrawals always pass (an unbonded provider withdraws).
    func admitsProvider(of bytes: [UInt8]) -> Bool {
        guard let bonds else { return true }
        guard let signed = try? SignedProposal(decoding: bytes) else { return true }  // the store refuses it
        guard signed.offer != nil else { return true }
        return bonds.admits(signed.provider)
    }

    /// This node's own bond may have changed: publish once bonded, withdraw when it falls short.
    private mutating func ownBondChanged(_ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator)
    {
        guard let role = provider, let bonds else { return }
        if bonds.admits(identity.publicKey) {
            if role.withdrawnForBond {
                provider!.withdrawnForBond = false
                provider!.tombstoned = false
                provider!.nextRefresh = now
            } else if role.own == nil, role.nextRefresh != nil {
                provider!.nextRefresh = now
            }
        } else if role.own != nil, !role.tombstoned {
            withdraw(&node, now: now)
            provider!.withdrawnForBond = true
        }
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

    /// A provider publishes again as its mesh forms (first peer, then `dLow` or all of its peers).
    private mutating func republishAsMeshForms(
        meshSize: Int, peers: Int, _ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        guard let role = provider, role.own != nil, !role.tombstoned else { return }
        let full = min(config.gossip.dLow, peers)
        for step in [1, full] where meshSize >= step && step > 0 && !role.republishedAtMeshSizes.contains(step) {
            provider!.republishedAtMeshSizes.insert(step)
            publishOwnProposal(&node, now: now, rng: &rng)
            return
        }
    }

    private mutating func startSyncIfDue(_ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator)
    {
        guard syncStartedAt == nil, let first = firstPeerAt else { return }
        guard gossipPeers.count >= config.syncStartPeers || now >= first + config.syncStartDelay,
            !gossipPeers.isEmpty
        else { return }
        syncStartedAt = now
        let peers = gossipPeers.sorted(by: NodeKernel.keyOrder)
        apply(sync.start(peers: peers, now: now, rng: &rng), &node, now, &rng)
        noteSyncProgress(now: now)
    }

    private mutating func noteSyncProgress(now: Instant) {
        if syncFinishedAt == nil, syncStartedAt != nil, sync.isFinished { syncFinishedAt = now }
    }

    private mutating func admitSyncRequest(from key: PublicKey, now: Instant) -> Bool {
        var window = syncRequestWindows[key] ?? (now, 0)
        if now.since(window.start) >= .seconds(60) { window = (now, 0) }
        guard window.count < config.syncRequestsPerMinute else { return false }
        window.count += 1
        if syncRequestWindows[key] == nil, syncRequestWindows.count >= config.maximumSyncRequesters {
            // Forget windows that are over; when none is, refuse the newcomer.
            syncRequestWindows = syncRequestWindows.filter { now.since($0.value.start) < .seconds(60) }
            guard syncRequestWindows.count < config.maximumSyncRequesters else { return false }
        }
        syncRequestWindows[key] = window
        return true
    }

    /// Signs, stores and flood-publishes this provider's current offer, and schedules the refresh.
    private mutating func publishOwnProposal(
        _ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        guard var role = provider else { return }
        role.nextRefresh = now + config.refreshInterval
        if let bonds, !bonds.admits(identity.publicKey) {
            // No offer without a provider bond; the bond's arrival publishes at once.
            provider = role
            return
        }
        // Milliseconds since the epoch grow across restarts; +1 covers two refreshes in one ms.
        role.lastSeq = max(role.lastSeq + 1, UInt64(max(0, now.nanoseconds / 1_000_000)))
        let offer = ServiceProposal(
            provider: identity.publicKey, seq: role.lastSeq, issuedAt: now,
            expiresAt: now + config.proposalLifetime, serviceType: role.offer.serviceType,
            location: role.offer.location, pricePerGiB: role.offer.pricePerGiB,
            pricePerMinute: role.offer.pricePerMinute, capacity: role.offer.capacity, access: role.offer.access,
            contacts: contacts)
        guard let signed = try? SignedProposal.make(offer: offer, identity: identity, networkID: networkID) else {
            provider = role
            return
        }
        role.own = signed
        _ = store.insert(signed, now: now)
        counters.proposalsPublished += 1
        node.notify(.gossipPublish(.proposals, signed.encoded()))
        if !role.indexPublished, node.dht.table.count > 0 {
            role.indexPublished = true
            let value = ProviderIndexValue(
                serviceType: role.offer.serviceType, country: role.offer.location.country,
                provider: identity.publicKey)
            node.publish(
                kind: .providerIndex,
                key: RecordKey.providerIndex(serviceType: role.offer.serviceType, country: role.offer.location.country),
                value: value.encoded(), now: now, rng: &rng)
        }
        provider = role
    }

    private mutating func apply(
        _ syncEffects: [SyncEffect], _ node: inout NodeKernel, _ now: Instant, _ rng: inout some RandomNumberGenerator
    ) {
        for case .send(let message, let peer) in syncEffects {
            node.sendFrame(.proposalSync, message.encoded(), to: peer, now: now, rng: &rng)
        }
    }
}
