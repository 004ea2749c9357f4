// Handling of one frame from a peer: graylist check, decode, then one handler per message kind.

import UmbraCore

extension GossipRouter {
    /// Handles one encoded `GossipMessage` from `peer`. `validate` is called synchronously, at most
    /// once per new message, before anything is forwarded; a graylisted peer's frames are dropped
    /// before decoding, so they never reach it.
    public mutating func receive(
        _ bytes: [UInt8], from peer: GossipPeer, now: Instant, rng: inout some RandomNumberGenerator,
        validate: (Topic, [UInt8]) -> ValidationResult
    ) -> [GossipEffect] {
        start(now)
        guard peerStates[peer] != nil else {
            counters.unknownPeerDrops += 1
            return []
        }
        guard !isGraylisted(peer) else {
            counters.graylistedDrops += 1
            return []
        }
        var effects: [GossipEffect] = []
        let message: GossipMessage
        do throws(DecodeError) {
            message = try GossipMessage(decoding: bytes)
        } catch {
            if case .unknownTag(field: "gossip message", _) = error {
                counters.unknownKinds += 1  // a newer peer's message kind: not misbehaviour
            } else {
                counters.malformed += 1
                penalise(peer, 1, &effects)
            }
            return effects
        }
        switch message {
        case .subscribe(let topics): handleSubscribe(topics, from: peer, now: now, &effects)
        case .unsubscribe(let topics): handleUnsubscribe(topics, from: peer)
        case .publish(let topic, let data):
            handlePublish(topic: topic, data: data, from: peer, now: now, validate: validate, &effects)
        case .ihave(let topic, let ids): handleIHave(topic: topic, ids: ids, from: peer, now: now, rng: &rng, &effects)
        case .iwant(let ids): handleIWant(ids, from: peer, &effects)
        case .graft(let topic): handleGraft(topic, from: peer, now: now, &effects)
        case .prune(let topic, let backoff): handlePrune(topic, backoffSeconds: backoff, from: peer, now: now)
        }
        return effects
    }

    // MARK: - Subscriptions

    private mutating func handleSubscribe(
        _ topics: [Topic], from peer: GossipPeer, now: Instant, _ effects: inout [GossipEffect]
    ) {
        // A live peer only announces changes, so a subscription to topics it already holds means it
        // started over (a restart its new session did not reveal: the session layer sees a handshake
        // like a rekey). It lost our subscriptions and its mesh: forget its mesh places and send ours
        // again, so both sides graft afresh. Its score is kept (mesh time restarts as on any prune), and
        // this happens at most once per peer per prune backoff, so announcing topics again cannot be
        // used to churn our mesh or to keep resetting its mesh-delivery record.
        let detectedBefore = peerStates[peer]!.restartDetectedAt
        if !topics.isEmpty, topics.allSatisfy({ peerStates[peer]!.topics.contains($0) }),
            detectedBefore.map({ now.since($0) >= config.pruneBackoff }) ?? true
        {
            counters.peersRestarted += 1
            peerStates[peer]!.restartDetectedAt = now
            peerStates[peer]!.topics = []
            for topic in meshes.keys.sorted() where meshes[topic]!.remove(peer) != nil {
                scores.prune(peer, topic: topic)
            }
            for topic in fanout.keys.sorted() { fanout[topic]?.remove(peer) }
            sendSubscriptions(to: peer, &effects)
        }
        for topic in topics where peerStates[peer]!.topics.count < config.maximumTopicsPerPeer {
            peerStates[peer]!.topics.insert(topic)
        }
    }

    private mutating func handleUnsubscribe(_ topics: [Topic], from peer: GossipPeer) {
        for topic in topics {
            peerStates[peer]!.topics.remove(topic)
            if meshes[topic]?.remove(peer) != nil { scores.prune(peer, topic: topic) }
            fanout[topic]?.remove(peer)
        }
    }

    // MARK: - Messages

    private mutating func handlePublish(
        topic: Topic, data: [UInt8], from peer: GossipPeer, now: Instant,
        validate: (Topic, [UInt8]) -> ValidationResult, _ effects: inout [GossipEffect]
    ) {
        counters.messagesReceived += 1
        peerStates[peer]!.messages += 1
        guard peerStates[peer]!.messages <= config.maximumMessagesPerPeer else {
            counters.rateLimitedDrops += 1
            return
        }
        guard meshes[topic] != nil else {
            counters.unsubscribedDrops += 1
            return
        }
        let id = MessageID(topic: topic, data: data)
        if let entry = seen.noteDuplicate(id) {
            counters.duplicates += 1
            cache.noteHolder(id, peer)
            pendingValidations[id]?.holders.insert(peer)
            if entry.rejected {
                counters.invalid += 1
                scores.invalidDelivery(peer, topic: topic)
                checkGraylist(peer, &effects)
            }
            return
        }
        // Content addressed: whoever promised this id has now kept the promise, and has the message.
        let holders = Set(promises.fulfil(id))
        guard data.count <= config.maximumDataSize else {
            reject(id, topic: topic, from: peer, now: now, &effects)
            return
        }
        switch validate(topic, data) {
        case .reject:
            reject(id, topic: topic, from: peer, now: now, &effects)
        case .ignore:
            seen.insert(id, rejected: false, now: now)
            counters.ignored += 1
        case .accept:
            seen.insert(id, rejected: false, now: now)
            deliver(id, topic: topic, data: data, from: peer, holders: holders, &effects)
        case .pending:
            guard pendingValidations.count < config.maximumPendingValidations else {
                counters.validationsShed += 1  // not marked seen: a later copy is validated again
                return
            }
            seen.insert(id, rejected: false, now: now)
            counters.validationsDeferred += 1
            pendingValidations[id] = PendingValidation(
                topic: topic, data: data, source: peer, holders: holders.union([peer]),
                expiresAt: now + config.validationTimeout)
        }
    }

    /// The validator's answer to a message it deferred (`ValidationResult.pending`): accepted, it
    /// is delivered and forwarded to the mesh (except the peers that sent it copies); rejected, its
    /// first sender is penalised as for a synchronous rejection; ignored, it is dropped. An unknown
    /// id (answered already, timed out) or a `.pending` answer changes nothing.
    public mutating func completeValidation(
        _ id: MessageID, _ result: ValidationResult, now: Instant
    ) -> [GossipEffect] {
        start(now)
        guard result != .pending, let waiting = pendingValidations.removeValue(forKey: id) else { return [] }
        var effects: [GossipEffect] = []
        switch result {
        case .accept:
            deliver(
                id, topic: waiting.topic, data: waiting.data, from: waiting.source, holders: waiting.holders, &effects)
        case .reject:
            seen.markRejected(id)
            counters.invalid += 1
            if peerStates[waiting.source] != nil {
                scores.invalidDelivery(waiting.source, topic: waiting.topic)
                checkGraylist(waiting.source, &effects)
            }
        case .ignore, .pending:
            counters.ignored += 1
        }
        return effects
    }

    /// Delivers a valid message and forwards it to our mesh for its topic, except to `holders`.
    private mutating func deliver(
        _ id: MessageID, topic: Topic, data: [UInt8], from peer: GossipPeer, holders: Set<GossipPeer>,
        _ effects: inout [GossipEffect]
    ) {
        cache.put(id, topic: topic, data: data)
        cache.noteHolder(id, peer)
        if peerStates[peer] != nil { scores.firstDelivery(peer, topic: topic) }
        counters.delivered += 1
        effects.append(.deliver(topic: topic, data: data, id: id, from: peer))
        let frame = GossipMessage.publish(topic: topic, data: data).encoded()
        for target in sorted(meshes[topic] ?? []) where target != peer && !holders.contains(target) {
            effects.append(.send(frame, to: target))
            counters.forwarded += 1
        }
    }

    /// Drops deferred messages whose validator did not answer in time (as ignored).
    mutating func expirePendingValidations(now: Instant) {
        guard !pendingValidations.isEmpty else { return }
        for (id, waiting) in pendingValidations where waiting.expiresAt <= now {
            pendingValidations.removeValue(forKey: id)
            counters.validationTimeouts += 1
        }
    }

    private mutating func reject(
        _ id: MessageID, topic: Topic, from peer: GossipPeer, now: Instant, _ effects: inout [GossipEffect]
    ) {
        seen.insert(id, rejected: true, now: now)
        counters.invalid += 1
        scores.invalidDelivery(peer, topic: topic)
        checkGraylist(peer, &effects)
    }

    // MARK: - Gossip

    private mutating func handleIHave(
        topic: Topic, ids: [MessageID], from peer: GossipPeer, now: Instant,
        rng: inout some RandomNumberGenerator, _ effects: inout [GossipEffect]
    ) {
        counters.ihaveReceived += 1
        peerStates[peer]!.ihaves += 1
        let state = peerStates[peer]!
        let budget = config.maximumIHaveLength - state.idsAsked
        guard scores.score(of: peer) >= config.thresholds.gossipThreshold,
            state.ihaves <= config.maximumIHaveMessages, budget > 0, meshes[topic] != nil
        else {
            counters.ihaveIgnored += 1
            return
        }
        var wanted: [MessageID] = []
        var listed = Set<MessageID>()
        for id in ids where !seen.contains(id) && listed.insert(id).inserted { wanted.append(id) }
        guard !wanted.isEmpty else { return }
        if wanted.count > budget {
            wanted.shuffle(using: &rng)
            wanted.removeLast(wanted.count - budget)
        }
        peerStates[peer]!.idsAsked += wanted.count
        send(.iwant(wanted), to: peer, &effects)
        counters.iwantSent += 1
        // One id per IWANT is tracked (as go-libp2p does): a peer that cannot serve a single
        // message in time is not punished once per id.
        let tracked = wanted[Int.random(in: 0..<wanted.count, using: &rng)]
        promises.add(tracked, peer: peer, deadline: now + config.iwantFollowUpTime)
    }

    private mutating func handleIWant(_ ids: [MessageID], from peer: GossipPeer, _ effects: inout [GossipEffect]) {
        counters.iwantReceived += 1
        guard scores.score(of: peer) >= config.thresholds.gossipThreshold else {
            counters.iwantRefused += UInt64(ids.count)
            return
        }
        var answered = Set<MessageID>()
        for id in ids where answered.insert(id).inserted {
            guard peerStates[peer]!.served < config.maximumIWantServed, let entry = cache[id],
                cache.noteServed(id, to: peer) <= config.gossipRetransmission
            else {
                counters.iwantRefused += 1
                continue
            }
            peerStates[peer]!.served += 1
            send(.publish(topic: entry.topic, data: entry.data), to: peer, &effects)
            counters.iwantServed += 1
        }
    }

    // MARK: - Mesh control

    private mutating func handleGraft(
        _ topic: Topic, from peer: GossipPeer, now: Instant, _ effects: inout [GossipEffect]
    ) {
        counters.graftsReceived += 1
        // A GRAFT for a topic we have not joined is ignored (no PRUNE: nothing to reflect).
        guard let mesh = meshes[topic], !mesh.contains(peer) else { return }
        if let until = backoffs[topic]?[peer], now < until {
            counters.graftsInBackoff += 1
            counters.graftsRefused += 1
            // Grafting right after our PRUNE (within graftFloodThreshold of it) costs double.
            let floodCutoff = until - config.pruneBackoff + config.graftFloodThreshold
            penalise(peer, now < floodCutoff ? 2 : 1, &effects)
            sendPrune(topic, to: peer, backoff: config.pruneBackoff, now: now, &effects)
            return
        }
        if scores.score(of: peer) < 0 || (mesh.count >= config.dHigh && !isOutbound(peer)) {
            counters.graftsRefused += 1
            sendPrune(topic, to: peer, backoff: config.pruneBackoff, now: now, &effects)
            return
        }
        meshes[topic]!.insert(peer)
        scores.graft(peer, topic: topic, now: now)
    }

    private mutating func handlePrune(_ topic: Topic, backoffSeconds: UInt16, from peer: GossipPeer, now: Instant) {
        counters.prunesReceived += 1
        guard meshes[topic] != nil else { return }
        if meshes[topic]!.remove(peer) != nil { scores.prune(peer, topic: topic) }
        let requested = backoffSeconds > 0 ? Duration.seconds(Int(backoffSeconds)) : config.pruneBackoff
        addBackoff(peer, topic: topic, until: now + min(requested, config.maximumBackoff))
    }
}
