// The dialogue part of the node: the consumer↔provider conversation on frame channel 0x40 inside
// their end-to-end session (direct, hole-punched or relayed: the session layer hides which).
//
// - Consumer: `openDialogue` starts a `DialogueClient` per provider (at most
//   `maximumClientSessions`); the request waits in the session layer's queue while the handshake
//   runs. The part marks the handshake stage when the session to the provider comes up; the shell
//   marks lookup and dial. Outcomes come back as `.event(.dialogue(...))`; an ended dialogue is
//   also a notice (`dialogueEnded`: the tunnel part detaches).
// - Provider: with `--provide`, a `DialogueServer` answers requests with the terms of the proposal
//   (service type, capacity, allow list), an inner address from its pool, DNS and MTU. Sessions
//   admitted and ended are notices (`serving`, `serviceEnded`: the tunnel part routes and polices
//   their inner addresses); the tunnel part's byte counts come back as `tunnelUsage` notices, the
//   consumer's meters as `tunnelMeters`. On a clean stop every session is ended with `shuttingDown`.

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

public struct DialoguePart: NodePart {
    public static let channels: [FrameChannel] = [.dialogue]

    let identity: Identity
    let config: DialogueNodeConfig
    var clients: [PublicKey: DialogueClient] = [:]
    /// The provider side (with `--provide`).
    var server: DialogueServer?

    init(identity: Identity, config: NodeConfig) {
        self.identity = identity
        self.config = config.dialogue
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

    public var nextDeadline: Instant? {
        var earliest = server?.nextDeadline
        for client in clients.values {
            if let deadline = client.nextDeadline, earliest.map({ deadline < $0 }) ?? true { earliest = deadline }
        }
        return earliest
    }

    public mutating func handle(
        _ event: PartEvent, node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        switch event {
        case .start, .peerDown, .pathChanged:
            break
        case .tick:
            tick(&node, now: now, rng: &rng)
        case .peerUp(let key, _):
            clients[key]?.markStage(.handshake, at: now)
        case .frame(_, let payload, let key):
            receive(payload, from: key, &node, now: now, rng: &rng)
        case .notice(.tunnelUsage(let usage)):
            guard var server else { return }
            var serverEffects: [DialogueServerEffect] = []
            for entry in usage {
                serverEffects += server.account(
                    entry.sessionID, bytesIn: entry.bytesIn, bytesOut: entry.bytesOut, now: now)
            }
            self.server = server
            apply(serverEffects, &node, now, &rng)
        case .notice(.tunnelMeters(let provider, let report)):
            guard var client = clients[provider] else { return }
            let clientEffects = client.reportStatus(report, now: now)
            clients[provider] = client
            apply(clientEffects, provider: provider, &node, now, &rng)
        case .notice:
            break
        }
    }

    // MARK: - Commands

    /// Opens a dialogue with `provider` (see `NodeInstance.openDialogue`).
    mutating func open(
        with provider: PublicKey, serviceType: String, proposalSeq: UInt64, mode: TunnelMode, startedAt: Instant?,
        _ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        guard provider != identity.publicKey else { return }
        if let existing = clients[provider] {
            switch existing.phase {
            case .requesting, .open: return
            case .idle, .closed: clients.removeValue(forKey: provider)
            }
        }
        guard clients.count < config.maximumClientSessions else {
            node.notify(.dialogueFailed(provider: provider, .cancelled))
            node.emit(.dialogue(.failed(provider: provider, .cancelled)))
            return
        }
        var client = DialogueClient(config: config.client)
        if node.sessions.isEstablished(provider) { client.markStage(.handshake, at: now) }
        let clientEffects = client.open(
            provider: provider, serviceType: serviceType, proposalSeq: proposalSeq, mode: mode, startedAt: startedAt,
            now: now, rng: &rng)
        clients[provider] = client
        apply(clientEffects, provider: provider, &node, now, &rng)
    }

    /// Ends the dialogue with `provider` (sends `end`).
    mutating func close(
        with provider: PublicKey, _ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        guard var client = clients[provider] else { return }
        let clientEffects = client.close(now: now)
        clients[provider] = client
        apply(clientEffects, provider: provider, &node, now, &rng)
    }

    /// On a clean stop: every consumer session served is ended with `shuttingDown`, every dialogue
    /// of ours closed.
    mutating func endAll(_ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator) {
        if var server {
            let serverEffects = server.endAll(code: .shuttingDown, now: now)
            self.server = server
            apply(serverEffects, &node, now, &rng)
        }
        for provider in clients.keys.sorted(by: NodeKernel.keyOrder) {
            close(with: provider, &node, now: now, rng: &rng)
        }
    }

    var status: DialogueStatus {
        DialogueStatus(
            clients: clients.keys.sorted(by: NodeKernel.keyOrder).map {
                let client = clients[$0]!
                return DialogueClientStatus(
                    provider: $0, phase: client.phase, timings: client.timings, counters: client.counters)
            },
            served: server?.sessions ?? [], serverCounters: server?.counters)
    }

    // MARK: - Inputs

    private mutating func tick(_ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator) {
        for provider in clients.keys.sorted(by: NodeKernel.keyOrder) {
            guard var client = clients[provider], let due = client.nextDeadline, due <= now else { continue }
            let clientEffects = client.tick(now: now)
            clients[provider] = client
            apply(clientEffects, provider: provider, &node, now, &rng)
        }
        if var server, let due = server.nextDeadline, due <= now {
            let serverEffects = server.tick(now: now)
            self.server = server
            apply(serverEffects, &node, now, &rng)
        }
    }

    private mutating func receive(
        _ payload: [UInt8], from key: PublicKey, _ node: inout NodeKernel, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        let message: DialogueMessage
        do { message = try DialogueMessage(decoding: payload) } catch {
            node.rejectFrame(from: key, reason: "dialogue: \(error)")
            return
        }
        switch message {
        case .request(let requestID, _, _, _, _):
            guard server != nil else {
                // Not a provider: say so rather than let the consumer time out.
                let reject = DialogueMessage.reject(
                    requestID: requestID, code: .unknownService, reason: "this node provides no service")
                node.sendFrame(.dialogue, reject.encoded(), to: key, now: now, rng: &rng)
                return
            }
            toServer(message, from: key, &node, now: now, rng: &rng)
        case .accept, .reject:
            toClient(message, from: key, &node, now: now, rng: &rng)
        case .keepalive(let sessionID, _), .status(let sessionID, _), .end(let sessionID, _):
            // Both ends send these; the session id tells which side of ours it is for.
            let ours = clients[key].map { $0.session?.sessionID == sessionID || server == nil }
            if ours == true {
                toClient(message, from: key, &node, now: now, rng: &rng)
            } else if server != nil {
                toServer(message, from: key, &node, now: now, rng: &rng)
            } else {
                node.rejectFrame(from: key, reason: "dialogue message for no session of ours")
            }
        }
    }

    private mutating func toServer(
        _ message: DialogueMessage, from key: PublicKey, _ node: inout NodeKernel, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        guard var server else { return }
        // The consumer's address, for the per-source share of the capacity (a relayed consumer's is
        // not known: it counts under no address).
        let source = node.sessions.path(of: key)?.directEndpoint
        let serverEffects = server.handle(message, from: key, source: source, now: now, rng: &rng)
        self.server = server
        apply(serverEffects, &node, now, &rng)
    }

    private mutating func toClient(
        _ message: DialogueMessage, from key: PublicKey, _ node: inout NodeKernel, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        guard var client = clients[key] else {
            node.rejectFrame(from: key, reason: "dialogue answer without a request of ours")
            return
        }
        let clientEffects = client.handle(message, from: key, now: now)
        clients[key] = client
        apply(clientEffects, provider: key, &node, now, &rng)
    }

    // MARK: - Effects

    private func apply(
        _ clientEffects: [DialogueClientEffect], provider: PublicKey, _ node: inout NodeKernel, _ now: Instant,
        _ rng: inout some RandomNumberGenerator
    ) {
        for effect in clientEffects {
            switch effect {
            case .send(let message, let peer):
                node.sendFrame(.dialogue, message.encoded(), to: peer, now: now, rng: &rng)
            case .opened(let session):
                node.notify(.dialogueOpened(session))
                node.emit(.dialogue(.opened(session)))
            case .failed(let failure):
                node.notify(.dialogueFailed(provider: provider, failure))
                node.emit(.dialogue(.failed(provider: provider, failure)))
            case .ended(let code):
                node.notify(.dialogueEnded(provider: provider))
                node.emit(.dialogue(.ended(provider: provider, code)))
            }
        }
    }

    private func apply(
        _ serverEffects: [DialogueServerEffect], _ node: inout NodeKernel, _ now: Instant,
        _ rng: inout some RandomNumberGenerator
    ) {
        for effect in serverEffects {
            switch effect {
            case .send(let message, let peer):
                node.sendFrame(.dialogue, message.encoded(), to: peer, now: now, rng: &rng)
            case .sessionOpened(let session):
                node.notify(.serving(session))
                node.emit(.dialogue(.served(session)))
            case .sessionEnded(let session, let code):
                node.notify(.serviceEnded(session))
                node.emit(.dialogue(.serviceEnded(session, code)))
            }
        }
    }
}
