// The iterative lookup state machine: α fan-out, closer contacts, duplicate and unsolicited
// replies, soft timeouts (widening) and hard timeouts (failure), termination, the query budget, hop
// counting, record merging, and whole lookups over a simulated 200-node network checked against
// brute force.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Kademlia

// MARK: - Fixtures

private let softTimeout = Duration.milliseconds(500)
private let hardTimeout = Duration.milliseconds(1500)

/// The same soft and hard timeout for every contact.
private func fixedTimeouts(_: NodeID) -> (soft: Duration, hard: Duration) { (softTimeout, hardTimeout) }

/// A contact with a random key (`PublicKey` checks only the length) at a private endpoint.
private func randomContact(_ rng: inout SeededRandom, number: Int) -> NodeContact {
    NodeContact(publicKey: randomKey(&rng), endpoint: endpoint(UInt32(number)))
}

private func config(
    alpha: Int = 3, k: Int = 20, maximumQueries: Int = 120, maximumCandidates: Int = 100
)
    -> LookupConfig
{
    var config = LookupConfig()
    config.alpha = alpha
    config.k = k
    config.maximumQueries = maximumQueries
    config.maximumCandidates = maximumCandidates
    return config
}

/// A target, a local id, and contacts to seed and answer with.
private struct Fixture {
    var rng: SeededRandom
    let target: Key256
    let localID: NodeID
    private var made = 0

    init(seed: UInt64) {
        rng = SeededRandom(seed: seed)
        target = Key256.random(using: &rng)
        localID = Key256.random(using: &rng)
    }

    /// `count` fresh contacts, closest to the target first.
    mutating func contacts(_ count: Int) -> [NodeContact] {
        var result: [NodeContact] = []
        for _ in 0..<count {
            made += 1
            result.append(randomContact(&rng, number: made))
        }
        return result.sorted { $0.id.xorDistance(to: target) < $1.id.xorDistance(to: target) }
    }

    /// A lookup for `target` from `localID`, started at `t0`.
    func lookup(seeds: [NodeContact], kind: LookupKind = .node, config: LookupConfig = .init()) -> Lookup {
        Lookup(target: target, kind: kind, seeds: seeds, localID: localID, config: config, now: t0)
    }
}

private func ids(_ contacts: [NodeContact]) -> [NodeID] { contacts.map(\.id) }

private func record(_ who: Identity, key: Key256, seq: UInt64) -> SignedRecord {
    SignedRecord.make(
        kind: .providerIndex, key: key, value: [1, 2, 3], seq: seq, expiresAt: t0 + .seconds(3600), identity: who,
        networkID: network)
}

// MARK: - Simulated network

/// `size` nodes, each with a full Kademlia routing table (k = 20 per bucket) built by observing every
/// other node in a random order. A node answers a query with the 20 closest it knows to the target.
private struct SimulatedNetwork {
    let contacts: [NodeContact]
    private let tables: [NodeID: RoutingTable]

    init(size: Int, rng: inout SeededRandom) {
        var contacts: [NodeContact] = []
        for number in 1...size { contacts.append(randomContact(&rng, number: number)) }
        var tables: [NodeID: RoutingTable] = [:]
        for node in contacts {
            var table = RoutingTable(localID: node.id, now: t0)
            for other in contacts.shuffled(using: &rng) where other.id != node.id { _ = table.observe(other, now: t0) }
            tables[node.id] = table
        }
        self.contacts = contacts
        self.tables = tables
    }

    func answer(_ id: NodeID, target: Key256) -> [NodeContact] {
        tables[id]?.closest(to: target, count: DHTMessage.maximumContacts) ?? []
    }

    /// Brute force: the `count` nodes closest to `target`, leaving out `excluded`.
    func trueClosest(to target: Key256, count: Int, excluding excluded: Set<NodeID> = []) -> [NodeContact] {
        Array(
            contacts.filter { !excluded.contains($0.id) }
                .sorted { $0.id.xorDistance(to: target) < $1.id.xorDistance(to: target) }.prefix(count))
    }
}

/// What driving a lookup to its end took.
private struct DriveResult {
    var finished: Bool
    var now: Instant
    /// Every contact queried, in order.
    var queried: [NodeID]
    /// Times `nextDeadline` named an instant that had already passed.
    var staleDeadlines: Int
}

/// Runs `lookup` over `network` in virtual time until it finishes (bounded). Answers arrive 20 ms
/// after the query, from `slow` nodes after 700 ms (past the soft timeout, before the hard one), and
/// never from `dead` nodes. Like the shells, a deadline that has already passed fires 1 ms later.
private func drive(
    _ lookup: inout Lookup, over network: SimulatedNetwork, dead: Set<NodeID> = [], slow: Set<NodeID> = []
) -> DriveResult {
    var now = t0
    var answers: [(at: Instant, id: NodeID)] = []
    var result = DriveResult(finished: false, now: now, queried: [], staleDeadlines: 0)
    for _ in 0..<100_000 {
        for query in lookup.poll(now: now, timeouts: fixedTimeouts) {
            result.queried.append(query.id)
            if dead.contains(query.id) { continue }
            answers.append((now + (slow.contains(query.id) ? .milliseconds(700) : .milliseconds(20)), query.id))
        }
        if lookup.isFinished { break }
        var next = answers.map(\.at).min()
        if let deadline = lookup.nextDeadline {
            if deadline <= now { result.staleDeadlines += 1 }
            let due = deadline > now ? deadline : now + .milliseconds(1)
            next = min(next ?? due, due)
        }
        guard let next else { break }
        now = next
        for answer in answers where answer.at <= now {
            lookup.onResponse(
                from: answer.id, contacts: network.answer(answer.id, target: lookup.target), records: [], now: now)
        }
        answers.removeAll { $0.at <= now }
        if lookup.isFinished { break }
    }
    result.finished = lookup.isFinished
    result.now = now
    return result
}

// MARK: - Tests

@Suite struct LookupTests {
    // MARK: Fan-out and progress

    @Test func firstPollSendsAlphaQueriesToTheClosestSeeds() {
        var fixture = Fixture(seed: 1)
        let seeds = fixture.contacts(10)
        var lookup = fixture.lookup(seeds: seeds.shuffled(using: &fixture.rng))
        let queries = lookup.poll(now: t0, timeouts: fixedTimeouts)
        #expect(ids(queries) == ids(Array(seeds.prefix(3))))
        #expect(lookup.queriesSent == 3)
        #expect(Set(lookup.inFlight) == Set(ids(Array(seeds.prefix(3)))))
        let again = lookup.poll(now: t0 + .milliseconds(10), timeouts: fixedTimeouts)
        #expect(again.isEmpty, "α queries are already in flight")
        #expect(!lookup.isFinished)
    }

    @Test func aResponseBringsCloserContactsAndANewQuery() {
        var fixture = Fixture(seed: 2)
        let all = fixture.contacts(10)
        let closer = Array(all.prefix(5))
        let far = all.suffix(5)
        var lookup = fixture.lookup(seeds: Array(far))
        let first = lookup.poll(now: t0, timeouts: fixedTimeouts)
        #expect(ids(first) == ids(Array(far.prefix(3))))
        lookup.onResponse(from: first[0].id, contacts: closer, records: [], now: t0 + .milliseconds(50))
        #expect(lookup.responses == 1)
        #expect(lookup.hops == 1)
        let next = lookup.poll(now: t0 + .milliseconds(50), timeouts: fixedTimeouts)
        #expect(ids(next) == [closer[0].id], "one slot is free and the closest new contact fills it")
        #expect(ids(lookup.closestResponded) == [first[0].id])
    }

    @Test func aDuplicateResponseIsIgnored() {
        var fixture = Fixture(seed: 3)
        let late = fixture.contacts(1)
        let seeds = fixture.contacts(5)
        var lookup = fixture.lookup(seeds: seeds)
        let first = lookup.poll(now: t0, timeouts: fixedTimeouts)
        lookup.onResponse(from: first[0].id, contacts: [], records: [], now: t0 + .milliseconds(10))
        lookup.onResponse(from: first[0].id, contacts: late, records: [], now: t0 + .milliseconds(20))
        #expect(lookup.responses == 1)
        #expect(!lookup.candidates.contains { $0.contact.id == late[0].id }, "a duplicate's contacts are not used")
        let next = lookup.poll(now: t0 + .milliseconds(20), timeouts: fixedTimeouts)
        #expect(ids(next) == [seeds[3].id])
    }

    @Test func anUnsolicitedResponseIsIgnored() {
        var fixture = Fixture(seed: 4)
        let stranger = fixture.contacts(1)[0]
        let offered = fixture.contacts(3)
        let seeds = fixture.contacts(5)
        var lookup = fixture.lookup(seeds: seeds)
        _ = lookup.poll(now: t0, timeouts: fixedTimeouts)
        // Never heard of.
        lookup.onResponse(from: stranger.id, contacts: offered, records: [], now: t0)
        lookup.onFailure(from: stranger.id, now: t0)
        // Known (a seed) but never asked.
        lookup.onResponse(from: seeds[4].id, contacts: offered, records: [], now: t0)
        lookup.onFailure(from: seeds[4].id, now: t0)
        #expect(lookup.responses == 0)
        #expect(lookup.failures == 0)
        #expect(lookup.candidates.count == seeds.count)
        #expect(lookup.closestResponded.isEmpty)
        #expect(lookup.candidates.first { $0.contact.id == seeds[4].id }?.state == .fresh, "it can still be asked")
    }

    @Test func theLocalNodeIsNeverQueried() {
        var rng = SeededRandom(seed: 5)
        let net = SimulatedNetwork(size: 60, rng: &rng)
        let local = net.contacts[0]
        let target = net.contacts[1].id
        // Seeds and answers both name the local node; it must never be asked or reported.
        var lookup = Lookup(
            target: target, kind: .node, seeds: [local] + net.contacts.suffix(3), localID: local.id, config: config(),
            now: t0)
        let run = drive(&lookup, over: net)
        #expect(run.finished)
        #expect(!run.queried.contains(local.id))
        #expect(!lookup.closestResponded.contains { $0.id == local.id })
        #expect(!lookup.candidates.contains { $0.contact.id == local.id })
    }

    // MARK: Timeouts

    @Test func aSoftTimeoutWidensTheLookupAndALateAnswerStillCounts() {
        var fixture = Fixture(seed: 6)
        let all = fixture.contacts(8)
        let closer = Array(all.prefix(2))
        let seeds = Array(all.dropFirst(2))
        var lookup = fixture.lookup(seeds: seeds)
        let slow = lookup.poll(now: t0, timeouts: fixedTimeouts)
        #expect(ids(slow) == ids(Array(seeds.prefix(3))))
        let early = lookup.poll(now: t0 + softTimeout - .nanoseconds(1), timeouts: fixedTimeouts)
        #expect(early.isEmpty, "before the soft timeout the slow queries still count against α")
        let widened = lookup.poll(now: t0 + softTimeout, timeouts: fixedTimeouts)
        #expect(!widened.isEmpty, "a fourth query goes out")
        #expect(ids(widened) == ids(Array(seeds[3..<6])))
        #expect(Set(lookup.inFlight) == Set(ids(seeds)), "the slow queries are still in flight")
        #expect(lookup.failures == 0)
        // A late answer (after the soft timeout, before the hard one) is used.
        lookup.onResponse(from: slow[1].id, contacts: closer, records: [], now: t0 + .milliseconds(700))
        #expect(lookup.responses == 1)
        #expect(ids(lookup.closestResponded) == [slow[1].id])
        #expect(lookup.candidates.prefix(2).map(\.contact.id) == ids(closer))
    }

    @Test func aHardTimeoutFailsTheQueryAndTheNextCandidateReplacesIt() {
        var fixture = Fixture(seed: 7)
        let seeds = fixture.contacts(7)
        var lookup = fixture.lookup(seeds: seeds)
        _ = lookup.poll(now: t0, timeouts: fixedTimeouts)
        _ = lookup.poll(now: t0 + softTimeout, timeouts: fixedTimeouts)  // widens to seeds 3...5
        lookup.onResponse(from: seeds[3].id, contacts: [], records: [], now: t0 + .milliseconds(600))
        lookup.onResponse(from: seeds[4].id, contacts: [], records: [], now: t0 + .milliseconds(600))
        lookup.onResponse(from: seeds[5].id, contacts: [], records: [], now: t0 + .milliseconds(600))
        #expect(lookup.poll(now: t0 + .milliseconds(600), timeouts: fixedTimeouts).map(\.id) == [seeds[6].id])
        let replaced = lookup.poll(now: t0 + hardTimeout, timeouts: fixedTimeouts)
        #expect(lookup.failures == 3, "the first three hit their hard timeout")
        #expect(!lookup.inFlight.contains(seeds[0].id))
        #expect(replaced.isEmpty, "no fresh candidate is left")
        #expect(lookup.candidates.filter { $0.state == .failed }.map(\.contact.id) == ids(Array(seeds.prefix(3))))
    }

    @Test func aFailureIsReplacedByTheNextCandidate() {
        var fixture = Fixture(seed: 8)
        let seeds = fixture.contacts(5)
        var lookup = fixture.lookup(seeds: seeds)
        _ = lookup.poll(now: t0, timeouts: fixedTimeouts)
        lookup.onFailure(from: seeds[1].id, now: t0 + .milliseconds(5))
        lookup.onFailure(from: seeds[1].id, now: t0 + .milliseconds(6))
        #expect(lookup.failures == 1, "a second failure of the same query is not counted")
        let next = lookup.poll(now: t0 + .milliseconds(6), timeouts: fixedTimeouts)
        #expect(ids(next) == [seeds[3].id])
        #expect(lookup.nextDeadline == t0 + softTimeout)
    }

    @Test func expiryAtTheHardDeadlineFailsQueriesDuringPoll() {
        var fixture = Fixture(seed: 9)
        let seeds = fixture.contacts(6)
        var lookup = fixture.lookup(seeds: seeds)
        _ = lookup.poll(now: t0, timeouts: fixedTimeouts)
        // No poll in between: the soft and the hard timeout pass together.
        let next = lookup.poll(now: t0 + hardTimeout, timeouts: fixedTimeouts)
        #expect(lookup.failures == 3)
        #expect(ids(next) == ids(Array(seeds[3..<6])))
        // A very late answer after the hard timeout is still used (documented), counted as a response.
        lookup.onResponse(from: seeds[0].id, contacts: [], records: [], now: t0 + .seconds(2))
        #expect(lookup.responses == 1)
        #expect(ids(lookup.closestResponded) == [seeds[0].id])
    }

    // MARK: Termination

    @Test func finishesWhenTheKClosestHaveResponded() {
        var fixture = Fixture(seed: 10)
        let seeds = fixture.contacts(6)
        var lookup = fixture.lookup(seeds: seeds, config: config(k: 3))
        let queries = lookup.poll(now: t0, timeouts: fixedTimeouts)
        #expect(ids(queries) == ids(Array(seeds.prefix(3))))
        lookup.onResponse(from: seeds[2].id, contacts: [], records: [], now: t0 + .milliseconds(10))
        lookup.onResponse(from: seeds[0].id, contacts: [], records: [], now: t0 + .milliseconds(20))
        #expect(!lookup.isFinished)
        lookup.onResponse(from: seeds[1].id, contacts: [], records: [], now: t0 + .milliseconds(30))
        #expect(lookup.isFinished)
        #expect(lookup.finishedAt == t0 + .milliseconds(30))
        #expect(lookup.poll(now: t0 + .milliseconds(30), timeouts: fixedTimeouts).isEmpty)
        #expect(lookup.queriesSent == 3, "the farther seeds are never asked")
        #expect(ids(lookup.closestResponded) == ids(Array(seeds.prefix(3))))
        #expect(lookup.nextDeadline == nil)
    }

    @Test func aFailureAmongTheKClosestLetsTheNextOneIn() {
        var fixture = Fixture(seed: 11)
        let seeds = fixture.contacts(5)
        var lookup = fixture.lookup(seeds: seeds, config: config(k: 3))
        _ = lookup.poll(now: t0, timeouts: fixedTimeouts)
        lookup.onResponse(from: seeds[0].id, contacts: [], records: [], now: t0 + .milliseconds(10))
        lookup.onResponse(from: seeds[2].id, contacts: [], records: [], now: t0 + .milliseconds(10))
        lookup.onFailure(from: seeds[1].id, now: t0 + .milliseconds(10))
        #expect(!lookup.isFinished, "seeds[3] is now among the 3 closest that have not failed")
        #expect(ids(lookup.poll(now: t0 + .milliseconds(10), timeouts: fixedTimeouts)) == [seeds[3].id])
        lookup.onResponse(from: seeds[3].id, contacts: [], records: [], now: t0 + .milliseconds(20))
        #expect(lookup.isFinished)
        #expect(ids(lookup.closestResponded) == [seeds[0].id, seeds[2].id, seeds[3].id])
    }

    @Test func finishesWhenCandidatesAreExhausted() {
        var fixture = Fixture(seed: 12)
        let seeds = fixture.contacts(2)
        var lookup = fixture.lookup(seeds: seeds)
        #expect(lookup.poll(now: t0, timeouts: fixedTimeouts).count == 2)
        lookup.onResponse(from: seeds[1].id, contacts: [], records: [], now: t0 + .milliseconds(10))
        #expect(!lookup.isFinished)
        lookup.onFailure(from: seeds[0].id, now: t0 + .milliseconds(20))
        #expect(lookup.isFinished)
        #expect(ids(lookup.closestResponded) == [seeds[1].id])
        #expect(lookup.failures == 1)
    }

    @Test func aLookupWithoutSeedsFinishesAtOnce() {
        let fixture = Fixture(seed: 13)
        var lookup = fixture.lookup(seeds: [])
        #expect(lookup.poll(now: t0, timeouts: fixedTimeouts).isEmpty)
        #expect(lookup.isFinished)
        #expect(lookup.nextDeadline == nil)
    }

    @Test(arguments: [1, 4, 7, 15])
    func theQueryBudgetIsNeverExceeded(budget: Int) {
        var rng = SeededRandom(seed: 14)
        let net = SimulatedNetwork(size: 200, rng: &rng)
        var lookup = Lookup(
            target: Key256.random(using: &rng), kind: .node, seeds: Array(net.contacts.prefix(20)),
            localID: Key256.random(using: &rng), config: config(maximumQueries: budget), now: t0)
        // Every fourth node never answers, so failures are part of the budget too.
        let dead = Set(net.contacts.enumerated().filter { $0.offset % 4 == 0 }.map(\.element.id))
        let run = drive(&lookup, over: net, dead: dead)
        #expect(run.finished)
        #expect(lookup.queriesSent == budget)
        #expect(run.queried.count == budget)
    }

    // MARK: Findings

    @Test func targetFoundRecordsTheHopAndTheTime() {
        var fixture = Fixture(seed: 15)
        let hop1 = fixture.contacts(1)[0]
        let hop2 = fixture.contacts(1)[0]
        let seed = fixture.contacts(1)[0]
        let targetContact = hop1  // stands in for the target: its id is the lookup target
        var lookup = Lookup(
            target: targetContact.id, kind: .node, seeds: [seed], localID: fixture.localID, config: config(), now: t0)
        _ = lookup.poll(now: t0, timeouts: fixedTimeouts)
        lookup.onResponse(from: seed.id, contacts: [hop2], records: [], now: t0 + .milliseconds(10))
        #expect(lookup.targetFound == nil)
        #expect(ids(lookup.poll(now: t0 + .milliseconds(10), timeouts: fixedTimeouts)) == [hop2.id])
        lookup.onResponse(from: hop2.id, contacts: [targetContact], records: [], now: t0 + .milliseconds(30))
        let found = lookup.targetFound
        #expect(found?.hops == 2)
        #expect(found?.at == t0 + .milliseconds(30))
        #expect(found?.contact == targetContact)
        #expect(lookup.hops == 2)
        // Hearing of it again later changes nothing.
        let moved = NodeContact(publicKey: targetContact.publicKey, endpoint: Endpoint(address: .v4(1), port: 9))
        _ = lookup.poll(now: t0 + .milliseconds(30), timeouts: fixedTimeouts)
        lookup.onResponse(from: targetContact.id, contacts: [moved], records: [], now: t0 + .milliseconds(40))
        #expect(lookup.targetFound?.at == t0 + .milliseconds(30))
        #expect(lookup.targetFound?.contact.endpoint == targetContact.endpoint)
    }

    @Test func valueLookupsDoNotRecordTheTargetNode() {
        var fixture = Fixture(seed: 16)
        let seed = fixture.contacts(1)[0]
        let other = fixture.contacts(1)[0]
        var lookup = Lookup(
            target: other.id, kind: .value, seeds: [seed], localID: fixture.localID, config: config(), now: t0)
        _ = lookup.poll(now: t0, timeouts: fixedTimeouts)
        lookup.onResponse(from: seed.id, contacts: [other], records: [], now: t0 + .milliseconds(10))
        #expect(lookup.targetFound == nil)
    }

    @Test func recordsAreMergedPerPublisherKeepingTheHighestSeq() {
        var fixture = Fixture(seed: 17)
        let alice = Identity.generate(using: &fixture.rng)
        let bob = Identity.generate(using: &fixture.rng)
        let seeds = fixture.contacts(3)
        var lookup = fixture.lookup(seeds: seeds, kind: .value)
        _ = lookup.poll(now: t0, timeouts: fixedTimeouts)
        let target = fixture.target
        lookup.onResponse(
            from: seeds[2].id, contacts: [], records: [record(alice, key: target, seq: 2)], now: t0 + .milliseconds(10))
        lookup.onResponse(
            from: seeds[0].id, contacts: [],
            records: [record(alice, key: target, seq: 5), record(bob, key: target, seq: 1)],
            now: t0 + .milliseconds(20))
        lookup.onResponse(
            from: seeds[1].id, contacts: [], records: [record(alice, key: target, seq: 3)], now: t0 + .milliseconds(30))
        #expect(lookup.records.count == 2)
        #expect(lookup.records[alice.publicKey]?.seq == 5)
        #expect(lookup.records[bob.publicKey]?.seq == 1)
        #expect(lookup.firstRecord?.at == t0 + .milliseconds(10))
        #expect(lookup.firstRecord?.hops == 1)
    }

    @Test func recordsForAnotherKeyAreIgnored() {
        var fixture = Fixture(seed: 18)
        let alice = Identity.generate(using: &fixture.rng)
        let otherKey = Key256.random(using: &fixture.rng)
        let seeds = fixture.contacts(1)
        var lookup = fixture.lookup(seeds: seeds, kind: .value)
        _ = lookup.poll(now: t0, timeouts: fixedTimeouts)
        lookup.onResponse(
            from: seeds[0].id, contacts: [], records: [record(alice, key: otherKey, seq: 9)],
            now: t0 + .milliseconds(10))
        #expect(lookup.records.isEmpty)
        #expect(lookup.firstRecord == nil)
        #expect(lookup.responses == 1)
    }

    // MARK: Deadlines

    @Test func nextDeadlineIsTheEarliestDeadlineInFlight() {
        var fixture = Fixture(seed: 19)
        let all = fixture.contacts(6)
        let closer = Array(all.prefix(1))
        let seeds = Array(all.dropFirst(1))
        var lookup = fixture.lookup(seeds: seeds)
        #expect(lookup.nextDeadline == nil, "nothing in flight before the first poll")
        _ = lookup.poll(now: t0, timeouts: fixedTimeouts)
        #expect(lookup.nextDeadline == t0 + softTimeout)
        lookup.onResponse(from: seeds[0].id, contacts: closer, records: [], now: t0 + .milliseconds(100))
        _ = lookup.poll(now: t0 + .milliseconds(100), timeouts: fixedTimeouts)  // asks `closer`
        #expect(lookup.nextDeadline == t0 + softTimeout, "the older queries are still due first")
        lookup.onResponse(from: seeds[1].id, contacts: [], records: [], now: t0 + .milliseconds(150))
        lookup.onResponse(from: seeds[2].id, contacts: [], records: [], now: t0 + .milliseconds(150))
        _ = lookup.poll(now: t0 + .milliseconds(150), timeouts: fixedTimeouts)  // asks seeds 3 and 4
        #expect(lookup.nextDeadline == t0 + .milliseconds(100) + softTimeout)
        // Per-contact timeouts are honoured.
        var custom = Fixture(seed: 19).lookup(seeds: seeds)
        _ = custom.poll(now: t0) { id in
            id == seeds[0].id ? (.milliseconds(50), .milliseconds(80)) : (softTimeout, hardTimeout)
        }
        #expect(custom.nextDeadline == t0 + .milliseconds(50))
    }

    @Test func nextDeadlineNeverNamesASoftDeadlineThatHasPassed() {
        var fixture = Fixture(seed: 20)
        let seeds = fixture.contacts(3)
        var lookup = fixture.lookup(seeds: seeds)
        _ = lookup.poll(now: t0, timeouts: fixedTimeouts)
        let now = t0 + softTimeout + .milliseconds(1)
        let sent = lookup.poll(now: now, timeouts: fixedTimeouts)
        #expect(sent.isEmpty, "nothing left to widen to")
        // All three are past their soft deadline; the only work left is their hard deadline. A deadline
        // in the past makes the shell tick every millisecond until then (1 s here, 4 s by default).
        withKnownIssue("Lookup.nextDeadline returns soft deadlines that have already passed") {
            #expect(lookup.nextDeadline == t0 + hardTimeout)
        }
    }

    // MARK: Candidate memory

    @Test func forgettingCandidatesNeverDropsOnesInFlight() {
        var fixture = Fixture(seed: 21)
        let all = fixture.contacts(15)
        let closer = Array(all.prefix(10))
        let seeds = Array(all.dropFirst(10))
        var lookup = fixture.lookup(seeds: seeds, config: config(maximumCandidates: 5))
        _ = lookup.poll(now: t0, timeouts: fixedTimeouts)
        lookup.onResponse(from: seeds[0].id, contacts: closer, records: [], now: t0 + .milliseconds(10))
        #expect(lookup.candidates.count == 5)
        #expect(
            ids(lookup.candidates.map(\.contact)) == [
                closer[0].id, closer[1].id, seeds[0].id, seeds[1].id, seeds[2].id,
            ])
        #expect(Set(lookup.inFlight) == [seeds[1].id, seeds[2].id])
        // Late answers from the in-flight ones still count.
        lookup.onResponse(from: seeds[1].id, contacts: [], records: [], now: t0 + .milliseconds(20))
        #expect(lookup.responses == 2)
    }

    // MARK: Whole lookups over a simulated network

    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func aNodeLookupFindsItsTargetAndTheTrueClosest(seed: UInt64) {
        var rng = SeededRandom(seed: 100 + seed)
        let net = SimulatedNetwork(size: 200, rng: &rng)
        let localID = Key256.random(using: &rng)
        for _ in 0..<5 {
            let target = net.contacts.randomElement(using: &rng)!
            let seeds = (0..<3).map { _ in net.contacts.randomElement(using: &rng)! }
            var lookup = Lookup(
                target: target.id, kind: .node, seeds: seeds, localID: localID, config: config(), now: t0)
            let run = drive(&lookup, over: net)
            #expect(run.finished)
            let found = lookup.targetFound?.contact ?? lookup.closestResponded.first { $0.id == target.id }
            #expect(found == target)
            #expect(ids(lookup.closestResponded) == ids(net.trueClosest(to: target.id, count: 20)))
            #expect(lookup.queriesSent <= 120)
            #expect(lookup.failures == 0)
            #expect(lookup.responses == lookup.queriesSent)
        }
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func aLookupForARandomKeyConvergesOnTheTrueClosest(seed: UInt64) {
        var rng = SeededRandom(seed: 200 + seed)
        let net = SimulatedNetwork(size: 200, rng: &rng)
        let target = Key256.random(using: &rng)
        var lookup = Lookup(
            target: target, kind: .value, seeds: [net.contacts.randomElement(using: &rng)!],
            localID: Key256.random(using: &rng), config: config(), now: t0)
        let run = drive(&lookup, over: net)
        #expect(run.finished)
        #expect(lookup.targetFound == nil)
        #expect(ids(lookup.closestResponded) == ids(net.trueClosest(to: target, count: 20)))
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func slowAndDeadNodesDoNotStopALookup(seed: UInt64) {
        var rng = SeededRandom(seed: 300 + seed)
        let net = SimulatedNetwork(size: 200, rng: &rng)
        let shuffled = net.contacts.shuffled(using: &rng)
        let dead = Set(shuffled.prefix(40).map(\.id))
        let slow = Set(shuffled.dropFirst(40).prefix(40).map(\.id))
        let alive = Array(shuffled.dropFirst(40))
        let target = alive.randomElement(using: &rng)!
        var lookup = Lookup(
            target: target.id, kind: .node, seeds: Array(alive.suffix(3)), localID: Key256.random(using: &rng),
            config: config(), now: t0)
        let run = drive(&lookup, over: net, dead: dead, slow: slow)
        #expect(run.finished)
        #expect(lookup.targetFound?.contact == target || lookup.closestResponded.first == target)
        // Answers list the 20 closest a node knows, dead ones included, so the 20th closest live node may
        // be named by no one; the closest ones are always found.
        #expect(lookup.closestResponded.count == 20)
        #expect(
            ids(Array(lookup.closestResponded.prefix(10)))
                == ids(net.trueClosest(to: target.id, count: 10, excluding: dead)))
        #expect(lookup.failures > 0 || !run.queried.contains { dead.contains($0) })
        #expect(run.now < t0 + .seconds(30), "bounded by the timeouts, not stalled")
    }
}
