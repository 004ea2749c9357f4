// The relay part of the control API (docs/api.md): `GET /v1/relay` (reachability, reservations,
// relayed circuits, session paths) and `POST /v1/ping?target=…&timeout=…` (reach a peer — directly,
// through a relay, or hole-punched — and ping it). Keys are snake_case on the wire.

import Foundation
import Kademlia
import NIOHTTP1
import Node
import NodeRuntime
import Relay
import UmbraCore

public struct RelayStatusReport: Codable, Sendable, Equatable {
    public struct Reservation: Codable, Sendable, Equatable {
        public var relay: String
        public var endpoint: String
        public var expiresInSeconds: Double
        public var renewInSeconds: Double
        public var connected: Bool
        public var circuitBytesLimit: UInt64
        public var circuitSecondsLimit: UInt32
    }

    public struct Hosted: Codable, Sendable, Equatable {
        public var peer: String
        public var expiresInSeconds: Double
    }

    public struct Circuit: Codable, Sendable, Equatable {
        public var initiator: String
        public var target: String
        public var ageSeconds: Double
        public var bytes: UInt64
        public var datagrams: UInt64
    }

    public struct Session: Codable, Sendable, Equatable {
        public var peer: String
        public var path: String
        public var endpoint: String?
        public var relay: String?
        public var punchPhase: String?
        public var punchRole: String?
        public var punchAttempts: UInt64
        public var punchRttMs: Double?
        public var lastCircuitCode: String?
        /// Time from the relayed session coming up to the direct path taking over.
        public var upgradedAfterMs: Double?
    }

    public var relay: Bool
    public var reachability: String
    public var reachabilityMode: String
    /// The rule the verdict rests on: `own-address`, `unsolicited-inbound`, `dial-back`,
    /// `check-failed` (absent while unknown or forced).
    public var reachabilityBasis: String?
    public var publicEndpoint: String?
    public var observedEndpoint: String?
    public var dhtServer: Bool
    public var reservations: [Reservation]
    public var relayCandidates: [String]
    public var hostedReservations: [Hosted]
    public var circuits: [Circuit]
    public var sessions: [Session]
    public var counters: [String: UInt64]

    public init(_ status: RelayStatus, now: Instant) {
        relay = status.isRelay
        switch status.reachability {
        case .unknown: reachability = "unknown"
        case .public(let endpoint):
            reachability = "public"
            publicEndpoint = endpoint.description
        case .private: reachability = "private"
        }
        reachabilityMode = status.reachabilityMode.rawValue
        reachabilityBasis = status.reachabilityBasis?.rawValue
        observedEndpoint = status.observedEndpoint?.description
        dhtServer = status.isDHTServer
        reservations = status.reservations.map {
            Reservation(
                relay: NodeAddress(publicKey: $0.relay.publicKey).description, endpoint: $0.relay.endpoint.description,
                expiresInSeconds: $0.expiresAt.since(now).seconds, renewInSeconds: $0.renewAt.since(now).seconds,
                connected: $0.isConnected, circuitBytesLimit: $0.limits.bytes, circuitSecondsLimit: $0.limits.seconds)
        }
        relayCandidates = status.candidates.map(\.description)
        hostedReservations = status.hostedReservations.map {
            Hosted(peer: NodeAddress(publicKey: $0.peer).description, expiresInSeconds: $0.expiresAt.since(now).seconds)
        }
        circuits = status.circuits.map {
            Circuit(
                initiator: NodeAddress(publicKey: $0.initiator).description,
                target: NodeAddress(publicKey: $0.target).description, ageSeconds: now.since($0.openedAt).seconds,
                bytes: $0.bytes, datagrams: $0.datagrams)
        }
        sessions = status.sessions.map(Self.session)
        var counters: [String: UInt64] = [
            "datagrams_forwarded": status.counters.datagramsForwarded,
            "datagrams_delivered": status.counters.datagramsDelivered,
            "forwards_dropped": status.counters.forwardsDropped,
            "punches_started": status.counters.punchesStarted,
            "punch_probes_sent": status.counters.punchProbesSent,
            "hole_punch_successes": status.counters.holePunchSuccesses,
            "relay_rehandshakes": status.counters.relayRehandshakes,
            "dial_probes_sent": status.counters.dialProbesSent,
            "dial_probes_ignored": status.counters.dialProbesIgnored,
            "discovery_lookups": status.counters.discoveryLookups,
            "reservations_granted": status.clientCounters.reservationsGranted,
            "relay_reservations_accepted": status.serverCounters.reservationsAccepted,
            "relay_reservations_renewed": status.serverCounters.reservationsRenewed,
            "relay_circuits_opened": status.serverCounters.circuitsOpened,
            "relay_bytes_relayed": status.serverCounters.bytesRelayed,
            "relay_datagrams_relayed": status.serverCounters.datagramsRelayed,
            "reachability_checks_public": status.reachabilityCounters.checksPublic,
            "reachability_checks_private": status.reachabilityCounters.checksPrivate,
            "reachability_verdicts_own_address": status.reachabilityCounters.verdictsOwnAddress,
            "reachability_verdicts_unsolicited": status.reachabilityCounters.verdictsUnsolicited,
            "reachability_unsolicited_sessions": status.reachabilityCounters.unsolicitedSessions,
            "relay_announcements_sent": status.counters.relayAnnouncementsSent,
            "relay_announcements_received": status.counters.relayAnnouncementsReceived,
        ]
        for (code, count) in status.serverCounters.circuitsClosed {
            counters["relay_circuits_closed_\(Self.name(code))"] = count
        }
        for (code, count) in status.counters.circuitsEnded { counters["circuits_ended_\(Self.name(code))"] = count }
        self.counters = counters
    }

    static func session(_ info: SessionPathInfo) -> Session {
        Session(
            peer: NodeAddress(publicKey: info.peer).description, path: info.path.rawValue,
            endpoint: info.endpoint?.description, relay: info.relay?.description,
            punchPhase: info.punchPhase?.rawValue,
            punchRole: info.punchRole.map { $0 == .initiator ? "initiator" : "responder" },
            punchAttempts: info.punchAttempts, punchRttMs: info.punchRTT.map { $0.seconds * 1000 },
            lastCircuitCode: info.lastCircuitCode.map(name),
            upgradedAfterMs: info.directAt.flatMap { direct in info.relayedAt.map { direct.since($0).seconds * 1000 } })
    }

    /// A circuit code's wire name.
    public static func name(_ code: CircuitCode) -> String {
        switch code {
        case .noReservation: "no_reservation"
        case .targetGone: "target_gone"
        case .overByteLimit: "over_byte_limit"
        case .overTimeLimit: "over_time_limit"
        case .rateLimited: "rate_limited"
        case .closed: "closed"
        case .tooManyCircuits: "too_many_circuits"
        }
    }
}

/// The answer of `POST /v1/ping`.
public struct PingReport: Codable, Sendable, Equatable {
    public var address: String
    public var reply: Bool
    /// direct, relayed or hole-punched (at the time of the reply, or of the timeout).
    public var path: String?
    /// The session's path when the ping was sent (a relayed session may be hole-punched by the
    /// time the reply is read).
    public var pathAtSend: String?
    public var rttMs: Double?
    /// From the request to the reply: record lookup, dial, handshake(s) and the ping itself.
    public var elapsedMs: Double
    public var lookupMs: Double?
    public var endpoint: String?
    public var relay: String?
    public var punchPhase: String?
    public var lastCircuitCode: String?
    public var error: String?
}

extension ControlRouter {
    /// The relay routes; nil for any other path.
    func relayRoute(_ request: APIRequest) async throws -> APIResponse? {
        switch (request.method, request.path) {
        case (.GET, "/v1/relay"):
            return try relayJSON(try await relayReport())
        case (.POST, "/v1/ping"):
            return try await ping(request)
        case (_, "/v1/relay"), (_, "/v1/ping"):
            return try relayJSON(
                ErrorReport(error: "method \(request.method) not allowed on \(request.path)"),
                status: .methodNotAllowed)
        default:
            return nil
        }
    }

    func relayReport() async throws -> RelayStatusReport {
        let now = host.clock.now
        return RelayStatusReport(await host.withInstance { $0.relayStatus }, now: now)
    }

    private func ping(_ request: APIRequest) async throws -> APIResponse {
        let started = host.clock.now
        guard let text = request.query["target"] else {
            return try relayJSON(
                ErrorReport(error: "ping needs target (umbra1… or umbra1…@host:port)"), status: .badRequest)
        }
        let timeout = Double(request.query["timeout"] ?? "5").flatMap { $0 > 0 && $0 <= 600 ? $0 : nil } ?? 5
        let key: PublicKey
        var record: PeerRecordValue?
        if let contact = try? NodeContactText.parse(text) {
            key = contact.key
            record = PeerRecordValue(endpoints: [contact.endpoint])
        } else if let address = try? NodeAddress(parsing: text) {
            key = address.publicKey
        } else {
            return try relayJSON(
                ErrorReport(error: "target must be a node address umbra1… or a contact umbra1…@ip:port"),
                status: .badRequest)
        }
        var report = PingReport(address: NodeAddress(publicKey: key).description, reply: false, elapsedMs: 0)
        let connected = await host.withInstance { $0.sessions.isEstablished(key) }
        if record == nil, !connected {
            let lookup = try await host.lookup(RecordKey.peer(key), kind: .value)
            report.lookupMs = host.clock.now.since(started).seconds * 1000
            record = NodeInstance.newestPeerRecord(in: lookup, of: key)
            guard record != nil else {
                report.elapsedMs = host.clock.now.since(started).seconds * 1000
                report.error =
                    "no peer record for \(report.address) in the DHT (it is offline or has not published yet)"
                return try relayJSON(report, status: .notFound)
            }
        }
        let dialRecord = record
        report.pathAtSend = await host.perform { instance, now, rng in
            let effects = instance.dial(key, record: dialRecord, now: now, rng: &rng)
            return (instance.sessionPath(of: key)?.path.rawValue, effects)
        }
        do {
            let rtt = try await host.ping(key, timeout: .milliseconds(Int64(timeout * 1000)))
            report.reply = true
            report.rttMs = rtt.seconds * 1000
        } catch is NodeDriver.PingTimeout {
            report.error = "no reply within \(timeout) s"
        } catch let error as NodeDriver.CommandFailed {
            report.error = "no reply: \(error)"
        }
        report.elapsedMs = host.clock.now.since(started).seconds * 1000
        let (info, code) = await host.withInstance { ($0.sessionPath(of: key), $0.lastCircuitCode(for: key)) }
        if let info {
            report.path = info.path.rawValue
            report.endpoint = info.endpoint?.description
            report.relay = info.relay?.description
            report.punchPhase = info.punchPhase?.rawValue
        }
        if let code {
            report.lastCircuitCode = RelayStatusReport.name(code)
            if !report.reply { report.error = (report.error ?? "no reply") + "; the relay said: \(code)" }
        }
        return try relayJSON(report, status: report.reply ? .ok : .gatewayTimeout)
    }

    func relayJSON(_ value: some Encodable, status: HTTPResponseStatus = .ok) throws -> APIResponse {
        APIResponse(status: status, body: Array(try ControlJSON.encoder.encode(value)))
    }
}

/// `umbra1…@ip:port` with a numeric address (no name resolution on the event loop).
enum NodeContactText {
    struct Parsed {
        var key: PublicKey
        var endpoint: Endpoint
    }

    struct Invalid: Error {}

    static func parse(_ text: String) throws -> Parsed {
        guard let at = text.firstIndex(of: "@") else { throw Invalid() }
        let address = try NodeAddress(parsing: String(text[..<at]))
        let endpoint = try Endpoint(parsing: String(text[text.index(after: at)...]))
        return Parsed(key: address.publicKey, endpoint: endpoint)
    }
}
