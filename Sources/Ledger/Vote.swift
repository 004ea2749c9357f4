// A validator's vote for one entry in one slot (DESIGN §6, "Certificates instead of blocks").
// Wire form (184 bytes): epoch u64 | validator 32 | account 32 | height u64 | entry hash 32 |
// report u64 | signature 64. The signature covers `"umbra/vote/v1" || 0x00 || network || every byte
// before the signature`. `report` is the validator's highest acked claim on the channel when the
// entry closes a channel, 0 otherwise.

import UmbraCore
import UmbraCrypto

/// The place one vote fills: an account's height in an epoch. An honest validator signs at most one
/// entry per slot.
public struct Slot: Hashable, Sendable, CustomStringConvertible {
    public var account: PublicKey
    public var height: UInt64
    public var epoch: UInt64

    public init(account: PublicKey, height: UInt64, epoch: UInt64) {
        self.account = account
        self.height = height
        self.epoch = epoch
    }

    public var description: String { "\(account)@\(height)/e\(epoch)" }
}

/// A signed vote.
public struct Vote: Hashable, Sendable {
    public static let encodedSize = 8 + 32 + 32 + 8 + 32 + 8 + Ed25519.signatureBytes

    public var epoch: UInt64
    public var validator: PublicKey
    public var account: PublicKey
    public var height: UInt64
    public var entryHash: EntryHash
    /// For a `channelClose` entry: the highest claim this validator acked on the channel. Else 0.
    public var report: Amount
    public var signature: [UInt8]

    public init(
        epoch: UInt64, validator: PublicKey, account: PublicKey, height: UInt64, entryHash: EntryHash, report: Amount,
        signature: [UInt8]
    ) {
        self.epoch = epoch
        self.validator = validator
        self.account = account
        self.height = height
        self.entryHash = entryHash
        self.report = report
        self.signature = signature
    }

    /// A vote signed by `identity`.
    public static func make(
        identity: Identity, network: String, slot: Slot, entryHash: EntryHash, report: Amount
    ) -> Vote {
        var vote = Vote(
            epoch: slot.epoch, validator: identity.publicKey, account: slot.account, height: slot.height,
            entryHash: entryHash, report: report, signature: [])
        vote.signature = identity.sign(vote.signedBytes(network: network))
        return vote
    }

    public var slot: Slot { Slot(account: account, height: height, epoch: epoch) }

    public func signedBytes(network: String) -> [UInt8] {
        LedgerDomain.signingInput(tag: LedgerDomain.vote, network: network, fields: unsignedFields())
    }

    /// Whether `validator` signed this vote for `network`.
    public func hasValidSignature(network: String) -> Bool {
        Ed25519.verify(signature: signature, message: signedBytes(network: network), publicKey: validator.bytes)
    }

    private func unsignedFields() -> [UInt8] {
        var writer = ByteWriter(capacity: Self.encodedSize)
        writer.write(epoch)
        writer.write(validator)
        writer.write(account)
        writer.write(height)
        writer.write(entryHash)
        writer.write(report)
        return writer.bytes
    }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: Self.encodedSize)
        writer.write(raw: unsignedFields())
        writer.write(raw: signature)
        return writer.bytes
    }

    /// Decodes exactly `bytes`. The signature is not checked.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(bytes)
        self = try Self.read(from: &reader)
        try reader.expectEnd()
    }

    static func read(from reader: inout ByteReader) throws(DecodeError) -> Vote {
        Vote(
            epoch: try reader.readUInt64(), validator: try reader.readPublicKey(), account: try reader.readPublicKey(),
            height: try reader.readUInt64(), entryHash: try reader.readKey256(), report: try reader.readUInt64(),
            signature: try reader.readSignature())
    }
}
