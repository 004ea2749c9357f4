// The relay client core: it reserves on `desiredRelays` candidates, renews at TTL/2, re-reserves
// at once when a relay's session comes back, fails over (with backoff) when a relay refuses, stops
// answering or stays away, and announces its relay list only when it changes.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Relay

private let relays = (UInt8(0)..<4).map { RelayContact(publicKey: key(0x11 + $0), endpoint: publicEndpoint($0 + 1)) }
private let limits = CircuitLimits(bytes: 1 << 30, seconds: 3600)

/// The request ids of the `reserve` messages sent to `relay` among `effects`.
private func reserveIDs(_ effects: [RelayClientEffect], to relay: RelayContact) -> [UInt32] {
    effects.compactMap {
        guard case .send(.reserve(let id), let to) = $0, to == relay.publicKey else { return nil }
        return id
    }
}

/// A client with candidates r0..r3 whose first two relays are connected and granted at `t0`.
private func reservedClient(
    configure: (inout RelayClientConfig) -> Void = { _ in }
) -> (RelayClient, [RelayClientEffect]) {
    var config = RelayClientConfig()
    configure(&config)
    var client = RelayClient(config: config)
    var log = client.setCandidates(relays, now: t0)
    for relay in relays.prefix(2) {
        let effects = client.relayConnected(relay.publicKey, now: t0)
        log += effects
        log += grant(&client, relay, effects, at: t0)
    }
    return (client, log)
}

/// Answers the `reserve` in `effects` to `relay` with `status`.
private func grant(
    _ client: inout RelayClient, _ relay: RelayContact, _ effects: [RelayClientEffect], status: ReservationStatus = .ok,
    ttl: UInt32 = 3600, at now: Instant
) -> [RelayClientEffect] {
    guard let id = reserveIDs(effects, to: relay).last else {
        Issue.record("no reserve to \(relay) in \(effects)")
        return []
    }
    return client.handle(
        .reserveResult(requestID: id, status: status, ttlSeconds: status == .ok ? ttl : 0, limits: limits),
        from: relay.publicKey, now: now)
}

@Suite struct RelayClientTests {
    @Test func itReservesOnDesiredRelaysAndAnnouncesThem() {
        var client = RelayClient()
        #expect(client.setCandidates(relays, now: t0) == [.connect(relays[0]), .connect(relays[1])])
        let asked = client.relayConnected(relays[0].publicKey, now: t0 + 1)
        #expect(reserveIDs(asked, to: relays[0]).count == 1)
        #expect(grant(&client, relays[0], asked, at: t0 + 1) == [.relaysChanged([relays[0]])])
        let second = client.relayConnected(relays[1].publicKey, now: t0 + 2)
        #expect(grant(&client, relays[1], second, at: t0 + 2) == [.relaysChanged([relays[0], relays[1]])])
        #expect(client.activeReservations.map(\.relay) == [relays[0], relays[1]])
        #expect(client.activeReservations.map(\.expiresAt) == [t0 + 3601, t0 + 3602])
        #expect(client.counters.reservationsGranted == 2)
        // A stale or unasked result changes nothing.
        let stale = client.handle(
            .reserveResult(requestID: 999, status: .ok, ttlSeconds: 10, limits: limits), from: relays[2].publicKey,
            now: t0 + 3)
        #expect(stale.isEmpty)
        #expect(client.counters.unexpectedMessages == 1)
    }

    @Test func aCandidateIsDialledThenAskedOnceConnected() {
        var client = RelayClient(
            config: {
                var c = RelayClientConfig(); c.desiredRelays = 1; return c
            }())
        #expect(client.relayConnected(relays[0].publicKey, now: t0).isEmpty)  // not a candidate: ignored
        #expect(client.setCandidates([relays[0], relays[1], relays[0]], now: t0) == [.connect(relays[0])])
        #expect(client.candidates == [relays[0], relays[1]])
        #expect(
            client.relayConnected(relays[0].publicKey, now: t0) == [
                .send(.reserve(requestID: 1), to: relays[0].publicKey)
            ])
    }

    @Test func itRenewsAtHalfTheTTL() {
        var (client, _) = reservedClient()
        #expect(client.nextDeadline == t0 + 1800)
        #expect(client.tick(now: t0 + 1799).isEmpty)
        let renewals = client.tick(now: t0 + 1800)
        #expect(reserveIDs(renewals, to: relays[0]).count == 1)
        #expect(reserveIDs(renewals, to: relays[1]).count == 1)
        #expect(grant(&client, relays[0], renewals, at: t0 + 1801).isEmpty)  // same list: no announcement
        #expect(client.activeReservations.first?.expiresAt == t0 + 1801 + 3600)
        // An unanswered renewal keeps the reservation and retries after a backoff.
        let timedOut = client.tick(now: t0 + 1805)
        #expect(timedOut.isEmpty)
        #expect(client.activeReservations.count == 2)
        #expect(client.counters.timeouts == 1)
        #expect(reserveIDs(client.tick(now: t0 + 1810), to: relays[1]).count == 1)
    }

    @Test func itReReservesAtOnceWhenARelayReconnects() {
        var (client, _) = reservedClient()
        #expect(client.relayLost(relays[0].publicKey, now: t0 + 100).isEmpty)
        #expect(client.advertised == [relays[0], relays[1]])  // kept while it may come back
        let back = client.relayConnected(relays[0].publicKey, now: t0 + 103)
        #expect(reserveIDs(back, to: relays[0]).count == 1)
        #expect(grant(&client, relays[0], back, at: t0 + 103).isEmpty)
        #expect(client.activeReservations.first?.expiresAt == t0 + 103 + 3600)
        // Also when the relay restarted without us noticing the loss: a new session, a new reserve.
        let restarted = client.relayConnected(relays[1].publicKey, now: t0 + 200)
        #expect(reserveIDs(restarted, to: relays[1]).count == 1)
    }

    @Test func aRelayThatStaysAwayIsReplaced() {
        var (client, _) = reservedClient()
        _ = client.relayLost(relays[0].publicKey, now: t0 + 100)
        #expect(client.nextDeadline == t0 + 110)
        #expect(client.tick(now: t0 + 109).isEmpty)
        let effects = client.tick(now: t0 + 110)
        #expect(effects == [.release(relays[0]), .connect(relays[2]), .relaysChanged([relays[1]])])
        let asked = client.relayConnected(relays[2].publicKey, now: t0 + 111)
        #expect(grant(&client, relays[2], asked, at: t0 + 111) == [.relaysChanged([relays[1], relays[2]])])
    }

    @Test func aRefusalFailsOverAndBacksOff() {
        var client = RelayClient()
        _ = client.setCandidates(relays, now: t0)
        let first = client.relayConnected(relays[0].publicKey, now: t0)
        _ = grant(&client, relays[0], first, at: t0)
        let second = client.relayConnected(relays[1].publicKey, now: t0)
        let refused = grant(&client, relays[1], second, status: .refusedFull, at: t0)
        #expect(refused == [.release(relays[1]), .connect(relays[2])])
        #expect(client.counters.refusals == [.refusedFull: 1])
        let third = client.relayConnected(relays[2].publicKey, now: t0 + 1)
        #expect(grant(&client, relays[2], third, at: t0 + 1) == [.relaysChanged([relays[0], relays[2]])])
    }

    @Test func theBackoffDoublesPerFailure() {
        var client = RelayClient(
            config: {
                var c = RelayClientConfig(); c.desiredRelays = 1; return c
            }())
        _ = client.setCandidates([relays[0]], now: t0)
        var effects = client.relayConnected(relays[0].publicKey, now: t0)
        var now = t0
        for delay in [5, 10, 20, 40] {
            #expect(grant(&client, relays[0], effects, status: .refusedPerIP, at: now) == [.release(relays[0])])
            #expect(client.nextDeadline == now + delay)
            #expect(client.tick(now: now + (delay - 1)).isEmpty)
            now = now + delay
            effects = client.tick(now: now)
            #expect(reserveIDs(effects, to: relays[0]).count == 1)
        }
        // Success resets the backoff.
        #expect(grant(&client, relays[0], effects, at: now) == [.relaysChanged([relays[0]])])
        #expect(client.activeReservations.count == 1)
    }

    @Test func notARelayBacksOffTheLongest() {
        var client = RelayClient(
            config: {
                var c = RelayClientConfig(); c.desiredRelays = 1; return c
            }())
        _ = client.setCandidates([relays[0]], now: t0)
        let effects = client.relayConnected(relays[0].publicKey, now: t0)
        _ = grant(&client, relays[0], effects, status: .notARelay, at: t0)
        #expect(client.nextDeadline == t0 + 600)
    }

    @Test func anUnansweredRequestFailsOver() {
        var client = RelayClient(
            config: {
                var c = RelayClientConfig(); c.desiredRelays = 1; return c
            }())
        _ = client.setCandidates([relays[0], relays[1]], now: t0)
        _ = client.relayConnected(relays[0].publicKey, now: t0)
        #expect(client.nextDeadline == t0 + 5)
        #expect(client.tick(now: t0 + 5) == [.release(relays[0]), .connect(relays[1])])
        // A relay that never connects is given up after connectTimeout.
        // Meanwhile the first relay's backoff (5 s) ran out, and it is still connected: asked again.
        #expect(
            client.tick(now: t0 + 15) == [.release(relays[1]), .send(.reserve(requestID: 2), to: relays[0].publicKey)])
        #expect(client.counters.timeouts == 2)
    }

    @Test func droppedCandidatesStayInUseUntilTheyFail() {
        var (client, _) = reservedClient()
        let effects = client.setCandidates([relays[1], relays[3]], now: t0 + 10)
        #expect(effects.isEmpty)
        #expect(client.activeReservations.map(\.relay) == [relays[1], relays[0]])
        #expect(client.candidates == [relays[1], relays[3]])
        let lost = client.relayLost(relays[0].publicKey, now: t0 + 20)
        #expect(lost.isEmpty)
        #expect(client.tick(now: t0 + 30) == [.release(relays[0]), .connect(relays[3]), .relaysChanged([relays[1]])])
    }

    @Test func circuitStatusesArePassedOn() {
        var client = RelayClient()
        let effects = client.handle(.circuitStatus(peer: key(9), code: .targetGone), from: relays[0].publicKey, now: t0)
        #expect(effects == [.circuitEnded(relay: relays[0].publicKey, peer: key(9), code: .targetGone)])
    }

    @Test func releaseAllUnreservesAndClearsTheList() {
        var (client, _) = reservedClient()
        let effects = client.releaseAll(now: t0 + 5)
        #expect(
            effects == [
                .send(.unreserve, to: relays[0].publicKey), .release(relays[0]),
                .send(.unreserve, to: relays[1].publicKey), .release(relays[1]), .relaysChanged([]),
            ])
        #expect(client.activeReservations.isEmpty)
    }
}
