import Testing
import UmbraCore
import UmbraCrypto

@testable import Sessions

@Suite("0-RTT early data and on-demand sessions")
struct EarlyDataTests {
    @Test func earlyFrameRidesInTheInitiationAndTheReplyFollowsTheResponse() {
        var pair = Pair()
        let added = pair.a.addPeer(pair.bKey, path: pair.bPath)
        #expect(added)
        let request: [UInt8] = [0x10, 1, 2, 3]
        let effects = pair.a.send(request, to: pair.bKey, early: true, now: pair.now, rng: &pair.rng)
        guard let initiation = firstSend(effects) else {
            Issue.record("no initiation")
            return
        }
        #expect(initiation.count == WireSize.minimumEarlyInitiation, "padded: it buys the reply's allowance")
        // B gets the frame from the initiation itself and answers at once, before A confirms.
        let atB = pair.b.receive(initiation, from: pair.aPath, now: pair.now, rng: &pair.rng)
        #expect(atB.contains(.deliverEarly(peer: pair.aKey, frame: request)))
        #expect(pair.b.counters.earlyFramesReceived == 1)
        let reply = pair.b.send([0x11, 9], to: pair.aKey, now: pair.now, rng: &pair.rng)
        let replyDatagram = firstSend(reply)
        #expect(replyDatagram?[0] == MessageType.transportData.rawValue, "the reply goes out without waiting")
        // On the wire: the response, then the reply. A handles them in that order.
        let response = firstSend(atB)!
        _ = pair.a.receive(response, from: pair.bPath, now: pair.now, rng: &pair.rng)
        let atA = pair.a.receive(replyDatagram!, from: pair.bPath, now: pair.now, rng: &pair.rng)
        #expect(atA.contains(.deliver(peer: pair.bKey, frame: [0x11, 9])))
        #expect(pair.a.counters.droppedTotal == 0 && pair.b.counters.droppedTotal == 0)
    }

    @Test func ordinaryFramesNeverRideInTheInitiation() {
        var pair = Pair()
        _ = pair.a.addPeer(pair.bKey, path: pair.bPath)
        let effects = pair.a.send([1, 2, 3], to: pair.bKey, now: pair.now, rng: &pair.rng)
        #expect(firstSend(effects)?.count == WireSize.initiation)
        pair.pump(effects, from: "a")
        #expect(pair.delivered.map(\.frame) == [[1, 2, 3]])
        #expect(pair.b.counters.earlyFramesReceived == 0)
    }

    @Test func retriedInitiationsCarryTheEarlyFrameAgain() {
        var pair = Pair()
        _ = pair.a.addPeer(pair.bKey, path: pair.bPath)
        let first = firstSend(pair.a.send([7, 7], to: pair.bKey, early: true, now: pair.now, rng: &pair.rng))!
        pair.now = pair.now + .seconds(6)
        let retry = firstSend(pair.a.tick(now: pair.now, rng: &pair.rng))
        #expect(retry?.count == first.count)
        pair.pump([.send(retry!, to: pair.bPath)], from: "a")
        #expect(pair.delivered.map(\.frame) == [[7, 7]])
    }

    @Test func oversizedOrTamperedEarlyInitiationsAreRefused() {
        var pair = Pair()
        _ = pair.a.addPeer(pair.bKey, path: pair.bPath)
        var initiation = firstSend(pair.a.send([5, 5, 5], to: pair.bKey, early: true, now: pair.now, rng: &pair.rng))!
        initiation[20] ^= 1  // inside the Noise message: mac1 no longer matches
        #expect(pair.b.receive(initiation, from: pair.aPath, now: pair.now, rng: &pair.rng).isEmpty)
        #expect(pair.b.counters.dropped[.badMac1] == 1)
        let huge = [UInt8](repeating: 1, count: WireSize.maximumInitiation + 1)
        #expect(pair.b.receive(huge, from: pair.aPath, now: pair.now, rng: &pair.rng).isEmpty)
        #expect(pair.b.counters.dropped[.malformed] == 1)
    }

    @Test func onDemandSessionsSendNoKeepalivesAndIdleOutQuietly() {
        var pair = Pair()
        _ = pair.a.addPeer(pair.bKey, path: pair.bPath)  // on demand, not connect()
        pair.sendAB([1])
        #expect(pair.a.isEstablished(pair.bKey))
        var keepalives: UInt64 = 0
        var lost = false
        for _ in 0..<400 {
            pair.now = pair.now + .seconds(1)
            for effect in pair.a.tick(now: pair.now, rng: &pair.rng) + pair.b.tick(now: pair.now, rng: &pair.rng) {
                if case .lost = effect { lost = true }
            }
            keepalives = pair.a.counters.keepalivesSent + pair.b.counters.keepalivesSent
        }
        // Only B's one passive keepalive, answering A's data frame: no periodic chatter.
        #expect(keepalives == 1)
        #expect(!lost)
        #expect(!pair.a.isEstablished(pair.bKey))
        // Used again later: a fresh handshake, and the frame gets through.
        pair.sendAB([2])
        #expect(pair.delivered.map(\.frame) == [[1], [2]])
        #expect(pair.a.nextDeadline.map { $0 > pair.now } ?? true, "no timer stuck in the past")
    }
}

@Suite("Anti-amplification")
struct AmplificationTests {
    @Test func anUnconfirmedResponderSendsAtMostThreeTimesTheInitiation() throws {
        var pair = Pair()
        _ = pair.a.addPeer(pair.bKey, path: pair.bPath)
        let initiation = try #require(
            firstSend(pair.a.send([0x10, 1], to: pair.bKey, early: true, now: pair.now, rng: &pair.rng)))
        let atB = pair.b.receive(initiation, from: pair.aPath, now: pair.now, rng: &pair.rng)
        let allowance = 3 * initiation.count - WireSize.response
        // A reply that fits the allowance goes out at once ...
        let small = [UInt8](repeating: 7, count: allowance - WireSize.transportHeader - 16)
        #expect(firstSend(pair.b.send(small, to: pair.aKey, now: pair.now, rng: &pair.rng)) != nil)
        // ... anything more waits for A to confirm the session (it cannot reach a spoofed victim).
        let more = pair.b.send([1, 2, 3], to: pair.aKey, now: pair.now, rng: &pair.rng)
        #expect(firstSend(more) == nil)
        // A gets the response and confirms; B then flushes what waited.
        let confirm = pair.a.receive(try #require(firstSend(atB)), from: pair.bPath, now: pair.now, rng: &pair.rng)
        let flushed = pair.b.receive(
            try #require(firstSend(confirm)), from: pair.aPath, now: pair.now,
            rng: &pair.rng)
        let datagram = try #require(firstSend(flushed))
        let delivered = pair.a.receive(datagram, from: pair.bPath, now: pair.now, rng: &pair.rng)
        #expect(delivered.contains(.deliver(peer: pair.bKey, frame: [1, 2, 3])))
    }

    @Test func earlyDataWithNonZeroPaddingIsRefused() throws {
        var pair = Pair()
        _ = pair.a.addPeer(pair.bKey, path: pair.bPath)
        // Drive the real initiator, then check B refuses a payload whose padding is not zero: it
        // takes a forged Noise message, so build one through the handshake API.
        var keys = SeededRandom(seed: 77)
        var noise = try NoiseIKHandshake(
            role: .initiator, prologue: SessionConfig().prologue, staticSecretKey: pair.a.identity.x25519SecretKey,
            remoteStaticKey: pair.b.identity.x25519PublicKey, ephemeralSecretKey: keys.bytes(32))
        var payload = ByteWriter()
        payload.write(raw: pair.a.identity.publicKey.bytes)
        payload.write(UInt64(1 << 40))
        payload.write(UInt16(2))
        payload.write(raw: [0x10, 1, 0, 0, 9] as [UInt8])  // frame [0x10, 1], then padding with a 9
        var bytes = HandshakeInitiation(
            senderIndex: 5, noiseMessage: try noise.writeMessage(payload: payload.bytes),
            mac1: [UInt8](repeating: 0, count: 16), mac2: [UInt8](repeating: 0, count: 16)
        ).encoded()
        let offset = HandshakeInitiation.mac1Offset(length: bytes.count)
        let mac1 = SessionManager.mac(
            key: SessionManager.mac1Key(for: pair.b.identity.x25519PublicKey), bytes[..<offset])
        bytes.replaceSubrange(offset..<offset + 16, with: mac1)
        #expect(pair.b.receive(bytes, from: pair.aPath, now: pair.now, rng: &pair.rng).isEmpty)
        #expect(pair.b.counters.dropped[.identityMismatch] == 1)
    }
}

@Suite("Restarted peers")
struct RestartTests {
    @Test func aRestartedPeerGetsRepliesOnItsNewSession() throws {
        var pair = Pair()
        pair.handshake()
        pair.sendAB([1])
        // A restarts: same identity, fresh state; B still holds the old session.
        var restarted = SessionManager(identity: pair.a.identity, config: pair.a.config)
        let added = restarted.addPeer(pair.bKey, path: pair.bPath)
        #expect(added)
        pair.now = pair.now + .seconds(2)
        let initiation = try #require(
            firstSend(restarted.send([0x10, 7], to: pair.bKey, early: true, now: pair.now, rng: &pair.rng)))
        let atB = pair.b.receive(initiation, from: pair.aPath, now: pair.now, rng: &pair.rng)
        #expect(atB.contains(.deliverEarly(peer: pair.aKey, frame: [0x10, 7])))
        let reply = try #require(firstSend(pair.b.send([0x11], to: pair.aKey, now: pair.now, rng: &pair.rng)))
        _ = restarted.receive(try #require(firstSend(atB)), from: pair.bPath, now: pair.now, rng: &pair.rng)
        let atA = restarted.receive(reply, from: pair.bPath, now: pair.now, rng: &pair.rng)
        #expect(atA.contains(.deliver(peer: pair.bKey, frame: [0x11])), "the reply must use the new keys")
    }
}
