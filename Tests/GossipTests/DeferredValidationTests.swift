// A validator that answers later, by message id (`ValidationResult.pending`, `completeValidation`):
// the ledger checks certificates against account state before anything is forwarded.

import Testing
import UmbraCore

@testable import Gossip

@Suite struct DeferredValidationTests {
    /// Receives `data` from peer `number`, the validator deferring every message.
    private func receiveDeferred(_ bench: inout Bench, _ data: [UInt8], from number: Int) -> [GossipEffect] {
        let bytes = GossipMessage.publish(topic: .proposals, data: data).encoded()
        return bench.router.receive(bytes, from: peerKey(number), now: bench.now, rng: &bench.rng) { _, _ in .pending }
    }

    @Test func acceptedLaterIsDeliveredAndForwardedExceptToPeersThatSentCopies() {
        var bench = Bench()
        bench.subscribe()
        bench.meshPeers(1...4)
        let id = MessageID(topic: .proposals, data: [7])
        #expect(receiveDeferred(&bench, [7], from: 1).isEmpty, "nothing leaves before the verdict")
        #expect(bench.router.pendingValidationCount == 1)
        // A copy while the validator works: a duplicate, not validated again; its sender has it.
        #expect(receiveDeferred(&bench, [7], from: 2).isEmpty)
        #expect(bench.router.counters.duplicates == 1)

        let effects = bench.router.completeValidation(id, .accept, now: bench.now)
        #expect(deliveries(effects).map(\.data) == [[7]])
        #expect(deliveries(effects).first?.from == peerKey(1))
        #expect(sends(effects).map(\.to) == [peerKey(3), peerKey(4)])
        #expect(bench.router.pendingValidationCount == 0)
        #expect(bench.router.counters.validationsDeferred == 1)
        // A second answer for the same id changes nothing.
        #expect(bench.router.completeValidation(id, .accept, now: bench.now).isEmpty)
    }

    @Test func rejectedLaterPenalisesTheFirstSenderAndLaterCopies() {
        var bench = Bench()
        bench.subscribe()
        bench.meshPeers(1...3)
        let id = MessageID(topic: .proposals, data: [9])
        _ = receiveDeferred(&bench, [9], from: 1)
        let effects = bench.router.completeValidation(id, .reject, now: bench.now)
        #expect(sends(effects).isEmpty && deliveries(effects).isEmpty)
        #expect(bench.router.counters.invalid == 1)
        #expect(bench.router.score(of: peerKey(1)) < 0)
        #expect(bench.router.score(of: peerKey(2)) == 0)
        // Seen as rejected: a later copy costs its sender too and is not validated again.
        _ = receiveDeferred(&bench, [9], from: 2)
        #expect(bench.router.score(of: peerKey(2)) < 0)
        #expect(bench.router.pendingValidationCount == 0)
    }

    @Test func unansweredMessagesTimeOutAndTheQueueIsBounded() {
        var config = GossipConfig()
        config.maximumPendingValidations = 3
        config.validationTimeout = .seconds(5)
        var bench = Bench(config: config)
        bench.subscribe()
        bench.meshPeers(1...2)
        for value in 0..<5 { _ = receiveDeferred(&bench, [UInt8(value)], from: 1) }
        #expect(bench.router.pendingValidationCount == 3)
        #expect(bench.router.counters.validationsShed == 2)
        // A shed message was not marked seen: a later copy is validated (and deferred) again.
        bench.advance(.seconds(6))
        #expect(bench.router.pendingValidationCount == 0)
        #expect(bench.router.counters.validationTimeouts == 3)
        _ = receiveDeferred(&bench, [4], from: 2)
        #expect(bench.router.pendingValidationCount == 1)
        // A verdict after the timeout is for an unknown id: nothing happens.
        let late = bench.router.completeValidation(MessageID(topic: .proposals, data: [0]), .accept, now: bench.now)
        #expect(late.isEmpty)
    }
}
