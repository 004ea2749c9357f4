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

extension NodeInstance {
    /// Where relays announce themselves: the provider index of service type "relay", country "ZZ".
    public static let relayIndexKey = RecordKey.providerIndex(serviceType: "relay", country: "ZZ")

    public var relayStatus: RelayStatus {
        RelayStatus(
            isRelay: config.relay.isRelay, reachabilityMode: config.relay.reachabilityMode,
            reachability: relay.status,
            reachabilityBasis: config.relay.reachabilityMode == .auto && relay.status != .unknown
                ? relay.reachability.basis : nil,
            isDHTServer: dht.config.isServer,
            observedEndpoint: observedEndpoint, reservations: relay.client.activeReservations,
            candidates: relay.client.candidates, hostedReservations: relay.server.reservations,
            circuits: relay.server.circuits, sessions: relayedSessions, counters: relay.counters,
            serverCounters: relay.server.counters, clientCounters: relay.client.counters,
            reachabilityCounters: relay.reachability.counters)
    }

    // MARK: - Peer record

    /// What our peer record should say now (nil: nothing worth publishing yet).
    var relayPeerRecord: PeerRecordValue? {
        var endpoints: [Endpoint]
        switch relay.status {
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
        let relays = relay.client.advertised.map { NodeContact(publicKey: $0.publicKey, endpoint: $0.endpoint) }
        guard !endpoints.isEmpty || !relays.isEmpty else { return nil }
        return PeerRecordValue(
            endpoints: Array(endpoints.prefix(PeerRecordValue.maximumEndpoints)),
            relays: Array(relays.prefix(PeerRecordValue.maximumRelays)))
    }

    // MARK: - Discovery

    /// A relay tells a peer it relays, once its verdict is public and the session is direct.
    mutating func relayAnnounce(
        to key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        guard config.relay.isRelay, case .public = relay.status, directEndpoint(of: key) != nil,
            sessions.isEstablished(key)
        else { return }
        relay.counters.relayAnnouncementsSent += 1
        sendFrame(.relay, RelayMessage.relayAvailable.encoded(), to: key, now: now, rng: &rng, into: &effects)
    }

    /// `key` says it relays: remember it at the address its direct session comes from, and reserve
    /// there when we need relays.
    mutating func relayAnnounced(
        by key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        guard let endpoint = directEndpoint(of: key), sessions.isEstablished(key) else { return }
        relay.counters.relayAnnouncementsReceived += 1
        addKnownRelay(RelayContact(publicKey: key, endpoint: endpoint))
        guard relay.status == .private else { return }
        applyClient(relay.client.setCandidates(relay.knownRelays, now: now), now: now, rng: &rng, into: &effects)
    }

    /// The verdict changed: a relay that turned public tells its peers; a node that turned private
    /// reserves on the relays it already heard of, without waiting for a DHT lookup.
    mutating func relayReachabilityChanged(
        now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        switch relay.status {
        case .public where config.relay.isRelay:
            let direct = sessions.snapshots.filter { $0.state == .established && $0.path?.directEndpoint != nil }
            for peer in direct { relayAnnounce(to: peer.publicKey, now: now, rng: &rng, into: &effects) }
        case .private where !relay.knownRelays.isEmpty:
            applyClient(relay.client.setCandidates(relay.knownRelays, now: now), now: now, rng: &rng, into: &effects)
        default:
            break
        }
    }

    mutating func relayDiscoveryTick(
        now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        if config.relay.isRelay, case .public = relay.status, !relay.providerPublished, dht.table.count > 0 {
            relay.providerPublished = true
            let value = ProviderIndexValue(serviceType: "relay", country: "ZZ", provider: identity.publicKey)
            let (_, dhtEffects) = dht.publish(
                kind: .providerIndex, key: Self.relayIndexKey, value: value.encoded(), now: now, rng: &rng)
            absorb(dhtEffects, now: now, rng: &rng, into: &effects)
        }
        guard relay.status == .private, relay.discoveryLookup == nil, let due = relay.nextDiscovery, due <= now
        else { return }
        guard dht.table.count > 0 else {
            relay.nextDiscovery = now + config.relay.discoveryRetry
            return
        }
        relay.nextDiscovery = nil
        relay.counters.discoveryLookups += 1
        let (id, dhtEffects) = dht.lookup(Self.relayIndexKey, kind: .value, now: now, rng: &rng)
        relay.discoveryLookup = id
        absorb(dhtEffects, now: now, rng: &rng, into: &effects)
    }

    var relayDiscoveryDeadline: Instant? {
        var deadlines: [Instant] = []
        if relay.status == .private, relay.discoveryLookup == nil, let due = relay.nextDiscovery {
            deadlines.append(due)
        }
        if config.relay.isRelay, case .public = relay.status, !relay.providerPublished, dht.table.count > 0 {
            deadlines.append(relay.startedAt)
        }
        return deadlines.min()
    }

    /// A DHT lookup finished: ours (relay discovery, a relay's peer record) are consumed here.
    mutating func relayLookupFinished(
        _ report: LookupReport, now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        if report.id == relay.discoveryLookup {
            relay.discoveryLookup = nil
            for record in report.records where record.kind == .providerIndex && record.publisher != identity.publicKey {
                guard let value = try? ProviderIndexValue.decode(record.value), value.provider == record.publisher,
                    value.serviceType == "relay"
                else { continue }
                if let endpoint = knownEndpoint(of: record.publisher) {
                    addKnownRelay(RelayContact(publicKey: record.publisher, endpoint: endpoint))
                } else if relay.recordLookups.count < 8, !relay.recordLookups.values.contains(record.publisher) {
                    let (id, dhtEffects) = dht.lookup(
                        RecordKey.peer(record.publisher), kind: .value, now: now, rng: &rng)
                    relay.recordLookups[id] = record.publisher
                    absorb(dhtEffects, now: now, rng: &rng, into: &effects)
                }
            }
            relay.nextDiscovery =
                now + (relay.knownRelays.isEmpty ? config.relay.discoveryRetry : config.relay.discoveryRefresh)
        } else if let publisher = relay.recordLookups.removeValue(forKey: report.id) {
            guard let value = Self.newestPeerRecord(in: report, of: publisher),
                let endpoint = value.endpoints.first
            else { return }
            addKnownRelay(RelayContact(publicKey: publisher, endpoint: endpoint))
        } else {
            return
        }
        guard relay.status == .private else { return }
        applyClient(relay.client.setCandidates(relay.knownRelays, now: now), now: now, rng: &rng, into: &effects)
    }

    /// The newest valid peer record of `publisher` among a lookup's records.
    public static func newestPeerRecord(in report: LookupReport, of publisher: PublicKey) -> PeerRecordValue? {
        report.records.filter { $0.kind == .peer && $0.publisher == publisher }.sorted { $0.seq > $1.seq }
            .lazy.compactMap { try? PeerRecordValue.decode($0.value) }.first
    }

    private func knownEndpoint(of key: PublicKey) -> Endpoint? {
        if let contact = dht.table.contact(for: key.nodeID) { return contact.endpoint }
        return directEndpoint(of: key)
    }

    private mutating func addKnownRelay(_ contact: RelayContact) {
        relay.knownRelays.removeAll { $0.publicKey == contact.publicKey }
        relay.knownRelays.append(contact)
        if relay.knownRelays.count > config.relay.client.maximumCandidates { relay.knownRelays.removeFirst() }
    }

    // MARK: - Relay liveness

    /// The relays we hold a reservation on or relay a session through.
    private var relaysInUse: Set<PublicKey> {
        var keys = Set(relay.client.activeReservations.map(\.relay.publicKey))
        for link in relay.links.values where link.path == .relayed { keys.insert(link.relay) }
        return keys
    }

    mutating func relayLivenessTick(
        now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        let inUse = relaysInUse
        guard !inUse.isEmpty else {
            relay.nextRelayPing = nil
            relay.rehandshaking = [:]
            return
        }
        for key in relay.rehandshaking.keys.sorted(by: Self.keyOrder) {
            guard let state = relay.rehandshaking[key], let snapshot = sessions.snapshot(of: key) else {
                relay.rehandshaking[key] = nil
                continue
            }
            if let handshake = snapshot.lastHandshake, handshake > state.since {
                // A new session with the relay: it may have restarted, so reserve again now.
                relay.rehandshaking[key] = nil
                applyClient(relay.client.relayConnected(key, now: now), now: now, rng: &rng, into: &effects)
                // Handshakes we sent through it while it was gone were lost: send them again now.
                let stalled = relay.paths.entries.values.filter {
                    $0.relay.publicKey == key && relay.pendingDials[$0.peer] != nil && !sessions.isEstablished($0.peer)
                }.map(\.peer)
                for peer in stalled.sorted(by: Self.keyOrder) {
                    absorb(sessions.rehandshake(peer, now: now, rng: &rng), now: now, rng: &rng, into: &effects)
                }
            } else if now >= state.last + config.relay.relayRehandshakeInterval {
                relay.rehandshaking[key]!.last = now
                absorb(sessions.rehandshake(key, now: now, rng: &rng), now: now, rng: &rng, into: &effects)
            }
        }
        guard let due = relay.nextRelayPing else {
            relay.nextRelayPing = now + config.relay.relayPingInterval
            return
        }
        guard due <= now else { return }
        relay.nextRelayPing = now + config.relay.relayPingInterval
        for key in inUse.sorted(by: Self.keyOrder) where relay.rehandshaking[key] == nil {
            guard let snapshot = sessions.snapshot(of: key), snapshot.state == .established else { continue }
            let heard = snapshot.lastReceived ?? snapshot.lastHandshake ?? .zero
            if now.since(heard) >= config.relay.relayLivenessTimeout {
                relay.counters.relayRehandshakes += 1
                relay.rehandshaking[key] = (now, now)
                applyClient(relay.client.relayLost(key, now: now), now: now, rng: &rng, into: &effects)
                absorb(sessions.rehandshake(key, now: now, rng: &rng), now: now, rng: &rng, into: &effects)
            } else {
                effects += ping(key, now: now, rng: &rng).effects
            }
        }
    }

    var relayLivenessDeadline: Instant? {
        let retries = relay.rehandshaking.values.map { $0.last + config.relay.relayRehandshakeInterval }
        let ping = relay.nextRelayPing ?? (relaysInUse.isEmpty ? nil : relay.startedAt)
        return (retries + [ping].compactMap { $0 }).min()
    }
}
