// A client and a server wired through a tiny in-test link (seeded loss, fixed latency, every message
// encoded and decoded on the way): a session opens despite loss (retransmissions, and a fresh
// client when one times out, as the node would do), both ends agree on it, keepalives carry it
// through minutes of 5% loss, a close frees the provider's address (by `end`, or by the dead timeout
// when that `end` is lost), and a one-way cut ends the session on both sides within 15 s.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Dialogue

private let consumerKey = key(1)
private let providerKey = key(2)

private struct Pair {
    struct InFlight {
        var deliverAt: Instant
        var toServer: Bool
        var bytes: [UInt8]
    }

    var client = DialogueClient()
    var server = DialogueServer()
    var rng: SeededRandom
    var now = t0
    var lossToServer: Double
    var lossToClient: Double
    var latency: Duration = .milliseconds(40)
    var inFlight: [InFlight] = []
    var clientEvents: [DialogueClientEffect] = []
    var serverEvents: [DialogueServerEffect] = []
    var clientsStarted = 0

    init(seed: UInt64, loss: Double) {
        rng = SeededRandom(seed: seed)
        lossToServer = loss
        lossToClient = loss
    }

    mutating func startClient() {
        client = DialogueClient()
        clientsStarted += 1
        let effects = client.open(
            provider: providerKey, serviceType: "ip-tunnel", proposalSeq: 1, mode: .fullTunnel, now: now, rng: &rng)
        apply(effects)
    }

    mutating func apply(_ effects: [DialogueClientEffect]) {
        for effect in effects {
            if case .send(let message, let to) = effect {
                #expect(to == providerKey)
                transmit(message, toServer: true)
            } else {
                clientEvents.append(effect)
            }
        }
    }

    mutating func apply(_ effects: [DialogueServerEffect]) {
        for effect in effects {
            if case .send(let message, let to) = effect {
                #expect(to == consumerKey)
                transmit(message, toServer: false)
            } else {
                serverEvents.append(effect)
            }
        }
    }

    mutating func transmit(_ message: DialogueMessage, toServer: Bool) {
        let loss = toServer ? lossToServer : lossToClient
        guard Double(rng.next() >> 11) / Double(UInt64(1) << 53) >= loss else { return }
        inFlight.append(InFlight(deliverAt: now + latency, toServer: toServer, bytes: message.encoded()))
    }

    /// Runs the pair until `end` (then `now == end`), or until `stop` holds (then `now` is the
    /// instant it began to).
    mutating func run(until end: Instant, stop: (Pair) -> Bool = { _ in false }) {
        while true {
            if stop(self) { return }
            let next = [inFlight.map(\.deliverAt).min(), client.nextDeadline, server.nextDeadline].compactMap { $0 }
                .min()
            guard let next, next <= end else { break }
            now = next
            let due = inFlight.filter { $0.deliverAt <= now }
            inFlight.removeAll { $0.deliverAt <= now }
            for packet in due {
                guard let message = try? DialogueMessage(decoding: packet.bytes) else {
                    Issue.record("a message did not decode")
                    continue
                }
                if packet.toServer {
                    apply(server.handle(message, from: consumerKey, now: now, rng: &rng))
                } else {
                    apply(client.handle(message, from: providerKey, now: now))
                }
            }
            apply(client.tick(now: now))
            apply(server.tick(now: now))
        }
        now = max(now, end)
    }

    /// Opens a session, starting a fresh client whenever one fails (at most `attempts` clients).
    mutating func openSession(attempts: Int) -> ClientSession? {
        for _ in 0..<attempts {
            startClient()
            run(until: now + 10) { $0.client.session != nil || $0.client.phase == .closed }
            if let session = client.session { return session }
        }
        return nil
    }
}

@Suite struct DialoguePairTests {
    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func aSessionOpensSurvivesLossAndIsFreedOnClose(seed: UInt64) throws {
        var pair = Pair(seed: seed, loss: 0.3)
        let opened = pair.openSession(attempts: 5)
        let session = try #require(opened)
        // Let any stray retransmission settle, then both ends agree on exactly one session.
        pair.run(until: pair.now + 1)
        #expect(pair.server.sessions.map(\.sessionID) == [session.sessionID])
        #expect(pair.server.sessions.first?.address == session.grant.innerIPv4.address)
        #expect(pair.server.addressesInUse == 1)

        // Minutes of keepalives over a link losing 5% each way (the session dies only when three
        // keepalives in a row are lost, about once in 8000 intervals).
        pair.lossToServer = 0.05
        pair.lossToClient = 0.05
        pair.run(until: pair.now + 180)
        #expect(pair.client.session?.sessionID == session.sessionID)
        #expect(pair.server.session(id: session.sessionID) != nil)
        #expect(pair.client.counters.keepalivesReceived > 25)
        #expect(pair.server.counters.keepalivesReceived > 25)

        // Close over the lossy link: the address is freed by `end`, or by the dead timeout.
        pair.apply(pair.client.close(now: pair.now))
        pair.run(until: pair.now + 20)
        #expect(pair.server.activeSessions == 0 && pair.server.addressesInUse == 0)
        #expect(pair.clientEvents.last == .ended(.consumerClosed))
        let ends = pair.serverEvents.compactMap { event -> EndCode? in
            if case .sessionEnded(_, let code) = event { return code }
            return nil
        }
        #expect(ends.last == .consumerClosed || ends.last == .dead)
    }

    @Test func aOneWayCutEndsTheSessionOnBothSidesWithin15Seconds() throws {
        var pair = Pair(seed: 9, loss: 0)
        let opened = pair.openSession(attempts: 1)
        _ = try #require(opened)
        pair.run(until: pair.now + 30)
        let cutAt = pair.now
        pair.lossToClient = 1  // the provider can no longer reach the consumer
        pair.run(until: cutAt + 20)
        guard case .ended(.dead)? = pair.clientEvents.last else {
            Issue.record("the client did not declare the provider dead: \(pair.clientEvents)")
            return
        }
        #expect(pair.client.phase == .closed)
        // The client's `end(dead)` still reaches the provider, which frees the address at once.
        #expect(pair.server.activeSessions == 0 && pair.server.addressesInUse == 0)
        guard case .sessionEnded(_, .dead)? = pair.serverEvents.last else {
            Issue.record("the server did not end the session: \(pair.serverEvents)")
            return
        }
    }

    @Test func theRequestIsAnsweredOnceAcrossRetransmissions() throws {
        var pair = Pair(seed: 3, loss: 0)
        pair.lossToClient = 1
        pair.startClient()
        pair.run(until: pair.now + 2.5)
        // The first accept and the repeated one were lost; the server holds one session.
        #expect(pair.server.counters.accepted == 1 && pair.server.counters.acceptsRepeated == 1)
        pair.lossToClient = 0
        pair.run(until: pair.now + 5) { $0.client.session != nil }
        let session = try #require(pair.client.session)
        #expect(pair.server.sessions.map(\.sessionID) == [session.sessionID])
        #expect(pair.client.counters.requestsSent == 3)
    }
}

extension Instant {
    fileprivate static func + (lhs: Instant, rhs: Double) -> Instant { lhs + .milliseconds(Int64(rhs * 1000)) }
}
