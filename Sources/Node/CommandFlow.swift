// The workflows behind commands, as pure state machines: each reads the node through `FlowView`,
// reacts to inputs (start, a lookup's report, an offer stored, a dialogue opened or failed, a pong,
// its deadline) and returns actions the node carries out. No clock, no I/O, no polling: a flow that
// waits has a deadline, and the node calls it when the deadline passes.
//
// connect: candidates are the offers held (the named provider's, or the country's cheapest first);
//   none held: fetch the named provider's offer from the provider (its session's direct endpoint,
//   else its peer record's, looked up in the DHT), or discover the country's providers through the
//   DHT's provider index and fetch theirs; then, for up to `maximumCandidates` candidates in order:
//   reach the provider (its proposal's contacts: direct, else a relay), open a dialogue, and on a
//   failure go on to the next one. With host options, the open dialogue is followed by a host
//   request (HostRequests.swift): the shell sets up the TUN device and routes, and the connect
//   completes when it answers. A host set-up that fails ends the dialogue and the connect (the
//   failure is the host's, not the provider's: the next candidate would fail the same way).
//   A tunnel up before is torn down first.
// disconnect: stop the data plane, end the dialogue, ask the shell to undo the host's changes,
//   complete when it answers.
// ledgerSubmit: send a vote request to every member of the entry's epoch committee, collect the
//   votes (`CertificateCollector` checks each), and with more than two thirds of the stake hand the
//   certificate to the ledger part (applied, gossiped) and complete. Refusals that leave too little
//   stake for a quorum, or `ledgerWait` without one, fail it with the reasons heard.

import Dialogue
import Kademlia
import Ledger
import Proposals
import UmbraCore

/// What flows read of the node.
protocol FlowView {
    /// Live offers of `serviceType`, from `provider` or in `country`, cheapest first.
    func offers(serviceType: String, provider: PublicKey?, country: String?, now: Instant) -> [ServiceProposal]
    /// The direct (not relayed) endpoint of a session with `peer`, if any.
    func directEndpoint(of peer: PublicKey) -> Endpoint?
    var localKey: PublicKey { get }
    /// What the host holds for the consumer's tunnel.
    var consumerHost: ConsumerHost { get }
    /// Whether a dialogue of ours with `provider` is open (or opening).
    func hasDialogue(with provider: PublicKey) -> Bool
    /// The ledger committee of `epoch` (nil: the ledger is off, or the epoch is not known here).
    func ledgerCommittee(epoch: UInt64) -> Committee?
    /// The epoch whose committee must anchor `entry` (a crossing), nil when none must.
    func ledgerAnchorEpoch(for entry: LedgerEntry) -> UInt64?
    /// The consumer of a channel this node knows (to check close reports' promises as they arrive).
    func ledgerChannelConsumer(_ channel: ChannelID) -> PublicKey?
    /// This node's next ledger entry: an earlier one of ours that holds the account's next slot and
    /// is not certified yet (`isRetry`), else `action`'s, signed and checked against the replica.
    func ledgerDraft(_ action: LedgerAction, now: Instant) -> Result<LedgerDraft, CommandFailure>
}

/// An entry a `ledger` command submits.
struct LedgerDraft: Sendable, Equatable {
    var entry: LedgerEntry
    /// An earlier entry of ours, submitted again before the one asked for.
    var isRetry: Bool
}

/// What a flow asks the node to do.
enum FlowAction: Sendable, Equatable {
    case ping(PublicKey)
    case lookup(Key256, LookupKind)
    case publish(SignedRecord.Kind, key: Key256, value: [UInt8])
    case fetchOffer(PublicKey, serviceType: String, at: Endpoint)
    case reach(PublicKey, ServiceProposal.Contacts)
    case openDialogue(DialogueRequest)
    case closeDialogue(PublicKey)
    case setUpTunnel(ClientSession, ConsumerTunnelOptions)
    case tearDownTunnel
    /// Send a ledger message to a committee member (this node itself included).
    case sendLedger(LedgerMessage, to: PublicKey)
    /// Apply and gossip a certified entry this flow made.
    case ledgerCertified(CertifiedEntry)
    /// An entry of ours is about to go out for votes: the ledger part keeps it, on disk, until it is
    /// certified, and answers with the input `ledgerOwnPersisted` once it is durable.
    case ledgerSubmitted(LedgerEntry)
    /// Read stored certified entries (answered by the input `ledgerEntriesRead` for this command).
    case readLedgerEntries(account: PublicKey, from: UInt64, limit: Int)
    case complete(CommandResult)
}

/// What a flow reacts to.
enum FlowInput: Sendable {
    case start
    case lookupFinished(LookupReport)
    case putFinished(PutReport)
    case offerStored(PublicKey, serviceType: String)
    case dialogueOpened(ClientSession)
    case dialogueFailed(PublicKey, DialogueFailure)
    case pong(PublicKey, Duration)
    case hostCompleted(HostRequest, HostOutcome)
    case ledgerVote(Vote, proof: ChannelPromise?, from: PublicKey)
    case ledgerRefusal(EntryHash, RefusalCode, from: PublicKey)
    /// What this command's `readLedgerEntries` read (given to that command only).
    case ledgerEntriesRead(Result<[CertifiedEntry], CommandFailure>)
    /// This command's pending entry is durable (or its write failed).
    case ledgerOwnPersisted(durable: Bool)
    /// The flow's deadline passed.
    case deadline
}

/// One committee's side of a ledger submission: its votes, and who answered (one answer per member
/// counts, so the table is bounded by the committee).
struct LedgerQuorum: Sendable {
    var collector: CertificateCollector
    var answered: Set<PublicKey> = []
    var refusedStake: Amount = 0
    var certificate: Certificate?

    /// Whether the members that have not refused still carry more than two thirds of the stake.
    var canReachQuorum: Bool {
        let total = collector.committee.totalStake
        return exceedsTwoThirds(total - refusedStake, of: total)
    }
}

struct CommandFlow: Sendable {
    /// How long a fetched offer is waited for, once asked of its provider.
    static let fetchWait: Duration = .seconds(2)
    /// The longest any step waits for an answer the node itself bounds (DHT lookups, dialogue
    /// timeouts): a safety net, not a schedule.
    static let stepLimit: Duration = .seconds(60)
    /// How long a ledger submission waits for its certificate.
    static let ledgerWait: Duration = .seconds(10)

    enum State: Sendable {
        case new
        case pinging(PublicKey)
        case lookingUp(Key256)
        case publishing(Key256)
        /// Waiting for the provider's peer record (`endpoint == nil`) or its offer.
        case fetching(provider: PublicKey, recordLookup: Bool)
        /// Waiting for the index, then for the providers' records, then for their offers.
        case discovering(index: Bool, records: Set<PublicKey>, missing: [PublicKey], indexed: Int)
        /// Trying `candidates[current]`.
        case opening(candidates: [ServiceProposal], current: Int, attempts: [ConnectAttempt])
        case dialogue(PublicKey)
        /// Waiting for the shell to set up the host for the session opened with `proposal`.
        case settingUpHost(ClientSession, ServiceProposal)
        /// Waiting for the shell to tear the tunnel to `provider` down.
        case tearingDown(provider: PublicKey?)
        /// Collecting votes: from the entry's epoch committee, and for a crossing from the anchor's.
        case certifying([LedgerQuorum], refusals: [RefusalCode])
        /// A retried entry of ours was certified; the entry asked for is drafted at the deadline
        /// (right away), once the certified one is applied.
        case redrafting(retried: CertifiedEntry)
        /// Waiting for the ledger part's read of the store.
        case readingEntries
        /// Waiting until our entry is durable before its vote requests leave.
        case persistingOwn(LedgerEntry)
        case done
    }

    let command: NodeCommand
    private(set) var state = State.new
    private(set) var deadline: Instant?
    /// `ledger`: the earlier entry of ours certified before the one asked for.
    private var retried: CertifiedEntry?
    /// `ledger`: the entry out for votes is that earlier entry.
    private var submittedRetry = false
    /// When certifying gives up (`ledgerWait` after the vote requests left).
    private var certifyBy = Instant.zero
    /// The wait before unanswered members are asked again.
    private var resendDelay = Self.firstResend
    static let firstResend: Duration = .milliseconds(400)

    init(_ command: NodeCommand) { self.command = command }

    var isDone: Bool { if case .done = state { true } else { false } }

    // MARK: - Inputs

    mutating func advance(_ input: FlowInput, view: some FlowView, now: Instant) -> [FlowAction] {
        if case .deadline = input, let deadline, deadline > now { return [] }
        switch (state, input) {
        case (.done, _):
            return []
        case (.new, .start):
            return start(view: view, now: now)
        case (.new, _):
            return []

        case (.pinging(let peer), .pong(let from, let rtt)) where from == peer:
            return finish(.pong(rtt))
        case (.pinging, .deadline):
            return finish(.failed(.timedOut))

        case (.lookingUp(let target), .lookupFinished(let report)) where report.target == target:
            return finish(.lookup(report))
        case (.publishing(let key), .putFinished(let report)) where report.key == key:
            return finish(.put(report))
        case (.lookingUp, .deadline), (.publishing, .deadline):
            return finish(.failed(.timedOut))

        case (.fetching(let provider, true), .lookupFinished(let report))
        where report.target == RecordKey.peer(provider):
            let endpoint = report.records.first { $0.publisher == provider }
                .flatMap { try? PeerRecordValue.decode($0.value) }?.endpoints.first
            guard let endpoint else { return fetchEnded(view: view, now: now) }
            state = .fetching(provider: provider, recordLookup: false)
            deadline = now + Self.fetchWait
            return [.fetchOffer(provider, serviceType: serviceType, at: endpoint)]
        case (.fetching(let provider, false), .offerStored(let stored, let type))
        where stored == provider && type == serviceType:
            return fetchEnded(view: view, now: now)
        case (.fetching, .deadline):
            return fetchEnded(view: view, now: now)

        case (.discovering(true, _, _, _), .lookupFinished(let report)) where report.target == indexKey:
            return indexFound(report, view: view, now: now)
        case (.discovering(false, var records, let missing, let indexed), .lookupFinished(let report)):
            guard let provider = records.first(where: { RecordKey.peer($0) == report.target }) else { return [] }
            records.remove(provider)
            var actions: [FlowAction] = []
            if let endpoint = report.records.first(where: { $0.publisher == provider })
                .flatMap({ try? PeerRecordValue.decode($0.value) })
                .flatMap({ $0.endpoints.first ?? $0.relays.first?.endpoint })
            {
                actions.append(.fetchOffer(provider, serviceType: serviceType, at: endpoint))
            }
            state = .discovering(index: false, records: records, missing: missing, indexed: indexed)
            if records.isEmpty { deadline = now + Self.fetchWait }
            return actions + discoveryProgress(view: view, now: now)
        case (.discovering(false, _, _, _), .offerStored):
            return discoveryProgress(view: view, now: now)
        case (.discovering, .deadline):
            return discoveryEnded(view: view, now: now)

        case (.opening(let candidates, let current, _), .dialogueOpened(let session))
        where session.provider == candidates[current].provider:
            guard case .connect(let request) = command, let options = request.host else {
                return finish(.connected(session, candidates[current]))
            }
            state = .settingUpHost(session, candidates[current])
            deadline = nil  // the shell answers every host request
            return [.setUpTunnel(session, options)]

        case (.settingUpHost(let session, let proposal), .hostCompleted(let request, let outcome)):
            guard case .setUpConsumerTunnel(let plan) = request.action, plan.session == session else { return [] }
            switch outcome {
            case .done:
                guard view.consumerHost == .up(plan) else {
                    return [.closeDialogue(session.provider)]
                        + finish(.failed(.invalid("disconnected while the host was being set up")))
                }
                guard view.hasDialogue(with: session.provider) else {
                    // The provider ended the session meanwhile: nothing would carry the packets.
                    return [.tearDownTunnel]
                        + finish(.failed(.invalid("the provider ended the session while the host was being set up")))
                }
                return finish(.connected(session, proposal))
            case .failed(let reason):
                return [.closeDialogue(session.provider)] + finish(.failed(.host(reason)))
            }

        case (.tearingDown(let provider), .hostCompleted(let request, let outcome)):
            guard request.action == .tearDownConsumerTunnel else { return [] }
            if case .failed(let reason) = outcome { return finish(.failed(.host(reason))) }
            guard case .connect = command else { return finish(.disconnected(provider: provider)) }
            return startConnect(view: view, now: now)
        case (.opening(let candidates, let current, var attempts), .dialogueFailed(let provider, let failure))
        where provider == candidates[current].provider:
            attempts.append(ConnectAttempt(provider: provider, failure: failure))
            return open(candidates, at: current + 1, attempts: attempts, now: now)
        case (.opening(let candidates, let current, var attempts), .deadline):
            attempts.append(ConnectAttempt(provider: candidates[current].provider, failure: .timeout))
            return open(candidates, at: current + 1, attempts: attempts, now: now)

        case (.dialogue(let provider), .dialogueOpened(let session)) where session.provider == provider:
            return finish(.dialogueOpened(session))
        case (.dialogue(let provider), .dialogueFailed(let failed, let failure)) where failed == provider:
            return finish(.failed(.dialogue(failure)))
        case (.certifying(var quorums, let refusals), .ledgerVote(let vote, let proof, _))
        where vote.entryHash == quorums[0].collector.entryHash:
            // Only a vote that checks marks its member as answered: a forged one naming a member
            // changes nothing.
            for index in quorums.indices where quorums[index].collector.epoch == vote.epoch {
                do throws(LedgerError) {
                    let made = try quorums[index].collector.add(vote, proof: proof)
                    quorums[index].answered.insert(vote.validator)
                    if let made { quorums[index].certificate = made }
                } catch {
                    continue
                }
            }
            let certificates = quorums.compactMap(\.certificate)
            guard certificates.count == quorums.count else {
                state = .certifying(quorums, refusals: refusals)
                return []
            }
            let certified = CertifiedEntry(
                entry: quorums[0].collector.entry, certificate: certificates[0], anchor: certificates.dropFirst().first)
            if case .ledger = command, submittedRetry {
                state = .redrafting(retried: certified)
                deadline = now
                return [.ledgerCertified(certified)]
            }
            return [.ledgerCertified(certified)] + finish(.ledgerCertified(certified, retried: retried))
        case (.readingEntries, .ledgerEntriesRead(let result)):
            switch result {
            case .success(let entries): return finish(.ledgerEntries(entries))
            case .failure(let failure): return finish(.failed(failure))
            }
        case (.readingEntries, .deadline):
            return finish(.failed(.timedOut))
        case (.persistingOwn(let entry), .ledgerOwnPersisted(let durable)):
            guard durable else {
                return finish(
                    .failed(
                        .invalid(
                            "this node could not write its entry to its store, so nothing was sent; check the disk "
                                + "(the node's log names the error) and try again")))
            }
            return certify(entry, view: view, now: now)
        case (.persistingOwn, .deadline):
            return finish(.failed(.timedOut))
        case (.redrafting(let certified), .deadline):
            guard case .ledger(let action) = command else { return [] }
            retried = certified
            return submitDraft(action, view: view, now: now)
        case (.certifying(var quorums, var refusals), .ledgerRefusal(let hash, let code, let from))
        where hash == quorums[0].collector.entryHash:
            // Refusals that may pass are not counted: a member that has not applied our previous entry
            // yet (`wrongPosition`: its certificate or a catch-up is on its way) or is busy (loading, a
            // full table) stays unanswered, so the resends ask it again until the limit.
            if code == .wrongPosition || code == .busy {
                if !refusals.contains(code) { refusals.append(code) }
                state = .certifying(quorums, refusals: refusals)
                return []
            }
            var counted = false
            for index in quorums.indices {
                guard let stake = quorums[index].collector.committee.stake(of: from),
                    quorums[index].answered.insert(from).inserted
                else { continue }
                quorums[index].refusedStake += stake
                counted = true
            }
            guard counted else { return [] }
            refusals.append(code)
            if let blocked = quorums.first(where: { !$0.canReachQuorum }) {
                let total = blocked.collector.committee.totalStake
                let reasons = Set(refusals.map(\.description)).sorted().joined(separator: "; ")
                return finish(
                    .failed(ledgerFailure("refused by \(blocked.refusedStake) of \(total) stake: \(reasons)")))
            }
            state = .certifying(quorums, refusals: refusals)
            return []
        case (.certifying(let quorums, _), .deadline) where now < certifyBy:
            // Datagrams get lost: members that have not answered are asked again (a member answers
            // a repeat with the vote it stored), with the wait doubling up to the certification limit.
            resendDelay = resendDelay * 2
            deadline = min(now + resendDelay, certifyBy)
            var asked = Set<PublicKey>()
            return quorums.flatMap { quorum in
                quorum.collector.committee.members.map(\.identity).filter { !quorum.answered.contains($0) }
            }.compactMap { member in
                asked.insert(member).inserted ? .sendLedger(.voteRequest(quorums[0].collector.entry), to: member) : nil
            }
        case (.certifying(let quorums, _), .deadline):
            let short = quorums.first { $0.certificate == nil } ?? quorums[0]
            let total = short.collector.committee.totalStake
            return finish(
                .failed(
                    ledgerFailure(
                        "no quorum within \(Self.ledgerWait): \(short.collector.collectedStake) of \(total) stake "
                            + "of epoch \(short.collector.epoch) voted, \(short.refusedStake) refused")))

        case (.dialogue, .deadline):
            return finish(.failed(.dialogue(.timeout)))

        default:
            return []
        }
    }

    // MARK: - Steps

    private var serviceType: String {
        switch command {
        case .fetchProposal(_, let serviceType), .discoverProviders(let serviceType, _): serviceType
        case .connect(let request): request.serviceType
        case .openDialogue(let request): request.serviceType
        case .ping, .lookup, .publish, .disconnect, .closeDialogue, .ledgerSubmit, .ledger, .ledgerEntries: ""
        }
    }

    /// The provider index key a discovery looks up (nil: the command discovers nothing).
    private var indexKey: Key256? {
        switch command {
        case .discoverProviders(let serviceType, let country):
            RecordKey.providerIndex(serviceType: serviceType, country: country.uppercased())
        case .connect(let request):
            if case .country(let country) = request.target {
                RecordKey.providerIndex(serviceType: request.serviceType, country: country.uppercased())
            } else {
                nil
            }
        default: nil
        }
    }

    private mutating func start(view: some FlowView, now: Instant) -> [FlowAction] {
        switch command {
        case .ping(let peer, let timeout):
            state = .pinging(peer)
            deadline = now + timeout
            return [.ping(peer)]
        case .lookup(let target, let kind):
            state = .lookingUp(target)
            deadline = now + Self.stepLimit
            return [.lookup(target, kind)]
        case .publish(let kind, let key, let value):
            state = .publishing(key)
            deadline = now + Self.stepLimit
            return [.publish(kind, key: key, value: value)]
        case .fetchProposal(let provider, let serviceType):
            guard view.offers(serviceType: serviceType, provider: provider, country: nil, now: now).isEmpty else {
                return finish(.proposalFetched(held: true))
            }
            return fetch(provider, view: view, now: now)
        case .discoverProviders(_, _):
            return discover(now: now)
        case .openDialogue(let request):
            guard request.provider != view.localKey else { return finish(.failed(.invalid("that is this node"))) }
            state = .dialogue(request.provider)
            deadline = now + Self.stepLimit
            var actions: [FlowAction] = []
            if let contacts = request.contacts { actions.append(.reach(request.provider, contacts)) }
            return actions + [.openDialogue(request)]
        case .connect:
            // One tunnel at a time: the one up before goes first.
            switch view.consumerHost {
            case .none:
                return startConnect(view: view, now: now)
            case .settingUp:
                return finish(
                    .failed(.invalid("another connect is setting up the host; wait for it, or run umbra disconnect")))
            case .up(let plan):
                state = .tearingDown(provider: plan.provider)
                return [.tearDownTunnel]
            case .tearingDown(_, let provider):
                state = .tearingDown(provider: provider)
                return []
            }
        case .disconnect:
            switch view.consumerHost {
            case .none:
                return finish(.disconnected(provider: nil))
            case .settingUp(_, let plan), .up(let plan):
                state = .tearingDown(provider: plan.provider)
                return [.tearDownTunnel]
            case .tearingDown(_, let provider):
                state = .tearingDown(provider: provider)
                return []
            }
        case .closeDialogue(let provider):
            let existed = view.hasDialogue(with: provider)
            return [.closeDialogue(provider)] + finish(.dialogueClosed(existed: existed))
        case .ledgerSubmit(let entry):
            return certify(entry, view: view, now: now)
        case .ledger(let action):
            return submitDraft(action, view: view, now: now)
        case .ledgerEntries(let account, let height, let limit):
            state = .readingEntries
            deadline = now + Self.stepLimit
            return [.readLedgerEntries(account: account, from: height, limit: limit)]
        }
    }

    /// Asks the entry's committee (and for a crossing the anchor's) to certify `entry`.
    private mutating func certify(_ entry: LedgerEntry, view: some FlowView, now: Instant) -> [FlowAction] {
        guard let committee = view.ledgerCommittee(epoch: entry.epoch) else {
            return finish(.failed(.ledger("the ledger is off here, or epoch \(entry.epoch) is unknown")))
        }
        var consumer: PublicKey?
        if case .channelClose(let channel, _) = entry.body { consumer = view.ledgerChannelConsumer(channel) }
        var quorums = [
            LedgerQuorum(collector: CertificateCollector(entry: entry, committee: committee, channelConsumer: consumer))
        ]
        // A crossing also needs the anchor committee's votes (docs/protocol.md §15.4).
        if let anchorEpoch = view.ledgerAnchorEpoch(for: entry) {
            guard let anchor = view.ledgerCommittee(epoch: anchorEpoch) else {
                return finish(.failed(.ledger("epoch \(anchorEpoch) is unknown here")))
            }
            quorums.append(
                LedgerQuorum(
                    collector: CertificateCollector(
                        entry: entry, committee: anchor, epoch: anchorEpoch, channelConsumer: consumer)))
        }
        state = .certifying(quorums, refusals: [])
        certifyBy = now + Self.ledgerWait
        resendDelay = Self.firstResend
        deadline = now + resendDelay
        var asked = Set<PublicKey>()
        return quorums.flatMap(\.collector.committee.members).compactMap { member in
            asked.insert(member.identity).inserted ? .sendLedger(.voteRequest(entry), to: member.identity) : nil
        }
    }

    /// Why certifying failed; for an earlier entry sent again, which one. A `ledger` command's entry
    /// stays pending: saying so keeps an operator from repeating the command (and paying twice).
    private func ledgerFailure(_ reason: String) -> CommandFailure {
        guard case .ledger = command, case .certifying(let quorums, _) = state else { return .ledger(reason) }
        let entry = quorums[0].collector.entry
        let pending =
            "; the entry stays pending and the next umbra ledger command sends it first (do not repeat this one)"
        guard submittedRetry else { return .ledger(reason + pending) }
        return .ledger(
            "an earlier entry of this node (\(entry.kind) at height \(entry.height)) holds the account's next slot "
                + "and was sent again first: \(reason)" + pending)
    }

    /// Drafts this node's next entry and asks the committee to certify it.
    private mutating func submitDraft(_ action: LedgerAction, view: some FlowView, now: Instant) -> [FlowAction] {
        let draft: LedgerDraft
        switch view.ledgerDraft(action, now: now) {
        case .success(let made): draft = made
        case .failure(let failure): return finish(.failed(failure))
        }
        if draft.isRetry, retried != nil {
            // The earlier entry was certified but has not applied here yet.
            return finish(
                .failed(
                    .invalid(
                        "an earlier entry of this node was certified and is not applied here yet; "
                            + "try again in a moment")))
        }
        // The pending entry is what was asked again (the command was repeated after a failure): it
        // is the answer, nothing else is drafted after it.
        submittedRetry = draft.isRetry && !action.matches(draft.entry.body)
        state = .persistingOwn(draft.entry)
        deadline = now + Self.stepLimit
        return [.ledgerSubmitted(draft.entry)]
    }

    private mutating func startConnect(view: some FlowView, now: Instant) -> [FlowAction] {
        guard case .connect(let request) = command else { return [] }
        let candidates = connectCandidates(view: view, now: now)
        if !candidates.isEmpty { return open(candidates, at: 0, attempts: [], now: now) }
        switch request.target {
        case .provider(let provider):
            guard provider != view.localKey else { return finish(.failed(.invalid("that is this node"))) }
            return fetch(provider, view: view, now: now)
        case .country:
            return discover(now: now)
        }
    }

    private mutating func fetch(_ provider: PublicKey, view: some FlowView, now: Instant) -> [FlowAction] {
        if let endpoint = view.directEndpoint(of: provider) {
            state = .fetching(provider: provider, recordLookup: false)
            deadline = now + Self.fetchWait
            return [.fetchOffer(provider, serviceType: serviceType, at: endpoint)]
        }
        state = .fetching(provider: provider, recordLookup: true)
        deadline = now + Self.stepLimit
        return [.lookup(RecordKey.peer(provider), .value)]
    }

    /// The fetch got its answer or its time is up: a fetch command completes; a connect goes on.
    private mutating func fetchEnded(view: some FlowView, now: Instant) -> [FlowAction] {
        guard case .fetching(let provider, _) = state else { return [] }
        let held = !view.offers(serviceType: serviceType, provider: provider, country: nil, now: now).isEmpty
        guard case .connect = command else { return finish(.proposalFetched(held: held)) }
        let candidates = connectCandidates(view: view, now: now)
        guard !candidates.isEmpty else {
            return finish(.failed(.noOffer(provider: provider, serviceType: serviceType)))
        }
        return open(candidates, at: 0, attempts: [], now: now)
    }

    private mutating func discover(now: Instant) -> [FlowAction] {
        guard let indexKey else { return finish(.failed(.invalid("no country to discover providers in"))) }
        state = .discovering(index: true, records: [], missing: [], indexed: 0)
        deadline = now + Self.stepLimit
        return [.lookup(indexKey, .value)]
    }

    private mutating func indexFound(_ report: LookupReport, view: some FlowView, now: Instant) -> [FlowAction] {
        let country = self.country
        let providers = Set(
            report.records.compactMap { try? ProviderIndexValue.decode($0.value) }
                .filter { $0.serviceType == serviceType && $0.country == country }.map(\.provider)
        ).sorted(by: NodeKernel.keyOrder)
        let missing = providers.filter {
            $0 != view.localKey && view.offers(serviceType: serviceType, provider: $0, country: nil, now: now).isEmpty
        }
        state = .discovering(index: false, records: Set(missing), missing: missing, indexed: providers.count)
        guard !missing.isEmpty else { return discoveryEnded(view: view, now: now) }
        deadline = now + Self.stepLimit
        return missing.map { .lookup(RecordKey.peer($0), .value) }
    }

    /// Every missing offer came: the discovery is over early.
    private mutating func discoveryProgress(view: some FlowView, now: Instant) -> [FlowAction] {
        guard case .discovering(false, let records, let missing, _) = state, records.isEmpty else { return [] }
        let stillMissing = missing.filter {
            view.offers(serviceType: serviceType, provider: $0, country: nil, now: now).isEmpty
        }
        return stillMissing.isEmpty ? discoveryEnded(view: view, now: now) : []
    }

    private mutating func discoveryEnded(view: some FlowView, now: Instant) -> [FlowAction] {
        guard case .discovering(_, _, let missing, let indexed) = state else { return [] }
        let fetched = missing.filter {
            !view.offers(serviceType: serviceType, provider: $0, country: nil, now: now).isEmpty
        }.count
        guard case .connect = command else { return finish(.providersDiscovered(indexed: indexed, fetched: fetched)) }
        let candidates = connectCandidates(view: view, now: now)
        guard !candidates.isEmpty else {
            return finish(.failed(.noProvider(country: country, serviceType: serviceType)))
        }
        return open(candidates, at: 0, attempts: [], now: now)
    }

    private var country: String {
        switch command {
        case .discoverProviders(_, let country): country.uppercased()
        case .connect(let request):
            if case .country(let country) = request.target { country.uppercased() } else { "" }
        default: ""
        }
    }

    private func connectCandidates(view: some FlowView, now: Instant) -> [ServiceProposal] {
        guard case .connect(let request) = command else { return [] }
        let offers: [ServiceProposal]
        switch request.target {
        case .provider(let provider):
            offers = view.offers(serviceType: request.serviceType, provider: provider, country: nil, now: now)
        case .country(let country):
            offers = view.offers(
                serviceType: request.serviceType, provider: nil, country: country.uppercased(), now: now)
        }
        return Array(offers.filter { $0.provider != view.localKey }.prefix(max(1, request.maximumCandidates)))
    }

    /// Tries `candidates[index]`: reach it, open a dialogue; past the last one, the connect fails.
    private mutating func open(
        _ candidates: [ServiceProposal], at index: Int, attempts: [ConnectAttempt], now: Instant
    ) -> [FlowAction] {
        guard case .connect(let request) = command, index < candidates.count else {
            return finish(.failed(.noneAnswered(attempts)))
        }
        let proposal = candidates[index]
        state = .opening(candidates: candidates, current: index, attempts: attempts)
        deadline = now + Self.stepLimit
        let dialogue = DialogueRequest(
            provider: proposal.provider, serviceType: request.serviceType, proposalSeq: proposal.seq,
            mode: request.mode, contacts: proposal.contacts, startedAt: request.startedAt)
        return [.reach(proposal.provider, proposal.contacts), .openDialogue(dialogue)]
    }

    /// Ends a connect before it completes (a disconnect came): the dialogue it opened or is opening
    /// is closed. The host, if a set-up is in flight, is the disconnect's to tear down.
    mutating func cancel(_ reason: String) -> [FlowAction] {
        var actions: [FlowAction] = []
        switch state {
        case .opening(let candidates, let current, _): actions.append(.closeDialogue(candidates[current].provider))
        case .settingUpHost(let session, _): actions.append(.closeDialogue(session.provider))
        default: break
        }
        return actions + finish(.failed(.invalid(reason)))
    }

    var isConnect: Bool { if case .connect = command { true } else { false } }

    private mutating func finish(_ result: CommandResult) -> [FlowAction] {
        state = .done
        deadline = nil
        return [.complete(result)]
    }
}
