// Hole punching between two ends whose messages cross a simulated relayed path with a one-way
// delay: the initiator punches rtt/2 after the reply, the responder on the sync, so both fire at
// the same instant; unconfirmed attempts are retried up to three times, then the initiator gives
// up and starts new rounds with a doubling backoff; a confirmed direct path stops everything.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Relay

private let aCandidates = [publicEndpoint(1, port: 50000), lanEndpoint(1, port: 4747)]
private let bCandidates = [publicEndpoint(2, port: 61000), lanEndpoint(2, port: 4747)]

/// An initiator A and a responder B joined by a path with a fixed one-way delay (in order, lossless
/// unless `dropping`). Punches and give-ups are logged with their instants.
private struct PunchPair {
    struct Punch: Equatable {
        var initiator: Bool
        var at: Instant
        var endpoints: [Endpoint]
    }

    var a: HolePunch
    var b: HolePunch
    let delay: Duration
    var now = t0
    var dropping = false
    var punches: [Punch] = []
    var gaveUp: [(at: Instant, retryAt: Instant)] = []
    var connects: [Instant] = []
    private var inFlight: [(at: Instant, toB: Bool, message: RelayMessage)] = []

    init(delay: Duration, configure: (inout HolePunchConfig) -> Void = { _ in }) {
        var config = HolePunchConfig()
        configure(&config)
        a = HolePunch(role: .initiator, config: config)
        b = HolePunch(role: .responder, config: config)
        b.setLocalCandidates(bCandidates)
        self.delay = delay
    }

    mutating func start(at start: Instant = t0) {
        now = start
        apply(a.start(nonce: 100, localCandidates: aCandidates, now: start), fromA: true)
    }

    mutating func apply(_ effects: [HolePunchEffect], fromA: Bool) {
        for effect in effects {
            switch effect {
            case .send(let message):
                if case .punchConnect = message { connects.append(now) }
                if !dropping { inFlight.append((now + delay, fromA, message)) }
            case .punch(let endpoints):
                punches.append(Punch(initiator: fromA, at: now, endpoints: endpoints))
            case .gaveUp(_, let retryAt):
                gaveUp.append((now, retryAt))
            }
        }
    }

    /// Runs deliveries and timers in time order up to `end`.
    mutating func run(until end: Instant) {
        for _ in 0..<10_000 {
            let next = [inFlight.map(\.at).min(), a.nextDeadline, b.nextDeadline].compactMap { $0 }.min()
            guard let next, next <= end else {
                now = end
                return
            }
            now = max(now, next)
            if let index = inFlight.firstIndex(where: { $0.at <= now }) {
                let (_, toB, message) = inFlight.remove(at: index)
                if toB {
                    apply(b.handle(message, now: now), fromA: false)
                } else {
                    apply(a.handle(message, now: now), fromA: true)
                }
                continue
            }
            if let due = a.nextDeadline, due <= now { apply(a.tick(now: now), fromA: true) }
            if let due = b.nextDeadline, due <= now { apply(b.tick(now: now), fromA: false) }
        }
        Issue.record("the simulation did not settle")
    }
}

@Suite struct HolePunchTests {
    @Test(arguments: [0, 15, 40, 150])
    func bothEndsPunchAtTheSameInstant(delayMilliseconds: Int) throws {
        let delay = Duration.milliseconds(delayMilliseconds)
        var pair = PunchPair(delay: delay)
        pair.start()
        #expect(pair.a.phase == .connecting)
        pair.run(until: t0 + 1)
        let fromA = try #require(pair.punches.first { $0.initiator })
        let fromB = try #require(pair.punches.first { !$0.initiator })
        // connect (d) + reply (d) = rtt; sync takes d more: both punch at 3d.
        #expect(fromA.at == t0 + delay * 3)
        #expect(fromB.at == fromA.at)
        #expect(fromA.endpoints == bCandidates)
        #expect(fromB.endpoints == aCandidates)
        #expect(pair.a.lastRTT == delay * 2)
        #expect(pair.a.phase == .punching && pair.b.phase == .punching)
    }

    @Test func unconfirmedAttemptsAreRetriedThreeTimesThenTheInitiatorGivesUp() throws {
        var pair = PunchPair(delay: .milliseconds(20))
        pair.start()
        pair.run(until: t0 + 29)
        // Each attempt: 60 ms to punch, then 2 s waiting for a confirmation that never comes.
        #expect(pair.connects == [t0, t0 + .milliseconds(2060), t0 + .milliseconds(4120)])
        #expect(pair.punches.count == 6)
        #expect(pair.a.attempts == 3)
        let first = try #require(pair.gaveUp.first)
        #expect(first.at == t0 + .milliseconds(6180))
        #expect(first.retryAt == first.at + 30)
        #expect(pair.a.phase == .failed)
        #expect(pair.a.nextRoundAt == first.retryAt)
        #expect(pair.b.phase == .idle)
    }

    @Test func roundsBackOffDoublingToTheCap() {
        var pair = PunchPair(delay: .milliseconds(10))
        pair.dropping = true  // nothing gets through: every attempt times out waiting for the reply
        pair.start()
        pair.run(until: t0 + 3600)
        let pauses = pair.gaveUp.map { Int($0.retryAt.since($0.at).seconds) }
        #expect(Array(pauses.prefix(7)) == [30, 60, 120, 240, 480, 600, 600])
        // Three attempts 5 s apart per round; a round starts when the previous pause ends.
        #expect(Array(pair.connects.prefix(4)) == [t0, t0 + 5, t0 + 10, t0 + 15 + 30])
        #expect(pair.a.counters.roundsFailed == UInt64(pair.gaveUp.count))
    }

    @Test func aConfirmedDirectPathStopsEverything() throws {
        var pair = PunchPair(delay: .milliseconds(40))
        pair.start()
        pair.run(until: t0 + .milliseconds(130))
        #expect(pair.punches.count == 2)
        #expect(pair.a.directPathConfirmed(now: pair.now).isEmpty)
        #expect(pair.b.directPathConfirmed(now: pair.now).isEmpty)
        #expect(pair.a.phase == .direct && pair.b.phase == .direct)
        #expect(pair.a.nextDeadline == nil && pair.b.nextDeadline == nil)
        pair.run(until: t0 + 3600)
        #expect(pair.connects.count == 1)
        #expect(pair.gaveUp.isEmpty)
        #expect(pair.a.counters.successes == 1)
    }

    @Test func successOnALaterAttemptStopsTheRetries() {
        var pair = PunchPair(delay: .milliseconds(20))
        pair.start()
        pair.run(until: t0 + 3)  // the second attempt has punched
        #expect(pair.connects.count == 2)
        _ = pair.a.directPathConfirmed(now: pair.now)
        pair.run(until: t0 + 600)
        #expect(pair.connects.count == 2)
        #expect(pair.a.phase == .direct)
    }

    @Test func aLostDirectPathStartsANewRound() {
        var pair = PunchPair(delay: .milliseconds(20))
        pair.start()
        pair.run(until: t0 + 1)
        _ = pair.a.directPathConfirmed(now: pair.now)
        pair.now = t0 + 100
        pair.apply(pair.a.directPathLost(now: pair.now), fromA: true)
        #expect(pair.connects == [t0, t0 + 100])
        #expect(pair.a.attempts == 1)
        #expect(pair.a.phase == .connecting)
    }

    @Test func staleAndMisdirectedMessagesAreIgnored() {
        var a = HolePunch(role: .initiator)
        _ = a.start(nonce: 7, localCandidates: aCandidates, now: t0)
        #expect(a.handle(.punchConnectReply(nonce: 6, candidates: bCandidates), now: t0 + 1).isEmpty)
        #expect(a.handle(.punchConnect(nonce: 7, candidates: bCandidates), now: t0 + 1).isEmpty)
        #expect(a.handle(.punchSync(nonce: 7), now: t0 + 1).isEmpty)
        #expect(a.phase == .connecting)
        var b = HolePunch(role: .responder)
        #expect(b.handle(.punchSync(nonce: 7), now: t0).isEmpty)
        #expect(b.start(nonce: 1, localCandidates: [], now: t0).isEmpty)
        _ = b.handle(.punchConnect(nonce: 8, candidates: aCandidates), now: t0)
        #expect(b.handle(.punchSync(nonce: 7), now: t0).isEmpty)
        #expect(b.counters.ignoredMessages == 2)
    }

    @Test func theResponderForgetsAnAttemptWithoutSync() {
        var b = HolePunch(role: .responder)
        b.setLocalCandidates(bCandidates)
        let reply = b.handle(.punchConnect(nonce: 8, candidates: aCandidates), now: t0)
        #expect(reply == [.send(.punchConnectReply(nonce: 8, candidates: bCandidates))])
        #expect(b.nextDeadline == t0 + 5)
        #expect(b.tick(now: t0 + 5).isEmpty)
        #expect(b.phase == .idle)
    }

    @Test func candidatesArePublicFirstDeduplicatedAndCapped() {
        let publics = [publicEndpoint(1), publicEndpoint(1), publicEndpoint(2)]
        let lans = (UInt8(1)...9).map { lanEndpoint($0) } + [publicEndpoint(2)]
        let list = HolePunch.candidates(public: publics, private: lans)
        #expect(list.count == RelayMessage.maximumCandidates)
        #expect(Array(list.prefix(3)) == [publicEndpoint(1), publicEndpoint(2), lanEndpoint(1)])
        #expect(Set(list).count == list.count)
        var remote = HolePunch(role: .responder)
        _ = remote.handle(.punchConnect(nonce: 1, candidates: [publicEndpoint(3), publicEndpoint(3)]), now: t0)
        #expect(remote.remoteCandidates == [publicEndpoint(3)])
    }
}
