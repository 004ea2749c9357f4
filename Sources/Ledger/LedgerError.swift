// Why the ledger refused something: an entry (by `LedgerState` or a `Validator`), a vote or a
// certificate. One case per reason, Equatable so callers and tests match exact reasons. Decoders throw
// UmbraCore's `DecodeError`.

import UmbraCore

/// Why an entry, vote, certificate or evidence was refused. Nothing changed when one is thrown.
public enum LedgerError: Error, Hashable, Sendable, CustomStringConvertible {
    // Entries in general
    case wrongNetwork(String)
    case badSignature
    case wrongHeight(expected: UInt64, got: UInt64)
    case wrongPrev
    case wrongEpoch(expected: UInt64, got: UInt64)
    case unknownEpoch(UInt64)
    /// A genesis allocation exists only in the genesis parameters, never as an appended entry.
    case genesisEntry
    case invalidField(field: String, reason: String)
    case overflow
    /// `at` is too far from the validator's clock.
    case timeOutOfRange
    // Accounts and stakes
    case unknownAccount(PublicKey)
    case insufficientBalance(needed: Amount, available: Amount)
    case bondBelowMinimum(role: Role, minimum: Amount)
    case insufficientBond(role: Role, bonded: Amount)
    case tooManyUnbondings
    case withdrawBeforeDelay(releaseAt: Instant)
    case nothingToWithdraw
    // Channels
    case unknownChannel(ChannelID)
    case notChannelProvider
    case notChannelParty
    case badPromiseSignature
    case claimAboveDeposit(deposit: Amount)
    case channelNotExpired(expiry: Instant)
    case channelExpired
    /// This validator voted to close the channel, so it acks no further claim on it.
    case channelClosing(ChannelID)
    // Evidence
    case invalidEvidence(String)
    case duplicateEvidence
    case evidenceExpired
    // Votes and certificates
    case notInCommittee(PublicKey)
    case slotLocked(existing: EntryHash)
    case voteForOtherEntry
    case badVoteSignature(PublicKey)
    case duplicateVote(PublicKey)
    case noQuorum(signed: Amount, total: Amount)
    case invalidCommittee(String)
    /// A vote's close report without the consumer's promise of that amount.
    case unprovenReport(PublicKey)
    /// The entry leaves its account's epoch without the anchor of that epoch's committee.
    case anchorRequired(epoch: UInt64)
    /// The validator's stored lock for this slot could not be read: it refuses the slot.
    case lockUnreadable

    public var description: String {
        switch self {
        case .wrongNetwork(let network): "entry is for network '\(network)'"
        case .badSignature: "entry signature does not verify"
        case .wrongHeight(let expected, let got): "wrong height \(got), the account's next height is \(expected)"
        case .wrongPrev: "prev is not the hash of the account's last entry"
        case .wrongEpoch(let expected, let got): "wrong epoch \(got), expected \(expected)"
        case .unknownEpoch(let epoch): "no committee known for epoch \(epoch)"
        case .genesisEntry: "genesis allocations cannot be appended"
        case .invalidField(let field, let reason): "invalid \(field): \(reason)"
        case .overflow: "amount overflow"
        case .timeOutOfRange: "entry time is too far from now"
        case .unknownAccount(let key): "unknown account \(key)"
        case .insufficientBalance(let needed, let available):
            "insufficient balance: \(needed) needed, \(available) available"
        case .bondBelowMinimum(let role, let minimum): "\(role) bond below the minimum of \(minimum)"
        case .insufficientBond(let role, let bonded): "only \(bonded) bonded as \(role)"
        case .tooManyUnbondings: "too many unbondings waiting"
        case .withdrawBeforeDelay(let releaseAt): "nothing to withdraw before the unbonding delay ends at \(releaseAt)"
        case .nothingToWithdraw: "nothing to withdraw"
        case .unknownChannel(let id): "unknown channel \(id)"
        case .notChannelProvider: "only the channel's provider may claim"
        case .notChannelParty: "only the channel's consumer or provider may close it"
        case .badPromiseSignature: "promise signature does not verify"
        case .claimAboveDeposit(let deposit): "claim above the channel deposit of \(deposit)"
        case .channelNotExpired(let expiry): "the consumer may close only after expiry at \(expiry)"
        case .channelExpired: "channel expiry is not in the future"
        case .channelClosing(let id): "this validator voted to close channel \(id)"
        case .invalidEvidence(let reason): "invalid evidence: \(reason)"
        case .duplicateEvidence: "this offense was already punished"
        case .evidenceExpired: "evidence is older than the evidence lifetime"
        case .notInCommittee(let key): "\(key) is not in the epoch's committee"
        case .slotLocked(let existing): "slot already locked for entry \(existing)"
        case .voteForOtherEntry: "vote is for another entry or slot"
        case .badVoteSignature(let key): "vote signature of \(key) does not verify"
        case .duplicateVote(let key): "two votes of \(key) in one certificate"
        case .noQuorum(let signed, let total): "votes carry \(signed) of \(total) stake, not more than two thirds"
        case .invalidCommittee(let reason): "invalid committee: \(reason)"
        case .unprovenReport(let key): "the close report of \(key) carries no matching promise"
        case .anchorRequired(let epoch): "the entry leaves epoch \(epoch) without that committee's anchor"
        case .lockUnreadable: "the validator's stored lock for this slot is unreadable"
        }
    }
}
