import Kademlia
import Node
import Relay
import Sessions
import Testing
import UmbraCore

/// 0-RTT early data is replayable and comes from an unvalidated address: the node accepts it only on
/// the channels that send it (DHT requests, proposal fetches, the dial-back probe).
@Suite("Node: early data only where it is meant")
struct EarlyDataNodeTests {
    let nodeEndpoint = Endpoint(address: .v4(0x7F00_0001), port: 4747)
    let strangerEndpoint = Endpoint(address: .v4(0x7F00_0001), port: 5000)

    /// A fresh identity sends `frame` as early data in its first initiation to a fresh node.
    private func earlyDelivery(_ frame: [UInt8], seed: UInt64) -> (node: NodeInstance, effects: [NodeEffect]) {
        var rng = SeededRandom(seed: seed)
        let now = Instant(nanoseconds: 1_000_000_000_000)
        var node = NodeInstance(identity: Identity.generate(using: &rng), config: NodeConfig(), now: now, rng: &rng)
        var stranger = SessionManager(identity: Identity.generate(using: &rng))
        _ = stranger.addPeer(node.identity.publicKey, path: .direct(nodeEndpoint))
        let effects = stranger.send(frame, to: node.identity.publicKey, early: true, now: now, rng: &rng)
        guard case .send(let initiation, _)? = effects.first else {
            Issue.record("no initiation")
            return (node, [])
        }
        let nodeEffects = node.receive(initiation, from: strangerEndpoint, now: now, rng: &rng)
        return (node, nodeEffects)
    }

    @Test func aPingInEarlyDataIsDroppedAndCounted() {
        let (node, effects) = earlyDelivery(Frame.ping(nonce: 7).encoded(), seed: 1)
        #expect(node.counters.earlyFramesRejected == 1)
        #expect(node.counters.framesRejected == 1)
        #expect(effects.contains { if case .event(.frameRejected) = $0 { true } else { false } })
        // Only the handshake response goes out: no pong.
        #expect(effects.filter { if case .send = $0 { true } else { false } }.count == 1)
    }

    @Test func gossipAndRelayControlOtherThanTheDialBackProbeAreRefusedToo() {
        let gossip = earlyDelivery(Frame.opaque(.gossip, [1, 2, 3]).encoded(), seed: 2)
        #expect(gossip.node.counters.earlyFramesRejected == 1)
        let relay = earlyDelivery(
            Frame.opaque(.relay, RelayMessage.forward(peer: gossip.node.identity.publicKey, bytes: [1]).encoded())
                .encoded(), seed: 3)
        #expect(relay.node.counters.earlyFramesRejected == 1)
        let dhtAnswer = earlyDelivery(
            Frame.dht(DHTMessage(id: 1, flags: [], body: .pong(observed: strangerEndpoint))).encoded(), seed: 4)
        #expect(dhtAnswer.node.counters.earlyFramesRejected == 1)
    }

    @Test func aDHTRequestInEarlyDataIsAnswered() {
        let (node, effects) = earlyDelivery(Frame.dht(DHTMessage(id: 9, flags: [], body: .ping)).encoded(), seed: 5)
        #expect(node.counters.earlyFramesRejected == 0)
        #expect(node.counters.framesRejected == 0)
        // The response, then the PONG on the new keypair.
        #expect(effects.filter { if case .send = $0 { true } else { false } }.count >= 2)
    }

    @Test func theDialBackProbeIsAcceptedAsEarlyData() {
        let (node, _) = earlyDelivery(
            Frame.opaque(.relay, RelayMessage.dialBackProbe(nonce: 3).encoded()).encoded(), seed: 6)
        #expect(node.counters.earlyFramesRejected == 0)
    }
}
