// The vocabulary every ledger file shares (docs/protocol.md §15, DESIGN §6): amounts, hashes, roles,
// domain tags, checked arithmetic and the quorum rule. Pure values: no I/O, no clock.

import UmbraCore
import UmbraCrypto

/// An amount in the smallest unit. Every sum and difference is checked: an overflow is refused
/// with `LedgerError.overflow`, never trapped.
public typealias Amount = UInt64

/// BLAKE2b-256 of an entry's signed bytes (`LedgerEntry.hash`). A channel's id is the hash of the
/// entry that opened it.
public typealias EntryHash = Key256

/// A channel's id: the hash of its `channelOpen` entry.
public typealias ChannelID = Key256

/// What a bond stakes for.
public enum Role: UInt8, Hashable, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    case provider = 1
    case relay = 2
    case validator = 3

    public static func < (lhs: Role, rhs: Role) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .provider: "provider"
        case .relay: "relay"
        case .validator: "validator"
        }
    }
}

/// The domain tags of everything the ledger signs or hashes (DESIGN §1.4). Each signed input is
/// `tag (UTF-8) || 0x00 || network id (u16-length-prefixed UTF-8) || fields`.
public enum LedgerDomain {
    public static let entry = "umbra/entry/v1"
    public static let vote = "umbra/vote/v1"
    public static let promise = "umbra/promise/v1"
    public static let genesisAllocation = "umbra/genesis-allocation/v1"
    public static let offense = "umbra/offense/v1"

    /// `tag || 0x00 || network (u16-prefixed) || fields`.
    static func signingInput(tag: String, network: String, fields: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: tag.utf8.count + 3 + network.utf8.count + fields.count)
        writer.write(raw: tag.utf8)
        writer.write(UInt8(0))
        writer.write(string: network)
        writer.write(raw: fields)
        return writer.bytes
    }

    /// BLAKE2b-256 of `bytes` as a key.
    static func hash(_ bytes: [UInt8]) -> Key256 {
        let digest = BLAKE2b.hash(bytes, outputLength: Key256.byteCount)
        guard let key = Key256(bytes: digest) else { preconditionFailure("BLAKE2b returned \(digest.count) bytes") }
        return key
    }
}

/// Limits every ledger decoder enforces.
public enum LedgerLimits {
    /// The longest network id, in UTF-8 bytes.
    public static let maximumNetworkBytes = 64
    /// The largest encoded entry, signature included.
    public static let maximumEntrySize = 8192
    /// The most members a committee (and so a certificate) may have.
    public static let maximumCommitteeSize = 128
    /// The most unbondings an account may have waiting at once.
    public static let maximumPendingUnbondings = 16
    /// The largest encoded certificate: epoch 8, account 32, height 8, entry hash 32, count 2, then
    /// the votes, each with a report's promise.
    public static let maximumCertificateSize =
        82 + maximumCommitteeSize * (CertificateVote.encodedSize + ChannelPromise.encodedSize)
}

// MARK: - Checked arithmetic

extension Amount {
    /// `self + other`, or `LedgerError.overflow`.
    func adding(_ other: Amount) throws(LedgerError) -> Amount {
        let (sum, overflow) = addingReportingOverflow(other)
        if overflow { throw .overflow }
        return sum
    }

    /// `self - other`, or `LedgerError.overflow` when `other` is larger.
    func subtracting(_ other: Amount) throws(LedgerError) -> Amount {
        let (difference, overflow) = subtractingReportingOverflow(other)
        if overflow { throw .overflow }
        return difference
    }

    /// `self * numerator / denominator` without intermediate overflow (floor). Precondition:
    /// `numerator <= denominator`, `denominator > 0`.
    func scaled(by numerator: UInt64, over denominator: UInt64) -> Amount {
        precondition(denominator > 0 && numerator <= denominator)
        let product = multipliedFullWidth(by: numerator)
        return denominator.dividingFullWidth(product).quotient
    }
}

/// Whether `signed` is strictly more than two thirds of `total` (`3·signed > 2·total`), computed
/// without overflow.
public func exceedsTwoThirds(_ signed: Amount, of total: Amount) -> Bool {
    let left = signed.multipliedFullWidth(by: 3)
    let right = total.multipliedFullWidth(by: 2)
    return left.high > right.high || (left.high == right.high && left.low > right.low)
}

// MARK: - Codec helpers

extension ByteReader {
    /// A u16-length-prefixed network id of at most `LedgerLimits.maximumNetworkBytes` valid UTF-8 bytes.
    mutating func readNetwork() throws(DecodeError) -> String {
        try readString(limit: LedgerLimits.maximumNetworkBytes, field: "network")
    }

    mutating func readInstant() throws(DecodeError) -> Instant { Instant(nanoseconds: try readUInt64()) }

    mutating func readSignature() throws(DecodeError) -> [UInt8] { try readBytes(Ed25519.signatureBytes) }
}

extension ByteWriter {
    mutating func write(_ instant: Instant) { write(instant.nanoseconds) }
}
