import Gossip
import NetSim
import Proposals
import Sessions
import Testing
import UmbraCore
import UmbraTestKit

@testable import Node

/// Proposals over gossip through the whole node (sessions, frames, gossip, store), in NetSim.
@Suite("Market over gossip")
struct MarketTests {
    static let network = SessionConfig().networkID

    /// `count` nodes that all bootstrap from each other; the nodes in `providers` sell ip-tunnel.
    static func market(
        nodes count: Int, providers: [Int: ProvideConfig] = [:], seed: UInt64 = 7, loss: Double = 0
    ) -> (NetSim, [Identity]) {
        var sim = NetSim(seed: seed, link: LinkModel(lossRate: loss))
        let identities = identities(count, seed: seed)
        for (index, identity) in identities.enumerated() {
            var config = NodeConfig()
            config.bootstrap = identities.indices.map {
                DialTarget(publicKey: identities[$0].publicKey, endpoint: NetSim.endpoint(forNode: $0))
            }
            config.advertisedEndpoints = [NetSim.endpoint(forNode: index)]
            config.market.provide = providers[index]
            sim.addNode(identity: identity, config: config)
        }
        return (sim, identities)
    }

    static func provide(_ country: String, priceGiB: UInt64) -> ProvideConfig {
        var provide = ProvideConfig()
        provide.location = ServiceProposal.Location(country: country)
        provide.pricePerGiB = priceGiB
        return provide
    }

    static func listed(_ sim: NetSim, _ index: Int) -> [PublicKey] {
        sim.instance(index).proposals(serviceType: "ip-tunnel", now: sim.now).map(\.provider)
    }

    /// A proposal signed by `identity`, valid from `issued` for `lifetime`.
    static func offer(
        by identity: Identity, seq: UInt64, issued: Instant, lifetime: Duration = .seconds(180),
        version: UInt16 = SignedProposal.currentVersion
    ) -> SignedProposal {
        let proposal = ServiceProposal(
            provider: identity.publicKey, seq: seq, issuedAt: issued, expiresAt: issued + lifetime,
            serviceType: "ip-tunnel", location: .init(country: "DE"), pricePerGiB: 1, pricePerMinute: 1, capacity: 1,
            protocolVersion: version)
        var signed = SignedProposal(content: .offer(proposal), signature: [])
        signed.signature = identity.sign(signed.signedBytes(networkID: network))
        return signed
    }

    /// Node `from` sends raw gossip bytes to node `to` over their session, as a misbehaving peer would.
    static func inject(_ sim: inout NetSim, from: Int, to: Int, gossip bytes: [UInt8]) {
        let target = sim.instance(to).identity.publicKey
        sim.perform(on: from) { node, now, rng in
            var effects: [NodeEffect] = []
            node.sendFrame(.gossip, bytes, to: target, now: now, rng: &rng, into: &effects)
            return effects
        }
    }

    static func publish(_ signed: SignedProposal) -> [UInt8] {
        GossipMessage.publish(topic: .proposals, data: signed.encoded()).encoded()
    }

    @Test func providersAreListedEverywhereCheapestFirstAndATombstoneRemovesOneAtOnce() {
        var (sim, ids) = Self.market(
            nodes: 8, providers: [2: Self.provide("DE", priceGiB: 500), 5: Self.provide("NL", priceGiB: 200)])
        sim.run(for: .seconds(5))
        for index in 0..<8 {
            #expect(Self.listed(sim, index) == [ids[5].publicKey, ids[2].publicKey], "node \(index)")
        }
        let german = sim.instance(0).proposals(serviceType: "ip-tunnel", country: "DE", now: sim.now)
        #expect(german.map(\.provider) == [ids[2].publicKey])
        #expect(sim.instance(0).proposals(serviceType: "ip-tunnel", maxPricePerGiB: 300, now: sim.now).count == 1)
        // Refreshes keep it alive past its 180 s lifetime.
        sim.run(for: .seconds(200))
        #expect(Self.listed(sim, 7).count == 2)
        sim.perform(on: 2) { node, now, rng in node.withdraw(now: now, rng: &rng) }
        sim.run(for: .seconds(1))
        for index in 0..<8 { #expect(Self.listed(sim, index) == [ids[5].publicKey], "node \(index)") }
        #expect(sim.instance(0).marketStatus.tombstones == 1)
    }

    @Test func aKilledProviderExpiresEverywhereWithinItsLifetime() {
        var (sim, ids) = Self.market(nodes: 5, providers: [1: Self.provide("DE", priceGiB: 1)])
        sim.run(for: .seconds(5))
        #expect(Self.listed(sim, 4) == [ids[1].publicKey])
        sim.kill(1)
        sim.run(for: .seconds(120))
        #expect(Self.listed(sim, 4) == [ids[1].publicKey], "still inside its 180 s lifetime")
        sim.run(for: .seconds(65))
        for index in [0, 2, 3, 4] { #expect(Self.listed(sim, index).isEmpty, "node \(index)") }
    }

    @Test func aNodeThatJoinsLaterSyncsTheLiveSetFromItsPeers() {
        var (sim, ids) = Self.market(
            nodes: 6, providers: [0: Self.provide("DE", priceGiB: 1), 1: Self.provide("FR", priceGiB: 2)], loss: 0.01)
        sim.run(for: .seconds(5))
        for index in 0..<6 { #expect(Self.listed(sim, index).count == 2, "node \(index) before the join") }
        var keys = SeededRandom(seed: 99)
        // Node 6 joins with only node 3 to bootstrap from, after every publish has happened.
        let newcomer = Identity.generate(using: &keys)
        var config = NodeConfig()
        config.bootstrap = [DialTarget(publicKey: ids[3].publicKey, endpoint: NetSim.endpoint(forNode: 3))]
        let index = sim.addNode(identity: newcomer, config: config)
        // A lost handshake datagram costs a 5 s retry, so the clock that matters is the sync's own.
        sim.run(for: .seconds(12))
        #expect(Set(Self.listed(sim, index)) == [ids[0].publicKey, ids[1].publicKey])
        let status = sim.instance(index).marketStatus
        #expect(status.syncPhase == .complete)
        if let started = status.syncStartedAt, let finished = status.syncFinishedAt {
            #expect(finished.since(started) < .seconds(3))
        }
        #expect(status.counters.syncItemsAccepted >= 2, "\(status.syncCounters) \(status.gossipPeers.count)")
    }

    @Test func aProposalFoundInTheDHTIndexIsFetchedFromItsProviderWithoutGossip() {
        var (sim, ids) = Self.market(nodes: 4, providers: [1: Self.provide("DE", priceGiB: 1)])
        sim.run(for: .seconds(3))
        // A consumer with no bootstrap peers: no gossip, no sync; only the direct fetch can bring it.
        var keys = SeededRandom(seed: 5)
        let consumer = sim.addNode(identity: Identity.generate(using: &keys), config: NodeConfig())
        #expect(Self.listed(sim, consumer).isEmpty)
        sim.perform(on: consumer) { node, now, rng in
            node.fetchProposal(
                of: ids[1].publicKey, serviceType: "ip-tunnel", at: NetSim.endpoint(forNode: 1), now: now, rng: &rng)
        }
        sim.run(for: .seconds(1))
        #expect(Self.listed(sim, consumer) == [ids[1].publicKey])
        #expect(sim.instance(consumer).holdsProposal(of: ids[1].publicKey, serviceType: "ip-tunnel", now: sim.now))
        #expect(sim.instance(consumer).marketStatus.gossipPeers.isEmpty)
        // Asking a node that is not the provider brings nothing: only the provider's own entry counts.
        sim.perform(on: consumer) { node, now, rng in
            node.fetchProposal(
                of: ids[2].publicKey, serviceType: "ip-tunnel", at: NetSim.endpoint(forNode: 2), now: now, rng: &rng)
        }
        sim.run(for: .seconds(1))
        #expect(Self.listed(sim, consumer) == [ids[1].publicKey])
    }

    // MARK: - Bad input: refused, counted, not forwarded

    /// Victim 0 and bystander 2 are honest; 1 sends the bad proposal to 0 only.
    static func attacked() -> (NetSim, [Identity]) {
        var (sim, ids) = Self.market(nodes: 3)
        sim.run(for: .seconds(3))
        return (sim, ids)
    }

    @Test func aForgedSignatureIsRejectedCountedAndNotForwarded() {
        var (sim, ids) = Self.attacked()
        var forged = Self.offer(by: ids[2], seq: 1, issued: sim.now)
        forged.signature[0] ^= 1
        Self.inject(&sim, from: 1, to: 0, gossip: Self.publish(forged))
        sim.run(for: .seconds(2))
        let status = sim.instance(0).marketStatus
        #expect(status.storeCounters.refusals[.badSignature] == 1)
        #expect(status.counters.proposalsRejected == 1)
        #expect(status.proposals == 0 && sim.instance(2).marketStatus.proposals == 0)
        #expect(sim.instance(0).gossip.router.score(of: ids[1].publicKey) < 0)
    }

    @Test func aReplayedOlderSeqIsRefusedAsStaleAndTheNewerOneStays() {
        var (sim, ids) = Self.attacked()
        var keys = SeededRandom(seed: 99)
        let provider = Identity.generate(using: &keys)
        let newer = Self.offer(by: provider, seq: 5, issued: sim.now)
        Self.inject(&sim, from: 1, to: 0, gossip: Self.publish(newer))
        sim.run(for: .seconds(1))
        let older = Self.offer(by: provider, seq: 3, issued: sim.now)
        Self.inject(&sim, from: 1, to: 0, gossip: Self.publish(older))
        sim.run(for: .seconds(1))
        let status = sim.instance(0).marketStatus
        #expect(status.storeCounters.stale == 1)
        #expect(status.counters.proposalsIgnored == 1)
        #expect(sim.instance(0).proposals(serviceType: "ip-tunnel", now: sim.now).map(\.seq) == [5])
        #expect(sim.instance(2).proposals(serviceType: "ip-tunnel", now: sim.now).map(\.seq) == [5])
        #expect(sim.instance(0).gossip.router.score(of: ids[1].publicKey) >= 0, "a replay is not punished")
    }

    @Test func anExpiredProposalIsRefusedAndCounted() {
        var (sim, _) = Self.attacked()
        sim.run(for: .seconds(300))
        var keys = SeededRandom(seed: 99)
        let provider = Identity.generate(using: &keys)
        let expired = Self.offer(by: provider, seq: 1, issued: sim.now - .seconds(200), lifetime: .seconds(180))
        Self.inject(&sim, from: 1, to: 0, gossip: Self.publish(expired))
        sim.run(for: .seconds(1))
        let status = sim.instance(0).marketStatus
        #expect(status.storeCounters.refusals[.expired] == 1)
        #expect(status.proposals == 0 && sim.instance(2).marketStatus.proposals == 0)
    }

    @Test func anOversizedPublishIsRefusedByTheDecoderAndCounted() {
        var (sim, _) = Self.attacked()
        // A PUBLISH frame whose data length (1100) is over the 1000-byte limit.
        var bytes: [UInt8] = [GossipMessage.Tag.publish.rawValue, UInt8(Topic.proposals.bytes.count)]
        bytes += Topic.proposals.bytes + [0x4C, 0x04] + [UInt8](repeating: 7, count: 1100)
        Self.inject(&sim, from: 1, to: 0, gossip: bytes)
        sim.run(for: .seconds(1))
        #expect(sim.instance(0).gossip.router.counters.malformed == 1)
        #expect(sim.instance(0).marketStatus.proposals == 0)
    }

    @Test func anUnknownVersionIsRefusedAndCounted() {
        var (sim, _) = Self.attacked()
        var keys = SeededRandom(seed: 99)
        let provider = Identity.generate(using: &keys)
        let future = Self.offer(by: provider, seq: 1, issued: sim.now, version: 2)
        Self.inject(&sim, from: 1, to: 0, gossip: Self.publish(future))
        sim.run(for: .seconds(1))
        let status = sim.instance(0).marketStatus
        #expect(status.storeCounters.refusals[.unsupportedVersion] == 1)
        #expect(status.proposals == 0)
    }

    @Test func aTombstoneSignedBySomeoneElseIsRefusedAndTheOfferStays() {
        var (sim, ids) = Self.market(nodes: 3, providers: [2: Self.provide("DE", priceGiB: 1)])
        sim.run(for: .seconds(3))
        #expect(Self.listed(sim, 0) == [ids[2].publicKey])
        // Node 1 forges a withdrawal of node 2's offer, signed with its own key.
        let withdrawal = ProposalWithdrawal(
            provider: ids[2].publicKey, seq: .max, issuedAt: sim.now, expiresAt: sim.now + .seconds(180),
            serviceType: "ip-tunnel")
        var forged = SignedProposal(content: .withdrawal(withdrawal), signature: [])
        forged.signature = ids[1].sign(forged.signedBytes(networkID: Self.network))
        Self.inject(&sim, from: 1, to: 0, gossip: Self.publish(forged))
        sim.run(for: .seconds(1))
        #expect(sim.instance(0).marketStatus.storeCounters.refusals[.badSignature] == 1)
        #expect(Self.listed(sim, 0) == [ids[2].publicKey])
        #expect(sim.instance(0).marketStatus.tombstones == 0)
    }

    @Test func aPeerFloodingJunkIsGraylistedWhileHonestProposalsStillSpread() {
        var (sim, ids) = Self.market(nodes: 6, providers: [5: Self.provide("DE", priceGiB: 1)])
        sim.run(for: .seconds(3))
        var keys = SeededRandom(seed: 99)
        // Node 1 floods node 0 with 200 valid-looking proposals carrying bad signatures.
        for seq in 1...200 {
            let junkProvider = Identity.generate(using: &keys)
            var junk = Self.offer(by: junkProvider, seq: UInt64(seq), issued: sim.now)
            junk.signature[5] ^= 0x40
            Self.inject(&sim, from: 1, to: 0, gossip: Self.publish(junk))
        }
        sim.run(for: .seconds(2))
        let victim = sim.instance(0)
        #expect(victim.gossip.router.isGraylisted(ids[1].publicKey))
        #expect(victim.marketStatus.counters.proposalsRejected <= 4, "signatures checked before graylisting")
        #expect(victim.gossip.router.counters.graylistedDrops >= 190)
        #expect(!victim.gossip.router.mesh(.proposals).contains(ids[1].publicKey))
        // The honest provider refreshes; everyone, the victim included, keeps its proposal.
        sim.run(for: .seconds(70))
        for index in 0..<6 { #expect(Self.listed(sim, index) == [ids[5].publicKey], "node \(index)") }
        #expect(sim.instance(2).marketStatus.proposals == 1, "no junk reached anyone else")
    }
}
