// How NATed nodes find relays, keep them, and tell others where to reach them.
//
// - Discovery from sessions: a relay that is publicly reachable tells every peer it has a direct
//   session with (`relayAvailable`, when the session comes up or when the relay turns public), so
//   a NATed node reserves on its bootstrap relay within seconds even when the DHT holds one server.
// - Discovery in the DHT, for large networks: a relay that is publicly reachable publishes a provider
//   index entry of service type "relay" in country "ZZ" (`relayIndexKey`) in the DHT; a private
//   node looks that key up, takes each relay's endpoint from its routing table (or the relay's
//   peer record) and hands the list to RelayClient, which reserves on `desiredRelays` of them.
// - Liveness: relays we hold a reservation on or relay through are pinged every
//   `relayPingInterval`; one silent for `relayLivenessTimeout` gets a fresh handshake every
//   `relayRehandshakeInterval`; when one completes (a restarted relay) we re-reserve at once.
// - The peer record: a public node lists its verified endpoint, a private one only its relays.

import Kademlia
import Proposals
import Relay
import UmbraCore

/// The relay part as `umbra status` shows it.
public struct RelayStatus: Sendable {
    public var isRelay: Bool
    public var reachabilityMode: ReachabilityMode
    public var reachability: ReachabilityStatus
    /// The rule the verdict rests on (nil while unknown, or when forced).
    public var reachabilityBasis: ReachabilityBasis?
    public var isDHTServer: Bool
    public var observedEndpoint: Endpoint?
    /// Reservations this node holds on relays, and the relays it knows of.
    public var reservations: [RelayClientReservation]
    public var candidates: [RelayContact]
    /// Reservations and circuits this node carries as a relay.
    public var hostedReservations: [RelayReservationInfo]
    public var circuits: [RelayCircuitInfo]
    /// Sessions that are or were relayed, with their paths.
    public var sessions: [SessionPathInfo]
    public var counters: RelayNodeCounters
    public var serverCounters: RelayServerCounters
    public var clientCounters: RelayClientCounters
    public var reachabilityCounters: ReachabilityCounters
}

extension RelayPart {
    /// The part as `umbra status` shows it (the kernel: whether the DHT serves, the sessions' paths).
    func report(_ node: NodeKernel) -> RelayStatus {
        RelayStatus(
            isRelay: config.relay.isRelay, reachabilityMode: config.relay.reachabilityMode,
            reachability: status,
            reachabilityBasis: config.relay.reachabilityMode == .auto && status != .unknown
                ? reachability.basis : nil,
            isDHTServer: node.dht.config.isServer,
            observedEndpoint: observedEndpoint, reservations: client.activeReservations,
            candidates: client.candidates, hostedReservations: server.reservations,
            circuits: server.circuits, sessions: relayedSessions(node.sessions), counters: counters,
            serverCounters: server.counters, clientCounters: client.counters,
            reachabilityCounters: reachability.counters)
    }

    // MARK: - Peer record

    /// What our peer record should say now (nil: nothing worth publishing yet).
    var relayPeerRecord: PeerRecordValue? {
        var endpoints: [Endpoint]
        switch status {
        case .public(let endpoint):
            endpoints = endpoint == NetworkUnspecified.endpoint ? [] : [endpoint]
            endpoints += config.advertisedEndpoints.filter { $0 != endpoint }
        case .private:
            endpoints = []
        case .unknown:
            // Not yet known to be dialable: a record with a LAN endpoint and no relay would only send
            // dialers to an address they cannot reach (the verdict comes within seconds).
            endpoints = config.relay.reachabilityMode == .auto ? [] : config.advertisedEndpoints
        }
        let relays = client.advertised.map { NodeContact(publicKey: $0.publicKey, endpoint: $0.endpoint) }
        guard !endpoints.isEmpty || !relays.isEmpty else { return nil }
        return PeerRecordValue(
            endpoints: Array(endpoints.prefix(PeerRecordValue.maximumEndpoints)),
            relays: Array(relays.prefix(PeerRecordValue.maximumRelays)))
    }

    /// Publishes this node's peer record (its reachable endpoints and its relays, see
    /// `relayPeerRecord`) once the DHT has contacts, and again whenever it changes; and tells the
    /// other parts when how consumers reach us changed.
    mutating func publishPeerRecordIfDue(
        now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        announceContactsIfChanged(&node)
        guard node.dht.table.count > 0, let value = relayPeerRecord, value != publishedPeerRecord else { return }
        publishedPeerRecord = value
        node.publish(
            kind: .peer, key: RecordKey.peer(node.identity.publicKey), value: value.encoded(), now: now, rng: &rng)
    }

    /// Tells the other parts when how consumers reach us changed (reachability, relay reservations):
    /// the market republishes a provider's offer.
    mutating func announceContactsIfChanged(_ node: inout NodeKernel) {
        guard config.market.provide != nil else { return }
        let contacts = proposalContacts
        guard contacts != announcedContacts else { return }
        announcedContacts = contacts
        node.notify(.contactsChanged(contacts))
    }

    /// How consumers reach this provider: what its peer record says (the reachability verdict's
    /// endpoints and the relays holding reservations for it), else its advertised endpoints.
    var proposalContacts: ServiceProposal.Contacts {
        guard let record = relayPeerRecord else {
            return ServiceProposal.Contacts(direct: Array(config.advertisedEndpoints.prefix(4)))
        }
        return ServiceProposal.Contacts(
            direct: Array(record.endpoints.prefix(4)),
            relays: record.relays.prefix(4).map {
                ServiceProposal.Relay(publicKey: $0.publicKey, endpoint: $0.endpoint)
            })
    }

    // MARK: - Discovery

    /// A relay tells a peer it relays, once its verdict is public and the session is direct.
    mutating func relayAnnounce(
        to key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        guard config.relay.isRelay, case .public = status, node.directEndpoint(of: key) != nil,
            node.sessions.isEstablished(key)
        else { return }
        counters.relayAnnouncementsSent += 1
        node.sendFrame(.relay, RelayMessage.relayAvailable.encoded(), to: key, now: now, rng: &rng)
    }

    /// `key` says it relays: remember it at the address its direct session comes from, and reserve
    /// there when we need relays.
    mutating func relayAnnounced(
        by key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        guard let endpoint = node.directEndpoint(of: key), node.sessions.isEstablished(key) else { return }
        counters.relayAnnouncementsReceived += 1
        addKnownRelay(RelayContact(publicKey: key, endpoint: endpoint))
        guard status == .private else { return }
        applyClient(client.setCandidates(knownRelays, now: now), now: now, rng: &rng, node: &node)
    }

    /// The verdict changed: a relay that turned public tells its peers; a node that turned private
    /// reserves on the relays it already heard of, without waiting for a DHT lookup.
    mutating func relayReachabilityChanged(
        now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        switch status {
        case .public where config.relay.isRelay:
            let direct = node.sessions.snapshots.filter { $0.state == .established && $0.path?.directEndpoint != nil }
            for peer in direct { relayAnnounce(to: peer.publicKey, now: now, rng: &rng, node: &node) }
        case .private where !knownRelays.isEmpty:
            applyClient(client.setCandidates(knownRelays, now: now), now: now, rng: &rng, node: &node)
        default:
            break
        }
    }

    mutating func relayDiscoveryTick(
        now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        if config.relay.isRelay, case .public = status, !providerPublished, node.dht.table.count > 0 {
            providerPublished = true
            let value = ProviderIndexValue(serviceType: "relay", country: "ZZ", provider: node.identity.publicKey)
            node.publish(kind: .providerIndex, key: Self.relayIndexKey, value: value.encoded(), now: now, rng: &rng)
        }
        guard status == .private, discoveryLookup == nil, let due = nextDiscovery, due <= now
        else { return }
        guard node.dht.table.count > 0 else {
            nextDiscovery = now + config.relay.discoveryRetry
            return
        }
        nextDiscovery = nil
        counters.discoveryLookups += 1
        discoveryLookup = node.lookup(Self.relayIndexKey, kind: .value, now: now, rng: &rng)
    }

    var relayDiscoveryDeadline: Instant? {
        var deadlines: [Instant] = []
        if status == .private, discoveryLookup == nil, let due = nextDiscovery {
            deadlines.append(due)
        }
        if config.relay.isRelay, case .public = status, !providerPublished, dhtHasContacts {
            deadlines.append(startedAt)
        }
        return deadlines.min()
    }

    /// A DHT lookup finished: ours (relay discovery, a relay's peer record) are consumed here.
    mutating func relayLookupFinished(
        _ report: LookupReport, now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        if report.id == discoveryLookup {
            discoveryLookup = nil
            for record in report.records
            where record.kind == .providerIndex && record.publisher != node.identity.publicKey {
                guard let value = try? ProviderIndexValue.decode(record.value), value.provider == record.publisher,
                    value.serviceType == "relay"
                else { continue }
                if let endpoint = knownEndpoint(of: record.publisher, node) {
                    addKnownRelay(RelayContact(publicKey: record.publisher, endpoint: endpoint))
                } else if recordLookups.count < 8, !recordLookups.values.contains(record.publisher) {
                    let id = node.lookup(RecordKey.peer(record.publisher), kind: .value, now: now, rng: &rng)
                    recordLookups[id] = record.publisher
                }
            }
            nextDiscovery =
                now + (knownRelays.isEmpty ? config.relay.discoveryRetry : config.relay.discoveryRefresh)
        } else if let publisher = recordLookups.removeValue(forKey: report.id) {
            guard let value = Self.newestPeerRecord(in: report, of: publisher),
                let endpoint = value.endpoints.first
            else { return }
            addKnownRelay(RelayContact(publicKey: publisher, endpoint: endpoint))
        } else {
            return
        }
        guard status == .private else { return }
        applyClient(client.setCandidates(knownRelays, now: now), now: now, rng: &rng, node: &node)
    }

    /// The newest valid peer record of `publisher` among a lookup's records.
    public static func newestPeerRecord(in report: LookupReport, of publisher: PublicKey) -> PeerRecordValue? {
        report.records.filter { $0.kind == .peer && $0.publisher == publisher }.sorted { $0.seq > $1.seq }
            .lazy.compactMap { try? PeerRecordValue.decode($0.value) }.first
    }

    private func knownEndpoint(of key: PublicKey, _ node: NodeKernel) -> Endpoint? {
        if let contact = node.dht.table.contact(for: key.nodeID) { return contact.endpoint }
        return node.directEndpoint(of: key)
    }

    private mutating func addKnownRelay(_ contact: RelayContact) {
        knownRelays.removeAll { $0.publicKey == contact.publicKey }
        knownRelays.append(contact)
        if knownRelays.count > config.relay.client.maximumCandidates { knownRelays.removeFirst() }
    }

    // MARK: - Relay liveness

    /// The relays we hold a reservation on or relay a session through.
    private var relaysInUse: Set<PublicKey> {
        var keys = Set(client.activeReservations.map(\.relay.publicKey))
        for link in links.values where link.path == .relayed { keys.insert(link.relay) }
        return keys
    }

    mutating func relayLivenessTick(
        now: Instant, rng: inout some RandomNumberGenerator, node: inout NodeKernel
    ) {
        let inUse = relaysInUse
        guard !inUse.isEmpty else {
            nextRelayPing = nil
            rehandshaking = [:]
            return
        }
        for key in rehandshaking.keys.sorted(by: NodeKernel.keyOrder) {
            guard let state = rehandshaking[key], let snapshot = node.sessions.snapshot(of: key) else {
                rehandshaking[key] = nil
                continue
            }
            if let handshake = snapshot.lastHandshake, handshake > state.since {
                // A new session with the relay: it may have restarted, so reserve again now.
                rehandshaking[key] = nil
                applyClient(client.relayConnected(key, now: now), now: now, rng: &rng, node: &node)
                // Handshakes we sent through it while it was gone were lost: send them again now.
                let stalled = paths.entries.values.filter {
                    $0.relay.publicKey == key && pendingDials[$0.peer] != nil && !node.sessions.isEstablished($0.peer)
                }.map(\.peer)
                for peer in stalled.sorted(by: NodeKernel.keyOrder) {
                    node.rehandshake(peer, now: now, rng: &rng)
                }
            } else if now >= state.last + config.relay.relayRehandshakeInterval {
                rehandshaking[key]!.last = now
                node.rehandshake(key, now: now, rng: &rng)
            }
        }
        guard let due = nextRelayPing else {
            nextRelayPing = now + config.relay.relayPingInterval
            return
        }
        guard due <= now else { return }
        nextRelayPing = now + config.relay.relayPingInterval
        for key in inUse.sorted(by: NodeKernel.keyOrder) where rehandshaking[key] == nil {
            guard let snapshot = node.sessions.snapshot(of: key), snapshot.state == .established else { continue }
            let heard = snapshot.lastReceived ?? snapshot.lastHandshake ?? .zero
            if now.since(heard) >= config.relay.relayLivenessTimeout {
                counters.relayRehandshakes += 1
                rehandshaking[key] = (now, now)
                applyClient(client.relayLost(key, now: now), now: now, rng: &rng, node: &node)
                node.rehandshake(key, now: now, rng: &rng)
            } else {
                node.ping(key)
            }
        }
    }

    var relayLivenessDeadline: Instant? {
        let retries = rehandshaking.values.map { $0.last + config.relay.relayRehandshakeInterval }
        let ping = nextRelayPing ?? (relaysInUse.isEmpty ? nil : startedAt)
        return (retries + [ping].compactMap { $0 }).min()
    }
}
