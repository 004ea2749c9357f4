// Control API documents of the market part: `GET /v1/proposals` and `GET /v1/market` (docs/api.md).

import Gossip
import Node
import Proposals
import UmbraCore

public struct ProposalReport: Codable, Sendable, Equatable {
    public var provider: String
    public var serviceType: String
    public var country: String
    public var region: String?
    public var ipType: String?
    public var pricePerGib: UInt64
    public var pricePerMinute: UInt64
    public var capacity: UInt32
    public var access: String
    public var direct: [String]
    public var relays: [String]
    public var seq: UInt64
    public var expiresInSeconds: Double
    public var rttMs: Double?
    /// The provider's certified provider bond (with a ledger; nil without one).
    public var bond: UInt64?

    public init(_ proposal: ServiceProposal, now: Instant, rtt: Duration?, bond: UInt64? = nil) {
        self.bond = bond
        provider = NodeAddress(publicKey: proposal.provider).description
        serviceType = proposal.serviceType
        country = proposal.location.country
        region = proposal.location.region
        ipType = proposal.location.ipType.map { "\($0)" }
        pricePerGib = proposal.pricePerGiB
        pricePerMinute = proposal.pricePerMinute
        capacity = proposal.capacity
        switch proposal.access {
        case .open: access = "open"
        case .allowList(let keys): access = "allow-list (\(keys.count))"
        }
        direct = proposal.contacts.direct.map(\.description)
        relays = proposal.contacts.relays.map { "\(NodeAddress(publicKey: $0.publicKey))@\($0.endpoint)" }
        seq = proposal.seq
        expiresInSeconds = proposal.expiresAt.since(now).seconds
        rttMs = rtt.map { $0.seconds * 1000 }
    }
}

public struct ProposalsReport: Codable, Sendable, Equatable {
    public var proposals: [ProposalReport]
    /// Live proposals in the store, of every service type and country.
    public var stored: Int
    /// With `dht=1`: providers of the country found in the DHT's provider index, and offers fetched
    /// from them directly because gossip had not brought them yet.
    public var indexed: Int?
    public var fetched: Int?
}

public struct MarketReport: Codable, Sendable, Equatable {
    public struct GossipPeer: Codable, Sendable, Equatable {
        public var address: String
        public var outbound: Bool
        public var inMesh: Bool
        public var score: Double
        public var graylisted: Bool
    }

    public struct Provider: Codable, Sendable, Equatable {
        public var serviceType: String?
        public var seq: UInt64?
        public var withdrawn: Bool
        public var nextRefreshInSeconds: Double?
        /// With a ledger: the provider bond the offer needs, when this node's is below it.
        public var bondNeeded: UInt64?
    }

    public var gossipPeers: [GossipPeer]
    public var meshSize: Int
    /// Live proposals and remembered tombstones in the store.
    public var proposals: Int
    public var tombstones: Int
    /// Gossiped proposals by verdict, and refusals by reason (forged, replayed, expired, ...).
    public var accepted: UInt64
    public var ignored: UInt64
    public var rejected: UInt64
    /// Offers dropped because their provider has no provider bond (with a ledger).
    public var unbonded: UInt64
    public var stale: UInt64
    public var refusals: [String: UInt64]
    public var gossip: [String: UInt64]
    public var syncPhase: String
    public var syncSeconds: Double?
    public var syncItems: UInt64
    public var syncRequestsServed: UInt64
    public var provider: Provider?

    public init(_ status: MarketStatus, now: Instant) {
        let mesh = Set(status.gossipPeers.filter { $0.meshTopics.contains(.proposals) }.map(\.key))
        gossipPeers = status.gossipPeers.map {
            GossipPeer(
                address: NodeAddress(publicKey: $0.key).description, outbound: $0.outbound,
                inMesh: mesh.contains($0.key), score: $0.score, graylisted: $0.graylisted)
        }
        meshSize = status.meshSize
        proposals = status.proposals
        tombstones = status.tombstones
        accepted = status.counters.proposalsAccepted
        ignored = status.counters.proposalsIgnored
        rejected = status.counters.proposalsRejected
        unbonded = status.counters.proposalsUnbonded
        stale = status.storeCounters.stale
        var refusals: [String: UInt64] = [:]
        for reason in ProposalError.Reason.allCases {
            refusals[reason.rawValue] = status.storeCounters.refusals[reason, default: 0]
        }
        self.refusals = refusals
        let counters = status.gossipCounters
        gossip = [
            "received": counters.messagesReceived, "duplicates": counters.duplicates,
            "delivered": counters.delivered, "invalid": counters.invalid, "forwarded": counters.forwarded,
            "published": counters.published, "ihave_sent": counters.ihaveSent, "iwant_served": counters.iwantServed,
            "graylisted_drops": counters.graylistedDrops, "graylistings": counters.graylistings,
        ]
        syncPhase = "\(status.syncPhase)"
        if let started = status.syncStartedAt, let finished = status.syncFinishedAt {
            syncSeconds = finished.since(started).seconds
        }
        syncItems = status.syncCounters.itemsReceived
        syncRequestsServed = status.counters.syncRequestsServed
        provider = status.provider.map {
            Provider(
                serviceType: $0.proposal?.serviceType, seq: $0.proposal?.seq, withdrawn: $0.withdrawn,
                nextRefreshInSeconds: $0.nextRefresh.map { $0.since(now).seconds }, bondNeeded: $0.bondNeeded)
        }
    }
}

extension ControlRouter {
    /// `GET /v1/proposals?service=ip-tunnel&country=DE&max_price_gib=N&max_price_min=N&limit=N`.
    func proposals(_ query: [String: String]) async throws -> (ProposalsReport?, String?) {
        let service = query["service"] ?? "ip-tunnel"
        guard ServiceProposal.isValidServiceType(service) else {
            return (nil, "service must be 1 to 32 characters of a-z, 0-9 and '-' (e.g. ip-tunnel)")
        }
        let country = query["country"]?.uppercased()
        if let country, !ServiceProposal.isValidCountry(country) {
            return (nil, "country must be an ISO 3166 two-letter code such as DE")
        }
        var limits: [String: UInt64] = [:]
        for name in ["max_price_gib", "max_price_min", "limit"] {
            guard let text = query[name] else { continue }
            guard let value = UInt64(text) else { return (nil, "\(name) must be a whole number, not '\(text)'") }
            limits[name] = value
        }
        let limit = Int(min(limits["limit"] ?? 1000, 100_000))
        var discovered: (indexed: Int, fetched: Int)?
        if query["dht"] == "1" {
            guard let country else { return (nil, "dht=1 needs a country (the DHT indexes providers by country)") }
            discovered = try await host.discoverProviders(serviceType: service, country: country)
        }
        var report = await host.withInstance { [limits] instance in
            let now = host.clock.now
            let found = instance.proposals(
                serviceType: service, country: country, maxPricePerGiB: limits["max_price_gib"],
                maxPricePerMinute: limits["max_price_min"], now: now, limit: limit)
            return ProposalsReport(
                proposals: found.map {
                    ProposalReport(
                        $0, now: now, rtt: instance.measuredRTT(to: $0.provider),
                        bond: instance.market.bonds?.bond(of: $0.provider))
                },
                stored: instance.marketStatus.proposals)
        }
        report.indexed = discovered?.indexed
        report.fetched = discovered?.fetched
        return (report, nil)
    }
}
