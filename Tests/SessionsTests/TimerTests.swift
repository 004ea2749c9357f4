import Testing
import UmbraCore

@testable import Sessions

@Suite("Timers: rekey, expiry, keepalive, liveness, give-up")
struct TimerTests {
    @Test func sessionRekeysBeforeKeysExpireAndTrafficContinues() {
        var pair = Pair()
        pair.handshake()
        let initiated = pair.a.counters.handshakesInitiated
        // Ten minutes of traffic every second, far past several rekey and reject intervals.
        for second in 0..<600 {
            pair.advance(.seconds(1))
            pair.sendAB([1, UInt8(truncatingIfNeeded: second)])  // not 0x00: session control
        }
        #expect(pair.delivered.count == 600)
        #expect(pair.a.counters.handshakesInitiated >= initiated + 4)
        #expect(pair.b.counters.dropped[.expiredKeys, default: 0] == 0)
        #expect(
            pair.events.allSatisfy { if case .lost = $0.1 { false } else { true } },
            "\(pair.events.map { "\($0.0) \($0.1)" })")
    }

    @Test func idleSessionSendsKeepalives() {
        var pair = Pair()
        pair.handshake()
        let before = pair.a.counters.keepalivesSent
        pair.run(for: .seconds(25))
        #expect(pair.a.counters.keepalivesSent >= before + 2)
        #expect(pair.a.isEstablished(pair.bKey) && pair.b.isEstablished(pair.aKey))
    }

    @Test func silentPeerIsDeclaredLost() {
        var pair = Pair()
        pair.handshake()
        // B vanishes: only A's timers run and nothing reaches B any more.
        var lostAt: Instant?
        for _ in 0..<60 {
            pair.now = pair.now + .seconds(1)
            let effects = pair.a.tick(now: pair.now, rng: &pair.rng)
            if effects.contains(.lost(peer: pair.bKey)) { lostAt = pair.now }
        }
        #expect(lostAt != nil)
        #expect(!pair.a.isEstablished(pair.bKey))
    }

    @Test func unreachablePeerIsGivenUpAfterTheAttemptTime() {
        var pair = Pair()
        var effects = pair.a.connect(pair.bKey, endpoint: pair.bEndpoint, now: pair.now, rng: &pair.rng)
        var initiations = firstSend(effects) == nil ? 0 : 1
        var unreachable = false
        for _ in 0..<100 {
            pair.now = pair.now + .seconds(1)
            effects = pair.a.tick(now: pair.now, rng: &pair.rng)
            initiations += effects.filter { if case .send(let b, _) = $0 { b[0] == 1 } else { false } }.count
            if effects.contains(.unreachable(peer: pair.bKey)) { unreachable = true }
        }
        #expect(unreachable)
        // Retries every rekeyTimeout (5 s + jitter) for 90 s: about 17 initiations, not a flood.
        #expect((15...19).contains(initiations))
    }

    @Test func nextDeadlineCoversPendingWork() {
        var pair = Pair()
        #expect(pair.a.nextDeadline == nil)
        _ = pair.a.connect(pair.bKey, endpoint: pair.bEndpoint, now: pair.now, rng: &pair.rng)
        let deadline = pair.a.nextDeadline
        #expect(deadline != nil)
        #expect(deadline! > pair.now && deadline! <= pair.now + .seconds(6))
    }
}

@Suite("Cookies under load")
struct CookieTests {
    @Test func underLoadTheResponderDemandsACookieAndTheRetryWithItSucceeds() {
        var config = SessionConfig()
        config.handshakesPerSecondBeforeCookies = 0  // always "under load"
        var pair = Pair(config: config)
        pair.handshake()
        #expect(!pair.a.isEstablished(pair.bKey))
        #expect(pair.b.counters.cookieRepliesSent == 1)
        #expect(pair.b.counters.dropped[.cookieRequired] == 1)
        #expect(pair.wire.map { $0.bytes[0] } == [1, 3])
        // The retry carries mac2 from the cookie; B accepts it.
        pair.run(for: .seconds(6))
        #expect(pair.a.isEstablished(pair.bKey))
        #expect(pair.b.isEstablished(pair.aKey))
    }

    @Test func cookieReplyForAnUnknownIndexIsDropped() {
        var pair = Pair()
        let reply = CookieReply(
            receiverIndex: 12345, nonce: [UInt8](repeating: 1, count: 24),
            encryptedCookie: [UInt8](repeating: 2, count: 32)
        ).encoded()
        #expect(pair.a.receive(reply, from: pair.bPath, now: pair.now, rng: &pair.rng).isEmpty)
        #expect(pair.a.counters.dropped[.unknownIndex] == 1)
    }
}

/// `ReplayWindow.accept` through a free function, so `#expect` can evaluate it.
private func accept(_ window: inout ReplayWindow, _ counter: UInt64) -> Bool { window.accept(counter) }

@Suite("Replay window")
struct ReplayWindowTests {
    @Test func acceptsFreshRejectsDuplicates() {
        var window = ReplayWindow()
        #expect(accept(&window, 0))
        #expect(!accept(&window, 0))
        #expect(accept(&window, 1))
        #expect(accept(&window, 5))
        #expect(accept(&window, 3))
        #expect(!accept(&window, 3))
        #expect(!accept(&window, 5))
    }

    @Test func windowIsAtLeast2048() {
        var window = ReplayWindow()
        #expect(accept(&window, 10_000))
        #expect(accept(&window, 10_000 - 2047))
        #expect(!accept(&window, 10_000 - 2048))
        #expect(!window.check(0))
    }

    @Test func largeJumpsClearOldBits() {
        var window = ReplayWindow()
        for counter in UInt64(0)..<3000 { #expect(accept(&window, counter)) }
        #expect(accept(&window, 1_000_000))
        #expect(accept(&window, 1_000_000 - 100))
        #expect(accept(&window, 1_000_000 - 2000))
        #expect(!accept(&window, 1_000_000 - 2000))
        #expect(accept(&window, UInt64.max - 1))
        #expect(!accept(&window, 1_000_000 + 1))
    }

    @Test func randomOrderMatchesASetModel() {
        var rng = SeededRandom(seed: 3)
        var window = ReplayWindow()
        var seen = Set<UInt64>()
        var highest: UInt64 = 0
        for _ in 0..<20_000 {
            let counter = UInt64.random(in: 0..<6000, using: &rng)
            let expected = !seen.contains(counter) && (seen.isEmpty || counter > highest || highest - counter < 2048)
            #expect(accept(&window, counter) == expected)
            if expected {
                seen.insert(counter)
                highest = max(highest, counter)
            }
        }
    }
}

@Suite("Wire messages")
struct WireMessageTests {
    @Test func sizesMatchTheProtocolDocument() {
        #expect(WireSize.initiation == 176)
        #expect(WireSize.response == 92)
        #expect(WireSize.cookieReply == 64)
        #expect(WireSize.transportMinimum == 32)
    }

    @Test func decodersRefuseWrongSizesTypesAndReservedBytes() {
        #expect(throws: DecodeError.self) { try HandshakeInitiation(decoding: [UInt8](repeating: 1, count: 175)) }
        var bytes = [UInt8](repeating: 0, count: WireSize.initiation)
        bytes[0] = 2
        #expect(throws: DecodeError.self) { try HandshakeInitiation(decoding: bytes) }
        bytes[0] = 1
        bytes[2] = 9
        #expect(throws: DecodeError.self) { try HandshakeInitiation(decoding: bytes) }
        bytes[2] = 0
        #expect(throws: Never.self) { try HandshakeInitiation(decoding: bytes) }
    }

    @Test func roundTrips() throws {
        let response = HandshakeResponse(
            senderIndex: 7, receiverIndex: 9, noiseMessage: Array(repeating: 3, count: 48),
            mac1: Array(repeating: 4, count: 16), mac2: Array(repeating: 5, count: 16))
        #expect(try HandshakeResponse(decoding: response.encoded()) == response)
        let reply = CookieReply(
            receiverIndex: 1, nonce: Array(repeating: 6, count: 24),
            encryptedCookie: Array(repeating: 7, count: 32))
        #expect(try CookieReply(decoding: reply.encoded()) == reply)
    }
}
