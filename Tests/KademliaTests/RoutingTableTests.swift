// Routing-table edge cases: LRS order, full buckets and ping-before-evict, the replacement cache,
// failure counting, subnet diversity caps, closest-contact queries against brute force, bucket
// indexing, refresh deadlines and capacity bounds.

import Kademlia
import Testing
import UmbraCore
import UmbraTestKit

// MARK: - Helpers

private let t0 = Instant(nanoseconds: 1_000_000_000_000)

private func address(_ text: String) -> IPAddress {
    guard let address = IPAddress(parsing: text) else { preconditionFailure("bad test address \(text)") }
    return address
}

private func endpoint(_ text: String, port: UInt16 = 4747) -> Endpoint {
    Endpoint(address: address(text), port: port)
}

/// An exempt (private) endpoint, distinct per `n`.
private func privateEndpoint(_ n: Int) -> Endpoint {
    Endpoint(address: .v4(0x0A00_0000 | UInt32(n & 0xFF_FFFF)), port: 4747)
}

/// A contact with a random key. `PublicKey` checks only the length, so random bytes are a key.
private func randomContact(_ rng: inout SeededRandom, at endpoint: Endpoint) -> NodeContact {
    NodeContact(publicKey: randomKey(&rng), endpoint: endpoint)
}

/// `count` distinct contacts whose ids fall in bucket `index` of `localID` (shallow buckets only:
/// each try lands there with probability 2^-(index+1)).
private func contacts(
    inBucket index: Int, of localID: NodeID, count: Int, rng: inout SeededRandom,
    endpoint: (Int) -> Endpoint = privateEndpoint
) -> [NodeContact] {
    var found: [NodeContact] = []
    var tries = 0
    while found.count < count && tries < 100_000 {
        tries += 1
        let candidate = randomContact(&rng, at: endpoint(found.count))
        if localID.commonPrefixLength(with: candidate.id) == index { found.append(candidate) }
    }
    precondition(found.count == count, "could not place \(count) contacts in bucket \(index)")
    return found
}

private func config(k: Int = 20, replacements: Int = 20, perBucket: Int = 2, perTable: Int = 10) -> RoutingTableConfig {
    var config = RoutingTableConfig()
    config.k = k
    config.replacementCacheSize = replacements
    config.maxPerSubnetInBucket = perBucket
    config.maxPerSubnetInTable = perTable
    return config
}

/// A table with bucket 0 filled with `k` exempt contacts, and `extra` more candidates for bucket 0.
private func fullBucketTable(
    k: Int, extra: Int, seed: UInt64, replacements: Int = 20
) -> (table: RoutingTable, members: [NodeContact], newcomers: [NodeContact]) {
    var rng = SeededRandom(seed: seed)
    let localID = NodeID.random(using: &rng)
    var table = RoutingTable(localID: localID, config: config(k: k, replacements: replacements), now: t0)
    let all = contacts(inBucket: 0, of: localID, count: k + extra, rng: &rng)
    for contact in all.prefix(k) {
        let result = table.observe(contact, now: t0)
        precondition(result == .inserted, "filling bucket 0: \(result)")
    }
    return (table, Array(all.prefix(k)), Array(all.dropFirst(k)))
}

@Suite struct RoutingTableTests {
    // MARK: - Insert, update, self

    @Test func selfIsRejected() {
        var rng = SeededRandom(seed: 1)
        let identity = Identity.generate(using: &rng)
        var table = RoutingTable(localID: identity.nodeID, now: t0)
        let result = table.observe(
            NodeContact(publicKey: identity.publicKey, endpoint: endpoint("203.0.113.1")), now: t0)
        #expect(result == .rejectedSelf)
        #expect(table.count == 0)
        #expect(table.bucketIndex(for: identity.nodeID) == nil)
        #expect(table.closest(to: identity.nodeID, count: 5).isEmpty)
    }

    @Test func insertKeepsLeastRecentlySeenOrderAndUpdateMovesToTail() {
        var rng = SeededRandom(seed: 2)
        let localID = Identity.generate(using: &rng).nodeID
        // Real keys (Ed25519 identities) in bucket 0.
        var members: [NodeContact] = []
        while members.count < 3 {
            let identity = Identity.generate(using: &rng)
            if localID.commonPrefixLength(with: identity.nodeID) == 0 {
                members.append(NodeContact(publicKey: identity.publicKey, endpoint: privateEndpoint(members.count)))
            }
        }
        var table = RoutingTable(localID: localID, now: t0)
        for member in members {
            let result = table.observe(member, now: t0)
            #expect(result == .inserted)
        }
        #expect(table.contacts == members)

        // Seeing the oldest again moves it to the tail and refreshes its endpoint.
        var moved = members[0]
        moved.endpoint = privateEndpoint(99)
        let result = table.observe(moved, now: t0 + .seconds(1))
        #expect(result == .updated)
        #expect(table.contacts == [members[1], members[2], moved])
        #expect(table.contact(for: moved.id)?.endpoint == privateEndpoint(99))
        #expect(table.count == 3)
        #expect(table.buckets == [.init(index: 0, contacts: 3, replacements: 0, lastChanged: t0 + .seconds(1))])
    }

    // MARK: - Full bucket, ping-before-evict, replacement cache

    @Test func fullBucketAsksToPingTheOldestThenCaches() {
        var (table, members, newcomers) = fullBucketTable(k: 20, extra: 2, seed: 3)
        #expect(table.count == 20)

        let first = table.observe(newcomers[0], now: t0)
        #expect(first == .pendingEviction(oldest: members[0]))
        let second = table.observe(newcomers[1], now: t0)
        #expect(second == .cached)

        #expect(table.count == 20)
        #expect(!table.contains(newcomers[0].id))
        #expect(table.replacements(inBucket: 0) == newcomers)
        #expect(table.contacts == members)
    }

    @Test func evictionCheckAnsweredKeepsOldestAndCandidateStaysCached() {
        var (table, members, newcomers) = fullBucketTable(k: 4, extra: 1, seed: 4)
        let result = table.observe(newcomers[0], now: t0)
        #expect(result == .pendingEviction(oldest: members[0]))

        table.evictionCheckFinished(oldest: members[0].id, responded: true, now: t0 + .seconds(2))
        #expect(table.contacts == Array(members.dropFirst()) + [members[0]])
        #expect(table.replacements(inBucket: 0) == [newcomers[0]])
        #expect(table.buckets.first?.lastChanged == t0 + .seconds(2))

        // The check is over: the next sighting of a newcomer starts a check of the new oldest.
        let again = table.observe(newcomers[0], now: t0 + .seconds(3))
        #expect(again == .pendingEviction(oldest: members[1]))
        #expect(table.replacements(inBucket: 0) == [newcomers[0]])
    }

    @Test func evictionCheckUnansweredEvictsAndPromotesMostRecentReplacement() {
        var (table, members, newcomers) = fullBucketTable(k: 4, extra: 2, seed: 5)
        let first = table.observe(newcomers[0], now: t0)
        #expect(first == .pendingEviction(oldest: members[0]))
        let second = table.observe(newcomers[1], now: t0)
        #expect(second == .cached)

        table.evictionCheckFinished(oldest: members[0].id, responded: false, now: t0 + .seconds(5))
        #expect(!table.contains(members[0].id))
        #expect(table.count == 4)
        #expect(table.contacts == Array(members.dropFirst()) + [newcomers[1]])
        #expect(table.replacements(inBucket: 0) == [newcomers[0]])

        // The next check targets the new oldest.
        let third = table.observe(newcomers[0], now: t0 + .seconds(6))
        #expect(third == .pendingEviction(oldest: members[1]))
    }

    @Test func abandonedEvictionCheckDoesNotFreezeTheBucket() {
        var (table, members, newcomers) = fullBucketTable(k: 3, extra: 2, seed: 6)
        let first = table.observe(newcomers[0], now: t0)
        #expect(first == .pendingEviction(oldest: members[0]))
        let during = table.observe(newcomers[1], now: t0 + table.config.evictionCheckTimeout - .seconds(1))
        #expect(during == .cached)
        let after = table.observe(newcomers[1], now: t0 + table.config.evictionCheckTimeout)
        #expect(after == .pendingEviction(oldest: members[0]))
    }

    @Test func lateReportWithoutCheckInFlightCountsAsOneFailure() {
        var (table, members, _) = fullBucketTable(k: 3, extra: 0, seed: 7)
        table.evictionCheckFinished(oldest: members[1].id, responded: false, now: t0)
        #expect(table.contains(members[1].id))  // one failure of two allowed
        table.evictionCheckFinished(oldest: members[1].id, responded: false, now: t0)
        #expect(!table.contains(members[1].id))
    }

    @Test func replacementCacheIsCappedDeduplicatedAndMostRecentLast() {
        var (table, _, newcomers) = fullBucketTable(k: 2, extra: 4, seed: 8, replacements: 3)
        for newcomer in newcomers {
            _ = table.observe(newcomer, now: t0)
        }
        #expect(table.replacements(inBucket: 0) == [newcomers[1], newcomers[2], newcomers[3]])
        // Seeing a cached candidate again moves it to the most recent end, without a duplicate.
        _ = table.observe(newcomers[1], now: t0)
        #expect(table.replacements(inBucket: 0) == [newcomers[2], newcomers[3], newcomers[1]])
        #expect(table.buckets == [.init(index: 0, contacts: 2, replacements: 3, lastChanged: t0)])
    }

    // MARK: - Failures and removal

    @Test func twoFailuresRemoveAndPromote() {
        var (table, members, newcomers) = fullBucketTable(k: 3, extra: 2, seed: 9)
        _ = table.observe(newcomers[0], now: t0)
        _ = table.observe(newcomers[1], now: t0)

        table.recordFailure(members[2].id, now: t0)
        #expect(table.contains(members[2].id))
        table.recordFailure(members[2].id, now: t0)
        #expect(!table.contains(members[2].id))
        #expect(table.contacts == [members[0], members[1], newcomers[1]])
        #expect(table.count == 3)
    }

    @Test func successResetsFailureCount() {
        var (table, members, _) = fullBucketTable(k: 3, extra: 0, seed: 10)
        table.recordFailure(members[0].id, now: t0)
        let seen = table.observe(members[0], now: t0 + .seconds(1))
        #expect(seen == .updated)
        table.recordFailure(members[0].id, now: t0 + .seconds(2))
        #expect(table.contains(members[0].id))
        table.recordFailure(members[0].id, now: t0 + .seconds(3))
        #expect(!table.contains(members[0].id))
    }

    @Test func failureOfPendingOldestEndsTheCheck() {
        var (table, members, newcomers) = fullBucketTable(k: 3, extra: 2, seed: 11)
        let first = table.observe(newcomers[0], now: t0)
        #expect(first == .pendingEviction(oldest: members[0]))
        table.recordFailure(members[0].id, now: t0)
        table.recordFailure(members[0].id, now: t0)
        #expect(table.contacts == [members[1], members[2], newcomers[0]])
        // No check is in flight any more, so a newcomer starts one.
        let next = table.observe(newcomers[1], now: t0)
        #expect(next == .pendingEviction(oldest: members[1]))
    }

    @Test func removePromotesReplacementAndIgnoresUnknownIDs() {
        var (table, members, newcomers) = fullBucketTable(k: 3, extra: 1, seed: 12)
        _ = table.observe(newcomers[0], now: t0)
        table.remove(members[1].id)
        #expect(table.contacts == [members[0], members[2], newcomers[0]])
        #expect(table.replacements(inBucket: 0).isEmpty)

        var rng = SeededRandom(seed: 99)
        let before = table.contacts
        table.remove(NodeID.random(using: &rng))
        table.remove(table.localID)
        table.recordFailure(NodeID.random(using: &rng), now: t0)
        table.evictionCheckFinished(oldest: NodeID.random(using: &rng), responded: false, now: t0)
        #expect(table.contacts == before)

        // With no replacement left, removal just shrinks the bucket.
        table.remove(members[0].id)
        #expect(table.count == 2)
    }

    // MARK: - Diversity

    @Test func subnetCapPerBucket() {
        var rng = SeededRandom(seed: 13)
        let localID = NodeID.random(using: &rng)
        var table = RoutingTable(localID: localID, now: t0)  // defaults: 2 per bucket, 10 per table
        let sameV4 = ["203.0.113.1", "203.0.113.2", "203.0.113.200"]
        let v4 = contacts(inBucket: 0, of: localID, count: 3, rng: &rng) { endpoint(sameV4[$0]) }
        var results = v4.map { table.observe($0, now: t0) }
        #expect(results == [.inserted, .inserted, .rejectedDiversity])

        // Another /24 is another subnet.
        let other = contacts(inBucket: 0, of: localID, count: 1, rng: &rng) { _ in endpoint("198.51.100.7") }
        let otherResult = table.observe(other[0], now: t0)
        #expect(otherResult == .inserted)

        // IPv6: /48 is the unit.
        let sameV6 = ["2001:db8::1", "2001:db8:0:ffff::2", "2001:db8::3"]
        let v6 = contacts(inBucket: 0, of: localID, count: 3, rng: &rng) { endpoint(sameV6[$0]) }
        results = v6.map { table.observe($0, now: t0) }
        #expect(results == [.inserted, .inserted, .rejectedDiversity])
        let nextPrefix = contacts(inBucket: 0, of: localID, count: 1, rng: &rng) { _ in endpoint("2001:db8:1::1") }
        let nextResult = table.observe(nextPrefix[0], now: t0)
        #expect(nextResult == .inserted)

        // Leaving frees the slot.
        table.remove(v4[0].id)
        let retry = table.observe(v4[2], now: t0)
        #expect(retry == .inserted)
    }

    @Test func subnetCapPerTable() {
        var rng = SeededRandom(seed: 14)
        let localID = NodeID.random(using: &rng)
        var table = RoutingTable(localID: localID, config: config(perBucket: 2, perTable: 3), now: t0)
        let shallow = contacts(inBucket: 0, of: localID, count: 3, rng: &rng) { endpoint("203.0.113.\($0 + 1)") }
        let deeper = contacts(inBucket: 1, of: localID, count: 2, rng: &rng) { endpoint("203.0.113.\($0 + 10)") }
        let results = (shallow + deeper).map { table.observe($0, now: t0) }
        // Bucket 0 takes two (its own cap), bucket 1 takes one more (table cap 3), then nothing.
        #expect(results == [.inserted, .inserted, .rejectedDiversity, .inserted, .rejectedDiversity])
        #expect(table.count == 3)
    }

    @Test func defaultTableCapOfTenAcrossBuckets() {
        var rng = SeededRandom(seed: 15)
        let localID = NodeID.random(using: &rng)
        var table = RoutingTable(localID: localID, now: t0)
        var inserted = 0
        var rejected = 0
        // Two per bucket in buckets 0...5 (12 candidates) from one /24: only 10 may enter.
        for index in 0...5 {
            let pair = contacts(inBucket: index, of: localID, count: 2, rng: &rng) { endpoint("198.51.100.\($0 + 1)") }
            for contact in pair {
                switch table.observe(contact, now: t0) {
                case .inserted: inserted += 1
                case .rejectedDiversity: rejected += 1
                case let other: Issue.record("unexpected \(other)")
                }
            }
        }
        #expect(inserted == 10)
        #expect(rejected == 2)
    }

    @Test func privateAndLoopbackAreExemptUnlessConfigured() {
        var rng = SeededRandom(seed: 16)
        let localID = NodeID.random(using: &rng)
        let texts = ["127.0.0.1", "127.0.0.1", "127.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3", "fe80::1", "fe80::2"]
        let local = contacts(inBucket: 0, of: localID, count: texts.count, rng: &rng) {
            endpoint(texts[$0], port: UInt16(5000 + $0))
        }

        var exempt = RoutingTable(localID: localID, config: config(perBucket: 2, perTable: 2), now: t0)
        let exemptResults = local.map { exempt.observe($0, now: t0) }
        #expect(exemptResults.allSatisfy { $0 == .inserted })

        var strictConfig = config(perBucket: 2, perTable: 10)
        strictConfig.diversityExemptsPrivate = false
        var strict = RoutingTable(localID: localID, config: strictConfig, now: t0)
        let strictResults = local.map { strict.observe($0, now: t0) }
        #expect(
            strictResults == [
                .inserted, .inserted, .rejectedDiversity, .inserted, .inserted, .rejectedDiversity, .inserted,
                .inserted,
            ])
    }

    @Test func roamingIntoCrowdedSubnetRemovesTheContact() {
        var rng = SeededRandom(seed: 17)
        let localID = NodeID.random(using: &rng)
        var table = RoutingTable(localID: localID, config: config(k: 3, perBucket: 2), now: t0)
        let members = contacts(inBucket: 0, of: localID, count: 3, rng: &rng) { endpoint("203.0.113.\($0 + 1)") }
        _ = table.observe(members[0], now: t0)
        _ = table.observe(members[1], now: t0)
        var roamer = contacts(inBucket: 0, of: localID, count: 1, rng: &rng)[0]
        _ = table.observe(roamer, now: t0)
        #expect(table.count == 3)

        // Same subnet, new host: still within the cap since the roamer left its old (exempt) one.
        roamer.endpoint = endpoint("198.51.100.1")
        let ok = table.observe(roamer, now: t0)
        #expect(ok == .updated)
        // Into the full 203.0.113/24: dropped.
        roamer.endpoint = endpoint("203.0.113.99")
        let crowded = table.observe(roamer, now: t0)
        #expect(crowded == .rejectedDiversity)
        #expect(!table.contains(roamer.id))
        #expect(table.count == 2)
        // A member moving within its own /24 is fine.
        var mover = members[0]
        mover.endpoint = endpoint("203.0.113.50")
        let within = table.observe(mover, now: t0)
        #expect(within == .updated)
    }

    @Test func promotionSkipsReplacementsThatBreakTheCaps() {
        var rng = SeededRandom(seed: 18)
        let localID = NodeID.random(using: &rng)
        var table = RoutingTable(localID: localID, config: config(k: 3, perBucket: 1), now: t0)
        let all = contacts(inBucket: 0, of: localID, count: 5, rng: &rng)
        let c = all[2]
        var (a, b, candidate, fallback) = (all[0], all[1], all[3], all[4])
        a.endpoint = endpoint("203.0.113.1")
        candidate.endpoint = endpoint("198.51.100.1")
        fallback.endpoint = endpoint("192.0.2.1")
        for member in [a, b, c] {
            _ = table.observe(member, now: t0)
        }
        let older = table.observe(fallback, now: t0)
        #expect(older == .pendingEviction(oldest: a))
        let newer = table.observe(candidate, now: t0)
        #expect(newer == .cached)

        // Meanwhile b moves into the candidate's /24, which now has no room for the candidate.
        b.endpoint = endpoint("198.51.100.2")
        let moved = table.observe(b, now: t0)
        #expect(moved == .updated)

        table.evictionCheckFinished(oldest: a.id, responded: false, now: t0)
        #expect(table.contains(fallback.id))
        #expect(!table.contains(candidate.id))
        #expect(table.replacements(inBucket: 0) == [candidate])
    }

    // MARK: - Closest

    @Test(arguments: [UInt64(21), 22, 23, 24, 25])
    func closestMatchesBruteForce(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        let localID = NodeID.random(using: &rng)
        var table = RoutingTable(localID: localID, config: config(k: 8), now: t0)
        // Random ids fill the shallow buckets and reach a dozen or so deep.
        for n in 0..<600 {
            _ = table.observe(randomContact(&rng, at: privateEndpoint(n)), now: t0)
        }
        let all = table.contacts
        #expect(all.count == table.count)
        #expect(table.count > 40)

        var targets = (0..<40).map { _ in Key256.random(using: &rng) }
        targets += [localID, all[0].id, all[all.count / 2].id, all[all.count - 1].id]
        targets += (0..<20).map { _ in table.randomID(inBucket: Int(rng.next() % 12), using: &rng) }
        for target in targets {
            let expected = all.sorted { $0.id.xorDistance(to: target) < $1.id.xorDistance(to: target) }
            for wanted in [1, 3, 8, 20, all.count, all.count + 5] {
                let got = table.closest(to: target, count: wanted)
                #expect(got == Array(expected.prefix(wanted)), "seed \(seed) target \(target) count \(wanted)")
            }
        }
        #expect(table.closest(to: targets[0], count: 0).isEmpty)
    }

    @Test func closestWithDeepBucketsChosenThroughLocalID() {
        // Contacts in buckets 0, 100, 200 and 255: pick localID relative to existing ids.
        var rng = SeededRandom(seed: 26)
        let anchor = randomContact(&rng, at: privateEndpoint(0))
        let localID = anchor.id.flippingBit(255)  // anchor lands in bucket 255
        var table = RoutingTable(localID: localID, now: t0)
        #expect(table.bucketIndex(for: anchor.id) == 255)
        var added = [anchor]
        _ = table.observe(anchor, now: t0)
        var n = 1
        while added.count < 60 {
            let contact = randomContact(&rng, at: privateEndpoint(n))
            n += 1
            if table.observe(contact, now: t0) == .inserted { added.append(contact) }
        }
        for target in [localID, anchor.id, localID.flippingBit(100), localID.flippingBit(0), anchor.id.flippingBit(3)] {
            let expected = added.sorted { $0.id.xorDistance(to: target) < $1.id.xorDistance(to: target) }
            #expect(table.closest(to: target, count: 10) == Array(expected.prefix(10)))
        }
        #expect(table.closest(to: localID, count: 1) == [anchor])
    }

    // MARK: - Bucket index and random ids

    @Test(arguments: [UInt64(31), 32, 33])
    func randomIDLandsInItsBucket(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        let table = RoutingTable(localID: NodeID.random(using: &rng), now: t0)
        #expect(table.bucketIndex(for: table.localID) == nil)
        for index in 0..<Key256.bitCount {
            #expect(table.bucketIndex(for: table.localID.flippingBit(index)) == index)
            for _ in 0..<4 {
                let id = table.randomID(inBucket: index, using: &rng)
                #expect(table.bucketIndex(for: id) == index, "bucket \(index)")
            }
        }
    }

    @Test func randomIDsAreSpreadBelowThePrefix() {
        var rng = SeededRandom(seed: 34)
        let table = RoutingTable(localID: NodeID.random(using: &rng), now: t0)
        // In bucket 3 the bits after bit 3 are random: 64 draws give many distinct ids.
        let ids = Set((0..<64).map { _ in table.randomID(inBucket: 3, using: &rng) })
        #expect(ids.count == 64)
    }

    // MARK: - Refresh

    @Test func refreshDeadlinesFollowActivity() {
        var rng = SeededRandom(seed: 41)
        let localID = NodeID.random(using: &rng)
        var table = RoutingTable(localID: localID, now: t0)
        let interval = table.config.refreshInterval
        #expect(table.bucketsNeedingRefresh(now: t0 + interval * 2).isEmpty)  // empty table: no one to ask
        #expect(table.nextRefreshDeadline == nil)

        let zero = contacts(inBucket: 0, of: localID, count: 1, rng: &rng)[0]
        let one = contacts(inBucket: 1, of: localID, count: 1, rng: &rng)[0]
        _ = table.observe(zero, now: t0)
        _ = table.observe(one, now: t0 + .seconds(10))
        // Buckets 0...2 are considered; 0 and 2 last changed at init (t0), 1 at t0 + 10 s.
        #expect(table.nextRefreshDeadline == t0 + interval)
        #expect(table.bucketsNeedingRefresh(now: t0 + interval - .nanoseconds(1)).isEmpty)
        #expect(table.bucketsNeedingRefresh(now: t0 + interval) == [0, 2])
        #expect(table.bucketsNeedingRefresh(now: t0 + interval + .seconds(10)) == [0, 1, 2])

        let later = t0 + interval
        table.markRefreshed(bucket: 0, now: later)
        table.markRefreshed(bucket: 2, now: later + .seconds(1))
        #expect(table.nextRefreshDeadline == t0 + .seconds(10) + interval)
        #expect(table.bucketsNeedingRefresh(now: later + .seconds(10)) == [1])

        // A confirmed contact counts as activity.
        _ = table.observe(one, now: later + .seconds(10))
        #expect(table.nextRefreshDeadline == later + interval)
        #expect(table.bucketsNeedingRefresh(now: later + interval) == [0])
    }

    @Test func refreshConsidersBucketsUpToDeepestPlusOne() {
        var rng = SeededRandom(seed: 42)
        let contact = randomContact(&rng, at: privateEndpoint(1))
        var table = RoutingTable(localID: contact.id.flippingBit(200), now: t0)
        _ = table.observe(contact, now: t0)
        let due = table.bucketsNeedingRefresh(now: t0 + table.config.refreshInterval + .seconds(1))
        #expect(due == Array(0...201))

        var edge = RoutingTable(localID: contact.id.flippingBit(255), now: t0)
        _ = edge.observe(contact, now: t0)
        #expect(edge.bucketsNeedingRefresh(now: t0 + edge.config.refreshInterval) == Array(0...255))
    }

    // MARK: - Capacity

    @Test(arguments: [UInt64(51), 52])
    func bucketsNeverExceedK(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        let k = 5
        var table = RoutingTable(localID: NodeID.random(using: &rng), config: config(k: k, replacements: 3), now: t0)
        var now = t0
        for n in 0..<2_000 {
            now = now + .milliseconds(10)
            let contact = randomContact(&rng, at: privateEndpoint(n))
            if case .pendingEviction(let oldest) = table.observe(contact, now: now) {
                table.evictionCheckFinished(oldest: oldest.id, responded: rng.next() % 2 == 0, now: now)
            }
            if n % 7 == 0, let victim = table.contacts.randomElement(using: &rng) {
                table.recordFailure(victim.id, now: now)
            }
        }
        let all = table.contacts
        #expect(all.count == table.count)
        #expect(Set(all.map(\.id)).count == all.count)
        #expect(table.count <= Key256.bitCount * k)
        for bucket in table.buckets {
            #expect(bucket.contacts <= k)
            #expect(bucket.replacements <= 3)
            let members = Set(all.filter { table.bucketIndex(for: $0.id) == bucket.index }.map(\.id))
            #expect(members.count == bucket.contacts)
            #expect(table.replacements(inBucket: bucket.index).allSatisfy { !members.contains($0.id) })
        }
        #expect(table.buckets.first.map { $0.contacts == k } == true)
    }
}
