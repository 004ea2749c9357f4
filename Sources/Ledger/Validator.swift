// A committee member's side of the ledger (DESIGN §6): it checks a requested entry against its own
// replica of the state, locks the entry's slot, asks its shell to make the lock durable, and only
// when the shell reports `persisted` does the vote leave. So a validator that crashes and restarts
// (and restores its locks) can never sign a second entry for a slot it already voted in.
//
//   request ─► checks ─► lock (in memory) ─► .persistLock(token, record) ─► shell writes, fsyncs
//           ◄─ .sendVote(vote) ◄─ persisted(token) ◄────────────────────────┘
//
// Channel rules: a claim it votes for raises its `ackedClaims[channel]`; a close it votes for reports
// that maximum and marks the channel, after which it refuses every claim on it (DESIGN §6, Channels).
// Both marks are part of the lock record, so they survive a restart with it.

import UmbraCore

/// What a validator made durable before voting: enough to rebuild its vote (Ed25519 signatures are
/// deterministic) and its channel marks after a restart.
public struct LockRecord: Hashable, Sendable {
    /// What a lock means for a channel.
    public enum ChannelMark: Hashable, Sendable {
        case none
        /// The vote acks a claim of `amount` on the channel.
        case claim(ChannelID, Amount)
        /// The vote closes the channel (and carries the report).
        case close(ChannelID)
    }

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
}

/// What the shell must do for a validator.
public enum ValidatorEffect: Hashable, Sendable {
    /// Make `lock` durable (a group commit may batch several), then feed `persisted(token:)`.
    case persistLock(token: UInt64, lock: LockRecord)
    /// Send the vote to whoever asked for the entry (a repeated request gets the same vote again).
    case sendVote(Vote)
    /// The entry was refused; tell the requester why.
    case refuse(EntryHash, LedgerError)
}

/// A validator: a replica of the ledger plus its slot locks.
public struct Validator: Sendable {
    /// How far an entry's `at` may be from the validator's clock.
    public static let maximumClockSkew: Duration = .seconds(30)

    private struct Lock: Sendable {
        var record: LockRecord
        /// Set once the lock is durable.
        var vote: Vote?
    }

    public let identity: Identity
    public private(set) var ledger: LedgerState
    private var locks: [Slot: Lock] = [:]
    private var pending: [UInt64: Slot] = [:]
    private var nextToken: UInt64 = 1
    /// The highest claim this validator voted for, per channel.
    public private(set) var ackedClaims: [ChannelID: Amount] = [:]
    /// The channels this validator voted to close, with the report it gave.
    public private(set) var closeVotes: [ChannelID: Amount] = [:]

    /// A validator over `ledger` with the lock records it persisted before (after a restart), which
    /// count as durable: a repeated request gets the same vote back.
    public init(identity: Identity, ledger: LedgerState, restoredLocks: [LockRecord] = []) {
        self.identity = identity
        self.ledger = ledger
        for record in restoredLocks {
            locks[record.slot] = Lock(record: record, vote: vote(for: record))
            mark(record)
        }
    }

    /// The lock held for `slot`, durable or not.
    public func lock(for slot: Slot) -> LockRecord? { locks[slot]?.record }

    /// How many locks wait for `persisted`.
    public var pendingPersists: Int { pending.count }

    // MARK: Inputs

    /// A client asks for a vote on `entry`. Returns `.persistLock` for a new slot, `.sendVote` for a
    /// repeat of a durable one, nothing for a repeat still being persisted, or `.refuse`.
    public mutating func handleRequest(_ entry: LedgerEntry, now: Instant) -> [ValidatorEffect] {
        let hash = entry.hash
        let slot = Slot(entry: entry)
        if let lock = locks[slot] {
            guard lock.record.entryHash == hash else {
                return [.refuse(hash, .slotLocked(existing: lock.record.entryHash))]
            }
            return lock.vote.map { [.sendVote($0)] } ?? []
        }
        let record: LockRecord
        do throws(LedgerError) {
            record = try checkRequest(entry, hash: hash, now: now)
        } catch {
            return [.refuse(hash, error)]
        }
        locks[slot] = Lock(record: record, vote: nil)
        mark(record)
        let token = nextToken
        nextToken += 1
        pending[token] = slot
        return [.persistLock(token: token, lock: record)]
    }

    /// The shell made the lock of `token` durable: the vote may leave now. An unknown token does nothing.
    public mutating func persisted(token: UInt64) -> [ValidatorEffect] {
        guard let slot = pending.removeValue(forKey: token), var lock = locks[slot] else { return [] }
        let vote = vote(for: lock.record)
        lock.vote = vote
        locks[slot] = lock
        return [.sendVote(vote)]
    }

    /// Applies a certified entry to this validator's replica, then forgets the durable locks it no
    /// longer needs (lower heights of that account, earlier epochs): the replica's height and epoch
    /// checks refuse those slots from now on.
    public mutating func applyCertified(_ certified: CertifiedEntry) throws(LedgerError) -> ApplyOutcome {
        let outcome = try ledger.apply(certified)
        let account = certified.entry.account
        let height = certified.entry.height
        let epoch = ledger.epoch
        locks = locks.filter { slot, lock in
            lock.vote == nil || (slot.epoch >= epoch && (slot.account != account || slot.height >= height))
        }
        return outcome
    }

    // MARK: Checks

    private func checkRequest(_ entry: LedgerEntry, hash: EntryHash, now: Instant) throws(LedgerError) -> LockRecord {
        guard entry.epoch == ledger.epoch else { throw .wrongEpoch(expected: ledger.epoch, got: entry.epoch) }
        guard ledger.committee.contains(identity.publicKey) else { throw .notInCommittee(identity.publicKey) }
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
            mark = .claim(promise.channel, promise.amount)
        case .channelClose(let channel, _):
            report = max(ackedClaims[channel] ?? 0, ledger.channels[channel]?.claimed ?? 0)
            mark = .close(channel)
        case .epochChange(_, let committee, _):
            guard committee == ledger.nextCommittee() else {
                throw .invalidCommittee("not the top \(ledger.parameters.committeeSize) validator bonds")
            }
        default:
            break
        }
        try ledger.check(entry, closeReport: report)
        return LockRecord(slot: Slot(entry: entry), entryHash: hash, report: report, channelMark: mark)
    }

    private mutating func mark(_ record: LockRecord) {
        switch record.channelMark {
        case .none: break
        case .claim(let channel, let amount): ackedClaims[channel] = max(ackedClaims[channel] ?? 0, amount)
        case .close(let channel): closeVotes[channel] = max(closeVotes[channel] ?? 0, record.report)
        }
    }

    private func vote(for record: LockRecord) -> Vote {
        Vote.make(
            identity: identity, network: ledger.network, slot: record.slot, entryHash: record.entryHash,
            report: record.report)
    }
}
