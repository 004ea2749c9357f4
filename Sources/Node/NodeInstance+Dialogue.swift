// The dialogue part of the node: the consumer↔provider conversation on frame channel 0x40 inside
// their end-to-end session (direct, hole-punched or relayed: the session layer hides which).
//
// - Consumer: `openDialogue` starts a `DialogueClient` per provider (at most
//   `maximumClientSessions`); the request waits in the session layer's queue while the handshake
//   runs. The node marks the handshake stage when the session to the provider comes up; the shell
//   marks lookup and dial. Outcomes come back as `.event(.dialogue(...))`.
// - Provider: with `--provide`, a `DialogueServer` answers requests with the terms of the proposal
//   (service type, capacity, allow list), an inner address from its pool, DNS and MTU. On a clean
//   stop every session is ended with `shuttingDown`.

import Dialogue
import Kademlia
import Proposals
import UmbraCore

public struct DialogueNodeConfig: Sendable {
    public var client = DialogueClientConfig()
    /// The provider side's settings; service type, capacity and access come from `--provide`.
    public var server = DialogueServerConfig()
    /// Provider sessions a consumer keeps open at once.
    public var maximumClientSessions = 16
    public init() {}
}

/// What the dialogue part reports (events carry no obligation for the shell).
public enum DialogueEvent: Sendable, Equatable, CustomStringConvertible {
    case opened(ClientSession)
    case failed(provider: PublicKey, DialogueFailure)
    case ended(provider: PublicKey, EndCode)
    case served(ServerSession)
    case serviceEnded(ServerSession, EndCode)

    public var description: String {
        switch self {
        case .opened(let session):
            "opened to \(NodeAddress(publicKey: session.provider)) session \(session.sessionID) "
                + "inner \(session.grant.innerIPv4.address)"
        case .failed(let provider, let failure): "failed to \(NodeAddress(publicKey: provider)): \(failure)"
        case .ended(let provider, let code): "ended with \(NodeAddress(publicKey: provider)): \(code)"
        case .served(let session):
            "serving \(NodeAddress(publicKey: session.consumer)) session \(session.sessionID) "
                + "inner \(session.innerIPv4)"
        case .serviceEnded(let session, let code):
            "service to \(NodeAddress(publicKey: session.consumer)) ended: \(code)"
        }
    }
}

/// One consumer-side dialogue as `umbra session list` shows it.
public struct DialogueClientStatus: Sendable {
    public var provider: PublicKey
    public var phase: DialogueClientPhase
    public var timings: [StageTiming]
    public var counters: DialogueClientCounters
}

public struct DialogueStatus: Sendable {
    public var clients: [DialogueClientStatus]
    public var served: [ServerSession]
    public var serverCounters: DialogueServerCounters?
}

struct DialogueState: Sendable {
    var clients: [PublicKey: DialogueClient] = [:]
    var server: DialogueServer?

    init(config: NodeConfig) {
        guard let provide = config.market.provide else { return }
        var server = config.dialogue.server
        server.serviceType = provide.serviceType
        server.capacity = Int(provide.capacity)
        switch provide.access {
        case .open: server.accessPolicy = .open
        case .allowList(let keys): server.accessPolicy = .allowList(Set(keys))
        }
        self.server = DialogueServer(config: server)
    }
}

extension NodeInstance {
    // MARK: - Commands

    /// Opens a dialogue with `provider` for `serviceType` (its proposal's seq, when known). The
    /// outcome comes back as `.event(.dialogue(.opened | .failed))`. The caller makes the provider
    /// reachable first (`dial`). A dialogue already open or opening with it is left alone.
    public mutating func openDialogue(
        with provider: PublicKey, serviceType: String = "ip-tunnel", proposalSeq: UInt64 = 0,
        mode: TunnelMode = .fullTunnel, startedAt: Instant? = nil, now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        guard provider != identity.publicKey else { return [] }
        if let existing = dialogue.clients[provider] {
            switch existing.phase {
            case .requesting, .open: return []
            case .idle, .closed: dialogue.clients.removeValue(forKey: provider)
            }
        }
        guard dialogue.clients.count < config.dialogue.maximumClientSessions else {
            return [.event(.dialogue(.failed(provider: provider, .cancelled)))]
        }
        var client = DialogueClient(config: config.dialogue.client)
        if sessions.isEstablished(provider) { client.markStage(.handshake, at: now) }
        let clientEffects = client.open(
            provider: provider, serviceType: serviceType, proposalSeq: proposalSeq, mode: mode, startedAt: startedAt,
            now: now, rng: &rng)
        dialogue.clients[provider] = client
        var effects: [NodeEffect] = []
        absorbDialogue(clientEffects, provider: provider, now: now, rng: &rng, into: &effects)
        return effects
    }

    /// Makes `provider` reachable from the contacts of its proposal: directly, else (or when the
    /// direct endpoint does not answer within a second) through one of its relays (`dial`).
    public mutating func reach(
        _ provider: PublicKey, contacts: ServiceProposal.Contacts, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        let direct = Array(contacts.direct.filter { !$0.isRelayPath }.prefix(PeerRecordValue.maximumEndpoints))
        let relays = contacts.relays.prefix(PeerRecordValue.maximumRelays).map {
            NodeContact(publicKey: $0.publicKey, endpoint: $0.endpoint)
        }
        let record = direct.isEmpty && relays.isEmpty ? nil : PeerRecordValue(endpoints: direct, relays: relays)
        return dial(provider, record: record, now: now, rng: &rng)
    }

    /// Records a stage the shell measured (lookup, dial) for the dialogue with `provider`.
    public mutating func markDialogueStage(_ stage: DialogueStage, provider: PublicKey, at instant: Instant) {
        dialogue.clients[provider]?.markStage(stage, at: instant)
    }

    /// Ends the dialogue with `provider` (sends `end`).
    public mutating func closeDialogue(
        with provider: PublicKey, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        guard var client = dialogue.clients[provider] else { return [] }
        let clientEffects = client.close(now: now)
        dialogue.clients[provider] = client
        var effects: [NodeEffect] = []
        absorbDialogue(clientEffects, provider: provider, now: now, rng: &rng, into: &effects)
        return effects
    }

    /// On a clean stop: every consumer session served is ended with `shuttingDown`, every dialogue of
    /// ours closed.
    public mutating func endDialogues(now: Instant, rng: inout some RandomNumberGenerator) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        if var server = dialogue.server {
            let serverEffects = server.endAll(code: .shuttingDown, now: now)
            dialogue.server = server
            absorbServer(serverEffects, now: now, rng: &rng, into: &effects)
        }
        for provider in dialogue.clients.keys.sorted(by: Self.keyOrder) {
            effects += closeDialogue(with: provider, now: now, rng: &rng)
        }
        return effects
    }

    public var dialogueStatus: DialogueStatus {
        DialogueStatus(
            clients: dialogue.clients.keys.sorted(by: Self.keyOrder).map {
                let client = dialogue.clients[$0]!
                return DialogueClientStatus(
                    provider: $0, phase: client.phase, timings: client.timings, counters: client.counters)
            },
            served: dialogue.server?.sessions ?? [], serverCounters: dialogue.server?.counters)
    }

    // MARK: - Hooks

    mutating func dialogueTick(now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]) {
        for provider in dialogue.clients.keys.sorted(by: Self.keyOrder) {
            guard var client = dialogue.clients[provider], let due = client.nextDeadline, due <= now else { continue }
            let clientEffects = client.tick(now: now)
            dialogue.clients[provider] = client
            absorbDialogue(clientEffects, provider: provider, now: now, rng: &rng, into: &effects)
        }
        if var server = dialogue.server, let due = server.nextDeadline, due <= now {
            let serverEffects = server.tick(now: now)
            dialogue.server = server
            absorbServer(serverEffects, now: now, rng: &rng, into: &effects)
        }
    }

    var dialogueDeadline: Instant? {
        var candidates = dialogue.clients.values.compactMap(\.nextDeadline)
        if let deadline = dialogue.server?.nextDeadline { candidates.append(deadline) }
        return candidates.min()
    }

    mutating func dialoguePeerUp(_ key: PublicKey, now: Instant) {
        dialogue.clients[key]?.markStage(.handshake, at: now)
    }

    mutating func dialogueFrame(
        _ payload: [UInt8], from key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        let message: DialogueMessage
        do { message = try DialogueMessage(decoding: payload) } catch {
            counters.framesRejected += 1
            effects.append(.event(.frameRejected(key, reason: "dialogue: \(error)")))
            return
        }
        switch message {
        case .request(let requestID, _, _, _, _):
            guard dialogue.server != nil else {
                // Not a provider: say so rather than let the consumer time out.
                let reject = DialogueMessage.reject(
                    requestID: requestID, code: .unknownService, reason: "this node provides no service")
                sendFrame(.dialogue, reject.encoded(), to: key, now: now, rng: &rng, into: &effects)
                return
            }
            toServer(message, from: key, now: now, rng: &rng, into: &effects)
        case .accept, .reject:
            toClient(message, from: key, now: now, rng: &rng, into: &effects)
        case .keepalive(let sessionID, _), .status(let sessionID, _), .end(let sessionID, _):
            // Both ends send these; the session id tells which side of ours it is for.
            let ours = dialogue.clients[key].map { $0.session?.sessionID == sessionID || dialogue.server == nil }
            if ours == true {
                toClient(message, from: key, now: now, rng: &rng, into: &effects)
            } else if dialogue.server != nil {
                toServer(message, from: key, now: now, rng: &rng, into: &effects)
            } else {
                counters.framesRejected += 1
                effects.append(.event(.frameRejected(key, reason: "dialogue message for no session of ours")))
            }
        }
    }

    private mutating func toServer(
        _ message: DialogueMessage, from key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        guard var server = dialogue.server else { return }
        // The consumer's address, for the per-source share of the capacity (a relayed consumer's is
        // not known: it counts under no address).
        let source = sessions.snapshot(of: key)?.endpoint.flatMap { $0.isRelayPath ? nil : $0 }
        let serverEffects = server.handle(message, from: key, source: source, now: now, rng: &rng)
        dialogue.server = server
        absorbServer(serverEffects, now: now, rng: &rng, into: &effects)
    }

    private mutating func toClient(
        _ message: DialogueMessage, from key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        guard var client = dialogue.clients[key] else {
            counters.framesRejected += 1
            effects.append(.event(.frameRejected(key, reason: "dialogue answer without a request of ours")))
            return
        }
        let clientEffects = client.handle(message, from: key, now: now)
        dialogue.clients[key] = client
        absorbDialogue(clientEffects, provider: key, now: now, rng: &rng, into: &effects)
    }

    // MARK: - Effects

    mutating func absorbDialogue(
        _ clientEffects: [DialogueClientEffect], provider: PublicKey, now: Instant,
        rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        for effect in clientEffects {
            switch effect {
            case .send(let message, let peer):
                sendFrame(.dialogue, message.encoded(), to: peer, now: now, rng: &rng, into: &effects)
            case .opened(let session): effects.append(.event(.dialogue(.opened(session))))
            case .failed(let failure): effects.append(.event(.dialogue(.failed(provider: provider, failure))))
            case .ended(let code):
                tunnelDialogueEnded(provider: provider)
                effects.append(.event(.dialogue(.ended(provider: provider, code))))
            }
        }
    }

    mutating func absorbServer(
        _ serverEffects: [DialogueServerEffect], now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        for effect in serverEffects {
            switch effect {
            case .send(let message, let peer):
                sendFrame(.dialogue, message.encoded(), to: peer, now: now, rng: &rng, into: &effects)
            case .sessionOpened(let session): effects.append(.event(.dialogue(.served(session))))
            case .sessionEnded(let session, let code): effects.append(.event(.dialogue(.serviceEnded(session, code))))
            }
        }
    }
}
