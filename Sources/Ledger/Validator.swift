// A committee member's side of the ledger (DESIGN §6): it checks a requested entry against its own
// replica of the state, locks the entry's position, asks its shell to make the lock durable, and only
// when the shell reports `persisted` does the vote leave. So a validator that crashes and restarts
// (and restores its locks) can never sign a second entry for a position it already voted in.
//
//   request ─► checks ─► lock (in memory) ─► .persistLock(token, record) ─► shell writes, fsyncs
//           ◄─ .sendVote(vote) ◄─ persisted(token) ◄────────────────────────┘
//                                  persistFailed(token) ─► the next request for it writes again
//
// Locks are per (account, height), across epochs: a validator signs one entry hash per position
// whatever the epoch, as a member of the entry's epoch committee and, for an entry that leaves its
// account's epoch (a crossing), as a member of that older epoch's committee (the anchor). Quorum
// intersection in the anchor committee is what keeps a position from being certified twice across an
// epoch change (docs/threat-model.md). A lock is forgotten (and handed to the shell to delete) once
// its account's certified height has passed it, unless it carries a channel mark.
//
// Channel rules: a claim it votes for raises its `ackedClaims[channel]`; a close it votes for reports
// that maximum, with the consumer's promise of it, and marks the channel, after which it refuses every
// claim on it (DESIGN §6, Channels). Both marks are part of the lock record, so they survive a
// restart with it.

import UmbraCore

/// What a validator made durable before voting: enough to rebuild its vote (Ed25519 signatures are
/// deterministic), the proof of its report and its channel marks after a restart.
public struct LockRecord: Hashable, Sendable {
    /// What a lock means for a channel.
    public enum ChannelMark: Hashable, Sendable {
        case none
        /// The vote acks the consumer's promise (a claim on its channel).
        case claim(ChannelPromise)
        /// The vote closes the channel; `proof` is the promise of the report (nil when it is 0).
        case close(ChannelID, proof: ChannelPromise?)
    }

    /// The vote's slot: its epoch is the committee's the validator votes in (the entry's, or the
    /// anchor's).
    public var slot: Slot
    public var entryHash: EntryHash
    public var report: Amount
    public var channelMark: ChannelMark

    public init(slot: Slot, entryHash: EntryHash, report: Amount, channelMark: ChannelMark) {
        self.slot = slot
        self.entryHash = entryHash
        self.report = report
        self.channelMark = channelMark
    }

    /// The promise the report rests on.
    public var proof: ChannelPromise? {
        if case .close(_, let proof) = channelMark { proof } else { nil }
    }
}

/// What the shell must do for a validator.
public enum ValidatorEffect: Hashable, Sendable {
    /// Make `lock` durable (a group commit may batch several), then feed `persisted(token:)`, or
    /// `persistFailed(token:)` if the write failed.
    case persistLock(token: UInt64, lock: LockRecord)
    /// Send the vote (with the promise its report rests on) to whoever asked for the entry (a
    /// repeated request gets the same vote again).
    case sendVote(Vote, proof: ChannelPromise?)
    /// The entry was refused; tell the requester why.
    case refuse(EntryHash, LedgerError)
}

/// A validator: a replica of the ledger plus its position locks.
public struct Validator: Sendable {
    /// How far an entry's `at` may be from the validator's clock.
    public static let maximumClockSkew: Duration = .seconds(30)

    private struct Lock: Sendable {
        var record: LockRecord
        /// Set once the lock is durable.
        var vote: Vote?
        /// Its write failed: the next request for the entry writes it again.
        var writeFailed = false
    }

    /// What holds one (account, height): the entry hash voted for (nil: a stored lock that could not
    /// be read, which refuses every entry) and the epochs of the votes.
    private struct Held: Sendable {
        var entryHash: EntryHash?
        var epochs: [UInt64]
    }

    public let identity: Identity
    public private(set) var ledger: LedgerState
    private var locks: [Slot: Lock] = [:]
    /// Account → height → what holds it.
    private var held: [PublicKey: [UInt64: Held]] = [:]
    private var pending: [UInt64: Slot] = [:]
    private var nextToken: UInt64 = 1
    /// Slots whose locks were forgotten since the shell last took them (to delete from its store).
    private var released: [Slot] = []
    /// The highest claim this validator voted for, per channel.
    public private(set) var ackedClaims: [ChannelID: Amount] = [:]
    /// The consumer's promise of each `ackedClaims` amount.
    private var ackedProofs: [ChannelID: ChannelPromise] = [:]
    /// The channels this validator voted to close, with the report it gave.
    public private(set) var closeVotes: [ChannelID: Amount] = [:]

    /// A validator over `ledger` with the lock records it persisted before (after a restart), which
    /// count as durable: a repeated request gets the same vote back. `unreadableSlots` are stored
    /// locks that did not decode: their positions refuse every entry until the account's certified
    /// height passes them. Locks the ledger has already passed are released at once.
    public init(
        identity: Identity, ledger: LedgerState, restoredLocks: [LockRecord] = [], unreadableSlots: [Slot] = []
    ) {
        self.identity = identity
        self.ledger = ledger
        for record in restoredLocks {
            let slot = record.slot
            var position =
                held[slot.account, default: [:]][slot.height] ?? Held(entryHash: record.entryHash, epochs: [])
            // Two records for one position with different entries cannot come from this code; the
            // first one read keeps the position.
            guard position.entryHash == record.entryHash else { continue }
            position.epochs.append(slot.epoch)
            held[slot.account, default: [:]][slot.height] = position
            locks[slot] = Lock(record: record, vote: vote(for: record))
            mark(record)
        }
        for slot in unreadableSlots where held[slot.account]?[slot.height] == nil {
            held[slot.account, default: [:]][slot.height] = Held(entryHash: nil, epochs: [slot.epoch])
        }
        for account in Array(held.keys) { prune(account) }
    }

    /// The lock held for `slot`, durable or not.
    public func lock(for slot: Slot) -> LockRecord? { locks[slot]?.record }

    /// How many locks are held.
    public var lockCount: Int { locks.count }

    /// How many locks wait for `persisted`.
    public var pendingPersists: Int { pending.count }

    /// The slots whose locks were forgotten since the last call: the shell deletes their records.
    public mutating func takeReleasedLocks() -> [Slot] {
        defer { released = [] }
        return released
    }

    // MARK: Inputs

    /// A client asks for a vote on `entry`. Returns a `.persistLock` per new vote (one as a member of
    /// the entry's epoch committee, one as a member of the anchor committee for a crossing), the
    /// `.sendVote`s of a repeat of durable locks (and `.persistLock` again for a lock whose write
    /// failed), nothing for a repeat still being persisted, or `.refuse`.
    public mutating func handleRequest(_ entry: LedgerEntry, now: Instant) -> [ValidatorEffect] {
        let hash = entry.hash
        if let position = held[entry.account]?[entry.height] {
            guard let locked = position.entryHash else { return [.refuse(hash, .lockUnreadable)] }
            guard locked == hash else { return [.refuse(hash, .slotLocked(existing: locked))] }
            return repeatVotes(position, account: entry.account, height: entry.height)
        }
        let records: [LockRecord]
        do throws(LedgerError) {
            records = try checkRequest(entry, hash: hash, now: now)
        } catch {
            return [.refuse(hash, error)]
        }
        held[entry.account, default: [:]][entry.height] = Held(
            entryHash: hash, epochs: records.map(\.slot.epoch))
        return records.map { record in
            locks[record.slot] = Lock(record: record, vote: nil)
            mark(record)
            return persist(record.slot)
        }
    }

    /// The shell made the lock of `token` durable: the vote may leave now. An unknown token does nothing.
    public mutating func persisted(token: UInt64) -> [ValidatorEffect] {
        guard let slot = pending.removeValue(forKey: token), var lock = locks[slot] else { return [] }
        let vote = vote(for: lock.record)
        lock.vote = vote
        locks[slot] = lock
        return [.sendVote(vote, proof: lock.record.proof)]
    }

    /// The shell could not write the lock of `token`. The lock stays (the record may be on disk), no
    /// vote leaves, and the next request for the same entry writes it again.
    public mutating func persistFailed(token: UInt64) {
        guard let slot = pending.removeValue(forKey: token) else { return }
        locks[slot]?.writeFailed = true
    }

    /// Applies a certified entry to this validator's replica, then forgets the locks of that account
    /// below its certified height (the replica's height check refuses those positions from now on),
    /// except those with a channel mark, which evidence could still ask about.
    public mutating func applyCertified(_ certified: CertifiedEntry) throws(LedgerError) -> ApplyOutcome {
        try applied(ledger.apply(certified), account: certified.entry.account)
    }

    /// As `applyCertified`, for an entry `LedgerState.verify` already checked.
    public mutating func applyVerified(_ verified: VerifiedEntry) throws(LedgerError) -> ApplyOutcome {
        try applied(ledger.apply(verified), account: verified.certified.entry.account)
    }

    private mutating func applied(_ outcome: ApplyOutcome, account: PublicKey) -> ApplyOutcome {
        if case .applied = outcome { prune(account) }
        return outcome
    }

    // MARK: Locks

    private mutating func persist(_ slot: Slot) -> ValidatorEffect {
        let token = nextToken
        nextToken += 1
        pending[token] = slot
        return .persistLock(token: token, lock: locks[slot]!.record)
    }

    private mutating func repeatVotes(_ position: Held, account: PublicKey, height: UInt64) -> [ValidatorEffect] {
        var effects: [ValidatorEffect] = []
        for epoch in position.epochs {
            let slot = Slot(account: account, height: height, epoch: epoch)
            guard var lock = locks[slot] else { continue }
            if let vote = lock.vote {
                effects.append(.sendVote(vote, proof: lock.record.proof))
            } else if lock.writeFailed {
                lock.writeFailed = false
                locks[slot] = lock
                effects.append(persist(slot))
            }
        }
        return effects
    }

    /// Forgets `account`'s locks below its last certified height: durable or failed ones without a
    /// channel mark, and unreadable ones.
    private mutating func prune(_ account: PublicKey) {
        guard let heights = held[account], let next = ledger.accounts[account]?.nextHeight, next > 1 else { return }
        for (height, position) in heights where height < next - 1 {
            let slots = position.epochs.map { Slot(account: account, height: height, epoch: $0) }
            let removable = slots.allSatisfy { slot in
                guard let lock = locks[slot] else { return true }
                return (lock.vote != nil || lock.writeFailed) && lock.record.channelMark == .none
            }
            guard removable else { continue }
            for slot in slots { locks[slot] = nil }
            released.append(contentsOf: slots)
            held[account]?[height] = nil
        }
        if held[account]?.isEmpty == true { held[account] = nil }
    }

    // MARK: Checks

    /// The lock records a vote on `entry` needs: one per committee this validator sits in that must
    /// certify it (the entry's epoch, and the anchor epoch for a crossing).
    private func checkRequest(_ entry: LedgerEntry, hash: EntryHash, now: Instant) throws(LedgerError) -> [LockRecord] {
        guard entry.epoch == ledger.epoch else { throw .wrongEpoch(expected: ledger.epoch, got: entry.epoch) }
        var epochs: [UInt64] = []
        if ledger.committee.contains(identity.publicKey) { epochs.append(entry.epoch) }
        if let anchor = ledger.anchorEpoch(for: entry), ledger.committees[anchor]?.contains(identity.publicKey) == true
        {
            epochs.append(anchor)
        }
        guard !epochs.isEmpty else { throw .notInCommittee(identity.publicKey) }
        if let at = entry.body.at {
            guard at <= now + Self.maximumClockSkew, at >= now - Self.maximumClockSkew else { throw .timeOutOfRange }
        }
        var report: Amount = 0
        var mark = LockRecord.ChannelMark.none
        switch entry.body {
        case .channelOpen(_, _, let expiry):
            guard expiry > now else { throw .channelExpired }
        case .channelClaim(let promise):
            if closeVotes[promise.channel] != nil || ledger.channels[promise.channel]?.isClosed == true {
                throw .channelClosing(promise.channel)
            }
            mark = .claim(promise)
        case .channelClose(let channel, _):
            let proofs = [ackedProofs[channel], ledger.channels[channel]?.claimProof].compactMap { $0 }
            let proof = proofs.max { $0.amount < $1.amount }
            report = proof?.amount ?? 0
            mark = .close(channel, proof: report > 0 ? proof : nil)
        case .epochChange(_, let committee, _):
            guard committee == ledger.nextCommittee() else {
                throw .invalidCommittee("not the top \(ledger.parameters.committeeSize) validator bonds")
            }
        default:
            break
        }
        try ledger.check(entry)
        return epochs.map { epoch in
            LockRecord(
                slot: Slot(account: entry.account, height: entry.height, epoch: epoch), entryHash: hash,
                report: report, channelMark: mark)
        }
    }

    private mutating func mark(_ record: LockRecord) {
        switch record.channelMark {
        case .none: break
        case .claim(let promise):
            if promise.amount >= ackedClaims[promise.channel] ?? 0 {
                ackedClaims[promise.channel] = promise.amount
                ackedProofs[promise.channel] = promise
            }
        case .close(let channel, _): closeVotes[channel] = max(closeVotes[channel] ?? 0, record.report)
        }
    }

    private func vote(for record: LockRecord) -> Vote {
        Vote.make(
            identity: identity, network: ledger.network, slot: record.slot, entryHash: record.entryHash,
            report: record.report)
    }
}
