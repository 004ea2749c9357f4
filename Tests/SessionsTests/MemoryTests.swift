import Testing
import UmbraCore

@testable import Sessions

@Suite("Memory: queues in bytes, half-open peers freed")
struct MemoryTests {
    /// Issue #12: 1,000 initiations (428 KB) held 67 MiB after every key expired.
    @Test func aThousandUnconfirmedInitiationsLeaveNothingBehindAfterTheTimeout() {
        var config = SessionConfig()
        config.maximumQueuedBytes = 1 << 20
        config.handshakesPerSecondBeforeCookies = 10_000  // the flood check is not under test here
        var pair = Pair(config: config)
        var keys = SeededRandom(seed: 1000)
        for index in 0..<1000 {
            var stranger = SessionManager(identity: Identity.generate(using: &keys), config: config)
            _ = stranger.addPeer(pair.bKey, path: pair.bPath)
            let initiation = firstSend(
                stranger.send([0x10, 1, 2, 3], to: pair.bKey, early: true, now: pair.now, rng: &pair.rng))!
            let source = Endpoint(address: .v4(0x0A00_0000 | UInt32(index)), port: 4000)
            _ = pair.b.receive(initiation, from: .direct(source), now: pair.now, rng: &pair.rng)
            // The node answers each with more than the unconfirmed allowance: the rest is queued.
            for _ in 0..<8 {
                _ = pair.b.send(
                    [UInt8](repeating: 0x10, count: 1100), to: stranger.identity.publicKey, now: pair.now,
                    rng: &pair.rng)
            }
            #expect(pair.b.queuedBytes <= config.maximumQueuedBytes)
        }
        #expect(pair.b.peerCount == 1000)
        #expect(pair.b.queuedBytes == pair.b.scannedQueuedBytes)
        #expect(pair.b.queuedBytes > 0)
        // Nobody confirms. After the handshake timeout every half-open peer is gone.
        var ticks = 0
        while let deadline = pair.b.nextDeadline, ticks < 100 {
            pair.now = max(pair.now, deadline)
            _ = pair.b.tick(now: pair.now, rng: &pair.rng)
            ticks += 1
        }
        #expect(pair.b.peerCount == 0)
        #expect(pair.b.queuedBytes == 0)
        #expect(pair.b.indexCount == 0)
        #expect(pair.b.nextDeadline == nil)
        #expect(pair.b.timerEntryCount == 0)
        #expect(pair.b.counters.halfOpenPeersFreed == 1000)
    }

    @Test func aConfirmedPeerIsNotFreed() {
        var pair = Pair()
        pair.handshake()
        pair.run(for: .seconds(30))
        #expect(pair.b.snapshot(of: pair.aKey) != nil)
        #expect(pair.b.isEstablished(pair.aKey))
    }

    @Test func queuesAreCappedInBytesPerPeerAndOverall() {
        var config = SessionConfig()
        config.maximumQueuedBytesPerPeer = 10_000
        config.maximumQueuedBytes = 25_000
        var pair = Pair(config: config)
        var keys = SeededRandom(seed: 5)
        for index in 0..<5 {
            let key = Identity.generate(using: &keys).publicKey
            _ = pair.a.addPeer(key, path: .direct(Endpoint(address: .v4(0x0A00_0001), port: UInt16(5000 + index))))
            for _ in 0..<50 {
                _ = pair.a.send([UInt8](repeating: 1, count: 1000), to: key, now: pair.now, rng: &pair.rng)
                #expect(pair.a.queuedBytes <= config.maximumQueuedBytes)
                #expect(pair.a.queuedBytes == pair.a.scannedQueuedBytes)
            }
        }
        #expect(pair.a.queuedBytes <= 25_000 && pair.a.queuedBytes >= 20_000)
        #expect(pair.a.counters.dropped[.queueFull, default: 0] > 0)
        // A frame larger than a peer's whole queue is refused outright.
        let key = Identity.generate(using: &keys).publicKey
        _ = pair.a.addPeer(key, path: pair.bPath)
        _ = pair.a.send([UInt8](repeating: 1, count: 10_001), to: key, now: pair.now, rng: &pair.rng)
        #expect(pair.a.queuedBytes == pair.a.scannedQueuedBytes)
    }
}
