// Evidence of an offense (DESIGN §6, "Slashing on evidence only"). Each kind verifies on its own,
// with nothing but the network id: the signatures inside prove who did it.
// Wire form (docs/protocol.md §15.5): tag u8, then
//   1 double vote (one validator, account and height, any epochs): vote (184) | vote (184)
//   2 claim after close:  close entry (u16 + bytes) | close vote (184) | claim entry (u16 + bytes) | claim vote (184)
//   3 equivocation (one account, height and epoch):       entry (u16 + bytes) | entry (u16 + bytes)
// Entries inside evidence may not themselves be evidence (the recursion stops at one level).

import UmbraCore
import UmbraCrypto

/// Proof that an identity broke a rule.
public indirect enum Evidence: Hashable, Sendable {
    /// One validator signed two different entries for one account and height, in one epoch or in
    /// two: an honest validator locks (account, height) across epochs (docs/threat-model.md).
    case doubleVote(Vote, Vote)
    /// One validator voted to close a channel reporting `closeVote.report`, and acked (voted for) a
    /// claim on that channel above that report: an honest validator never acks a claim after its
    /// close vote, and its report covers every claim it acked before.
    case claimAfterClose(closeEntry: LedgerEntry, closeVote: Vote, claimEntry: LedgerEntry, claimVote: Vote)
    /// One account signed two different entries for one height in one epoch. (Signing the same
    /// height again in a later epoch is how a client retries an entry the old committee never
    /// certified, so that is allowed.)
    case equivocation(LedgerEntry, LedgerEntry)

    enum Tag: UInt8 {
        case doubleVote = 1
        case claimAfterClose = 2
        case equivocation = 3
    }

    /// What a verified piece of evidence proves.
    public struct Offense: Hashable, Sendable {
        /// Whose stake is burned.
        public var offender: PublicKey
        /// The epoch the offense happened in (for the evidence lifetime).
        public var epoch: UInt64
        /// One key per offense, so the same offense is punished once whatever evidence shows it.
        public var key: Key256
    }

    /// Checks the evidence on its own for `network` and returns the offense it proves.
    public func verify(network: String) throws(LedgerError) -> Offense {
        switch self {
        case .doubleVote(let first, let second):
            guard first.validator == second.validator, first.account == second.account,
                first.height == second.height
            else { throw .invalidEvidence("the votes are not one validator's for one account and height") }
            guard first.entryHash != second.entryHash else { throw .invalidEvidence("the votes are for one entry") }
            guard first.hasValidSignature(network: network), second.hasValidSignature(network: network) else {
                throw .invalidEvidence("a vote signature does not verify")
            }
            // One offense per (validator, account, height), whichever epochs; it is complete at the
            // later vote, so its lifetime counts from the later epoch.
            var position = ByteWriter(capacity: 40)
            position.write(first.account)
            position.write(first.height)
            return offense(1, first.validator, max(first.epoch, second.epoch), position.bytes)

        case .claimAfterClose(let closeEntry, let closeVote, let claimEntry, let claimVote):
            guard closeVote.validator == claimVote.validator else {
                throw .invalidEvidence("the votes are by different validators")
            }
            guard case .channelClose(let closed, _) = closeEntry.body,
                case .channelClaim(let promise) = claimEntry.body, promise.channel == closed
            else { throw .invalidEvidence("not a close and a claim of one channel") }
            guard promise.amount > closeVote.report else {
                throw .invalidEvidence("the claim does not exceed the close report")
            }
            guard closeEntry.network == network, claimEntry.network == network else {
                throw .invalidEvidence("an entry of another network")
            }
            guard closeVote.entryHash == closeEntry.hash, closeVote.slot == Slot(entry: closeEntry),
                claimVote.entryHash == claimEntry.hash, claimVote.slot == Slot(entry: claimEntry)
            else { throw .invalidEvidence("a vote is not for its entry") }
            guard closeVote.hasValidSignature(network: network), claimVote.hasValidSignature(network: network) else {
                throw .invalidEvidence("a vote signature does not verify")
            }
            return offense(2, closeVote.validator, closeVote.epoch, closed.bytes)

        case .equivocation(let first, let second):
            guard first.account == second.account, first.height == second.height, first.epoch == second.epoch else {
                throw .invalidEvidence("the entries are not one account's at one height and epoch")
            }
            guard first.network == network, second.network == network else {
                throw .invalidEvidence("an entry of another network")
            }
            guard first.hash != second.hash else { throw .invalidEvidence("the entries are the same") }
            guard first.hasValidSignature, second.hasValidSignature else {
                throw .invalidEvidence("an entry signature does not verify")
            }
            return offense(3, first.account, first.epoch, Slot(entry: first).keyBytes)
        }
    }

    private func offense(_ tag: UInt8, _ offender: PublicKey, _ epoch: UInt64, _ detail: [UInt8]) -> Offense {
        var writer = ByteWriter(capacity: 80)
        writer.write(tag)
        writer.write(offender)
        writer.write(raw: detail)
        let key = LedgerDomain.hash(
            LedgerDomain.signingInput(tag: LedgerDomain.offense, network: "", fields: writer.bytes))
        return Offense(offender: offender, epoch: epoch, key: key)
    }

    // MARK: Wire codec

    func write(to writer: inout ByteWriter) {
        switch self {
        case .doubleVote(let first, let second):
            writer.write(Tag.doubleVote.rawValue)
            writer.write(raw: first.encoded())
            writer.write(raw: second.encoded())
        case .claimAfterClose(let closeEntry, let closeVote, let claimEntry, let claimVote):
            writer.write(Tag.claimAfterClose.rawValue)
            writer.write(lengthPrefixed: closeEntry.encoded())
            writer.write(raw: closeVote.encoded())
            writer.write(lengthPrefixed: claimEntry.encoded())
            writer.write(raw: claimVote.encoded())
        case .equivocation(let first, let second):
            writer.write(Tag.equivocation.rawValue)
            writer.write(lengthPrefixed: first.encoded())
            writer.write(lengthPrefixed: second.encoded())
        }
    }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 400)
        write(to: &writer)
        return writer.bytes
    }

    /// Decodes exactly `bytes`. Signatures are not checked (`verify` does).
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(bytes)
        self = try Self.read(from: &reader)
        try reader.expectEnd()
    }

    static func read(from reader: inout ByteReader) throws(DecodeError) -> Evidence {
        let tagByte = try reader.readUInt8()
        guard let tag = Tag(rawValue: tagByte) else { throw .unknownTag(field: "evidence", value: UInt64(tagByte)) }
        switch tag {
        case .doubleVote:
            return .doubleVote(try Vote.read(from: &reader), try Vote.read(from: &reader))
        case .claimAfterClose:
            let closeEntry = try readNestedEntry(&reader)
            let closeVote = try Vote.read(from: &reader)
            let claimEntry = try readNestedEntry(&reader)
            let claimVote = try Vote.read(from: &reader)
            return .claimAfterClose(
                closeEntry: closeEntry, closeVote: closeVote, claimEntry: claimEntry, claimVote: claimVote)
        case .equivocation:
            return .equivocation(try readNestedEntry(&reader), try readNestedEntry(&reader))
        }
    }

    private static func readNestedEntry(_ reader: inout ByteReader) throws(DecodeError) -> LedgerEntry {
        let bytes = try reader.readLengthPrefixed(limit: LedgerLimits.maximumEntrySize)
        var inner = ByteReader(bytes)
        let entry = try LedgerEntry.read(from: &inner, nested: true)
        try inner.expectEnd()
        return entry
    }
}

extension Slot {
    /// The slot `entry` asks a vote for.
    public init(entry: LedgerEntry) { self.init(account: entry.account, height: entry.height, epoch: entry.epoch) }

    var keyBytes: [UInt8] {
        var writer = ByteWriter(capacity: 48)
        writer.write(account)
        writer.write(height)
        writer.write(epoch)
        return writer.bytes
    }
}
