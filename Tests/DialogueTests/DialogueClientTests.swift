// The consumer core: the request retransmitted after 1 s and 2 s more, then a timeout at 5 s; a
// reject propagated with its code and reason; keepalives both ways keeping a session up for minutes;
// a silent provider declared dead within 15 s; close sending end (and a server then freeing the
// address); a provider's end; late and duplicate accepts; stage timings.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Dialogue

private let provider = key(9)
private let stranger = key(8)

private struct Harness {
    var client = DialogueClient()
    var rng = SeededRandom(seed: 7)

    /// Opens and returns the request id.
    mutating func open(at now: Instant = t0, startedAt: Instant? = nil) -> UInt64 {
        let effects = client.open(
            provider: provider, serviceType: "ip-tunnel", proposalSeq: 4, mode: .fullTunnel, startedAt: startedAt,
            now: now, rng: &rng)
        guard effects.count == 1,
            case .send(.request(let id, "ip-tunnel", 4, .fullTunnel, false), provider) = effects[0]
        else {
            Issue.record("unexpected effects \(effects)")
            return 0
        }
        return id
    }

    /// Opens and accepts with session id 77; returns the session.
    mutating func openSession(at now: Instant = t0) -> ClientSession? {
        let id = open(at: now)
        let effects = client.handle(.accept(requestID: id, sessionID: 77, grant: sampleGrant), from: provider, now: now)
        guard effects.count == 1, case .opened(let session) = effects[0] else {
            Issue.record("unexpected effects \(effects)")
            return nil
        }
        return session
    }
}

@Suite struct DialogueClientTests {
    @Test func theRequestIsRetransmittedTwiceThenTimesOut() {
        var h = Harness()
        let id = h.open()
        #expect(h.client.nextDeadline == t0 + 1)
        var sends: [Instant] = []
        var failure: DialogueFailure?
        var now = t0
        while let deadline = h.client.nextDeadline, deadline <= t0 + 10 {
            now = deadline
            for effect in h.client.tick(now: now) {
                switch effect {
                case .send(.request(id, _, _, _, _), provider): sends.append(now)
                case .failed(let reason): failure = reason
                default: Issue.record("unexpected \(effect)")
                }
            }
        }
        #expect(sends == [t0 + 1, t0 + 3])
        #expect(failure == .timeout && now == t0 + 5)
        #expect(h.client.phase == .closed)
        #expect(h.client.counters.requestsSent == 3)
        #expect(h.client.tick(now: t0 + 60).isEmpty)
    }

    @Test func aRejectIsPropagatedWithItsCodeAndReason() {
        var h = Harness()
        let id = h.open()
        // A reject for another request, or from another peer, is ignored.
        #expect(
            h.client.handle(.reject(requestID: id &+ 1, code: .noCapacity, reason: "x"), from: provider, now: t0)
                .isEmpty)
        #expect(
            h.client.handle(.reject(requestID: id, code: .noCapacity, reason: "x"), from: stranger, now: t0).isEmpty)
        let effects = h.client.handle(
            .reject(requestID: id, code: .notAllowed, reason: "not on the list"), from: provider, now: t0 + 1)
        #expect(effects == [.failed(.rejected(.notAllowed, reason: "not on the list"))])
        #expect(h.client.phase == .closed)
        #expect(h.client.nextDeadline == nil)
        #expect(h.client.counters.unexpectedMessages == 2)
    }

    @Test func anAcceptOpensTheSession() throws {
        var h = Harness()
        let opened = h.openSession(at: t0 + 2)
        let session = try #require(opened)
        #expect(session.provider == provider && session.sessionID == 77 && session.grant == sampleGrant)
        #expect(session.keepaliveInterval == .seconds(5) && session.openedAt == t0 + 2)
        #expect(h.client.phase == .open(session))
        // A duplicate accept (the retransmission answered twice) changes nothing.
        let id = session.requestID
        #expect(
            h.client.handle(.accept(requestID: id, sessionID: 77, grant: sampleGrant), from: provider, now: t0).isEmpty)
        #expect(h.client.counters.duplicateAccepts == 1)
    }

    @Test func keepalivesBothWaysKeepTheSessionAliveForMinutes() {
        var h = Harness()
        _ = h.openSession()
        var sent = 0
        for second in 1...600 {
            let now = t0 + second
            if second % 5 == 0 {
                #expect(h.client.handle(.keepalive(sessionID: 77, seq: 0), from: provider, now: now).isEmpty)
            }
            for effect in h.client.tick(now: now) {
                guard case .send(.keepalive(77, let seq), provider) = effect else {
                    Issue.record("unexpected \(effect)")
                    continue
                }
                #expect(seq == UInt32(sent))
                sent += 1
            }
        }
        #expect(sent == 120)
        #expect(h.client.session != nil)
    }

    @Test func aSilentProviderIsDeadWithin15Seconds() {
        var h = Harness()
        _ = h.openSession()
        var endedAt: Instant?
        var now = t0
        while endedAt == nil, let deadline = h.client.nextDeadline, deadline <= t0 + 60 {
            now = deadline
            for effect in h.client.tick(now: now) {
                if case .ended(let code) = effect {
                    #expect(code == .dead)
                    endedAt = now
                }
            }
        }
        #expect(endedAt == t0 + 15)
        #expect(h.client.counters.keepalivesSent == 2)
        #expect(h.client.phase == .closed)
    }

    @Test func closeSendsEndAndTheServerFreesTheAddress() throws {
        var rng = SeededRandom(seed: 1)
        var server = DialogueServer()
        var client = DialogueClient()
        let consumer = key(5)
        var effects = client.open(
            provider: provider, serviceType: "ip-tunnel", proposalSeq: 1, mode: .split, now: t0, rng: &rng)
        guard case .send(let request, provider) = effects.first else { throw Unexpected(effects) }
        let answer = server.handle(request, from: consumer, now: t0, rng: &rng)
        guard case .send(let accept, consumer) = answer.first else { throw Unexpected(answer) }
        effects = client.handle(accept, from: provider, now: t0)
        #expect(server.addressesInUse == 1)

        effects = client.close(now: t0 + 1)
        guard effects.count == 2, case .send(let end, provider) = effects[0] else { throw Unexpected(effects) }
        #expect(effects[1] == .ended(.consumerClosed))
        guard case .end(_, .consumerClosed) = end else { throw Unexpected(effects) }
        let ended = server.handle(end, from: consumer, now: t0 + 1, rng: &rng)
        guard ended.count == 1, case .sessionEnded(_, .consumerClosed) = ended[0] else { throw Unexpected(ended) }
        #expect(server.addressesInUse == 0 && server.activeSessions == 0)
        #expect(client.close(now: t0 + 2).isEmpty)
    }

    @Test func theProvidersEndEndsTheSession() {
        var h = Harness()
        _ = h.openSession()
        #expect(h.client.handle(.end(sessionID: 78, code: .providerClosed), from: provider, now: t0).isEmpty)
        #expect(
            h.client.handle(.end(sessionID: 77, code: .shuttingDown), from: provider, now: t0) == [
                .ended(.shuttingDown)
            ])
        #expect(h.client.phase == .closed)
    }

    @Test func anAcceptAfterGivingUpIsAnsweredWithEnd() {
        var h = Harness()
        let id = h.open()
        #expect(h.client.close(now: t0) == [.failed(.cancelled)])
        let effects = h.client.handle(
            .accept(requestID: id, sessionID: 5, grant: sampleGrant), from: provider, now: t0 + 1)
        #expect(effects == [.send(.end(sessionID: 5, code: .consumerClosed), to: provider)])
        #expect(h.client.counters.lateAccepts == 1)
    }

    @Test func statusReportsAreSentOnlyWhileOpen() {
        var h = Harness()
        let report = StatusReport(bytesSent: 1, bytesReceived: 2, packetsSent: 3, packetsReceived: 4)
        let id = h.open()
        #expect(h.client.reportStatus(report, now: t0).isEmpty)
        _ = h.client.handle(.accept(requestID: id, sessionID: 77, grant: sampleGrant), from: provider, now: t0)
        #expect(h.client.reportStatus(report, now: t0) == [.send(.status(sessionID: 77, report: report), to: provider)])
    }

    @Test func aHugeGrantedKeepaliveIntervalIsClamped() throws {
        var h = Harness()
        let id = h.open()
        var grant = sampleGrant
        grant.keepaliveSeconds = .max
        let effects = h.client.handle(.accept(requestID: id, sessionID: 1, grant: grant), from: provider, now: t0)
        guard case .opened(let session) = effects.first else { throw Unexpected(effects) }
        #expect(session.keepaliveInterval == .seconds(60))
        #expect(h.client.nextDeadline == t0 + 60)
    }

    @Test func stageTimingsAreRelativeToTheStart() {
        var h = Harness()
        let start = t0
        h.client.markStage(.lookup, at: start + .milliseconds(300))
        h.client.markStage(.dial, at: start + .milliseconds(500))
        h.client.markStage(.handshake, at: start + .milliseconds(600))
        let id = h.open(at: start + .milliseconds(600), startedAt: start)
        _ = h.client.handle(
            .accept(requestID: id, sessionID: 1, grant: sampleGrant), from: provider, now: start + .milliseconds(650))
        #expect(h.client.requestSentAt == start + .milliseconds(600))
        #expect(h.client.acceptedAt == start + .milliseconds(650))
        let timings = h.client.timings
        #expect(timings.map(\.stage) == DialogueStage.allCases)
        #expect(timings.map(\.elapsed) == [300, 500, 600, 600, 650].map { .milliseconds($0) })
        #expect(timings.map(\.duration) == [300, 200, 100, 0, 50].map { .milliseconds($0) })
    }
}

struct Unexpected: Error, CustomStringConvertible {
    var description: String
    init(_ value: some Any) { description = "unexpected: \(value)" }
}
