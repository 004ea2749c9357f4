// Parts: the node is a router over parts (docs/architecture.md §"Parts"). A part is a value that
// owns one concern (gossip, the market, the dialogue, the tunnel, the ledger, the relay), declares the frame
// channels and gossip topics it owns, and reacts to a small set of events: start, tick, peer up
// and down, a frame on one of its channels, and typed notices from other parts. It acts only
// through the kernel it is handed (`NodeKernel`: sessions, the DHT, dial targets, notices,
// effects for the shell), so a part can be driven alone in a test, event in, effects out.
//
// Adding a part: one new file with the part's type, and one registration in
// NodeInstance+Parts.swift (its stored property and one line in each of the two part lists).

import Dialogue
import Gossip
import Kademlia
import Ledger
import Proposals
import Sessions
import UmbraCore

/// What a part reacts to.
public enum PartEvent: Sendable {
    /// The node starts (once, before anything else).
    case start
    /// Some deadline passed; each part runs what is due by `now`.
    case tick
    /// An authenticated session with a peer came up, on this path (`path.directEndpoint`: where it
    /// is, nil when relayed).
    case peerUp(PublicKey, PeerPath)
    /// A session went down (lost) or could not be established (unreachable).
    case peerDown(PublicKey, unreachable: Bool)
    /// An established session moved to another path (roaming, a punched hole, a new relayed handshake).
    case pathChanged(PublicKey, PeerPath)
    /// A frame on a channel this part declared, without its channel byte.
    case frame(FrameChannel, [UInt8], from: PublicKey)
    /// A notice from another part (or the kernel).
    case notice(NodeNotice)
}

/// A message from one part to the others, delivered in order after the sending part returns.
public enum NodeNotice: Sendable, Equatable {
    // The kernel's DHT.
    case lookupFinished(LookupReport)
    /// A peer's PONG says it sees us at this endpoint.
    case observedAddress(Endpoint, reporter: PublicKey)
    /// The DHT's routing table went from empty to holding contacts (records can be published).
    case dhtJoined
    // Gossip (GossipPart): requests to it...
    /// Publish `data` on `topic` (a topic the sender registered).
    case gossipPublish(Topic, [UInt8])
    /// The owner's verdict on a message it was asked to validate.
    case gossipVerdict(MessageID, ValidationResult)
    // ... and what it tells the owners of topics.
    /// Validate this message (answer with `gossipVerdict`, now or later).
    case gossipValidate(Topic, [UInt8], MessageID, from: PublicKey)
    /// A peer joined or left the gossip router.
    case gossipPeerAdded(PublicKey)
    case gossipPeerRemoved(PublicKey)
    /// Our mesh for a topic changed size (`peers`: every gossip peer).
    case gossipMeshChanged(Topic, meshSize: Int, peers: Int)
    // The relay side (RelayPart: reachability, reservations).
    /// How consumers reach this node changed (what a provider's proposal lists).
    case contactsChanged(ServiceProposal.Contacts)
    /// The market stored a new offer of `provider` (gossiped or fetched from it).
    case offerStored(PublicKey, serviceType: String)
    // Dialogue (DialoguePart) and tunnel (TunnelPart).
    /// A consumer's dialogue with `provider` opened, failed to open, or ended.
    case dialogueOpened(ClientSession)
    case dialogueFailed(provider: PublicKey, DialogueFailure)
    case dialogueEnded(provider: PublicKey)
    /// The provider admitted a consumer (its inner address is routed to it) / ended its session.
    case serving(ServerSession)
    case serviceEnded(ServerSession)
    /// What served consumers' tunnels carried since the last report.
    case tunnelUsage([TunnelUsage])
    /// The consumer's meters for its tunnel to `provider` (sent to it as a dialogue `status`).
    case tunnelMeters(provider: PublicKey, StatusReport)
    // Ledger (LedgerPart): providers' bonds (the market admits only bonded providers' offers)...
    case providerBonds(ProviderBonds)
    // ... and what committee members answered a vote request of ours.
    case ledgerVote(Vote, proof: ChannelPromise?, from: PublicKey)
    case ledgerRefusal(EntryHash, RefusalCode, from: PublicKey)
    /// A command's pending entry is on disk (or could not be written): its vote requests may leave.
    case ledgerOwnPersisted(CommandID, durable: Bool)
    /// The store read a `ledgerEntries` command asked for.
    case ledgerEntriesRead(CommandID, Result<[CertifiedEntry], CommandFailure>)
    // The shell.
    /// The shell answered a host request (HostRequests.swift).
    case hostCompleted(HostRequest, HostOutcome)
    /// The shell answered a storage request a part issued (`NodeKernel.requestStorage`).
    case storageCompleted(StorageCompletion)
}

/// One part of the node.
public protocol NodePart: Sendable {
    /// The frame channels whose frames go to this part (and to no other).
    static var channels: [FrameChannel] { get }
    /// The gossip topics this part validates (the gossip part subscribes to them and asks this
    /// part about every message on them, see `NodeNotice.gossipValidate`).
    static var gossipTopics: [Topic] { get }
    /// Reacts to one event; acts through `node`.
    mutating func handle(
        _ event: PartEvent, node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator)
    /// The earliest instant at which this part has work for a `tick`.
    var nextDeadline: Instant? { get }
}

extension NodePart {
    public static var gossipTopics: [Topic] { [] }
}

/// Something done to every part in turn (NodeInstance+Parts.swift lists the parts once).
protocol PartVisitor {
    mutating func visit<Part: NodePart>(_ part: inout Part, kernel: inout NodeKernel)
}

/// Something read from every part in turn.
protocol PartReader {
    mutating func read<Part: NodePart>(_ part: Part)
}
