import Testing
import UmbraCore
import UmbraCrypto

@testable import Sessions

@Suite("Handshake and transport")
struct HandshakeTests {
    @Test func handshakeEstablishesBothSidesAndCarriesFrames() {
        var pair = Pair()
        pair.handshake()
        #expect(pair.a.isEstablished(pair.bKey))
        #expect(pair.b.isEstablished(pair.aKey))
        pair.sendAB([1, 2, 3])
        pair.sendBA([4, 5])
        #expect(pair.delivered.map(\.frame) == [[1, 2, 3], [4, 5]])
        #expect(pair.delivered.map(\.to) == ["b", "a"])
        #expect(pair.a.counters.droppedTotal == 0 && pair.b.counters.droppedTotal == 0)
        // The wire carried: initiation, response, a confirming keepalive, then the two frames.
        #expect(pair.wire.map { $0.bytes[0] } == [1, 2, 4, 4, 4])
        #expect(pair.wire[0].bytes.count == WireSize.initiation)
        #expect(pair.wire[1].bytes.count == WireSize.response)
    }

    @Test func framesSentBeforeTheHandshakeAreQueuedAndDelivered() {
        var pair = Pair()
        let added = pair.a.addPeer(pair.bKey, path: pair.bPath)
        #expect(added)
        pair.sendAB([9])
        pair.sendAB([10])
        #expect(pair.delivered.map(\.frame) == [[9], [10]])
    }

    @Test func replayedInitiationIsRefused() {
        var pair = Pair()
        pair.handshake()
        let initiation = pair.wire[0].bytes
        let before = pair.b.counters.dropped[.replayedInitiation, default: 0]
        pair.now = pair.now + .seconds(1)
        let effects = pair.b.receive(initiation, from: pair.aPath, now: pair.now, rng: &pair.rng)
        #expect(effects.isEmpty)
        #expect(pair.b.counters.dropped[.replayedInitiation, default: 0] == before + 1)
    }

    @Test func replayedTransportIsRefused() {
        var pair = Pair()
        pair.handshake()
        pair.sendAB([7, 7, 7])
        let data = pair.wire.last!.bytes
        let effects = pair.b.receive(data, from: pair.aPath, now: pair.now, rng: &pair.rng)
        #expect(effects.isEmpty)
        #expect(pair.b.counters.dropped[.replayedCounter] == 1)
        #expect(pair.delivered.count == 1)
    }

    @Test(arguments: [16, 17, 20, 30])
    func tamperedTransportIsRefused(byteIndex: Int) {
        var pair = Pair()
        pair.handshake()
        let added = pair.a.addPeer(pair.bKey, path: pair.bPath)
        #expect(added)
        var effects = pair.a.send(
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], to: pair.bKey, now: pair.now,
            rng: &pair.rng)
        guard var data = firstSend(effects) else {
            Issue.record("nothing sent")
            return
        }
        data[byteIndex] ^= 0x40
        effects = pair.b.receive(data, from: pair.aPath, now: pair.now, rng: &pair.rng)
        #expect(effects.isEmpty)
        #expect(pair.b.counters.dropped[.authenticationFailed] == 1)
        // The window did not advance: the genuine packet still gets through.
        data[byteIndex] ^= 0x40
        effects = pair.b.receive(data, from: pair.aPath, now: pair.now, rng: &pair.rng)
        #expect(effects.contains(.deliver(peer: pair.aKey, frame: Array(1...15))))
    }

    @Test func outOfOrderPacketsWithinTheWindowAreAccepted() {
        var pair = Pair()
        pair.handshake()
        var datagrams: [[UInt8]] = []
        for index in 0..<5 {
            // Frames start at 1: a leading 0x00 is the session control channel.
            if let bytes = firstSend(pair.a.send([UInt8(index + 1)], to: pair.bKey, now: pair.now, rng: &pair.rng)) {
                datagrams.append(bytes)
            }
        }
        var frames: [[UInt8]] = []
        for bytes in datagrams.reversed() {
            for case .deliver(_, let frame) in pair.b.receive(
                bytes, from: pair.aPath, now: pair.now,
                rng: &pair.rng)
            {
                frames.append(frame)
            }
        }
        #expect(frames == [[5], [4], [3], [2], [1]])
    }

    @Test func garbageIsDroppedBeforeAnyCryptography() {
        var pair = Pair()
        var garbage = SeededRandom(seed: 7)
        var sizes: [Int] = [0, 1, 3, 4, WireSize.initiation, WireSize.response, WireSize.cookieReply, 40, 1500]
        for _ in 0..<200 { sizes.append(Int.random(in: 0...1600, using: &garbage)) }
        for size in sizes {
            var bytes = garbage.bytes(size)
            if size >= 1, size == WireSize.initiation { bytes[0] = 1; bytes[1] = 0; bytes[2] = 0; bytes[3] = 0 }
            let effects = pair.b.receive(bytes, from: pair.aPath, now: pair.now, rng: &pair.rng)
            #expect(effects.isEmpty)
        }
        let counters = pair.b.counters
        #expect(counters.droppedTotal == UInt64(sizes.count))
        #expect(counters.dropped[.handshakeFailed, default: 0] == 0, "random bytes must never reach the DH")
        #expect(counters.dropped[.badMac1, default: 0] >= 1, "\(counters.dropped)")
        #expect(counters.handshakesCompleted == 0)
    }

    @Test func initiationForAnotherNetworkIsRefused() {
        var other = SessionConfig()
        other.networkID = "umbra-test-other"
        var pair = Pair()
        var keys = SeededRandom(seed: 99)
        var stranger = SessionManager(identity: Identity.generate(using: &keys), config: other)
        let effects = stranger.connect(pair.bKey, endpoint: pair.bEndpoint, now: pair.now, rng: &pair.rng)
        let initiation = firstSend(effects)!
        #expect(pair.b.receive(initiation, from: pair.aPath, now: pair.now, rng: &pair.rng).isEmpty)
        #expect(pair.b.counters.dropped[.handshakeFailed] == 1)
    }

    @Test func initiationWhoseIdentityDoesNotMatchItsStaticKeyIsRefused() throws {
        var pair = Pair()
        var keys = SeededRandom(seed: 5)
        let liar = Identity.generate(using: &keys)
        let claimed = Identity.generate(using: &keys)
        // A handshake with the liar's static key that claims `claimed`'s Ed25519 identity.
        var noise = try NoiseIKHandshake(
            role: .initiator, prologue: SessionConfig().prologue, staticSecretKey: liar.x25519SecretKey,
            remoteStaticKey: pair.b.identity.x25519PublicKey, ephemeralSecretKey: keys.bytes(32))
        var payload = ByteWriter()
        payload.write(raw: claimed.publicKey.bytes)
        payload.write(UInt64(1))
        let message = try noise.writeMessage(payload: payload.bytes)
        var bytes = HandshakeInitiation(
            senderIndex: 1, noiseMessage: message, mac1: [UInt8](repeating: 0, count: 16),
            mac2: [UInt8](repeating: 0, count: 16)
        ).encoded()
        let mac1 = SessionManager.mac(
            key: SessionManager.mac1Key(for: pair.b.identity.x25519PublicKey),
            bytes[..<HandshakeInitiation.mac1Offset])
        bytes.replaceSubrange(HandshakeInitiation.mac1Offset..<HandshakeInitiation.mac2Offset, with: mac1)
        #expect(pair.b.receive(bytes, from: pair.aPath, now: pair.now, rng: &pair.rng).isEmpty)
        #expect(pair.b.counters.dropped[.identityMismatch] == 1)
        #expect(pair.b.peerCount == 0)
    }

    @Test func authenticatedPacketFromANewAddressMovesTheEndpointOnceThePathIsValidated() throws {
        var pair = Pair()
        pair.handshake()
        let roamed = Endpoint(address: .v4(0x7F00_0002), port: 3333)
        let data = firstSend(pair.a.send([42], to: pair.bKey, now: pair.now, rng: &pair.rng))!
        let effects = pair.b.receive(data, from: .direct(roamed), now: pair.now, rng: &pair.rng)
        // Not yet: the new address gets a path challenge, the peer stays where it was validated.
        #expect(!effects.contains(.pathChanged(peer: pair.aKey, path: .direct(roamed))))
        #expect(pair.b.snapshot(of: pair.aKey)?.path == pair.aPath)
        #expect(pair.b.candidate(of: pair.aKey) == .direct(roamed))
        let challenge = try #require(sends(effects).first)
        #expect(challenge.to == .direct(roamed))
        // A answers from the new address (to where the challenge came from): B moves there.
        let answer = try #require(
            sends(pair.a.receive(challenge.bytes, from: pair.bPath, now: pair.now, rng: &pair.rng)).first)
        #expect(answer.to == .direct(pair.bEndpoint))
        let validated = pair.b.receive(answer.bytes, from: .direct(roamed), now: pair.now, rng: &pair.rng)
        #expect(validated.contains(.pathChanged(peer: pair.aKey, path: .direct(roamed))))
        #expect(!validated.contains { if case .deliver = $0 { true } else { false } }, "control stays in the layer")
        #expect(pair.b.snapshot(of: pair.aKey)?.path == .direct(roamed))
        #expect(pair.b.counters.pathsValidated == 1)
        // A forged packet from yet another address moves nothing.
        var forged = firstSend(pair.a.send([43], to: pair.bKey, now: pair.now, rng: &pair.rng))!
        forged[forged.count - 1] ^= 1
        let elsewhere = Endpoint(address: .v4(0x7F00_0003), port: 4444)
        _ = pair.b.receive(forged, from: .direct(elsewhere), now: pair.now, rng: &pair.rng)
        #expect(pair.b.snapshot(of: pair.aKey)?.path == .direct(roamed))
    }

    @Test func aRelayedDatagramDoesNotRoamADirectPeer() {
        var pair = Pair()
        pair.handshake()
        let relayed = PeerPath.relayed(RelayPathID(7))
        #expect(relayed.directEndpoint == nil && relayed.relayPathID == RelayPathID(7))
        #expect(pair.aPath.directEndpoint == pair.aEndpoint && !pair.aPath.isRelayed)
        // Direct now: a packet that came through a relay is delivered but does not move the peer
        // back, nor makes the relayed path a candidate that gets challenged.
        let late = firstSend(pair.a.send([1], to: pair.bKey, now: pair.now, rng: &pair.rng))!
        let effects = pair.b.receive(late, from: relayed, now: pair.now, rng: &pair.rng)
        #expect(effects.contains(.deliver(peer: pair.aKey, frame: [1])))
        #expect(!effects.contains { if case .pathChanged = $0 { true } else { false } })
        #expect(sends(effects).allSatisfy { $0.to != relayed }, "no challenge along the relayed path")
        #expect(pair.b.snapshot(of: pair.aKey)?.path == pair.aPath)
        #expect(pair.b.candidate(of: pair.aKey) == nil)
        // Replies keep going to the direct endpoint.
        #expect(sends(pair.b.send([2], to: pair.aKey, now: pair.now, rng: &pair.rng)).map(\.to) == [pair.aPath])
    }

    @Test func aDirectDatagramMovesARelayedPeerToDirectOnceValidated() {
        // Relayed to begin with (the handshake came through a relay): a direct packet moves it.
        let relayed = PeerPath.relayed(RelayPathID(7))
        var other = Pair(seed: 9)
        let initiation = firstSend(
            other.a.connect(other.bKey, endpoint: other.bEndpoint, now: other.now, rng: &other.rng))!
        let atB = other.b.receive(initiation, from: relayed, now: other.now, rng: &other.rng)
        #expect(sends(atB).map(\.to) == [relayed], "the response goes back along the relayed path")
        let response = firstSend(atB)!
        #expect(other.b.snapshot(of: other.aKey)?.path == relayed)
        _ = other.a.receive(response, from: other.bPath, now: other.now, rng: &other.rng)
        let direct = firstSend(other.a.send([2], to: other.bKey, now: other.now, rng: &other.rng))!
        let challenged = other.b.receive(direct, from: other.aPath, now: other.now, rng: &other.rng)
        #expect(other.b.snapshot(of: other.aKey)?.path == relayed, "moves only once validated")
        #expect(other.b.candidate(of: other.aKey) == other.aPath)
        let challenge = sends(challenged).first { $0.to == other.aPath }!
        let answer = sends(other.a.receive(challenge.bytes, from: other.bPath, now: other.now, rng: &other.rng))
        let moved = other.b.receive(answer.first!.bytes, from: other.aPath, now: other.now, rng: &other.rng)
        #expect(moved.contains(.pathChanged(peer: other.aKey, path: other.aPath)))
        #expect(other.b.snapshot(of: other.aKey)?.path == other.aPath)
        #expect(other.b.snapshot(of: other.aKey)?.path?.directEndpoint == other.aEndpoint)
    }

    @Test func aPeerDialledOnARelayedPathSendsAlongIt() {
        var pair = Pair()
        let relayed = PeerPath.relayed(RelayPathID(3))
        let added = pair.a.addPeer(pair.bKey, path: relayed)
        #expect(added)
        let effects = pair.a.send([5], to: pair.bKey, now: pair.now, rng: &pair.rng)
        #expect(!sends(effects).isEmpty)
        #expect(sends(effects).allSatisfy { $0.to == relayed }, "the initiation goes along the relayed path")
        // A dial of the node's own choosing moves it back to a direct path at once.
        let updated = pair.a.addPeer(pair.bKey, path: pair.bPath)
        #expect(updated)
        #expect(pair.a.path(of: pair.bKey) == pair.bPath)
        let retry = pair.a.rehandshake(pair.bKey, now: pair.now + .seconds(1), rng: &pair.rng)
        #expect(sends(retry).map(\.to) == [pair.bPath])
    }

    @Test func aProbeIsAKeepaliveToAnotherEndpointThatMovesThePeerWhenItArrives() {
        var pair = Pair()
        pair.handshake()
        let punched = Endpoint(address: .v4(0xCB00_7105), port: 40000)
        let effects = pair.a.probe(pair.bKey, at: punched, now: pair.now)
        guard case .send(let bytes, let destination)? = effects.first else {
            Issue.record("no probe sent")
            return
        }
        #expect(destination == .direct(punched))
        #expect(pair.a.snapshot(of: pair.bKey)?.path == pair.bPath)  // the sender's path is unchanged
        let received = pair.b.receive(bytes, from: .direct(punched), now: pair.now, rng: &pair.rng)
        #expect(!received.contains { if case .deliver = $0 { true } else { false } })  // a keepalive: no frame
        // B challenges the punched path; A's answer from there moves B onto it.
        let challenge = sends(received).first { $0.to == .direct(punched) }!
        let answer = sends(pair.a.receive(challenge.bytes, from: pair.bPath, now: pair.now, rng: &pair.rng))
        let moved = pair.b.receive(answer.first!.bytes, from: .direct(punched), now: pair.now, rng: &pair.rng)
        #expect(moved.contains(.pathChanged(peer: pair.aKey, path: .direct(punched))))
        // No session, no probe.
        var fresh = Pair(seed: 3)
        #expect(fresh.a.probe(fresh.bKey, at: punched, now: fresh.now).isEmpty)
    }

    @Test func crossingInitiationsWorkAtOnceInBothDirections() {
        var pair = Pair()
        // Both initiations are on the wire before either side sees the other's.
        let initiationA = firstSend(pair.a.connect(pair.bKey, endpoint: pair.bEndpoint, now: pair.now, rng: &pair.rng))!
        let initiationB = firstSend(pair.b.connect(pair.aKey, endpoint: pair.aEndpoint, now: pair.now, rng: &pair.rng))!
        let responseB = pair.b.receive(initiationA, from: pair.aPath, now: pair.now, rng: &pair.rng)
        let responseA = pair.a.receive(initiationB, from: pair.bPath, now: pair.now, rng: &pair.rng)
        // Both responses are in flight; each side's confirming keepalive crosses the other's too.
        let confirmA = pair.a.receive(firstSend(responseB)!, from: pair.bPath, now: pair.now, rng: &pair.rng)
        let confirmB = pair.b.receive(firstSend(responseA)!, from: pair.aPath, now: pair.now, rng: &pair.rng)
        pair.pump(confirmA, from: "a")
        pair.pump(confirmB, from: "b")
        pair.sendAB([1])
        pair.sendBA([2])
        pair.sendAB([3])
        #expect(pair.delivered.map(\.frame) == [[1], [2], [3]])
        #expect(pair.a.counters.droppedTotal == 0)
        #expect(pair.b.counters.droppedTotal == 0)
        // And it stays healthy through rekeys.
        pair.run(for: .seconds(400))
        pair.sendAB([4])
        pair.sendBA([5])
        #expect(pair.delivered.map(\.frame) == [[1], [2], [3], [4], [5]])
        #expect(pair.a.counters.droppedTotal == 0 && pair.b.counters.droppedTotal == 0)
    }
}

@Suite("Peer table limits")
struct PeerTableTests {
    @Test func fullTableEvictsTheLeastRecentlyHeardIdlePeerButNeverAnEstablishedOne() {
        var config = SessionConfig()
        config.maximumPeers = 2
        var pair = Pair(config: config)
        pair.handshake()  // B now holds A, established
        var keys = SeededRandom(seed: 1234)
        let idle = Identity.generate(using: &keys).publicKey
        let added = pair.b.addPeer(idle, path: nil)
        #expect(added)
        #expect(pair.b.peerCount == 2)
        // A third node handshakes with B: the idle peer makes room, A stays.
        var stranger = SessionManager(identity: Identity.generate(using: &keys), config: config)
        let initiation = firstSend(
            stranger.connect(pair.bKey, endpoint: pair.bEndpoint, now: pair.now, rng: &pair.rng))!
        let strangerEndpoint = Endpoint(address: .v4(0x7F00_0009), port: 9)
        let response = pair.b.receive(initiation, from: .direct(strangerEndpoint), now: pair.now, rng: &pair.rng)
        #expect(firstSend(response) != nil)
        #expect(pair.b.snapshot(of: idle) == nil)
        #expect(pair.b.isEstablished(pair.aKey))
        // Now every slot is in use (A established, the stranger mid-handshake): a fourth is refused.
        _ = stranger.receive(firstSend(response)!, from: pair.bPath, now: pair.now, rng: &pair.rng)
        let confirm = stranger.send([1], to: pair.bKey, now: pair.now, rng: &pair.rng)
        _ = pair.b.receive(firstSend(confirm)!, from: .direct(strangerEndpoint), now: pair.now, rng: &pair.rng)
        var fourth = SessionManager(identity: Identity.generate(using: &keys), config: config)
        let another = firstSend(fourth.connect(pair.bKey, endpoint: pair.bEndpoint, now: pair.now, rng: &pair.rng))!
        #expect(pair.b.receive(another, from: .direct(strangerEndpoint), now: pair.now, rng: &pair.rng).isEmpty)
        #expect(pair.b.counters.dropped[.peerTableFull] == 1)
    }

    @Test func lostPeerDropsItsQueueAndReportsLostWhenKeysExpireWithoutRekey() {
        var config = SessionConfig()
        config.peerTimeout = .seconds(1000)  // isolate key expiry from the liveness timer
        var pair = Pair(config: config)
        pair.handshake()
        pair.b.setPersistent(pair.aKey, true)  // only kept peers are reported lost
        // Only B's timers run and nothing gets through to A: B's responder keys age out.
        var lost = false
        for _ in 0..<200 {
            pair.now = pair.now + .seconds(1)
            if pair.b.tick(now: pair.now, rng: &pair.rng).contains(.lost(peer: pair.aKey)) { lost = true }
        }
        #expect(lost)
        #expect(!pair.b.isEstablished(pair.aKey))
    }
}
