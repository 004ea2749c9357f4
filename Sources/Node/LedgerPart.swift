// The ledger part (DESIGN §6, docs/architecture.md §15.1): the node's replica of the ledger, its
// committee member role, and the frames and gossip that connect them. Off (doing nothing) unless
// `LedgerNodeConfig.genesis` is set.
//
// - Replica (every node with a genesis). Certified entries arrive on the `ledger` gossip topic (and
//   from this node's own submissions). Each is applied to the `LedgerState` (which verifies the
//   certificate against the committee of the entry's epoch) before the gossip router may forward
//   it: applied → accept; a bad certificate → reject; a valid certificate whose entry cannot apply
//   yet (its account's predecessor is missing, a credit it spends has not arrived) → accept and
//   hold it in the pending table; an unknown epoch → hold it and answer later. The pending table is
//   bounded in entries and bytes and drops its oldest first; every application retries what waits.
//   Applied entries are written to `ledger.entries` and replayed at start, before anything else is
//   taken in.
// - Committee member (`isValidator`, and a member of the epoch's committee). A `voteRequest` goes to
//   `Validator.handleRequest`; its `.persistLock` becomes a durable write to `ledger.locks`, and only
//   that write's completion feeds `persisted(token:)`, whose vote goes back to the requester.
//   At start the saved locks are loaded into `Validator(restoredLocks:)`, so a member restarted
//   after a crash never signs a second entry for a slot. With storage off the lock is only in
//   memory (a test or a throwaway network).
// - Client. `NodeCommand.ledgerSubmit` (CommandFlow.swift) sends vote requests; this part hands
//   the votes and refusals it receives to the commands (`NodeNotice.ledgerVote/ledgerRefusal`), and
//   applies and gossips the certificate the command made (`acceptOwn`).
//
// Every table is bounded: locks waiting for the disk (`maximumPendingPersists`, refused as busy
// beyond it), pending entries (`maximumPendingEntries`, `maximumPendingBytes`), the votes remembered
// for status (`maximumRecentVotes`).

import Gossip
import Ledger
import UmbraCore

/// The ledger settings of a node.
public struct LedgerNodeConfig: Sendable {
    /// The network's genesis; nil: the ledger is off and the part does nothing.
    public var genesis: GenesisParameters?
    /// Whether this node votes (it must also be in the epoch's committee; else it refuses requests).
    public var isValidator = false
    /// Committee members to keep connected (clients send their vote requests over these sessions).
    public var committeeContacts: [DialTarget] = []
    /// Certified entries waiting for a predecessor, at most (the oldest are dropped first).
    public var maximumPendingEntries = 1024
    /// The encoded bytes of waiting entries, at most.
    public var maximumPendingBytes = 4 << 20
    /// Locks waiting for the disk, at most; a request beyond it is refused as busy.
    public var maximumPendingPersists = 1024
    /// Votes this node sent, remembered for status and tests.
    public var maximumRecentVotes = 256

    public init() {}
}

extension StorageNamespace {
    /// A validator's slot locks. Key: `Slot.storageKey`. Value: `LockRecord`.
    public static let ledgerLocks = StorageNamespace("ledger.locks")
    /// Certified entries applied by this replica. Key: the entry's `Slot.storageKey`. Value: the
    /// certified entry's wire form.
    public static let ledgerEntries = StorageNamespace("ledger.entries")
}

/// Counters of the ledger part.
public struct LedgerCounters: Sendable, Equatable {
    public var entriesApplied: UInt64 = 0
    /// Entries applied from the disk at start.
    public var entriesReplayed: UInt64 = 0
    /// Stored entries that did not decode or apply (a tampered or torn disk).
    public var storedEntriesRejected: UInt64 = 0
    public var storedLocksRejected: UInt64 = 0
    public var locksRestored: UInt64 = 0
    public var certificatesRejected: UInt64 = 0
    public var entriesIgnored: UInt64 = 0
    public var entriesHeld: UInt64 = 0
    public var pendingDropped: UInt64 = 0
    public var voteRequests: UInt64 = 0
    public var votesSent: UInt64 = 0
    public var refusalsSent: UInt64 = 0
    public var persistsIssued: UInt64 = 0
    public var storageFailures: UInt64 = 0
    public var malformed: UInt64 = 0
    public init() {}
}

public struct LedgerPart: NodePart {
    public static let channels: [FrameChannel] = [.ledger]
    public static let gossipTopics: [Topic] = [.ledger]

    /// The stored locks could not be read at start: this node does not vote until it restarts.
    private(set) var locksUnreadable = false

    enum Phase: Sendable, Equatable {
        /// No genesis (or an invalid one): nothing happens.
        case off
        /// Waiting for the saved locks and entries.
        case loading
        case ready
    }

    /// A certified entry waiting for its predecessor (or for the load to finish).
    struct Pending: Sendable {
        var certified: CertifiedEntry
        var size: Int
        /// The gossip message to answer once this entry is judged (nil: answered already).
        var messageID: MessageID?
    }

    let identity: Identity
    let config: LedgerNodeConfig
    private(set) var phase = Phase.off
    /// The replica when this node is not a voting member (a member's replica is its validator's).
    private(set) var replica: LedgerState?
    private(set) var validator: Validator?
    public private(set) var counters = LedgerCounters()
    private var loads: [StorageToken: StorageNamespace] = [:]
    private var loadedLocks: [StorageEntry]?
    private var loadedEntries: [StorageEntry]?
    /// Lock writes in flight: storage token → the validator's token and who asked for the vote.
    private var persists: [StorageToken: (token: UInt64, requester: PublicKey)] = [:]
    private var pending: [EntryHash: Pending] = [:]
    private var pendingOrder: [EntryHash] = []
    private var pendingBytes = 0
    /// The latest votes this node sent (slot, entry hash), oldest first.
    public private(set) var recentVotes: [Vote] = []

    init(identity: Identity, config: NodeConfig) {
        self.identity = identity
        self.config = config.ledger
    }

    /// The replicated state (nil: the ledger is off).
    public var state: LedgerState? { validator?.ledger ?? replica }

    /// How many certified entries wait for a predecessor.
    public var pendingCount: Int { pending.count }

    public var nextDeadline: Instant? { nil }

    public mutating func handle(
        _ event: PartEvent, node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        switch event {
        case .start:
            start(&node, now: now, rng: &rng)
        case .tick, .peerUp, .peerDown, .pathChanged:
            break
        case .frame(_, let payload, let key):
            guard phase != .off else { return }
            receive(payload, from: key, &node, now: now, rng: &rng)
        case .notice(let notice):
            guard phase != .off else {
                if case .gossipValidate(let topic, _, let id, _) = notice, topic == .ledger {
                    node.notify(.gossipVerdict(id, .ignore))
                }
                return
            }
            switch notice {
            case .gossipValidate(let topic, let data, let id, _) where topic == .ledger:
                let certified: CertifiedEntry
                do { certified = try CertifiedEntry(decoding: data) } catch {
                    counters.malformed += 1
                    node.notify(.gossipVerdict(id, .reject))
                    return
                }
                take(certified, size: data.count, messageID: id, &node)
            case .storageCompleted(let completion):
                storageCompleted(completion, &node, now: now, rng: &rng)
            default:
                break
            }
        }
    }

    // MARK: - Start and replay

    private mutating func start(_ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator) {
        guard let genesis = config.genesis, let initial = try? LedgerState(genesis: genesis) else { return }
        for target in config.committeeContacts { node.addDialTarget(target, kind: .peer, now: now, rng: &rng) }
        replica = initial
        guard let locks = node.requestStorage(.load(.ledgerLocks)),
            let entries = node.requestStorage(.load(.ledgerEntries))
        else {
            becomeReady(restoredLocks: [], &node)
            return
        }
        loads = [locks: .ledgerLocks, entries: .ledgerEntries]
        phase = .loading
    }

    private mutating func storageCompleted(
        _ completion: StorageCompletion, _ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        if let namespace = loads.removeValue(forKey: completion.token) {
            var loaded: [StorageEntry] = []
            if case .loaded(let entries) = completion.outcome {
                loaded = entries
            } else {
                counters.storageFailures += 1
                // Without its locks a member could vote twice for a slot it voted in before the
                // restart: it stays a replica for this run (vote requests are refused as busy).
                if namespace == .ledgerLocks { locksUnreadable = true }
            }
            if namespace == .ledgerLocks { loadedLocks = loaded } else { loadedEntries = loaded }
            guard loads.isEmpty else { return }
            replay(&node)
            return
        }
        guard let (token, requester) = persists.removeValue(forKey: completion.token) else { return }
        guard completion.outcome == .written, validator != nil else {
            // The lock may or may not be on disk: no vote leaves for it (the slot stays locked here).
            counters.storageFailures += 1
            return
        }
        perform(validator!.persisted(token: token), requester: requester, &node, now: now, rng: &rng)
    }

    /// Applies the saved entries (in key order, then again for those that waited on another
    /// account's credit), restores the locks, and takes in what arrived meanwhile.
    private mutating func replay(_ node: inout NodeKernel) {
        var fixes: [StorageMutation] = []
        var waiting: [CertifiedEntry] = []
        for stored in loadedEntries ?? [] {
            guard let certified = try? CertifiedEntry(decoding: stored.value),
                Slot(entry: certified.entry).storageKey == stored.key
            else {
                counters.storedEntriesRejected += 1
                fixes.append(.delete(.ledgerEntries, key: stored.key))
                continue
            }
            waiting.append(certified)
        }
        var progress = true
        while progress && !waiting.isEmpty {
            progress = false
            waiting = waiting.filter { certified in
                guard (try? replica!.apply(certified)) != nil else { return true }
                counters.entriesReplayed += 1
                progress = true
                return false
            }
        }
        counters.storedEntriesRejected += UInt64(waiting.count)
        var locks: [LockRecord] = []
        for stored in loadedLocks ?? [] {
            guard let record = try? LockRecord(decoding: stored.value), record.slot.storageKey == stored.key else {
                // A lock whose write never completed (torn by a crash): its vote never left.
                counters.storedLocksRejected += 1
                fixes.append(.delete(.ledgerLocks, key: stored.key))
                continue
            }
            locks.append(record)
        }
        loadedEntries = nil
        loadedLocks = nil
        counters.locksRestored += UInt64(locks.count)
        if !fixes.isEmpty { _ = node.requestStorage(.write(fixes)) }
        becomeReady(restoredLocks: locks, &node)
    }

    private mutating func becomeReady(restoredLocks: [LockRecord], _ node: inout NodeKernel) {
        guard let replayed = replica else { return }
        phase = .ready
        if config.isValidator, !locksUnreadable {
            validator = Validator(identity: identity, ledger: replayed, restoredLocks: restoredLocks)
            replica = nil
        }
        // What gossip brought during the load is judged now.
        let held = pendingOrder.compactMap { pending[$0] }
        pending = [:]
        pendingOrder = []
        pendingBytes = 0
        for item in held { take(item.certified, size: item.size, messageID: item.messageID, &node) }
    }

    // MARK: - Certified entries

    /// Takes a certified entry from gossip (answering `messageID`) or from this node's own command.
    private mutating func take(
        _ certified: CertifiedEntry, size: Int, messageID: MessageID?, _ node: inout NodeKernel
    ) {
        guard phase == .ready else {
            hold(certified, size: size, messageID: messageID, &node)
            return
        }
        switch apply(certified, &node) {
        case .applied:
            answer(messageID, .accept, &node)
            retryPending(&node)
        case .duplicate, .stale:
            counters.entriesIgnored += 1
            answer(messageID, .ignore, &node)
        case .badCertificate:
            counters.certificatesRejected += 1
            answer(messageID, .reject, &node)
        case .waits(let certificateChecked):
            // A checked certificate may be forwarded now; an unknown epoch's is judged later.
            counters.entriesHeld += 1
            if certificateChecked {
                answer(messageID, .accept, &node)
                hold(certified, size: size, messageID: nil, &node)
            } else {
                hold(certified, size: size, messageID: messageID, &node)
            }
        }
    }

    enum Applied: Equatable {
        case applied, duplicate, stale, badCertificate
        case waits(certificateChecked: Bool)
    }

    /// Applies `certified` to the state, and writes it to disk when it applied.
    private mutating func apply(_ certified: CertifiedEntry, _ node: inout NodeKernel) -> Applied {
        let result: ApplyOutcome
        do throws(LedgerError) {
            if validator != nil {
                result = try validator!.applyCertified(certified)
            } else {
                result = try replica!.apply(certified)
            }
        } catch {
            switch error {
            case .unknownEpoch: return .waits(certificateChecked: false)
            case .wrongHeight(let expected, let got) where got > expected: return .waits(certificateChecked: true)
            case .insufficientBalance, .insufficientBond, .unknownAccount, .unknownChannel:
                return .waits(certificateChecked: true)
            case .wrongHeight, .wrongPrev: return .stale
            case .notInCommittee, .badVoteSignature, .duplicateVote, .noQuorum, .voteForOtherEntry, .wrongEpoch:
                return .badCertificate
            default: return .stale
            }
        }
        guard case .applied = result else { return .duplicate }
        counters.entriesApplied += 1
        let key = Slot(entry: certified.entry).storageKey
        _ = node.requestStorage(.write([.put(.ledgerEntries, key: key, value: certified.encoded())]))
        return .applied
    }

    private mutating func hold(
        _ certified: CertifiedEntry, size: Int, messageID: MessageID?, _ node: inout NodeKernel
    ) {
        let hash = certified.entry.hash
        if pending[hash] != nil {
            answer(messageID, .ignore, &node)
            return
        }
        pending[hash] = Pending(certified: certified, size: size, messageID: messageID)
        pendingOrder.append(hash)
        pendingBytes += size
        while pending.count > config.maximumPendingEntries || pendingBytes > config.maximumPendingBytes,
            !pendingOrder.isEmpty
        {
            let oldest = pendingOrder.removeFirst()
            guard let dropped = pending.removeValue(forKey: oldest) else { continue }
            pendingBytes -= dropped.size
            counters.pendingDropped += 1
            answer(dropped.messageID, .ignore, &node)
        }
    }

    /// Retries what waits until nothing more applies. Only entries at their account's next height
    /// are tried, so each round costs at most one certificate check per waiting account.
    private mutating func retryPending(_ node: inout NodeKernel) {
        var progress = true
        while progress, !pending.isEmpty, let current = state {
            progress = false
            for hash in pendingOrder {
                guard let item = pending[hash] else { continue }
                let entry = item.certified.entry
                guard
                    entry.height == (current.accounts[entry.account]?.nextHeight ?? 0) || current.applied.contains(hash)
                else { continue }
                let outcome = apply(item.certified, &node)
                if case .waits = outcome { continue }
                pending.removeValue(forKey: hash)
                pendingBytes -= item.size
                switch outcome {
                case .applied: answer(item.messageID, .accept, &node)
                case .badCertificate: answer(item.messageID, .reject, &node)
                default: answer(item.messageID, .ignore, &node)
                }
                progress = true
                break
            }
            pendingOrder.removeAll { pending[$0] == nil }
        }
    }

    private func answer(_ id: MessageID?, _ result: ValidationResult, _ node: inout NodeKernel) {
        guard let id else { return }
        node.notify(.gossipVerdict(id, result))
    }

    /// A certificate this node's own command made: applied here and published on the topic.
    mutating func acceptOwn(_ certified: CertifiedEntry, _ node: inout NodeKernel) {
        guard phase != .off else { return }
        let bytes = certified.encoded()
        take(certified, size: bytes.count, messageID: nil, &node)
        node.notify(.gossipPublish(.ledger, bytes))
    }

    // MARK: - Frames

    private mutating func receive(
        _ payload: [UInt8], from key: PublicKey, _ node: inout NodeKernel, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        let message: LedgerMessage
        do { message = try LedgerMessage(decoding: payload) } catch {
            counters.malformed += 1
            node.rejectFrame(from: key, reason: "ledger: \(error)")
            return
        }
        switch message {
        case .voteRequest(let entry):
            counters.voteRequests += 1
            guard phase == .ready, validator != nil else {
                // Not a voting member (or not loaded yet): say so, the client counts it as refused.
                let code: RefusalCode = phase == .ready && !locksUnreadable ? .notInCommittee : .busy
                reply(.refusal(entry.hash, code), to: key, &node, now, &rng)
                return
            }
            guard persists.count < config.maximumPendingPersists else {
                reply(.refusal(entry.hash, .busy), to: key, &node, now, &rng)
                return
            }
            perform(validator!.handleRequest(entry, now: now), requester: key, &node, now: now, rng: &rng)
        case .vote(let vote):
            node.notify(.ledgerVote(vote, from: key))
        case .refusal(let hash, let code):
            node.notify(.ledgerRefusal(hash, code, from: key))
        }
    }

    /// A vote request from this node itself (its own command, when it is a committee member).
    mutating func receiveOwn(
        _ message: LedgerMessage, _ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        guard phase != .off else { return }
        receive(message.encoded(), from: identity.publicKey, &node, now: now, rng: &rng)
    }

    private mutating func perform(
        _ effects: [ValidatorEffect], requester: PublicKey, _ node: inout NodeKernel, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        for effect in effects {
            switch effect {
            case .persistLock(let token, let lock):
                let write = StorageOperation.write([
                    .put(.ledgerLocks, key: lock.slot.storageKey, value: lock.encoded())
                ])
                guard let storageToken = node.requestStorage(write) else {
                    // Storage off: the lock lives in memory only.
                    perform(validator!.persisted(token: token), requester: requester, &node, now: now, rng: &rng)
                    continue
                }
                counters.persistsIssued += 1
                persists[storageToken] = (token, requester)
            case .sendVote(let vote):
                counters.votesSent += 1
                recentVotes.append(vote)
                if recentVotes.count > config.maximumRecentVotes { recentVotes.removeFirst() }
                reply(.vote(vote), to: requester, &node, now, &rng)
            case .refuse(let hash, let error):
                counters.refusalsSent += 1
                reply(.refusal(hash, RefusalCode(error)), to: requester, &node, now, &rng)
            }
        }
    }

    private func reply(
        _ message: LedgerMessage, to key: PublicKey, _ node: inout NodeKernel, _ now: Instant,
        _ rng: inout some RandomNumberGenerator
    ) {
        guard key != identity.publicKey else {
            switch message {
            case .vote(let vote): node.notify(.ledgerVote(vote, from: key))
            case .refusal(let hash, let code): node.notify(.ledgerRefusal(hash, code, from: key))
            case .voteRequest: break
            }
            return
        }
        node.sendFrame(.ledger, message.encoded(), to: key, now: now, rng: &rng)
    }
}
