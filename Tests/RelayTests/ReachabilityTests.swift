// Reachability by dial-back: two agreeing reporters start a check, a probe only counts when it comes
// from a peer other than the one asked, timeouts and refusals mean private, the check repeats
// periodically and when the endpoint changes; the helper refuses endpoints at another IP and
// rate-limits; the prober rate-limits, queues (bounded) and drops stale orders.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Relay

private let peers = (UInt8(0x40)..<0x45).map(key)
private let reporters = (UInt8(0x50)..<0x54).map(key)
private let mine = publicEndpoint(10, port: 40000)

private struct Harness {
    var reachability: Reachability
    var rng = SeededRandom(seed: 3)

    init(configure: (inout ReachabilityConfig) -> Void = { _ in }) {
        var config = ReachabilityConfig()
        configure(&config)
        reachability = Reachability(config: config, now: t0)
        _ = reachability.setPeers(peers, now: t0, rng: &rng)
    }

    mutating func observe(_ endpoint: Endpoint, by reporter: PublicKey, at now: Instant = t0) -> [ReachabilityEffect] {
        reachability.observed(endpoint, reporter: reporter, now: now, rng: &rng)
    }

    /// An order from `peers[0]` to probe `key(0x70)` at `mine`.
    mutating func order(_ nonce: UInt64, at now: Instant = t0) -> [ReachabilityEffect] {
        reachability.handleDialBackOrder(from: peers[0], target: key(0x70), endpoint: mine, nonce: nonce, now: now)
    }

    /// Two reporters agree on `endpoint`; returns the dial-back requests as (peer, nonce).
    mutating func startCheck(_ endpoint: Endpoint = mine, at now: Instant = t0) -> [(PublicKey, UInt64)] {
        _ = observe(endpoint, by: reporters[0], at: now)
        return requests(observe(endpoint, by: reporters[1], at: now), for: endpoint)
    }
}

/// The dial-back requests for `endpoint` among `effects`, as (peer asked, nonce).
private func requests(_ effects: [ReachabilityEffect], for endpoint: Endpoint) -> [(PublicKey, UInt64)] {
    effects.compactMap {
        guard case .send(.dialBackRequest(let nonce, let asked), let peer) = $0, asked == endpoint else { return nil }
        return (peer, nonce)
    }
}

@Suite struct ReachabilityTests {
    // MARK: - Requester

    @Test func twoAgreeingReportersStartACheckOnThreePeers() {
        var node = Harness()
        #expect(node.observe(mine, by: reporters[0]).isEmpty)
        #expect(node.observe(mine, by: reporters[0]).isEmpty)  // the same reporter twice is one
        let effects = node.observe(mine, by: reporters[1])
        let asked = requests(effects, for: mine)
        #expect(effects.count == 3 && asked.count == 3)
        #expect(Set(asked.map(\.0)).count == 3 && Set(asked.map(\.0)).isSubset(of: peers))
        #expect(Set(asked.map(\.1)).count == 3)
        #expect(node.reachability.isChecking)
        #expect(node.reachability.nextDeadline == t0 + 5)
        // A third reporter agreeing does not start another check.
        #expect(node.observe(mine, by: reporters[2]).isEmpty)
        #expect(node.reachability.counters.checksStarted == 1)
    }

    @Test func disagreeingAndPrivateObservationsDoNotStartACheck() {
        var node = Harness()
        #expect(node.observe(mine, by: reporters[0]).isEmpty)
        #expect(node.observe(publicEndpoint(10, port: 40001), by: reporters[1]).isEmpty)
        #expect(node.observe(lanEndpoint(5), by: reporters[2]).isEmpty)
        #expect(node.observe(lanEndpoint(5), by: reporters[3]).isEmpty)
        // LAN endpoints seen by global reporters are never checked (the helpers would refuse them).
        #expect(!node.reachability.isChecking)
    }

    @Test func allowPrivateAcceptsLoopbackObservations() {
        var node = Harness { $0.allowPrivate = true }
        let loopback = Endpoint(address: .v4(0x7F00_0001), port: 4747)
        _ = node.observe(loopback, by: reporters[0])
        #expect(requests(node.observe(loopback, by: reporters[1]), for: loopback).count == 3)
    }

    @Test func aProbeFromTheAskedPeerDoesNotCountButOneFromAnotherDoes() throws {
        var node = Harness()
        let asked = node.startCheck()
        let (helper, nonce) = try #require(asked.first)
        #expect(node.reachability.probeReceived(nonce: nonce, from: helper, now: t0 + 1).isEmpty)
        #expect(node.reachability.probeReceived(nonce: 12345, from: peers[4], now: t0 + 1).isEmpty)
        #expect(node.reachability.status == .unknown)
        #expect(node.reachability.counters.probesIgnored == 2)
        let prober = try #require(peers.first { $0 != helper })
        #expect(
            node.reachability.probeReceived(nonce: nonce, from: prober, now: t0 + 2) == [.statusChanged(.public(mine))])
        #expect(node.reachability.status == .public(mine))
        #expect(!node.reachability.isChecking)
    }

    @Test func timeoutsMeanPrivate() {
        var node = Harness()
        _ = node.startCheck()
        #expect(node.reachability.tick(now: t0 + .milliseconds(4999), rng: &node.rng).isEmpty)
        #expect(node.reachability.tick(now: t0 + 5, rng: &node.rng) == [.statusChanged(.private)])
        #expect(node.reachability.status == .private)
        #expect(node.reachability.counters.checksPrivate == 1)
    }

    @Test func refusalsFromEveryAskedPeerMeanPrivate() throws {
        var node = Harness()
        let asked = node.startCheck()
        let (first, firstNonce) = try #require(asked.first)
        // A refusal naming someone else's nonce is ignored.
        let (_, otherNonce) = asked[1]
        #expect(
            node.reachability.dialBackRefused(nonce: otherNonce, reason: .rateLimited, from: first, now: t0).isEmpty)
        var last: [ReachabilityEffect] = []
        for (peer, nonce) in asked {
            last = node.reachability.dialBackRefused(nonce: nonce, reason: .noPeers, from: peer, now: t0 + 1)
        }
        #expect(last == [.statusChanged(.private)])
        #expect(node.reachability.counters.refusalsReceived == 3)
        // Late probes no longer count.
        #expect(node.reachability.probeReceived(nonce: firstNonce, from: peers[4], now: t0 + 2).isEmpty)
    }

    @Test func theCheckRepeatsAfterTheRecheckInterval() {
        var node = Harness()
        _ = node.startCheck()
        _ = node.reachability.tick(now: t0 + 5, rng: &node.rng)
        #expect(node.reachability.nextDeadline == t0 + 605)
        #expect(requests(node.reachability.tick(now: t0 + 605, rng: &node.rng), for: mine).count == 3)
        #expect(node.reachability.counters.checksStarted == 2)
    }

    @Test func aChangedEndpointIsCheckedAtOnce() throws {
        var node = Harness()
        let asked = node.startCheck()
        let (helper, nonce) = try #require(asked.first)
        let prober = try #require(peers.first { $0 != helper })
        _ = node.reachability.probeReceived(nonce: nonce, from: prober, now: t0 + 1)
        let moved = publicEndpoint(10, port: 40002)
        #expect(node.observe(moved, by: reporters[0], at: t0 + 60).isEmpty)
        let again = requests(node.observe(moved, by: reporters[1], at: t0 + 61), for: moved)
        #expect(again.count == 3)
        #expect(node.reachability.status == .public(mine))  // until the new verdict
        #expect(node.reachability.tick(now: t0 + 66, rng: &node.rng) == [.statusChanged(.private)])
    }

    @Test func aCheckWithoutPeersWaitsForThem() {
        var node = Harness()
        _ = node.reachability.setPeers([], now: t0, rng: &node.rng)
        #expect(node.startCheck().isEmpty)
        #expect(!node.reachability.isChecking)
        let effects = node.reachability.setPeers([peers[0], peers[1]], now: t0 + 1, rng: &node.rng)
        #expect(requests(effects, for: mine).count == 2)
    }

    // MARK: - Helper

    @Test func theHelperRefusesAnEndpointAtAnotherIP() {
        var node = Harness()
        let requester = key(0x60)
        let refused = node.reachability.handleDialBackRequest(
            from: requester, nonce: 1, endpoint: mine, observedSource: publicEndpoint(11, port: 40000), now: t0,
            peers: peers, rng: &node.rng)
        #expect(refused == [.send(.dialBackRefused(nonce: 1, reason: .addressMismatch), to: requester)])
        let unknown = node.reachability.handleDialBackRequest(
            from: requester, nonce: 2, endpoint: mine, observedSource: nil, now: t0, peers: peers, rng: &node.rng)
        #expect(unknown == [.send(.dialBackRefused(nonce: 2, reason: .addressMismatch), to: requester)])
        let lan = node.reachability.handleDialBackRequest(
            from: requester, nonce: 3, endpoint: lanEndpoint(1), observedSource: lanEndpoint(1, port: 9), now: t0,
            peers: peers, rng: &node.rng)
        #expect(lan == [.send(.dialBackRefused(nonce: 3, reason: .notPublic), to: requester)])
    }

    @Test func theHelperOrdersAnotherPeerAtTheSameIP() {
        var node = Harness()
        let requester = peers[0]
        for nonce in UInt64(1)...4 {
            let effects = node.reachability.handleDialBackRequest(
                from: requester, nonce: nonce, endpoint: mine, observedSource: publicEndpoint(10, port: 1), now: t0,
                peers: peers, rng: &node.rng)
            guard effects.count == 1, case .send(.dialBackOrder(requester, mine, nonce), let prober) = effects[0] else {
                Issue.record("expected an order, got \(effects)")
                continue
            }
            #expect(prober != requester && peers.contains(prober))
        }
        let limited = node.reachability.handleDialBackRequest(
            from: requester, nonce: 5, endpoint: mine, observedSource: mine, now: t0 + 1, peers: peers, rng: &node.rng)
        #expect(limited == [.send(.dialBackRefused(nonce: 5, reason: .rateLimited), to: requester)])
        let lonely = node.reachability.handleDialBackRequest(
            from: key(0x61), nonce: 6, endpoint: mine, observedSource: mine, now: t0 + 1, peers: [key(0x61)],
            rng: &node.rng)
        #expect(lonely == [.send(.dialBackRefused(nonce: 6, reason: .noPeers), to: key(0x61))])
    }

    // MARK: - Prober

    @Test func ordersAreRateLimitedQueuedAndBounded() {
        var node = Harness {
            $0.probesPerSecond = 2
            $0.probeBurst = 2
            $0.maximumQueuedOrders = 2
        }
        #expect(node.order(1) == [.dialProbe(target: key(0x70), endpoint: mine, nonce: 1)])
        #expect(node.order(2) == [.dialProbe(target: key(0x70), endpoint: mine, nonce: 2)])
        #expect(node.order(3).isEmpty)
        #expect(node.order(4).isEmpty)
        #expect(node.order(5).isEmpty)  // the queue holds two
        #expect(node.reachability.queuedOrders == 2)
        #expect(node.reachability.counters.ordersDropped == 1)
        #expect(node.reachability.nextDeadline == t0 + .milliseconds(500))
        let released = node.reachability.tick(now: t0 + .milliseconds(500), rng: &node.rng)
        #expect(released == [.dialProbe(target: key(0x70), endpoint: mine, nonce: 3)])
        // An order that waited past its lifetime is dropped: the requester has given up.
        #expect(node.reachability.tick(now: t0 + 6, rng: &node.rng).isEmpty)
        #expect(node.reachability.queuedOrders == 0)
    }

    @Test func ordersArePerHelperLimitedAndMustBePublic() {
        var node = Harness {
            $0.ordersPerHelperPerMinute = 3
            $0.probeBurst = 100
        }
        for nonce in UInt64(1)...3 {
            let effects = node.reachability.handleDialBackOrder(
                from: peers[0], target: key(0x70), endpoint: mine, nonce: nonce, now: t0)
            #expect(effects.count == 1)
        }
        #expect(
            node.reachability.handleDialBackOrder(from: peers[0], target: key(0x70), endpoint: mine, nonce: 4, now: t0)
                .isEmpty)
        #expect(
            node.reachability.handleDialBackOrder(from: peers[1], target: key(0x70), endpoint: mine, nonce: 5, now: t0)
                .count == 1)
        #expect(
            node.reachability.handleDialBackOrder(
                from: peers[1], target: key(0x70), endpoint: lanEndpoint(1), nonce: 6, now: t0
            ).isEmpty)
        #expect(node.reachability.counters.ordersDropped == 2)
    }

    @Test func handleDispatchesDialBackMessages() throws {
        var node = Harness()
        let asked = node.startCheck()
        let (helper, nonce) = try #require(asked.first)
        let prober = try #require(peers.first { $0 != helper })
        let effects = node.reachability.handle(
            .dialBackProbe(nonce: nonce), from: prober, observedSource: nil, now: t0 + 1, rng: &node.rng)
        #expect(effects == [.statusChanged(.public(mine))])
    }

    // MARK: - Evidence without a check

    @Test func peersSeeingUsAtOurOwnSocketMakeUsPublicWithoutACheck() {
        var node = Harness { $0.localEndpoints = [mine] }
        let effects = node.reachability.observed(
            mine, reporter: reporters[0], reporterAddress: publicEndpoint(20).address, now: t0, rng: &node.rng)
        #expect(effects == [.statusChanged(.public(mine))])
        #expect(node.reachability.basis == .ownAddress)
        #expect(!node.reachability.isChecking)
    }

    @Test func onlyGlobalReportersCountWhenThereAreAny() {
        // A home with a LAN peer: the LAN peer sees our LAN address, the internet sees the NAT's.
        let lan = lanEndpoint(7)
        var node = Harness { $0.localEndpoints = [lan] }
        _ = node.reachability.observed(
            lan, reporter: reporters[0], reporterAddress: lanEndpoint(8).address, now: t0, rng: &node.rng)
        #expect(node.reachability.status == .public(lan), "alone on a LAN: reachable there")
        _ = node.reachability.observed(
            mine, reporter: reporters[1], reporterAddress: publicEndpoint(20).address, now: t0, rng: &node.rng)
        let effects = node.reachability.observed(
            mine, reporter: reporters[2], reporterAddress: publicEndpoint(21).address, now: t0, rng: &node.rng)
        #expect(requests(effects, for: mine).count == 3, "the NAT's endpoint is checked")
        for (peer, nonce) in requests(effects, for: mine) {
            _ = node.reachability.dialBackRefused(nonce: nonce, reason: .noPeers, from: peer, now: t0)
        }
        _ = node.reachability.tick(now: t0 + .seconds(6), rng: &node.rng)
        #expect(node.reachability.status == .private)
        #expect(node.reachability.basis == .checkFailed)
    }

    @Test func unsolicitedSessionsFromTwoAddressesMakeUsPublic() {
        var node = Harness()
        let first = publicEndpoint(30).address
        let second = publicEndpoint(31).address
        #expect(node.reachability.sessionUp(reporters[0], address: first, now: t0, rng: &node.rng).isEmpty)
        _ = node.reachability.observed(mine, reporter: reporters[0], reporterAddress: first, now: t0, rng: &node.rng)
        _ = node.reachability.sessionUp(reporters[1], address: second, now: t0, rng: &node.rng)
        let effects = node.reachability.observed(
            mine, reporter: reporters[1], reporterAddress: second, now: t0, rng: &node.rng)
        #expect(effects == [.statusChanged(.public(mine))])
        #expect(node.reachability.basis == .unsolicitedInbound)
    }

    @Test func sessionsFromAddressesWeDialledAreNotUnsolicited() {
        var node = Harness()
        let first = publicEndpoint(30).address
        let second = publicEndpoint(31).address
        node.reachability.sentInitiation(to: second)
        _ = node.reachability.sessionUp(reporters[0], address: first, now: t0, rng: &node.rng)
        _ = node.reachability.sessionUp(reporters[1], address: second, now: t0, rng: &node.rng)
        _ = node.reachability.observed(mine, reporter: reporters[0], reporterAddress: first, now: t0, rng: &node.rng)
        let effects = node.reachability.observed(
            mine, reporter: reporters[1], reporterAddress: second, now: t0, rng: &node.rng)
        #expect(!effects.contains(.statusChanged(.public(mine))))
        #expect(requests(effects, for: mine).count == 3, "a dial-back check instead")
        // Two identities on one address are one source.
        var same = Harness()
        _ = same.reachability.sessionUp(reporters[0], address: first, now: t0, rng: &same.rng)
        _ = same.reachability.sessionUp(reporters[1], address: first, now: t0, rng: &same.rng)
        _ = same.reachability.observed(mine, reporter: reporters[0], reporterAddress: first, now: t0, rng: &same.rng)
        _ = same.reachability.observed(mine, reporter: reporters[1], reporterAddress: first, now: t0, rng: &same.rng)
        #expect(same.reachability.status == .unknown)
    }

    @Test func aProbeFromTheHelpersAddressOrOursProvesNothing() throws {
        var node = Harness()
        let helperAddress = publicEndpoint(40).address
        _ = node.reachability.setPeers(
            peers, addresses: Dictionary(uniqueKeysWithValues: peers.map { ($0, helperAddress) }), now: t0,
            rng: &node.rng)
        let asked = node.startCheck()
        let (helper, nonce) = try #require(asked.first)
        let prober = try #require(peers.first { $0 != helper })
        #expect(node.reachability.probeReceived(nonce: nonce, from: prober, source: helperAddress, now: t0).isEmpty)
        #expect(node.reachability.probeReceived(nonce: nonce, from: prober, source: mine.address, now: t0).isEmpty)
        #expect(
            node.reachability.probeReceived(nonce: nonce, from: prober, source: publicEndpoint(41).address, now: t0)
                == [.statusChanged(.public(mine))])
        #expect(node.reachability.basis == .dialBack)
    }

    @Test func aFailedCheckDoesNotOverrideOwnAddressEvidence() {
        var node = Harness { $0.localEndpoints = [mine] }
        _ = node.reachability.observed(
            mine, reporter: reporters[0], reporterAddress: publicEndpoint(20).address, now: t0, rng: &node.rng)
        _ = node.reachability.tick(now: t0 + .seconds(11 * 60), rng: &node.rng)
        #expect(node.reachability.status == .public(mine))
    }

    @Test func theHelperRateLimitsBeforeLookingAtPeers() {
        var node = Harness()
        var looked = 0
        let requester = key(0x60)
        for nonce in UInt64(1)...10 {
            _ = node.reachability.handleDialBackRequest(
                from: requester, nonce: nonce, endpoint: mine, observedSource: mine, now: t0, peers: peers,
                isEligible: { _ in
                    looked += 1
                    return true
                }, rng: &node.rng)
        }
        #expect(looked == 4, "only the admitted requests pick a prober")
    }
}

@Suite("Reachability: the dial-back peer list is kept incrementally")
struct ReachabilityPeerListTests {
    @Test("peers are added one at a time up to the cap, without duplicates, and removal says when it ran empty")
    func incrementalPeerList() {
        var config = ReachabilityConfig()
        config.maximumPeers = 3
        var reachability = Reachability(config: config, now: t0)
        var rng = SeededRandom(seed: 9)
        for byte in UInt8(0x60)..<0x66 {
            _ = reachability.addPeer(key(byte), address: nil, now: t0, rng: &rng)
        }
        _ = reachability.addPeer(key(0x60), address: nil, now: t0, rng: &rng)
        #expect(reachability.peers == [key(0x60), key(0x61), key(0x62)])
        let emptiedByFirst = reachability.removePeer(key(0x61))
        #expect(!emptiedByFirst)
        _ = reachability.addPeer(key(0x65), address: nil, now: t0, rng: &rng)
        #expect(reachability.peers == [key(0x60), key(0x62), key(0x65)])
        let emptied = [key(0x60), key(0x62), key(0x65)].map { reachability.removePeer($0) }
        #expect(emptied == [false, false, true])
        #expect(reachability.peers.isEmpty)
    }
}
