// Commands: every action the CLI or the API asks of a node is a command given to the pure node
// with an id (`NodeInstance.submit`); the node completes it with `NodeEffect.completed(id, result)`
// — at once, or later, when the answer, a timeout or the last failover comes. The shell keeps one
// promise per id and nothing else: no polling, no matching of events.
//
// The workflows behind commands (fetch a provider's offer, discover providers through the DHT,
// open a dialogue, connect with failover) are pure state machines with deadlines
// (`CommandFlow`, CommandFlow.swift), driven by the node's inputs like every part.

import Dialogue
import Kademlia
import Ledger
import Proposals
import UmbraCore

/// Names a command in flight (chosen by the shell, unique among its commands).
public struct CommandID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public static func < (lhs: CommandID, rhs: CommandID) -> Bool { lhs.value < rhs.value }
    public var description: String { "#\(value)" }
}

/// What a node can be asked to do.
public enum NodeCommand: Sendable, Equatable {
    /// Pings a peer (handshaking first if needed); fails after `timeout`.
    case ping(PublicKey, timeout: Duration)
    /// A DHT lookup of a node or a value.
    case lookup(Key256, LookupKind)
    /// Signs and stores a record of ours in the DHT.
    case publish(SignedRecord.Kind, key: Key256, value: [UInt8])
    /// Fetches `provider`'s offer of `serviceType` from the provider itself (its session's direct
    /// endpoint, else its peer record's), for a provider gossip has not brought yet.
    case fetchProposal(provider: PublicKey, serviceType: String)
    /// Finds the providers of `serviceType` in `country` through the DHT's provider index and
    /// fetches the offers of those whose offer this node does not hold.
    case discoverProviders(serviceType: String, country: String)
    /// Makes a provider reachable (its proposal's contacts) and opens a dialogue with it.
    case openDialogue(DialogueRequest)
    /// Chooses a provider (named, or by country and cheapest first), fetches a missing offer,
    /// opens a dialogue, and fails over to the next candidate; then (with `host` options) has the
    /// shell set up the host and routes packets through the tunnel. A tunnel up before is torn
    /// down first (one tunnel at a time).
    case connect(ConnectRequest)
    /// Tears the consumer tunnel down: packets stop, the host's changes are undone, the dialogue
    /// with its provider ends.
    case disconnect
    /// Ends the dialogue with a provider (its tunnel carries nothing more; routes stay until a
    /// disconnect).
    case closeDialogue(PublicKey)
    /// Asks every member of the entry's epoch committee for a vote, makes the certificate from the
    /// votes of more than two thirds of the stake, applies it here and gossips it on `ledger`.
    case ledgerSubmit(LedgerEntry)
    /// Makes, signs and submits this node's next entry (network, epoch, height and prev from its
    /// replica; times from `now`), after checking it against the replica so a transfer beyond the
    /// balance fails here with the exact reason. An entry of ours submitted before and not certified
    /// yet holds the account's next slot: it is submitted again first (validators may have locked
    /// the slot for it), then `action`.
    case ledger(LedgerAction)
    /// Reads `account`'s certified entries from this node's store, from `height` on, at most
    /// `limit` (1...`LedgerPart.maximumEntriesRead`).
    case ledgerEntries(account: PublicKey, from: UInt64, limit: Int)
}

/// What an account does on the ledger (`NodeCommand.ledger`).
public enum LedgerAction: Sendable, Equatable, CustomStringConvertible {
    case transfer(to: PublicKey, amount: Amount)
    case bond(Role, amount: Amount)
    case unbond(Role, amount: Amount)
    /// Moves every unbonding whose delay has passed back to the balance.
    case withdraw

    /// The entry body of this action at `now`.
    public func body(now: Instant) -> EntryBody {
        switch self {
        case .transfer(let recipient, let amount): .transfer(recipient: recipient, amount: amount)
        case .bond(let role, let amount): .bond(role: role, amount: amount)
        case .unbond(let role, let amount): .unbond(role: role, amount: amount, at: now)
        case .withdraw: .withdraw(at: now)
        }
    }

    /// Whether `body` is what this action makes (times aside).
    public func matches(_ body: EntryBody) -> Bool {
        switch (self, body) {
        case (.transfer(let to, let amount), .transfer(let recipient, let sent)): to == recipient && amount == sent
        case (.bond(let role, let amount), .bond(let bodyRole, let bonded)): role == bodyRole && amount == bonded
        case (.unbond(let role, let amount), .unbond(let bodyRole, let unbonded, _)):
            role == bodyRole && amount == unbonded
        case (.withdraw, .withdraw): true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .transfer(let recipient, let amount): "transfer \(amount) to \(NodeAddress(publicKey: recipient))"
        case .bond(let role, let amount): "bond \(amount) as \(role)"
        case .unbond(let role, let amount): "unbond \(amount) of the \(role) bond"
        case .withdraw: "withdraw"
        }
    }
}

public struct DialogueRequest: Sendable, Equatable {
    public var provider: PublicKey
    public var serviceType: String
    public var proposalSeq: UInt64
    public var mode: TunnelMode
    /// How to reach the provider (its proposal's contacts); nil: it is reachable already.
    public var contacts: ServiceProposal.Contacts?
    /// When the caller began (the dialogue's timings count from here).
    public var startedAt: Instant?

    public init(
        provider: PublicKey, serviceType: String = "ip-tunnel", proposalSeq: UInt64 = 0,
        mode: TunnelMode = .fullTunnel, contacts: ServiceProposal.Contacts? = nil, startedAt: Instant? = nil
    ) {
        self.provider = provider
        self.serviceType = serviceType
        self.proposalSeq = proposalSeq
        self.mode = mode
        self.contacts = contacts
        self.startedAt = startedAt
    }
}

public struct ConnectRequest: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        case provider(PublicKey)
        /// An ISO 3166 two-letter code; the cheapest live offers there are tried first.
        case country(String)
    }

    public var target: Target
    public var serviceType: String
    public var mode: TunnelMode
    /// Candidates tried at most (each until its dialogue opens or fails).
    public var maximumCandidates: Int
    public var startedAt: Instant?
    /// How to set the host up once the dialogue is open (nil: open the dialogue only).
    public var host: ConsumerTunnelOptions?

    public init(
        target: Target, serviceType: String = "ip-tunnel", mode: TunnelMode = .fullTunnel, maximumCandidates: Int = 3,
        startedAt: Instant? = nil, host: ConsumerTunnelOptions? = nil
    ) {
        self.target = target
        self.serviceType = serviceType
        self.mode = mode
        self.maximumCandidates = maximumCandidates
        self.startedAt = startedAt
        self.host = host
    }
}

/// One candidate a connect tried and why it failed.
public struct ConnectAttempt: Sendable, Equatable, CustomStringConvertible {
    public var provider: PublicKey
    public var failure: DialogueFailure
    public var description: String { "\(NodeAddress(publicKey: provider)): \(failure)" }
}

/// Why a command failed.
public enum CommandFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// No answer within the command's time.
    case timedOut
    /// More commands in flight than the node keeps (`maximumCommands`).
    case busy
    /// The node holds no live offer of `serviceType` from the provider, and none came when asked.
    case noOffer(provider: PublicKey, serviceType: String)
    /// No provider of `serviceType` in `country` is known, in the store or the DHT's index.
    case noProvider(country: String, serviceType: String)
    /// The dialogue was not opened.
    case dialogue(DialogueFailure)
    /// Every candidate was tried; none opened a dialogue.
    case noneAnswered([ConnectAttempt])
    /// The command names this node itself, or a peer this node cannot reach, or conflicts with
    /// another command in flight.
    case invalid(String)
    /// The shell could not change the host as asked (nothing was left changed).
    case host(String)
    /// The ledger did not certify the entry (refused by too much stake, no quorum in time, or the
    /// ledger is off).
    case ledger(String)

    public var description: String {
        switch self {
        case .timedOut: "no answer in time"
        case .busy: "the node is busy with other commands; try again"
        case .noOffer(let provider, let serviceType):
            "no live \(serviceType) proposal from \(NodeAddress(publicKey: provider)); list them with umbra proposals"
        case .noProvider(let country, let serviceType):
            "no \(serviceType) provider in \(country) is known; try umbra proposals --dht"
        case .dialogue(let failure): "the session was not opened: \(failure)"
        case .noneAnswered(let attempts):
            "no provider answered: " + attempts.map(\.description).joined(separator: "; ")
        case .invalid(let reason): reason
        case .host(let reason): "the host could not be changed: \(reason)"
        case .ledger(let reason): "the entry was not certified: \(reason)"
        }
    }
}

/// How a command ended.
public enum CommandResult: Sendable, Equatable {
    case pong(Duration)
    case lookup(LookupReport)
    case put(PutReport)
    /// `fetchProposal`: whether the offer is held now.
    case proposalFetched(held: Bool)
    /// `discoverProviders`: providers the index named, offers fetched of those not held before.
    case providersDiscovered(indexed: Int, fetched: Int)
    /// `openDialogue`.
    case dialogueOpened(ClientSession)
    /// `connect`: the session and the offer it was opened on.
    case connected(ClientSession, ServiceProposal)
    /// `disconnect`: the provider the tunnel went to (nil: no tunnel was up).
    case disconnected(provider: PublicKey?)
    /// `closeDialogue`: whether a dialogue with that provider was open.
    case dialogueClosed(existed: Bool)
    /// `ledgerSubmit`, `ledger`: the entry with its certificate (applied here and gossiped). For
    /// `ledger`, `retried` is an entry of ours certified first because it held the slot.
    case ledgerCertified(CertifiedEntry, retried: CertifiedEntry? = nil)
    /// `ledgerEntries`: the stored entries, by height.
    case ledgerEntries([CertifiedEntry])
    case failed(CommandFailure)
}
