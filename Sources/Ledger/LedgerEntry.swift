// A ledger entry (DESIGN §6): one link of an account's append-only chain, signed by the account.
// Wire form (docs/protocol.md §15.2):
//   network (u16 + UTF-8) | epoch u64 | account 32 | height u64 | prev 32 | kind u8 | body | signature 64
// The signature covers `"umbra/entry/v1" || 0x00 || network || every byte before the signature`;
// the entry's hash is BLAKE2b-256 of those signed bytes. The decoder is bounded and canonical: an
// accepted input re-encodes to itself.

import UmbraCore
import UmbraCrypto

/// What an entry does. The raw value is the wire byte.
public enum EntryKind: UInt8, Hashable, Sendable, CaseIterable {
    case genesisAllocation = 1
    case transfer = 2
    case bond = 3
    case unbond = 4
    case withdraw = 5
    case channelOpen = 6
    case channelClaim = 7
    case channelClose = 8
    case evidence = 9
    case epochChange = 10
}

/// One committee seat: an identity and the stake its votes weigh.
public struct CommitteeMember: Hashable, Sendable {
    public var identity: PublicKey
    public var stake: Amount

    public init(identity: PublicKey, stake: Amount) {
        self.identity = identity
        self.stake = stake
    }
}

/// The kind-specific part of an entry. Times (`at`) are the account's claim of when it signed;
/// a validator votes only when `at` is within `Validator.maximumClockSkew` of its own clock, so a
/// certified `at` is vouched for by honest stake, and replicas apply it deterministically.
public enum EntryBody: Hashable, Sendable {
    /// Minted at genesis (only in `GenesisParameters`, refused as an appended entry).
    case genesisAllocation(recipient: PublicKey, amount: Amount)
    case transfer(recipient: PublicKey, amount: Amount)
    case bond(role: Role, amount: Amount)
    /// Starts unbonding; the amount becomes withdrawable at `at + unbondingDelay`.
    case unbond(role: Role, amount: Amount, at: Instant)
    /// Moves every unbonding released by `at` back to the balance.
    case withdraw(at: Instant)
    /// Escrows `deposit` for `provider` until `expiry`. The channel id is this entry's hash.
    case channelOpen(provider: PublicKey, deposit: Amount, expiry: Instant)
    /// The provider lodges the consumer's cumulative promise.
    case channelClaim(ChannelPromise)
    /// Settles the channel: the consumer after expiry, or the provider at any time (a release).
    case channelClose(channel: ChannelID, at: Instant)
    /// Proof of an offense; the offender's stake is burned, the reporter (the account) rewarded.
    case evidence(Evidence, at: Instant)
    /// The committee of `newEpoch` (which is the entry's epoch + 1), certified by the outgoing one.
    case epochChange(newEpoch: UInt64, committee: [CommitteeMember], at: Instant)

    public var kind: EntryKind {
        switch self {
        case .genesisAllocation: .genesisAllocation
        case .transfer: .transfer
        case .bond: .bond
        case .unbond: .unbond
        case .withdraw: .withdraw
        case .channelOpen: .channelOpen
        case .channelClaim: .channelClaim
        case .channelClose: .channelClose
        case .evidence: .evidence
        case .epochChange: .epochChange
        }
    }

    /// The time the body carries, if its kind has one.
    public var at: Instant? {
        switch self {
        case .unbond(_, _, let at), .withdraw(let at), .channelClose(_, let at), .evidence(_, let at),
            .epochChange(_, _, let at):
            at
        default: nil
        }
    }
}

/// A signed entry of an account's chain.
public struct LedgerEntry: Hashable, Sendable {
    public var network: String
    /// The epoch whose committee is asked to certify it.
    public var epoch: UInt64
    public var account: PublicKey
    /// 0 for an account's first entry.
    public var height: UInt64
    /// The hash of the account's entry at `height - 1`; all zero at height 0.
    public var prev: EntryHash
    public var body: EntryBody
    /// 64 bytes, Ed25519 by `account` over `signedBytes`.
    public var signature: [UInt8]

    public init(
        network: String, epoch: UInt64, account: PublicKey, height: UInt64, prev: EntryHash, body: EntryBody,
        signature: [UInt8]
    ) {
        self.network = network
        self.epoch = epoch
        self.account = account
        self.height = height
        self.prev = prev
        self.body = body
        self.signature = signature
    }

    /// An entry signed by `identity` (its account). Precondition: `network` is at most
    /// `LedgerLimits.maximumNetworkBytes` bytes and the body encodes within the limits.
    public static func make(
        network: String, epoch: UInt64, identity: Identity, height: UInt64, prev: EntryHash, body: EntryBody
    ) -> LedgerEntry {
        var entry = LedgerEntry(
            network: network, epoch: epoch, account: identity.publicKey, height: height, prev: prev, body: body,
            signature: [UInt8](repeating: 0, count: Ed25519.signatureBytes))
        entry.signature = identity.sign(entry.signedBytes)
        return entry
    }

    public var kind: EntryKind { body.kind }

    /// The bytes the account signs: domain tag, 0x00, network, then the wire form without signature.
    public var signedBytes: [UInt8] {
        LedgerDomain.signingInput(tag: LedgerDomain.entry, network: network, fields: unsignedFields())
    }

    /// BLAKE2b-256 of `signedBytes`: what votes and certificates name.
    public var hash: EntryHash { LedgerDomain.hash(signedBytes) }

    /// Whether the signature is the account's over `signedBytes`.
    public var hasValidSignature: Bool {
        Ed25519.verify(signature: signature, message: signedBytes, publicKey: account.bytes)
    }
}

// MARK: - Wire codec

extension LedgerEntry {
    /// The wire form. Precondition: within the limits (`LedgerLimits`).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 256)
        writer.write(string: network)
        writer.write(raw: unsignedFields())
        writer.write(raw: signature)
        return writer.bytes
    }

    /// Every field after the network and before the signature.
    private func unsignedFields() -> [UInt8] {
        var writer = ByteWriter(capacity: 192)
        writer.write(epoch)
        writer.write(account)
        writer.write(height)
        writer.write(prev)
        writer.write(kind.rawValue)
        body.write(to: &writer)
        return writer.bytes
    }

    /// Decodes exactly `bytes` (at most `LedgerLimits.maximumEntrySize`). The signature is not checked.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard bytes.count <= LedgerLimits.maximumEntrySize else {
            throw .lengthTooLarge(offset: 0, length: bytes.count, limit: LedgerLimits.maximumEntrySize)
        }
        var reader = ByteReader(bytes)
        self = try Self.read(from: &reader, nested: false)
        try reader.expectEnd()
    }

    /// Reads one entry. A `nested` entry (inside evidence) may not itself be evidence, which bounds
    /// the recursion at one level.
    static func read(from reader: inout ByteReader, nested: Bool) throws(DecodeError) -> LedgerEntry {
        let network = try reader.readNetwork()
        let epoch = try reader.readUInt64()
        let account = try reader.readPublicKey()
        let height = try reader.readUInt64()
        let prev = try reader.readKey256()
        let kindByte = try reader.readUInt8()
        guard let kind = EntryKind(rawValue: kindByte) else {
            throw .unknownTag(field: "entry kind", value: UInt64(kindByte))
        }
        if nested && kind == .evidence { throw .invalid(field: "evidence", reason: "an entry inside evidence") }
        let body = try EntryBody.read(kind: kind, from: &reader)
        let signature = try reader.readSignature()
        return LedgerEntry(
            network: network, epoch: epoch, account: account, height: height, prev: prev, body: body,
            signature: signature)
    }
}

extension EntryBody {
    func write(to writer: inout ByteWriter) {
        switch self {
        case .genesisAllocation(let recipient, let amount), .transfer(let recipient, let amount):
            writer.write(recipient)
            writer.write(amount)
        case .bond(let role, let amount):
            writer.write(role.rawValue)
            writer.write(amount)
        case .unbond(let role, let amount, let at):
            writer.write(role.rawValue)
            writer.write(amount)
            writer.write(at)
        case .withdraw(let at):
            writer.write(at)
        case .channelOpen(let provider, let deposit, let expiry):
            writer.write(provider)
            writer.write(deposit)
            writer.write(expiry)
        case .channelClaim(let promise):
            writer.write(raw: promise.encoded())
        case .channelClose(let channel, let at):
            writer.write(channel)
            writer.write(at)
        case .evidence(let evidence, let at):
            writer.write(at)
            evidence.write(to: &writer)
        case .epochChange(let newEpoch, let committee, let at):
            writer.write(newEpoch)
            writer.write(at)
            writer.write(UInt16(committee.count))
            for member in committee {
                writer.write(member.identity)
                writer.write(member.stake)
            }
        }
    }

    static func read(kind: EntryKind, from reader: inout ByteReader) throws(DecodeError) -> EntryBody {
        switch kind {
        case .genesisAllocation:
            return .genesisAllocation(recipient: try reader.readPublicKey(), amount: try reader.readUInt64())
        case .transfer:
            return .transfer(recipient: try reader.readPublicKey(), amount: try reader.readUInt64())
        case .bond:
            return .bond(role: try readRole(&reader), amount: try reader.readUInt64())
        case .unbond:
            return .unbond(role: try readRole(&reader), amount: try reader.readUInt64(), at: try reader.readInstant())
        case .withdraw:
            return .withdraw(at: try reader.readInstant())
        case .channelOpen:
            return .channelOpen(
                provider: try reader.readPublicKey(), deposit: try reader.readUInt64(), expiry: try reader.readInstant()
            )
        case .channelClaim:
            return .channelClaim(try ChannelPromise.read(from: &reader))
        case .channelClose:
            return .channelClose(channel: try reader.readKey256(), at: try reader.readInstant())
        case .evidence:
            let at = try reader.readInstant()
            return .evidence(try Evidence.read(from: &reader), at: at)
        case .epochChange:
            let newEpoch = try reader.readUInt64()
            let at = try reader.readInstant()
            let start = reader.offset
            let count = Int(try reader.readUInt16())
            guard count <= LedgerLimits.maximumCommitteeSize else {
                throw .lengthTooLarge(offset: start, length: count, limit: LedgerLimits.maximumCommitteeSize)
            }
            var committee: [CommitteeMember] = []
            for _ in 0..<count {
                committee.append(CommitteeMember(identity: try reader.readPublicKey(), stake: try reader.readUInt64()))
            }
            return .epochChange(newEpoch: newEpoch, committee: committee, at: at)
        }
    }

    private static func readRole(_ reader: inout ByteReader) throws(DecodeError) -> Role {
        let byte = try reader.readUInt8()
        guard let role = Role(rawValue: byte) else { throw .unknownTag(field: "role", value: UInt64(byte)) }
        return role
    }
}
