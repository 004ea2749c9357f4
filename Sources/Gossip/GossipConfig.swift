// Router and peer-score parameters. Defaults follow GossipSub v1.1 (D = 6, heartbeat 1 s, ...)
// with caps sized for Umbra's topics: a few messages per second per topic, each at most 1000 bytes.

import UmbraCore

public struct GossipConfig: Sendable {
    // MARK: Mesh degree

    /// Target mesh size per topic.
    public var d = 6
    /// Below this the heartbeat grafts peers up to `d`.
    public var dLow = 4
    /// Above this the heartbeat prunes peers down to `d`; inbound GRAFTs are refused at this size.
    public var dHigh = 12
    /// Least number of non-mesh peers that get IHAVE gossip per topic per heartbeat.
    public var dLazy = 6
    /// Share of the eligible non-mesh peers that get gossip, when more than `dLazy`.
    public var gossipFactor = 0.25
    /// Best-scored mesh peers kept when pruning an oversized mesh.
    public var dScore = 4
    /// Least number of outbound (we dialed) peers kept in a mesh of `dLow` or more.
    public var dOut = 2

    // MARK: Timing

    public var heartbeatInterval: Duration = .seconds(1)
    /// A fanout set (topic we publish to without joining) is forgotten after this long unused.
    public var fanoutTTL: Duration = .seconds(60)
    /// Heartbeats a message stays in the message cache (and can be asked for with IWANT).
    public var historyLength = 5
    /// Newest heartbeats of the cache whose ids are announced in IHAVE.
    public var gossipWindow = 3
    /// How long a message id is remembered as seen.
    public var seenTTL: Duration = .seconds(120)
    /// Backoff sent with (and honoured after) a PRUNE.
    public var pruneBackoff: Duration = .seconds(60)
    /// Backoff after leaving a topic: a rejoin soon after is fine.
    public var unsubscribeBackoff: Duration = .seconds(10)
    /// Longest backoff accepted from a peer's PRUNE.
    public var maximumBackoff: Duration = .seconds(3600)
    /// A GRAFT this soon after our PRUNE costs a second behaviour penalty.
    public var graftFloodThreshold: Duration = .seconds(10)
    /// An IWANT not answered within this time is a broken promise.
    public var iwantFollowUpTime: Duration = .seconds(3)
    /// Opportunistic grafting runs every this many heartbeats (0 = off).
    public var opportunisticGraftTicks = 60
    /// Peers grafted per topic by one opportunistic graft.
    public var opportunisticGraftPeers = 2

    // MARK: Publishing

    /// Our own messages go to every subscribed peer above the publish threshold, not just the mesh.
    public var floodPublish = true
    /// Most data bytes per message (at most `GossipMessage.maximumDataSize`).
    public var maximumDataSize = GossipMessage.maximumDataSize

    // MARK: Caps

    /// Most connected peers; `addPeer` refuses more.
    public var maximumPeers = 512
    /// Most topics remembered per peer (further SUBSCRIBEs are ignored).
    public var maximumTopicsPerPeer = 32
    /// Most ids in the seen cache (the oldest go first).
    public var maximumSeen = 16_384
    /// Most messages in the message cache (the oldest go first).
    public var maximumCachedMessages = 4096
    /// Most IHAVE messages accepted from one peer per heartbeat.
    public var maximumIHaveMessages = 10
    /// Most ids announced to one peer per heartbeat, and asked for from one peer per heartbeat.
    public var maximumIHaveLength = 320
    /// Most messages served to one peer's IWANTs per heartbeat.
    public var maximumIWantServed = 320
    /// Times one message is served to one peer through IWANT.
    public var gossipRetransmission = 3
    /// Most published messages accepted from one peer per heartbeat; more are dropped unvalidated.
    public var maximumMessagesPerPeer = 256
    /// Most outstanding IWANT promises tracked.
    public var maximumPromises = 4096
    /// Most (topic, peer) backoff entries.
    public var maximumBackoffs = 4096
    /// Most messages waiting for a validator that answers later (`ValidationResult.pending`);
    /// beyond it a deferred message is dropped unseen, so a later copy gets another chance.
    public var maximumPendingValidations = 1024
    /// A deferred message whose validator has not answered after this is ignored.
    public var validationTimeout: Duration = .seconds(10)

    // MARK: Score

    public var score = PeerScoreParams()
    public var thresholds = PeerScoreThresholds()

    public init() {}
}

/// Weights of one topic's share of a peer's score (GossipSub v1.1 P1, P2, P4). P3/P3b (mesh
/// delivery deficit) are left out: Umbra's topics carry too few messages for a delivery rate to
/// say anything about a peer.
public struct TopicScoreParams: Sendable {
    /// Multiplies the topic's whole contribution.
    public var topicWeight = 1.0
    /// P1: time in mesh, counted in quanta up to the cap (0.01 × 600 s = at most +6).
    public var timeInMeshWeight = 0.01
    public var timeInMeshQuantum: Duration = .seconds(1)
    public var timeInMeshCap = 600.0
    /// P2: messages this peer delivered first (at most +10; halves in about 70 s).
    public var firstMessageDeliveriesWeight = 1.0
    public var firstMessageDeliveriesDecay = 0.99
    public var firstMessageDeliveriesCap = 10.0
    /// P4: messages the validator rejected, squared (1 → -10, 2 → -40, 3 → -90; halves in about
    /// 4 minutes).
    public var invalidMessageDeliveriesWeight = -10.0
    public var invalidMessageDeliveriesDecay = 0.997

    public init() {}
}

/// GossipSub v1.1 peer-score parameters.
public struct PeerScoreParams: Sendable {
    /// Per-topic weights; topics not listed use `defaultTopic`.
    public var topics: [Topic: TopicScoreParams] = [:]
    public var defaultTopic = TopicScoreParams()
    /// Caps the sum of the topic contributions from above (negative sums are not capped).
    public var topicScoreCap = 20.0
    /// P6: peers sharing a colocation key (an IP) beyond the threshold each get
    /// `weight × surplus²` (3 on one address → -10 each, 4 → -40, 5 → -90).
    public var ipColocationFactorWeight = -10.0
    public var ipColocationFactorThreshold = 2
    /// P7: misbehaviour (GRAFT during backoff, broken IWANT promises, malformed messages), counted
    /// beyond the threshold and squared (4 → -20, 6 → -80 = graylisted); halves in about 70 s.
    public var behaviourPenaltyWeight = -5.0
    public var behaviourPenaltyThreshold = 2.0
    public var behaviourPenaltyDecay = 0.99
    /// Counters are multiplied by their decay this often; values below `decayToZero` become 0.
    public var decayInterval: Duration = .seconds(1)
    public var decayToZero = 0.01
    /// A disconnected peer's non-positive score is kept this long, so reconnecting does not reset it.
    public var retainScore: Duration = .seconds(300)
    /// Most disconnected peers whose score is kept (the least negative are forgotten first).
    public var maximumRetained = 1024

    public init() {}

    public func params(for topic: Topic) -> TopicScoreParams { topics[topic] ?? defaultTopic }
}

/// Score thresholds (GossipSub v1.1): `graylist ≤ publish ≤ gossip ≤ 0`.
public struct PeerScoreThresholds: Sendable {
    /// Below this no IHAVE/IWANT is sent to or accepted from the peer.
    public var gossipThreshold = -10.0
    /// Below this our own messages are not flood-published to the peer.
    public var publishThreshold = -50.0
    /// Below this every message from the peer is dropped before it is even decoded.
    public var graylistThreshold = -80.0
    /// Opportunistic grafting runs when a mesh's median score is below this.
    public var opportunisticGraftThreshold = 1.0

    public init() {}
}
