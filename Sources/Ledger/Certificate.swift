// Certificates (DESIGN §6): votes for one entry from strictly more than two thirds of the epoch
// committee's stake. Wire form (docs/protocol.md §15.4): epoch u64 | account 32 | height u64 |
// entry hash 32 | count u16 | count × (validator 32 | report u64 | signature 64), validators in
// strictly increasing byte order (canonical, no duplicates). Each vote is rebuilt from the shared
// fields and its own, then verified.

import UmbraCore
import UmbraCrypto

/// One validator's part of a certificate.
public struct CertificateVote: Hashable, Sendable {
    public static let encodedSize = 32 + 8 + Ed25519.signatureBytes

    public var validator: PublicKey
    public var report: Amount
    public var signature: [UInt8]

    public init(validator: PublicKey, report: Amount, signature: [UInt8]) {
        self.validator = validator
        self.report = report
        self.signature = signature
    }
}

/// A committee: who votes in an epoch and with what weight.
public struct Committee: Hashable, Sendable {
    public let members: [CommitteeMember]
    public let totalStake: Amount
    private let stakes: [PublicKey: Amount]

    /// Throws unless there are 1...`LedgerLimits.maximumCommitteeSize` distinct members, each with
    /// stake > 0, and the total does not overflow.
    public init(_ members: [CommitteeMember]) throws(LedgerError) {
        guard !members.isEmpty, members.count <= LedgerLimits.maximumCommitteeSize else {
            throw .invalidCommittee("\(members.count) members")
        }
        var total: Amount = 0
        var stakes: [PublicKey: Amount] = [:]
        for member in members {
            guard member.stake > 0 else { throw .invalidCommittee("a member without stake") }
            guard stakes.updateValue(member.stake, forKey: member.identity) == nil else {
                throw .invalidCommittee("a member listed twice")
            }
            do { total = try total.adding(member.stake) } catch { throw .invalidCommittee("total stake overflows") }
        }
        self.members = members
        self.totalStake = total
        self.stakes = stakes
    }

    public func stake(of identity: PublicKey) -> Amount? { stakes[identity] }

    public func contains(_ identity: PublicKey) -> Bool { stakes[identity] != nil }
}

/// Proof that a quorum of an epoch's committee voted for an entry.
public struct Certificate: Hashable, Sendable {
    public var epoch: UInt64
    public var account: PublicKey
    public var height: UInt64
    public var entryHash: EntryHash
    /// Sorted by validator bytes, strictly increasing.
    public var votes: [CertificateVote]

    public init(epoch: UInt64, account: PublicKey, height: UInt64, entryHash: EntryHash, votes: [CertificateVote]) {
        self.epoch = epoch
        self.account = account
        self.height = height
        self.entryHash = entryHash
        self.votes = votes.sorted { $0.validator.bytes.lexicographicallyPrecedes($1.validator.bytes) }
    }

    public var slot: Slot { Slot(account: account, height: height, epoch: epoch) }

    /// The votes in their standalone form.
    public var fullVotes: [Vote] {
        votes.map {
            Vote(
                epoch: epoch, validator: $0.validator, account: account, height: height, entryHash: entryHash,
                report: $0.report, signature: $0.signature)
        }
    }

    /// The highest `report` among the votes: what a certified channel close settles to the provider
    /// (at least; the ledger also counts claims it already applied).
    public var highestReport: Amount { votes.map(\.report).max() ?? 0 }

    /// Throws unless this certifies `entry`: same slot and hash, the committee is `committee` (of
    /// `entry.epoch`), every voter a member with a valid signature, no voter twice, and the voters'
    /// stake strictly more than two thirds of the committee's.
    public func verify(for entry: LedgerEntry, committee: Committee) throws(LedgerError) {
        guard epoch == entry.epoch else { throw .wrongEpoch(expected: entry.epoch, got: epoch) }
        guard account == entry.account, height == entry.height, entryHash == entry.hash else {
            throw .voteForOtherEntry
        }
        var seen = Set<PublicKey>()
        var signed: Amount = 0
        for vote in fullVotes {
            guard let stake = committee.stake(of: vote.validator) else { throw .notInCommittee(vote.validator) }
            guard seen.insert(vote.validator).inserted else { throw .duplicateVote(vote.validator) }
            guard vote.hasValidSignature(network: entry.network) else { throw .badVoteSignature(vote.validator) }
            signed = try signed.adding(stake)
        }
        guard exceedsTwoThirds(signed, of: committee.totalStake) else {
            throw .noQuorum(signed: signed, total: committee.totalStake)
        }
    }

    // MARK: Wire codec

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 82 + votes.count * CertificateVote.encodedSize)
        writer.write(epoch)
        writer.write(account)
        writer.write(height)
        writer.write(entryHash)
        writer.write(UInt16(votes.count))
        for vote in votes {
            writer.write(vote.validator)
            writer.write(vote.report)
            writer.write(raw: vote.signature)
        }
        return writer.bytes
    }

    /// Decodes exactly `bytes`: at most `LedgerLimits.maximumCommitteeSize` votes in strictly
    /// increasing validator order. Signatures are not checked (`verify` does).
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(bytes)
        self = try Self.read(from: &reader)
        try reader.expectEnd()
    }

    static func read(from reader: inout ByteReader) throws(DecodeError) -> Certificate {
        let epoch = try reader.readUInt64()
        let account = try reader.readPublicKey()
        let height = try reader.readUInt64()
        let entryHash = try reader.readKey256()
        let start = reader.offset
        let count = Int(try reader.readUInt16())
        guard count <= LedgerLimits.maximumCommitteeSize else {
            throw .lengthTooLarge(offset: start, length: count, limit: LedgerLimits.maximumCommitteeSize)
        }
        var votes: [CertificateVote] = []
        for _ in 0..<count {
            let vote = CertificateVote(
                validator: try reader.readPublicKey(), report: try reader.readUInt64(),
                signature: try reader.readSignature())
            if let last = votes.last, !last.validator.bytes.lexicographicallyPrecedes(vote.validator.bytes) {
                throw .invalid(field: "certificate", reason: "validators not in strictly increasing order")
            }
            votes.append(vote)
        }
        return Certificate(epoch: epoch, account: account, height: height, entryHash: entryHash, votes: votes)
    }
}

/// An entry with its certificate: what replicas apply and gossip.
public struct CertifiedEntry: Hashable, Sendable {
    public var entry: LedgerEntry
    public var certificate: Certificate

    public init(entry: LedgerEntry, certificate: Certificate) {
        self.entry = entry
        self.certificate = certificate
    }
}

// MARK: - Collector

/// Gathers votes for one entry until they form a certificate (a client's side of DESIGN §6).
/// Every vote is checked as it arrives: epoch, slot and hash, committee membership, signature.
public struct CertificateCollector: Sendable {
    public let entry: LedgerEntry
    public let entryHash: EntryHash
    public let committee: Committee
    private var votes: [PublicKey: CertificateVote] = [:]
    private var signedStake: Amount = 0
    /// Set once the votes carry more than two thirds of the stake.
    public private(set) var certificate: Certificate?

    /// `committee` must be the committee of `entry.epoch`.
    public init(entry: LedgerEntry, committee: Committee) {
        self.entry = entry
        self.entryHash = entry.hash
        self.committee = committee
    }

    /// The stake of the votes collected so far.
    public var collectedStake: Amount { signedStake }

    /// Adds `vote`; returns the certificate when this vote completes it (once), nil otherwise. A
    /// repeated vote of one validator is ignored. Throws (and keeps nothing) for a vote of the wrong
    /// epoch, slot or entry, of a non-member, or with a bad signature.
    public mutating func add(_ vote: Vote) throws(LedgerError) -> Certificate? {
        guard vote.epoch == entry.epoch else { throw .wrongEpoch(expected: entry.epoch, got: vote.epoch) }
        guard vote.account == entry.account, vote.height == entry.height, vote.entryHash == entryHash else {
            throw .voteForOtherEntry
        }
        guard let stake = committee.stake(of: vote.validator) else { throw .notInCommittee(vote.validator) }
        guard vote.hasValidSignature(network: entry.network) else { throw .badVoteSignature(vote.validator) }
        guard votes[vote.validator] == nil else { return nil }
        votes[vote.validator] = CertificateVote(
            validator: vote.validator, report: vote.report, signature: vote.signature)
        signedStake = try signedStake.adding(stake)
        guard certificate == nil, exceedsTwoThirds(signedStake, of: committee.totalStake) else { return nil }
        let made = Certificate(
            epoch: entry.epoch, account: entry.account, height: entry.height, entryHash: entryHash,
            votes: Array(votes.values))
        certificate = made
        return made
    }
}
