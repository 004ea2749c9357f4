// The heartbeat (every `heartbeatInterval`): 1. reset per-heartbeat caps 2. penalise broken IWANT
// promises 3. age backoffs 4. maintain each mesh (drop negative scores; graft below dLow; prune
// above dHigh keeping the dScore best and dOut outbound; keep dOut outbound; opportunistic graft)
// 5. maintain fanouts 6. IHAVE gossip to non-mesh peers 7. shift the message cache, expire seen ids.

import UmbraCore

extension GossipRouter {
    mutating func heartbeat(now: Instant, rng: inout some RandomNumberGenerator, _ effects: inout [GossipEffect]) {
        counters.heartbeats += 1
        for peer in Array(peerStates.keys) {
            peerStates[peer]!.messages = 0
            peerStates[peer]!.ihaves = 0
            peerStates[peer]!.idsAsked = 0
            peerStates[peer]!.served = 0
        }

        expirePendingValidations(now: now)
        let broken = promises.expire(now: now)
        for peer in sorted(broken.keys) where peerStates[peer] != nil {
            let count = broken[peer]!
            counters.brokenPromises += UInt64(count)
            penalise(peer, Double(count), &effects)
        }

        // A backoff entry outlives its expiry by two heartbeats, so we never GRAFT a peer that may
        // not have seen its own backoff end yet.
        let slack = config.heartbeatInterval + config.heartbeatInterval
        for topic in backoffs.keys.sorted() {
            for peer in sorted(backoffs[topic]!.keys) where backoffs[topic]![peer]! + slack < now {
                removeBackoff(peer, topic: topic)
            }
        }

        for topic in meshes.keys.sorted() { maintainMesh(topic, now: now, rng: &rng, &effects) }
        for topic in fanout.keys.sorted() { maintainFanout(topic, now: now, rng: &rng) }
        for topic in meshes.keys.sorted() { emitGossip(topic, exclude: meshes[topic]!, rng: &rng, &effects) }
        for topic in fanout.keys.sorted() { emitGossip(topic, exclude: fanout[topic]!, rng: &rng, &effects) }

        cache.shift()
        seen.expire(now: now)
    }

    private mutating func maintainMesh(
        _ topic: Topic, now: Instant, rng: inout some RandomNumberGenerator, _ effects: inout [GossipEffect]
    ) {
        var mesh = meshes[topic]!
        var toPrune: [GossipPeer] = []
        var toGraft: [GossipPeer] = []

        for peer in sorted(mesh) where scores.score(of: peer) < 0 {
            mesh.remove(peer)
            toPrune.append(peer)
        }

        func candidates(_ include: (GossipPeer) -> Bool, minimumScore: Double = 0) -> [GossipPeer] {
            topicPeers(topic).filter {
                !mesh.contains($0) && !toPrune.contains($0) && canGraft($0, topic: topic, minimumScore: minimumScore)
                    && include($0)
            }
        }

        if mesh.count < config.dLow {
            let chosen = candidates { _ in true }.shuffled(using: &rng).prefix(max(0, config.d - mesh.count))
            mesh.formUnion(chosen)
            toGraft += chosen
        }

        if mesh.count > config.dHigh {
            // Best scores first (ties in random order), keep dScore of them, the rest in random order.
            var ordered = sorted(mesh).shuffled(using: &rng)
            let scoreOf = Dictionary(uniqueKeysWithValues: ordered.map { ($0, scores.score(of: $0)) })
            ordered.sort { scoreOf[$0]! > scoreOf[$1]! }
            let keep = min(config.dScore, config.d)
            ordered = Array(ordered.prefix(keep)) + ordered.dropFirst(keep).shuffled(using: &rng)
            // Bring outbound peers to the front until the first d hold dOut of them.
            let selection = min(max(config.d, 0), ordered.count)
            let outboundInSelection = ordered.prefix(selection).filter(isOutbound).count
            if outboundInSelection < config.dOut {
                var missing = config.dOut - outboundInSelection
                func rotate(_ index: Int) { ordered.insert(ordered.remove(at: index), at: 0) }
                for index in 0..<selection where isOutbound(ordered[index]) { rotate(index) }
                var index = selection
                while index < ordered.count, missing > 0 {
                    if isOutbound(ordered[index]) {
                        rotate(index)
                        missing -= 1
                    }
                    index += 1
                }
            }
            for peer in ordered.dropFirst(selection) {
                mesh.remove(peer)
                toPrune.append(peer)
            }
        }

        if mesh.count >= config.dLow {
            let outbound = mesh.filter(isOutbound).count
            if outbound < config.dOut {
                let chosen = candidates(isOutbound).shuffled(using: &rng).prefix(config.dOut - outbound)
                mesh.formUnion(chosen)
                toGraft += chosen
            }
        }

        // Opportunistic grafting: a mesh whose median score is poor (peers that deliver nothing)
        // takes in a couple of better-scored peers.
        if config.opportunisticGraftTicks > 0, counters.heartbeats % UInt64(config.opportunisticGraftTicks) == 0,
            mesh.count > 1
        {
            let meshScores = sorted(mesh).map { scores.score(of: $0) }.sorted()
            let median = meshScores[meshScores.count / 2]
            if median < config.thresholds.opportunisticGraftThreshold {
                let chosen = candidates({ scores.score(of: $0) > median }, minimumScore: median)
                    .shuffled(using: &rng).prefix(config.opportunisticGraftPeers)
                mesh.formUnion(chosen)
                toGraft += chosen
            }
        }

        meshes[topic] = mesh
        for peer in toGraft { graft(peer, topic: topic, now: now, &effects) }
        for peer in toPrune {
            scores.prune(peer, topic: topic)
            sendPrune(topic, to: peer, backoff: config.pruneBackoff, now: now, &effects)
        }
    }

    private mutating func maintainFanout(_ topic: Topic, now: Instant, rng: inout some RandomNumberGenerator) {
        guard let last = lastPublished[topic], now < last + config.fanoutTTL else {
            fanout[topic] = nil
            lastPublished[topic] = nil
            return
        }
        let threshold = config.thresholds.publishThreshold
        var peers = fanout[topic]!.filter {
            peerStates[$0]?.topics.contains(topic) == true && scores.score(of: $0) >= threshold
        }
        if peers.count < config.d {
            let candidates = topicPeers(topic).filter { !peers.contains($0) && scores.score(of: $0) >= threshold }
            peers.formUnion(candidates.shuffled(using: &rng).prefix(config.d - peers.count))
        }
        fanout[topic] = peers
    }

    /// IHAVE with the gossip window's ids of `topic` to `dLazy` (or `gossipFactor` of the eligible)
    /// peers of the topic outside `exclude` and at or above the gossip threshold.
    private mutating func emitGossip(
        _ topic: Topic, exclude: Set<GossipPeer>, rng: inout some RandomNumberGenerator,
        _ effects: inout [GossipEffect]
    ) {
        let ids = cache.gossipIDs(topic: topic)
        guard !ids.isEmpty else { return }
        let threshold = config.thresholds.gossipThreshold
        let eligible = topicPeers(topic).filter { !exclude.contains($0) && scores.score(of: $0) >= threshold }
        let target = max(config.dLazy, Int(config.gossipFactor * Double(eligible.count)))
        for peer in eligible.shuffled(using: &rng).prefix(target) {
            var announced = ids.filter { cache[$0]?.holders.contains(peer) != true }
            if announced.count > config.maximumIHaveLength {
                announced.shuffle(using: &rng)
                announced.removeLast(announced.count - config.maximumIHaveLength)
            }
            for start in stride(from: 0, to: announced.count, by: GossipMessage.maximumIDs) {
                let chunk = Array(announced[start..<min(start + GossipMessage.maximumIDs, announced.count)])
                send(.ihave(topic: topic, ids: chunk), to: peer, &effects)
                counters.ihaveSent += 1
            }
        }
    }
}
