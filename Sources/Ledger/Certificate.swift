// Certificates (DESIGN §6): votes for one entry from strictly more than two thirds of the epoch
// committee's stake. Wire form (docs/protocol.md §15.4): epoch u64 | account 32 | height u64 |
// entry hash 32 | count u16 | count × (validator 32 | report u64 | signature 64 | [promise 104 when
// report > 0]), validators in strictly increasing byte order (canonical, no duplicates). Each vote is
// rebuilt from the shared fields and its own, then verified. A report is only as good as the
// consumer's promise it carries (the ledger checks that promise against the channel).

import UmbraCore
import UmbraCrypto

/// One validator's part of a certificate.
public struct CertificateVote: Hashable, Sendable {
    /// Without a proof; a vote with a report adds `ChannelPromise.encodedSize`.
    public static let encodedSize = 32 + 8 + Ed25519.signatureBytes

    public var validator: PublicKey
    public var report: Amount
    public var signature: [UInt8]
    /// The consumer's promise of `report` (present exactly when `report > 0`).
    public var proof: ChannelPromise?

    public init(validator: PublicKey, report: Amount, signature: [UInt8], proof: ChannelPromise? = nil) {
        self.validator = validator
        self.report = report
        self.signature = signature
        self.proof = proof
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

    /// The promises the votes' reports rest on: what a certified channel close can settle to the
    /// provider (the ledger checks each against the channel and also counts claims it applied).
    public var proofs: [ChannelPromise] { votes.compactMap(\.proof) }

    /// Throws unless this certifies `entry`: same slot and hash, the committee is `committee` (of
    /// `entry.epoch`), every voter a member with a valid signature, no voter twice, every report
    /// carrying a promise of its amount, and the voters' stake strictly more than two thirds of the
    /// committee's.
    public func verify(for entry: LedgerEntry, committee: Committee) throws(LedgerError) {
        try verify(for: entry, hash: entry.hash, committee: committee, epoch: entry.epoch)
    }

    /// As `verify(for:committee:)`, with the votes' epoch `epoch`: the entry's own for its certificate,
    /// the account's previous epoch for an anchor (`CertifiedEntry.anchor`).
    func verify(for entry: LedgerEntry, hash: EntryHash, committee: Committee, epoch: UInt64) throws(LedgerError) {
        guard self.epoch == epoch else { throw .wrongEpoch(expected: epoch, got: self.epoch) }
        guard account == entry.account, height == entry.height, entryHash == hash else {
            throw .voteForOtherEntry
        }
        var seen = Set<PublicKey>()
        var signed: Amount = 0
        for (vote, part) in zip(fullVotes, votes) {
            guard let stake = committee.stake(of: vote.validator) else { throw .notInCommittee(vote.validator) }
            guard seen.insert(vote.validator).inserted else { throw .duplicateVote(vote.validator) }
            guard part.proof?.amount == (vote.report > 0 ? vote.report : nil) else {
                throw .unprovenReport(vote.validator)
            }
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
            if let proof = vote.proof { writer.write(raw: proof.encoded()) }
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
            var vote = CertificateVote(
                validator: try reader.readPublicKey(), report: try reader.readUInt64(),
                signature: try reader.readSignature())
            if vote.report > 0 {
                let proof = try ChannelPromise.read(from: &reader)
                guard proof.amount == vote.report else {
                    throw .invalid(field: "certificate", reason: "a report and its promise differ")
                }
                vote.proof = proof
            }
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
    /// For a crossing (an entry of a later epoch than its account's last entry): the same entry
    /// certified by the committee of the account's epoch, whose members lock (account, height) across
    /// epochs. Nil otherwise.
    public var anchor: Certificate?

    public init(entry: LedgerEntry, certificate: Certificate, anchor: Certificate? = nil) {
        self.entry = entry
        self.certificate = certificate
        self.anchor = anchor
    }

    /// BLAKE2b-256 of the wire form: two certificates for one entry are two items.
    public var identity: Key256 { LedgerDomain.hash(encoded()) }
}

// MARK: - Collector

/// Gathers votes for one entry until they form a certificate (a client's side of DESIGN §6).
/// Every vote is checked as it arrives: epoch, slot and hash, committee membership, signature, and a
/// report's promise.
public struct CertificateCollector: Sendable {
    public let entry: LedgerEntry
    public let entryHash: EntryHash
    public let committee: Committee
    /// The epoch of the votes: the entry's, or the account's previous one for an anchor.
    public let epoch: UInt64
    /// The consumer of the channel the entry closes, when known: a report's promise is checked
    /// against it as it arrives.
    public let channelConsumer: PublicKey?
    private var votes: [PublicKey: CertificateVote] = [:]
    private var signedStake: Amount = 0
    /// Set once the votes carry more than two thirds of the stake.
    public private(set) var certificate: Certificate?

    /// `committee` must be the committee of `epoch` (by default the entry's epoch; for an anchor, the
    /// epoch of the account's last entry).
    public init(entry: LedgerEntry, committee: Committee, epoch: UInt64? = nil, channelConsumer: PublicKey? = nil) {
        self.entry = entry
        self.entryHash = entry.hash
        self.committee = committee
        self.epoch = epoch ?? entry.epoch
        self.channelConsumer = channelConsumer
    }

    /// The stake of the votes collected so far.
    public var collectedStake: Amount { signedStake }

    /// Adds `vote` (with `proof`, the promise its report rests on); returns the certificate when this
    /// vote completes it (once), nil otherwise. A repeated vote of one validator is ignored. Throws
    /// (and keeps nothing) for a vote of the wrong epoch, slot or entry, of a non-member, with a bad
    /// signature, or with a report its proof does not match.
    public mutating func add(_ vote: Vote, proof: ChannelPromise? = nil) throws(LedgerError) -> Certificate? {
        guard vote.epoch == epoch else { throw .wrongEpoch(expected: epoch, got: vote.epoch) }
        guard vote.account == entry.account, vote.height == entry.height, vote.entryHash == entryHash else {
            throw .voteForOtherEntry
        }
        guard let stake = committee.stake(of: vote.validator) else { throw .notInCommittee(vote.validator) }
        guard vote.hasValidSignature(network: entry.network) else { throw .badVoteSignature(vote.validator) }
        if vote.report > 0 {
            guard let proof, proof.amount == vote.report, case .channelClose(let channel, _) = entry.body,
                proof.channel == channel,
                channelConsumer.map({ proof.verify(consumer: $0, network: entry.network) }) ?? true
            else { throw .unprovenReport(vote.validator) }
        }
        guard votes[vote.validator] == nil else { return nil }
        votes[vote.validator] = CertificateVote(
            validator: vote.validator, report: vote.report, signature: vote.signature,
            proof: vote.report > 0 ? proof : nil)
        signedStake = try signedStake.adding(stake)
        guard certificate == nil, exceedsTwoThirds(signedStake, of: committee.totalStake) else { return nil }
        let made = Certificate(
            epoch: epoch, account: entry.account, height: entry.height, entryHash: entryHash,
            votes: Array(votes.values))
        certificate = made
        return made
    }
}
