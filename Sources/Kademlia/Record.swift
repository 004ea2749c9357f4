// Signed mutable records (BEP 44-shaped, DESIGN §4): a publisher signs kind, key, seq, expiry and
// value over canonical bytes that start with a domain tag and the network id (DESIGN §1.4), so a
// record cannot be replayed across kinds or networks. Two kinds for now: a node's peer record (where
// to reach it) and provider index entries (service type + country → provider). This file holds the
// values and their codecs; RecordStore.swift decides what a storing node keeps.
//
// Encoders write what they are given; decoders enforce every limit. A publisher that builds a value
// outside the limits gets a record that every store refuses (`malformed_value`), never a trap.

import UmbraCore
import UmbraCrypto

// MARK: - SignedRecord

/// A record signed by its publisher. One record per (key, publisher) lives in a store; a higher `seq`
/// replaces a lower one.
public struct SignedRecord: Hashable, Sendable {
    /// What the value holds; also fixes how the key must be derived (see `RecordKey`).
    public enum Kind: UInt8, Sendable, CaseIterable {
        /// A node's own peer record, at `RecordKey.peer(publisher)`; the value is a `PeerRecordValue`.
        case peer = 1
        /// A provider index entry, at `RecordKey.providerIndex(...)`; the value is a `ProviderIndexValue`.
        case providerIndex = 2
        /// A named text note (`umbra dht put`), at `RecordKey.text(name)`; the value is a
        /// `TextRecordValue`. Anyone may publish under any name; each publisher has its own record.
        case text = 3
    }

    public static let maximumValueBytes = 1000
    public static let domainTag = "umbra/record/v1"
    /// The encoded size of a record with an empty value: kind 1, key 32, publisher 32, seq 8,
    /// expiry 8, value length 2, signature 64.
    public static let fixedEncodedSize = 1 + Key256.byteCount + PublicKey.byteCount + 8 + 8 + 2 + Ed25519.signatureBytes

    public var kind: Kind
    public var key: Key256
    public var publisher: PublicKey
    public var seq: UInt64
    /// Absolute expiry, nanoseconds on the same clock as `Instant` (Unix time in the runtime).
    public var expiresAt: Instant
    public var value: [UInt8]
    /// 64 bytes, Ed25519 by `publisher` over `signedBytes(networkID:)`.
    public var signature: [UInt8]

    /// A record as received; nothing is checked here (the store validates).
    public init(
        kind: Kind, key: Key256, publisher: PublicKey, seq: UInt64, expiresAt: Instant, value: [UInt8],
        signature: [UInt8]
    ) {
        self.kind = kind
        self.key = key
        self.publisher = publisher
        self.seq = seq
        self.expiresAt = expiresAt
        self.value = value
        self.signature = signature
    }

    /// The canonical bytes that are signed: domain tag (UTF-8), 0x00, network id (u16-length-prefixed
    /// UTF-8), kind u8, key (32), publisher (32), seq u64, expiresAt u64, value (u16-length-prefixed).
    /// Precondition: `value.count <= UInt16.max` (the store refuses larger values before signing).
    public func signedBytes(networkID: String) -> [UInt8] {
        var writer = ByteWriter(capacity: 128 + networkID.utf8.count + value.count)
        writer.write(raw: Self.domainTag.utf8)
        writer.write(UInt8(0))
        writer.write(string: networkID)
        writer.write(kind.rawValue)
        writer.write(key)
        writer.write(publisher)
        writer.write(seq)
        writer.write(expiresAt.nanoseconds)
        writer.write(lengthPrefixed: value)
        return writer.bytes
    }

    /// A record signed by `identity`. The value is not checked: a value over `maximumValueBytes` or
    /// one that does not decode for `kind` makes a record that stores refuse.
    public static func make(
        kind: Kind, key: Key256, value: [UInt8], seq: UInt64, expiresAt: Instant, identity: Identity,
        networkID: String
    ) -> SignedRecord {
        var record = SignedRecord(
            kind: kind, key: key, publisher: identity.publicKey, seq: seq, expiresAt: expiresAt, value: value,
            signature: [])
        record.signature = identity.sign(record.signedBytes(networkID: networkID))
        return record
    }

    /// The peer record of `identity`: at `RecordKey.peer(identity.publicKey)`, holding `value`.
    public static func peer(
        _ value: PeerRecordValue, seq: UInt64, expiresAt: Instant, identity: Identity, networkID: String
    ) -> SignedRecord {
        make(
            kind: .peer, key: RecordKey.peer(identity.publicKey), value: value.encoded(), seq: seq,
            expiresAt: expiresAt, identity: identity, networkID: networkID)
    }

    /// A provider index entry naming `identity` as a provider of `serviceType` in `country`.
    public static func providerIndex(
        serviceType: String, country: String, seq: UInt64, expiresAt: Instant, identity: Identity, networkID: String
    ) -> SignedRecord {
        let value = ProviderIndexValue(serviceType: serviceType, country: country, provider: identity.publicKey)
        return make(
            kind: .providerIndex, key: RecordKey.providerIndex(serviceType: serviceType, country: country),
            value: value.encoded(), seq: seq, expiresAt: expiresAt, identity: identity, networkID: networkID)
    }

    /// Whether `signature` is `publisher`'s over `signedBytes(networkID:)`. False (never a trap) for
    /// a value too long to encode or a signature of the wrong length.
    public func verifySignature(networkID: String) -> Bool {
        guard value.count <= Int(UInt16.max), signature.count == Ed25519.signatureBytes else { return false }
        return Ed25519.verify(
            signature: signature, message: signedBytes(networkID: networkID), publicKey: publisher.bytes)
    }

    /// Wire form: kind u8, key (32), publisher (32), seq u64, expiresAt u64, value (u16 length, at most
    /// `maximumValueBytes` when decoded), signature (64). Precondition: `value.count <= UInt16.max`.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: encodedSize)
        writer.write(kind.rawValue)
        writer.write(key)
        writer.write(publisher)
        writer.write(seq)
        writer.write(expiresAt.nanoseconds)
        writer.write(lengthPrefixed: value)
        writer.write(raw: signature)
        return writer.bytes
    }

    /// Reads one record written by `encoded()`, leaving the reader after it. Bounded: a value length
    /// above `maximumValueBytes` is `.lengthTooLarge`, an unknown kind `.unknownTag`. The signature
    /// is not checked here.
    public static func decode(from reader: inout ByteReader) throws(DecodeError) -> SignedRecord {
        let kindByte = try reader.readUInt8()
        guard let kind = Kind(rawValue: kindByte) else {
            throw .unknownTag(field: "record kind", value: UInt64(kindByte))
        }
        let key = try reader.readKey256()
        let publisher = try reader.readPublicKey()
        let seq = try reader.readUInt64()
        let expiresAt = Instant(nanoseconds: try reader.readUInt64())
        let value = try reader.readLengthPrefixed(limit: maximumValueBytes)
        let signature = try reader.readBytes(Ed25519.signatureBytes)
        return SignedRecord(
            kind: kind, key: key, publisher: publisher, seq: seq, expiresAt: expiresAt, value: value,
            signature: signature)
    }

    /// The length of `encoded()` (what the store charges against the publisher's byte quota).
    public var encodedSize: Int { Self.fixedEncodedSize - Ed25519.signatureBytes + signature.count + value.count }
}

// MARK: - Keys

/// Where records live in the DHT key space. A peer record's key is derived from its publisher, so
/// nobody else can squat it; provider index keys are shared by every provider of a service in a country.
public enum RecordKey {
    static let peerTag = Array("umbra/peer-record".utf8)
    static let providerIndexTag = Array("umbra/provider-index".utf8)
    static let textTag = Array("umbra/text".utf8)

    /// BLAKE2b-256("umbra/text" || 0x00 || name UTF-8). Many publishers may share one name.
    public static func text(_ name: String) -> Key256 {
        key(of: BLAKE2b.hash([textTag, [0], Array(name.utf8)], outputLength: Key256.byteCount))
    }

    /// BLAKE2b-256("umbra/peer-record" || publisher key). The peer record of node P lives at peer(P).
    public static func peer(_ publisher: PublicKey) -> Key256 {
        key(of: BLAKE2b.hash([peerTag, publisher.bytes], outputLength: Key256.byteCount))
    }

    /// BLAKE2b-256("umbra/provider-index" || 0x00 || serviceType || 0x00 || country with ASCII letters
    /// uppercased). Many publishers share one key.
    public static func providerIndex(serviceType: String, country: String) -> Key256 {
        let upper = country.utf8.map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }
        let digest = BLAKE2b.hash(
            [providerIndexTag, [0], Array(serviceType.utf8), [0], upper], outputLength: Key256.byteCount)
        return key(of: digest)
    }

    private static func key(of digest: [UInt8]) -> Key256 {
        guard let key = Key256(bytes: digest) else { preconditionFailure("BLAKE2b returned \(digest.count) bytes") }
        return key
    }
}

// MARK: - Peer record value

/// The value of a peer record: the node's direct endpoints and the relays that hold reservations
/// for it (each with the relay's own endpoint, so a dialer needs no second lookup). A node behind NAT
/// publishes no endpoint and only relays; a record lists at least one of the two.
///
/// Encoding: version u8 (1), endpoint count u8 (0...6), endpoints, relay count u8 (0...4), relays
/// (public key 32, endpoint). Discard-only addresses (100::/64, RFC 6666) are refused as endpoints.
public struct PeerRecordValue: Equatable, Sendable {
    public static let version: UInt8 = 1
    public static let maximumEndpoints = 6
    public static let maximumRelays = 4

    public var endpoints: [Endpoint]
    public var relays: [NodeContact]

    public init(endpoints: [Endpoint], relays: [NodeContact] = []) {
        self.endpoints = endpoints
        self.relays = relays
    }

    /// The canonical bytes. Counts are written as given (precondition: at most 255 each); `decode`
    /// refuses counts outside 0...6 endpoints and 0...4 relays, and a record with neither.
    public func encoded() -> [UInt8] {
        precondition(endpoints.count <= Int(UInt8.max) && relays.count <= Int(UInt8.max), "count exceeds u8")
        var writer = ByteWriter(capacity: 3 + endpoints.count * 19 + relays.count * (PublicKey.byteCount + 19))
        writer.write(Self.version)
        writer.write(UInt8(endpoints.count))
        for endpoint in endpoints { writer.write(endpoint) }
        writer.write(UInt8(relays.count))
        for relay in relays {
            writer.write(relay.publicKey)
            writer.write(relay.endpoint)
        }
        return writer.bytes
    }

    /// Decodes exactly `bytes` (trailing bytes are refused).
    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> PeerRecordValue {
        var reader = ByteReader(bytes)
        let version = try reader.readUInt8()
        guard version == Self.version else { throw .unknownTag(field: "peer record version", value: UInt64(version)) }

        let endpointCountOffset = reader.offset
        let endpointCount = Int(try reader.readUInt8())
        guard endpointCount <= maximumEndpoints else {
            throw .lengthTooLarge(offset: endpointCountOffset, length: endpointCount, limit: maximumEndpoints)
        }
        var endpoints: [Endpoint] = []
        endpoints.reserveCapacity(endpointCount)
        for _ in 0..<endpointCount { endpoints.append(try readRealEndpoint(&reader)) }

        let relayCountOffset = reader.offset
        let relayCount = Int(try reader.readUInt8())
        guard relayCount <= maximumRelays else {
            throw .lengthTooLarge(offset: relayCountOffset, length: relayCount, limit: maximumRelays)
        }
        guard endpointCount + relayCount > 0 else {
            throw .invalid(field: "peer record", reason: "neither endpoints nor relays listed")
        }
        var relays: [NodeContact] = []
        relays.reserveCapacity(relayCount)
        for _ in 0..<relayCount {
            let key = try reader.readPublicKey()
            relays.append(NodeContact(publicKey: key, endpoint: try readRealEndpoint(&reader)))
        }

        try reader.expectEnd()
        return PeerRecordValue(endpoints: endpoints, relays: relays)
    }

    private static func readRealEndpoint(_ reader: inout ByteReader) throws(DecodeError) -> Endpoint {
        let endpoint = try reader.readEndpoint()
        guard !endpoint.address.isDiscardOnly else {
            throw .invalid(field: "peer record endpoint", reason: "a discard-only address (100::/64)")
        }
        return endpoint
    }
}

// MARK: - Provider index value

/// The value of a provider index entry: the provider's address (its public key) and the service type
/// and country it is indexed under. The store requires `provider` to be the record's publisher and the
/// record's key to be `RecordKey.providerIndex(serviceType:country:)` of these fields.
///
/// Encoding: version u8 (1), service type (u16-length UTF-8, 1...32 bytes of [a-z0-9-]), country
/// (2 bytes, A-Z), provider key (32).
public struct ProviderIndexValue: Equatable, Sendable {
    public static let version: UInt8 = 1
    public static let maximumServiceTypeBytes = 32

    /// 1...32 bytes of [a-z0-9-].
    public var serviceType: String
    /// ISO 3166-1 alpha-2, uppercase.
    public var country: String
    public var provider: PublicKey

    public init(serviceType: String, country: String, provider: PublicKey) {
        self.serviceType = serviceType
        self.country = country
        self.provider = provider
    }

    /// Whether `text` is a service type an index entry may carry: 1...32 bytes of [a-z0-9-].
    public static func isValidServiceType(_ text: String) -> Bool { isValidServiceType(Array(text.utf8)) }

    /// Whether `text` is two uppercase ASCII letters (the shape of ISO 3166-1 alpha-2; the code list
    /// itself is not checked).
    public static func isValidCountry(_ text: String) -> Bool { isValidCountry(Array(text.utf8)) }

    /// The canonical bytes, written as given (precondition: `serviceType` and `country` at most
    /// 65535 bytes each); `decode` refuses fields that break the rules above.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 3 + serviceType.utf8.count + country.utf8.count + PublicKey.byteCount)
        writer.write(Self.version)
        writer.write(string: serviceType)
        writer.write(raw: country.utf8)
        writer.write(provider)
        return writer.bytes
    }

    /// Decodes exactly `bytes` (trailing bytes are refused).
    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> ProviderIndexValue {
        var reader = ByteReader(bytes)
        let version = try reader.readUInt8()
        guard version == Self.version else {
            throw .unknownTag(field: "provider index version", value: UInt64(version))
        }
        let serviceType = try reader.readLengthPrefixed(limit: maximumServiceTypeBytes)
        guard isValidServiceType(serviceType) else {
            throw .invalid(field: "service type", reason: "must be 1...\(maximumServiceTypeBytes) bytes of a-z, 0-9, -")
        }
        let country = try reader.readBytes(2)
        guard isValidCountry(country) else {
            throw .invalid(field: "country", reason: "must be two uppercase letters A-Z")
        }
        let provider = try reader.readPublicKey()
        try reader.expectEnd()
        return ProviderIndexValue(
            serviceType: String(decoding: serviceType, as: UTF8.self),
            country: String(decoding: country, as: UTF8.self),
            provider: provider)
    }

    private static func isValidServiceType(_ utf8: [UInt8]) -> Bool {
        guard !utf8.isEmpty, utf8.count <= maximumServiceTypeBytes else { return false }
        return utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
    }

    private static func isValidCountry(_ utf8: [UInt8]) -> Bool {
        utf8.count == 2 && utf8.allSatisfy { $0 >= 0x41 && $0 <= 0x5A }
    }
}

// MARK: - Text record value

/// The value of a text record: its name (which fixes its key) and UTF-8 text.
/// Layout: version u8 = 1, name (u16-length-prefixed UTF-8), text (u16-length-prefixed UTF-8).
public struct TextRecordValue: Equatable, Sendable {
    public static let maximumName = 64
    /// A text record then stays well inside one DHT datagram (value ≤ 1 + 2 + 64 + 2 + 800).
    public static let maximumText = 800

    public enum ValueError: Error, Equatable, Sendable { case emptyName, nameTooLong, textTooLong }

    public let name: String
    public let text: String

    public init(name: String, text: String) throws(ValueError) {
        guard !name.isEmpty else { throw .emptyName }
        guard name.utf8.count <= Self.maximumName else { throw .nameTooLong }
        guard text.utf8.count <= Self.maximumText else { throw .textTooLong }
        self.name = name
        self.text = text
    }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 5 + name.utf8.count + text.utf8.count)
        writer.write(UInt8(1))
        writer.write(string: name)
        writer.write(string: text)
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> TextRecordValue {
        var reader = ByteReader(bytes)
        let version = try reader.readUInt8()
        guard version == 1 else { throw .unknownTag(field: "text record version", value: UInt64(version)) }
        let name = try reader.readString(limit: maximumName, field: "text record name")
        let text = try reader.readString(limit: maximumText, field: "text record text")
        try reader.expectEnd()
        guard !name.isEmpty else { throw .invalid(field: "text record name", reason: "empty") }
        return try! TextRecordValue(name: name, text: text)  // lengths checked above
    }
}
