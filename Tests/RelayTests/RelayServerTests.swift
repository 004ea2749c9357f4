// The relay server core: reservation caps (total, per IP, per-peer request rate) with their codes,
// circuits opening only towards reserved and connected targets, no unsolicited replies, byte and
// time limits that cut only the offending circuit and tell both ends, reservation expiry, the
// forwarding rate limit, lost peers, circuit caps and explicit close.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Relay

private let alice = key(1)
private let bob = key(2)
private let carol = key(3)
private let dave = key(4)

/// A relay and the set of peers it has sessions with.
private struct Harness {
    var server: RelayServer
    var connected: Set<PublicKey>

    init(configure: (inout RelayServerConfig) -> Void = { _ in }) {
        var config = RelayServerConfig()
        configure(&config)
        server = RelayServer(config: config)
        connected = [alice, bob, carol, dave]
    }

    mutating func receive(
        _ message: RelayMessage, from peer: PublicKey, ip: [UInt8]? = nil, at now: Instant = t0
    ) -> [RelayServerEffect] {
        let connected = self.connected
        return server.handle(message, from: peer, ipKey: ip, now: now, isConnected: { connected.contains($0) })
    }

    /// Reserves for `peer` and returns the status.
    mutating func reserve(_ peer: PublicKey, ip: [UInt8]? = nil, at now: Instant = t0) -> ReservationStatus? {
        let effects = receive(.reserve(requestID: 9), from: peer, ip: ip, at: now)
        guard effects.count == 1, case .send(.reserveResult(9, let status, _, _), let to) = effects[0], to == peer
        else {
            Issue.record("unexpected answer to reserve: \(effects)")
            return nil
        }
        return status
    }

    mutating func forward(_ bytes: Int, from: PublicKey, to: PublicKey, at now: Instant = t0) -> [RelayServerEffect] {
        receive(.forward(peer: to, bytes: [UInt8](repeating: 7, count: bytes)), from: from, at: now)
    }
}

private func delivered(_ bytes: Int, from: PublicKey, to: PublicKey) -> RelayServerEffect {
    .send(.deliver(peer: from, bytes: [UInt8](repeating: 7, count: bytes)), to: to)
}

private func status(_ code: CircuitCode, about peer: PublicKey, to: PublicKey) -> RelayServerEffect {
    .send(.circuitStatus(peer: peer, code: code), to: to)
}

@Suite struct RelayServerTests {
    // MARK: - Reservations

    @Test func aReservationIsGrantedWithTTLAndLimits() {
        var relay = Harness()
        let effects = relay.receive(.reserve(requestID: 77), from: bob)
        #expect(
            effects == [
                .send(
                    .reserveResult(
                        requestID: 77, status: .ok, ttlSeconds: 3600,
                        limits: CircuitLimits(bytes: 1 << 30, seconds: 3600)), to: bob)
            ])
        #expect(relay.server.hasReservation(bob, now: t0))
        #expect(relay.server.reservations.map(\.peer) == [bob])
        #expect(relay.server.reservations.first?.expiresAt == t0 + 3600)
        #expect(relay.server.counters.reservationsAccepted == 1)
    }

    @Test func thePerIPCapRefusesTheFifthAndExemptsNilKeys() {
        var relay = Harness()
        let ip: [UInt8] = [198, 51, 100, 1]
        for byte in UInt8(10)..<14 { #expect(relay.reserve(key(byte), ip: ip) == .ok) }
        #expect(relay.reserve(key(14), ip: ip) == .refusedPerIP)
        #expect(relay.reserve(key(14), ip: [198, 51, 100, 2]) == .ok)
        for byte in UInt8(20)..<30 { #expect(relay.reserve(key(byte), ip: nil) == .ok) }
        // A holder renewing from the same IP is not counted against itself.
        #expect(relay.reserve(key(10), ip: ip, at: t0 + 1) == .ok)
        #expect(relay.server.counters.reservationsRefused == [.refusedPerIP: 1])
        #expect(relay.server.counters.reservationsRenewed == 1)
    }

    @Test func theTotalCapRefusesNewcomersButNotRenewals() {
        var relay = Harness { $0.maximumReservations = 3 }
        for byte in UInt8(10)..<13 { #expect(relay.reserve(key(byte)) == .ok) }
        #expect(relay.reserve(key(13)) == .refusedFull)
        #expect(relay.reserve(key(11), at: t0 + 10) == .ok)
        #expect(relay.server.activeReservations == 3)
        #expect(relay.server.counters.reservationsRefused == [.refusedFull: 1])
    }

    @Test func reservationRequestsAreRateLimitedPerPeer() {
        var relay = Harness { $0.reservationRequestsPerMinute = 2 }
        #expect(relay.reserve(bob) == .ok)
        #expect(relay.reserve(bob, at: t0 + 1) == .ok)
        #expect(relay.reserve(bob, at: t0 + 2) == .refusedPerPeer)
        #expect(relay.reserve(carol, at: t0 + 2) == .ok)
        #expect(relay.reserve(bob, at: t0 + 61) == .ok)
        // The refused request did not cancel the reservation.
        #expect(relay.server.hasReservation(bob, now: t0 + 3))
    }

    @Test func aDisabledRelayAnswersNotARelay() {
        var relay = Harness { $0.isEnabled = false }
        #expect(relay.reserve(bob) == .notARelay)
        #expect(relay.forward(10, from: alice, to: bob) == [status(.noReservation, about: bob, to: alice)])
    }

    @Test func aReservationExpiresAtItsTTL() {
        var relay = Harness { $0.reservationTTL = .seconds(100) }
        #expect(relay.reserve(bob) == .ok)
        #expect(relay.server.nextDeadline == t0 + 100)
        #expect(relay.server.tick(now: t0 + 99).isEmpty)
        #expect(relay.server.activeReservations == 1)
        _ = relay.server.tick(now: t0 + 100)
        #expect(relay.server.activeReservations == 0)
        #expect(relay.server.counters.reservationsExpired == 1)
        #expect(relay.server.nextDeadline == nil)
        #expect(
            relay.forward(10, from: alice, to: bob, at: t0 + 100) == [status(.noReservation, about: bob, to: alice)])
    }

    @Test func unreserveDropsTheReservation() {
        var relay = Harness()
        #expect(relay.reserve(bob) == .ok)
        #expect(relay.receive(.unreserve, from: bob).isEmpty)
        #expect(!relay.server.hasReservation(bob, now: t0))
        #expect(relay.forward(10, from: alice, to: bob) == [status(.noReservation, about: bob, to: alice)])
    }

    // MARK: - Circuits

    @Test func aForwardWithoutReservationIsRefused() {
        var relay = Harness()
        #expect(relay.forward(100, from: alice, to: bob) == [status(.noReservation, about: bob, to: alice)])
        #expect(relay.server.activeCircuits == 0)
        #expect(relay.server.counters.forwardsRefused == [.noReservation: 1])
    }

    @Test func aForwardToADisconnectedTargetIsTargetGone() {
        var relay = Harness()
        #expect(relay.reserve(bob) == .ok)
        relay.connected.remove(bob)
        #expect(relay.forward(100, from: alice, to: bob) == [status(.targetGone, about: bob, to: alice)])
        #expect(relay.server.activeCircuits == 0)
    }

    @Test func aCircuitCarriesBothWaysAndRefusesOutsiders() {
        var relay = Harness()
        #expect(relay.reserve(bob) == .ok)
        #expect(relay.forward(100, from: alice, to: bob) == [delivered(100, from: alice, to: bob)])
        #expect(relay.forward(50, from: bob, to: alice) == [delivered(50, from: bob, to: alice)])
        // Carol has no circuit with Alice, and Alice holds no reservation.
        #expect(relay.forward(10, from: carol, to: alice) == [status(.noReservation, about: alice, to: carol)])
        let circuits = relay.server.circuits
        #expect(circuits.count == 1)
        #expect(circuits.first?.initiator == alice)
        #expect(circuits.first?.target == bob)
        #expect(circuits.first?.bytes == 150)
        #expect(circuits.first?.datagrams == 2)
        #expect(relay.server.counters.bytesRelayed == 150)
    }

    @Test func aReplyWithoutACircuitIsRefused() {
        var relay = Harness()
        #expect(relay.reserve(bob) == .ok)
        // Bob (reserved) tries to reach Alice (not reserved) before she opened a circuit to him.
        #expect(relay.forward(10, from: bob, to: alice) == [status(.noReservation, about: alice, to: bob)])
        #expect(relay.server.activeCircuits == 0)
    }

    @Test func theByteLimitCutsOnlyTheOffendingCircuitAndTellsBothEnds() {
        var relay = Harness { $0.circuitByteLimit = 1000 }
        #expect(relay.reserve(bob) == .ok)
        #expect(relay.reserve(dave) == .ok)
        #expect(relay.forward(600, from: alice, to: bob) == [delivered(600, from: alice, to: bob)])
        #expect(relay.forward(600, from: carol, to: dave) == [delivered(600, from: carol, to: dave)])
        #expect(relay.forward(400, from: bob, to: alice) == [delivered(400, from: bob, to: alice)])  // exactly 1000
        let cut = relay.forward(1, from: alice, to: bob)
        #expect(cut == [status(.overByteLimit, about: bob, to: alice), status(.overByteLimit, about: alice, to: bob)])
        #expect(relay.server.circuits.map(\.initiator) == [carol])
        #expect(relay.forward(300, from: dave, to: carol) == [delivered(300, from: dave, to: carol)])
        #expect(relay.server.counters.circuitsClosed == [.overByteLimit: 1])
        // With the circuit gone, Bob cannot reach Alice.
        #expect(relay.forward(1, from: bob, to: alice) == [status(.noReservation, about: alice, to: bob)])
    }

    @Test func theTimeLimitCutsACircuitAtItsDeadlineOnly() {
        var relay = Harness { $0.circuitDurationLimit = .seconds(60) }
        #expect(relay.reserve(bob) == .ok)
        #expect(relay.reserve(dave) == .ok)
        _ = relay.forward(10, from: alice, to: bob)
        _ = relay.forward(10, from: carol, to: dave, at: t0 + 30)
        #expect(relay.server.nextDeadline == t0 + 60)
        #expect(relay.server.tick(now: t0 + 59).isEmpty)
        let cut = relay.server.tick(now: t0 + 60)
        #expect(cut == [status(.overTimeLimit, about: bob, to: alice), status(.overTimeLimit, about: alice, to: bob)])
        #expect(relay.forward(10, from: carol, to: dave, at: t0 + 61) == [delivered(10, from: carol, to: dave)])
        #expect(relay.server.nextDeadline == t0 + 90)
        // A forward that arrives after the deadline but before the tick also cuts.
        let late = relay.forward(10, from: dave, to: carol, at: t0 + 95)
        #expect(
            late == [status(.overTimeLimit, about: carol, to: dave), status(.overTimeLimit, about: dave, to: carol)])
    }

    @Test func theRateLimitDropsDatagramsAndNoticesAtMostOncePerInterval() {
        var relay = Harness {
            $0.circuitBytesPerSecond = 1000
            $0.circuitBurstBytes = 1000
        }
        #expect(relay.reserve(bob) == .ok)
        #expect(relay.forward(600, from: alice, to: bob) == [delivered(600, from: alice, to: bob)])
        #expect(relay.forward(600, from: alice, to: bob) == [status(.rateLimited, about: bob, to: alice)])
        #expect(relay.forward(600, from: alice, to: bob).isEmpty)  // dropped, notice throttled
        let later = t0 + .milliseconds(500)
        #expect(relay.forward(600, from: alice, to: bob, at: later) == [delivered(600, from: alice, to: bob)])
        #expect(relay.server.activeCircuits == 1)
        #expect(relay.server.counters.forwardsRefused == [.rateLimited: 2])
        #expect(relay.server.counters.bytesRelayed == 1200)
    }

    @Test func aLostPeerClosesItsCircuitsButKeepsItsReservation() {
        var relay = Harness()
        #expect(relay.reserve(bob) == .ok)
        #expect(relay.reserve(dave) == .ok)
        _ = relay.forward(10, from: alice, to: bob)
        _ = relay.forward(10, from: carol, to: bob)
        _ = relay.forward(10, from: alice, to: dave)
        relay.connected.remove(bob)
        let effects = relay.server.peerLost(bob, now: t0 + 1)
        #expect(effects == [status(.targetGone, about: bob, to: alice), status(.targetGone, about: bob, to: carol)])
        #expect(relay.server.circuits.map(\.target) == [dave])
        #expect(relay.server.hasReservation(bob, now: t0 + 1))
        #expect(relay.forward(10, from: alice, to: bob, at: t0 + 2) == [status(.targetGone, about: bob, to: alice)])
        relay.connected.insert(bob)
        #expect(relay.forward(10, from: alice, to: bob, at: t0 + 3) == [delivered(10, from: alice, to: bob)])
    }

    @Test func circuitCapsArePerPeerAndTotal() {
        var relay = Harness {
            $0.maximumCircuitsPerPeer = 2
            $0.maximumCircuits = 3
        }
        let targets = (UInt8(10)..<14).map(key)
        relay.connected.formUnion(targets)
        for target in targets { #expect(relay.reserve(target) == .ok) }
        _ = relay.forward(1, from: alice, to: targets[0])
        _ = relay.forward(1, from: alice, to: targets[1])
        #expect(
            relay.forward(1, from: alice, to: targets[2]) == [status(.tooManyCircuits, about: targets[2], to: alice)])
        _ = relay.forward(1, from: carol, to: targets[2])
        #expect(relay.forward(1, from: dave, to: targets[3]) == [status(.tooManyCircuits, about: targets[3], to: dave)])
        #expect(relay.server.activeCircuits == 3)
    }

    @Test func anEndClosesItsCircuit() {
        var relay = Harness()
        #expect(relay.reserve(bob) == .ok)
        _ = relay.forward(10, from: alice, to: bob)
        #expect(
            relay.receive(.circuitStatus(peer: bob, code: .closed), from: alice) == [
                status(.closed, about: alice, to: bob)
            ])
        #expect(relay.forward(10, from: bob, to: alice) == [status(.noReservation, about: alice, to: bob)])
        // Other codes from a client are not commands.
        _ = relay.forward(10, from: alice, to: bob)
        #expect(relay.receive(.circuitStatus(peer: bob, code: .overByteLimit), from: alice).isEmpty)
        #expect(relay.server.activeCircuits == 1)
    }

    @Test func messagesForOtherPartsAreCountedAndIgnored() {
        var relay = Harness()
        #expect(relay.receive(.punchSync(nonce: 1), from: alice).isEmpty)
        #expect(relay.receive(.deliver(peer: bob, bytes: [1]), from: alice).isEmpty)
        #expect(relay.server.counters.unexpectedMessages == 2)
    }

    @Test func ipKeysExemptTestRangesAndGroupIPv6By64() {
        #expect(RelayServer.ipKey(for: .v4(0x7F00_0001)) == nil)
        #expect(RelayServer.ipKey(for: .v4(0x0A00_0001)) == nil)
        #expect(RelayServer.ipKey(for: .v4(0xC633_6401)) == [198, 51, 100, 1])
        let one = RelayServer.ipKey(for: .v6(high: 0x2001_0DB8_0000_0001, low: 1))
        let other = RelayServer.ipKey(for: .v6(high: 0x2001_0DB8_0000_0001, low: 2))
        #expect(one != nil && one == other && one?.count == 8)
        #expect(RelayServer.ipKey(for: .v6(high: 0, low: 0xFFFF_C633_6401)) == [198, 51, 100, 1])
    }
}
