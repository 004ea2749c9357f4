// Control API of the ledger (docs/api.md §Ledger): the replica's state as this node sees it, and
// this node's own entries (`NodeCommand.ledger`: the node drafts, signs, checks and certifies).
//
//   GET  /v1/ledger                          network, epoch, committee, this node's account
//   GET  /v1/ledger/balance[?account=umbra1…] one account (default: this node's)
//   GET  /v1/ledger/committee                the current committee, with who is connected
//   GET  /v1/ledger/channels[?account=…]     channels where the account is consumer or provider
//   GET  /v1/ledger/entries?account=…[&from=H][&limit=N]  an account's certified entries, by height
//   POST /v1/ledger/transfer?to=umbra1…&amount=N
//   POST /v1/ledger/bond?role=provider|relay|validator&amount=N
//   POST /v1/ledger/unbond?role=…&amount=N
//   POST /v1/ledger/withdraw

import Kademlia
import Ledger
import NIOHTTP1
import Node
import NodeRuntime
import UmbraCore

public struct LedgerAccountReport: Codable, Sendable, Equatable {
    public struct Unbonding: Codable, Sendable, Equatable {
        public var role: String
        public var amount: UInt64
        public var releaseAt: String
        public var releaseAtUnix: UInt64
        /// Seconds until it can be withdrawn (0: now).
        public var releaseInSeconds: Double
    }

    public var address: String
    public var balance: UInt64
    /// Bonded stake by role (`provider`, `relay`, `validator`); absent roles have none.
    public var bonded: [String: UInt64]
    public var unbonding: [Unbonding]
    public var slashed: UInt64
    /// The height of the account's next entry (how many it has).
    public var nextHeight: UInt64
    /// The hash of its last entry (64 hex digits; all zero before the first).
    public var head: String

    init(_ key: PublicKey, _ account: AccountState, now: Instant) {
        address = NodeAddress(publicKey: key).description
        balance = account.balance
        bonded = Dictionary(uniqueKeysWithValues: account.bonded.map { ($0.key.description, $0.value) })
        unbonding = account.unbonding.map {
            Unbonding(
                role: $0.role.description, amount: $0.amount, releaseAt: $0.releaseAt.rfc3339,
                releaseAtUnix: $0.releaseAt.nanoseconds / 1_000_000_000,
                releaseInSeconds: $0.releaseAt.since(now).seconds)
        }
        slashed = account.slashed
        nextHeight = account.nextHeight
        head = account.head.description
    }
}

public struct LedgerMemberReport: Codable, Sendable, Equatable {
    public var address: String
    public var stake: UInt64
    /// Whether this node has a session with it (vote requests need one); true for itself.
    public var connected: Bool
    public var isSelf: Bool
}

public struct LedgerChannelReport: Codable, Sendable, Equatable {
    public var id: String
    public var consumer: String
    public var provider: String
    public var deposit: UInt64
    public var expiry: String
    /// The highest claim certified so far.
    public var claimed: UInt64
    /// `open` or `closed`.
    public var state: String
    public var paid: UInt64?
    public var refunded: UInt64?

    init(_ channel: Channel) {
        id = channel.id.description
        consumer = NodeAddress(publicKey: channel.consumer).description
        provider = NodeAddress(publicKey: channel.provider).description
        deposit = channel.deposit
        expiry = channel.expiry.rfc3339
        claimed = channel.claimed
        state = channel.isClosed ? "closed" : "open"
        paid = channel.settlement?.paid
        refunded = channel.settlement?.refunded
    }
}

public struct LedgerStatusReport: Codable, Sendable, Equatable {
    /// `off` (no genesis), `loading` or `ready`.
    public var state: String
    public var network: String?
    /// The genesis id (64 hex digits).
    public var genesis: String?
    public var epoch: UInt64?
    /// Whether this node votes (`--validator` and a committee member).
    public var voting: Bool
    public var validatorRequested: Bool
    public var committee: [LedgerMemberReport]
    public var committeeStake: UInt64?
    public var accounts: Int?
    public var supply: UInt64?
    public var burned: UInt64?
    /// Certified entries waiting for a predecessor.
    public var pending: Int
    /// This node's account (nil: it holds nothing yet).
    public var account: LedgerAccountReport?
    /// An entry of ours sent for votes and not certified yet (it is sent again first).
    public var unfinishedHeight: UInt64?
    public var counters: [String: UInt64]
}

/// What a `POST /v1/ledger/…` answers: the certified entry.
public struct LedgerCertifiedReport: Codable, Sendable, Equatable {
    public var entry: String
    public var account: String
    public var height: UInt64
    public var epoch: UInt64
    public var kind: String
    /// Stake that signed the certificate, of the committee's total.
    public var signedStake: UInt64
    public var committeeStake: UInt64
    public var signers: Int
    /// An earlier entry of ours that held the slot and was certified first.
    public var retriedEntry: String?
    public var elapsedMs: Double
    /// This node's account after the entry.
    public var after: LedgerAccountReport?
}

/// One certified entry (`GET /v1/ledger/entries`).
public struct LedgerEntryReport: Codable, Sendable, Equatable {
    public var hash: String
    public var height: UInt64
    public var epoch: UInt64
    public var kind: String
    /// What it does, in words.
    public var summary: String
    /// The counterparty it names (recipient, provider, offender), if any.
    public var counterparty: String?
    public var amount: UInt64?
    public var at: String?
    public var signers: Int

    init(_ certified: CertifiedEntry) {
        let entry = certified.entry
        hash = entry.hash.description
        height = entry.height
        epoch = entry.epoch
        kind = "\(entry.kind)"
        signers = certified.certificate.votes.count
        at = entry.body.at?.rfc3339
        func name(_ key: PublicKey) -> String { NodeAddress(publicKey: key).description }
        switch entry.body {
        case .genesisAllocation(let recipient, let value):
            (counterparty, amount, summary) = (name(recipient), value, "genesis allocation of \(value)")
        case .transfer(let recipient, let value):
            (counterparty, amount, summary) = (name(recipient), value, "transfer \(value) to \(name(recipient))")
        case .bond(let role, let value):
            (amount, summary) = (value, "bond \(value) as \(role)")
        case .unbond(let role, let value, _):
            (amount, summary) = (value, "unbond \(value) of the \(role) bond")
        case .withdraw:
            summary = "withdraw released unbondings"
        case .channelOpen(let provider, let deposit, let expiry):
            (counterparty, amount) = (name(provider), deposit)
            summary =
                "open channel \(hash.prefix(16))… to \(name(provider)), deposit \(deposit), expires \(expiry.rfc3339)"
        case .channelClaim(let promise):
            amount = promise.amount
            summary = "claim \(promise.amount) on channel \(promise.channel.description.prefix(16))…"
        case .channelClose(let channel, _):
            summary = "close channel \(channel.description.prefix(16))…"
        case .evidence:
            summary = "evidence of an offense"
        case .epochChange(let newEpoch, let members, _):
            summary = "epoch \(newEpoch) with \(members.count) validators"
        }
    }
}

/// `GET /v1/ledger/entries`.
public struct LedgerEntriesReport: Codable, Sendable, Equatable {
    public var account: String
    public var entries: [LedgerEntryReport]
}

/// `GET /v1/ledger/committee`.
public struct LedgerCommitteeReport: Codable, Sendable, Equatable {
    public var epoch: UInt64
    public var totalStake: UInt64
    public var members: [LedgerMemberReport]
}

extension LedgerStatusReport {
    init(_ instance: NodeInstance, now: Instant) {
        let part = instance.ledger
        state = !part.isOn ? "off" : part.isLoading ? "loading" : "ready"
        validatorRequested = part.isValidatorConfigured
        voting = part.isVoting
        genesis = part.genesisID?.description
        pending = part.pendingCount
        let c = part.counters
        counters = [
            "entries_applied": c.entriesApplied, "entries_replayed": c.entriesReplayed,
            "stored_entries_rejected": c.storedEntriesRejected, "certificates_rejected": c.certificatesRejected,
            "entries_ignored": c.entriesIgnored, "entries_held": c.entriesHeld, "pending_dropped": c.pendingDropped,
            "vote_requests": c.voteRequests, "votes_sent": c.votesSent, "refusals_sent": c.refusalsSent,
            "locks_restored": c.locksRestored, "storage_failures": c.storageFailures, "malformed": c.malformed,
            "entry_write_failures": c.entryWriteFailures, "entry_writes_lost": c.entryWritesLost,
        ]
        let sync = part.syncCounters
        counters.merge([
            "sync_rounds": sync.rounds, "sync_rounds_abandoned": sync.roundsAbandoned,
            "sync_entries_fetched": sync.entriesFetched, "sync_unsolicited": sync.unsolicited,
            "sync_frontier_pages_served": sync.frontierPagesServed, "sync_ranges_served": sync.rangesServed,
            "sync_ranges_dropped": sync.rangesDropped, "sync_ranges_stalled": sync.rangesStalled,
        ]) { $1 }
        let me = instance.identity.publicKey
        unfinishedHeight = part.unfinished?.height
        guard let ledger = part.state else {
            committee = []
            return
        }
        network = ledger.network
        epoch = ledger.epoch
        committee = ledger.committee.members.map {
            LedgerMemberReport(
                address: NodeAddress(publicKey: $0.identity).description, stake: $0.stake,
                connected: $0.identity == me || instance.sessions.isEstablished($0.identity),
                isSelf: $0.identity == me)
        }
        committeeStake = ledger.committee.totalStake
        accounts = ledger.accounts.count
        supply = ledger.supply
        burned = ledger.burned
        account = ledger.accounts[me].map { LedgerAccountReport(me, $0, now: now) }
    }
}

extension ControlRouter {
    func ledgerRoute(_ request: APIRequest) async throws -> APIResponse? {
        guard request.path == "/v1/ledger" || request.path.hasPrefix("/v1/ledger/") else { return nil }
        let now = host.clock.now
        switch (request.method, request.path) {
        case (.GET, "/v1/ledger"):
            return try relayJSON(await host.withInstance { LedgerStatusReport($0, now: now) })
        case (.GET, "/v1/ledger/balance"):
            let key: PublicKey?
            switch Self.ledgerAccount(request.query["account"]) {
            case .failure(let problem): return try relayJSON(problem, status: .badRequest)
            case .success(let parsed): key = parsed
            }
            let (report, problem) = await host.withInstance { instance -> (LedgerAccountReport?, ErrorReport?) in
                guard let state = instance.ledger.state else { return (nil, Self.ledgerOff) }
                let account = key ?? instance.identity.publicKey
                guard let held = state.accounts[account] else {
                    return (
                        nil,
                        ErrorReport(
                            error: "unknown account \(NodeAddress(publicKey: account)): it has never held funds on "
                                + "ledger '\(state.network)'")
                    )
                }
                return (LedgerAccountReport(account, held, now: now), nil)
            }
            guard let report else {
                let off = problem == Self.ledgerOff
                return try relayJSON(problem ?? Self.ledgerOff, status: off ? .conflict : .notFound)
            }
            return try relayJSON(report)
        case (.GET, "/v1/ledger/committee"):
            let report = await host.withInstance { LedgerStatusReport($0, now: now) }
            guard report.state != "off" else { return try relayJSON(Self.ledgerOff, status: .conflict) }
            return try relayJSON(
                LedgerCommitteeReport(
                    epoch: report.epoch ?? 0, totalStake: report.committeeStake ?? 0, members: report.committee))
        case (.GET, "/v1/ledger/channels"):
            let key: PublicKey?
            switch Self.ledgerAccount(request.query["account"]) {
            case .failure(let problem): return try relayJSON(problem, status: .badRequest)
            case .success(let parsed): key = parsed
            }
            let channels = await host.withInstance { instance -> [LedgerChannelReport]? in
                guard let state = instance.ledger.state else { return nil }
                let account = key ?? instance.identity.publicKey
                return state.channels.values.filter { $0.consumer == account || $0.provider == account }
                    .sorted { $0.expiry != $1.expiry ? $0.expiry < $1.expiry : $0.id.description < $1.id.description }
                    .map(LedgerChannelReport.init)
            }
            guard let channels else { return try relayJSON(Self.ledgerOff, status: .conflict) }
            return try relayJSON(["channels": channels])
        case (.GET, "/v1/ledger/entries"):
            let key: PublicKey?
            switch Self.ledgerAccount(request.query["account"]) {
            case .failure(let problem): return try relayJSON(problem, status: .badRequest)
            case .success(let parsed): key = parsed
            }
            guard let from = UInt64(request.query["from"] ?? "0") else {
                return try relayJSON(ErrorReport(error: "from must be a height (a whole number)"), status: .badRequest)
            }
            guard let limit = Int(request.query["limit"] ?? "100"), (1...LedgerPart.maximumEntriesRead).contains(limit)
            else {
                return try relayJSON(
                    ErrorReport(error: "limit must be 1 to \(LedgerPart.maximumEntriesRead)"), status: .badRequest)
            }
            let account: PublicKey
            if let key { account = key } else { account = await host.withInstance { $0.identity.publicKey } }
            let result = try await host.run(.ledgerEntries(account: account, from: from, limit: limit))
            switch result {
            case .ledgerEntries(let entries):
                return try relayJSON(
                    LedgerEntriesReport(
                        account: NodeAddress(publicKey: account).description,
                        entries: entries.map(LedgerEntryReport.init)))
            case .failed(.invalid(let reason)):
                return try relayJSON(ErrorReport(error: reason), status: .conflict)
            case .failed(let failure):
                return try relayJSON(ErrorReport(error: failure.description), status: .serviceUnavailable)
            default:
                return try relayJSON(
                    ErrorReport(error: NodeDriver.CommandFailed(result).description), status: .internalServerError)
            }
        case (.POST, "/v1/ledger/transfer"), (.POST, "/v1/ledger/bond"), (.POST, "/v1/ledger/unbond"),
            (.POST, "/v1/ledger/withdraw"):
            let action: LedgerAction
            switch Self.ledgerAction(request.path, request.query) {
            case .failure(let problem): return try relayJSON(problem, status: .badRequest)
            case .success(let parsed): action = parsed
            }
            let result = try await host.run(.ledger(action))
            switch result {
            case .ledgerCertified(let certified, let retried):
                let me = await host.withInstance { $0.identity.publicKey }
                let account = await host.withInstance { instance in
                    instance.ledger.state?.accounts[me].map { LedgerAccountReport(me, $0, now: now) }
                }
                let committee = await host.withInstance { $0.ledger.state?.committees[certified.entry.epoch] }
                let votes = certified.certificate.votes
                let signed = votes.reduce(UInt64(0)) { $0 + (committee?.stake(of: $1.validator) ?? 0) }
                return try relayJSON(
                    LedgerCertifiedReport(
                        entry: certified.entry.hash.description, account: NodeAddress(publicKey: me).description,
                        height: certified.entry.height, epoch: certified.entry.epoch,
                        kind: "\(certified.entry.kind)", signedStake: signed,
                        committeeStake: committee?.totalStake ?? 0, signers: votes.count,
                        retriedEntry: retried?.entry.hash.description,
                        elapsedMs: host.clock.now.since(now).seconds * 1000, after: account))
            case .failed(.invalid(let reason)):
                return try relayJSON(ErrorReport(error: reason), status: .conflict)
            case .failed(let failure):
                return try relayJSON(ErrorReport(error: failure.description), status: .serviceUnavailable)
            default:
                return try relayJSON(
                    ErrorReport(error: NodeDriver.CommandFailed(result).description), status: .internalServerError)
            }
        case (_, "/v1/ledger"), (_, "/v1/ledger/balance"), (_, "/v1/ledger/committee"), (_, "/v1/ledger/channels"),
            (_, "/v1/ledger/entries"), (_, "/v1/ledger/transfer"), (_, "/v1/ledger/bond"), (_, "/v1/ledger/unbond"),
            (_, "/v1/ledger/withdraw"):
            return try relayJSON(
                ErrorReport(error: "method \(request.method) not allowed on \(request.path)"), status: .methodNotAllowed
            )
        default:
            return try relayJSON(ErrorReport(error: "no such ledger route: \(request.path)"), status: .notFound)
        }
    }

    static let ledgerOff = ErrorReport(
        error: "the ledger is off on this node: start it with --genesis FILE (see umbra ledger genesis)")

    /// An optional `account` query value.
    static func ledgerAccount(_ text: String?) -> Result<PublicKey?, ErrorReport> {
        guard let text, !text.isEmpty else { return .success(nil) }
        do { return .success(try NodeAddress(parsing: text).publicKey) } catch {
            return .failure(ErrorReport(error: "account: \(error)"))
        }
    }

    static func ledgerAction(_ path: String, _ query: [String: String]) -> Result<LedgerAction, ErrorReport> {
        func amount() -> Result<Amount, ErrorReport> {
            guard let text = query["amount"], let value = Amount(text), value > 0 else {
                return .failure(ErrorReport(error: "amount must be a whole number above 0"))
            }
            return .success(value)
        }
        func role() -> Result<Role, ErrorReport> {
            guard let text = query["role"], let role = Role.allCases.first(where: { $0.description == text }) else {
                return .failure(ErrorReport(error: "role must be provider, relay or validator"))
            }
            return .success(role)
        }
        switch path {
        case "/v1/ledger/transfer":
            guard let text = query["to"], !text.isEmpty else {
                return .failure(ErrorReport(error: "to must name the recipient's address (umbra1…)"))
            }
            let recipient: PublicKey
            do { recipient = try NodeAddress(parsing: text).publicKey } catch {
                return .failure(ErrorReport(error: "to: \(error)"))
            }
            return amount().map { .transfer(to: recipient, amount: $0) }
        case "/v1/ledger/bond": return role().flatMap { role in amount().map { .bond(role, amount: $0) } }
        case "/v1/ledger/unbond": return role().flatMap { role in amount().map { .unbond(role, amount: $0) } }
        default: return .success(.withdraw)
        }
    }
}

extension ErrorReport: Error {}
