// Control API of the dialogue part: `POST /v1/sessions?provider=…` (open a dialogue with a provider
// and wait for its answer), `GET /v1/sessions`, `POST /v1/sessions/close?provider=…` (docs/api.md).

import Dialogue
import Node
import NodeRuntime
import Proposals
import UmbraCore

public struct StageReport: Codable, Sendable, Equatable {
    public var stage: String
    /// Since the start of the open (before lookup).
    public var elapsedMs: Double
    /// Since the previous stage.
    public var durationMs: Double
}

public struct DialogueSessionReport: Codable, Sendable, Equatable {
    public var provider: String
    public var state: String
    public var sessionId: String?
    public var innerAddress: String?
    public var gateway: String?
    public var dns: [String]?
    public var mtu: Int?
    public var keepaliveSeconds: Int?
    public var ageSeconds: Double?
    /// `direct`, `hole-punched` or `relayed` (with the relay), when a session to the provider exists.
    public var path: String?
    public var stages: [StageReport]

    init(provider: PublicKey, phase: DialogueClientPhase, timings: [StageTiming], path: SessionPathInfo?, now: Instant)
    {
        if let path {
            self.path =
                path.path.rawValue
                + (path.path == .relayed ? path.relay.map { " via \(NodeAddress(publicKey: $0.publicKey))" } ?? "" : "")
        }
        self.provider = NodeAddress(publicKey: provider).description
        stages = timings.map {
            StageReport(
                stage: $0.stage.description, elapsedMs: $0.elapsed.seconds * 1000,
                durationMs: $0.duration.seconds * 1000)
        }
        switch phase {
        case .idle: state = "idle"
        case .requesting(let attempt): state = "requesting (attempt \(attempt))"
        case .closed: state = "closed"
        case .open(let session):
            state = "open"
            sessionId = String(session.sessionID, radix: 16)
            innerAddress = session.grant.innerIPv4.description
            gateway = session.grant.gateway.description
            dns = session.grant.dnsServers.map(\.description)
            mtu = Int(session.grant.mtu)
            keepaliveSeconds = Int(session.grant.keepaliveSeconds)
            ageSeconds = now.since(session.openedAt).seconds
        }
    }
}

public struct ServedSessionReport: Codable, Sendable, Equatable {
    public var consumer: String
    public var sessionId: String
    public var innerAddress: String
    public var ageSeconds: Double
    public var bytesIn: UInt64
    public var bytesOut: UInt64
}

public struct DialogueSessionsReport: Codable, Sendable, Equatable {
    public var sessions: [DialogueSessionReport]
    /// With `--provide`: the consumers served.
    public var served: [ServedSessionReport]
}

extension ControlRouter {
    func openSession(_ query: [String: String]) async throws -> (DialogueSessionReport?, String?) {
        guard let text = query["provider"], let provider = try? NodeAddress(parsing: text).publicKey else {
            return (nil, "provider must be a node address (umbra1…), e.g. from umbra proposals")
        }
        let service = query["service"] ?? "ip-tunnel"
        let startedAt = host.clock.now
        // Lookup: the provider's proposal (its terms and contacts) from the local store.
        let proposal = await host.withInstance { [host] in
            $0.proposals(serviceType: service, now: host.clock.now).first { $0.provider == provider }
        }
        guard let proposal else {
            return (nil, "no live \(service) proposal from \(text); list them with umbra proposals")
        }
        let session: ClientSession
        do {
            session = try await host.openDialogue(
                DialogueRequest(
                    provider: provider, serviceType: service, proposalSeq: proposal.seq, contacts: proposal.contacts,
                    startedAt: startedAt))
        } catch let error as NodeDriver.DialogueFailed {
            return (nil, "the session was not opened: \(error.failure)")
        } catch let error as NodeDriver.CommandFailed {
            return (nil, "the session was not opened: \(error)")
        }
        let report = await host.withInstance { [host] instance in
            let client = instance.dialogueStatus.clients.first { $0.provider == provider }
            return DialogueSessionReport(
                provider: provider, phase: client?.phase ?? .open(session), timings: client?.timings ?? [],
                path: instance.sessionPath(of: provider), now: host.clock.now)
        }
        return (report, nil)
    }

    func sessionsReport() async throws -> DialogueSessionsReport {
        await host.withInstance { [host] instance in
            let now = host.clock.now
            let status = instance.dialogueStatus
            return DialogueSessionsReport(
                sessions: status.clients.map {
                    DialogueSessionReport(
                        provider: $0.provider, phase: $0.phase, timings: $0.timings,
                        path: instance.sessionPath(of: $0.provider), now: now)
                },
                served: status.served.map {
                    ServedSessionReport(
                        consumer: NodeAddress(publicKey: $0.consumer).description,
                        sessionId: String($0.sessionID, radix: 16), innerAddress: $0.innerIPv4.description,
                        ageSeconds: now.since($0.openedAt).seconds, bytesIn: $0.bytesIn, bytesOut: $0.bytesOut)
                })
        }
    }
}
