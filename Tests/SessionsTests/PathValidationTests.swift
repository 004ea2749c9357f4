import Testing
import UmbraCore

@testable import Sessions

/// Bytes of all datagrams in `effects` that go to `endpoint`.
private func bytes(to endpoint: Endpoint, in effects: [SessionEffect]) -> Int {
    sends(effects).filter { $0.to == .direct(endpoint) }.reduce(0) { $0 + $1.bytes.count }
}

@Suite("Path validation after roaming (QUIC-style, 3x per unvalidated address)")
struct PathValidationTests {
    let victim = Endpoint(address: .v4(0xC000_0207), port: 53)

    /// The reflection attack of issue #12: a peer with a session sends requests with a victim's
    /// source address, and the node's (large) answers must not flood the victim.
    @Test func aSpoofedSourceGetsAtMostThreeTimesItsBytesUntilValidated() {
        var pair = Pair()
        pair.handshake()
        var received = 0
        var sentToVictim = 0
        var sentToPeer = 0
        for round in 0..<5 {
            // A small authenticated request "from" the victim ...
            let request = firstSend(pair.a.send([0x21, UInt8(round)], to: pair.bKey, now: pair.now, rng: &pair.rng))!
            received += request.count
            var effects = pair.b.receive(request, from: .direct(victim), now: pair.now, rng: &pair.rng)
            // ... answered with 40 KB, like a proposal-sync request.
            for _ in 0..<40 {
                effects += pair.b.send(
                    [UInt8](repeating: 0x21, count: 1000), to: pair.aKey, now: pair.now, rng: &pair.rng)
            }
            sentToVictim += bytes(to: victim, in: effects)
            sentToPeer += bytes(to: pair.aEndpoint, in: effects)
            #expect(sentToVictim <= 3 * received, "round \(round): \(sentToVictim) bytes for \(received)")
            pair.now = pair.now + .milliseconds(400)
        }
        #expect(sentToVictim > 0, "some answer may go to the new address (NAT rebinding)")
        #expect(sentToPeer >= 5 * 40 * 1000, "the rest goes to the validated address")
        #expect(pair.b.snapshot(of: pair.aKey)?.path == pair.aPath)
        #expect(pair.b.counters.pathsValidated == 0)
        #expect(pair.b.counters.pathAllowanceExhausted > 0)
    }

    @Test func natRebindingRoamsAfterOneRoundTripAndRepliesFollowAtOnce() {
        var pair = Pair()
        pair.handshake()
        let rebound = Endpoint(address: .v4(0x7F00_0001), port: 1555)
        pair.aEndpoint = rebound  // A's NAT gave it a new port: its datagrams now come from there
        let wireBefore = pair.wire.count
        pair.sendAB([1, 2, 3])
        #expect(pair.delivered.last?.frame == [1, 2, 3])
        #expect(pair.b.snapshot(of: pair.aKey)?.path == .direct(rebound))
        #expect(pair.events.contains { $0.0 == "b" && $0.1 == .pathChanged(peer: pair.aKey, path: .direct(rebound)) })
        // The challenge went to the new address, and A's answer came back from it.
        let exchanged = pair.wire[wireBefore...]
        #expect(exchanged.count == 3, "data, challenge, response: \(exchanged.map(\.to))")
        #expect(exchanged.dropFirst().first?.to == .direct(rebound))
        // B's reply goes straight to the new address.
        let reply = pair.b.send([9], to: pair.aKey, now: pair.now, rng: &pair.rng)
        #expect(sends(reply).first?.to == .direct(rebound))
    }

    @Test func aSpoofedInitiationDoesNotMoveAnEstablishedPeer() throws {
        var pair = Pair()
        pair.handshake()
        pair.now = pair.now + .seconds(1)
        let initiation = try #require(firstSend(pair.a.rehandshake(pair.bKey, now: pair.now, rng: &pair.rng)))
        var effects = pair.b.receive(initiation, from: .direct(victim), now: pair.now, rng: &pair.rng)
        #expect(pair.b.snapshot(of: pair.aKey)?.path == pair.aPath)
        for _ in 0..<20 {
            effects += pair.b.send([UInt8](repeating: 1, count: 500), to: pair.aKey, now: pair.now, rng: &pair.rng)
        }
        #expect(bytes(to: victim, in: effects) <= 3 * initiation.count)
        #expect(!effects.contains { if case .pathChanged = $0 { true } else { false } })
    }

    @Test func aConfirmedHandshakeValidatesThePathItCameBy() throws {
        var pair = Pair()
        pair.handshake()
        pair.now = pair.now + .seconds(1)
        // A restarts its socket on a new port and rekeys from there: the response reaches it there,
        // so its confirmation proves the path.
        pair.aEndpoint = Endpoint(address: .v4(0x7F00_0001), port: 1777)
        pair.pump(pair.a.rehandshake(pair.bKey, now: pair.now, rng: &pair.rng), from: "a")
        #expect(pair.b.snapshot(of: pair.aKey)?.path == pair.aPath)
        #expect(
            pair.events.contains { $0.0 == "b" && $0.1 == .pathChanged(peer: pair.aKey, path: pair.aPath) }
        )
    }

    @Test func aResponseFromAnotherAddressDoesNotMoveTheInitiator() throws {
        var pair = Pair()
        let initiation = try #require(
            firstSend(pair.a.connect(pair.bKey, endpoint: pair.bEndpoint, now: pair.now, rng: &pair.rng)))
        let response = try #require(
            firstSend(pair.b.receive(initiation, from: pair.aPath, now: pair.now, rng: &pair.rng)))
        let effects = pair.a.receive(response, from: .direct(victim), now: pair.now, rng: &pair.rng)
        #expect(pair.a.isEstablished(pair.bKey))
        #expect(pair.a.snapshot(of: pair.bKey)?.path == pair.bPath)
        #expect(bytes(to: victim, in: effects) == 0)
    }

    @Test func aPathResponseWithTheWrongTokenOrFromAnotherAddressValidatesNothing() throws {
        var pair = Pair()
        pair.handshake()
        let roamed = Endpoint(address: .v4(0x7F00_0002), port: 3333)
        let data = firstSend(pair.a.send([42], to: pair.bKey, now: pair.now, rng: &pair.rng))!
        let challenge = try #require(
            sends(pair.b.receive(data, from: .direct(roamed), now: pair.now, rng: &pair.rng)).first)
        let answer = try #require(
            sends(pair.a.receive(challenge.bytes, from: pair.bPath, now: pair.now, rng: &pair.rng)).first)
        // The right answer from a third address: that address becomes the candidate, nothing moves.
        let third = Endpoint(address: .v4(0x7F00_0003), port: 4444)
        _ = pair.b.receive(answer.bytes, from: .direct(third), now: pair.now, rng: &pair.rng)
        #expect(pair.b.snapshot(of: pair.aKey)?.path == pair.aPath)
        // A guessed token from the candidate address: nothing moves either.
        let forged = firstSend(
            pair.a.send(
                SessionControl.pathResponse(token: 12345).encoded(), to: pair.bKey, now: pair.now, rng: &pair.rng))!
        let effects = pair.b.receive(forged, from: .direct(third), now: pair.now, rng: &pair.rng)
        #expect(pair.b.snapshot(of: pair.aKey)?.path == pair.aPath)
        #expect(!effects.contains { if case .deliver = $0 { true } else { false } })
        #expect(pair.b.counters.pathsValidated == 0)
    }

    @Test func controlFramesRoundTrip() {
        for message in [SessionControl.pathChallenge(token: 0x0102_0304_0506_0708), .pathResponse(token: .max)] {
            let bytes = message.encoded()
            #expect(bytes.count == SessionControl.size && bytes[0] == 0)
            #expect(bytes.withUnsafeBytes { SessionControl(frame: $0) } == message)
        }
        #expect([0, 9, 0, 0, 0, 0, 0, 0, 0, 0].withUnsafeBytes { SessionControl(frame: $0) } == nil)
    }
}
