// One router fed messages by hand: subscriptions, mesh control (GRAFT/PRUNE, backoff and its
// penalty, heartbeat maintenance), validation and forwarding, the peer score (P4, P6, P7,
// retention, graylisting), IHAVE/IWANT with promises, fanout, the caches and the per-peer caps.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Gossip

@Suite struct GossipRouterTests {
    // MARK: - Subscriptions and mesh

    @Test func addPeerSendsOurSubscriptions() {
        var bench = Bench()
        #expect(bench.add(1).isEmpty, "nothing to say before we join a topic")
        bench.subscribe(.ledger)
        bench.subscribe(.proposals)
        let sent = sends(bench.add(2))
        #expect(sent.count == 1)
        #expect(sent.first?.message == .subscribe([.ledger, .proposals]))
        #expect(sent.first?.to == peerKey(2))
        #expect(bench.add(2).isEmpty, "a known peer is not added twice")
        #expect(bench.router.addPeer(peerKey(0), colocationKey: nil, outbound: true, now: bench.now).isEmpty)
        #expect(bench.router.peers == [peerKey(1), peerKey(2)])
    }

    @Test func aPeerThatAnnouncesTopicsItHeldRestartedAndIsGreetedAgain() {
        var bench = Bench()
        bench.subscribe(.ledger)
        bench.subscribe(.proposals)
        bench.meshPeers(1...3)
        #expect(bench.router.mesh(.ledger).isEmpty && bench.router.mesh(.proposals).count == 3)
        // Peer 2 restarted behind a session that looked like a rekey: it announces its topics again.
        let greeted = sends(bench.receive(.subscribe([.proposals]), from: 2))
        #expect(greeted.map(\.message) == [.subscribe([.ledger, .proposals])] && greeted.first?.to == peerKey(2))
        #expect(!bench.router.mesh(.proposals).contains(peerKey(2)), "its mesh place is gone: both sides graft afresh")
        #expect(bench.router.counters.peersRestarted == 1)
        // A change (a new topic) is not a restart.
        #expect(sends(bench.receive(.subscribe([.ledger]), from: 3)).isEmpty)
        #expect(bench.router.counters.peersRestarted == 1)
        // Announcing again within the prune backoff greets nobody and churns nothing.
        bench.receive(.graft(.proposals), from: 2)
        #expect(sends(bench.receive(.subscribe([.proposals]), from: 2)).isEmpty)
        #expect(bench.router.mesh(.proposals).contains(peerKey(2)) && bench.router.counters.peersRestarted == 1)
        _ = bench.advance(GossipConfig().pruneBackoff)
        #expect(
            sends(bench.receive(.subscribe([.proposals]), from: 2)).contains {
                $0.message == .subscribe([.ledger, .proposals])
            })
        #expect(bench.router.counters.peersRestarted == 2)
    }

    @Test func subscribeGraftsDPeersOfTheTopic() {
        var bench = Bench()
        for number in 1...10 {
            bench.add(number)
            bench.receive(.subscribe([.proposals]), from: number)
        }
        bench.add(11)  // not subscribed: never grafted
        let sent = sends(bench.subscribe())
        #expect(sent.filter { $0.message == .subscribe([.proposals]) }.count == 11)
        let grafted = Set(sent.filter { $0.message == .graft(.proposals) }.map(\.to))
        #expect(grafted.count == GossipConfig().d)
        #expect(grafted == Set(bench.router.mesh(.proposals)))
        #expect(!grafted.contains(peerKey(11)))
    }

    @Test func heartbeatGraftsUpToDWhenBelowDLow() {
        var bench = Bench()
        bench.subscribe()
        for number in 1...10 {
            bench.add(number)
            bench.receive(.subscribe([.proposals]), from: number)
        }
        #expect(bench.router.mesh(.proposals).isEmpty)
        let grafts = sends(bench.advance(.seconds(1))).filter { $0.message == .graft(.proposals) }
        #expect(grafts.count == 6)
        #expect(bench.router.mesh(.proposals).count == 6)
    }

    @Test func oversizedMeshIsPrunedToDKeepingOutboundPeers() {
        var bench = Bench()
        bench.subscribe()
        bench.meshPeers(1...12)
        bench.meshPeers(13...14, outbound: true)  // outbound GRAFTs are accepted beyond dHigh
        #expect(bench.router.mesh(.proposals).count == 14)
        let prunes = sends(bench.advance(.seconds(1))).filter {
            if case .prune(.proposals, backoffSeconds: 60) = $0.message { true } else { false }
        }
        let mesh = bench.router.mesh(.proposals)
        #expect(mesh.count == 6)
        #expect(mesh.contains(peerKey(13)) && mesh.contains(peerKey(14)), "dOut outbound peers stay")
        #expect(prunes.count == 8)
        #expect(Set(prunes.map(\.to)).isDisjoint(with: mesh))
        for prune in prunes { #expect(bench.router.backoff(prune.to, topic: .proposals) != nil) }
    }

    @Test func graftIntoAFullMeshIsRefusedAndAGraftDuringBackoffIsPenalised() {
        var bench = Bench()
        bench.subscribe()
        bench.meshPeers(1...12)
        bench.add(13)
        bench.receive(.subscribe([.proposals]), from: 13)
        let refusal = sends(bench.receive(.graft(.proposals), from: 13))
        #expect(refusal.map(\.message) == [.prune(.proposals, backoffSeconds: 60)])
        #expect(!bench.router.mesh(.proposals).contains(peerKey(13)))
        #expect(bench.router.score(of: peerKey(13)) == 0, "a refused GRAFT is not misbehaviour")

        // GRAFTing again during the backoff: refused again and penalised (double within 10 s).
        bench.advance(.seconds(1))
        let again = sends(bench.receive(.graft(.proposals), from: 13))
        #expect(again.map(\.message) == [.prune(.proposals, backoffSeconds: 60)])
        #expect(bench.router.counters.graftsInBackoff == 1)
        bench.receive(.graft(.proposals), from: 13)
        #expect(bench.router.counters.graftsInBackoff == 2)
        let score = bench.router.score(of: peerKey(13))
        #expect(score < 0 && score > -25, "P7: (3.98 - 2)² × -5 ≈ -19.6, got \(score)")

        // Once the backoff is over and the penalty has decayed, a GRAFT into a mesh with room is accepted.
        bench.receive(.prune(.proposals, backoffSeconds: 60), from: 1)
        bench.advance(.seconds(75))
        #expect(bench.router.score(of: peerKey(13)) == 0)
        #expect(sends(bench.receive(.graft(.proposals), from: 13)).isEmpty)
        #expect(bench.router.mesh(.proposals).contains(peerKey(13)))
        // A peer that PRUNEd us is not grafted back by our heartbeats during its backoff.
        #expect(!bench.router.mesh(.proposals).contains(peerKey(1)))
    }

    @Test func backoffFromAReceivedPruneIsHonoured() {
        var bench = Bench()
        bench.subscribe()
        for number in 1...4 {
            bench.add(number)
            bench.receive(.subscribe([.proposals]), from: number)
        }
        bench.receive(.prune(.proposals, backoffSeconds: 30), from: 4)
        let prunedAt = bench.now
        bench.advance(.seconds(1))
        #expect(bench.router.mesh(.proposals) == (1...3).map(peerKey), "short of dLow, but 4 asked for a backoff")
        var graftedAt: Instant?
        while graftedAt == nil, bench.now < prunedAt + .seconds(40) {
            let effects = bench.advance(.seconds(1))
            if sends(effects).contains(where: { $0.message == .graft(.proposals) && $0.to == peerKey(4) }) {
                graftedAt = bench.now
            }
        }
        #expect(graftedAt.map { $0 > prunedAt + .seconds(30) } == true, "grafted only after its backoff")
        #expect(bench.router.mesh(.proposals).contains(peerKey(4)))
    }

    @Test func opportunisticGraftingBringsInBetterPeers() {
        var config = GossipConfig()
        config.opportunisticGraftTicks = 2
        var bench = Bench(config: config)
        bench.subscribe()
        bench.meshPeers(1...4)
        for number in 5...7 {
            bench.add(number)
            bench.receive(.subscribe([.proposals]), from: number)
            bench.receive(.publish(topic: .proposals, data: [10, UInt8(number)]), from: number)  // P2: +1
        }
        bench.advance(.seconds(1))
        #expect(bench.router.mesh(.proposals).count == 4, "a mesh at dLow with no outbound candidates stays")
        let grafts = sends(bench.advance(.seconds(1))).filter { $0.message == .graft(.proposals) }
        #expect(grafts.count == config.opportunisticGraftPeers)
        #expect(Set(grafts.map(\.to)).isSubset(of: (5...7).map(peerKey)))
        #expect(bench.router.mesh(.proposals).count == 6)
    }

    @Test func unsubscribeTellsEveryoneAndPrunesTheMesh() {
        var bench = Bench()
        bench.subscribe()
        bench.meshPeers(1...3)
        bench.add(4)
        let sent = sends(bench.router.unsubscribe(.proposals, now: bench.now, rng: &bench.rng))
        #expect(sent.filter { $0.message == .unsubscribe([.proposals]) }.count == 4)
        #expect(sent.filter { $0.message == .prune(.proposals, backoffSeconds: 10) }.map(\.to) == (1...3).map(peerKey))
        #expect(bench.router.subscriptions.isEmpty)
        #expect(bench.router.mesh(.proposals).isEmpty)
    }

    // MARK: - Messages

    @Test func validMessageIsDeliveredAndForwardedToTheMeshExceptItsSource() throws {
        var bench = Bench()
        bench.subscribe()
        bench.meshPeers(1...3)
        bench.add(4)
        bench.receive(.subscribe([.proposals]), from: 4)  // not in the mesh: no forward
        let effects = bench.receive(.publish(topic: .proposals, data: [1, 2, 3]), from: 1)
        let delivered = deliveries(effects)
        #expect(delivered.count == 1)
        #expect(delivered.first?.data == [1, 2, 3] && delivered.first?.from == peerKey(1))
        let forwarded = sends(effects)
        #expect(forwarded.map(\.to) == [peerKey(2), peerKey(3)])
        #expect(forwarded.allSatisfy { $0.message == .publish(topic: .proposals, data: [1, 2, 3]) })
        #expect(bench.router.counters.forwarded == 2)

        // A copy is a duplicate: counted, neither validated nor delivered nor forwarded.
        #expect(bench.receive(.publish(topic: .proposals, data: [1, 2, 3]), from: 2).isEmpty)
        #expect(bench.validatorCalls == 1)
        #expect(bench.router.counters.duplicates == 1)
        #expect(bench.router.duplicates(of: MessageID(topic: .proposals, data: [1, 2, 3])) == 1)

        // Ignored: not forwarded, not penalised.
        #expect(bench.receive(.publish(topic: .proposals, data: [0xEE]), from: 3).isEmpty)
        #expect(bench.router.counters.ignored == 1)
        #expect(bench.router.score(of: peerKey(3)) == 0)

        // A topic we did not join is dropped unvalidated.
        #expect(bench.receive(.publish(topic: .ledger, data: [1]), from: 3).isEmpty)
        #expect(bench.router.counters.unsubscribedDrops == 1)
        #expect(bench.validatorCalls == 2)
    }

    @Test func ownPublishIsFloodedAndNotDeliveredBack() {
        var bench = Bench()
        bench.subscribe()
        bench.meshPeers(1...2)
        for number in 3...9 {
            bench.add(number)
            bench.receive(.subscribe([.proposals]), from: number)
        }
        bench.add(10)  // not subscribed
        let (id, effects) = bench.publish([42])
        #expect(id == MessageID(topic: .proposals, data: [42]))
        #expect(deliveries(effects).isEmpty)
        #expect(sends(effects).map(\.to) == (1...9).map(peerKey), "every subscribed peer, not just the mesh")
        #expect(bench.router.counters.published == 1)
        #expect(bench.publish([42]).effects.isEmpty, "the same data again is the same message")
        // Its echo from a peer is a duplicate, not a delivery.
        #expect(deliveries(bench.receive(.publish(topic: .proposals, data: [42]), from: 1)).isEmpty)
    }

    @Test func invalidMessagePenalisesItsSenderAndIsNotForwarded() {
        var bench = Bench()
        bench.subscribe()
        bench.meshPeers(1...3)
        let effects = bench.receive(.publish(topic: .proposals, data: [0xFF, 1]), from: 1)
        #expect(sends(effects).isEmpty && deliveries(effects).isEmpty)
        #expect(bench.router.counters.invalid == 1)
        #expect(abs(bench.router.score(of: peerKey(1)) - -10) < 1e-9, "P4: 1² × -10")
        // Another copy of the rejected message is not validated again, but penalises its sender too.
        #expect(bench.receive(.publish(topic: .proposals, data: [0xFF, 1]), from: 2).isEmpty)
        #expect(bench.validatorCalls == 1)
        #expect(bench.router.score(of: peerKey(2)) < 0)
        #expect(bench.router.score(of: peerKey(3)) == 0)
        // Its negative score takes it out of the mesh at the next heartbeat.
        let prunes = sends(bench.advance(.seconds(1))).filter { $0.message == .prune(.proposals, backoffSeconds: 60) }
        #expect(Set(prunes.map(\.to)) == [peerKey(1), peerKey(2)])
        #expect(bench.router.mesh(.proposals) == [peerKey(3)], "no other candidate: both are in backoff")
    }

    @Test func graylistedPeerIsDroppedBeforeDecodingOrValidation() {
        var bench = Bench()
        bench.subscribe()
        bench.meshPeers(1...2)
        var graylisted: [PublicKey] = []
        for junk in 0..<3 {
            for case .peerGraylisted(let peer) in bench.receive(
                .publish(topic: .proposals, data: [0xFF, UInt8(junk)]), from: 1)
            {
                graylisted.append(peer)
            }
        }
        #expect(graylisted == [peerKey(1)], "3² × -10 = -90 is below -80")
        #expect(bench.router.isGraylisted(peerKey(1)))
        #expect(bench.validatorCalls == 3)
        #expect(bench.receive(.publish(topic: .proposals, data: [0xFF, 9]), from: 1).isEmpty)
        #expect(bench.receive(.publish(topic: .proposals, data: [7]), from: 1).isEmpty)
        #expect(bench.receive([0x03, 0x00], from: 1).isEmpty)
        #expect(bench.router.counters.graylistedDrops == 3)
        #expect(bench.router.counters.malformed == 0, "not even decoded")
        #expect(bench.validatorCalls == 3)
        // The other peer is unaffected.
        #expect(deliveries(bench.receive(.publish(topic: .proposals, data: [7]), from: 2)).count == 1)
        #expect(bench.router.peerInfo().first { $0.key == peerKey(1) }?.graylisted == true)
    }

    @Test func malformedFramesArePenalisedButUnknownKindsAreNot() {
        var bench = Bench()
        bench.subscribe()
        bench.add(1)
        bench.receive([0x42, 1, 2], from: 1)
        #expect(bench.router.counters.unknownKinds == 1)
        #expect(bench.router.score(of: peerKey(1)) == 0)
        for _ in 0..<3 { bench.receive([GossipMessage.Tag.graft.rawValue, 0], from: 1) }
        #expect(bench.router.counters.malformed == 3)
        #expect(abs(bench.router.score(of: peerKey(1)) - -5) < 1e-9, "P7: (3 - 2)² × -5")
        // Frames from a peer that was never added are dropped.
        bench.router.receive(
            GossipMessage.graft(.proposals).encoded(), from: peerKey(99), now: bench.now, rng: &bench.rng
        ) { _, _ in
            Issue.record("validated a stranger's frame")
            return .accept
        }.forEach { _ in Issue.record("answered a stranger") }
        #expect(bench.router.counters.unknownPeerDrops == 1)
    }

    @Test func messagesOverThePerPeerCapAreDroppedUnvalidated() {
        var config = GossipConfig()
        config.maximumMessagesPerPeer = 5
        var bench = Bench(config: config)
        bench.subscribe()
        bench.meshPeers([1])
        for number in 0..<8 { bench.receive(.publish(topic: .proposals, data: [1, UInt8(number)]), from: 1) }
        #expect(bench.validatorCalls == 5)
        #expect(bench.router.counters.rateLimitedDrops == 3)
        bench.advance(.seconds(1))  // the cap is per heartbeat
        bench.receive(.publish(topic: .proposals, data: [2]), from: 1)
        #expect(bench.validatorCalls == 6)
    }

    // MARK: - Score

    @Test func colocationPenaltyOnlyWhenKeysCollide() {
        var bench = Bench()
        let shared: [UInt8] = [203, 0, 113, 7]
        for number in 1...3 { bench.add(number, colocation: shared) }
        for number in 4...5 { bench.add(number, colocation: [203, 0, 113, 8]) }
        for number in 6...8 { bench.add(number, colocation: nil) }
        for number in 1...3 { #expect(bench.router.score(of: peerKey(number)) == -10, "3 on one key: (3-2)² × -10") }
        for number in 4...8 { #expect(bench.router.score(of: peerKey(number)) == 0) }
        bench.add(9, colocation: shared)
        #expect(bench.router.score(of: peerKey(1)) == -40)
        bench.router.removePeer(peerKey(9), now: bench.now)
        bench.router.removePeer(peerKey(3), now: bench.now)
        #expect(bench.router.score(of: peerKey(1)) == 0, "2 on one key is within the threshold")
    }

    @Test func scoreOutlivesADisconnectForAWhile() {
        var bench = Bench()
        bench.subscribe()
        bench.meshPeers(1...2)
        bench.receive(.publish(topic: .proposals, data: [0xFF]), from: 1)
        bench.receive(.publish(topic: .proposals, data: [5]), from: 2)
        #expect(bench.router.score(of: peerKey(1)) < 0)
        #expect(bench.router.score(of: peerKey(2)) > 0)
        bench.router.removePeer(peerKey(1), now: bench.now)
        bench.router.removePeer(peerKey(2), now: bench.now)
        bench.add(1)
        bench.add(2)
        #expect(bench.router.score(of: peerKey(1)) < 0, "reconnecting does not launder a bad score")
        #expect(bench.router.score(of: peerKey(2)) == 0, "a good score is not kept")
        bench.router.removePeer(peerKey(1), now: bench.now)
        bench.advance(.seconds(301))
        bench.add(1)
        #expect(bench.router.score(of: peerKey(1)) == 0, "forgotten after retainScore")
    }

    // MARK: - Gossip

    @Test func iwantIsServedFromTheCacheWithinItsCaps() {
        var config = GossipConfig()
        config.maximumIWantServed = 4
        var bench = Bench(config: config)
        bench.subscribe()
        bench.add(1)
        let ids = (0..<6).map { bench.publish([9, UInt8($0)]).id }
        let first = sends(bench.receive(.iwant(ids), from: 1))
        #expect(first.count == 4, "at most maximumIWantServed per heartbeat")
        #expect(first.first?.message == .publish(topic: .proposals, data: [9, 0]))
        bench.advance(.seconds(1))
        for _ in 0..<3 { bench.receive(.iwant([ids[5]]), from: 1) }
        bench.advance(.seconds(1))
        #expect(sends(bench.receive(.iwant([ids[5]]), from: 1)).isEmpty, "served at most gossipRetransmission times")
        #expect(bench.router.counters.iwantServed == 7)
        bench.advance(.seconds(4))
        #expect(bench.router.mcacheCount == 0, "gone after historyLength heartbeats")
        #expect(sends(bench.receive(.iwant([ids[0]]), from: 1)).isEmpty)
    }

    @Test func ihaveIsAnsweredWithIWantAndBrokenPromisesArePenalised() {
        var bench = Bench()
        bench.subscribe()
        bench.add(1)
        bench.add(2)
        var rng = SeededRandom(seed: 5)
        let unknown = (0..<3).map { _ in MessageID(bytes: rng.bytes(16)) }
        let asked = sends(bench.receive(.ihave(topic: .proposals, ids: unknown + unknown), from: 1))
        #expect(asked.map(\.message) == [.iwant(unknown)], "each unseen id once")
        #expect(bench.router.promiseCount == 1)

        // Peer 2 keeps its promise.
        let kept: [UInt8] = [4, 4]
        bench.receive(.ihave(topic: .proposals, ids: [MessageID(topic: .proposals, data: kept)]), from: 2)
        #expect(deliveries(bench.receive(.publish(topic: .proposals, data: kept), from: 2)).count == 1)
        #expect(
            sends(bench.receive(.ihave(topic: .proposals, ids: [MessageID(topic: .proposals, data: kept)]), from: 2))
                .isEmpty, "seen ids are not asked for")

        bench.advance(.seconds(4))
        #expect(bench.router.counters.brokenPromises == 1)
        #expect(bench.router.score(of: peerKey(1)) == 0, "one broken promise is within the threshold")
        #expect(bench.router.score(of: peerKey(2)) > 0)

        for _ in 0..<4 {
            let fresh = (0..<2).map { _ in MessageID(bytes: rng.bytes(16)) }
            bench.receive(.ihave(topic: .proposals, ids: fresh), from: 1)
        }
        bench.advance(.seconds(4))
        #expect(bench.router.counters.brokenPromises == 5)
        #expect(bench.router.score(of: peerKey(1)) < GossipConfig().thresholds.gossipThreshold)
        // Below the gossip threshold its IHAVEs and IWANTs are ignored.
        let ignored = bench.router.counters.ihaveIgnored
        #expect(
            sends(bench.receive(.ihave(topic: .proposals, ids: [MessageID(bytes: rng.bytes(16))]), from: 1)).isEmpty)
        #expect(bench.router.counters.ihaveIgnored == ignored + 1)
        let id = bench.publish([3]).id
        #expect(sends(bench.receive(.iwant([id]), from: 1)).isEmpty)
    }

    @Test func ihaveFloodIsCappedPerHeartbeat() {
        var bench = Bench()
        bench.subscribe()
        bench.add(1)
        var rng = SeededRandom(seed: 6)
        var asked = 0
        for _ in 0..<20 {
            let ids = (0..<GossipMessage.maximumIDs).map { _ in MessageID(bytes: rng.bytes(16)) }
            for case (.iwant(let wanted), _) in sends(bench.receive(.ihave(topic: .proposals, ids: ids), from: 1)) {
                asked += wanted.count
            }
        }
        #expect(asked == GossipConfig().maximumIHaveLength)
        #expect(bench.router.counters.ihaveIgnored == 15)
    }

    @Test func heartbeatGossipsRecentIDsToNonMeshPeers() throws {
        var bench = Bench()
        bench.subscribe()
        bench.meshPeers(1...4)
        for number in 5...7 {
            bench.add(number)
            bench.receive(.subscribe([.proposals]), from: number)
            bench.receive(.prune(.proposals, backoffSeconds: 60), from: number)  // keeps them out of the mesh
        }
        let id = bench.publish([1]).id
        bench.receive(.publish(topic: .proposals, data: [2]), from: 5)  // 5 has [2]
        let ihaves = sends(bench.advance(.seconds(1))).filter { $0.message.tag == .ihave }
        #expect(Set(ihaves.map(\.to)) == [peerKey(5), peerKey(6), peerKey(7)])
        let toFive = try #require(ihaves.first { $0.to == peerKey(5) })
        #expect(toFive.message == .ihave(topic: .proposals, ids: [id]), "not told about what it sent us")
        // After the gossip window the ids are no longer announced.
        bench.advance(.seconds(2))
        #expect(sends(bench.advance(.seconds(1))).allSatisfy { $0.message.tag != .ihave })
    }

    @Test func fanoutCarriesPublishesToATopicWeDidNotJoin() {
        var config = GossipConfig()
        config.floodPublish = false
        var bench = Bench(config: config)
        for number in 1...10 {
            bench.add(number)
            bench.receive(.subscribe([.ledger]), from: number)
        }
        let effects = bench.publish([1], topic: .ledger).effects
        let fanout = bench.router.fanoutPeers(.ledger)
        #expect(fanout.count == 6)
        #expect(sends(effects).map(\.to) == fanout)
        #expect(sends(bench.publish([2], topic: .ledger).effects).map(\.to) == fanout, "the same fanout is reused")
        let gossip = sends(bench.advance(.seconds(1))).filter { $0.message.tag == .ihave }
        #expect(Set(gossip.map(\.to)) == Set((1...10).map(peerKey)).subtracting(fanout))
        bench.advance(.seconds(61))
        #expect(bench.router.fanoutPeers(.ledger).isEmpty, "forgotten after fanoutTTL")
        // Joining the topic later starts the mesh from the fanout.
        bench.publish([3], topic: .ledger)
        let fanoutNow = Set(bench.router.fanoutPeers(.ledger))
        bench.subscribe(.ledger)
        #expect(Set(bench.router.mesh(.ledger)) == fanoutNow)
    }

    // MARK: - Caches

    @Test func seenCacheIsBoundedAndExpires() {
        var config = GossipConfig()
        config.maximumSeen = 8
        var bench = Bench(config: config)
        bench.subscribe()
        bench.meshPeers([1])
        for number in 0..<20 { bench.receive(.publish(topic: .proposals, data: [1, UInt8(number)]), from: 1) }
        #expect(bench.router.seenCount == 8)
        #expect(bench.router.counters.delivered == 20)
        // The oldest id was evicted, so its message is new again; the newest is still a duplicate.
        #expect(deliveries(bench.receive(.publish(topic: .proposals, data: [1, 0]), from: 1)).count == 1)
        #expect(deliveries(bench.receive(.publish(topic: .proposals, data: [1, 19]), from: 1)).isEmpty)
        bench.advance(.seconds(119))
        #expect(bench.router.seenCount == 8)
        bench.advance(.seconds(3))
        #expect(bench.router.seenCount == 0, "expired after seenTTL")
        #expect(deliveries(bench.receive(.publish(topic: .proposals, data: [1, 19]), from: 1)).count == 1)
    }

    @Test func seenCacheUnit() {
        var seen = SeenCache(ttl: .seconds(10), capacity: 3)
        let ids = (0..<5).map { MessageID(topic: .proposals, data: [UInt8($0)]) }
        for (index, id) in ids.enumerated() {
            let inserted = seen.insert(id, rejected: index == 1, now: t0 + .seconds(index))
            #expect(inserted)
        }
        let again = seen.insert(ids[4], rejected: false, now: t0)
        #expect(!again)
        #expect(seen.count == 3)
        #expect(!seen.contains(ids[0]) && !seen.contains(ids[1]) && seen.contains(ids[2]))
        let duplicate = seen.noteDuplicate(ids[3])
        #expect(duplicate?.duplicates == 1)
        let unknown = seen.noteDuplicate(ids[0])
        #expect(unknown == nil)
        seen.expire(now: t0 + .seconds(13))
        #expect(seen.count == 1 && seen.contains(ids[4]))
        seen.expire(now: t0 + .seconds(14))
        #expect(seen.count == 0)
    }

    @Test func messageCacheIsBoundedAndWindowed() {
        var cache = MessageCache(historyLength: 3, gossipWindow: 2, capacity: 4)
        let ids = (0..<6).map { MessageID(topic: .proposals, data: [UInt8($0)]) }
        cache.put(ids[0], topic: .proposals, data: [0])
        cache.shift()
        cache.put(ids[1], topic: .ledger, data: [1])
        cache.shift()
        cache.put(ids[2], topic: .proposals, data: [2])
        #expect(cache.gossipIDs(topic: .proposals) == [ids[2]], "ids[0] is outside the gossip window")
        #expect(cache[ids[0]]?.data == [0], "but still served")
        for index in 3...5 { cache.put(ids[index], topic: .proposals, data: [UInt8(index)]) }
        #expect(cache.count == 4)
        #expect(cache[ids[0]] == nil && cache[ids[1]] == nil, "the oldest window goes first")
        cache.shift()
        cache.shift()
        #expect(cache.count == 4, "newest window is kept for historyLength shifts")
        cache.shift()
        #expect(cache.count == 0)
    }

    @Test func promisesExpireIntoBrokenCounts() {
        var promises = Promises(capacity: 2)
        let ids = (0..<3).map { MessageID(topic: .proposals, data: [UInt8($0)]) }
        promises.add(ids[0], peer: peerKey(1), deadline: t0 + .seconds(3))
        promises.add(ids[1], peer: peerKey(1), deadline: t0 + .seconds(3))
        promises.add(ids[2], peer: peerKey(2), deadline: t0 + .seconds(3))
        #expect(promises.count == 2, "capped")
        let holders = promises.fulfil(ids[0])
        #expect(holders == [peerKey(1)])
        let early = promises.expire(now: t0 + .seconds(2))
        #expect(early.isEmpty)
        let broken = promises.expire(now: t0 + .seconds(3))
        #expect(broken == [peerKey(1): 1])
        #expect(promises.count == 0)
    }

    @Test func peerCapIsEnforced() {
        var config = GossipConfig()
        config.maximumPeers = 3
        var bench = Bench(config: config)
        for number in 1...5 { bench.add(number) }
        #expect(bench.router.peers.count == 3)
        #expect(bench.router.counters.peersRefused == 2)
    }
}
