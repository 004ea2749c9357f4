// The ledger part (DESIGN §6, docs/architecture.md §15.1): the node's replica of the ledger, its
// committee member role, and the frames and gossip that connect them. Off (doing nothing) unless
// `LedgerNodeConfig.genesis` is set.
//
// - Replica (every node with a genesis). Certified entries arrive on the `ledger` gossip topic (and
//   from this node's own submissions). Each is applied to the `LedgerState` (which verifies the
//   certificate against the committee of the entry's epoch) before the gossip router may forward
//   it: applied → accept; a bad certificate → reject; a valid certificate whose entry cannot apply
//   yet (its account's predecessor is missing, a credit it spends has not arrived) → accept and
//   hold it in the pending table, verified once; an unknown epoch → check the entry's signature,
//   hold it unverified and answer later. The pending table is keyed by certificate identity and
//   bounded in entries, bytes, unverified entries and entries per peer; unverified entries go first
//   and never push verified ones out. Every application retries what waits. Applied entries are
//   written to `ledger.entries` (a failed write is retried, then counted) and replayed at start,
//   before anything else is taken in.
// - Committee member (`isValidator`, and a member of the epoch's committee). A `voteRequest` goes to
//   `Validator.handleRequest`; its `.persistLock` becomes a durable write to `ledger.locks`, and only
//   that write's completion feeds `persisted(token:)`, whose vote goes back to the requester; a
//   failed write feeds `persistFailed(token:)`, and the next request for the entry writes it again.
//   At start the saved locks are loaded into `Validator(restoredLocks:)`, so a member restarted
//   after a crash never signs a second entry for a slot; a record that does not decode keeps its
//   slot refused. Locks below an account's certified height are dropped from memory at once and
//   deleted from disk at the next start, once the replayed entries (durable) pass them. With
//   storage off the lock is only in memory (a test or a throwaway network).
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
    /// Certified entries waiting for a predecessor, at most (the oldest unverified, then the oldest,
    /// are dropped first).
    public var maximumPendingEntries = 1024
    /// Waiting entries whose certificate could not be checked yet (an unknown epoch), at most.
    public var maximumPendingUnverified = 256
    /// Waiting entries that came from one peer, at most.
    public var maximumPendingPerPeer = 128
    /// How often a failed write of an applied entry is tried again before it is given up (counted).
    public var maximumEntryWriteRetries = 3
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
    /// Writes of applied entries that failed (each is retried up to `maximumEntryWriteRetries` times).
    public var entryWriteFailures: UInt64 = 0
    /// Applied entries never written (retries exhausted): a restart will not replay them.
    public var entryWritesLost: UInt64 = 0
    /// Lock records deleted at start because the replayed entries pass them.
    public var locksDeleted: UInt64 = 0
    public var malformed: UInt64 = 0
    public init() {}
}

public struct LedgerPart: NodePart {
    public static let channels: [FrameChannel] = [.ledger, .ledgerSync]
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

    /// A certified entry waiting for its predecessor (or for the load to finish, or its epoch).
    struct Pending: Sendable {
        var certified: CertifiedEntry
        /// Set once its certificate and signature checked (nil: its epoch is unknown so far; only the
        /// entry's signature was checked).
        var verified: VerifiedEntry?
        var size: Int
        /// The gossip message to answer once this entry is judged (nil: answered already).
        var messageID: MessageID?
        /// The peer it came from (nil: this node's own).
        var source: PublicKey?
    }

    let identity: Identity
    let config: LedgerNodeConfig
    private(set) var phase = Phase.off
    /// The replica when this node is not a voting member (a member's replica is its validator's).
    private(set) var replica: LedgerState?
    private(set) var validator: Validator?
    public internal(set) var counters = LedgerCounters()
    private var loads: [StorageToken: StorageNamespace] = [:]
    private var loadedLocks: [StorageEntry]?
    private var loadedEntries: [StorageEntry]?
    /// Lock writes in flight: storage token → the validator's token and who asked for the vote.
    private var persists: [StorageToken: (token: UInt64, requester: PublicKey)] = [:]
    /// Writes of applied entries in flight, with how often each was tried.
    private var entryWrites: [StorageToken: (mutations: [StorageMutation], attempts: Int)] = [:]
    /// Keyed by `CertifiedEntry.identity`, so a forged certificate cannot take a valid one's place.
    private var pending: [Key256: Pending] = [:]
    private var pendingOrder: [Key256] = []
    private var pendingBytes = 0
    private var pendingUnverified = 0
    private var pendingPerPeer: [PublicKey: Int] = [:]
    /// The latest votes this node sent (slot, entry hash), oldest first.
    public private(set) var recentVotes: [Vote] = []
    /// This node's own entry sent for votes and not certified yet (LedgerPart+Client.swift).
    public internal(set) var unfinished: LedgerEntry?
    /// The stored pending entry could not be read at start: no entry of ours is made in this run.
    var ownUnreadable = false
    /// Writes of our pending entry in flight: storage token → the command waiting for it.
    var ownWrites: [StorageToken: CommandID] = [:]
    /// Lookups of committee members' peer records in flight: record key → member.
    var committeeLookups: [Key256: PublicKey] = [:]
    var nextCommitteeCheck: Instant?
    /// Store reads for `ledgerEntries` commands: storage token → command.
    var entryReads: [StorageToken: CommandID] = [:]
    /// Catch-up (LedgerPart+Sync.swift).
    var sync = LedgerSyncState()
    public internal(set) var syncCounters = LedgerSyncCounters()

    init(identity: Identity, config: NodeConfig) {
        self.identity = identity
        self.config = config.ledger
    }

    /// The replicated state (nil: the ledger is off).
    public var state: LedgerState? { validator?.ledger ?? replica }

    /// How many certified entries wait for a predecessor.
    public var pendingCount: Int { pending.count }

    /// How many of them wait unverified (their epoch is not known yet).
    public var pendingUnverifiedCount: Int { pendingUnverified }

    public var nextDeadline: Instant? {
        guard phase == .ready else { return nil }
        let syncDue = sync.partner != nil ? sync.deadline : sync.nextRound
        return [nextCommitteeCheck, syncDue].compactMap { $0 }.min()
    }

    public mutating func handle(
        _ event: PartEvent, node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        switch event {
        case .start:
            start(&node, now: now, rng: &rng)
        case .tick:
            reachCommittee(&node, now: now, rng: &rng)
            syncTick(&node, now: now, rng: &rng)
        case .peerUp(let key, _):
            // A member reachable again (after a partition, a restart): compare frontiers soon.
            if phase == .ready, state?.committee.contains(key) == true, sync.partner == nil { sync.gapSeen = true }
        case .peerDown, .pathChanged:
            break
        case .frame(let channel, let payload, let key):
            guard phase != .off else { return }
            if channel == .ledgerSync {
                receiveSync(payload, from: key, &node, now: now, rng: &rng)
            } else {
                receive(payload, from: key, &node, now: now, rng: &rng)
            }
        case .notice(let notice):
            guard phase != .off else {
                if case .gossipValidate(let topic, _, let id, _) = notice, topic == .ledger {
                    node.notify(.gossipVerdict(id, .ignore))
                }
                return
            }
            switch notice {
            case .gossipValidate(let topic, let data, let id, let from) where topic == .ledger:
                let certified: CertifiedEntry
                do { certified = try CertifiedEntry(decoding: data) } catch {
                    counters.malformed += 1
                    node.notify(.gossipVerdict(id, .reject))
                    return
                }
                take(certified, size: data.count, messageID: id, source: from, &node)
            case .storageCompleted(let completion):
                storageCompleted(completion, &node, now: now, rng: &rng)
            case .lookupFinished(let report):
                committeeLookupFinished(report, &node, now: now, rng: &rng)
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
            let entries = node.requestStorage(.load(.ledgerEntries)),
            let own = node.requestStorage(.load(.ledgerOwn))
        else {
            becomeReady(restoredLocks: [], &node)
            reachCommittee(&node, now: now, rng: &rng)
            return
        }
        loads = [locks: .ledgerLocks, entries: .ledgerEntries, own: .ledgerOwn]
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
                // Without its pending entry this node could sign a second entry for that height.
                if namespace == .ledgerOwn { ownUnreadable = true }
            }
            switch namespace {
            case .ledgerLocks: loadedLocks = loaded
            case .ledgerOwn: restoreOwn(loaded)
            default: loadedEntries = loaded
            }
            guard loads.isEmpty else { return }
            replay(&node)
            reachCommittee(&node, now: now, rng: &rng)
            return
        }
        if let command = ownWrites.removeValue(forKey: completion.token) {
            if completion.outcome != .written { counters.storageFailures += 1 }
            node.notify(.ledgerOwnPersisted(command, durable: completion.outcome == .written))
            return
        }
        if let command = entryReads.removeValue(forKey: completion.token) {
            entriesRead(completion, for: command, &node)
            return
        }
        if let requester = sync.serving.removeValue(forKey: completion.token) {
            servedRange(completion, to: requester, &node, now: now, rng: &rng)
            return
        }
        if let write = entryWrites.removeValue(forKey: completion.token) {
            guard completion.outcome != .written else { return }
            counters.storageFailures += 1
            counters.entryWriteFailures += 1
            guard write.attempts <= config.maximumEntryWriteRetries,
                let token = node.requestStorage(.write(write.mutations))
            else {
                counters.entryWritesLost += 1
                return
            }
            entryWrites[token] = (write.mutations, write.attempts + 1)
            return
        }
        // Other completions (deletes, fixes, other parts' requests) need nothing: a delete that failed
        // leaves a record the next start releases again.
        guard let (token, requester) = persists.removeValue(forKey: completion.token) else { return }
        guard completion.outcome == .written, validator != nil else {
            // The lock may or may not be on disk: no vote leaves for it (the slot stays locked here),
            // and the next request for the entry writes it again.
            counters.storageFailures += 1
            validator?.persistFailed(token: token)
            return
        }
        perform(validator!.persisted(token: token), requester: requester, &node, now: now, rng: &rng)
    }

    /// Applies the saved entries (in key order, then again for those that waited on another
    /// account's credit), restores the locks, and takes in what arrived meanwhile. Each stored
    /// certificate is verified once; later passes only re-run the cheap position and balance checks.
    private mutating func replay(_ node: inout NodeKernel) {
        var fixes: [StorageMutation] = []
        var waiting: [VerifiedEntry] = []
        var deferred: [CertifiedEntry] = []
        for stored in loadedEntries ?? [] {
            guard let certified = try? CertifiedEntry(decoding: stored.value),
                Slot(entry: certified.entry).storageKey == stored.key
            else {
                counters.storedEntriesRejected += 1
                fixes.append(.delete(.ledgerEntries, key: stored.key))
                continue
            }
            // An entry of an epoch not applied yet is verified when its turn comes.
            guard let verified = try? replica!.verify(certified) else {
                deferred.append(certified)
                continue
            }
            waiting.append(verified)
        }
        var progress = true
        while progress && !(waiting.isEmpty && deferred.isEmpty) {
            progress = false
            waiting = waiting.filter { verified in
                guard (try? replica!.apply(verified)) != nil else { return true }
                counters.entriesReplayed += 1
                let entry = verified.certified.entry
                if entry.height == 0 { sync.noteAccount(entry.account) }
                progress = true
                return false
            }
            // Entries of an epoch an applied epoch change made known can be verified now.
            deferred = deferred.filter { certified in
                guard let verified = try? replica!.verify(certified) else { return true }
                waiting.append(verified)
                progress = true
                return false
            }
        }
        counters.storedEntriesRejected += UInt64(waiting.count + deferred.count)
        var locks: [LockRecord] = []
        var unreadable: [Slot] = []
        for stored in loadedLocks ?? [] {
            guard let record = try? LockRecord(decoding: stored.value), record.slot.storageKey == stored.key else {
                // Most likely a write torn by a crash (whose vote never left), but it may be a record
                // whose vote did leave: its slot stays refused, and the record stays on disk until
                // the account's certified height passes it.
                counters.storedLocksRejected += 1
                if let slot = Slot(storageKey: stored.key) { unreadable.append(slot) }
                continue
            }
            locks.append(record)
        }
        loadedEntries = nil
        loadedLocks = nil
        counters.locksRestored += UInt64(locks.count)
        if !fixes.isEmpty { _ = node.requestStorage(.write(fixes)) }
        dropCertifiedOwn(&node)
        becomeReady(restoredLocks: locks, unreadableSlots: unreadable, &node)
    }

    private mutating func becomeReady(
        restoredLocks: [LockRecord], unreadableSlots: [Slot] = [], _ node: inout NodeKernel
    ) {
        guard let replayed = replica else { return }
        phase = .ready
        node.notify(.providerBonds(ProviderBonds(replayed)))
        if config.isValidator, !locksUnreadable {
            validator = Validator(
                identity: identity, ledger: replayed, restoredLocks: restoredLocks, unreadableSlots: unreadableSlots)
            replica = nil
            deleteReleasedLocks(&node)
        }
        // What gossip brought during the load is judged now.
        let held = pendingOrder.compactMap { pending[$0] }
        pending = [:]
        pendingOrder = []
        pendingBytes = 0
        pendingUnverified = 0
        pendingPerPeer = [:]
        for item in held {
            take(item.certified, size: item.size, messageID: item.messageID, source: item.source, &node)
        }
    }

    /// Deletes the lock records the validator released at start: the replayed entries, read from
    /// disk, pass them, so the replica refuses their positions after any later restart too. (Locks
    /// released while running are only dropped from memory: the entries that pass them may not be
    /// durable yet, and a restart without them and without the lock could vote again.) A failed
    /// delete only leaves a record the next start releases again.
    private mutating func deleteReleasedLocks(_ node: inout NodeKernel) {
        guard let released = validator?.takeReleasedLocks(), !released.isEmpty else { return }
        counters.locksDeleted += UInt64(released.count)
        _ = node.requestStorage(.write(released.map { .delete(.ledgerLocks, key: $0.storageKey) }))
    }

    // MARK: - Certified entries

    /// Takes a certified entry from gossip (answering `messageID`) or from this node's own command.
    /// Its certificate and signature are checked once, here (or, for an unknown epoch, when the epoch
    /// becomes known).
    mutating func take(
        _ certified: CertifiedEntry, size: Int, messageID: MessageID?, source: PublicKey?, _ node: inout NodeKernel
    ) {
        guard let current = state else { return }
        if current.applied.contains(certified.entry.hash) {
            // Held already: not forwarded. A member that took the client's push published those same
            // bytes itself (LedgerPart+Sync.swift), so the client's gossip copy is one message with
            // it; another certificate for an applied entry (any quorum subset, any anchor) is not
            // news, and forwarding it would let anyone flood the topic with variants.
            counters.entriesIgnored += 1
            answer(messageID, .ignore, &node)
            return
        }
        let verified: VerifiedEntry
        do throws(LedgerError) {
            verified = try current.verify(certified)
        } catch {
            guard case .unknownEpoch = error else {
                counters.certificatesRejected += 1
                answer(messageID, .reject, &node)
                return
            }
            // Nothing checks its certificate yet; its entry's signature can be checked now, and only
            // the next epoch is waited for (an epoch change on its way), not any number a peer names.
            guard certified.entry.hasValidSignature, certified.entry.epoch <= current.epoch + 1 else {
                counters.certificatesRejected += 1
                answer(messageID, .reject, &node)
                return
            }
            counters.entriesHeld += 1
            hold(
                Pending(certified: certified, verified: nil, size: size, messageID: messageID, source: source), &node)
            return
        }
        guard phase == .ready else {
            hold(
                Pending(certified: certified, verified: verified, size: size, messageID: messageID, source: source),
                &node)
            return
        }
        switch apply(verified, &node) {
        case .applied:
            answer(messageID, .accept, &node)
            retryPending(&node)
        case .duplicate, .stale:
            counters.entriesIgnored += 1
            answer(messageID, .ignore, &node)
        case .badCertificate:
            counters.certificatesRejected += 1
            answer(messageID, .reject, &node)
        case .waits:
            // A checked certificate may be forwarded now.
            counters.entriesHeld += 1
            answer(messageID, .accept, &node)
            hold(Pending(certified: certified, verified: verified, size: size, messageID: nil, source: source), &node)
        }
    }

    enum Applied: Equatable {
        case applied, duplicate, stale, badCertificate, waits
    }

    /// Applies a verified entry to the state, and writes it to disk when it applied.
    private mutating func apply(_ verified: VerifiedEntry, _ node: inout NodeKernel) -> Applied {
        let result: ApplyOutcome
        do throws(LedgerError) {
            if validator != nil {
                result = try validator!.applyVerified(verified)
            } else {
                result = try replica!.apply(verified)
            }
        } catch {
            switch error {
            case .wrongHeight(let expected, let got) where got > expected:
                sync.gapSeen = true
                return .waits
            case .insufficientBalance, .insufficientBond, .unknownAccount, .unknownChannel: return .waits
            // Certified without the anchor its crossing needs: it can never apply.
            case .anchorRequired: return .badCertificate
            default: return .stale
            }
        }
        guard case .applied = result else { return .duplicate }
        counters.entriesApplied += 1
        // Dropped from memory; their records go at the next start (`deleteReleasedLocks`).
        _ = validator?.takeReleasedLocks()
        let certified = verified.certified
        ownApplied(certified.entry, &node)
        noteBondChange(certified.entry, &node)
        if certified.entry.height == 0 { sync.noteAccount(certified.entry.account) }
        let mutations: [StorageMutation] = [
            .put(.ledgerEntries, key: Slot(entry: certified.entry).storageKey, value: certified.encoded())
        ]
        if let token = node.requestStorage(.write(mutations)) { entryWrites[token] = (mutations, 1) }
        return .applied
    }

    /// Holds an entry in the pending table. Bounds: per peer (the newcomer is dropped), unverified
    /// entries (the oldest unverified is dropped), entries and bytes (the oldest unverified, else the
    /// oldest, is dropped). An unverified entry never pushes a verified one out: if only verified
    /// ones are left to drop, the unverified newcomer goes instead.
    private mutating func hold(_ item: Pending, _ node: inout NodeKernel) {
        let id = item.certified.identity
        if pending[id] != nil {
            answer(item.messageID, .ignore, &node)
            return
        }
        if let source = item.source, pendingPerPeer[source, default: 0] >= config.maximumPendingPerPeer {
            counters.pendingDropped += 1
            answer(item.messageID, .ignore, &node)
            return
        }
        pending[id] = item
        pendingOrder.append(id)
        pendingBytes += item.size
        if item.verified == nil { pendingUnverified += 1 }
        if let source = item.source { pendingPerPeer[source, default: 0] += 1 }
        while pending.count > config.maximumPendingEntries || pendingBytes > config.maximumPendingBytes
            || pendingUnverified > config.maximumPendingUnverified
        {
            let unverified = pendingOrder.first { pending[$0]?.verified == nil }
            let victim: Key256?
            if pendingUnverified > config.maximumPendingUnverified || unverified != nil {
                victim = unverified
            } else {
                victim = pendingOrder.first { pending[$0] != nil }
            }
            guard let victim, let dropped = removePending(victim) else { break }
            counters.pendingDropped += 1
            answer(dropped.messageID, .ignore, &node)
        }
        pendingOrder.removeAll { pending[$0] == nil }
    }

    private mutating func removePending(_ id: Key256) -> Pending? {
        guard let item = pending.removeValue(forKey: id) else { return nil }
        pendingBytes -= item.size
        if item.verified == nil { pendingUnverified -= 1 }
        if let source = item.source {
            pendingPerPeer[source, default: 1] -= 1
            if pendingPerPeer[source] == 0 { pendingPerPeer[source] = nil }
        }
        return item
    }

    /// Retries what waits until nothing more applies. Unverified entries whose epoch became known
    /// are verified (once); then only entries at their account's next height are tried, with no
    /// signature checked again, so each round costs at most one cheap check per waiting account.
    private mutating func retryPending(_ node: inout NodeKernel) {
        var progress = true
        while progress, !pending.isEmpty, let current = state {
            progress = false
            for id in pendingOrder {
                guard var item = pending[id] else { continue }
                let entry = item.certified.entry
                if item.verified == nil {
                    guard current.committees[entry.epoch] != nil else { continue }
                    do throws(LedgerError) {
                        item.verified = try current.verify(item.certified)
                    } catch {
                        if case .unknownEpoch = error { continue }
                        _ = removePending(id)
                        counters.certificatesRejected += 1
                        answer(item.messageID, .reject, &node)
                        continue
                    }
                    pendingUnverified -= 1
                    answer(item.messageID, .accept, &node)
                    item.messageID = nil
                    pending[id] = item
                }
                guard let verified = item.verified,
                    entry.height == (current.accounts[entry.account]?.nextHeight ?? 0)
                        || current.applied.contains(verified.hash)
                else { continue }
                let outcome = apply(verified, &node)
                if case .waits = outcome { continue }
                _ = removePending(id)
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
    mutating func acceptOwn(
        _ certified: CertifiedEntry, _ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        guard phase != .off else { return }
        let bytes = certified.encoded()
        take(certified, size: bytes.count, messageID: nil, source: nil, &node)
        node.notify(.gossipPublish(.ledger, bytes))
        pushToCommittee(certified, &node, now: now, rng: &rng)
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
        case .vote(let vote, let proof):
            node.notify(.ledgerVote(vote, proof: proof, from: key))
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
            case .sendVote(let vote, let proof):
                counters.votesSent += 1
                recentVotes.append(vote)
                if recentVotes.count > config.maximumRecentVotes { recentVotes.removeFirst() }
                reply(.vote(vote, proof: proof), to: requester, &node, now, &rng)
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
            case .vote(let vote, let proof): node.notify(.ledgerVote(vote, proof: proof, from: key))
            case .refusal(let hash, let code): node.notify(.ledgerRefusal(hash, code, from: key))
            case .voteRequest: break
            }
            return
        }
        node.sendFrame(.ledger, message.encoded(), to: key, now: now, rng: &rng)
    }
}
