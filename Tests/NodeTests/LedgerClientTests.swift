// The ledger's client side in NetSim: `NodeCommand.ledger` (the node drafts, signs, checks and
// certifies its own entries; an unfinished entry is sent again first), committee members reached
// without being listed in any contact list, and catch-up: a node added after entries were
// certified, and one on the far side of a partition, fetch what they missed from the committee.

import Gossip
import Ledger
import NetSim
import Proposals
import Testing
import UmbraCore
import UmbraTestKit

@testable import Node

/// Four validators (100 stake each), a funded payer, a payee and a latecomer.
private struct ClientFixture {
    let identities: [Identity]

    init(seed: UInt64) { identities = UmbraTestKit.identities(7, seed: seed ^ 0xC11E) }

    var payer: Identity { identities[4] }
    var payee: Identity { identities[5] }
    var latecomer: Identity { identities[6] }

    var genesis: GenesisParameters {
        GenesisParameters(
            network: "client-test", allocations: [Allocation(recipient: payer.publicKey, amount: 10_000)],
            committee: identities.prefix(4).map { CommitteeMember(identity: $0.publicKey, stake: 100) },
            minimumBonds: MinimumBonds(provider: 10, relay: 20, validator: 50), unbondingDelay: .seconds(100),
            evidenceLifetime: .seconds(50), committeeSize: 4, reporterRewardPPM: 100_000)
    }

    /// Node `index`'s settings: the ledger on, validators vote; the bootstrap is node 0 alone, so the
    /// other committee members are found through the DHT.
    func config(index: Int) -> NodeConfig {
        var config = NodeConfig()
        config.storage.isEnabled = true
        config.ledger.genesis = genesis
        config.ledger.isValidator = index < 4
        if index != 0 {
            config.bootstrap = [DialTarget(publicKey: identities[0].publicKey, endpoint: NetSim.endpoint(forNode: 0))]
        }
        return config
    }
}

@Suite("Ledger client and catch-up in NetSim", .timeLimit(.minutes(3)))
struct LedgerClientTests {
    private static func network(seed: UInt64, nodes: Int = 6) -> (NetSim, ClientFixture) {
        var sim = NetSim(
            seed: seed,
            link: LinkModel(minimumLatency: .milliseconds(20), maximumLatency: .milliseconds(50), lossRate: 0))
        let fixture = ClientFixture(seed: seed)
        for index in 0..<nodes {
            sim.addNode(identity: fixture.identities[index], config: fixture.config(index: index))
        }
        sim.run(for: .seconds(15))
        return (sim, fixture)
    }

    private static func balance(_ sim: NetSim, _ index: Int, of identity: Identity) -> Amount? {
        sim.instance(index).ledger.state?.balance(of: identity.publicKey)
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func theNodeDraftsItsOwnEntriesAndEveryNodeAgrees(seed: UInt64) throws {
        var (sim, fixture) = Self.network(seed: seed)
        for member in 1..<4 {
            #expect(
                sim.instance(4).sessions.isEstablished(fixture.identities[member].publicKey),
                "seed \(seed): the payer reached committee member \(member) through the DHT")
        }
        for round in 1...3 {
            sim.submit(
                .ledger(.transfer(to: fixture.payee.publicKey, amount: 100)), id: CommandID(UInt64(round)), on: 4)
            sim.run(for: .seconds(2))
            guard case .ledgerCertified(let certified, nil)? = sim.completion(of: CommandID(UInt64(round)), on: 4)
            else {
                Issue.record(
                    "seed \(seed) round \(round): \(String(describing: sim.completion(of: CommandID(UInt64(round)), on: 4)))"
                )
                return
            }
            #expect(certified.entry.height == UInt64(round - 1) && certified.entry.account == fixture.payer.publicKey)
        }
        for index in 0..<sim.nodeCount {
            #expect(Self.balance(sim, index, of: fixture.payee) == 300, "seed \(seed) node \(index)")
        }
        // Refused here with the reason, nothing sent: the height does not move.
        sim.submit(.ledger(.transfer(to: fixture.payee.publicKey, amount: 1_000_000)), id: CommandID(9), on: 4)
        sim.run(for: .milliseconds(10))
        guard case .failed(.invalid(let reason))? = sim.completion(of: CommandID(9), on: 4) else {
            Issue.record("seed \(seed): \(String(describing: sim.completion(of: CommandID(9), on: 4)))")
            return
        }
        #expect(reason.hasPrefix("insufficient balance"))
        #expect(sim.instance(4).ledger.state?.accounts[fixture.payer.publicKey]?.nextHeight == 3)

        // The stored entries read back by a command, in height order.
        sim.submit(.ledgerEntries(account: fixture.payer.publicKey, from: 1, limit: 10), id: CommandID(11), on: 2)
        sim.run(for: .seconds(1))
        guard case .ledgerEntries(let entries)? = sim.completion(of: CommandID(11), on: 2) else {
            Issue.record("seed \(seed): \(String(describing: sim.completion(of: CommandID(11), on: 2)))")
            return
        }
        #expect(entries.map(\.entry.height) == [1, 2])
    }

    @Test(arguments: [UInt64(4), 5])
    func anEntryWithoutQuorumIsSentAgainBeforeTheNextOne(seed: UInt64) throws {
        var (sim, fixture) = Self.network(seed: seed)
        sim.kill(2)
        sim.kill(3)
        sim.submit(.ledger(.transfer(to: fixture.payee.publicKey, amount: 10)), id: CommandID(1), on: 4)
        sim.run(for: .seconds(12))
        guard case .failed(.ledger)? = sim.completion(of: CommandID(1), on: 4) else {
            Issue.record("seed \(seed): \(String(describing: sim.completion(of: CommandID(1), on: 4)))")
            return
        }
        let unfinished = try #require(sim.instance(4).ledger.unfinished)
        // The payer restarts (its unfinished entry comes back from its disk) and the validators return.
        sim.restart(4)
        sim.restart(2)
        sim.restart(3)
        sim.run(for: .seconds(15))
        #expect(sim.instance(4).ledger.unfinished == unfinished, "seed \(seed): restored from the disk")
        sim.submit(.ledger(.transfer(to: fixture.payee.publicKey, amount: 20)), id: CommandID(2), on: 4)
        sim.run(for: .seconds(4))
        guard case .ledgerCertified(let certified, let retried?)? = sim.completion(of: CommandID(2), on: 4) else {
            Issue.record("seed \(seed): \(String(describing: sim.completion(of: CommandID(2), on: 4)))")
            return
        }
        #expect(retried.entry == unfinished && certified.entry.height == 1)
        #expect(sim.instance(4).ledger.unfinished == nil)
        for index in 0..<sim.nodeCount {
            #expect(Self.balance(sim, index, of: fixture.payee) == 30, "seed \(seed) node \(index)")
        }
    }

    @Test(arguments: [UInt64(6), 7, 8])
    func aLateNodeAndAPartitionedOneCatchUp(seed: UInt64) throws {
        var (sim, fixture) = Self.network(seed: seed)
        // Node 5 is cut off from everyone while the payer makes entries.
        for other in 0..<5 { sim.partition(5, other) }
        for round in 1...4 {
            sim.submit(.ledger(.transfer(to: fixture.payee.publicKey, amount: 5)), id: CommandID(UInt64(round)), on: 4)
            sim.run(for: .seconds(2))
        }
        #expect(Self.balance(sim, 0, of: fixture.payee) == 20, "seed \(seed)")
        #expect(Self.balance(sim, 5, of: fixture.payee) == 0, "seed \(seed): the partition held")
        for other in 0..<5 { sim.partition(5, other, cut: false) }
        // A node that joins now saw none of it.
        let late = sim.addNode(identity: fixture.latecomer, config: fixture.config(index: 6))
        // The late node starts a round soon after it reaches a member; the healed one within a
        // round interval (or sooner, once a session to a member comes back up).
        sim.run(for: .seconds(10))
        #expect(Self.balance(sim, late, of: fixture.payee) == 20, "seed \(seed): the late node caught up")
        sim.run(for: LedgerPart.syncInterval)
        for index in [5, late] {
            #expect(Self.balance(sim, index, of: fixture.payee) == 20, "seed \(seed) node \(index)")
            #expect(
                sim.instance(index).ledger.state?.accounts[fixture.payer.publicKey]?.nextHeight == 4,
                "seed \(seed) node \(index)")
            #expect(sim.instance(index).ledger.syncCounters.entriesFetched >= 1, "seed \(seed) node \(index)")
        }
    }
}

@Suite("Stakes gate the market, in NetSim", .timeLimit(.minutes(3)))
struct StakeGateTests {
    @Test(arguments: [UInt64(11), 12])
    func anOfferCountsOnlyWhileItsProviderIsBonded(seed: UInt64) throws {
        var sim = NetSim(
            seed: seed,
            link: LinkModel(minimumLatency: .milliseconds(20), maximumLatency: .milliseconds(50), lossRate: 0))
        let fixture = ClientFixture(seed: seed)
        let provider = 4
        for index in 0..<6 {
            var config = fixture.config(index: index)
            if index == provider {
                var offer = ProvideConfig()
                offer.location = .init(country: "DE")
                config.market.provide = offer
            }
            sim.addNode(identity: fixture.identities[index], config: config)
        }
        let key = fixture.identities[provider].publicKey
        func offered(on index: Int) -> Bool {
            sim.instance(index).proposals(serviceType: "ip-tunnel", country: "DE", now: sim.now).contains {
                $0.provider == key
            }
        }
        sim.run(for: .seconds(15))
        #expect(!offered(on: 5), "seed \(seed): no bond, no offer")
        #expect(sim.instance(provider).market.providerStatus?.bondNeeded == 10)
        #expect(sim.instance(provider).market.counters.proposalsPublished == 0, "it did not even publish")

        sim.submit(.ledger(.bond(.provider, amount: 10)), id: CommandID(1), on: provider)
        sim.run(for: .seconds(5))
        guard case .ledgerCertified? = sim.completion(of: CommandID(1), on: provider) else {
            Issue.record("seed \(seed): \(String(describing: sim.completion(of: CommandID(1), on: provider)))")
            return
        }
        for index in [0, 1, 5] { #expect(offered(on: index), "seed \(seed) node \(index): bonded, offered") }
        #expect(sim.instance(5).market.bonds?.bond(of: key) == 10)

        sim.submit(.ledger(.unbond(.provider, amount: 10)), id: CommandID(2), on: provider)
        sim.run(for: .seconds(5))
        guard case .ledgerCertified? = sim.completion(of: CommandID(2), on: provider) else {
            Issue.record("seed \(seed): \(String(describing: sim.completion(of: CommandID(2), on: provider)))")
            return
        }
        for index in [0, 1, 5] { #expect(!offered(on: index), "seed \(seed) node \(index): unbonded, withdrawn") }
        #expect(sim.instance(provider).market.providerStatus?.withdrawn == true)
    }

    @Test func aGossipedOfferOfAnUnbondedProviderIsDroppedAndCounted() throws {
        let fixture = ClientFixture(seed: 13)
        var config = fixture.config(index: 5)
        config.storage.isEnabled = false
        var bench = PartBench(identity: fixture.identities[5], config: config) { MarketPart(identity: $0, config: $1) }
        bench.feed(.start)
        let stranger = fixture.identities[6]
        let offer = ServiceProposal(
            provider: stranger.publicKey, seq: 1, issuedAt: bench.now, expiresAt: bench.now + .seconds(600),
            serviceType: "ip-tunnel", location: .init(country: "DE"), pricePerGiB: 1, pricePerMinute: 1, capacity: 8,
            access: .open, contacts: .init(direct: []))
        let bytes = try SignedProposal.make(offer: offer, identity: stranger, networkID: config.sessions.networkID)
            .encoded()
        let id = MessageID(topic: .proposals, data: bytes)
        func offered() -> [UInt64] {
            bench.part.proposals(
                serviceType: "ip-tunnel", country: nil, maxPricePerGiB: nil, maxPricePerMinute: nil, now: bench.now,
                limit: 10, rtt: { _ in nil }
            ).map(\.seq)
        }
        // While the ledger loads (no report yet) an offer is kept, but neither forwarded nor offered.
        #expect(
            bench.feed(.notice(.gossipValidate(.proposals, bytes, id, from: stranger.publicKey))) == [
                .gossipVerdict(id, .ignore)
            ])
        #expect(bench.part.store.offers(now: bench.now).count == 1 && offered().isEmpty)
        // Once the ledger reported (the stranger has no bond), its offers are dropped and counted.
        bench.feed(.notice(.providerBonds(ProviderBonds(minimum: 10, bonds: [:], isComplete: true))))
        var newer = offer
        newer.seq = 2
        let again = try SignedProposal.make(offer: newer, identity: stranger, networkID: config.sessions.networkID)
            .encoded()
        let againID = MessageID(topic: .proposals, data: again)
        #expect(
            bench.feed(.notice(.gossipValidate(.proposals, again, againID, from: stranger.publicKey))) == [
                .gossipVerdict(againID, .ignore)
            ])
        #expect(bench.part.counters.proposalsUnbonded == 2 && bench.part.store.offers(now: bench.now).first?.seq == 1)
        // Bonded: accepted, stored and offered.
        bench.feed(
            .notice(
                .providerBonds(ProviderBonds(minimum: 10, bonds: [stranger.publicKey: 10], isComplete: false))))
        #expect(
            bench.feed(.notice(.gossipValidate(.proposals, again, againID, from: stranger.publicKey))).last
                == .gossipVerdict(againID, .accept))
        #expect(offered() == [2])
    }
}
