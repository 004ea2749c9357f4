// A consumer's cumulative payment promise for one channel (DESIGN §6, Channels): signed off-ledger,
// lodged by the provider in a `channelClaim` entry. Wire form: channel 32 | amount u64 | signature 64;
// the signature covers `"umbra/promise/v1" || 0x00 || network || channel || amount`.

import UmbraCore
import UmbraCrypto

/// "The consumer owes the provider `amount` in total on `channel`." Cumulative: a later promise
/// replaces an earlier one, so only the highest matters.
public struct ChannelPromise: Hashable, Sendable {
    public static let encodedSize = Key256.byteCount + 8 + Ed25519.signatureBytes

    public var channel: ChannelID
    public var amount: Amount
    /// 64 bytes, Ed25519 by the channel's consumer.
    public var signature: [UInt8]

    public init(channel: ChannelID, amount: Amount, signature: [UInt8]) {
        self.channel = channel
        self.amount = amount
        self.signature = signature
    }

    /// A promise signed by `consumer`.
    public static func make(channel: ChannelID, amount: Amount, consumer: Identity, network: String) -> ChannelPromise {
        let unsigned = ChannelPromise(channel: channel, amount: amount, signature: [])
        return ChannelPromise(
            channel: channel, amount: amount, signature: consumer.sign(unsigned.signedBytes(network: network)))
    }

    public func signedBytes(network: String) -> [UInt8] {
        var writer = ByteWriter(capacity: 40)
        writer.write(channel)
        writer.write(amount)
        return LedgerDomain.signingInput(tag: LedgerDomain.promise, network: network, fields: writer.bytes)
    }

    /// Whether `consumer` signed this promise for `network`.
    public func verify(consumer: PublicKey, network: String) -> Bool {
        Ed25519.verify(signature: signature, message: signedBytes(network: network), publicKey: consumer.bytes)
    }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: Self.encodedSize)
        writer.write(channel)
        writer.write(amount)
        writer.write(raw: signature)
        return writer.bytes
    }

    /// Decodes exactly `bytes`.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(bytes)
        self = try Self.read(from: &reader)
        try reader.expectEnd()
    }

    static func read(from reader: inout ByteReader) throws(DecodeError) -> ChannelPromise {
        ChannelPromise(
            channel: try reader.readKey256(), amount: try reader.readUInt64(), signature: try reader.readSignature())
    }
}
