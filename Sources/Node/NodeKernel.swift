// The kernel: what every part of the node shares and acts through — the identity and settings, the
// session layer, the DHT, the peers kept connected (dial targets), the RTTs measured by pings, and
// an outbox. A part never calls another part: what it asks of the sessions, the DHT or the other
// parts is queued in the outbox (`pending`), and the router (NodeInstance) carries it out, in order,
// once the part returns. What the shell must do is appended to `effects`.

import Kademlia
import Sessions
import UmbraCore

public struct NodeKernel: Sendable {
    /// Work queued by a part for the router, in the order it was asked for.
    enum Pending: Sendable {
        case session(SessionEffect)
        case dht(DHTEffect)
        case notice(NodeNotice)
        /// A ping to a peer (RTT sample, liveness), sent by the router (`NodeInstance.ping`).
        case ping(PublicKey)
    }

    /// Why a peer is kept connected: each part of the node manages its own dial targets.
    public enum DialKind: Sendable, Equatable {
        case bootstrap, gossip, relay, peer
    }

    struct Dial: Sendable {
        var target: DialTarget
        var kind: DialKind = .bootstrap
        var backoff: Duration
        var nextAttempt: Instant?
    }

    public let identity: Identity
    public let config: NodeConfig
    public internal(set) var sessions: SessionManager
    public internal(set) var dht: DHTNode
    public internal(set) var counters = NodeCounters()
    var dials: [PublicKey: Dial] = [:]
    var rtts: [PublicKey: Duration] = [:]
    var pending: [Pending] = []
    /// What the shell must do, gathered during one input.
    var effects: [NodeEffect] = []
    /// Host requests asked of the shell and not answered yet (HostRequests.swift).
    var hostRequests: [HostToken: HostRequest] = [:]
    private var nextHostToken: UInt64 = 1
    /// Storage requests parts issued and the shell has not answered (the DHT's are the storage
    /// part's, StoragePart.swift). Their tokens have the top bit set.
    var partStorage: Set<StorageToken> = []
    private var nextPartStorageToken: UInt64 = 1 << 63

    init(identity: Identity, config: NodeConfig, now: Instant, rng: inout some RandomNumberGenerator) {
        self.identity = identity
        self.config = config
        self.sessions = SessionManager(identity: identity, config: config.sessions)
        self.dht = DHTNode(
            identity: identity, networkID: config.sessions.networkID, config: config.dht, now: now, rng: &rng)
    }

    // MARK: - What parts may do

    /// Sends a frame on `channel` to `peer` over its session (handshaking first if needed).
    mutating func sendFrame(
        _ channel: FrameChannel, _ payload: [UInt8], to peer: PublicKey, early: Bool = false, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        let frame = Frame.opaque(channel, payload).encoded()
        for effect in sessions.send(frame, to: peer, early: early, now: now, rng: &rng) {
            pending.append(.session(effect))
        }
    }

    /// Pings `peer` (the router sends it and matches the pong, which updates the RTT).
    mutating func ping(_ peer: PublicKey) {
        pending.append(.ping(peer))
    }

    /// Starts (again) a handshake with `peer`, along `path` if given.
    mutating func rehandshake(
        _ peer: PublicKey, path: PeerPath? = nil, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        let sessionEffects = sessions.rehandshake(peer, path: path, now: now, rng: &rng)
        queue(sessionEffects)
    }

    /// Sends a session keepalive to `peer` at `endpoint` (a hole-punch probe, or the first packet
    /// on a newly punched path).
    mutating func probe(_ peer: PublicKey, at endpoint: Endpoint, now: Instant) {
        let sessionEffects = sessions.probe(peer, at: endpoint, now: now)
        queue(sessionEffects)
    }

    /// Hands the session layer a datagram that did not come from the socket (one a relay delivered).
    mutating func receiveDatagram(
        _ bytes: [UInt8], from path: PeerPath, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        let sessionEffects = sessions.receive(bytes, from: path, now: now, rng: &rng)
        queue(sessionEffects)
    }

    /// Sends a DHT PING to `contact` (its PONG reports the address it sees us at).
    mutating func dhtPing(_ contact: NodeContact, now: Instant) {
        let dhtEffects = dht.ping(contact, now: now)
        queue(dhtEffects)
    }

    /// Queues what a session-layer call returned, for the router.
    mutating func queue(_ sessionEffects: [SessionEffect]) {
        for effect in sessionEffects { pending.append(.session(effect)) }
    }

    /// Queues what a DHT call returned, for the router.
    mutating func queue(_ dhtEffects: [DHTEffect]) {
        for effect in dhtEffects { pending.append(.dht(effect)) }
    }

    /// Where datagrams to `peer` go when that is a socket address; nil when it is relayed (or unknown).
    func directEndpoint(of peer: PublicKey) -> Endpoint? { sessions.path(of: peer)?.directEndpoint }

    /// Tells the other parts something (delivered after the current part returns).
    mutating func notify(_ notice: NodeNotice) {
        pending.append(.notice(notice))
    }

    /// Something worth logging or tracing.
    mutating func emit(_ event: NodeEvent) {
        effects.append(.event(event))
    }

    /// Counts and reports a frame the part could not use.
    mutating func rejectFrame(from key: PublicKey, reason: String) {
        counters.framesRejected += 1
        effects.append(.event(.frameRejected(key, reason: reason)))
    }

    /// Adds a peer to keep connected and dials it now. A peer already kept keeps its first kind.
    mutating func addDialTarget(
        _ target: DialTarget, kind: DialKind, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        guard target.publicKey != identity.publicKey else { return }
        if dials[target.publicKey] == nil {
            dials[target.publicKey] = Dial(target: target, kind: kind, backoff: config.redialInitial, nextAttempt: nil)
        }
        for effect in sessions.connect(target.publicKey, endpoint: target.endpoint, now: now, rng: &rng) {
            pending.append(.session(effect))
        }
    }

    /// Stops keeping `key` connected (its session, if any, idles out on demand) when it was kept
    /// as `kind`.
    mutating func removeDialTarget(_ key: PublicKey, kind: DialKind) {
        guard let dial = dials[key], dial.kind == kind else { return }
        dials.removeValue(forKey: key)
        sessions.setPersistent(key, false)
    }

    /// Whether `key` is kept connected (a dial target of any kind).
    func isKept(_ key: PublicKey) -> Bool { dials[key] != nil }

    /// Signs and stores a record of ours in the DHT; `.putFinished` reports with this id.
    @discardableResult
    mutating func publish(
        kind: SignedRecord.Kind, key: Key256, value: [UInt8], now: Instant, rng: inout some RandomNumberGenerator
    ) -> UInt64 {
        let (id, dhtEffects) = dht.publish(kind: kind, key: key, value: value, now: now, rng: &rng)
        for effect in dhtEffects { pending.append(.dht(effect)) }
        return id
    }

    /// Starts a DHT lookup; `NodeNotice.lookupFinished` reports with this id.
    mutating func lookup(
        _ target: Key256, kind: LookupKind, now: Instant, rng: inout some RandomNumberGenerator
    ) -> UInt64 {
        let (id, dhtEffects) = dht.lookup(target, kind: kind, now: now, rng: &rng)
        for effect in dhtEffects { pending.append(.dht(effect)) }
        return id
    }

    /// Asks the shell to change the host; the answer comes back as the notice `hostCompleted`.
    mutating func requestHost(_ action: HostAction) -> HostToken {
        let token = HostToken(nextHostToken)
        nextHostToken += 1
        let request = HostRequest(token: token, action: action)
        hostRequests[token] = request
        effects.append(.host(request))
        return token
    }

    /// Asks the shell to perform a storage request; the answer comes back as the notice
    /// `storageCompleted` with the returned token. Nil when persistence is off
    /// (`StorageNodeConfig.isEnabled`): nothing was asked, the part goes on without a disk.
    mutating func requestStorage(_ operation: StorageOperation) -> StorageToken? {
        guard config.storage.isEnabled else { return nil }
        let token = StorageToken(nextPartStorageToken)
        nextPartStorageToken += 1
        partStorage.insert(token)
        effects.append(.storage(StorageRequest(token: token, operation: operation)))
        return token
    }

    /// The RTT measured to a kept peer (smoothed), if any.
    func rtt(to peer: PublicKey) -> Duration? { rtts[peer] }

    /// Moves the gathered effects out.
    mutating func takeEffects() -> [NodeEffect] {
        defer { effects = [] }
        return effects
    }

    static func keyOrder(_ lhs: PublicKey, _ rhs: PublicKey) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}
