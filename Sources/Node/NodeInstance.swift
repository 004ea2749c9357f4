// NodeInstance: one Umbra node as a pure value. A router over parts (NodePart.swift): the kernel
// (sessions, the DHT, dial targets, pings) and the gossip, market, dialogue, tunnel, ledger and
// relay parts; frames go to the part that declared their channel, and commands
// (Commands.swift) complete with `.completed`. Two shells drive it: NodeRuntime (real UDP) and
// NetSim (virtual links).
//
// Each call takes `now` and an RNG and returns `[NodeEffect]`; after every call the shell re-arms
// one timer at `nextDeadline` and calls `tick` when it fires.

import Gossip
import Kademlia
import Proposals
import Relay
import Sessions
import UmbraCore

/// What the shell must do.
public enum NodeEffect: Sendable, Equatable {
    case send([UInt8], to: Endpoint)
    /// Write this IP packet to the TUN device (a relayed tunnel packet, or an ICMP reply).
    case tunnelPacket([UInt8])
    /// A command (`NodeInstance.submit`) is over.
    case completed(CommandID, CommandResult)
    case event(NodeEvent)
    /// Perform this storage request and answer it through `storageCompleted` (StoragePart.swift).
    case storage(StorageRequest)
    /// Perform this host change and answer it through `hostCompleted` (HostRequests.swift).
    case host(HostRequest)
}

/// Things worth logging or tracing. They carry no obligations for the shell.
public enum NodeEvent: Sendable, Equatable, CustomStringConvertible {
    case peerUp(PublicKey, PeerPath)
    case peerDown(PublicKey)
    case peerUnreachable(PublicKey)
    case endpointChanged(PublicKey, PeerPath)
    case pong(PublicKey, nonce: UInt64, rtt: Duration)
    case frameRejected(PublicKey, reason: String)
    case lookupFinished(LookupReport)
    case putFinished(PutReport)
    case observedAddress(Endpoint, reporter: PublicKey)
    case dialogue(DialogueEvent)

    public var description: String {
        switch self {
        case .peerUp(let key, let endpoint): "peer-up \(NodeAddress(publicKey: key)) \(endpoint)"
        case .peerDown(let key): "peer-down \(NodeAddress(publicKey: key))"
        case .peerUnreachable(let key): "peer-unreachable \(NodeAddress(publicKey: key))"
        case .endpointChanged(let key, let endpoint): "endpoint-changed \(NodeAddress(publicKey: key)) \(endpoint)"
        case .pong(let key, let nonce, let rtt):
            "pong \(NodeAddress(publicKey: key)) nonce=\(nonce) rtt=\(rtt.nanosecondsClamped / 1000)us"
        case .frameRejected(let key, let reason): "frame-rejected \(NodeAddress(publicKey: key)) \(reason)"
        case .lookupFinished(let report):
            "lookup-finished \(report.target) found=\(report.found) hops=\(report.hops) "
                + "queries=\(report.queries) latency=\(report.latency.nanosecondsClamped / 1_000_000)ms"
        case .putFinished(let report): "put-finished \(report.key) stored=\(report.stored)/\(report.attempted)"
        case .observedAddress(let endpoint, let key): "observed-address \(endpoint) by \(NodeAddress(publicKey: key))"
        case .dialogue(let event): "dialogue \(event)"
        }
    }
}

/// A peer this node keeps a session with on its own initiative (today: the bootstrap list).
public struct DialTarget: Sendable, Equatable {
    public var publicKey: PublicKey
    public var endpoint: Endpoint

    public init(publicKey: PublicKey, endpoint: Endpoint) {
        self.publicKey = publicKey
        self.endpoint = endpoint
    }
}

/// Node-level settings.
public struct NodeConfig: Sendable {
    public var sessions = SessionConfig()
    /// Peers to connect to at start and to keep connected.
    public var bootstrap: [DialTarget] = []
    /// Each established peer is pinged this often (RTT estimate, liveness).
    public var pingInterval: Duration = .seconds(15)
    /// A lost or unreachable dial target is retried after this, doubling up to `redialMaximum`.
    public var redialInitial: Duration = .seconds(1)
    public var redialMaximum: Duration = .seconds(60)
    /// Outstanding pings remembered at most (oldest forgotten first).
    public var maximumOutstandingPings = 1024
    public var dht = DHTConfig()
    /// Extra DHT bootstrap contacts that are not kept connected (e.g. a saved routing table).
    public var dhtSeeds: [DialTarget] = []
    /// Endpoints this node is reachable at, published in its peer record (empty: none published).
    public var advertisedEndpoints: [Endpoint] = []
    /// Gossip, proposals and the provider role (GossipPart.swift, MarketPart.swift).
    public var market = MarketConfig()
    /// Relaying, reservations, reachability and hole punching (RelayPart.swift).
    public var relay = RelayNodeConfig()
    /// The consumer↔provider dialogue (DialoguePart.swift).
    public var dialogue = DialogueNodeConfig()
    /// The tunnel data plane (TunnelPart.swift).
    public var tunnel = TunnelNodeConfig()
    /// Persistence of DHT records and routing table through storage requests (StoragePart.swift).
    public var storage = StorageNodeConfig()
    /// The ledger: genesis, validator role, bounds (LedgerPart.swift). Off without a genesis.
    public var ledger = LedgerNodeConfig()

    public init() {}
}

/// Counters of the node layer (frames), next to the session layer's datagram counters.
public struct NodeCounters: Sendable, Equatable {
    public var framesReceived: UInt64 = 0
    public var framesRejected: UInt64 = 0
    public var pingsSent: UInt64 = 0
    public var pongsReceived: UInt64 = 0
    public var redials: UInt64 = 0
    /// 0-RTT frames (early data in a handshake initiation) on a channel not meant for them: dropped.
    public var earlyFramesRejected: UInt64 = 0
    public init() {}
}

/// A peer as `umbra peers` shows it.
public struct PeerStatus: Sendable, Equatable {
    public var session: PeerSnapshot
    public var isBootstrap: Bool
    public var rtt: Duration?
    public var nextRedial: Instant?
}

public struct NodeInstance: Sendable {
    /// What every part shares: identity, settings, sessions, the DHT, dial targets, RTTs.
    public internal(set) var kernel: NodeKernel
    // The parts (NodeInstance+Parts.swift lists them).
    public internal(set) var gossip: GossipPart
    public internal(set) var market: MarketPart
    public internal(set) var dialogue: DialoguePart
    public internal(set) var tunnel: TunnelPart
    public internal(set) var ledger: LedgerPart
    public internal(set) var relay: RelayPart
    public internal(set) var storage: StoragePart
    /// Commands in flight (NodeInstance+Commands.swift).
    var commands: [CommandID: CommandFlow] = [:]
    var outstandingPings: [UInt64: (peer: PublicKey, sentAt: Instant)] = [:]
    var pingOrder: [UInt64] = []
    var nextPingRound: Instant?

    public typealias DialKind = NodeKernel.DialKind
    typealias Dial = NodeKernel.Dial

    public var identity: Identity { kernel.identity }
    public var config: NodeConfig { kernel.config }
    public internal(set) var sessions: SessionManager {
        get { kernel.sessions }
        _modify { yield &kernel.sessions }
    }
    public internal(set) var dht: DHTNode {
        get { kernel.dht }
        _modify { yield &kernel.dht }
    }
    public internal(set) var counters: NodeCounters {
        get { kernel.counters }
        _modify { yield &kernel.counters }
    }
    var dials: [PublicKey: Dial] {
        get { kernel.dials }
        _modify { yield &kernel.dials }
    }
    var rtts: [PublicKey: Duration] {
        get { kernel.rtts }
        _modify { yield &kernel.rtts }
    }

    public init(identity: Identity, config: NodeConfig, now: Instant = .zero, rng: inout some RandomNumberGenerator) {
        self.kernel = NodeKernel(identity: identity, config: config, now: now, rng: &rng)
        self.gossip = GossipPart(identity: identity, config: config.market, topics: Self.gossipTopics)
        self.market = MarketPart(identity: identity, config: config)
        self.relay = RelayPart(config: config, now: now)
        self.storage = StoragePart(config: config)
        self.dialogue = DialoguePart(identity: identity, config: config)
        self.tunnel = TunnelPart(config: config)
        self.ledger = LedgerPart(identity: identity, config: config)
        for target in config.bootstrap where target.publicKey != identity.publicKey {
            kernel.dials[target.publicKey] = Dial(target: target, backoff: config.redialInitial, nextAttempt: nil)
        }
    }

    // MARK: - Inputs

    /// Dials every bootstrap peer.
    public mutating func start(now: Instant, rng: inout some RandomNumberGenerator) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        for key in dials.keys.sorted(by: Self.keyOrder) {
            let endpoint = dials[key]!.target.endpoint
            absorb(sessions.connect(key, endpoint: endpoint, now: now, rng: &rng), now: now, rng: &rng, into: &effects)
        }
        nextPingRound = now + config.pingInterval
        let seeds = (config.bootstrap + config.dhtSeeds).map {
            NodeContact(publicKey: $0.publicKey, endpoint: $0.endpoint)
        }
        absorb(dht.bootstrap(seeds, now: now, rng: &rng), now: now, rng: &rng, into: &effects)
        broadcast(.start, now: now, rng: &rng, into: &effects)
        return effects
    }

    // MARK: - DHT commands

    /// Starts a DHT lookup; its report comes back as `.event(.lookupFinished)` with this id.
    public mutating func lookup(
        _ target: Key256, kind: LookupKind, now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> (id: UInt64, effects: [NodeEffect]) {
        let (id, dhtEffects) = dht.lookup(target, kind: kind, now: now, rng: &rng)
        var effects: [NodeEffect] = []
        absorb(dhtEffects, now: now, rng: &rng, into: &effects)
        return (id, effects)
    }

    /// Signs and stores a record of ours in the DHT; `.event(.putFinished)` reports with this id.
    public mutating func publish(
        kind: SignedRecord.Kind, key: Key256, value: [UInt8], now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> (id: UInt64, effects: [NodeEffect]) {
        let (id, dhtEffects) = dht.publish(kind: kind, key: key, value: value, now: now, rng: &rng)
        var effects: [NodeEffect] = []
        absorb(dhtEffects, now: now, rng: &rng, into: &effects)
        return (id, effects)
    }

    /// Handles one datagram from the network.
    public mutating func receive(
        _ datagram: [UInt8], from source: Endpoint, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        absorb(
            sessions.receive(datagram, from: .direct(source), now: now, rng: &rng), now: now, rng: &rng, into: &effects)
        return effects
    }

    /// Runs due timers.
    public mutating func tick(now: Instant, rng: inout some RandomNumberGenerator) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        absorb(sessions.tick(now: now, rng: &rng), now: now, rng: &rng, into: &effects)
        absorb(dht.tick(now: now, rng: &rng), now: now, rng: &rng, into: &effects)
        for key in dials.keys.sorted(by: Self.keyOrder) {
            guard let due = dials[key]!.nextAttempt, due <= now else { continue }
            dials[key]!.nextAttempt = nil
            counters.redials += 1
            let endpoint = dials[key]!.target.endpoint
            absorb(sessions.connect(key, endpoint: endpoint, now: now, rng: &rng), now: now, rng: &rng, into: &effects)
        }
        if let round = nextPingRound, round <= now {
            nextPingRound = now + config.pingInterval
            // Only the peers we keep (dial targets) are pinged; on-demand sessions (DHT contacts)
            // stay quiet and idle out.
            for key in dials.keys.sorted(by: Self.keyOrder) where sessions.isEstablished(key) {
                effects += ping(key, now: now, rng: &rng).effects
            }
        }
        broadcast(.tick, now: now, rng: &rng, into: &effects)
        commandsTick(now: now, rng: &rng, into: &effects)
        return effects
    }

    /// Adds a peer to keep connected (like a bootstrap entry) and dials it now. A peer already kept
    /// keeps its first kind.
    public mutating func addDialTarget(
        _ target: DialTarget, kind: DialKind = .peer, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        kernel.addDialTarget(target, kind: kind, now: now, rng: &rng)
        drain(now: now, rng: &rng, into: &effects)
        return effects
    }

    /// Stops keeping `key` connected (its session, if any, idles out on demand) unless it is a
    /// bootstrap peer.
    mutating func removeDialTarget(_ key: PublicKey, kind: DialKind) {
        kernel.removeDialTarget(key, kind: kind)
    }

    /// Sends a ping to `peer` (starting a handshake if needed). The pong comes back as an event.
    public mutating func ping(
        _ peer: PublicKey, now: Instant, rng: inout some RandomNumberGenerator
    ) -> (nonce: UInt64, effects: [NodeEffect]) {
        let nonce = rng.next()
        guard sessions.snapshot(of: peer) != nil else { return (nonce, []) }  // unknown peer: nothing to send
        outstandingPings[nonce] = (peer, now)
        pingOrder.append(nonce)
        if pingOrder.count > config.maximumOutstandingPings {
            outstandingPings.removeValue(forKey: pingOrder.removeFirst())
        }
        counters.pingsSent += 1
        var effects: [NodeEffect] = []
        absorb(
            sessions.send(Frame.ping(nonce: nonce).encoded(), to: peer, now: now, rng: &rng), now: now, rng: &rng,
            into: &effects)
        return (nonce, effects)
    }

    /// The earliest instant at which `tick` has work to do. The shell reads it after every read
    /// batch, so it allocates nothing, and the session layer (the one table that grows with the
    /// network) answers in O(1) from its timer heap; dial targets are a short, locally chosen list.
    public var nextDeadline: Instant? {
        var earliest = sessions.nextDeadline
        func consider(_ deadline: Instant?) {
            if let deadline, earliest.map({ deadline < $0 }) ?? true { earliest = deadline }
        }
        for dial in dials.values { consider(dial.nextAttempt) }
        consider(dht.nextDeadline)
        consider(nextPingRound)
        consider(partsDeadline)
        consider(commandsDeadline)
        return earliest
    }

    // MARK: - Status

    public var peers: [PeerStatus] {
        sessions.snapshots.map { snapshot in
            PeerStatus(
                session: snapshot, isBootstrap: dials[snapshot.publicKey] != nil, rtt: rtts[snapshot.publicKey],
                nextRedial: dials[snapshot.publicKey]?.nextAttempt)
        }
    }

    public var establishedPeerCount: Int { sessions.establishedCount }

    // MARK: - Routing session effects

    mutating func absorb(
        _ sessionEffects: [SessionEffect], now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        for effect in sessionEffects {
            switch effect {
            case .send(let bytes, .direct(let endpoint)):
                relay.noteDirectSend(bytes, to: endpoint)
                effects.append(.send(bytes, to: endpoint))
            case .send(let bytes, .relayed(let id)):
                // A relayed path never reaches the socket: the relay part sends it as a relay frame
                // (the session boundary's one hook, RelayPart.swift).
                relay.sendRelayed(bytes, path: id, node: &kernel, now: now, rng: &rng)
                drain(now: now, rng: &rng, into: &effects)
            case .established(let key, let path):
                kernel.dials[key]?.backoff = kernel.config.redialInitial
                dials[key]?.nextAttempt = nil
                effects.append(.event(.peerUp(key, path)))
                // A kept peer gets a first RTT sample right away, rather than at the next ping round.
                if dials[key] != nil { effects += ping(key, now: now, rng: &rng).effects }
                broadcast(.peerUp(key, path), now: now, rng: &rng, into: &effects)
            case .lost(let key):
                scheduleRedial(key, now: now, rng: &rng)
                rtts.removeValue(forKey: key)
                effects.append(.event(.peerDown(key)))
                broadcast(.peerDown(key, unreachable: false), now: now, rng: &rng, into: &effects)
            case .unreachable(let key):
                scheduleRedial(key, now: now, rng: &rng)
                absorb(dht.contactUnreachable(key, now: now), now: now, rng: &rng, into: &effects)
                effects.append(.event(.peerUnreachable(key)))
                broadcast(.peerDown(key, unreachable: true), now: now, rng: &rng, into: &effects)
            case .pathChanged(let key, let path):
                effects.append(.event(.endpointChanged(key, path)))
                broadcast(.pathChanged(key, path), now: now, rng: &rng, into: &effects)
            case .deliver(let key, let bytes):
                handleFrame(bytes, from: key, now: now, rng: &rng, into: &effects)
            case .deliverEarly(let key, let bytes):
                // Early data is replayable and comes from an unvalidated address: only the requests
                // that are sent as early data are accepted that way (`acceptsEarlyData`).
                guard Self.acceptsEarlyData(bytes) else {
                    counters.framesReceived += 1
                    counters.framesRejected += 1
                    counters.earlyFramesRejected += 1
                    effects.append(.event(.frameRejected(key, reason: "early data not allowed on this channel")))
                    continue
                }
                handleFrame(bytes, from: key, now: now, rng: &rng, into: &effects)
            }
        }
    }

    mutating func absorb(
        _ dhtEffects: [DHTEffect], now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        for effect in dhtEffects {
            switch effect {
            case .send(let message, let contact):
                if sessions.snapshot(of: contact.publicKey) == nil {
                    // A contact with no address (`Endpoint.unknown`: it reached us through a relay)
                    // is only ever answered on its session; without one there is nowhere to send.
                    guard contact.isShareable, sessions.addPeer(contact.publicKey, path: .direct(contact.endpoint))
                    else { continue }
                }
                absorb(
                    sessions.send(
                        Frame.dht(message).encoded(), to: contact.publicKey, early: message.isRequest,
                        now: now, rng: &rng), now: now, rng: &rng, into: &effects)
            case .lookupFinished(let report):
                effects.append(.event(.lookupFinished(report)))
                broadcast(.notice(.lookupFinished(report)), now: now, rng: &rng, into: &effects)
                commandsInput(.lookupFinished(report), now: now, rng: &rng, into: &effects)
            case .putFinished(let report):
                effects.append(.event(.putFinished(report)))
                commandsInput(.putFinished(report), now: now, rng: &rng, into: &effects)
            case .contactFailed(let contact):
                // An on-demand session to a contact that does not answer is not worth retrying.
                if dials[contact.publicKey] == nil, !sessions.isEstablished(contact.publicKey) {
                    sessions.removePeer(contact.publicKey)
                }
            case .observedAddress(let endpoint, let reporter):
                effects.append(.event(.observedAddress(endpoint, reporter: reporter)))
                broadcast(.notice(.observedAddress(endpoint, reporter: reporter)), now: now, rng: &rng, into: &effects)
            }
        }
        // The storage part's hook: what these effects changed in the record store goes to disk now.
        storage.dhtAbsorbed(&kernel, now: now)
        if !kernel.effects.isEmpty { effects += kernel.takeEffects() }
    }

    /// The frames a node sends as 0-RTT early data, and so the only ones it accepts that way: DHT
    /// requests, proposal sync requests (a direct proposal fetch) and the reachability dial-back
    /// probe. Everything else waits for the handshake to be confirmed.
    static func acceptsEarlyData(_ bytes: [UInt8]) -> Bool {
        guard let channel = bytes.first.flatMap(FrameChannel.init(rawValue:)) else { return false }
        let payload = Array(bytes.dropFirst())
        switch channel {
        case .dht:
            guard case .dht(let message)? = try? Frame(decoding: bytes) else { return false }
            return message.isRequest
        case .proposalSync:
            guard case .request? = try? ProposalSyncMessage(decoding: payload) else { return false }
            return true
        case .relay:
            guard case .dialBackProbe? = try? RelayMessage(decoding: payload) else { return false }
            return true
        case .ping, .pong, .gossip, .dialogue, .tunnel, .ledger, .ledgerSync:
            return false
        }
    }

    mutating func handleFrame(
        _ bytes: [UInt8], from key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        counters.framesReceived += 1
        let frame: Frame
        do { frame = try Frame(decoding: bytes) } catch {
            counters.framesRejected += 1
            effects.append(.event(.frameRejected(key, reason: error.description)))
            return
        }
        switch frame {
        case .ping(let nonce):
            absorb(
                sessions.send(Frame.pong(nonce: nonce).encoded(), to: key, now: now, rng: &rng), now: now, rng: &rng,
                into: &effects)
        case .dht(let message):
            // The DHT knows only real addresses: a relayed sender comes with none.
            guard let path = sessions.path(of: key) else { return }
            let joining = dht.table.count == 0
            absorb(
                dht.handle(message, from: key, at: path.directEndpoint, now: now, rng: &rng), now: now, rng: &rng,
                into: &effects)
            // The first contacts: what waited for the DHT (the relay part's peer record) can go out.
            if joining, dht.table.count > 0 { broadcast(.notice(.dhtJoined), now: now, rng: &rng, into: &effects) }
        case .pong(let nonce):
            guard let outstanding = outstandingPings[nonce], outstanding.peer == key else {
                counters.framesRejected += 1
                effects.append(.event(.frameRejected(key, reason: "unsolicited pong")))
                return
            }
            outstandingPings.removeValue(forKey: nonce)
            counters.pongsReceived += 1
            let rtt = now.since(outstanding.sentAt)
            rtts[key] = rtts[key].map { ($0 * 7 + rtt) / 8 } ?? rtt  // smoothed like TCP's SRTT
            effects.append(.event(.pong(key, nonce: nonce, rtt: rtt)))
            commandsInput(.pong(key, rtt), now: now, rng: &rng, into: &effects)
        case .opaque(let channel, let payload):
            handleChannel(channel, payload, from: key, now: now, rng: &rng, into: &effects)
        }
    }

    mutating func scheduleRedial(_ key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator) {
        guard var dial = dials[key] else { return }
        // Full jitter in [backoff/2, backoff] so that peers that failed together do not retry together.
        let half = dial.backoff.nanosecondsClamped / 2
        let wait = Duration.nanoseconds(half + Int64.random(in: 0...max(0, half), using: &rng))
        dial.nextAttempt = now + wait
        dial.backoff = min(dial.backoff * 2, config.redialMaximum)
        dials[key] = dial
    }

    static func keyOrder(_ lhs: PublicKey, _ rhs: PublicKey) -> Bool {
        NodeKernel.keyOrder(lhs, rhs)
    }
}
