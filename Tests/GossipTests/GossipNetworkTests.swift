// Many routers on the in-memory network: meshes form within [dLow, dHigh]; a publish reaches all
// of 100 nodes with a bounded number of duplicates; IHAVE/IWANT recovers what loss took; a peer
// flooding junk is graylisted after a handful of messages while the rest keep gossiping; a seed
// replays exactly. Each simulation takes its seed as an argument.

import Testing
import UmbraCore

@testable import Gossip

private func honestNetwork(count: Int, degree: Int, seed: UInt64) -> GossipNetwork {
    var network = GossipNetwork(count: count, seed: seed)
    network.connectRandomly(degree: degree)
    network.subscribeAll(.proposals)
    network.run(for: .seconds(5))
    return network
}

@Suite struct GossipNetworkTests {
    @Test(arguments: [UInt64(1), 2])
    func meshesFormWithinBoundsAndPublishesReachEveryNode(seed: UInt64) {
        let config = GossipConfig()
        var network = honestNetwork(count: 100, degree: 8, seed: seed)
        var asymmetric = 0
        for node in 0..<network.count {
            let router = network.router(node)
            let mesh = router.mesh(.proposals)
            #expect((config.dLow...config.dHigh).contains(mesh.count), "node \(node) has a mesh of \(mesh.count)")
            for peer in mesh {
                let other = network.keys.firstIndex(of: peer)!
                if !network.router(other).mesh(.proposals).contains(network.keys[node]) { asymmetric += 1 }
            }
            #expect(router.counters.graftsInBackoff == 0, "an honest router never GRAFTs during a backoff")
            #expect(router.peerInfo().allSatisfy { $0.score >= 0 }, "no honest peer is penalised")
        }
        #expect(asymmetric == 0, "mesh links are mutual once settled")

        var ids: [MessageID] = []
        for round in 0..<10 {
            ids.append(network.publish([1, UInt8(round)], from: round * 7 % network.count))
            network.run(for: .milliseconds(300))
        }
        network.run(for: .seconds(2))
        var duplicates: [Int] = []
        for (round, id) in ids.enumerated() {
            #expect(network.reached(id) == network.count - 1, "message \(round) reached \(network.reached(id))")
            for node in 0..<network.count {
                #expect((network.delivered[node][id] ?? 0) <= 1, "delivered twice")
                if let count = network.router(node).duplicates(of: id) { duplicates.append(count) }
            }
        }
        // Each node gets one copy per mesh peer (less the one it came from), plus maybe the
        // publisher's flood copy: on average no more than the mean mesh size.
        let mean = Double(duplicates.reduce(0, +)) / Double(duplicates.count)
        let meshSizes = (0..<network.count).map { network.router($0).mesh(.proposals).count }
        let meanMesh = Double(meshSizes.reduce(0, +)) / Double(meshSizes.count)
        #expect(duplicates.max()! <= config.dHigh, "a node gets at most one copy per mesh peer")
        #expect(mean <= meanMesh, "mean duplicates per node per message: \(mean)")
        #expect(network.graylisted.allSatisfy { $0.isEmpty })
    }

    @Test(arguments: [UInt64(3)])
    func gossipRecoversAMessageLostOnTheMeshPath(seed: UInt64) {
        var network = honestNetwork(count: 30, degree: 6, seed: seed)
        let victim = 7
        let publishedAt = network.now
        // Every copy of a message sent to the victim in the 200 ms after publishing is lost: only
        // the next heartbeat's IHAVE and the victim's IWANT can bring it.
        network.dropFilter = { _, to, message, now in
            to == victim && message.tag == .publish && now < publishedAt + .milliseconds(200)
        }
        let id = network.publish([5, 5], from: 0)
        network.run(for: .milliseconds(200))
        #expect(network.reached(id) == network.count - 2, "everyone but the victim")
        #expect(network.delivered[victim][id] == nil)
        network.run(for: .seconds(2))
        #expect(network.delivered[victim][id] == 1)
        #expect(network.router(victim).counters.iwantSent >= 1)
        #expect((0..<network.count).map { network.router($0).counters.iwantServed }.reduce(0, +) >= 1)
        #expect(network.router(victim).counters.brokenPromises == 0)
    }

    @Test(arguments: [UInt64(4)])
    func everyMessageArrivesDespiteRandomLoss(seed: UInt64) {
        var network = GossipNetwork(count: 50, seed: seed)
        network.loss = 0.1
        network.connectRandomly(degree: 8)
        network.subscribeAll(.proposals)
        network.run(for: .seconds(5))
        let ids = (0..<5).map { round in network.publish([2, UInt8(round)], from: round * 11) }
        network.run(for: .seconds(5))
        for id in ids { #expect(network.reached(id) == network.count - 1) }
        #expect(network.framesLost > 0)
    }

    @Test(arguments: [UInt64(5)])
    func junkFlooderIsGraylistedWhileGossipGoesOn(seed: UInt64) {
        var network = honestNetwork(count: 20, degree: 6, seed: seed)
        let flooder = peerKey(0xF100)
        let victims = Array(0..<5)
        for node in victims {
            network.connectExternal(flooder, to: node)
            network.inject(.subscribe([.proposals]), from: flooder, to: node)
            network.inject(.graft(.proposals), from: flooder, to: node)
        }
        network.run(for: .seconds(2))
        #expect(victims.allSatisfy { network.router($0).mesh(.proposals).contains(flooder) })

        // 5 s of junk (distinct messages the validator rejects) every 50 ms to each victim, while
        // node 10 publishes a real message every 500 ms.
        var ids: [MessageID] = []
        for step in 0..<100 {
            for node in victims {
                network.inject(
                    .publish(topic: .proposals, data: [0xFF, UInt8(step), UInt8(node)]), from: flooder, to: node)
            }
            if step % 10 == 0 { ids.append(network.publish([3, UInt8(step)], from: 10)) }
            network.run(for: .milliseconds(50))
        }
        network.run(for: .seconds(2))

        for node in victims {
            let router = network.router(node)
            #expect(network.graylisted[node] == [flooder])
            #expect(network.rejections[node] <= 4, "node \(node) validated \(network.rejections[node]) junk messages")
            #expect(router.counters.graylistedDrops >= 95)
            #expect(!router.mesh(.proposals).contains(flooder))
        }
        for node in 5..<network.count {
            #expect(network.rejections[node] == 0, "junk was forwarded to node \(node)")
            #expect(network.graylisted[node].isEmpty)
        }
        for id in ids { #expect(network.reached(id) == network.count - 1) }
        let pruned = network.inbox[flooder, default: []].filter { $0 == .prune(.proposals, backoffSeconds: 60) }
        #expect(pruned.count == victims.count, "each victim pruned the flooder from its mesh")
    }

    @Test(arguments: [UInt64(6)])
    func aSeedReplaysExactly(seed: UInt64) {
        func trace(_ seed: UInt64) -> (UInt64, GossipCounters) {
            var network = GossipNetwork(count: 30, seed: seed)
            network.loss = 0.05
            network.connectRandomly(degree: 6)
            network.subscribeAll(.proposals)
            network.run(for: .seconds(3))
            for round in 0..<5 {
                network.publish([4, UInt8(round)], from: round)
                network.run(for: .milliseconds(400))
            }
            network.run(for: .seconds(3))
            return (network.traceHash, network.router(0).counters)
        }
        let first = trace(seed)
        let second = trace(seed)
        #expect(first.0 == second.0)
        #expect(first.1 == second.1)
        #expect(trace(seed + 1).0 != first.0)
    }
}
