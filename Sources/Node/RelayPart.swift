// The relay part of the node (DESIGN §4 "Relay", "NAT traversal"): it composes the pure cores of
// the Relay target and wires them to the session layer, behind the NodePart interface (channel
// 0x30), acting only through the kernel.
//
// - RelayServer: enabled with `--relay` (otherwise it answers `notARelay`); `forward`s from one
//   peer become `deliver`s on the session with the other.
// - Reachability (RelayPart+Reachability.swift): every node starts `unknown`; DHT PONGs report our
//   reflexive address (`NodeNotice.observedAddress`), sessions peers open to us unasked and our own
//   socket endpoints are the evidence, and agreeing reports of a translated endpoint start a
//   dial-back check among our established peers (the rule: Relay/Reachability.swift); `private`
//   makes the node a DHT client that reserves on relays (RelayClient) it is told of or finds in the
//   DHT (RelayPart+Discovery.swift); `public` makes it a DHT server that publishes the verified
//   endpoint. `--reachability` forces it.
// - Relay paths and hole punching (RelayPart+Paths.swift): a peer reached through a relay gets the
//   session path `PeerPath.relayed(id)`; the session layer's datagrams along it are wrapped in
//   `forward` (the one hook at the session boundary, `sendRelayed`), `deliver`s are fed back as
//   datagrams from it; the end that dialled punches.
// - The peer record and the contacts a provider's proposal lists (RelayPart+Discovery.swift).
//
// Everything here runs inside the router's calls: `now` and the RNG come in, work for the router
// goes into the kernel.

import Kademlia
import Proposals
import Relay
import Sessions
import UmbraCore

/// How a node decides whether others can dial it.
public enum ReachabilityMode: String, Sendable, CaseIterable {
    /// Find out by dial-back (the default).
    case auto
    /// Assume it is publicly reachable at its advertised endpoints (a relay or server with a known address).
    case `public`
    /// Assume it is not: a DHT client that reserves on relays.
    case `private`
}

/// Settings of the relay part.
public struct RelayNodeConfig: Sendable {
    /// Relay for others (`umbra up --relay`). Only sensible on a publicly reachable node.
    public var isRelay = false
    public var server = RelayServerConfig()
    public var client = RelayClientConfig()
    public var reachability = ReachabilityConfig()
    public var reachabilityMode = ReachabilityMode.auto
    public var holePunch = HolePunchConfig()
    /// Our own socket addresses (a LAN address behind NAT): hole-punch candidates after the observed one.
    public var localEndpoints: [Endpoint] = []
    /// Every interface address with the listen port, when the socket is bound to a wildcard address
    /// (the shell fills this in): evidence for reachability only, not punch candidates.
    public var interfaceEndpoints: [Endpoint] = []
    /// A dial to a peer's direct endpoint that has no session after this moves to one of its relays.
    public var directDialTimeout: Duration = .seconds(1)
    /// In `auto` mode, a node still `unknown` this long after start (no agreeing observations, e.g.
    /// behind a symmetric NAT where every peer sees another port) counts as private.
    public var unknownTimeout: Duration = .seconds(8)
    /// Relays we hold a reservation on or relay through are pinged this often; one silent for
    /// `relayLivenessTimeout` gets a fresh handshake (a restarted relay lost our keys and our
    /// reservation: the new session re-reserves at once).
    public var relayPingInterval: Duration = .seconds(1)
    public var relayLivenessTimeout: Duration = .milliseconds(2500)
    public var relayRehandshakeInterval: Duration = .seconds(1)
    /// Relay paths (relay, peer) and relayed links remembered at most.
    public var maximumRelayPaths = 1024
    /// Relay discovery: retry soon while none is known, then refresh now and then.
    public var discoveryRetry: Duration = .seconds(3)
    public var discoveryRefresh: Duration = .seconds(60)
    /// Probes per punch, and their spacing (a burst rides out small timing errors of the sync).
    public var punchProbes = 5
    public var punchProbeSpacing: Duration = .milliseconds(40)
    /// Test harness only (a deliberately tampering relay): applied to every datagram this node
    /// relays before it is delivered. Always nil in the real node.
    public var deliverTransform: (@Sendable ([UInt8]) -> [UInt8])?

    public init() {}
}

/// Counters of the relay part.
public struct RelayNodeCounters: Sendable, Equatable {
    public var framesUndecodable: UInt64 = 0
    public var datagramsForwarded: UInt64 = 0
    public var datagramsDelivered: UInt64 = 0
    /// Datagrams along a relayed path whose entry is gone, or too large for one `forward`.
    public var forwardsDropped: UInt64 = 0
    /// Relay paths refused because the table was full.
    public var pathsRefused: UInt64 = 0
    public var dialProbesSent: UInt64 = 0
    /// Dial-back probes from a peer we already had a session with (they prove nothing).
    public var dialProbesIgnored: UInt64 = 0
    /// Dial-back orders dropped because this node is not known to be public.
    public var dialOrdersDeclined: UInt64 = 0
    public var relayRehandshakes: UInt64 = 0
    public var punchesStarted: UInt64 = 0
    public var punchProbesSent: UInt64 = 0
    public var holePunchSuccesses: UInt64 = 0
    /// `deliver`s from a peer that is not a relay we reserved on or dialled (that pair) through.
    public var deliversRefused: UInt64 = 0
    /// Reservation results and circuit notices from a peer that is not one of our relays.
    public var relayNoticesRefused: UInt64 = 0
    /// Hole-punch candidates of the other end that were not punched (loopback, LAN, unusable, …).
    public var punchTargetsRefused: UInt64 = 0
    /// Punch bursts not sent: over the per-peer or total budget.
    public var punchesLimited: UInt64 = 0
    public var circuitsEnded: [CircuitCode: UInt64] = [:]
    public var discoveryLookups: UInt64 = 0
    /// `relayAvailable` messages sent (as a relay) and received.
    public var relayAnnouncementsSent: UInt64 = 0
    public var relayAnnouncementsReceived: UInt64 = 0
    public init() {}
}

/// The relay part: relaying for others, reservations on relays, reachability, relayed sessions
/// and hole punching, relay discovery and liveness, and this node's peer record.
public struct RelayPart: NodePart {
    public static var channels: [FrameChannel] { [.relay] }
    /// Where relays announce themselves: the provider index of service type "relay", country "ZZ".
    public static let relayIndexKey = RecordKey.providerIndex(serviceType: "relay", country: "ZZ")

    let config: NodeConfig
    var server: RelayServer
    var client: RelayClient
    var reachability: Reachability
    /// What the node acts on: the core's verdict, or the forced mode, or `private` after `unknownTimeout`.
    var status = ReachabilityStatus.unknown
    let startedAt: Instant
    var counters = RelayNodeCounters()
    var paths: RelayPathTable
    var links: [PublicKey: RelayLink] = [:]
    var pendingDials: [PublicKey: PendingDial] = [:]
    /// Peers we have had an established direct session with (dial-back probes from them are void).
    var acquainted: Set<PublicKey> = []
    /// The reflexive endpoint each recent reporter saw (for hole-punch candidates).
    var observed: [PublicKey: Endpoint] = [:]
    var observedOrder: [PublicKey] = []
    // Relay liveness.
    var nextRelayPing: Instant?
    var rehandshaking: [PublicKey: (since: Instant, last: Instant)] = [:]
    // Discovery (RelayPart+Discovery.swift).
    var knownRelays: [RelayContact] = []
    var discoveryLookup: UInt64?
    var recordLookups: [UInt64: PublicKey] = [:]
    var nextDiscovery: Instant?
    var providerPublished = false
    /// Whether the DHT's routing table held contacts when this part last ran (the kernel is not at
    /// hand in `nextDeadline`; the router tells the part when the table fills, `NodeNotice.dhtJoined`).
    var dhtHasContacts = false
    /// Punch bursts per peer, and in total (a relayed peer chooses when we punch and where).
    var punchesPerPeer: WindowRateLimiter<PublicKey>
    var punchesInTotal: WindowRateLimiter<UInt8>
    // The peer record and the contacts a provider's proposal lists (RelayPart+Discovery.swift).
    var publishedPeerRecord: PeerRecordValue?
    /// What the other parts were last told about how consumers reach us (`NodeNotice.contactsChanged`).
    var announcedContacts: ServiceProposal.Contacts?

    init(config: NodeConfig, now: Instant) {
        self.config = config
        let relay = config.relay
        var serverConfig = relay.server
        serverConfig.isEnabled = relay.isRelay
        server = RelayServer(config: serverConfig)
        client = RelayClient(config: relay.client)
        var reachabilityConfig = relay.reachability
        reachabilityConfig.localEndpoints += relay.localEndpoints + relay.interfaceEndpoints
        reachability = Reachability(config: reachabilityConfig, now: now)
        startedAt = now
        paths = RelayPathTable(capacity: relay.maximumRelayPaths)
        let punch = relay.holePunch
        punchesPerPeer = WindowRateLimiter(
            limit: punch.maximumPunchesPerPeer, window: punch.punchWindow, capacity: relay.maximumRelayPaths)
        punchesInTotal = WindowRateLimiter(limit: punch.maximumPunchesInTotal, window: punch.punchWindow, capacity: 1)
    }

    public mutating func handle(
        _ event: PartEvent, node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        switch event {
        case .start:
            relayStart(now: now, rng: &rng, node: &node)
        case .tick:
            relayTick(now: now, rng: &rng, node: &node)
        case .peerUp(let key, let path):
            relayPeerUp(key, path: path, now: now, rng: &rng, node: &node)
        case .peerDown(let key, _):
            relayPeerDown(key, now: now, rng: &rng, node: &node)
        case .pathChanged(let key, let path):
            relayPathChanged(key, path: path, now: now, rng: &rng, node: &node)
        case .frame(_, let payload, let key):
            relayFrame(payload, from: key, now: now, rng: &rng, node: &node)
        case .notice(.lookupFinished(let report)):
            relayLookupFinished(report, now: now, rng: &rng, node: &node)
        case .notice(.observedAddress(let endpoint, let reporter)):
            relayObservedAddress(endpoint, reporter: reporter, now: now, rng: &rng, node: &node)
        case .notice(.dhtJoined):
            publishPeerRecordIfDue(now: now, rng: &rng, node: &node)
        case .notice:
            break
        }
        dhtHasContacts = node.dht.table.count > 0
    }

    public var nextDeadline: Instant? {
        var candidates: [Instant] = [
            server.nextDeadline, client.nextDeadline, reachability.nextDeadline,
            relayPathsDeadline, relayLivenessDeadline, relayDiscoveryDeadline,
        ].compactMap { $0 }
        if config.relay.reachabilityMode == .auto, status == .unknown {
            candidates.append(startedAt + config.relay.unknownTimeout)
        }
        return candidates.min()
    }

    // MARK: - The session boundary

    // The session layer names a relayed peer's path `.relayed(id)` and knows nothing else about it
    // (Sessions/PeerPath.swift); this part owns the ids (`paths`). The router hands the part the
    // two things only it can do with such a path, synchronously, where the session effects are
    // carried out (`NodeInstance.absorb`): a datagram the session layer sends along a relayed path
    // (`sendRelayed`, it leaves as a `forward` frame to the relay), and every datagram sent to a
    // socket address (`noteDirectSend`, reachability evidence). The other direction needs no hook:
    // a `deliver` frame arrives on the relay channel like any frame and the part feeds its bytes to
    // the session layer as a datagram from the relayed path (`relayedDatagram`).

    /// The session layer sent a datagram along a relayed path: wrap it in `forward` to that path's
    /// relay.
    mutating func sendRelayed(
        _ bytes: [UInt8], path: RelayPathID, node: inout NodeKernel, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        guard let entry = paths.entry(path),
            bytes.count <= RelayMessage.maximumForwardBytes
        else {
            counters.forwardsDropped += 1
            return
        }
        if node.sessions.snapshot(of: entry.relay.publicKey) == nil {
            guard node.sessions.addPeer(entry.relay.publicKey, path: .direct(entry.relay.endpoint)) else { return }
        }
        counters.datagramsForwarded += 1
        node.sendFrame(
            .relay, RelayMessage.forward(peer: entry.peer, bytes: bytes).encoded(), to: entry.relay.publicKey,
            now: now, rng: &rng)
    }

    /// A handshake initiation leaves for `endpoint` (every direct send passes here; only initiations
    /// are remembered, so this costs one byte compare on the data path).
    mutating func noteDirectSend(_ bytes: [UInt8], to endpoint: Endpoint) {
        if bytes.first == 1 { reachability.sentInitiation(to: endpoint.address) }
    }
}

extension RelayPart {
    // MARK: - Events

    mutating func relayStart(now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel) {
        node.dht.setOwnAddresses(ownAddresses)
        switch config.relay.reachabilityMode {
        case .auto:
            // Not in others' routing tables until verified public (a NATed server only costs timeouts).
            node.dht.setServer(false)
        case .public:
            let endpoint = config.advertisedEndpoints.first ?? NetworkUnspecified.endpoint
            setReachability(.public(endpoint), now: now, rng: &rng, node: &node)
        case .private:
            setReachability(.private, now: now, rng: &rng, node: &node)
        }
    }

    mutating func relayTick(now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel) {
        announceContactsIfChanged(&node)
        applyServer(server.tick(now: now), now: now, rng: &rng, node: &node)
        applyClient(client.tick(now: now), now: now, rng: &rng, node: &node)
        applyReachability(reachability.tick(now: now, rng: &rng), now: now, rng: &rng, node: &node)
        if config.relay.reachabilityMode == .auto, status == .unknown, !reachability.isChecking,
            now >= startedAt + config.relay.unknownTimeout
        {
            setReachability(.private, now: now, rng: &rng, node: &node)
        }
        relayPathsTick(now: now, rng: &rng, node: &node)
        relayLivenessTick(now: now, rng: &rng, node: &node)
        relayDiscoveryTick(now: now, rng: &rng, node: &node)
        publishPeerRecordIfDue(now: now, rng: &rng, node: &node)
    }

    mutating func relayPeerUp(
        _ key: PublicKey, path: PeerPath, now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        let endpoint: Endpoint
        switch path {
        case .relayed(let id):
            relayedSessionUp(key, path: id, now: now, rng: &rng, node: &node)
            return
        case .direct(let direct):
            endpoint = direct
        }
        pendingDials[key] = nil
        if acquainted.count >= 4 * config.sessions.maximumPeers { acquainted.removeAll() }
        acquainted.insert(key)
        reachabilitySessionUp(key, endpoint: endpoint, now: now, rng: &rng, node: &node)
        relayAnnounce(to: key, now: now, rng: &rng, node: &node)
        // One peer more for dial-backs: constant work, not a scan of every session.
        applyReachability(
            reachability.addPeer(key, address: endpoint.address, now: now, rng: &rng), now: now, rng: &rng,
            node: &node)
        // Ask the new peer what address it sees us at (its PONG feeds `relayObservedAddress`), while
        // we know few such reports.
        if observed.count < 8 || status == .unknown {
            node.dhtPing(NodeContact(publicKey: key, endpoint: endpoint), now: now)
        }
        applyClient(client.relayConnected(key, now: now), now: now, rng: &rng, node: &node)
    }

    mutating func relayPeerDown(
        _ key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        applyServer(server.peerLost(key, now: now), now: now, rng: &rng, node: &node)
        applyClient(client.relayLost(key, now: now), now: now, rng: &rng, node: &node)
        rehandshaking[key] = nil
        links[key] = nil
        paths.remove(peer: key)
        reachability.sessionDown(key)
        // Refill from every session only when the (capped) dial-back list ran empty.
        if reachability.removePeer(key) { updateReachabilityPeers(now: now, rng: &rng, node: &node) }
    }

    mutating func relayObservedAddress(
        _ endpoint: Endpoint, reporter: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        if observed[reporter] == nil {
            observedOrder.append(reporter)
            if observedOrder.count > 16 { observed[observedOrder.removeFirst()] = nil }
        }
        observed[reporter] = endpoint
        node.dht.setOwnAddresses(ownAddresses)
        guard config.relay.reachabilityMode == .auto else { return }
        reachabilityObserved(endpoint, reporter: reporter, now: now, rng: &rng, node: &node)
    }

    /// A relay-channel frame from `key`: relay control (server or client side), a relayed datagram,
    /// dial-back, or hole punching inside an end-to-end session.
    mutating func relayFrame(
        _ payload: [UInt8], from key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        let message: RelayMessage
        do { message = try RelayMessage(decoding: payload) } catch {
            counters.framesUndecodable += 1
            node.rejectFrame(from: key, reason: "relay: \(error.description)")
            return
        }
        switch message {
        case .reserve, .unreserve, .forward:
            serve(message, from: key, now: now, rng: &rng, node: &node)
        case .circuitStatus(_, .closed) where !isOurRelay(key):
            serve(message, from: key, now: now, rng: &rng, node: &node)
        case .reserveResult, .circuitStatus:
            // Only a relay of ours speaks for the relay side: anyone else could end our circuits.
            guard isOurRelay(key) else {
                counters.relayNoticesRefused += 1
                return
            }
            applyClient(client.handle(message, from: key, now: now), now: now, rng: &rng, node: &node)
        case .deliver(let peer, let bytes):
            // Only from a relay we hold a reservation on (anyone may reach us there), or one we
            // dialled `peer` through. Anyone else would get a "relayed" session and make us punch.
            guard acceptsDelivery(from: key, of: peer) else {
                counters.deliversRefused += 1
                node.rejectFrame(from: key, reason: "relay: deliver from a peer that is not our relay")
                return
            }
            relayedDatagram(bytes, from: peer, via: key, now: now, rng: &rng, node: &node)
        case .dialBackProbe where acquainted.contains(key):
            counters.dialProbesIgnored += 1
        case .dialBackOrder:
            // Only a node others can dial probes for them: a NATed prober opens mappings of its
            // own, and two NATed nodes probing each other at once punch a hole by accident.
            guard case .public = status else {
                counters.dialOrdersDeclined += 1
                return
            }
            applyReachability(
                reachability.handle(message, from: key, observedSource: nil, now: now, rng: &rng), now: now,
                rng: &rng, node: &node)
        case .dialBackRequest(let nonce, let endpoint):
            reachabilityDialBackRequest(
                nonce: nonce, endpoint: endpoint, from: key, now: now, rng: &rng, node: &node)
        case .relayAvailable:
            relayAnnounced(by: key, now: now, rng: &rng, node: &node)
        case .dialBackProbe, .dialBackRefused:
            let source = node.directEndpoint(of: key)
            applyReachability(
                reachability.handle(message, from: key, observedSource: source, now: now, rng: &rng), now: now,
                rng: &rng, node: &node)
        case .punchConnect, .punchConnectReply, .punchSync:
            punchMessage(message, from: key, now: now, rng: &rng, node: &node)
        }
    }

    // MARK: - Applying the cores' effects

    private mutating func serve(
        _ message: RelayMessage, from key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        let source = node.directEndpoint(of: key)
        let ipKey = source.flatMap { RelayServer.ipKey(for: $0.address) }
        // The closure reads a copy of the session table; it must be gone before `applyServer` mutates
        // the table, or that mutation copies every peer (work per relayed datagram ∝ table size).
        let serverEffects: [RelayServerEffect]
        do {
            let sessions = node.sessions
            serverEffects = server.handle(
                message, from: key, ipKey: ipKey, source: source, now: now,
                isConnected: { sessions.isEstablished($0) })
        }
        applyServer(serverEffects, now: now, rng: &rng, node: &node)
    }

    mutating func applyServer(
        _ serverEffects: [RelayServerEffect], now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        for case .send(var message, let peer) in serverEffects {
            if case .deliver(let from, let bytes) = message, let transform = config.relay.deliverTransform {
                message = .deliver(peer: from, bytes: transform(bytes))
            }
            node.sendFrame(.relay, message.encoded(), to: peer, now: now, rng: &rng)
        }
    }

    mutating func applyClient(
        _ clientEffects: [RelayClientEffect], now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        for effect in clientEffects {
            switch effect {
            case .send(let message, let relayKey):
                node.sendFrame(.relay, message.encoded(), to: relayKey, now: now, rng: &rng)
            case .connect(let contact):
                node.addDialTarget(
                    DialTarget(publicKey: contact.publicKey, endpoint: contact.endpoint), kind: .relay, now: now,
                    rng: &rng)
                if node.sessions.isEstablished(contact.publicKey) {
                    applyClient(
                        client.relayConnected(contact.publicKey, now: now), now: now, rng: &rng, node: &node)
                }
            case .release(let contact):
                if !links.values.contains(where: { $0.relay == contact.publicKey }) {
                    node.removeDialTarget(contact.publicKey, kind: .relay)
                }
            case .relaysChanged:
                publishPeerRecordIfDue(now: now, rng: &rng, node: &node)
            case .circuitEnded(let relayKey, let peer, let code):
                counters.circuitsEnded[code, default: 0] += 1
                if links[peer]?.relay == relayKey { links[peer]?.lastCircuitCode = code }
                dialRefused(peer, by: relayKey, code: code, now: now, rng: &rng, node: &node)
            }
        }
    }

    mutating func applyReachability(
        _ reachabilityEffects: [ReachabilityEffect], now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        for effect in reachabilityEffects {
            switch effect {
            case .send(let message, let peer):
                node.sendFrame(.relay, message.encoded(), to: peer, now: now, rng: &rng)
            case .statusChanged(let status):
                guard config.relay.reachabilityMode == .auto else { continue }
                setReachability(status, now: now, rng: &rng, node: &node)
            case .dialProbe(let target, let endpoint, let nonce):
                // A fresh handshake from our socket with the probe as 0-RTT data; with a session
                // already up the probe would prove nothing (the target ignores it), so skip it.
                guard !node.sessions.isEstablished(target), node.sessions.addPeer(target, path: .direct(endpoint))
                else {
                    continue
                }
                counters.dialProbesSent += 1
                acquainted.insert(target)
                reachability.sentInitiation(to: endpoint.address)
                node.sendFrame(
                    .relay, RelayMessage.dialBackProbe(nonce: nonce).encoded(), to: target, early: true, now: now,
                    rng: &rng)
            }
        }
    }

    /// Acts on a reachability verdict: DHT server or client mode, reservations, the peer record.
    mutating func setReachability(
        _ newStatus: ReachabilityStatus, now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        guard newStatus != status else { return }
        status = newStatus
        switch status {
        case .public, .unknown:
            node.dht.setServer(status != .unknown && config.dht.isServer)
            applyClient(client.releaseAll(now: now), now: now, rng: &rng, node: &node)
        case .private:
            node.dht.setServer(false)
            nextDiscovery = now
        }
        relayReachabilityChanged(now: now, rng: &rng, node: &node)
        publishPeerRecordIfDue(now: now, rng: &rng, node: &node)
    }

    private mutating func updateReachabilityPeers(
        now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        let direct = node.sessions.snapshots.filter { $0.state == .established && $0.path?.directEndpoint != nil }
        var addresses: [PublicKey: IPAddress] = [:]
        for peer in direct { addresses[peer.publicKey] = peer.path?.directEndpoint?.address }
        applyReachability(
            reachability.setPeers(direct.map(\.publicKey), addresses: addresses, now: now, rng: &rng), now: now,
            rng: &rng, node: &node)
    }

    /// Whether `key` is a relay we hold (or want) a reservation on or relay through.
    func isOurRelay(_ key: PublicKey) -> Bool {
        client.activeReservations.contains { $0.relay.publicKey == key }
            || client.candidates.contains { $0.publicKey == key } || paths.usesRelay(key)
    }

    /// Whether `relayKey` may deliver datagrams from `peer`: we hold a reservation on it, or we
    /// dialled `peer` through it (the pair has a relayed path).
    func acceptsDelivery(from relayKey: PublicKey, of peer: PublicKey) -> Bool {
        client.activeReservations.contains { $0.relay.publicKey == relayKey }
            || paths.index(relay: relayKey, peer: peer) != nil
    }

    /// Our own addresses as far as we know them: configured socket and advertised addresses, and
    /// the reflexive address peers agree on (what hole-punch targets are judged against).
    var ownAddresses: [IPAddress] {
        var addresses = (config.relay.localEndpoints + config.relay.interfaceEndpoints + config.advertisedEndpoints)
            .map(\.address)
        if let observed = observedEndpoint { addresses.append(observed.address) }
        return addresses
    }

    /// The endpoint at least two recent reporters agree they see us at, if any.
    var agreedObservedEndpoint: Endpoint? {
        var tally: [Endpoint: Int] = [:]
        for endpoint in observed.values { tally[endpoint, default: 0] += 1 }
        return tally.filter { $0.value >= 2 }.max {
            $0.value < $1.value || ($0.value == $1.value && $0.key.description < $1.key.description)
        }?.key
    }

    /// The endpoint most recent reporters agree they see us at (our reflexive address), if any.
    var observedEndpoint: Endpoint? {
        if case .public(let endpoint) = status, endpoint != NetworkUnspecified.endpoint { return endpoint }
        return agreedObservedEndpoint
    }
}

enum NetworkUnspecified {
    static let endpoint = Endpoint(address: .v4(0), port: 0)
}
