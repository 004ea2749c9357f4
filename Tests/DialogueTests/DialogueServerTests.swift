// The provider core: admission with every reject code (capacity, allow-list, service type, mode,
// outdated proposal, rate limit, pool exhaustion, shutdown), idempotent retransmitted requests,
// replacement, keepalives and the dead timeout, addresses released on end and on death, accounting
// with the byte limit, unknown sessions, and the deadline.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Dialogue

private let alice = key(1)
private let bob = key(2)
private let carol = key(3)

/// A server with a seeded RNG.
private struct Harness {
    var server: DialogueServer
    var rng = SeededRandom(seed: 42)

    init(configure: (inout DialogueServerConfig) -> Void = { _ in }) {
        var config = DialogueServerConfig()
        configure(&config)
        server = DialogueServer(config: config)
    }

    mutating func receive(
        _ message: DialogueMessage, from peer: PublicKey, at now: Instant = t0
    )
        -> [DialogueServerEffect]
    {
        server.handle(message, from: peer, now: now, rng: &rng)
    }

    /// Sends a request and returns the answer sent back to `peer`.
    mutating func request(
        _ peer: PublicKey, id: UInt64 = 1, service: String = "ip-tunnel", seq: UInt64 = 1,
        mode: TunnelMode = .fullTunnel, at now: Instant = t0
    ) -> DialogueMessage? {
        let effects = receive(
            .request(requestID: id, serviceType: service, proposalSeq: seq, mode: mode, wantsIPv6: false), from: peer,
            at: now)
        let answers = effects.compactMap { effect -> DialogueMessage? in
            guard case .send(let message, let to) = effect, to == peer else { return nil }
            return message
        }
        guard answers.count == 1 else {
            Issue.record("expected one answer, got \(effects)")
            return nil
        }
        return answers[0]
    }

    /// Requests and expects an accept; returns the session id.
    mutating func open(_ peer: PublicKey, id: UInt64 = 1, at now: Instant = t0) -> UInt64 {
        guard case .accept(id, let sessionID, _)? = request(peer, id: id, at: now) else {
            Issue.record("not accepted")
            return 0
        }
        return sessionID
    }
}

private func code(of answer: DialogueMessage?) -> RejectCode? {
    if case .reject(_, let code, let reason)? = answer {
        #expect(reason == code.description)
        return code
    }
    return nil
}

@Suite struct DialogueServerTests {
    // MARK: - Admission

    @Test func anAcceptCarriesTheGrantAndOpensASession() throws {
        var h = Harness()
        let effects = h.receive(
            .request(requestID: 7, serviceType: "ip-tunnel", proposalSeq: 3, mode: .split, wantsIPv6: true), from: alice
        )
        try #require(effects.count == 2)
        guard case .send(.accept(7, let sessionID, let grant), alice) = effects[0],
            case .sessionOpened(let session) = effects[1]
        else {
            Issue.record("unexpected effects \(effects)")
            return
        }
        #expect(sessionID != 0)
        #expect(grant.innerIPv4 == InterfaceAddress(address: inner(0, 2), prefixLength: 16))
        #expect(grant.innerIPv6 == nil)
        #expect(grant.gateway == inner(0, 1))
        #expect(grant.dnsServers == [.v4(0x0101_0101), .v4(0x0909_0909)])
        #expect(grant.mtu == 1420 && grant.keepaliveSeconds == 5)
        #expect(session.consumer == alice && session.sessionID == sessionID && session.mode == .split)
        #expect(session.address == inner(0, 2) && session.openedAt == t0)
        #expect(h.server.sessions == [session])
        #expect(h.server.session(at: inner(0, 2))?.consumer == alice)
        #expect(h.server.counters.accepted == 1)
    }

    @Test func capacityIsEnforcedWithNoCapacity() {
        var h = Harness { $0.capacity = 2 }
        _ = h.open(alice)
        _ = h.open(bob)
        #expect(code(of: h.request(carol)) == .noCapacity)
        #expect(h.server.activeSessions == 2)
        #expect(h.server.counters.rejected == [.noCapacity: 1])
        // The consumer replacing its own session is not refused at capacity.
        guard case .accept? = h.request(alice, id: 2) else {
            Issue.record("a replacement at capacity was refused")
            return
        }
    }

    @Test func theAllowListRefusesOthers() {
        var h = Harness { $0.accessPolicy = .allowList([alice]) }
        #expect(code(of: h.request(bob)) == .notAllowed)
        guard case .accept? = h.request(alice) else {
            Issue.record("an allowed consumer was refused")
            return
        }
    }

    @Test func anUnknownServiceIsRefused() {
        var h = Harness()
        #expect(code(of: h.request(alice, service: "socks5")) == .unknownService)
        #expect(h.server.activeSessions == 0)
    }

    @Test func anUnsupportedModeIsRefused() {
        var h = Harness { $0.supportedModes = [.fullTunnel] }
        #expect(code(of: h.request(alice, mode: .split)) == .unsupportedMode)
        #expect(code(of: h.request(alice, mode: TunnelMode(rawValue: 9))) == .unsupportedMode)
        #expect(code(of: h.request(alice, mode: TunnelMode(rawValue: 0))) == .unsupportedMode)
    }

    @Test func anOutdatedProposalIsRefused() {
        var h = Harness { $0.minimumProposalSeq = 10 }
        #expect(code(of: h.request(alice, seq: 9)) == .outdatedProposal)
        guard case .accept? = h.request(alice, seq: 10) else {
            Issue.record("the current proposal was refused")
            return
        }
    }

    @Test func requestsAreRateLimitedPerConsumer() {
        var h = Harness { $0.requestsPerMinute = 3 }
        for id in UInt64(1)...3 { _ = h.request(alice, id: id, service: "nope") }
        #expect(code(of: h.request(alice, id: 4)) == .rateLimited)
        guard case .accept? = h.request(bob) else {
            Issue.record("another consumer was limited")
            return
        }
        guard case .accept? = h.request(alice, id: 5, at: t0 + 60) else {
            Issue.record("the window did not pass")
            return
        }
    }

    @Test func poolExhaustionHasItsOwnCode() throws {
        var h = Harness { $0.pool = try! IPv4Network(parsing: "10.182.0.0/30") }
        _ = h.open(alice)
        #expect(code(of: h.request(bob)) == .poolExhausted)
        #expect(h.server.counters.rejected == [.poolExhausted: 1])
    }

    // MARK: - Retransmission and replacement

    @Test func aRetransmittedRequestGetsTheSameAccept() {
        var h = Harness()
        let first = h.request(alice, id: 5)
        let again = h.request(alice, id: 5, at: t0 + 1)
        #expect(first != nil && first == again)
        #expect(h.server.activeSessions == 1)
        #expect(h.server.counters.accepted == 1 && h.server.counters.acceptsRepeated == 1)
        #expect(h.server.addressesInUse == 1)
    }

    @Test func aNewRequestIDReplacesTheSession() throws {
        var h = Harness()
        let old = h.open(alice, id: 1)
        let effects = h.receive(
            .request(requestID: 2, serviceType: "ip-tunnel", proposalSeq: 1, mode: .fullTunnel, wantsIPv6: false),
            from: alice, at: t0 + 3)
        try #require(effects.count == 3)
        guard case .sessionEnded(let ended, .consumerClosed) = effects[0], ended.sessionID == old,
            case .send(.accept(2, let new, let grant), alice) = effects[1], new != old,
            case .sessionOpened = effects[2]
        else {
            Issue.record("unexpected effects \(effects)")
            return
        }
        // The replacement keeps the consumer's address.
        #expect(grant.innerIPv4.address == inner(0, 2))
        #expect(h.server.sessions.map(\.sessionID) == [new])
        #expect(h.server.counters.ended == [.consumerClosed: 1])
    }

    // MARK: - Liveness and ending

    @Test func keepalivesAreSentEveryIntervalAndHearingKeepsASessionAlive() {
        var h = Harness()
        let id = h.open(alice)
        #expect(h.server.nextDeadline == t0 + 5)
        var sent = 0
        for second in stride(from: 5, through: 120, by: 5) {
            _ = h.receive(.keepalive(sessionID: id, seq: 0), from: alice, at: t0 + second)
            for effect in h.server.tick(now: t0 + second) {
                guard case .send(.keepalive(id, let seq), alice) = effect else {
                    Issue.record("unexpected \(effect)")
                    continue
                }
                #expect(seq == UInt32(sent))
                sent += 1
            }
        }
        #expect(sent == 24)
        #expect(h.server.activeSessions == 1)
        #expect(h.server.counters.keepalivesReceived == 24)
    }

    @Test func aSilentSessionIsDeadAfterThreeIntervalsAndItsAddressIsFreed() {
        var h = Harness { $0.pool = try! IPv4Network(parsing: "10.182.0.0/30") }
        let id = h.open(alice)
        _ = h.server.tick(now: t0 + 5)
        _ = h.server.tick(now: t0 + 10)
        #expect(h.server.nextDeadline == t0 + 15)
        let effects = h.server.tick(now: t0 + 15)
        guard effects.count == 2, case .send(.end(id, .dead), alice) = effects[0],
            case .sessionEnded(let session, .dead) = effects[1], session.sessionID == id
        else {
            Issue.record("unexpected effects \(effects)")
            return
        }
        #expect(h.server.activeSessions == 0 && h.server.addressesInUse == 0)
        #expect(h.server.nextDeadline == nil)
        // The freed address goes to the next consumer.
        guard case .accept(_, _, let grant)? = h.request(bob, at: t0 + 16) else {
            Issue.record("not accepted")
            return
        }
        #expect(grant.innerIPv4.address == inner(0, 2))
    }

    @Test func aConsumerEndFreesTheAddress() {
        var h = Harness { $0.pool = try! IPv4Network(parsing: "10.182.0.0/30") }
        let id = h.open(alice)
        // Someone else's session id does nothing.
        #expect(h.receive(.end(sessionID: id, code: .consumerClosed), from: bob).isEmpty)
        let effects = h.receive(.end(sessionID: id, code: .consumerClosed), from: alice)
        guard effects.count == 1, case .sessionEnded(_, .consumerClosed) = effects[0] else {
            Issue.record("unexpected effects \(effects)")
            return
        }
        #expect(h.server.addressesInUse == 0)
        guard case .accept? = h.request(bob) else {
            Issue.record("the address was not freed")
            return
        }
    }

    @Test func aKeepaliveForAnUnknownSessionIsAnsweredWithEnd() {
        var h = Harness()
        let id = h.open(alice)
        #expect(
            h.receive(.keepalive(sessionID: id, seq: 0), from: bob) == [
                .send(.end(sessionID: id, code: .providerClosed), to: bob)
            ])
        #expect(
            h.receive(.keepalive(sessionID: 99, seq: 0), from: alice) == [
                .send(.end(sessionID: 99, code: .providerClosed), to: alice)
            ])
        #expect(h.server.counters.unknownSessions == 2)
        #expect(h.server.activeSessions == 1)
    }

    @Test func statusReportsAndAccountingAreKept() {
        var h = Harness()
        let id = h.open(alice)
        let report = StatusReport(bytesSent: 10, bytesReceived: 20, packetsSent: 1, packetsReceived: 2)
        #expect(h.receive(.status(sessionID: id, report: report), from: alice, at: t0 + 4).isEmpty)
        #expect(h.server.account(id, bytesIn: 100, bytesOut: 200, now: t0 + 4).isEmpty)
        #expect(h.server.account(id, bytesIn: 1, bytesOut: 2, now: t0 + 4).isEmpty)
        let session = h.server.session(id: id)
        #expect(session?.lastReport == report && session?.lastHeard == t0 + 4)
        #expect(session?.bytesIn == 101 && session?.bytesOut == 202)
    }

    @Test func theByteLimitEndsASessionOverLimit() {
        var h = Harness { $0.sessionByteLimit = 1000 }
        let id = h.open(alice)
        #expect(h.server.account(id, bytesIn: 500, bytesOut: 500, now: t0).isEmpty)
        let effects = h.server.account(id, bytesIn: 1, bytesOut: 0, now: t0)
        guard effects.count == 2, case .send(.end(id, .overLimit), alice) = effects[0],
            case .sessionEnded(_, .overLimit) = effects[1]
        else {
            Issue.record("unexpected effects \(effects)")
            return
        }
    }

    @Test func endAllForShutdownEndsEverySessionAndRefusesNewOnes() {
        var h = Harness()
        let a = h.open(alice)
        let b = h.open(bob, at: t0 + 1)
        let effects = h.server.endAll(code: .shuttingDown, now: t0 + 2)
        #expect(
            effects.compactMap { effect -> UInt64? in
                if case .send(.end(let id, .shuttingDown), _) = effect { return id }
                return nil
            } == [a, b])
        #expect(h.server.activeSessions == 0 && h.server.addressesInUse == 0)
        #expect(h.server.counters.ended == [.shuttingDown: 2])
        #expect(code(of: h.request(carol, at: t0 + 3)) == .shuttingDown)
    }

    @Test func acceptsAndRejectsFromAConsumerAreCountedAndIgnored() {
        var h = Harness()
        #expect(h.receive(.accept(requestID: 1, sessionID: 1, grant: sampleGrant), from: alice).isEmpty)
        #expect(h.receive(.reject(requestID: 1, code: .noCapacity, reason: ""), from: alice).isEmpty)
        #expect(h.server.counters.unexpectedMessages == 2)
    }
}
