// GossipSub v1.1 peer scoring, kept locally and never shared:
//
//   score = min(Σ_topic topicWeight · (P1·w1 + P2·w2 + P4·w4), topicScoreCap) + P6·w6 + P7·w7
//
// P1 time in mesh (quanta, capped), P2 first message deliveries (capped, decaying), P4 invalid
// messages (decaying counter, squared), P6 peers sharing the colocation key beyond the threshold
// (squared), P7 behaviour penalty beyond the threshold (decaying counter, squared). P3/P3b (mesh
// delivery deficit) and P5 (application score) are not implemented.
//
// Scores of disconnected peers are kept (`retainScore`) when not positive, so reconnecting does not
// launder a bad score. Everything is iterated in a fixed order, so floating-point sums replay.

import UmbraCore

struct PeerScore: Sendable {
    struct TopicStats: Sendable {
        var inMesh = false
        var graftTime = Instant.zero
        var meshTime: Duration = .zero
        var firstMessageDeliveries = 0.0
        var invalidMessageDeliveries = 0.0
    }

    struct PeerStats: Sendable {
        var connected = true
        /// When a disconnected peer's stats are forgotten.
        var expiry = Instant.zero
        var colocationKey: [UInt8]?
        /// Per topic, sorted by topic (a handful at most: only topics we joined are scored).
        var topics: [(topic: Topic, stats: TopicStats)] = []
        var behaviourPenalty = 0.0

        func index(of topic: Topic) -> Int? { topics.firstIndex { $0.topic == topic } }

        mutating func update(_ topic: Topic, _ change: (inout TopicStats) -> Void) {
            if let index = index(of: topic) {
                change(&topics[index].stats)
            } else {
                var stats = TopicStats()
                change(&stats)
                let position = topics.firstIndex { topic < $0.topic } ?? topics.count
                topics.insert((topic, stats), at: position)
            }
        }
    }

    let params: PeerScoreParams
    private(set) var stats: [GossipPeer: PeerStats] = [:]
    /// Connected peers per colocation key.
    private var colocation: [[UInt8]: Int] = [:]
    private(set) var retainedCount = 0

    init(params: PeerScoreParams) { self.params = params }

    // MARK: - Score

    func score(of peer: GossipPeer) -> Double {
        guard let peerStats = stats[peer] else { return 0 }
        var topicScore = 0.0
        for (topic, topicStats) in peerStats.topics {
            let weights = params.params(for: topic)
            var score = 0.0
            if topicStats.inMesh {
                let quanta = topicStats.meshTime.seconds / max(weights.timeInMeshQuantum.seconds, 1e-9)
                score += min(quanta, weights.timeInMeshCap) * weights.timeInMeshWeight
            }
            score += topicStats.firstMessageDeliveries * weights.firstMessageDeliveriesWeight
            let invalid = topicStats.invalidMessageDeliveries
            score += invalid * invalid * weights.invalidMessageDeliveriesWeight
            topicScore += score * weights.topicWeight
        }
        if params.topicScoreCap > 0 { topicScore = min(topicScore, params.topicScoreCap) }
        var score = topicScore
        if peerStats.connected, let key = peerStats.colocationKey, let peers = colocation[key],
            peers > params.ipColocationFactorThreshold
        {
            let surplus = Double(peers - params.ipColocationFactorThreshold)
            score += surplus * surplus * params.ipColocationFactorWeight
        }
        let excess = peerStats.behaviourPenalty - params.behaviourPenaltyThreshold
        if excess > 0 { score += excess * excess * params.behaviourPenaltyWeight }
        return score
    }

    // MARK: - Events

    mutating func connect(_ peer: GossipPeer, colocationKey: [UInt8]?) {
        if var existing = stats[peer] {
            if existing.connected { return }
            existing.connected = true
            existing.colocationKey = colocationKey
            stats[peer] = existing
            retainedCount -= 1
        } else {
            stats[peer] = PeerStats(colocationKey: colocationKey)
        }
        if let colocationKey { colocation[colocationKey, default: 0] += 1 }
    }

    mutating func disconnect(_ peer: GossipPeer, now: Instant) {
        guard var peerStats = stats[peer], peerStats.connected else { return }
        if let key = peerStats.colocationKey {
            colocation[key, default: 1] -= 1
            if colocation[key] == 0 { colocation[key] = nil }
        }
        // Only a non-positive score is worth keeping: a positive one has nothing to launder.
        guard score(of: peer) <= 0, params.retainScore > .zero, params.maximumRetained > 0 else {
            stats[peer] = nil
            return
        }
        peerStats.connected = false
        peerStats.expiry = now + params.retainScore
        for index in peerStats.topics.indices { peerStats.topics[index].stats.inMesh = false }
        stats[peer] = peerStats
        retainedCount += 1
        if retainedCount > params.maximumRetained { evictRetained() }
    }

    mutating func graft(_ peer: GossipPeer, topic: Topic, now: Instant) {
        guard stats[peer] != nil else { return }
        stats[peer]!.update(topic) {
            $0.inMesh = true
            $0.graftTime = now
            $0.meshTime = .zero
        }
    }

    mutating func prune(_ peer: GossipPeer, topic: Topic) {
        guard stats[peer] != nil else { return }
        stats[peer]!.update(topic) { $0.inMesh = false }
    }

    /// `peer` delivered a valid message before anyone else.
    mutating func firstDelivery(_ peer: GossipPeer, topic: Topic) {
        guard stats[peer] != nil else { return }
        let cap = params.params(for: topic).firstMessageDeliveriesCap
        stats[peer]!.update(topic) { $0.firstMessageDeliveries = min($0.firstMessageDeliveries + 1, cap) }
    }

    /// `peer` sent a message the validator rejected.
    mutating func invalidDelivery(_ peer: GossipPeer, topic: Topic) {
        guard stats[peer] != nil else { return }
        stats[peer]!.update(topic) { $0.invalidMessageDeliveries += 1 }
    }

    mutating func addPenalty(_ peer: GossipPeer, _ count: Double) {
        guard stats[peer] != nil else { return }
        stats[peer]!.behaviourPenalty += count
    }

    /// Decays the counters, updates time in mesh and forgets expired disconnected peers.
    mutating func refresh(now: Instant) {
        for peer in Array(stats.keys) {
            var peerStats = stats[peer]!
            if !peerStats.connected {
                if peerStats.expiry <= now {
                    stats[peer] = nil
                    retainedCount -= 1
                }
                continue
            }
            for index in peerStats.topics.indices {
                let weights = params.params(for: peerStats.topics[index].topic)
                var topicStats = peerStats.topics[index].stats
                topicStats.firstMessageDeliveries = decayed(
                    topicStats.firstMessageDeliveries, weights.firstMessageDeliveriesDecay)
                topicStats.invalidMessageDeliveries = decayed(
                    topicStats.invalidMessageDeliveries, weights.invalidMessageDeliveriesDecay)
                if topicStats.inMesh { topicStats.meshTime = now.since(topicStats.graftTime) }
                peerStats.topics[index].stats = topicStats
            }
            peerStats.behaviourPenalty = decayed(peerStats.behaviourPenalty, params.behaviourPenaltyDecay)
            stats[peer] = peerStats
        }
    }

    private func decayed(_ value: Double, _ factor: Double) -> Double {
        let next = value * factor
        return next < params.decayToZero ? 0 : next
    }

    /// Forgets the retained peer with the best (least negative) score: the worst are kept longest.
    private mutating func evictRetained() {
        var best: (peer: GossipPeer, score: Double)?
        for (peer, peerStats) in stats where !peerStats.connected {
            let score = score(of: peer)
            if let current = best,
                score < current.score || (score == current.score && PublicKey.precedes(current.peer, peer))
            {
                continue
            }
            best = (peer, score)
        }
        guard let best else { return }
        stats[best.peer] = nil
        retainedCount -= 1
    }
}
