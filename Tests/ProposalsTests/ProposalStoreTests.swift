import Testing
import UmbraCore
import UmbraTestKit

@testable import Proposals

/// Inserts `proposal` by its wire bytes, as a proposal from the network arrives.
private func receive(
    _ proposal: SignedProposal, into store: inout ProposalStore, now: Instant = start
)
    -> ProposalStore.InsertOutcome
{
    store.verifyAndInsert(proposal.encoded(), networkID: network, now: now)
}

@Suite("Proposal store: seq, replays and tombstones")
struct ProposalStoreSeqTests {
    @Test("a new offer is added, returned and counted")
    func adds() {
        var store = ProposalStore()
        let proposal = signedOffer(alice)
        #expect(receive(proposal, into: &store) == .added)
        #expect(store.count == 1)
        #expect(store.offer(for: proposal.id, now: start) == proposal)
        #expect(store.offers(now: start) == [proposal.offer!])
        #expect(store.signedOffers(now: start) == [proposal.encoded()])
        #expect(store.counters.added == 1)
        #expect(store.nextExpiry == proposal.expiresAt)
    }

    @Test("a higher seq replaces; the same bytes again are a duplicate")
    func replacesAndDuplicates() {
        var store = ProposalStore()
        #expect(receive(signedOffer(alice, seq: 1), into: &store) == .added)
        let newer = signedOffer(alice, seq: 2, pricePerGiB: 5)
        #expect(receive(newer, into: &store) == .replaced)
        #expect(receive(newer, into: &store) == .duplicate)
        #expect(store.count == 1)
        #expect(store.offer(for: newer.id, now: start) == newer)
        #expect(store.counters.replaced == 1)
        #expect(store.counters.duplicate == 1)
    }

    @Test("a replayed older seq is stale, counted, and changes nothing")
    func replayedOlderSeq() {
        var store = ProposalStore()
        let old = signedOffer(alice, seq: 4, pricePerGiB: 1)
        let current = signedOffer(alice, seq: 5, pricePerGiB: 9)
        #expect(receive(old, into: &store) == .added)
        #expect(receive(current, into: &store) == .replaced)
        #expect(receive(old, into: &store) == .stale)
        #expect(receive(old, into: &store) == .stale)
        #expect(store.counters.stale == 2)
        #expect(store.offer(for: current.id, now: start) == current)
        #expect(store.count == 1)
    }

    @Test("the same seq with other content is stale, not a replacement")
    func equalSeqOtherContent() {
        var store = ProposalStore()
        let first = signedOffer(alice, seq: 3, pricePerGiB: 1)
        #expect(receive(first, into: &store) == .added)
        #expect(receive(signedOffer(alice, seq: 3, pricePerGiB: 2), into: &store) == .stale)
        #expect(store.offer(for: first.id, now: start) == first)
    }

    @Test("refusals are counted per reason and leave the store unchanged")
    func refusalsCounted() {
        var store = ProposalStore()
        var forged = signedOffer(alice)
        forged.signature[3] ^= 1
        #expect(receive(forged, into: &store) == .refused(.badSignature))
        #expect(receive(signedOffer(bob), into: &store, now: start + .seconds(180)) == .refused(.expired))
        #expect(
            store.verifyAndInsert([9, 9, 9], networkID: network, now: start)
                == .refused(.malformed(.unknownTag(field: "proposal kind", value: 9))))
        #expect(store.counters.refusals == [.badSignature: 1, .expired: 1, .malformed: 1])
        #expect(store.count == 0 && store.tombstoneCount == 0)
    }

    @Test("a tombstone with the offer's seq withdraws it; older and equal offers cannot come back")
    func tombstonePreventsResurrection() {
        var store = ProposalStore()
        let offer2 = signedOffer(alice, seq: 2)
        let offer3 = signedOffer(alice, seq: 3)
        #expect(receive(offer3, into: &store) == .added)
        #expect(receive(tombstone(alice, seq: 3), into: &store) == .withdrawn)
        #expect(store.count == 0)
        #expect(store.tombstoneCount == 1)
        #expect(store.isWithdrawn(provider: alice.publicKey, serviceType: "ip-tunnel", now: start))
        #expect(store.query(serviceType: "ip-tunnel", now: start).isEmpty)
        #expect(store.signedOffers(now: start).isEmpty)

        #expect(receive(offer3, into: &store) == .stale)
        #expect(receive(offer2, into: &store) == .stale)
        #expect(store.count == 0)
        #expect(store.counters.stale == 2)
        #expect(store.counters.withdrawn == 1)
    }

    @Test("after a tombstone only a higher seq brings the offer back")
    func newerOfferAfterTombstone() {
        var store = ProposalStore()
        #expect(receive(signedOffer(alice, seq: 3), into: &store) == .added)
        #expect(receive(tombstone(alice, seq: 5), into: &store) == .withdrawn)
        #expect(receive(signedOffer(alice, seq: 5), into: &store) == .stale)
        let back = signedOffer(alice, seq: 6)
        #expect(receive(back, into: &store) == .added)
        #expect(store.offer(for: back.id, now: start) == back)
        #expect(!store.isWithdrawn(provider: alice.publicKey, serviceType: "ip-tunnel", now: start))
        #expect(store.tombstoneCount == 0)
    }

    @Test("a tombstone older than the offer is stale and withdraws nothing")
    func olderTombstone() {
        var store = ProposalStore()
        let current = signedOffer(alice, seq: 8)
        #expect(receive(current, into: &store) == .added)
        #expect(receive(tombstone(alice, seq: 7), into: &store) == .stale)
        #expect(store.offer(for: current.id, now: start) == current)
    }

    @Test("a tombstone signed by someone else is refused and the offer stays")
    func tombstoneBySomeoneElse() {
        var store = ProposalStore()
        let current = signedOffer(alice, seq: 1)
        #expect(receive(current, into: &store) == .added)
        let withdrawal = ProposalWithdrawal(
            provider: alice.publicKey, seq: 99, issuedAt: start, expiresAt: start + .seconds(180),
            serviceType: "ip-tunnel")
        #expect(receive(forceSigned(.withdrawal(withdrawal), by: bob), into: &store) == .refused(.badSignature))
        #expect(store.offer(for: current.id, now: start) == current)
        #expect(store.tombstoneCount == 0)
    }

    @Test("a tombstone arriving before any offer is remembered and blocks older offers")
    func tombstoneFirst() {
        var store = ProposalStore()
        #expect(receive(tombstone(alice, seq: 4), into: &store) == .tombstoneStored)
        #expect(receive(signedOffer(alice, seq: 4), into: &store) == .stale)
        #expect(receive(tombstone(alice, seq: 6), into: &store) == .tombstoneStored)
        #expect(receive(signedOffer(alice, seq: 5), into: &store) == .stale)
        #expect(store.tombstoneCount == 1)
        #expect(store.count == 0)
    }

    @Test("a tombstone is remembered until it expires, then dropped")
    func tombstoneExpires() {
        var store = ProposalStore()
        #expect(receive(tombstone(alice, seq: 4, lifetime: .seconds(60)), into: &store) == .tombstoneStored)
        let older = signedOffer(alice, seq: 3, lifetime: .seconds(180))
        #expect(receive(older, into: &store, now: start + .seconds(59)) == .stale)
        #expect(store.expire(now: start + .seconds(60)) == 1)
        #expect(!store.isWithdrawn(provider: alice.publicKey, serviceType: "ip-tunnel", now: start + .seconds(60)))
        #expect(receive(older, into: &store, now: start + .seconds(60)) == .added)
    }

    @Test("offers of different service types and providers are independent")
    func independentIDs() {
        var store = ProposalStore()
        #expect(receive(signedOffer(alice, service: "ip-tunnel", seq: 5), into: &store) == .added)
        #expect(receive(signedOffer(alice, service: "socks5", seq: 1), into: &store) == .added)
        #expect(receive(signedOffer(bob, service: "ip-tunnel", seq: 1), into: &store) == .added)
        #expect(receive(tombstone(alice, service: "socks5", seq: 1), into: &store) == .withdrawn)
        #expect(store.count == 2)
        #expect(store.query(serviceType: "ip-tunnel", now: start).count == 2)
        #expect(store.query(serviceType: "socks5", now: start).isEmpty)
    }
}

@Suite("Proposal store: expiry and caps")
struct ProposalStoreCapTests {
    @Test("expired offers are never returned and expire(now:) drops them")
    func expiry() {
        var store = ProposalStore()
        let short = signedOffer(alice, lifetime: .seconds(60))
        let long = signedOffer(bob, lifetime: .seconds(180))
        #expect(receive(short, into: &store) == .added)
        #expect(receive(long, into: &store) == .added)
        let later = start + .seconds(60)
        #expect(store.query(serviceType: "ip-tunnel", now: later) == [long.offer!])
        #expect(store.offers(now: later) == [long.offer!])
        #expect(store.signedOffers(now: later) == [long.encoded()])
        #expect(store.offer(for: short.id, now: later) == nil)
        #expect(store.count == 2)
        #expect(store.nextExpiry == short.expiresAt)
        #expect(store.expire(now: later) == 1)
        #expect(store.count == 1)
        #expect(store.nextExpiry == long.expiresAt)
        #expect(store.counters.expired == 1)
    }

    @Test("when full, the entry expiring soonest is evicted; a newcomer expiring sooner is refused")
    func evictionOrder() {
        var store = ProposalStore(capacity: 3)
        let a = signedOffer(alice, lifetime: .seconds(100))
        let b = signedOffer(bob, lifetime: .seconds(200))
        let c = signedOffer(carol, lifetime: .seconds(300))
        for proposal in [a, b, c] { #expect(receive(proposal, into: &store) == .added) }
        let d = signedOffer(identity(4), lifetime: .seconds(250))
        #expect(receive(d, into: &store) == .added)
        #expect(store.count == 3)
        #expect(store.counters.evicted == 1)
        #expect(store.offer(for: a.id, now: start) == nil)
        #expect(store.nextExpiry == b.expiresAt)

        let e = signedOffer(identity(5), lifetime: .seconds(150))
        #expect(receive(e, into: &store) == .refused(.storeFull))
        #expect(store.count == 3)
        #expect(
            Set(store.offers(now: start).map(\.provider)) == [bob.publicKey, carol.publicKey, identity(4).publicKey])

        // Replacing a held id needs no room.
        #expect(receive(signedOffer(bob, seq: 2, lifetime: .seconds(60)), into: &store) == .replaced)
        #expect(store.count == 3)
    }

    @Test("tombstones count against the capacity and can be evicted")
    func tombstonesUseCapacity() {
        var store = ProposalStore(capacity: 2)
        #expect(receive(tombstone(alice, seq: 1, lifetime: .seconds(30)), into: &store) == .tombstoneStored)
        #expect(receive(signedOffer(bob), into: &store) == .added)
        #expect(receive(signedOffer(carol), into: &store) == .added)
        #expect(store.counters.evicted == 1)
        #expect(store.tombstoneCount == 0)
        #expect(store.count == 2)
    }

    @Test("a flood of new providers never grows the store past its capacity")
    func flood() {
        var store = ProposalStore(capacity: 10)
        for index in 0..<300 {
            let who = identity(index: index)
            let proposal = signedOffer(who, lifetime: .seconds(Int64(60 + index % 50)))
            _ = store.insert(proposal, now: start)
            #expect(store.count + store.tombstoneCount <= 10)
        }
        #expect(store.count == 10)
        let expiries = store.offers(now: start).map(\.expiresAt)
        // Lifetimes 60...109 s, six of each: what is left are the ten latest (six 109 s, four 108 s).
        #expect(expiries.allSatisfy { $0 >= start + .seconds(108) })
        #expect(expiries.filter { $0 == start + .seconds(109) }.count == 6)
    }

    @Test("one provider holds at most maximumEntriesPerProvider entries")
    func perProviderQuota() {
        var store = ProposalStore(config: .init(capacity: 100, maximumEntriesPerProvider: 2))
        #expect(receive(signedOffer(alice, service: "a"), into: &store) == .added)
        #expect(receive(tombstone(alice, service: "b", seq: 1), into: &store) == .tombstoneStored)
        #expect(receive(signedOffer(alice, service: "c"), into: &store) == .refused(.overQuota))
        #expect(receive(signedOffer(alice, service: "a", seq: 2), into: &store) == .replaced)
        #expect(receive(signedOffer(bob, service: "c"), into: &store) == .added)
        #expect(store.counters.refusals[.overQuota] == 1)
    }

    @Test("a provider bumping its seq in a loop does not grow the expiry heap")
    func heapStaysBounded() {
        var store = ProposalStore()
        for seq in 1...500 {
            let proposal = signedOffer(alice, seq: UInt64(seq), lifetime: .seconds(Int64(100 + seq % 7)))
            #expect(store.insert(proposal, now: start) == (seq == 1 ? .added : .replaced))
        }
        #expect(store.expiryEntryCount <= 2 * 1 + 64 + 1)
        #expect(store.expire(now: start + .seconds(200)) == 1)
        #expect(store.count == 0)
    }

    @Test("insert refuses an already expired proposal even when the caller skipped verify")
    func insertChecksExpiry() {
        var store = ProposalStore()
        let proposal = signedOffer(alice)
        #expect(store.insert(proposal, now: proposal.expiresAt) == .refused(.expired))
        #expect(store.count == 0)
    }
}

@Suite("Proposal store: queries")
struct ProposalQueryTests {
    @Test("filters by service type, country, prices and consumer")
    func filters() {
        var store = ProposalStore()
        let cheapDE = signedOffer(identity(10), country: "DE", pricePerGiB: 100, pricePerMinute: 50)
        let dearDE = signedOffer(identity(11), country: "DE", pricePerGiB: 900, pricePerMinute: 5)
        let cheapFR = signedOffer(identity(12), country: "FR", pricePerGiB: 100, pricePerMinute: 5)
        let socks = signedOffer(identity(13), service: "socks5", country: "DE", pricePerGiB: 1)
        let privateOffer = signed(
            offer(identity(14), pricePerGiB: 50, access: .allowList([alice.publicKey])), by: identity(14))
        for proposal in [cheapDE, dearDE, cheapFR, socks, privateOffer] {
            #expect(receive(proposal, into: &store) == .added)
        }
        let providers = { (offers: [ServiceProposal]) in offers.map(\.provider) }

        #expect(
            providers(store.query(serviceType: "ip-tunnel", now: start)).count == 4)
        #expect(
            Set(providers(store.query(serviceType: "ip-tunnel", country: "DE", now: start)))
                == [cheapDE.provider, dearDE.provider, privateOffer.provider])
        #expect(
            providers(store.query(serviceType: "ip-tunnel", country: "DE", maxPricePerGiB: 100, now: start))
                == [privateOffer.provider, cheapDE.provider])
        #expect(
            providers(store.query(serviceType: "ip-tunnel", maxPricePerMinute: 5, now: start))
                == [cheapFR.provider, dearDE.provider])
        #expect(
            providers(store.query(serviceType: "ip-tunnel", country: "DE", consumer: bob.publicKey, now: start))
                == [cheapDE.provider, dearDE.provider])
        #expect(
            providers(store.query(serviceType: "ip-tunnel", country: "DE", consumer: alice.publicKey, now: start))
                == [privateOffer.provider, cheapDE.provider, dearDE.provider])
        #expect(providers(store.query(serviceType: "socks5", now: start)) == [socks.provider])
        #expect(store.query(serviceType: "wireguard", now: start).isEmpty)
        #expect(store.query(serviceType: "ip-tunnel", now: start, limit: 2).count == 2)
    }

    @Test("sorted by price per GiB, then per minute, then RTT (known first), then provider key")
    func sortOrder() {
        var store = ProposalStore()
        let who = (20..<27).map { identity(index: $0) }
        // who[0]: cheapest per GiB. who[1], who[2]: same GiB, different per-minute. who[3...6]: same
        // prices; who[3] RTT 80 ms, who[4] RTT 20 ms, who[5] and who[6] unknown (ordered by key).
        let prices: [(UInt64, UInt64)] = [(10, 99), (20, 1), (20, 2), (30, 5), (30, 5), (30, 5), (30, 5)]
        for (index, identity) in who.enumerated() {
            let proposal = signedOffer(identity, pricePerGiB: prices[index].0, pricePerMinute: prices[index].1)
            #expect(receive(proposal, into: &store) == .added)
        }
        let rtts: [PublicKey: Duration] = [who[3].publicKey: .milliseconds(80), who[4].publicKey: .milliseconds(20)]
        let result = store.query(serviceType: "ip-tunnel", now: start) { rtts[$0] }.map(\.provider)
        let unknown = [who[5].publicKey, who[6].publicKey].sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }
        #expect(result == [who[0], who[1], who[2], who[4], who[3]].map(\.publicKey) + unknown)

        // Without RTTs the four equal offers fall back to key order.
        let byKey = [who[3], who[4], who[5], who[6]].map(\.publicKey)
            .sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }
        #expect(Array(store.query(serviceType: "ip-tunnel", now: start).map(\.provider).suffix(4)) == byKey)
    }
}
