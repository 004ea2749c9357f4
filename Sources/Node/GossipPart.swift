// The gossip part: the node's GossipSub router (Sources/Gossip), its peers, and a per-topic
// validator registry (docs/architecture.md §Parts, DESIGN §4).
//
// - Topics. Every topic some part declares (`NodePart.gossipTopics`) is joined at start; a message
//   on it is handed to its owner as `NodeNotice.gossipValidate` and held, neither delivered nor
//   forwarded, until the owner answers with `NodeNotice.gossipVerdict` — at once (proposals) or
//   later (the ledger checks certificates against account state first). A topic nobody owns is
//   not joined, and its messages are dropped unvalidated.
// - Peers. Every kept peer (bootstrap, gossip neighbour, relay) joins the router when its session
//   comes up; a peer that sends us gossip first joins as inbound and is kept too, so that its loss
//   is noticed. The part keeps `outboundGossipPeers` outbound neighbours, picked at random from the
//   DHT routing table; a neighbour that does not come up within `gossipDialTimeout` is replaced.
//   Private and loopback peers share no IP-colocation key when `exemptPrivateColocation` is set.

import Gossip
import Kademlia
import UmbraCore

/// The gossip part's counters (besides the router's own).
public struct GossipPartCounters: Sendable, Equatable {
    /// Outbound neighbours dialled, and given up because they did not come up in time.
    public var dials: UInt64 = 0
    public var dialsAbandoned: UInt64 = 0
    /// Messages on an owned topic handed to their owner, and verdicts received.
    public var validationRequests: UInt64 = 0
    public var verdicts: UInt64 = 0
    /// Publishes a part asked for that were larger than one gossip message, dropped.
    public var publishesTooLarge: UInt64 = 0
    public init() {}
}

public struct GossipPart: NodePart {
    public static let channels: [FrameChannel] = [.gossip]

    let config: MarketConfig
    /// Topic → whether some part owns it (the registry; owners answer `gossipValidate`).
    let topics: Set<Topic>
    public internal(set) var router: GossipRouter
    public internal(set) var counters = GossipPartCounters()
    /// Outbound neighbours dialled and not up yet, with when they were dialled.
    var pendingDials: [PublicKey: Instant] = [:]
    var nextMaintenance: Instant?
    /// The mesh sizes last reported per topic (`gossipMeshChanged`).
    var reportedMesh: [Topic: Int] = [:]

    init(identity: Identity, config: MarketConfig, topics: [Topic]) {
        precondition(Set(topics).count == topics.count, "two parts own one gossip topic")
        self.config = config
        self.topics = Set(topics)
        self.router = GossipRouter(localPeer: identity.publicKey, config: config.gossip)
    }

    public var nextDeadline: Instant? {
        switch (router.nextDeadline, nextMaintenance) {
        case (let a?, let b?): min(a, b)
        case (let a, let b): a ?? b
        }
    }

    public mutating func handle(
        _ event: PartEvent, node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        switch event {
        case .start:
            for topic in topics.sorted() { apply(router.subscribe(topic, now: now, rng: &rng), &node, now, &rng) }
            nextMaintenance = now + config.maintenanceInterval
        case .tick:
            apply(router.tick(now: now, rng: &rng), &node, now, &rng)
            if let due = nextMaintenance, due <= now {
                nextMaintenance = now + config.maintenanceInterval
                maintainNeighbours(&node, now: now, rng: &rng)
            }
            reportMeshes(&node)
        case .peerUp(let key, let path):
            pendingDials.removeValue(forKey: key)
            // On-demand sessions (DHT queries, dialogues) do not gossip; kept peers do.
            guard node.isKept(key) else { return }
            addPeer(key, endpoint: path.directEndpoint, outbound: true, &node, now: now, rng: &rng)
        case .peerDown(let key, _):
            pendingDials.removeValue(forKey: key)
            if router.hasPeer(key) {
                router.removePeer(key, now: now)
                node.notify(.gossipPeerRemoved(key))
            }
            // A gossip neighbour is replaced rather than redialled; an inbound one is let go.
            node.removeDialTarget(key, kind: .gossip)
            if !node.isKept(key) { node.sessions.setPersistent(key, false) }
        case .frame(_, let payload, let key):
            receive(payload, from: key, &node, now: now, rng: &rng)
        case .notice(.gossipPublish(let topic, let data)):
            // A message larger than the wire allows would never spread (every receiver drops it).
            guard data.count <= GossipMessage.maximumDataSize else {
                counters.publishesTooLarge += 1
                return
            }
            apply(router.publish(data, topic: topic, now: now, rng: &rng).effects, &node, now, &rng)
        case .notice(.gossipVerdict(let id, let result)):
            counters.verdicts += 1
            apply(router.completeValidation(id, result, now: now), &node, now, &rng)
        case .pathChanged, .notice:
            break
        }
    }

    /// A gossip frame: an unknown sender joins as an inbound peer; messages on owned topics are
    /// handed to their owners.
    private mutating func receive(
        _ payload: [UInt8], from key: PublicKey, _ node: inout NodeKernel, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        if !router.hasPeer(key) {
            addPeer(
                key, endpoint: node.sessions.path(of: key)?.directEndpoint, outbound: false, &node, now: now,
                rng: &rng)
            guard router.hasPeer(key) else { return }  // refused (peer cap)
            node.sessions.setPersistent(key, true)
        }
        var deferred: [(Topic, [UInt8])] = []
        let owned = topics
        let effects = router.receive(payload, from: key, now: now, rng: &rng) { topic, data in
            guard owned.contains(topic) else { return .reject }
            deferred.append((topic, data))
            return .pending
        }
        for (topic, data) in deferred {
            let id = MessageID(topic: topic, data: data)
            guard router.isPendingValidation(id) else { continue }  // shed: the queue was full
            counters.validationRequests += 1
            node.notify(.gossipValidate(topic, data, id, from: key))
        }
        apply(effects, &node, now, &rng)
    }

    private mutating func addPeer(
        _ key: PublicKey, endpoint: Endpoint?, outbound: Bool, _ node: inout NodeKernel, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        guard !router.hasPeer(key) else { return }
        apply(
            router.addPeer(key, colocationKey: colocationKey(endpoint), outbound: outbound, now: now), &node, now,
            &rng)
        if router.hasPeer(key) { node.notify(.gossipPeerAdded(key)) }
    }

    /// Tells the topic owners when a mesh changes size (a provider publishes again as its mesh
    /// forms: a publish before the mesh exists reaches only direct peers).
    private mutating func reportMeshes(_ node: inout NodeKernel) {
        for topic in topics.sorted() {
            let size = router.mesh(topic).count
            guard reportedMesh[topic] != size else { continue }
            reportedMesh[topic] = size
            node.notify(.gossipMeshChanged(topic, meshSize: size, peers: router.peerCount))
        }
    }

    /// Keeps `outboundGossipPeers` outbound neighbours: replaces those that never came up and dials
    /// random DHT contacts for the rest.
    private mutating func maintainNeighbours(
        _ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        for (key, dialled) in pendingDials.sorted(by: { NodeKernel.keyOrder($0.key, $1.key) })
        where now.since(dialled) >= config.gossipDialTimeout {
            pendingDials.removeValue(forKey: key)
            counters.dialsAbandoned += 1
            node.removeDialTarget(key, kind: .gossip)
            if !node.sessions.isEstablished(key) { node.sessions.removePeer(key) }
        }
        let outbound = router.peerInfo().filter(\.outbound).count + pendingDials.count
        var wanted = config.outboundGossipPeers - outbound
        guard wanted > 0 else { return }
        let current = Set(router.peers)
        var candidates = node.dht.table.contacts.filter {
            !current.contains($0.publicKey) && !node.isKept($0.publicKey) && $0.publicKey != node.identity.publicKey
        }
        candidates.shuffle(using: &rng)
        for contact in candidates {
            guard wanted > 0 else { break }
            wanted -= 1
            counters.dials += 1
            pendingDials[contact.publicKey] = now
            node.addDialTarget(
                DialTarget(publicKey: contact.publicKey, endpoint: contact.endpoint), kind: .gossip, now: now,
                rng: &rng)
        }
    }

    /// The IP-colocation key of an endpoint: its IPv4 address or IPv6 /64; none without one (a
    /// relayed peer) and (when exempt) for private and loopback addresses.
    private func colocationKey(_ endpoint: Endpoint?) -> [UInt8]? {
        guard let endpoint else { return nil }
        let address = endpoint.address
        if config.exemptPrivateColocation, address.isLoopback || address.isPrivate || address.isLinkLocal {
            return nil
        }
        let bytes = address.bytes
        return bytes.count == 4 ? bytes : Array(bytes.prefix(8))
    }

    private mutating func apply(
        _ effects: [GossipEffect], _ node: inout NodeKernel, _ now: Instant, _ rng: inout some RandomNumberGenerator
    ) {
        for effect in effects {
            switch effect {
            case .send(let bytes, let peer):
                node.sendFrame(.gossip, bytes, to: peer, now: now, rng: &rng)
            case .deliver:
                break  // validated by the topic's owner already
            case .peerGraylisted(let peer):
                node.emit(.frameRejected(peer, reason: "gossip peer graylisted (score too low)"))
            }
        }
    }
}
