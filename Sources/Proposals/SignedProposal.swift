// The signed form of a proposal or tombstone, its wire codec and its validation (docs/protocol.md
// §Proposals). Wire form: kind u8 | version u16 | provider | seq | issuedAt | expiresAt |
// service type | (offer fields) | signature; the signature covers domain tag, 0x00, network id and
// every byte before the signature. At most `maximumEncodedSize` bytes, so a proposal fits a gossip
// message and a sync page.
//
// The decoder is canonical (an accepted input re-encodes to itself) and enforces every field rule;
// `verify` re-checks the rules on a value, then time and signature.

import UmbraCore
import UmbraCrypto

/// A provider's signed offer or withdrawal of one service type.
public struct SignedProposal: Hashable, Sendable {
    /// The first byte of the wire form.
    public enum Kind: UInt8, Hashable, Sendable, CaseIterable {
        case offer = 1
        case withdrawal = 2
    }

    public enum Content: Hashable, Sendable {
        case offer(ServiceProposal)
        case withdrawal(ProposalWithdrawal)
    }

    /// The only protocol version this build reads and signs.
    public static let currentVersion: UInt16 = 1
    public static let domainTag = "umbra/proposal/v1"
    /// The largest accepted wire form, signature included.
    public static let maximumEncodedSize = 1000
    /// How often a provider re-signs its offer (with a higher seq).
    public static let refreshInterval: Duration = .seconds(60)
    /// `expiresAt - issuedAt` of a provider's offer.
    public static let defaultLifetime: Duration = .seconds(180)
    /// The longest accepted `expiresAt - issuedAt`.
    public static let maximumLifetime: Duration = .seconds(3600)
    /// How far in the future `issuedAt` may be (clock skew between nodes).
    public static let maximumClockSkew: Duration = .seconds(60)
    /// Bytes of the smallest possible encoding (a withdrawal of a one-letter service type).
    public static let minimumEncodedSize = 1 + 2 + PublicKey.byteCount + 24 + 3 + Ed25519.signatureBytes

    public var content: Content
    /// 64 bytes, Ed25519 by the provider over `signedBytes(networkID:)`.
    public var signature: [UInt8]

    /// A proposal as received; nothing is checked here (`verify` does).
    public init(content: Content, signature: [UInt8]) {
        self.content = content
        self.signature = signature
    }

    // MARK: Fields shared by both kinds

    public var kind: Kind {
        switch content {
        case .offer: .offer
        case .withdrawal: .withdrawal
        }
    }

    public var offer: ServiceProposal? {
        guard case .offer(let offer) = content else { return nil }
        return offer
    }

    public var withdrawal: ProposalWithdrawal? {
        guard case .withdrawal(let withdrawal) = content else { return nil }
        return withdrawal
    }

    public var protocolVersion: UInt16 { field(\.protocolVersion, \.protocolVersion) }
    public var provider: PublicKey { field(\.provider, \.provider) }
    public var seq: UInt64 { field(\.seq, \.seq) }
    public var issuedAt: Instant { field(\.issuedAt, \.issuedAt) }
    public var expiresAt: Instant { field(\.expiresAt, \.expiresAt) }
    public var serviceType: String { field(\.serviceType, \.serviceType) }
    public var id: ProposalID { ProposalID(provider: provider, serviceType: serviceType) }

    private func field<T>(_ offer: KeyPath<ServiceProposal, T>, _ withdrawal: KeyPath<ProposalWithdrawal, T>) -> T {
        switch content {
        case .offer(let value): value[keyPath: offer]
        case .withdrawal(let value): value[keyPath: withdrawal]
        }
    }

    // MARK: Signing

    /// `offer` signed by `identity`. Throws if the offer breaks a rule that `verify` would refuse
    /// regardless of time: version, field rules, lifetime, encoded size; or if `offer.provider` is not
    /// `identity`'s key.
    public static func make(
        offer: ServiceProposal, identity: Identity, networkID: String
    ) throws(ProposalError) -> SignedProposal {
        try make(.offer(offer), identity: identity, networkID: networkID)
    }

    /// `withdrawal` signed by `identity`, with the same checks as `make(offer:…)`.
    public static func make(
        withdrawal: ProposalWithdrawal, identity: Identity, networkID: String
    ) throws(ProposalError) -> SignedProposal {
        try make(.withdrawal(withdrawal), identity: identity, networkID: networkID)
    }

    private static func make(
        _ content: Content, identity: Identity, networkID: String
    ) throws(ProposalError) -> SignedProposal {
        var proposal = SignedProposal(content: content, signature: [UInt8](repeating: 0, count: Ed25519.signatureBytes))
        guard proposal.provider == identity.publicKey else {
            throw .invalidField(field: "provider", reason: "is not the signing identity's key")
        }
        let unsigned = try proposal.checkedUnsignedBytes()
        guard proposal.expiresAt.since(proposal.issuedAt) <= maximumLifetime else { throw .lifetimeTooLong }
        proposal.signature = identity.sign(signingInput(networkID: networkID, unsigned: unsigned))
        return proposal
    }

    /// The canonical bytes that are signed: domain tag (UTF-8), 0x00, network id (u16-length-prefixed
    /// UTF-8), then the wire form without the signature. Precondition: the value encodes (`encoded()`).
    public func signedBytes(networkID: String) -> [UInt8] {
        Self.signingInput(networkID: networkID, unsigned: unsignedBytes())
    }

    private static func signingInput(networkID: String, unsigned: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: domainTag.utf8.count + 3 + networkID.utf8.count + unsigned.count)
        writer.write(raw: domainTag.utf8)
        writer.write(UInt8(0))
        writer.write(string: networkID)
        writer.write(raw: unsigned)
        return writer.bytes
    }

    // MARK: Validation

    /// Throws unless this proposal may be accepted at `now` in network `networkID`. Checks, in order:
    /// version, limits (field rules, signature length, encoded size), expiry (`expiresAt > now`),
    /// not issued more than `maximumClockSkew` ahead of `now`, lifetime at most `maximumLifetime`,
    /// signature. Never traps (precondition: `networkID` is at most 65535 bytes).
    public func verify(networkID: String, now: Instant) throws(ProposalError) {
        let unsigned = try checkedUnsignedBytes()
        guard expiresAt > now else { throw .expired }
        guard issuedAt <= now + Self.maximumClockSkew else { throw .notYetValid }
        guard expiresAt.since(issuedAt) <= Self.maximumLifetime else { throw .lifetimeTooLong }
        let message = Self.signingInput(networkID: networkID, unsigned: unsigned)
        guard Ed25519.verify(signature: signature, message: message, publicKey: provider.bytes) else {
            throw .badSignature
        }
    }

    /// Version, field rules, signature length and size, in that order; then the unsigned wire bytes.
    private func checkedUnsignedBytes() throws(ProposalError) -> [UInt8] {
        guard protocolVersion == Self.currentVersion else { throw .unsupportedVersion(protocolVersion) }
        switch content {
        case .offer(let offer): try offer.validateFields()
        case .withdrawal(let withdrawal): try withdrawal.validateFields()
        }
        guard signature.count == Ed25519.signatureBytes else {
            throw .invalidField(field: "signature", reason: "must be \(Ed25519.signatureBytes) bytes")
        }
        let unsigned = unsignedBytes()
        let size = unsigned.count + Ed25519.signatureBytes
        guard size <= Self.maximumEncodedSize else { throw .oversized(size) }
        return unsigned
    }
}

// MARK: - Wire codec

extension SignedProposal {
    /// The wire form (see the layout at the top of this file). Precondition: strings at most 65535
    /// bytes and lists at most 255 entries (any value within the rules qualifies).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 256)
        writeUnsigned(to: &writer)
        writer.write(raw: signature)
        return writer.bytes
    }

    /// The length of `encoded()`.
    public var encodedSize: Int { unsignedBytes().count + signature.count }

    func unsignedBytes() -> [UInt8] {
        var writer = ByteWriter(capacity: 256)
        writeUnsigned(to: &writer)
        return writer.bytes
    }

    private func writeUnsigned(to writer: inout ByteWriter) {
        writer.write(kind.rawValue)
        writer.write(protocolVersion)
        writer.write(provider)
        writer.write(seq)
        writer.write(issuedAt.nanoseconds)
        writer.write(expiresAt.nanoseconds)
        writer.write(string: serviceType)
        guard case .offer(let offer) = content else { return }
        writer.write(raw: offer.location.country.utf8)
        writer.write(string: offer.location.region ?? "")
        writer.write(offer.location.ipType?.rawValue ?? 0)
        writer.write(offer.pricePerGiB)
        writer.write(offer.pricePerMinute)
        writer.write(offer.capacity)
        switch offer.access {
        case .open:
            writer.write(UInt8(0))
        case .allowList(let keys):
            writer.write(UInt8(1))
            writer.write(UInt8(keys.count))
            for key in keys { writer.write(key) }
        }
        writer.write(UInt8(offer.contacts.direct.count))
        for endpoint in offer.contacts.direct { writer.write(endpoint) }
        writer.write(UInt8(offer.contacts.relays.count))
        for relay in offer.contacts.relays {
            writer.write(relay.publicKey)
            writer.write(relay.endpoint)
        }
    }

    /// Decodes exactly `bytes`. Refuses, in order: more than `maximumEncodedSize` bytes (`oversized`),
    /// an unknown kind (`malformed`), a version other than `currentVersion` (`unsupportedVersion`),
    /// a structural error (`malformed`), a field rule (`invalidField`). The signature is not checked.
    public init(decoding bytes: [UInt8]) throws(ProposalError) {
        guard bytes.count <= Self.maximumEncodedSize else { throw .oversized(bytes.count) }
        var reader = ByteReader(bytes)
        let kindByte = try Self.structural { () throws(DecodeError) in try reader.readUInt8() }
        guard let kind = Kind(rawValue: kindByte) else {
            throw .malformed(.unknownTag(field: "proposal kind", value: UInt64(kindByte)))
        }
        let version = try Self.structural { () throws(DecodeError) in try reader.readUInt16() }
        guard version == Self.currentVersion else { throw .unsupportedVersion(version) }
        let content = try Self.structural { () throws(DecodeError) in
            try Self.readContent(kind: kind, version: version, from: &reader)
        }
        let signature = try Self.structural { () throws(DecodeError) in
            let signature = try reader.readBytes(Ed25519.signatureBytes)
            try reader.expectEnd()
            return signature
        }
        switch content {
        case .offer(let offer): try offer.validateFields()
        case .withdrawal(let withdrawal): try withdrawal.validateFields()
        }
        self.init(content: content, signature: signature)
    }

    private static func structural<T>(_ body: () throws(DecodeError) -> T) throws(ProposalError) -> T {
        do { return try body() } catch { throw .malformed(error) }
    }

    private static func readContent(
        kind: Kind, version: UInt16, from reader: inout ByteReader
    ) throws(DecodeError) -> Content {
        let provider = try reader.readPublicKey()
        let seq = try reader.readUInt64()
        let issuedAt = Instant(nanoseconds: try reader.readUInt64())
        let expiresAt = Instant(nanoseconds: try reader.readUInt64())
        // Lengths are bounded by the input (at most maximumEncodedSize); the field rules come after.
        let serviceType = String(decoding: try reader.readLengthPrefixed(limit: maximumEncodedSize), as: UTF8.self)
        if kind == .withdrawal {
            return .withdrawal(
                ProposalWithdrawal(
                    provider: provider, seq: seq, issuedAt: issuedAt, expiresAt: expiresAt, serviceType: serviceType,
                    protocolVersion: version))
        }

        let country = String(decoding: try reader.readBytes(2), as: UTF8.self)
        let regionBytes = try reader.readLengthPrefixed(limit: maximumEncodedSize)
        let region = regionBytes.isEmpty ? nil : String(decoding: regionBytes, as: UTF8.self)
        let ipTypeByte = try reader.readUInt8()
        var ipType: ServiceProposal.IPType?
        if ipTypeByte != 0 {
            guard let known = ServiceProposal.IPType(rawValue: ipTypeByte) else {
                throw .unknownTag(field: "ip type", value: UInt64(ipTypeByte))
            }
            ipType = known
        }
        let pricePerGiB = try reader.readUInt64()
        let pricePerMinute = try reader.readUInt64()
        let capacity = try reader.readUInt32()

        let access: ServiceProposal.AccessPolicy
        switch try reader.readUInt8() {
        case 0:
            access = .open
        case 1:
            let count = Int(try reader.readUInt8())
            var keys: [PublicKey] = []
            for _ in 0..<count { keys.append(try reader.readPublicKey()) }
            access = .allowList(keys)
        case let other:
            throw .unknownTag(field: "access policy", value: UInt64(other))
        }

        var direct: [Endpoint] = []
        for _ in 0..<Int(try reader.readUInt8()) { direct.append(try reader.readEndpoint()) }
        var relays: [ServiceProposal.Relay] = []
        for _ in 0..<Int(try reader.readUInt8()) {
            let key = try reader.readPublicKey()
            relays.append(ServiceProposal.Relay(publicKey: key, endpoint: try reader.readEndpoint()))
        }

        return .offer(
            ServiceProposal(
                provider: provider, seq: seq, issuedAt: issuedAt, expiresAt: expiresAt, serviceType: serviceType,
                location: .init(country: country, region: region, ipType: ipType), pricePerGiB: pricePerGiB,
                pricePerMinute: pricePerMinute, capacity: capacity, access: access,
                contacts: .init(direct: direct, relays: relays), protocolVersion: version))
    }
}
