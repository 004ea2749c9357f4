// Relayed sessions and their upgrade to a direct path (DESIGN §4 "Relay", "NAT traversal").
//
// 1. Dial: `dial(_:record:)` (`NodeInstance.dial` hands it to the part) tries the peer's direct
//    endpoint; a peer without one (behind NAT), or one that has no session after
//    `directDialTimeout`, is dialled through a relay of its record: the session layer gets the path
//    `PeerPath.relayed(id)`, the id naming (relay, peer) in `RelayPathTable`.
// 2. Relay: a datagram to a relayed path leaves as `forward(peer, bytes)` on our session with the
//    relay; `deliver(peer, bytes)` from a relay comes back as a datagram from the relayed path of
//    (relay, peer). The bytes are the two ends' own session ciphertext: the relay sees sizes only.
// 3. Punch: once the relayed session is up, the end that dialled runs HolePunch (initiator): both
//    ends exchange candidates inside the session, sync on the measured RTT and send bursts of
//    session keepalives (`SessionManager.probe`) to each other's candidates. The first one that
//    arrives moves the session to that direct path (roaming): we tell the relay to close the
//    circuit. Failed rounds are retried with backoff for as long as the session stays relayed.

import Kademlia
import Relay
import Sessions
import UmbraCore

/// The path a session's datagrams take.
public enum SessionPath: String, Sendable, Equatable, Codable {
    /// Straight to the peer's endpoint, dialled directly (or dialled us).
    case direct
    /// Through a relay.
    case relayed
    /// Straight to the peer, after starting relayed and punching through the NATs.
    case holePunched = "hole-punched"
}

/// One session's path, for `umbra ping` and `umbra status`.
public struct SessionPathInfo: Sendable, Equatable {
    public var peer: PublicKey
    public var path: SessionPath
    /// The current endpoint (a relayed session shows its relay's endpoint).
    public var endpoint: Endpoint?
    /// The relay the session started on (relayed and hole-punched sessions).
    public var relay: RelayContact?
    public var punchPhase: HolePunchPhase?
    public var punchRole: HolePunchRole?
    public var punchAttempts: UInt64
    public var punchRTT: Duration?
    /// The last code a relay sent about this session's circuit.
    public var lastCircuitCode: CircuitCode?
    public var relayedAt: Instant?
    public var directAt: Instant?
}

/// (relay, peer) pairs and their relayed-path ids. Bounded; ids are not reused while the table
/// lives, so a late datagram never reaches the wrong pair.
struct RelayPathTable: Sendable {
    struct Entry: Sendable, Equatable {
        var relay: RelayContact
        var peer: PublicKey
    }

    private struct Pair: Hashable, Sendable {
        var relay: PublicKey
        var peer: PublicKey
    }

    let capacity: Int
    private(set) var entries: [RelayPathID: Entry] = [:]
    private var indices: [Pair: RelayPathID] = [:]
    private var nextIndex: UInt32 = 1

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { entries.count }

    func entry(_ id: RelayPathID) -> Entry? { entries[id] }

    /// The entry of a relayed path; nil for a direct one (or an id no longer in the table).
    func entry(_ path: PeerPath?) -> Entry? { path?.relayPathID.flatMap { entries[$0] } }

    func index(relay: PublicKey, peer: PublicKey) -> RelayPathID? { indices[Pair(relay: relay, peer: peer)] }

    func usesRelay(_ key: PublicKey) -> Bool { entries.values.contains { $0.relay.publicKey == key } }

    /// The id of (relay, peer), allocated if new; nil when the table is full.
    mutating func allocate(relay: RelayContact, peer: PublicKey) -> RelayPathID? {
        let pair = Pair(relay: relay.publicKey, peer: peer)
        if let index = indices[pair] {
            if relay.endpoint != NetworkUnspecified.endpoint { entries[index]?.relay = relay }
            return index
        }
        guard entries.count < capacity else { return nil }
        let index = RelayPathID(nextIndex)
        nextIndex = nextIndex == UInt32.max ? 1 : nextIndex + 1
        entries[index] = Entry(relay: relay, peer: peer)
        indices[pair] = index
        return index
    }

    mutating func remove(peer: PublicKey) {
        for (index, entry) in entries where entry.peer == peer {
            entries[index] = nil
            indices[Pair(relay: entry.relay.publicKey, peer: peer)] = nil
        }
    }

    mutating func removeAll(where drop: (Entry) -> Bool) {
        for (index, entry) in entries where drop(entry) {
            entries[index] = nil
            indices[Pair(relay: entry.relay.publicKey, peer: entry.peer)] = nil
        }
    }
}

/// A session that came up on a relayed path.
struct RelayLink: Sendable {
    var relay: PublicKey
    var punch: HolePunch
    var path = SessionPath.relayed
    var relayedAt: Instant
    var directAt: Instant?
    var lastCircuitCode: CircuitCode?
    /// The current punch burst.
    var probeTargets: [Endpoint] = []
    var probesLeft = 0
    var nextProbe: Instant?
}

/// A dial in progress (`dial(_:record:)`).
struct PendingDial: Sendable {
    var relays: [RelayContact]
    var startedAt: Instant
    /// When to give up on the direct endpoint and go through a relay.
    var fallbackAt: Instant?
    var relayAttempts = 0
    var lastCircuitCode: CircuitCode?
}

extension RelayPart {
    // MARK: - Dialling

    /// Makes `key` reachable for the next frame (a ping, a request): with a session already, nothing;
    /// else its direct endpoint from `record` now, and one of its relays if that has no session
    /// within `directDialTimeout` (or at once when the record lists no direct endpoint). The frame
    /// sent next starts the handshake and waits in the session layer's queue until it completes.
    mutating func dial(
        _ key: PublicKey, record: PeerRecordValue?, _ node: inout NodeKernel, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        guard key != node.identity.publicKey, !node.sessions.isEstablished(key) else { return }
        let direct = record?.endpoints ?? []
        let relays = (record?.relays ?? []).filter { $0.publicKey != key && $0.publicKey != node.identity.publicKey }
            .map { RelayContact(publicKey: $0.publicKey, endpoint: $0.endpoint) }
        if pendingDials.count >= config.relay.maximumRelayPaths,
            let oldest = pendingDials.min(by: { $0.value.startedAt < $1.value.startedAt })
        {
            pendingDials[oldest.key] = nil
        }
        pendingDials[key] = PendingDial(
            relays: relays, startedAt: now,
            fallbackAt: direct.isEmpty || relays.isEmpty ? nil : now + config.relay.directDialTimeout)
        if let endpoint = direct.first {
            node.sessions.addPeer(key, path: .direct(endpoint))
        } else if !relays.isEmpty {
            dialThroughRelay(key, now: now, rng: &rng, node: &node)
        }
    }

    /// Moves the dial of `key` onto a relayed path (the next relay of its record on each call).
    private mutating func dialThroughRelay(
        _ key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        guard var pending = pendingDials[key], !pending.relays.isEmpty else { return }
        // First a relay we already have a session with; after a refusal the list has been rotated.
        let connected = pending.relays.firstIndex { node.sessions.isEstablished($0.publicKey) }
        let choice = pending.relayAttempts == 0 ? connected ?? 0 : 0
        let contact = pending.relays[choice]
        pending.relayAttempts += 1
        pending.fallbackAt = nil
        pendingDials[key] = pending
        guard let index = paths.allocate(relay: contact, peer: key) else {
            counters.pathsRefused += 1
            return
        }
        if !node.sessions.isEstablished(contact.publicKey) {
            node.addDialTarget(
                DialTarget(publicKey: contact.publicKey, endpoint: contact.endpoint), kind: .relay, now: now, rng: &rng)
        }
        node.rehandshake(key, path: .relayed(index), now: now, rng: &rng)
    }

    // MARK: - Relaying datagrams

    /// A relay delivered a datagram from `peer`: feed it to the session layer from its relayed path.
    mutating func relayedDatagram(
        _ bytes: [UInt8], from peer: PublicKey, via relayKey: PublicKey, now: Instant,
        rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        guard peer != node.identity.publicKey, peer != relayKey,
            let relayEndpoint = node.sessions.path(of: relayKey)?.directEndpoint
        else {
            counters.forwardsDropped += 1
            return
        }
        guard
            let index = paths.allocate(
                relay: RelayContact(publicKey: relayKey, endpoint: relayEndpoint), peer: peer)
        else {
            counters.pathsRefused += 1
            return
        }
        counters.datagramsDelivered += 1
        node.receiveDatagram(bytes, from: .relayed(index), now: now, rng: &rng)
    }

    // MARK: - Relayed sessions and hole punching

    /// A session with `key` was established on a relayed path.
    mutating func relayedSessionUp(
        _ key: PublicKey, path: RelayPathID, now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        guard let entry = paths.entry(path) else { return }
        let dialled = pendingDials.removeValue(forKey: key) != nil
        let role: HolePunchRole = dialled ? .initiator : .responder
        var link = RelayLink(
            relay: entry.relay.publicKey, punch: HolePunch(role: role, config: config.relay.holePunch), relayedAt: now)
        let candidates = HolePunch.candidates(
            public: observedEndpoint.map { [$0] } ?? [], private: config.relay.localEndpoints)
        link.punch.setLocalCandidates(candidates)
        links[key] = link
        guard role == .initiator else { return }
        counters.punchesStarted += 1
        let punchEffects = links[key]!.punch.start(nonce: rng.next(), localCandidates: candidates, now: now)
        applyPunch(punchEffects, peer: key, now: now, rng: &rng, node: &node)
    }

    mutating func relayPathChanged(
        _ key: PublicKey, path: PeerPath, now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        guard var link = links[key] else { return }
        switch path {
        case .direct(let endpoint) where link.path == .relayed:
            // A probe (or traffic) arrived on a direct path: the punch worked.
            link.path = .holePunched
            link.directAt = now
            link.probesLeft = 0
            link.nextProbe = nil
            _ = link.punch.directPathConfirmed(now: now)
            links[key] = link
            counters.holePunchSuccesses += 1
            // Answer on the new path at once: the other end roams (and confirms) on our first packet,
            // without waiting for traffic of its own.
            node.probe(key, at: endpoint, now: now)
            node.sendFrame(
                .relay, RelayMessage.circuitStatus(peer: key, code: .closed).encoded(), to: link.relay, now: now,
                rng: &rng)
        case .relayed(let id) where link.path != .relayed:
            // A new handshake came through the relay: the direct path is gone.
            link.path = .relayed
            link.directAt = nil
            if let entry = paths.entry(id) { link.relay = entry.relay.publicKey }
            let punchEffects = link.punch.directPathLost(now: now)
            links[key] = link
            applyPunch(punchEffects, peer: key, now: now, rng: &rng, node: &node)
        default:
            break
        }
    }

    mutating func punchMessage(
        _ message: RelayMessage, from key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        guard links[key] != nil else { return }
        if case .punchConnect = message {
            // Our candidates may have been learnt since the session came up.
            links[key]!.punch.setLocalCandidates(
                HolePunch.candidates(public: observedEndpoint.map { [$0] } ?? [], private: config.relay.localEndpoints))
        }
        let punchEffects = links[key]!.punch.handle(message, now: now)
        applyPunch(punchEffects, peer: key, now: now, rng: &rng, node: &node)
    }

    private mutating func applyPunch(
        _ punchEffects: [HolePunchEffect], peer: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        node: inout NodeKernel
    ) {
        for effect in punchEffects {
            switch effect {
            case .send(let message):
                node.sendFrame(.relay, message.encoded(), to: peer, now: now, rng: &rng)
            case .punch(let endpoints):
                guard var link = links[peer], link.path == .relayed else { continue }
                let holePunch = config.relay.holePunch
                let targets = HolePunch.punchTargets(endpoints, own: ownAddresses, limit: holePunch.maximumTargets)
                counters.punchTargetsRefused += UInt64(endpoints.count - targets.count)
                guard !targets.isEmpty else { continue }
                guard punchesPerPeer.allow(peer, now: now), punchesInTotal.allow(0, now: now) else {
                    counters.punchesLimited += 1
                    continue
                }
                link.probeTargets = targets
                link.probesLeft = config.relay.punchProbes
                link.nextProbe = now
                links[peer] = link
                sendProbes(to: peer, now: now, rng: &rng, node: &node)
            case .gaveUp:
                break
            }
        }
    }

    /// Sends one round of the current punch burst to `peer` if one is due.
    private mutating func sendProbes(
        to peer: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        guard var link = links[peer], link.probesLeft > 0, let due = link.nextProbe, due <= now else { return }
        for endpoint in link.probeTargets {
            counters.punchProbesSent += 1
            node.probe(peer, at: endpoint, now: now)
        }
        link.probesLeft -= 1
        link.nextProbe = link.probesLeft > 0 ? now + config.relay.punchProbeSpacing : nil
        links[peer] = link
    }

    /// Punch timers and bursts, direct-dial fallbacks, and pruning of stale paths.
    mutating func relayPathsTick(now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel) {
        for key in links.keys.sorted(by: NodeKernel.keyOrder) {
            sendProbes(to: key, now: now, rng: &rng, node: &node)
            guard links[key]?.punch.nextDeadline.map({ $0 <= now }) == true else { continue }
            let punchEffects = links[key]!.punch.tick(now: now)
            applyPunch(punchEffects, peer: key, now: now, rng: &rng, node: &node)
        }
        for key in pendingDials.keys.sorted(by: NodeKernel.keyOrder) {
            guard let pending = pendingDials[key] else { continue }
            if let due = pending.fallbackAt, due <= now {
                dialThroughRelay(key, now: now, rng: &rng, node: &node)
            } else if now.since(pending.startedAt) >= config.sessions.rekeyAttemptTime {
                pendingDials[key] = nil
            }
        }
        // Sessions that idled out leave their links and paths behind: drop them when the table fills.
        if paths.count > paths.capacity / 2 {
            let sessions = node.sessions
            let pending = pendingDials
            paths.removeAll { entry in
                sessions.snapshot(of: entry.peer).map { $0.state == .idle } ?? true && pending[entry.peer] == nil
            }
            links = links.filter { sessions.snapshot(of: $0.key)?.state != .idle }
        }
    }

    var relayPathsDeadline: Instant? {
        var deadline = pendingDials.values.compactMap(\.fallbackAt).min()
        for link in links.values {
            for candidate in [link.nextProbe, link.punch.nextDeadline].compactMap({ $0 })
            where deadline.map({ candidate < $0 }) ?? true {
                deadline = candidate
            }
        }
        return deadline
    }

    // MARK: - Reports

    /// The path of the session with `key`, if there is one.
    func sessionPath(of key: PublicKey, sessions: SessionManager) -> SessionPathInfo? {
        guard let snapshot = sessions.snapshot(of: key) else { return nil }
        var info = SessionPathInfo(
            peer: key, path: .direct, endpoint: snapshot.path?.directEndpoint, relay: nil, punchPhase: nil,
            punchRole: nil, punchAttempts: 0, punchRTT: nil, lastCircuitCode: nil, relayedAt: nil, directAt: nil)
        if let entry = paths.entry(snapshot.path) {
            info.path = .relayed
            info.relay = entry.relay
            info.endpoint = entry.relay.endpoint
        }
        if let link = links[key] {
            info.path = link.path
            info.relay = info.relay ?? paths.entries.values.first { $0.relay.publicKey == link.relay }?.relay
            info.punchPhase = link.punch.phase
            info.punchRole = link.punch.role
            info.punchAttempts = link.punch.counters.attempts
            info.punchRTT = link.punch.lastRTT
            info.lastCircuitCode = link.lastCircuitCode
            info.relayedAt = link.relayedAt
            info.directAt = link.directAt
        }
        return info
    }

    /// The sessions that are or were relayed, by peer.
    func relayedSessions(_ sessions: SessionManager) -> [SessionPathInfo] {
        links.keys.sorted(by: NodeKernel.keyOrder).compactMap { sessionPath(of: $0, sessions: sessions) }
    }

    /// The last circuit code a relay sent about a dial or session to `key` (for error messages).
    func lastCircuitCode(for key: PublicKey) -> CircuitCode? {
        links[key]?.lastCircuitCode ?? pendingDials[key]?.lastCircuitCode
    }

    /// A relay refused or closed the circuit of a dial in progress: try the record's next relay.
    mutating func dialRefused(
        _ key: PublicKey, by relayKey: PublicKey, code: CircuitCode, now: Instant,
        rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        guard var pending = pendingDials[key] else { return }
        pending.lastCircuitCode = code
        pendingDials[key] = pending
        guard code.closesCircuit, code != .closed, pending.relays.count > 1,
            pending.relayAttempts < 2 * pending.relays.count
        else { return }
        // Skip the relay that refused: move it to the back.
        if let position = pending.relays.firstIndex(where: { $0.publicKey == relayKey }) {
            pending.relays.append(pending.relays.remove(at: position))
            pendingDials[key] = pending
        }
        paths.removeAll { $0.peer == key && $0.relay.publicKey == relayKey }
        dialThroughRelay(key, now: now, rng: &rng, node: &node)
    }
}
