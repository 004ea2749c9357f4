// The router's side of parts (NodePart.swift): the list of parts, and how events, frames and the
// work parts queue in the kernel reach their destination.
//
// Registering a part: its stored property on NodeInstance (and its init), and one line in each of
// `partTypes`, `visitParts` and `readParts` below.

import Gossip
import Kademlia
import Proposals
import Relay
import Sessions
import UmbraCore

extension NodeInstance {
    /// The part types, for what they declare (channels, gossip topics).
    static let partTypes: [any NodePart.Type] = [
        StoragePart.self, GossipPart.self, MarketPart.self, DialoguePart.self, TunnelPart.self, LedgerPart.self,
        RelayPart.self,
    ]

    /// Every gossip topic some part owns (the gossip part's validator registry).
    static var gossipTopics: [Topic] { partTypes.flatMap { $0.gossipTopics } }

    /// Every part, in the order events reach them.
    mutating func visitParts(_ visitor: inout some PartVisitor) {
        // Storage first: at start it turns the record store's change log on before anyone publishes.
        visitor.visit(&storage, kernel: &kernel)
        visitor.visit(&gossip, kernel: &kernel)
        visitor.visit(&market, kernel: &kernel)
        visitor.visit(&dialogue, kernel: &kernel)
        visitor.visit(&tunnel, kernel: &kernel)
        visitor.visit(&ledger, kernel: &kernel)
        visitor.visit(&relay, kernel: &kernel)
    }

    func readParts(_ reader: inout some PartReader) {
        reader.read(storage)
        reader.read(gossip)
        reader.read(market)
        reader.read(dialogue)
        reader.read(tunnel)
        reader.read(ledger)
        reader.read(relay)
    }

    // MARK: - Routing

    /// Hands `event` to every part, then carries out what they queued.
    mutating func broadcast(
        _ event: PartEvent, now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        var visitor = EventVisitor(event: event, channel: nil, now: now, rng: rng)
        visitParts(&visitor)
        rng = visitor.rng
        drain(now: now, rng: &rng, into: &effects)
    }

    /// Hands a frame to the part that declared its channel.
    mutating func deliverToPart(
        _ channel: FrameChannel, _ payload: [UInt8], from key: PublicKey, now: Instant,
        rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        var visitor = EventVisitor(event: .frame(channel, payload, from: key), channel: channel, now: now, rng: rng)
        visitParts(&visitor)
        rng = visitor.rng
        drain(now: now, rng: &rng, into: &effects)
    }

    /// Carries out what parts queued in the kernel, depth first: each item's own consequences are
    /// carried out before the next item.
    mutating func drain(now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]) {
        if !kernel.effects.isEmpty { effects += kernel.takeEffects() }
        while !kernel.pending.isEmpty {
            let batch = kernel.pending
            kernel.pending = []
            for item in batch {
                switch item {
                case .session(let effect): absorb([effect], now: now, rng: &rng, into: &effects)
                case .dht(let effect): absorb([effect], now: now, rng: &rng, into: &effects)
                case .notice(let notice):
                    broadcast(.notice(notice), now: now, rng: &rng, into: &effects)
                    commandsNotice(notice, now: now, rng: &rng, into: &effects)
                case .ping(let peer): effects += ping(peer, now: now, rng: &rng).effects
                }
                if !kernel.effects.isEmpty { effects += kernel.takeEffects() }
            }
        }
    }

    /// The earliest deadline of any part.
    var partsDeadline: Instant? {
        var reader = DeadlineReader()
        readParts(&reader)
        return reader.earliest
    }

    // MARK: - Storage

    public var storageCounters: StorageCounters { storage.counters }

    /// Whether the saved records and contacts have been loaded (always false with persistence off).
    public var storageIsReady: Bool { storage.isReady }

    /// The shell finished a `.storage` request: the part that asked hears of it (the notice
    /// `storageCompleted`). An unknown token is ignored.
    public mutating func storageCompleted(
        _ completion: StorageCompletion, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        guard kernel.partStorage.remove(completion.token) != nil else { return [] }
        var effects: [NodeEffect] = []
        broadcast(.notice(.storageCompleted(completion)), now: now, rng: &rng, into: &effects)
        return effects
    }

    // MARK: - Relay commands and queries

    /// Where relays announce themselves: the provider index of service type "relay", country "ZZ".
    public static var relayIndexKey: Key256 { RelayPart.relayIndexKey }

    /// The relay part as `umbra status` shows it.
    public var relayStatus: RelayStatus { relay.report(kernel) }

    /// Makes `key` reachable for the next frame (a ping, a request): with a session already, nothing;
    /// else its direct endpoint from `record` now, and one of its relays if that has no session
    /// within `directDialTimeout` (or at once when the record lists no direct endpoint). The frame
    /// sent next starts the handshake and waits in the session layer's queue until it completes.
    public mutating func dial(
        _ key: PublicKey, record: PeerRecordValue?, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        relay.dial(key, record: record, &kernel, now: now, rng: &rng)
        drain(now: now, rng: &rng, into: &effects)
        return effects
    }

    /// The path of the session with `key`, if there is one.
    public func sessionPath(of key: PublicKey) -> SessionPathInfo? { relay.sessionPath(of: key, sessions: sessions) }

    /// The sessions that are or were relayed, by peer.
    public var relayedSessions: [SessionPathInfo] { relay.relayedSessions(sessions) }

    /// The last circuit code a relay sent about a dial or session to `key` (for error messages).
    public func lastCircuitCode(for key: PublicKey) -> CircuitCode? { relay.lastCircuitCode(for: key) }

    /// The newest valid peer record of `publisher` among a lookup's records.
    public static func newestPeerRecord(in report: LookupReport, of publisher: PublicKey) -> PeerRecordValue? {
        RelayPart.newestPeerRecord(in: report, of: publisher)
    }

    // MARK: - Market commands and queries

    /// Live proposals matching the filters, cheapest first, then by our measured RTT to the provider.
    public func proposals(
        serviceType: String, country: String? = nil, maxPricePerGiB: UInt64? = nil,
        maxPricePerMinute: UInt64? = nil, now: Instant, limit: Int = .max
    ) -> [ServiceProposal] {
        let rtts = kernel.rtts
        return market.proposals(
            serviceType: serviceType, country: country, maxPricePerGiB: maxPricePerGiB,
            maxPricePerMinute: maxPricePerMinute, now: now, limit: limit, rtt: { rtts[$0] })
    }

    /// Asks `provider` (at `endpoint`, e.g. from its peer record) for its own proposal of
    /// `serviceType`, for a provider found in the DHT's provider index before gossip brought its
    /// offer. The request rides in the handshake (0-RTT); the answer is verified and stored like a
    /// gossiped proposal.
    public mutating func fetchProposal(
        of provider: PublicKey, serviceType: String, at endpoint: Endpoint, now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        market.fetchProposal(of: provider, serviceType: serviceType, at: endpoint, &kernel, now: now, rng: &rng)
        drain(now: now, rng: &rng, into: &effects)
        return effects
    }

    /// Whether the store holds a live offer of `provider` for `serviceType`.
    public func holdsProposal(of provider: PublicKey, serviceType: String, now: Instant) -> Bool {
        market.store.offer(for: ProposalID(provider: provider, serviceType: serviceType), now: now) != nil
    }

    /// The RTT measured to a peer (pings of kept peers), if any.
    public func measuredRTT(to peer: PublicKey) -> Duration? { kernel.rtts[peer] }

    /// Withdraws this provider's proposal: a signed tombstone is stored and flood-published, and no
    /// refresh follows. Called on a clean shutdown.
    public mutating func withdraw(now: Instant, rng: inout some RandomNumberGenerator) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        market.withdraw(&kernel, now: now)
        drain(now: now, rng: &rng, into: &effects)
        return effects
    }

    public var marketStatus: MarketStatus {
        var counters = market.counters
        counters.gossipDials = gossip.counters.dials
        counters.gossipDialsAbandoned = gossip.counters.dialsAbandoned
        return MarketStatus(
            gossipPeers: gossip.router.peerInfo(), meshSize: gossip.router.mesh(.proposals).count,
            gossipCounters: gossip.router.counters, proposals: market.store.count,
            tombstones: market.store.tombstoneCount, storeCounters: market.store.counters,
            syncPhase: market.sync.phase, syncCounters: market.sync.counters, syncStartedAt: market.syncStartedAt,
            syncFinishedAt: market.syncFinishedAt, counters: counters, provider: market.providerStatus)
    }
}

/// Hands one event to every part (or, for a frame, to the part that declared its channel).
struct EventVisitor<RNG: RandomNumberGenerator>: PartVisitor {
    let event: PartEvent
    let channel: FrameChannel?
    let now: Instant
    var rng: RNG

    mutating func visit<Part: NodePart>(_ part: inout Part, kernel: inout NodeKernel) {
        if let channel, !Part.channels.contains(channel) { return }
        part.handle(event, node: &kernel, now: now, rng: &rng)
    }
}

struct DeadlineReader: PartReader {
    var earliest: Instant?

    mutating func read<Part: NodePart>(_ part: Part) {
        if let deadline = part.nextDeadline, earliest.map({ deadline < $0 }) ?? true { earliest = deadline }
    }
}
