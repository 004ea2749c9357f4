import NetSim
import Node
import Testing
import UmbraCore
import UmbraTestKit

/// The handshake-and-ping scenario, shared by the simulator and the real-UDP tests.
enum Scenario {
    static func meshSimulation(nodes count: Int, seed: UInt64, link: LinkModel = LinkModel()) -> NetSim {
        var sim = NetSim(seed: seed, link: link)
        let identities = UmbraTestKit.identities(count, seed: seed ^ 0xABCD)
        var config = NodeConfig()
        config.bootstrap = identities.indices.map {
            DialTarget(publicKey: identities[$0].publicKey, endpoint: NetSim.endpoint(forNode: $0))
        }
        for identity in identities { sim.addNode(identity: identity, config: config) }
        return sim
    }
}

@Suite("NetSim")
struct NetSimTests {
    @Test(arguments: [1, 2, 3] as [UInt64])
    func meshBootstrapsHandshakesAndPings(seed: UInt64) {
        var sim = Scenario.meshSimulation(nodes: 6, seed: seed)
        sim.run(for: .seconds(20))
        for index in 0..<sim.nodeCount {
            #expect(sim.instance(index).establishedPeerCount == 5, "node \(index) with seed \(seed)")
        }
        // A ping from node 0 to node 3 comes back as a pong with an RTT within the link model.
        let target = sim.instance(3).identity.publicKey
        var nonce: UInt64 = 0
        sim.perform(on: 0) { node, now, rng in
            let (sent, effects) = node.ping(target, now: now, rng: &rng)
            nonce = sent
            return effects
        }
        sim.run(for: .seconds(2))
        let pongs = sim.trace.compactMap { entry -> Duration? in
            if entry.node == 0, case .pong(let key, let n, let rtt) = entry.event, key == target, n == nonce {
                return rtt
            }
            return nil
        }
        // Unless the 1% loss hit this ping, a pong arrived within 2 × 20..200 ms.
        if let rtt = pongs.first {
            #expect(rtt >= .milliseconds(40) && rtt <= .milliseconds(400))
        } else {
            #expect(sim.statistics.datagramsLost > 0, "the only excuse for a missing pong is loss")
        }
    }

    @Test func sameSeedGivesTheSameTraceAndAnotherSeedDoesNot() {
        func trace(_ seed: UInt64) -> [String] {
            var sim = Scenario.meshSimulation(nodes: 5, seed: seed)
            sim.run(for: .seconds(60))
            return sim.trace.map(\.description)
        }
        let first = trace(11)
        #expect(first.count > 20)
        #expect(first == trace(11))
        #expect(first != trace(12))
    }

    @Test func partitionedPeerIsLostThenRedialedAfterHealing() {
        var sim = Scenario.meshSimulation(nodes: 3, seed: 4, link: LinkModel(lossRate: 0))
        sim.run(for: .seconds(5))
        #expect(sim.instance(0).establishedPeerCount == 2)
        sim.partition(0, 1)
        sim.run(for: .seconds(60))
        #expect(sim.instance(0).establishedPeerCount == 1)
        #expect(sim.trace.contains { $0.node == 0 && $0.event == .peerDown(sim.instance(1).identity.publicKey) })
        sim.partition(0, 1, cut: false)
        sim.run(for: .seconds(90))
        #expect(sim.instance(0).establishedPeerCount == 2)
        #expect(sim.instance(0).counters.redials >= 1)
    }

    @Test func killedNodeIsDeclaredDownByEveryone() {
        var sim = Scenario.meshSimulation(nodes: 4, seed: 9, link: LinkModel(lossRate: 0))
        sim.run(for: .seconds(5))
        sim.kill(2)
        sim.run(for: .seconds(60))
        for index in [0, 1, 3] { #expect(sim.instance(index).establishedPeerCount == 2) }
    }

    @Test func lossyLinksStillConverge() {
        var sim = Scenario.meshSimulation(nodes: 8, seed: 5, link: LinkModel(lossRate: 0.2))
        sim.run(for: .seconds(60))
        for index in 0..<sim.nodeCount { #expect(sim.instance(index).establishedPeerCount == 7) }
        #expect(sim.statistics.datagramsLost > 0)
    }
}
