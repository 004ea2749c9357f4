// The node's side of commands (Commands.swift): flows in flight, the inputs they react to, the
// actions they ask for, and `.completed` effects.

import Dialogue
import Kademlia
import Ledger
import Proposals
import UmbraCore

extension NodeInstance: FlowView {
    /// Commands in flight at most; beyond it a command completes at once with `busy`.
    public static let maximumCommands = 256

    /// Starts `command`; it completes with `.completed(id, result)` in these effects or later ones.
    /// An id already in flight, or more than `maximumCommands`, completes at once with `busy`.
    public mutating func submit(
        _ command: NodeCommand, id: CommandID, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [NodeEffect] {
        guard commands[id] == nil, commands.count < Self.maximumCommands else {
            return [.completed(id, .failed(.busy))]
        }
        var effects: [NodeEffect] = []
        switch command {
        case .connect:
            // One tunnel at a time: a second connect would race the first one's host set-up.
            if commands.values.contains(where: \.isConnect) {
                return [
                    .completed(
                        id, .failed(.invalid("another connect is in progress; wait for it, or run umbra disconnect")))
                ]
            }
        case .ledger:
            // One entry of this account at a time: a second would be drafted at the same height.
            if commands.values.contains(where: { if case .ledger = $0.command { true } else { false } }) {
                return [
                    .completed(
                        id, .failed(.invalid("another ledger entry of this node is being certified; wait for it")))
                ]
            }
        case .disconnect:
            // A connect in flight ends first, with its dialogue (the disconnect then undoes the host).
            for other in commands.keys.sorted() where commands[other]!.isConnect {
                var flow = commands.removeValue(forKey: other)!
                for action in flow.cancel("cancelled by a disconnect") {
                    perform(action, for: other, now: now, rng: &rng, into: &effects)
                }
            }
        default:
            break
        }
        commands[id] = CommandFlow(command)
        advance(id, .start, now: now, rng: &rng, into: &effects)
        return effects
    }

    /// Commands in flight, with what each was.
    public var commandsInFlight: [(id: CommandID, command: NodeCommand)] {
        commands.keys.sorted().map { ($0, commands[$0]!.command) }
    }

    // MARK: - FlowView

    func offers(serviceType: String, provider: PublicKey?, country: String?, now: Instant) -> [ServiceProposal] {
        let found = proposals(serviceType: serviceType, country: country, now: now)
        // The store's order: cheapest per GiB, then per minute, then by measured RTT.
        return provider.map { key in found.filter { $0.provider == key } } ?? found
    }

    /// Where datagrams to `peer` go when that is a socket address; nil when it is relayed (or unknown).
    func directEndpoint(of peer: PublicKey) -> Endpoint? { sessions.path(of: peer)?.directEndpoint }

    var localKey: PublicKey { identity.publicKey }

    var consumerHost: ConsumerHost { tunnel.host }

    func hasDialogue(with provider: PublicKey) -> Bool {
        guard let phase = dialogue.clients[provider]?.phase else { return false }
        return phase != .closed
    }

    func ledgerCommittee(epoch: UInt64) -> Committee? { ledger.state?.committees[epoch] }

    func ledgerDraft(_ action: LedgerAction, now: Instant) -> Result<LedgerDraft, CommandFailure> {
        ledger.draft(action, now: now)
    }

    func ledgerAnchorEpoch(for entry: LedgerEntry) -> UInt64? { ledger.state?.anchorEpoch(for: entry) }

    func ledgerChannelConsumer(_ channel: ChannelID) -> PublicKey? { ledger.state?.channels[channel]?.consumer }

    // MARK: - Inputs

    /// Hands an input to every flow in flight (by id, so the order replays).
    mutating func commandsInput(
        _ input: FlowInput, now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        guard !commands.isEmpty else { return }
        for id in commands.keys.sorted() { advance(id, input, now: now, rng: &rng, into: &effects) }
    }

    /// The inputs flows take from notices.
    mutating func commandsNotice(
        _ notice: NodeNotice, now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]
    ) {
        guard !commands.isEmpty else { return }
        switch notice {
        case .dialogueOpened(let session):
            commandsInput(.dialogueOpened(session), now: now, rng: &rng, into: &effects)
        case .dialogueFailed(let provider, let failure):
            commandsInput(.dialogueFailed(provider, failure), now: now, rng: &rng, into: &effects)
        case .offerStored(let provider, let serviceType):
            commandsInput(.offerStored(provider, serviceType: serviceType), now: now, rng: &rng, into: &effects)
        case .hostCompleted(let request, let outcome):
            commandsInput(.hostCompleted(request, outcome), now: now, rng: &rng, into: &effects)
        case .ledgerVote(let vote, let proof, let from):
            commandsInput(.ledgerVote(vote, proof: proof, from: from), now: now, rng: &rng, into: &effects)
        case .ledgerRefusal(let hash, let code, let from):
            commandsInput(.ledgerRefusal(hash, code, from: from), now: now, rng: &rng, into: &effects)
        case .ledgerEntriesRead(let id, let result):
            advance(id, .ledgerEntriesRead(result), now: now, rng: &rng, into: &effects)
        case .ledgerOwnPersisted(let id, let durable):
            advance(id, .ledgerOwnPersisted(durable: durable), now: now, rng: &rng, into: &effects)
        default:
            break
        }
    }

    mutating func commandsTick(now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]) {
        guard !commands.isEmpty else { return }
        for id in commands.keys.sorted() {
            guard let deadline = commands[id]?.deadline, deadline <= now else { continue }
            advance(id, .deadline, now: now, rng: &rng, into: &effects)
        }
    }

    /// The earliest deadline of a flow (commands come from the node's own operator, at most
    /// `maximumCommands` of them).
    var commandsDeadline: Instant? {
        guard !commands.isEmpty else { return nil }
        return commands.values.compactMap(\.deadline).min()
    }

    // MARK: - Actions

    private mutating func advance(
        _ id: CommandID, _ input: FlowInput, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        guard var flow = commands[id] else { return }
        let actions = flow.advance(input, view: self, now: now)
        if flow.isDone { commands.removeValue(forKey: id) } else { commands[id] = flow }
        for action in actions { perform(action, for: id, now: now, rng: &rng, into: &effects) }
    }

    private mutating func perform(
        _ action: FlowAction, for id: CommandID, now: Instant, rng: inout some RandomNumberGenerator,
        into effects: inout [NodeEffect]
    ) {
        switch action {
        case .ping(let peer):
            guard sessions.snapshot(of: peer) != nil || sessions.isEstablished(peer) else {
                // Unknown peer: nothing to send the ping to.
                commands.removeValue(forKey: id)
                effects.append(.completed(id, .failed(.invalid("no session with that peer; connect to it first"))))
                return
            }
            effects += ping(peer, now: now, rng: &rng).effects
        case .lookup(let key, let kind):
            effects += lookup(key, kind: kind, now: now, rng: &rng).effects
        case .publish(let kind, let key, let value):
            effects += publish(kind: kind, key: key, value: value, now: now, rng: &rng).effects
        case .fetchOffer(let provider, let serviceType, let endpoint):
            effects += fetchProposal(of: provider, serviceType: serviceType, at: endpoint, now: now, rng: &rng)
        case .reach(let provider, let contacts):
            effects += reach(provider, contacts: contacts, now: now, rng: &rng)
        case .openDialogue(let request):
            effects += openDialogue(
                with: request.provider, serviceType: request.serviceType, proposalSeq: request.proposalSeq,
                mode: request.mode, startedAt: request.startedAt, now: now, rng: &rng)
            markDialogueStage(.lookup, provider: request.provider, at: now)
        case .closeDialogue(let provider):
            effects += closeDialogue(with: provider, now: now, rng: &rng)
        case .setUpTunnel(let session, let options):
            // Where the session's datagrams go: the provider's address, or its relay's.
            let underlay = sessionPath(of: session.provider)?.endpoint?.address
            tunnel.setUpHost(ConsumerTunnelPlan(session: session, options: options, underlay: underlay), &kernel)
            drain(now: now, rng: &rng, into: &effects)
        case .tearDownTunnel:
            if let provider = tunnel.tearDownHost(&kernel) {
                effects += closeDialogue(with: provider, now: now, rng: &rng)
            }
            drain(now: now, rng: &rng, into: &effects)
        case .sendLedger(let message, let member):
            if member == identity.publicKey {
                ledger.receiveOwn(message, &kernel, now: now, rng: &rng)
            } else {
                // Over the session with the member (a kept committee contact or any other peer).
                kernel.sendFrame(.ledger, message.encoded(), to: member, now: now, rng: &rng)
            }
            drain(now: now, rng: &rng, into: &effects)
        case .ledgerCertified(let certified):
            ledger.acceptOwn(certified, &kernel, now: now, rng: &rng)
            drain(now: now, rng: &rng, into: &effects)
        case .ledgerSubmitted(let entry):
            ledger.submitted(entry, for: id, &kernel)
            drain(now: now, rng: &rng, into: &effects)
        case .readLedgerEntries(let account, let height, let limit):
            ledger.readEntries(for: id, account: account, from: height, limit: limit, &kernel)
            drain(now: now, rng: &rng, into: &effects)
        case .complete(let result):
            effects.append(.completed(id, result))
        }
    }
}
