// Fixtures of the gossip tests: peer keys, a single router driven by hand (`Bench`), and effect
// helpers (`t0` comes from UmbraTestKit).

import Testing
import UmbraCore
import UmbraTestKit

@testable import Gossip

/// A peer key whose first byte is `number` (keys sort by number).
func peerKey(_ number: Int) -> PublicKey {
    var bytes = [UInt8](repeating: 0, count: PublicKey.byteCount)
    bytes[0] = UInt8(number >> 8)
    bytes[1] = UInt8(number & 0xFF)
    bytes[31] = 1
    guard let key = try? PublicKey(bytes: bytes) else { preconditionFailure("32 bytes") }
    return key
}

/// The validator of the tests: data starting with 0xFF is junk (rejected), 0xEE is stale (ignored).
func testValidator(_ topic: Topic, _ data: [UInt8]) -> ValidationResult {
    switch data.first {
    case 0xFF: .reject
    case 0xEE: .ignore
    default: .accept
    }
}

/// Every `.send` of `effects`, decoded (an undecodable or oversized send is a test failure).
func sends(_ effects: [GossipEffect]) -> [(message: GossipMessage, to: PublicKey)] {
    effects.compactMap { effect in
        guard case .send(let bytes, let peer) = effect else { return nil }
        #expect(bytes.count <= GossipMessage.maximumSize)
        guard let message = try? GossipMessage(decoding: bytes) else {
            Issue.record("a send does not decode")
            return nil
        }
        return (message, peer)
    }
}

func deliveries(_ effects: [GossipEffect]) -> [(topic: Topic, data: [UInt8], from: PublicKey?)] {
    effects.compactMap {
        if case .deliver(let topic, let data, _, let from) = $0 { (topic, data, from) } else { nil }
    }
}

/// One router driven by hand: the local node is key 0, peers are keys 1, 2, ...
struct Bench {
    var router: GossipRouter
    var now = t0
    var rng = SeededRandom(seed: 42)
    var validatorCalls = 0

    init(config: GossipConfig = GossipConfig()) {
        router = GossipRouter(localPeer: peerKey(0), config: config)
    }

    @discardableResult
    mutating func add(_ number: Int, outbound: Bool = false, colocation: [UInt8]? = nil) -> [GossipEffect] {
        router.addPeer(peerKey(number), colocationKey: colocation, outbound: outbound, now: now)
    }

    @discardableResult
    mutating func subscribe(_ topic: Topic = .proposals) -> [GossipEffect] {
        router.subscribe(topic, now: now, rng: &rng)
    }

    @discardableResult
    mutating func receive(_ message: GossipMessage, from number: Int) -> [GossipEffect] {
        receive(message.encoded(), from: number)
    }

    @discardableResult
    mutating func receive(_ bytes: [UInt8], from number: Int) -> [GossipEffect] {
        var calls = 0
        let effects = router.receive(bytes, from: peerKey(number), now: now, rng: &rng) { topic, data in
            calls += 1
            return testValidator(topic, data)
        }
        validatorCalls += calls
        return effects
    }

    @discardableResult
    mutating func publish(_ data: [UInt8], topic: Topic = .proposals) -> (id: MessageID, effects: [GossipEffect]) {
        router.publish(data, topic: topic, now: now, rng: &rng)
    }

    /// Advances time by `duration`, running every deadline on the way; returns all effects.
    @discardableResult
    mutating func advance(_ duration: Duration) -> [GossipEffect] {
        let end = now + duration
        var effects: [GossipEffect] = []
        while let deadline = router.nextDeadline, deadline <= end {
            now = max(now, deadline)
            effects += router.tick(now: now, rng: &rng)
        }
        now = end
        return effects
    }

    /// Adds peers `numbers`, each subscribed to `topic` and grafting us (so they are in our mesh).
    mutating func meshPeers(_ numbers: some Sequence<Int>, topic: Topic = .proposals, outbound: Bool = false) {
        for number in numbers {
            add(number, outbound: outbound)
            receive(.subscribe([topic]), from: number)
            receive(.graft(topic), from: number)
        }
    }
}
