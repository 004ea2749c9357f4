// What the ledger puts on the wire and on disk around the core (docs/protocol.md §15.8–§15.10):
//
// - `LedgerMessage`, the frames of the ledger's channel between a client and a committee member:
//   tag u8 | body. 1 vote request: entry (u16 length + entry). 2 vote: vote (184) | [promise (104)
//   when the vote's report > 0]. 3 refusal: entry hash 32 | code u8.
// - `CertifiedEntry`'s wire form, what the `ledger` gossip topic carries and replicas store:
//   entry (u16 length + entry) | certificate | [anchor certificate].
// - `LockRecord`'s disk form, what a validator makes durable before its vote leaves.
//
// Every decoder is bounded, canonical and refuses trailing bytes; errors are `DecodeError`s.

import UmbraCore

/// Why a committee member refused to vote, as one byte on the wire. Coarser than `LedgerError` (the
/// strings stay home), precise enough for a client to tell its operator what to fix.
public enum RefusalCode: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Another entry holds the slot (an equivocating or repeated account).
    case slotLocked = 1
    /// Height or prev do not follow the account's last certified entry.
    case wrongPosition = 2
    case insufficientFunds = 3
    case wrongEpoch = 4
    /// The node asked is not a voting member of the epoch's committee.
    case notInCommittee = 5
    case badSignature = 6
    case timeOutOfRange = 7
    /// The entry breaks another rule of its kind (bond minimum, channel rules, evidence, ...).
    case invalidEntry = 8
    /// The member is busy (its table of locks waiting for the disk is full); the client may retry.
    case busy = 9

    public init(_ error: LedgerError) {
        switch error {
        case .slotLocked, .lockUnreadable: self = .slotLocked
        case .wrongHeight, .wrongPrev: self = .wrongPosition
        case .insufficientBalance, .insufficientBond, .unknownAccount, .overflow: self = .insufficientFunds
        case .wrongEpoch, .unknownEpoch: self = .wrongEpoch
        case .notInCommittee: self = .notInCommittee
        case .badSignature: self = .badSignature
        case .timeOutOfRange: self = .timeOutOfRange
        default: self = .invalidEntry
        }
    }

    public var description: String {
        switch self {
        case .slotLocked: "another entry holds this account's slot"
        case .wrongPosition: "height or prev does not follow the account's last entry"
        case .insufficientFunds: "insufficient balance or bond"
        case .wrongEpoch: "wrong epoch"
        case .notInCommittee: "not a member of the epoch's committee"
        case .badSignature: "entry signature does not verify"
        case .timeOutOfRange: "entry time is too far from the validator's clock"
        case .invalidEntry: "the entry breaks a rule of its kind"
        case .busy: "the validator is busy"
        }
    }
}

/// A frame of the ledger's channel.
public enum LedgerMessage: Hashable, Sendable {
    /// A client asks a committee member to vote for `entry`.
    case voteRequest(LedgerEntry)
    /// The member's vote (sent only once its lock is durable), with the consumer's promise its
    /// report rests on (present exactly when `vote.report > 0`).
    case vote(Vote, proof: ChannelPromise?)
    /// The member refused the entry with this hash.
    case refusal(EntryHash, RefusalCode)

    enum Tag: UInt8 {
        case voteRequest = 1, vote = 2, refusal = 3
    }

    /// A vote without a report.
    public static func vote(_ vote: Vote) -> LedgerMessage { .vote(vote, proof: nil) }

    /// The largest encoded message (a vote request with the largest entry).
    public static let maximumSize = 1 + 2 + LedgerLimits.maximumEntrySize

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 200)
        switch self {
        case .voteRequest(let entry):
            writer.write(Tag.voteRequest.rawValue)
            writer.write(lengthPrefixed: entry.encoded())
        case .vote(let vote, let proof):
            writer.write(Tag.vote.rawValue)
            writer.write(raw: vote.encoded())
            if let proof { writer.write(raw: proof.encoded()) }
        case .refusal(let hash, let code):
            writer.write(Tag.refusal.rawValue)
            writer.write(hash)
            writer.write(code.rawValue)
        }
        return writer.bytes
    }

    /// Decodes exactly `bytes` (at most `maximumSize`). Signatures are not checked.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard bytes.count <= Self.maximumSize else {
            throw .lengthTooLarge(offset: 0, length: bytes.count, limit: Self.maximumSize)
        }
        var reader = ByteReader(bytes)
        let tagByte = try reader.readUInt8()
        switch Tag(rawValue: tagByte) {
        case .voteRequest: self = .voteRequest(try LedgerEntry.readPrefixed(from: &reader))
        case .vote:
            let vote = try Vote.read(from: &reader)
            var proof: ChannelPromise?
            if vote.report > 0 {
                proof = try ChannelPromise.read(from: &reader)
                guard proof?.amount == vote.report else {
                    throw .invalid(field: "vote", reason: "a report and its promise differ")
                }
            }
            self = .vote(vote, proof: proof)
        case .refusal:
            let hash = try reader.readKey256()
            let codeByte = try reader.readUInt8()
            guard let code = RefusalCode(rawValue: codeByte) else {
                throw .unknownTag(field: "refusal code", value: UInt64(codeByte))
            }
            self = .refusal(hash, code)
        case nil: throw .unknownTag(field: "ledger message", value: UInt64(tagByte))
        }
        try reader.expectEnd()
    }
}

extension LedgerEntry {
    /// Reads a u16-length-prefixed entry (at most `LedgerLimits.maximumEntrySize` bytes).
    static func readPrefixed(from reader: inout ByteReader) throws(DecodeError) -> LedgerEntry {
        let bytes = try reader.readLengthPrefixed(limit: LedgerLimits.maximumEntrySize)
        var inner = ByteReader(bytes)
        let entry = try LedgerEntry.read(from: &inner, nested: false)
        try inner.expectEnd()
        return entry
    }
}

// MARK: - Certified entries

extension CertifiedEntry {
    /// The largest encoded certified entry (with an anchor).
    public static let maximumSize = 2 + LedgerLimits.maximumEntrySize + 2 * LedgerLimits.maximumCertificateSize

    /// `entry (u16 length + entry) | certificate | [anchor certificate]`.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 600)
        writer.write(lengthPrefixed: entry.encoded())
        writer.write(raw: certificate.encoded())
        if let anchor { writer.write(raw: anchor.encoded()) }
        return writer.bytes
    }

    /// Decodes exactly `bytes`. Neither signatures nor the certificate are checked (`LedgerState.apply`
    /// does).
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard bytes.count <= Self.maximumSize else {
            throw .lengthTooLarge(offset: 0, length: bytes.count, limit: Self.maximumSize)
        }
        var reader = ByteReader(bytes)
        let entry = try LedgerEntry.readPrefixed(from: &reader)
        let certificate = try Certificate.read(from: &reader)
        let anchor = reader.isAtEnd ? nil : try Certificate.read(from: &reader)
        try reader.expectEnd()
        self.init(entry: entry, certificate: certificate, anchor: anchor)
    }
}

// MARK: - Lock records

extension LockRecord {
    /// The largest encoded record.
    public static let maximumSize = 32 + 8 + 8 + 32 + 8 + 1 + 32 + ChannelPromise.encodedSize

    /// `account 32 | height u64 | epoch u64 | entry hash 32 | report u64 | mark u8 (0 none, 1 claim,
    /// 2 close) | [promise 104] for a claim, [channel 32 | promise 104 when report > 0] for a close`.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: Self.maximumSize)
        writer.write(slot.account)
        writer.write(slot.height)
        writer.write(slot.epoch)
        writer.write(entryHash)
        writer.write(report)
        switch channelMark {
        case .none:
            writer.write(UInt8(0))
        case .claim(let promise):
            writer.write(UInt8(1))
            writer.write(raw: promise.encoded())
        case .close(let channel, let proof):
            writer.write(UInt8(2))
            writer.write(channel)
            if let proof { writer.write(raw: proof.encoded()) }
        }
        return writer.bytes
    }

    /// Decodes exactly `bytes`.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(bytes)
        let slot = Slot(
            account: try reader.readPublicKey(), height: try reader.readUInt64(), epoch: try reader.readUInt64())
        let entryHash = try reader.readKey256()
        let report = try reader.readUInt64()
        let markByte = try reader.readUInt8()
        let mark: ChannelMark
        switch markByte {
        case 0: mark = .none
        case 1: mark = .claim(try ChannelPromise.read(from: &reader))
        case 2:
            let channel = try reader.readKey256()
            let proof = report > 0 ? try ChannelPromise.read(from: &reader) : nil
            if let proof, proof.channel != channel || proof.amount != report {
                throw .invalid(field: "lock record", reason: "a close report and its promise differ")
            }
            mark = .close(channel, proof: proof)
        default: throw .unknownTag(field: "lock channel mark", value: UInt64(markByte))
        }
        try reader.expectEnd()
        self.init(slot: slot, entryHash: entryHash, report: report, channelMark: mark)
    }
}

extension Slot {
    /// The storage key of a slot: `account 32 | height u64 | epoch u64`, big-endian so keys sort by
    /// account, then height, then epoch.
    public var storageKey: [UInt8] {
        account.bytes + Self.bigEndian(height) + Self.bigEndian(epoch)
    }

    /// The slot a storage key names (nil unless it is 48 bytes).
    public init?(storageKey key: [UInt8]) {
        guard key.count == 48, let account = try? PublicKey(bytes: key[0..<32]) else { return nil }
        func integer(_ start: Int) -> UInt64 { key[start..<start + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        self.init(account: account, height: integer(32), epoch: integer(40))
    }

    static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
    }
}
