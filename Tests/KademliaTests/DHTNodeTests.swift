// The DHT core driven through an in-memory network: several `DHTNode`s whose `.send` effects are
// delivered (through the wire format) to the destination's `handle`, with virtual time advancing to
// the next delivery or `nextDeadline`. Covers ping/pong, FIND_NODE answers, bootstrap convergence,
// put/get, STORE validation, unexpected responses, timeouts, dead nodes, client mode,
// `contactUnreachable`, and the pending-request cap.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Kademlia

// MARK: - Fixtures

/// One-way delay of every simulated link.
private let latency = Duration.milliseconds(10)

/// An in-memory network of DHT nodes. Messages to a node in `unreachable` are lost; every other
/// message arrives `latency` after it was sent, in order. Effects other than `.send` are kept per
/// node in `events`.
private struct Harness {
    struct InFlight {
        var at: Instant
        var from: Int
        var to: Int
        var message: DHTMessage
    }

    var nodes: [DHTNode] = []
    var identities: [Identity] = []
    var contacts: [NodeContact] = []
    var index: [PublicKey: Int] = [:]
    var now = t0
    var rng: SeededRandom
    var unreachable: Set<Int> = []
    var events: [[DHTEffect]] = []
    /// Times a node's `nextDeadline` named an instant already past (the shell then waits 1 ms).
    var staleDeadlines = 0
    private var queue: [InFlight] = []
    private var head = 0
    private var deadlines: [Instant?] = []

    init(count: Int, seed: UInt64, configure: (Int, inout DHTConfig) -> Void = { _, _ in }) {
        rng = SeededRandom(seed: seed)
        for number in 0..<count {
            let identity = Identity.generate(using: &rng)
            var config = DHTConfig()
            configure(number, &config)
            let contact = NodeContact(
                publicKey: identity.publicKey,
                endpoint: Endpoint(address: .v4(0x0A00_0000 | UInt32(number + 1)), port: 4747))
            index[identity.publicKey] = number
            identities.append(identity)
            contacts.append(contact)
            nodes.append(DHTNode(identity: identity, networkID: network, config: config, now: t0, rng: &rng))
            events.append([])
            deadlines.append(nil)
        }
    }

    var queuedMessages: Int { queue.count - head }

    /// Runs a command on node `node` now and handles its effects.
    @discardableResult
    mutating func command<Result>(
        _ node: Int, _ operation: (inout DHTNode, Instant, inout SeededRandom) -> (Result, [DHTEffect])
    ) -> Result {
        var random = rng
        let (result, effects) = operation(&nodes[node], now, &random)
        rng = random
        apply(effects, of: node)
        return result
    }

    mutating func bootstrap(_ node: Int, from seeds: [Int]) {
        let seedContacts = seeds.map { contacts[$0] }
        command(node) { dht, now, rng in ((), dht.bootstrap(seedContacts, now: now, rng: &rng)) }
    }

    mutating func lookup(_ node: Int, _ target: Key256, kind: LookupKind = .node) -> UInt64 {
        command(node) { dht, now, rng in
            let (id, effects) = dht.lookup(target, kind: kind, now: now, rng: &rng)
            return (id, effects)
        }
    }

    mutating func put(_ node: Int, _ record: SignedRecord) -> UInt64 {
        command(node) { dht, now, rng in
            let (id, effects) = dht.put(record, now: now, rng: &rng)
            return (id, effects)
        }
    }

    /// Handles effects of `node`: sends go through the wire format into the queue.
    mutating func apply(_ effects: [DHTEffect], of node: Int) {
        for effect in effects {
            guard case .send(let message, let contact) = effect else {
                events[node].append(effect)
                continue
            }
            let bytes = message.encoded()
            #expect(bytes.count <= DHTMessage.maximumSize, "\(message.tag) of \(bytes.count) bytes")
            guard let decoded = try? DHTMessage(decoding: bytes) else {
                Issue.record("\(message) does not decode")
                continue
            }
            #expect(decoded == message)
            guard let destination = index[contact.publicKey] else {
                Issue.record("a message to an unknown node \(contact)")
                continue
            }
            #expect(contact.endpoint == contacts[destination].endpoint, "sent to a wrong endpoint")
            #expect(destination != node, "a node sent a message to itself")
            if unreachable.contains(destination) { continue }
            queue.append(InFlight(at: now + latency, from: node, to: destination, message: decoded))
        }
        deadlines[node] = nodes[node].nextDeadline
        if let deadline = deadlines[node], deadline <= now { staleDeadlines += 1 }
    }

    /// Delivers the next message or fires the next timer, if either is due by `limit`.
    mutating func step(until limit: Instant) -> Bool {
        var timer: (at: Instant, node: Int)?
        for (node, deadline) in deadlines.enumerated() {
            guard let deadline else { continue }
            let at = deadline > now ? deadline : now + .milliseconds(1)
            if timer == nil || at < timer!.at { timer = (at, node) }
        }
        if head < queue.count, timer.map({ queue[head].at <= $0.at }) ?? true {
            let next = queue[head]
            guard next.at <= limit else { return false }
            head += 1
            if head > 4096 {
                queue.removeFirst(head)
                head = 0
            }
            now = max(now, next.at)
            let effects = nodes[next.to].handle(next.message, from: contacts[next.from], now: now, rng: &rng)
            apply(effects, of: next.to)
            return true
        }
        guard let timer, timer.at <= limit else { return false }
        now = max(now, timer.at)
        let effects = nodes[timer.node].tick(now: now, rng: &rng)
        apply(effects, of: timer.node)
        return true
    }

    /// Steps until `done` holds or nothing is due within `limit` of now. Returns whether `done` held.
    @discardableResult
    mutating func run(for limit: Duration = .seconds(120), until done: (Harness) -> Bool) -> Bool {
        let end = now + limit
        while !done(self) {
            guard step(until: end) else { return done(self) }
        }
        return true
    }

    /// No message in flight, no request pending, no lookup running.
    var isIdle: Bool {
        queuedMessages == 0 && nodes.allSatisfy { $0.pendingRequestCount == 0 && $0.activeLookupCount == 0 }
    }

    /// Runs until the network is idle (bounded).
    @discardableResult
    mutating func settle(for limit: Duration = .seconds(120)) -> Bool { run(for: limit) { $0.isIdle } }

    func report(_ node: Int, _ id: UInt64) -> LookupReport? {
        for case .lookupFinished(let report) in events[node] where report.id == id { return report }
        return nil
    }

    func putReport(_ node: Int, _ id: UInt64) -> PutReport? {
        for case .putFinished(let report) in events[node] where report.id == id { return report }
        return nil
    }

    /// Bootstraps `joining` (by default every node but the seed) one at a time from `seed`, letting
    /// the network settle after each.
    mutating func bootstrapAll(from seed: Int = 0, joining: [Int]? = nil) {
        for node in joining ?? nodes.indices.filter({ $0 != seed }) {
            bootstrap(node, from: [seed])
            let settled = settle()
            #expect(settled, "bootstrap of node \(node) did not settle")
        }
    }
}

/// Hands `message` from `contact` straight to `node` (no queue, no time passing); returns its effects.
private func answer(
    _ harness: inout Harness, node: Int, _ message: DHTMessage, from contact: NodeContact
) -> [DHTEffect] {
    harness.nodes[node].handle(message, from: contact, now: harness.now, rng: &harness.rng)
}

private func sends(_ effects: [DHTEffect]) -> [(message: DHTMessage, to: NodeContact)] {
    effects.compactMap { if case .send(let message, let contact) = $0 { (message, contact) } else { nil } }
}

private func peerRecord(_ who: Identity, at endpoint: Endpoint, seq: UInt64 = 1, expiresAt: Instant) -> SignedRecord {
    SignedRecord.peer(
        PeerRecordValue(endpoints: [endpoint]), seq: seq, expiresAt: expiresAt, identity: who, networkID: network)
}

// MARK: - Tests

@Suite struct DHTNodeTests {
    // MARK: Ping

    @Test func pingIsAnsweredWithTheObservedAddressAndBothTablesLearn() {
        var harness = Harness(count: 2, seed: 1)
        let peer = harness.contacts[1]
        harness.command(0) { dht, now, _ in ((), dht.ping(peer, now: now)) }
        #expect(harness.nodes[0].pendingRequestCount == 1)
        harness.settle()
        let observed = harness.events[0].filter {
            if case .observedAddress = $0 { true } else { false }
        }
        #expect(observed == [.observedAddress(harness.contacts[0].endpoint, reporter: harness.contacts[1].publicKey)])
        // The answer (a server's) put node 1 into node 0's table; node 1 verified node 0 with a ping
        // of its own, and node 0's answer put node 0 into node 1's table.
        #expect(harness.nodes[0].table.contact(for: harness.contacts[1].id) == harness.contacts[1])
        #expect(harness.nodes[1].table.contact(for: harness.contacts[0].id) == harness.contacts[0])
        #expect(harness.nodes[0].counters.requestsSent == 1)
        #expect(harness.nodes[0].counters.responsesReceived == 1)
        #expect(harness.nodes[1].counters.responsesReceived == 1, "the answer to its verification ping")
        #expect(harness.nodes[1].counters.requestsReceived == 1)
        #expect(harness.nodes[0].pendingRequestCount == 0)
        #expect(harness.nodes[1].pendingRequestCount == 0)
    }

    @Test func theAnswerToAPingEchoesTheIdAndNamesTheRequestersEndpoint() {
        var harness = Harness(count: 2, seed: 2)
        let request = DHTMessage(id: 0xDEAD_BEEF, flags: [], body: .ping)
        let effects = answer(&harness, node: 1, request, from: harness.contacts[0])
        // A client's request (no server flag) is answered but not verified.
        #expect(sends(effects).count == 1)
        let reply = sends(effects).first
        #expect(reply?.to == harness.contacts[0])
        #expect(
            reply?.message
                == DHTMessage(id: 0xDEAD_BEEF, flags: .server, body: .pong(observed: harness.contacts[0].endpoint)))
    }

    @Test func roundTripTimesSetTheTimeouts() {
        var harness = Harness(count: 3, seed: 3)
        let (b, c) = (harness.contacts[1], harness.contacts[2])
        #expect(harness.nodes[0].timeouts(for: b.id).soft == .milliseconds(800))
        #expect(harness.nodes[0].timeouts(for: b.id).hard == .milliseconds(2400))
        // 50 ms round trip: SRTT 50, RTTVAR 25, soft = 50 + 4·25 = 150 ms, hard 450 ms.
        let ping = harness.command(0) { dht, now, _ in
            let effects = dht.ping(b, now: now)
            return (sends(effects)[0].message, effects)
        }
        var fresh = harness.nodes[0]
        let pong = DHTMessage(id: ping.id, flags: .server, body: .pong(observed: harness.contacts[0].endpoint))
        _ = fresh.handle(pong, from: b, now: harness.now + .milliseconds(50), rng: &harness.rng)
        #expect(fresh.timeouts(for: b.id).soft == .milliseconds(150))
        #expect(fresh.timeouts(for: b.id).hard == .milliseconds(450))
        // A 10 ms round trip would give 30 ms: clamped to the 100 ms minimum.
        let second = fresh.ping(c, now: harness.now)
        let reply = DHTMessage(
            id: sends(second)[0].message.id, flags: .server, body: .pong(observed: harness.contacts[0].endpoint))
        _ = fresh.handle(reply, from: c, now: harness.now + .milliseconds(10), rng: &harness.rng)
        #expect(fresh.timeouts(for: c.id).soft == .milliseconds(100))
        #expect(fresh.timeouts(for: c.id).hard == .milliseconds(300))
    }

    // MARK: FIND_NODE

    @Test func findNodeAnswersExcludeTheRequesterAndHoldAtMostTwenty() {
        var harness = Harness(count: 30, seed: 4)
        harness.bootstrapAll()
        for node in [0, 7, 29] {
            let table = harness.nodes[node].table.contacts
            guard let requester = table.first else {
                Issue.record("node \(node) has an empty table")
                continue
            }
            for target in [requester.id, Key256.random(using: &harness.rng)] {
                let request = DHTMessage(id: 42, flags: .server, body: .findNode(target: target))
                let effects = answer(&harness, node: node, request, from: requester)
                let replies = sends(effects).filter { $0.to == requester }
                #expect(replies.count == 1)
                guard case .nodes(let contacts) = replies.first?.message.body else {
                    Issue.record("no NODES answer")
                    continue
                }
                #expect(replies.first?.message.id == 42)
                #expect(contacts.count <= DHTMessage.maximumContacts)
                #expect(contacts.count == min(DHTMessage.maximumContacts, table.count - 1))
                #expect(!contacts.contains { $0.id == requester.id })
                #expect(!contacts.contains { $0.id == harness.contacts[node].id })
                let expected = table.filter { $0.id != requester.id }
                    .sorted { $0.id.xorDistance(to: target) < $1.id.xorDistance(to: target) }.prefix(20)
                #expect(contacts == Array(expected))
            }
        }
    }

    // MARK: Convergence

    @Test(.timeLimit(.minutes(5)), arguments: [1, 2, 3] as [UInt64])
    func aBootstrappedNetworkFindsEveryNode(seed: UInt64) {
        var harness = Harness(count: 30, seed: 100 + seed)
        harness.bootstrapAll()
        for node in harness.nodes.indices {
            #expect(harness.nodes[node].table.count > 0, "node \(node) has an empty table")
        }
        var missed: [String] = []
        for node in harness.nodes.indices {
            let targets = harness.nodes.indices.filter { $0 != node }
            let ids = targets.map { harness.lookup(node, harness.contacts[$0].id) }
            let settled = harness.settle()
            #expect(settled, "lookups from node \(node) did not finish")
            for (target, id) in zip(targets, ids) {
                guard let report = harness.report(node, id) else {
                    missed.append("\(node)→\(target): no report")
                    continue
                }
                if report.targetContact != harness.contacts[target] { missed.append("\(node)→\(target)") }
                #expect(report.closest.first == harness.contacts[target])
                #expect(report.queries <= 120)
            }
        }
        #expect(missed.isEmpty, "lookups that missed: \(missed)")
        // A deadline already past makes a shell tick every millisecond. Each node's first contact
        // makes one (the cached refresh check starts at zero); more would mean a spinning timer.
        #expect(harness.staleDeadlines <= 2 * harness.nodes.count)
    }

    // MARK: Records

    @Test(.timeLimit(.minutes(5)))
    func aPutRecordIsFoundByAValueLookupFromAnotherNode() {
        var harness = Harness(count: 25, seed: 5)
        harness.bootstrapAll()
        let publisher = 3
        let record = peerRecord(
            harness.identities[publisher], at: harness.contacts[publisher].endpoint,
            expiresAt: harness.now + .seconds(3600))
        let putID = harness.put(publisher, record)
        let settled = harness.settle()
        #expect(settled)
        let put = harness.putReport(publisher, putID)
        #expect(put?.attempted == 10)
        #expect(put?.stored == 10)
        let holders = harness.nodes.indices.filter {
            harness.nodes[$0].store.record(for: record.key, publisher: record.publisher, now: harness.now) == record
        }
        #expect(holders.count >= 11, "the publisher and its 10 replicas hold it")
        for reader in [0, 11, 24] {
            let id = harness.lookup(reader, record.key, kind: .value)
            let settled = harness.settle()
            #expect(settled)
            let report = harness.report(reader, id)
            #expect(report?.records == [record])
            #expect(report?.found == true)
        }
    }

    @Test func aForgedStoreIsRefusedAndCounted() {
        var harness = Harness(count: 2, seed: 6)
        var record = peerRecord(harness.identities[0], at: harness.contacts[0].endpoint, expiresAt: t0 + .seconds(60))
        record.signature[3] ^= 0x40
        let store = DHTMessage(id: 7, flags: [], body: .store(record: record))
        let effects = answer(&harness, node: 1, store, from: harness.contacts[0])
        #expect(sends(effects).map(\.message) == [DHTMessage(id: 7, flags: .server, body: .stored(status: .forged))])
        #expect(harness.nodes[1].counters.storesRefused == 1)
        #expect(harness.nodes[1].counters.storesAccepted == 0)
        #expect(harness.nodes[1].store.refusals[.forged] == 1)
        #expect(harness.nodes[1].store.count == 0)
        // The genuine record is stored, then unchanged.
        record.signature[3] ^= 0x40
        let genuine = DHTMessage(id: 8, flags: [], body: .store(record: record))
        let first = answer(&harness, node: 1, genuine, from: harness.contacts[0])
        let second = answer(&harness, node: 1, genuine, from: harness.contacts[0])
        #expect(sends(first).map(\.message.body) == [.stored(status: .stored)])
        #expect(sends(second).map(\.message.body) == [.stored(status: .unchanged)])
        #expect(harness.nodes[1].counters.storesAccepted == 2)
    }

    // MARK: Responses

    @Test func aResponseFromANodeWeDidNotAskIsCountedAndIgnored() {
        var harness = Harness(count: 3, seed: 7)
        let (asked, impostor) = (harness.contacts[1], harness.contacts[2])
        let request = sends(harness.nodes[0].ping(asked, now: t0))[0].message
        let pong = DHTMessage(id: request.id, flags: .server, body: .pong(observed: Endpoint(address: .v4(1), port: 1)))
        // The right id from the wrong key.
        let forged = answer(&harness, node: 0, pong, from: impostor)
        #expect(forged.isEmpty)
        #expect(harness.nodes[0].counters.unexpectedResponses == 1)
        #expect(harness.nodes[0].pendingRequestCount == 1)
        #expect(!harness.nodes[0].table.contains(impostor.id))
        // The right key with an id we never used.
        var stray = pong
        stray.id &+= 1000
        #expect(answer(&harness, node: 0, stray, from: asked).isEmpty)
        #expect(harness.nodes[0].counters.unexpectedResponses == 2)
        // The genuine answer still works, once.
        let genuine = answer(&harness, node: 0, pong, from: asked)
        #expect(genuine.contains(.observedAddress(pong.observedEndpoint!, reporter: asked.publicKey)))
        #expect(harness.nodes[0].counters.responsesReceived == 1)
        #expect(harness.nodes[0].pendingRequestCount == 0)
        #expect(harness.nodes[0].table.contains(asked.id))
        #expect(answer(&harness, node: 0, pong, from: asked).isEmpty)
        #expect(harness.nodes[0].counters.unexpectedResponses == 3)
    }

    @Test func aRequestTimesOutAtItsHardDeadline() {
        var harness = Harness(count: 2, seed: 8)
        harness.unreachable = [1]
        let peer = harness.contacts[1]
        harness.command(0) { dht, now, _ in ((), dht.ping(peer, now: now)) }
        // The soft timeout (800 ms) is checked first (a lookup would widen), then the hard one.
        #expect(harness.nodes[0].nextDeadline == t0 + .milliseconds(800))
        let soft = harness.nodes[0].tick(now: t0 + .milliseconds(800), rng: &harness.rng)
        #expect(soft.isEmpty)
        #expect(harness.nodes[0].nextDeadline == t0 + .milliseconds(2400))
        let early = harness.nodes[0].tick(now: t0 + .milliseconds(2399), rng: &harness.rng)
        #expect(early.isEmpty)
        let due = harness.nodes[0].tick(now: t0 + .milliseconds(2400), rng: &harness.rng)
        #expect(due == [.contactFailed(harness.contacts[1])])
        #expect(harness.nodes[0].counters.timeouts == 1)
        #expect(harness.nodes[0].pendingRequestCount == 0)
    }

    @Test(.timeLimit(.minutes(5)), arguments: [1, 2] as [UInt64])
    func lookupsFinishWhenAThirdOfTheNodesNeverAnswer(seed: UInt64) {
        var harness = Harness(count: 30, seed: 200 + seed)
        harness.bootstrapAll()
        let silent = Set(harness.nodes.indices.shuffled(using: &harness.rng).prefix(9))
        harness.unreachable = silent
        let live = harness.nodes.indices.filter { !silent.contains($0) }
        var lookups: [(from: Int, target: Int, id: UInt64)] = []
        for node in live {
            for target in live.shuffled(using: &harness.rng).prefix(4) where target != node {
                lookups.append((node, target, harness.lookup(node, harness.contacts[target].id)))
            }
        }
        let settled = harness.settle(for: .seconds(300))
        #expect(settled)
        var found = 0
        for lookup in lookups {
            guard let report = harness.report(lookup.from, lookup.id) else {
                Issue.record("lookup \(lookup.from)→\(lookup.target) never finished")
                continue
            }
            if report.targetContact == harness.contacts[lookup.target] { found += 1 }
            #expect(report.closest.allSatisfy { harness.index[$0.publicKey].map { !silent.contains($0) } ?? false })
        }
        #expect(found == lookups.count)
        let failed = live.flatMap { node in
            harness.events[node].compactMap { if case .contactFailed(let contact) = $0 { contact } else { nil } }
        }
        #expect(!failed.isEmpty)
        #expect(failed.allSatisfy { silent.contains(harness.index[$0.publicKey]!) })
        #expect(live.contains { harness.nodes[$0].counters.timeouts > 0 })
    }

    // MARK: Client mode

    @Test(.timeLimit(.minutes(5)))
    func clientsAreNeverPutIntoRoutingTables() {
        let clients = Set(20..<26)
        var harness = Harness(count: 26, seed: 9) { node, config in config.isServer = !clients.contains(node) }
        harness.bootstrapAll()
        for client in clients.sorted() {
            for target in [1, 5, 19] { _ = harness.lookup(client, harness.contacts[target].id) }
        }
        let settled = harness.settle()
        #expect(settled)
        for node in harness.nodes.indices {
            let inTable = harness.nodes[node].table.contacts.compactMap { harness.index[$0.publicKey] }
            #expect(inTable.allSatisfy { !clients.contains($0) }, "node \(node) holds a client: \(inTable)")
        }
        for client in clients {
            #expect(harness.nodes[client].table.count > 0, "a client still learns servers")
            let reports = harness.events[client].compactMap { if case .lookupFinished(let r) = $0 { r } else { nil } }
            #expect(reports.count == 3)
            #expect(reports.allSatisfy { $0.found })
        }
    }

    // MARK: Failures

    @Test func contactUnreachableFailsPendingRequestsAtOnce() {
        var harness = Harness(count: 3, seed: 10)
        let peer = harness.contacts[1]
        // Nothing is delivered: the requests stay pending.
        harness.unreachable = [1, 2]
        harness.bootstrap(0, from: [1])
        let lookupID = harness.lookup(0, harness.contacts[2].id)
        let other = harness.contacts[2]
        harness.command(0) { dht, now, _ in ((), dht.ping(other, now: now)) }
        #expect(harness.nodes[0].pendingRequestCount == 3)
        let effects = harness.nodes[0].contactUnreachable(peer.publicKey, now: t0 + .milliseconds(5))
        #expect(effects.filter { $0 == .contactFailed(peer) }.count == 2)
        #expect(harness.nodes[0].pendingRequestCount == 1, "the ping to node 2 still waits")
        let report = effects.compactMap { if case .lookupFinished(let r) = $0 { r } else { nil } }.first
        #expect(report?.id == lookupID)
        #expect(report?.failures == 1)
        #expect(report?.found == false)
        #expect(report?.duration == .milliseconds(5))
        #expect(harness.nodes[0].activeLookupCount == 0)
        #expect(harness.nodes[0].counters.timeouts == 2)
    }

    @Test(.timeLimit(.minutes(5)), arguments: [1, 3])
    func aTinyPendingCapDoesNotHangLookups(cap: Int) {
        let capped = 24
        var harness = Harness(count: 25, seed: 11) { node, config in
            if node == capped { config.maximumPendingRequests = cap }
        }
        harness.bootstrapAll(joining: Array(1..<capped))
        // The capped node joins (its join starts several bucket-refresh lookups at once), then looks
        // up every other node.
        harness.bootstrap(capped, from: [0])
        let ids = (0..<capped).map { harness.lookup(capped, harness.contacts[$0].id) }
        let settled = harness.settle(for: .seconds(60))
        let reports = ids.compactMap { harness.report(capped, $0) }
        #expect(harness.nodes[capped].pendingRequestCount <= cap)
        // A lookup whose queries the cap refused is re-polled at once, so nothing waits for a timer.
        #expect(settled, "every lookup (the join's refreshes too) finishes within a minute")
        #expect(harness.nodes[capped].activeLookupCount == 0)
        #expect(reports.count == ids.count)
    }

    @Test func aLookupWhoseQueriesAreAllRefusedFinishesAtOnce() {
        var harness = Harness(count: 6, seed: 12) { node, config in
            if node == 0 { config.maximumPendingRequests = 0 }
        }
        harness.bootstrap(0, from: Array(1..<6))
        #expect(harness.nodes[0].pendingRequestCount == 0)
        let id = harness.lookup(0, harness.contacts[3].id)
        // Nothing can be sent, so nothing will ever answer: the lookup should end now rather than wait
        // for an unrelated timer (here the 30 s re-bootstrap; with a full table, a 15 min refresh).
        #expect(harness.report(0, id) != nil)
        harness.run(for: .seconds(600)) { $0.report(0, id) != nil }
        #expect(harness.report(0, id)?.found == false)
    }

    // MARK: Known issues

    @Test func aPutAtTheLookupCapReportsOnlyThePut() {
        var harness = Harness(count: 3, seed: 13) { node, config in
            if node == 0 { config.maximumLookups = 1 }
        }
        harness.unreachable = [1, 2]
        harness.bootstrap(0, from: [1, 2])  // occupies the only lookup slot
        #expect(harness.nodes[0].activeLookupCount == 1)
        let record = peerRecord(harness.identities[0], at: harness.contacts[0].endpoint, expiresAt: t0 + .seconds(60))
        let putID = harness.put(0, record)
        #expect(harness.putReport(0, putID)?.attempted == 0)
        #expect(!harness.events[0].contains { if case .lookupFinished = $0 { true } else { false } })
    }

    @Test func aValueLookupRefusesRecordsAStoreWouldRefuse() throws {
        var harness = Harness(count: 3, seed: 14)
        let (liar, publisher) = (harness.contacts[1], harness.identities[2])
        let key = RecordKey.peer(publisher.publicKey)
        // Validly signed by the publisher, but expired an hour ago.
        let expired = peerRecord(publisher, at: harness.contacts[2].endpoint, expiresAt: t0 - .seconds(3600))
        // Validly signed, but by someone else filing it under the publisher's peer key (wrong key).
        let misfiled = SignedRecord.make(
            kind: .peer, key: key, value: PeerRecordValue(endpoints: [liar.endpoint]).encoded(), seq: 1,
            expiresAt: t0 + .seconds(3600), identity: harness.identities[1], networkID: network)
        var store = RecordStore(networkID: network)
        let refusals = [store.store(expired, now: t0), store.store(misfiled, now: t0)]
        #expect(refusals == [.refused(.expired), .refused(.wrongKey)])
        var node = harness.nodes[0]
        _ = node.bootstrap([liar], now: t0, rng: &harness.rng)
        let (id, effects) = node.lookup(key, kind: .value, now: t0, rng: &harness.rng)
        let query = try #require(sends(effects).first { $0.to == liar })
        #expect(query.message.body == .findValue(key: key, page: 0))
        let reply = DHTMessage(
            id: query.message.id, flags: .server,
            body: .values(page: 0, pages: 1, records: [expired, misfiled], contacts: []))
        let done = node.handle(reply, from: liar, now: t0 + .milliseconds(20), rng: &harness.rng)
        let report = done.compactMap { if case .lookupFinished(let r) = $0 { r } else { nil } }.first { $0.id == id }
        #expect(report != nil)
        #expect(report?.records == [])
    }

    @Test func aValueLookupFetchesEveryPageOfValues() throws {
        var harness = Harness(count: 10, seed: 15)
        let (reader, holder) = (0, 1)
        let publishers = Array(2..<10)
        var key = Key256.zero
        for publisher in publishers {
            let record = SignedRecord.providerIndex(
                serviceType: "wireguard", country: "DE", seq: 1, expiresAt: t0 + .seconds(3600),
                identity: harness.identities[publisher], networkID: network)
            key = record.key
            let stored = answer(
                &harness, node: holder, DHTMessage(id: 1, flags: [], body: .store(record: record)),
                from: harness.contacts[publisher])
            #expect(sends(stored).map(\.message.body) == [.stored(status: .stored)])
        }
        #expect(harness.nodes[holder].store.records(for: key, now: t0).count == publishers.count)
        var node = harness.nodes[reader]
        _ = node.bootstrap([harness.contacts[holder]], now: t0, rng: &harness.rng)
        let (id, effects) = node.lookup(key, kind: .value, now: t0, rng: &harness.rng)
        let query = try #require(sends(effects).first { $0.message.body == .findValue(key: key, page: 0) })
        let reply = try #require(
            sends(answer(&harness, node: holder, query.message, from: harness.contacts[reader])).first)
        guard case .values(let page, let pages, let records, _) = reply.message.body else {
            Issue.record("not a VALUES answer: \(reply.message)")
            return
        }
        #expect(page == 0)
        #expect(pages == 2, "8 provider entries of 193 bytes need two pages")
        #expect(records.count == 6, "6 fit beside an empty contact list")
        let next = node.handle(
            reply.message, from: harness.contacts[holder], now: t0 + .milliseconds(20), rng: &harness.rng)
        let report = next.compactMap { if case .lookupFinished(let r) = $0 { r } else { nil } }.first { $0.id == id }
        // Page 1 is asked for at once, and the lookup waits for it.
        let pageQuery = try #require(sends(next).first { $0.message.body == .findValue(key: key, page: 1) })
        #expect(report == nil || report?.records.count == publishers.count)
        let pageReply = try #require(
            sends(answer(&harness, node: holder, pageQuery.message, from: harness.contacts[reader])).first)
        let last = node.handle(
            pageReply.message, from: harness.contacts[holder], now: t0 + .milliseconds(40), rng: &harness.rng)
        let final = last.compactMap { if case .lookupFinished(let r) = $0 { r } else { nil } }.first { $0.id == id }
        if report == nil {
            #expect(final?.records.count == publishers.count, "both pages' records are in the report")
        }
    }

    @Test(.timeLimit(.minutes(5)))
    func theLargestTextRecordIsReadBackFromAnotherNode() throws {
        var harness = Harness(count: 12, seed: 21)
        harness.bootstrapAll()
        let name = String(repeating: "n", count: TextRecordValue.maximumName)
        let value = try TextRecordValue(name: name, text: String(repeating: "t", count: TextRecordValue.maximumText))
        let record = SignedRecord.make(
            kind: .text, key: RecordKey.text(name), value: value.encoded(), seq: 1,
            expiresAt: harness.now + .seconds(3600), identity: harness.identities[3], networkID: network)
        _ = harness.put(3, record)
        let stored = harness.settle()
        #expect(stored)
        let id = harness.lookup(9, RecordKey.text(name), kind: .value)
        let finished = harness.settle()
        #expect(finished)
        #expect(harness.report(9, id)?.records == [record], "a maximum-size record fits one VALUES answer")
    }

    @Test(.timeLimit(.minutes(5)))
    func aValueLookupCollectsEveryRecordUnderAKey() {
        var harness = Harness(count: 25, seed: 15)
        harness.bootstrapAll()
        let providers = Array(1...8)
        var key = Key256.zero
        for provider in providers {
            let record = SignedRecord.providerIndex(
                serviceType: "wireguard", country: "DE", seq: 1, expiresAt: harness.now + .seconds(3600),
                identity: harness.identities[provider], networkID: network)
            key = record.key
            _ = harness.put(provider, record)
            let settled = harness.settle()
            #expect(settled)
        }
        let held = harness.nodes.map { $0.store.records(for: key, now: harness.now).count }
        #expect(held.max() == providers.count, "some nodes hold all \(providers.count) entries")
        let id = harness.lookup(0, key, kind: .value)
        let settled = harness.settle()
        #expect(settled)
        let report = harness.report(0, id)
        #expect(report?.found == true)
        #expect(report?.records.count == providers.count)
    }
}

extension DHTMessage {
    fileprivate var observedEndpoint: Endpoint? { if case .pong(let observed) = body { observed } else { nil } }
}
