import NetSim
import Testing

@Suite("Gossip simulation")
struct GossipSimTests {
    /// A small network on the benchmark's links (RTT 20–200 ms, 1 % loss), with the time scale
    /// shortened: offers are re-signed every 20 s, so gossip alone would bring a joiner only a
    /// fraction of them within its first 3 s; the rest must come from the sync.
    static func config(nodes: Int, providers: Int, seed: UInt64) -> GossipSimConfig {
        var config = GossipSimConfig()
        config.nodes = nodes
        config.providers = providers
        config.seed = seed
        config.warmUp = .seconds(10)
        config.refreshInterval = .seconds(20)
        config.measurementWindow = .seconds(20)
        config.trackedMessages = 8
        config.duplicateSettle = .seconds(5)
        config.joiners = 3
        config.joinSpacing = .seconds(1)
        config.joinTimeout = .seconds(8)
        config.forgeries = 2
        return config
    }

    // About 20 s alone; the limit is a hang guard for a full parallel `swift test` on two cores,
    // where this simulation waits for CPU behind every other suite.
    @Test(.timeLimit(.minutes(3)), arguments: [1, 2] as [UInt64])
    func proposalsReachEveryNodeAndJoinersSync(seed: UInt64) {
        let config = Self.config(nodes: 200, providers: 20, seed: seed)
        var sim = GossipSim(config: config)
        let result = sim.run()

        // Every tracked proposal reaches every node, fast.
        #expect(result.trackedCount == config.trackedMessages)
        #expect(result.trackedReachingAll == result.trackedCount)
        #expect(result.tracked.allSatisfy { $0.missing == 0 })
        #expect(result.reach100.max < 1500)

        // Meshes are within their bounds, and duplicates are bounded by the mesh degree: a node gets
        // a message once from each mesh peer at most (plus the publisher's flood and IWANT answers),
        // not once from every peer.
        #expect(result.meshMin >= config.gossip.dLow && result.meshMax <= config.gossip.dHigh)
        #expect(result.peersMean >= Double(2 * config.outboundPeers) - 1)
        #expect(result.duplicatesMean > 1 && result.duplicatesMean <= Double(config.gossip.d) + 1)
        #expect(result.duplicatesMax <= config.gossip.dHigh + 2)

        // Every joiner syncs the whole live set within 3 s (gossip alone could not: offers are re-signed
        // every 20 s), and its sync client covered the whole key space.
        #expect(result.joins.count == config.joiners)
        for join in result.joins {
            #expect(join.live == config.providers && join.held == join.live)
            #expect(join.syncCompleteMs != nil)
            #expect((join.hold100Ms ?? .infinity) < 3000)
            #expect(join.syncPages > 0)
        }

        // Forged proposals are rejected by the first peers that see them, and delivered nowhere.
        #expect(result.forgeries == config.forgeries)
        #expect(result.forgedDeliveries == 0)
        #expect(result.invalidMessages > 0)

        // What is sent is received, minus the 1 % loss.
        #expect(result.bytesInPerMinuteMean > 0)
        #expect(abs(result.bytesInPerMinuteMean / result.bytesOutPerMinuteMean - 0.99) < 0.02)
    }

    @Test(.timeLimit(.minutes(3)))
    func theSameSeedGivesTheSameResult() {
        let config = Self.config(nodes: 120, providers: 12, seed: 7)
        var first = GossipSim(config: config)
        var second = GossipSim(config: config)
        let a = first.run()
        let b = second.run()
        #expect(a == b)
        var other = GossipSim(config: Self.config(nodes: 120, providers: 12, seed: 8))
        #expect(other.run() != a)
    }
}
