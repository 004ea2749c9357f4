import Testing
import UmbraCore
import UmbraTestKit

@testable import Proposals

// MARK: - Fixtures

/// 500 live offers from distinct providers, signed once for all sync tests.
private let liveSet: [SignedProposal] = (0..<500).map { index in
    let who = identity(index: 1000 + index)
    let countries = ["DE", "FR", "NL", "US", "JP"]
    return signed(
        offer(
            who, service: index % 3 == 0 ? "socks5" : "ip-tunnel", country: countries[index % countries.count],
            seq: UInt64(index + 1), pricePerGiB: UInt64(1000 + index), region: index % 2 == 0 ? "Region \(index)" : nil),
        by: who)
}

/// A store holding `liveSet`.
private let fullStore: ProposalStore = {
    var store = ProposalStore()
    for proposal in liveSet { _ = store.insert(proposal, now: start) }
    return store
}()

private func requests(in effects: [SyncEffect]) -> [(request: ProposalSyncMessage.Request, peer: PublicKey)] {
    effects.compactMap { effect in
        guard case .send(.request(let request), let peer) = effect else { return nil }
        return (request, peer)
    }
}

private func pages(
    _ store: ProposalStore, answering request: ProposalSyncMessage.Request, now: Instant
)
    -> [ProposalSyncMessage.Page]
{
    store.syncPages(
        requestID: request.requestID, range: request.range, maxPages: Int(request.maxPages), now: now)
}

// MARK: - Messages

@Suite("Proposal sync messages")
struct ProposalSyncMessageTests {
    @Test("a request and a page round-trip; the layouts have the documented sizes")
    func roundTrip() throws {
        let request = ProposalSyncMessage.request(.init(requestID: 0xDEAD_BEEF, range: .full, maxPages: 256))
        let requestBytes = request.encoded()
        #expect(requestBytes.count == ProposalSyncMessage.requestSize)
        #expect(requestBytes.prefix(5) == [1, 0xEF, 0xBE, 0xAD, 0xDE])
        #expect(try ProposalSyncMessage(decoding: requestBytes) == request)

        let items = [liveSet[0].encoded(), liveSet[1].encoded()]
        let covered = try #require(KeyRange(Key256(words: (1, 2, 3, 4)), Key256(words: (5, 6, 7, 8))))
        let page = ProposalSyncMessage.page(.init(requestID: 7, covered: covered, items: items, isLast: true))
        let pageBytes = page.encoded()
        #expect(pageBytes.count == ProposalSyncMessage.pageHeaderSize + items.reduce(0) { $0 + 2 + $1.count })
        #expect(pageBytes[0] == 2)
        #expect(pageBytes[69] == 1 && pageBytes[70] == 2)  // last flag, item count
        #expect(try ProposalSyncMessage(decoding: pageBytes) == page)
    }

    @Test("the decoder refuses what breaks a rule")
    func refusals() {
        let request = ProposalSyncMessage.request(.init(requestID: 1, range: .full, maxPages: 3)).encoded()
        #expect(throws: DecodeError.lengthTooLarge(offset: 0, length: 1181, limit: 1180)) {
            try ProposalSyncMessage(decoding: [UInt8](repeating: 2, count: 1181))
        }
        #expect(throws: DecodeError.unknownTag(field: "proposal sync message", value: 3)) {
            try ProposalSyncMessage(decoding: [3] + request.dropFirst())
        }
        var reversed = request
        reversed[5] = 0xFF  // first key now above the last key's top byte? make last small instead
        for index in 37..<69 { reversed[index] = 0 }
        #expect(throws: DecodeError.invalid(field: "proposal sync range", reason: "first key above last key")) {
            try ProposalSyncMessage(decoding: reversed)
        }
        var zeroPages = request
        zeroPages[69] = 0
        zeroPages[70] = 0
        #expect(throws: DecodeError.invalid(field: "proposal sync max pages", reason: "zero")) {
            try ProposalSyncMessage(decoding: zeroPages)
        }
        #expect(throws: DecodeError.trailingBytes(count: 1)) { try ProposalSyncMessage(decoding: request + [0]) }
        for length in 0..<request.count {
            #expect(throws: DecodeError.self) { try ProposalSyncMessage(decoding: Array(request.prefix(length))) }
        }

        let header = Array(
            ProposalSyncMessage.page(.init(requestID: 1, covered: .full, items: [], isLast: false))
                .encoded().dropLast())
        #expect(throws: DecodeError.lengthTooLarge(offset: 70, length: 65, limit: 64)) {
            try ProposalSyncMessage(decoding: header + [65] + [UInt8](repeating: 0, count: 65 * 3))
        }
        #expect(throws: DecodeError.invalid(field: "proposal sync item", reason: "empty")) {
            try ProposalSyncMessage(decoding: header + [1, 0, 0])
        }
        #expect(throws: DecodeError.lengthTooLarge(offset: 71, length: 1001, limit: 1000)) {
            try ProposalSyncMessage(decoding: header + [1, 0xE9, 0x03] + [UInt8](repeating: 0, count: 1001))
        }
        var badFlag = header + [0]
        badFlag[69] = 2
        #expect(
            throws: DecodeError.invalid(field: "proposal sync last flag", reason: "boolean byte 2 is neither 0 nor 1")
        ) {
            try ProposalSyncMessage(decoding: badFlag)
        }
    }
}

// MARK: - Responder

@Suite("Proposal sync responder")
struct ProposalSyncResponderTests {
    /// Pages must tile `range` exactly, hold items in key order inside their own range, fit a datagram,
    /// and only the final one is marked last.
    private func checkTiling(_ pages: [ProposalSyncMessage.Page], of range: KeyRange, complete: Bool) throws {
        let first = try #require(pages.first)
        #expect(first.covered.lowerBound == range.lowerBound)
        for (left, right) in zip(pages, pages.dropFirst()) {
            #expect(left.covered.upperBound.successor == right.covered.lowerBound)
        }
        if complete { #expect(pages.last?.covered.upperBound == range.upperBound) }
        #expect(pages.map(\.isLast) == Array(repeating: false, count: pages.count - 1) + [true])
        var previous: Key256?
        for page in pages {
            #expect(ProposalSyncMessage.page(page).encoded().count <= ProposalSyncMessage.maximumSize)
            for item in page.items {
                let key = try SignedProposal(decoding: item).id.syncKey
                #expect(page.covered.contains(key))
                if let previous { #expect(previous < key) }
                previous = key
            }
        }
    }

    @Test("the whole set comes back in pages that tile the key space")
    func fullRange() throws {
        let pages = fullStore.syncPages(range: .full, maxPages: 256, now: start)
        try checkTiling(pages, of: .full, complete: true)
        #expect(pages.count > 50)
        let items = pages.flatMap(\.items)
        #expect(items.count == 500)
        #expect(Set(items) == Set(liveSet.map { $0.encoded() }))
    }

    @Test("a sub-range returns exactly the entries whose key is in it")
    func subRange() throws {
        let keys = liveSet.map(\.id.syncKey).sorted()
        let range = try #require(KeyRange(keys[100], keys[199]))
        let pages = fullStore.syncPages(range: range, maxPages: 256, now: start)
        try checkTiling(pages, of: range, complete: true)
        #expect(pages.flatMap(\.items).count == 100)
    }

    @Test("the page cap stops the answer and the last page says where")
    func pageCap() throws {
        let pages = fullStore.syncPages(range: .full, maxPages: 3, now: start)
        #expect(pages.count == 3)
        try checkTiling(pages, of: .full, complete: false)
        let stop = try #require(pages.last?.covered.upperBound)
        #expect(stop < .max)
        let resume = try #require(stop.successor)
        let rest = try #require(KeyRange(resume, .max))
        let restPages = fullStore.syncPages(range: rest, maxPages: 256, now: start)
        #expect((pages + restPages).flatMap(\.items).count == 500)
        #expect(fullStore.syncPages(range: .full, maxPages: 0, now: start).count == 1)
        #expect(fullStore.syncPages(range: .full, maxPages: 10_000, now: start).count <= 256)
    }

    @Test("an empty store answers with one empty page covering the range")
    func emptyStore() {
        let pages = ProposalStore().syncPages(requestID: 9, range: .full, maxPages: 4, now: start)
        #expect(pages == [.init(requestID: 9, covered: .full, items: [], isLast: true)])
    }

    @Test("tombstones are sent, expired entries are not; a maximal proposal gets a page of its own")
    func contents() throws {
        var store = ProposalStore()
        _ = store.insert(tombstone(alice, seq: 1), now: start)
        _ = store.insert(signedOffer(bob, lifetime: .seconds(10)), now: start)
        let keys = (0..<16).map { identity(index: $0).publicKey }
        let bigOffers = (0..<3).map { index in
            let who = identity(index: 50 + index)
            return signed(
                offer(
                    who, region: String(repeating: "r", count: 32), access: .allowList(Array(keys.prefix(13))),
                    contacts: .init(direct: (1...4).map { endpoint($0) })),
                by: who)
        }
        for proposal in bigOffers { #expect(store.insert(proposal, now: start) == .added) }
        let pages = store.syncPages(range: .full, maxPages: 256, now: start + .seconds(10))
        try checkTiling(pages, of: .full, complete: true)
        let items = pages.flatMap(\.items)
        #expect(items.count == 4)
        #expect(items.contains(tombstone(alice, seq: 1).encoded()))
        #expect(pages.allSatisfy { $0.items.filter { $0.count > 700 }.count <= 1 })
    }

    @Test("respond answers requests and ignores pages")
    func respond() {
        let request = ProposalSyncMessage.request(.init(requestID: 5, range: .full, maxPages: 2))
        let answer = fullStore.respond(to: request, now: start)
        #expect(answer.count == 2)
        #expect(answer.allSatisfy { $0.requestID == 5 })
        #expect(fullStore.respond(to: answer[0], now: start).isEmpty)
    }
}

// MARK: - Client

@Suite("Proposal sync client")
struct ProposalSyncClientTests {
    @Test("start splits the key space into ranges per peer over at most four peers")
    func startSplits() {
        var rng = SeededRandom(seed: 1)
        var client = ProposalSyncClient()
        let sent = requests(in: client.start(peers: [alice.publicKey, bob.publicKey], now: start, rng: &rng))
        #expect(sent.count == 8)
        #expect(KeyRangeSet(sent.map(\.request.range)).isFull)
        #expect(Set(sent.map(\.request.requestID)).count == 8)
        #expect(sent.filter { $0.peer == alice.publicKey }.count == 4)
        #expect(sent.allSatisfy { $0.request.maxPages == 256 })
        #expect(client.nextDeadline == start + .seconds(1))

        let many = (0..<7).map { identity(index: $0).publicKey }
        var wide = ProposalSyncClient()
        let wideSent = requests(in: wide.start(peers: many, now: start, rng: &rng))
        #expect(wideSent.count == 16)
        #expect(Set(wideSent.map(\.peer)).count == 4)
    }

    @Test("answered in full, the client completes and hands over every item")
    func completes() {
        var rng = SeededRandom(seed: 2)
        var client = ProposalSyncClient()
        let peers = [alice.publicKey, bob.publicKey]
        var items: [[UInt8]] = []
        for (request, peer) in requests(in: client.start(peers: peers, now: start, rng: &rng)) {
            for page in pages(fullStore, answering: request, now: start) {
                let result = client.handle(.page(page), from: peer, now: start + .milliseconds(50))
                items += result.items
                #expect(result.effects.isEmpty)
            }
        }
        #expect(client.isComplete && client.isFinished)
        #expect(client.nextDeadline == nil)
        #expect(Set(items) == Set(liveSet.map { $0.encoded() }))
        #expect(client.counters.requestsSent == 8)
    }

    @Test("a lost page is asked for again as soon as the last page arrives, and exactly it")
    func lostPageRerequested() throws {
        var rng = SeededRandom(seed: 3)
        var client = ProposalSyncClient()
        let sent = requests(in: client.start(peers: [alice.publicKey], now: start, rng: &rng))
        let (request, peer) = try #require(sent.first)
        let answer = pages(fullStore, answering: request, now: start)
        #expect(answer.count >= 3)
        var effects: [SyncEffect] = []
        for (index, page) in answer.enumerated() where index != 1 {
            effects += client.handle(.page(page), from: peer, now: start + .milliseconds(80)).effects
        }
        let again = requests(in: effects)
        #expect(again.count == 1)
        #expect(again.first?.request.range == answer[1].covered)
        #expect(again.first?.peer == alice.publicKey)
        #expect(!client.coverage.contains(answer[1].covered))
    }

    @Test("a lost last page is retried at 2× RTT (at least 300 ms), from another peer")
    func lostLastPageTimesOut() throws {
        var rng = SeededRandom(seed: 4)
        var client = ProposalSyncClient()
        let sent = requests(in: client.start(peers: [alice.publicKey, bob.publicKey], now: start, rng: &rng))
        let (request, peer) = try #require(sent.first)
        let answer = pages(fullStore, answering: request, now: start)
        let arrival = start + .milliseconds(100)
        for page in answer.dropLast() { _ = client.handle(.page(page), from: peer, now: arrival) }
        // The other requests are answered, so only this one is outstanding.
        for (other, otherPeer) in sent.dropFirst() {
            for page in pages(fullStore, answering: other, now: start) {
                _ = client.handle(.page(page), from: otherPeer, now: arrival)
            }
        }
        #expect(client.outstandingRequests == 1)
        let deadline = try #require(client.nextDeadline)
        #expect(deadline == arrival + .milliseconds(300))
        #expect(client.tick(now: deadline - .nanoseconds(1)).isEmpty)
        let retry = requests(in: client.tick(now: deadline))
        #expect(retry.count == 1)
        #expect(retry.first?.request.range == answer.last?.covered)
        #expect(retry.first?.peer != peer)
        #expect(client.counters.timeouts == 1)
    }

    @Test("pages from the wrong peer, for unknown requests or outside the range are ignored")
    func ignoresBadPages() throws {
        var rng = SeededRandom(seed: 5)
        var client = ProposalSyncClient()
        let sent = requests(in: client.start(peers: [alice.publicKey, bob.publicKey], now: start, rng: &rng))
        let (request, peer) = try #require(sent.first)
        let stranger = carol.publicKey
        let page = ProposalSyncMessage.Page(
            requestID: request.requestID, covered: request.range, items: [liveSet[0].encoded()], isLast: true)
        #expect(client.handle(.page(page), from: stranger, now: start).items.isEmpty)
        var unknown = page
        unknown.requestID &+= 1000
        #expect(client.handle(.page(unknown), from: peer, now: start).items.isEmpty)
        var outside = page
        outside.covered = .full
        #expect(client.handle(.page(outside), from: peer, now: start).items.isEmpty)
        #expect(client.handle(.request(request), from: peer, now: start).items.isEmpty)
        #expect(client.counters.unexpectedMessages == 3)
        #expect(client.counters.invalidPages == 1)
        #expect(client.coverage.isEmpty)
    }

    @Test("a lost peer's ranges go to another peer at once")
    func peerLost() {
        var rng = SeededRandom(seed: 6)
        var client = ProposalSyncClient()
        let sent = requests(in: client.start(peers: [alice.publicKey, bob.publicKey], now: start, rng: &rng))
        let lostRanges = sent.filter { $0.peer == alice.publicKey }.map(\.request.range)
        let moved = requests(in: client.peerLost(alice.publicKey, now: start + .milliseconds(10)))
        #expect(moved.map(\.request.range) == lostRanges)
        #expect(moved.allSatisfy { $0.peer == bob.publicKey })
        #expect(client.outstandingRequests == 8)
    }

    @Test("the responder's page cap makes the client continue where it stopped")
    func continuesAfterPageCap() throws {
        var config = ProposalSyncConfig()
        config.maxPagesPerRequest = 2
        var rng = SeededRandom(seed: 7)
        var client = ProposalSyncClient(config: config)
        let sent = requests(in: client.start(peers: [alice.publicKey], now: start, rng: &rng))
        let (request, peer) = try #require(sent.first)
        let answer = pages(fullStore, answering: request, now: start)
        #expect(answer.count == 2)
        var effects: [SyncEffect] = []
        for page in answer { effects += client.handle(.page(page), from: peer, now: start).effects }
        let next = try #require(requests(in: effects).first)
        #expect(next.request.range.lowerBound == answer[1].covered.upperBound.successor)
        #expect(next.request.range.upperBound == request.range.upperBound)
    }

    @Test("a peer that never answers: each range is tried maximumAttempts times, then the sync gives up")
    func givesUp() {
        var rng = SeededRandom(seed: 8)
        var client = ProposalSyncClient()
        var now = start
        var sent = requests(in: client.start(peers: [alice.publicKey], now: now, rng: &rng)).count
        while let deadline = client.nextDeadline {
            #expect(deadline > now)
            now = deadline
            sent += requests(in: client.tick(now: now)).count
        }
        #expect(client.phase == .gaveUp)
        #expect(client.isFinished && !client.isComplete)
        #expect(sent == 4 * ProposalSyncConfig().maximumAttempts)
        #expect(client.counters.abandonedRanges == 4)
        #expect(now == start + .seconds(ProposalSyncConfig().maximumAttempts))
    }

    @Test("with no peer the sync waits; addPeers resumes it")
    func addPeers() {
        var rng = SeededRandom(seed: 9)
        var client = ProposalSyncClient()
        #expect(client.start(peers: [], now: start, rng: &rng).isEmpty)
        #expect(client.phase == .gaveUp)
        let sent = requests(in: client.addPeers([alice.publicKey], now: start))
        #expect(KeyRangeSet(sent.map(\.request.range)).isFull)
        #expect(client.phase == .syncing)
    }
}

// MARK: - Simulated join

/// A joining node syncing from `peers` over links with the given RTTs and loss: a virtual clock, an
/// event queue, real stores on both sides. Pages of one burst leave 100 µs apart (~100 Mbit/s).
private struct JoinSimulation {
    enum Delivery {
        case toPeer(ProposalSyncMessage, PublicKey)
        case toClient(ProposalSyncMessage, from: PublicKey)
    }

    var now = start + .seconds(1)
    var client = ProposalSyncClient()
    var local = ProposalStore()
    var responders: [PublicKey: ProposalStore]
    var rtt: [PublicKey: Duration]
    var silent: Set<PublicKey> = []
    var pageLoss: Double
    var requestLoss: Double
    var rng: SeededRandom
    var queue: [(time: Instant, order: Int, delivery: Delivery)] = []
    var order = 0

    init(peers: Int, pageLoss: Double, requestLoss: Double, seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        let keys = (0..<peers).map { identity(index: 9000 + $0).publicKey }
        responders = Dictionary(uniqueKeysWithValues: keys.map { ($0, fullStore) })
        rtt = Dictionary(uniqueKeysWithValues: keys.map { ($0, .milliseconds(20 + Int64(rng.next() % 181))) })
        self.pageLoss = pageLoss
        self.requestLoss = requestLoss
        self.rng = rng
    }

    private mutating func lost(_ probability: Double) -> Bool {
        Double(rng.next() % 1_000_000) / 1_000_000 < probability
    }

    private mutating func schedule(_ delivery: Delivery, at time: Instant) {
        order += 1
        queue.append((time, order, delivery))
    }

    private mutating func perform(_ effects: [SyncEffect]) {
        for case .send(let message, let peer) in effects where !lost(requestLoss) {
            // Through the codec, as on the wire.
            let bytes = message.encoded()
            guard bytes.count <= ProposalSyncMessage.maximumSize,
                let decoded = try? ProposalSyncMessage(decoding: bytes)
            else { fatalError("a request does not survive its codec") }
            schedule(.toPeer(decoded, peer), at: now + (rtt[peer] ?? .zero) / 2)
        }
    }

    /// Runs until the client finishes or `limit` passes; returns the virtual time taken.
    mutating func run(limit: Duration) -> Duration {
        let began = now
        var rng = SeededRandom(seed: rng.next())
        perform(
            client.start(
                peers: responders.keys.sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }, now: now, rng: &rng))
        while !client.isFinished, now < began + limit {
            let next = queue.indices.min { (queue[$0].time, queue[$0].order) < (queue[$1].time, queue[$1].order) }
            if let deadline = client.nextDeadline, next.map({ deadline < queue[$0].time }) ?? true {
                now = max(now, deadline)
                perform(client.tick(now: now))
                continue
            }
            guard let next else { break }
            let (time, _, delivery) = queue.remove(at: next)
            now = max(now, time)
            switch delivery {
            case .toPeer(let message, let peer):
                guard !silent.contains(peer), let store = responders[peer] else { continue }
                for (index, reply) in store.respond(to: message, now: now).enumerated() where !lost(pageLoss) {
                    let departure = now + .microseconds(100 * Int64(index))
                    schedule(.toClient(reply, from: peer), at: departure + (rtt[peer] ?? .zero) / 2)
                }
            case .toClient(let message, let peer):
                let bytes = message.encoded()
                guard let decoded = try? ProposalSyncMessage(decoding: bytes) else { fatalError("page codec") }
                let (items, effects) = client.handle(decoded, from: peer, now: now)
                for item in items { _ = local.verifyAndInsert(item, networkID: network, now: now) }
                perform(effects)
            }
        }
        return now.since(began)
    }
}

@Suite("Proposal join sync, simulated")
struct ProposalJoinSimulationTests {
    @Test(
        "500 proposals reach an empty store through 10–30 % page loss, by retries",
        .timeLimit(.minutes(5)), arguments: [UInt64(1), 2, 3], [0.1, 0.2, 0.3])
    func syncsUnderPageLoss(seed: UInt64, loss: Double) {
        var simulation = JoinSimulation(peers: 3, pageLoss: loss, requestLoss: 0, seed: seed)
        let took = simulation.run(limit: .seconds(30))
        #expect(
            simulation.client.isComplete,
            "gave up after \(took), coverage \(simulation.client.coverage.ranges.count) ranges")
        #expect(simulation.local.count == 500)
        #expect(simulation.local.signedOffers(now: simulation.now) == fullStore.signedOffers(now: simulation.now))
        #expect(simulation.client.counters.requestsSent > 12)
        #expect(took < .seconds(10))
    }

    @Test(
        "the join target: ≥ 99 % of the live set within 3 s over 20–200 ms links with 1 % loss",
        .timeLimit(.minutes(5)), arguments: [UInt64(11), 12, 13, 14, 15])
    func joinTarget(seed: UInt64) {
        var simulation = JoinSimulation(peers: 4, pageLoss: 0.01, requestLoss: 0.01, seed: seed)
        let took = simulation.run(limit: .seconds(3))
        #expect(simulation.client.isComplete)
        #expect(simulation.local.count == 500)
        #expect(took <= .seconds(3))
    }

    @Test("a peer that never answers costs one timeout; the others fill its ranges in time")
    func silentPeer() {
        var simulation = JoinSimulation(peers: 3, pageLoss: 0.01, requestLoss: 0, seed: 21)
        simulation.silent = [simulation.responders.keys.min { $0.bytes.lexicographicallyPrecedes($1.bytes) }!]
        let took = simulation.run(limit: .seconds(3))
        #expect(simulation.client.isComplete)
        #expect(simulation.local.count == 500)
        #expect(simulation.client.counters.timeouts >= 4)
        #expect(took <= .seconds(3))
    }
}
