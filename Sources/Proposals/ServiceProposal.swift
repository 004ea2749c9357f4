// Service proposals (DESIGN §4): what a provider offers, signed by the provider over canonical bytes
// that start with a domain tag and the network id (DESIGN §1.4), so a proposal cannot be replayed
// across kinds or networks. A signed tombstone (a withdrawal) with a seq at least the offer's takes it
// back. This file holds the values and their limits; SignedProposal.swift the signed form, its codec
// and `verify`.

import UmbraCore
import UmbraCrypto

// MARK: - Identity of a proposal

/// What a proposal is about: one provider's offer of one service type. A store keeps one entry per
/// id (the highest seq); the join sync orders entries by `syncKey`.
public struct ProposalID: Hashable, Sendable, CustomStringConvertible {
    public var provider: PublicKey
    public var serviceType: String

    public init(provider: PublicKey, serviceType: String) {
        self.provider = provider
        self.serviceType = serviceType
    }

    static let syncKeyTag = Array("umbra/proposal-id".utf8)

    /// BLAKE2b-256("umbra/proposal-id" || 0x00 || provider (32) || service type UTF-8): the entry's
    /// place in the sync key space. Uniform, and one key per entry, so every page can make progress
    /// (a provider key alone would put all of one provider's proposals at one point).
    public var syncKey: Key256 {
        let digest = BLAKE2b.hash([Self.syncKeyTag, [0], provider.bytes, Array(serviceType.utf8)], outputLength: 32)
        guard let key = Key256(bytes: digest) else { preconditionFailure("BLAKE2b returned \(digest.count) bytes") }
        return key
    }

    public var description: String { "\(provider)/\(serviceType)" }
}

// MARK: - Offer

/// One provider's offer of a service, as signed. Limits are checked by `SignedProposal.make` and
/// `verify`, not here: a value outside them can be built (and encoded) but not signed or accepted.
public struct ServiceProposal: Hashable, Sendable {
    /// Service type: 1...32 bytes of [a-z0-9-] (the DHT provider index uses the same rule).
    public static let maximumServiceTypeBytes = 32
    /// Region: 1...32 bytes of printable ASCII, or nil.
    public static let maximumRegionBytes = 32
    public static let maximumAllowListKeys = 16
    public static let maximumDirectEndpoints = 4
    public static let maximumRelays = 4

    /// What kind of address the provider's traffic leaves from.
    public enum IPType: UInt8, Hashable, Sendable, CaseIterable, Codable {
        case residential = 1
        case hosting = 2
        case mobile = 3
    }

    /// Where the provider's traffic leaves the overlay.
    public struct Location: Hashable, Sendable {
        /// ISO 3166-1 alpha-2, uppercase (only the shape is checked, not the code list).
        public var country: String
        /// Free text such as a state or city: 1...32 bytes of printable ASCII, or nil.
        public var region: String?
        public var ipType: IPType?

        public init(country: String, region: String? = nil, ipType: IPType? = nil) {
            self.country = country
            self.region = region
            self.ipType = ipType
        }
    }

    /// Who may open a session.
    public enum AccessPolicy: Hashable, Sendable {
        case open
        /// Only these consumers (1...16 keys).
        case allowList([PublicKey])

        /// Whether `consumer` may open a session under this policy.
        public func admits(_ consumer: PublicKey) -> Bool {
            switch self {
            case .open: true
            case .allowList(let keys): keys.contains(consumer)
            }
        }
    }

    /// A relay that holds a reservation for the provider, and where to reach the relay.
    public struct Relay: Hashable, Sendable {
        public var publicKey: PublicKey
        public var endpoint: Endpoint

        public init(publicKey: PublicKey, endpoint: Endpoint) {
            self.publicKey = publicKey
            self.endpoint = endpoint
        }
    }

    /// How to reach the provider: its own endpoints (0...4) and relays (0...4). Both may be empty: the
    /// provider's DHT peer record says where it is.
    public struct Contacts: Hashable, Sendable {
        public var direct: [Endpoint]
        public var relays: [Relay]

        public init(direct: [Endpoint] = [], relays: [Relay] = []) {
            self.direct = direct
            self.relays = relays
        }
    }

    public var protocolVersion: UInt16
    public var provider: PublicKey
    /// Higher replaces lower for the same (provider, service type). Publishers use a counter that
    /// survives restarts (issuedAt in nanoseconds works).
    public var seq: UInt64
    public var issuedAt: Instant
    public var expiresAt: Instant
    public var serviceType: String
    public var location: Location
    /// Micro-units of the ledger's currency per GiB carried.
    public var pricePerGiB: UInt64
    /// Micro-units per minute of session.
    public var pricePerMinute: UInt64
    /// Concurrent sessions the provider accepts.
    public var capacity: UInt32
    public var access: AccessPolicy
    public var contacts: Contacts

    public init(
        provider: PublicKey, seq: UInt64, issuedAt: Instant, expiresAt: Instant, serviceType: String,
        location: Location, pricePerGiB: UInt64, pricePerMinute: UInt64, capacity: UInt32,
        access: AccessPolicy = .open, contacts: Contacts = Contacts(),
        protocolVersion: UInt16 = SignedProposal.currentVersion
    ) {
        self.protocolVersion = protocolVersion
        self.provider = provider
        self.seq = seq
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.serviceType = serviceType
        self.location = location
        self.pricePerGiB = pricePerGiB
        self.pricePerMinute = pricePerMinute
        self.capacity = capacity
        self.access = access
        self.contacts = contacts
    }

    public var id: ProposalID { ProposalID(provider: provider, serviceType: serviceType) }

    /// Whether `text` is a valid service type: 1...32 bytes of [a-z0-9-].
    public static func isValidServiceType(_ text: String) -> Bool {
        let utf8 = text.utf8
        guard !utf8.isEmpty, utf8.count <= maximumServiceTypeBytes else { return false }
        return utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
    }

    /// Whether `text` is two uppercase ASCII letters (the shape of ISO 3166-1 alpha-2).
    public static func isValidCountry(_ text: String) -> Bool {
        text.utf8.count == 2 && text.utf8.allSatisfy { $0 >= 0x41 && $0 <= 0x5A }
    }

    /// Whether `text` is a valid region: 1...32 bytes of printable ASCII (0x20...0x7E).
    public static func isValidRegion(_ text: String) -> Bool {
        let utf8 = text.utf8
        guard !utf8.isEmpty, utf8.count <= maximumRegionBytes else { return false }
        return utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E }
    }

    /// Throws the first field that breaks its rule (the version is checked by the caller).
    func validateFields() throws(ProposalError) {
        guard Self.isValidServiceType(serviceType) else {
            throw .invalidField(field: "service type", reason: "must be 1...32 bytes of a-z, 0-9, -")
        }
        guard Self.isValidCountry(location.country) else {
            throw .invalidField(field: "country", reason: "must be two uppercase letters A-Z")
        }
        if let region = location.region, !Self.isValidRegion(region) {
            throw .invalidField(field: "region", reason: "must be 1...32 bytes of printable ASCII")
        }
        if case .allowList(let keys) = access, keys.isEmpty || keys.count > Self.maximumAllowListKeys {
            throw .invalidField(field: "allow list", reason: "must hold 1...\(Self.maximumAllowListKeys) keys")
        }
        guard contacts.direct.count <= Self.maximumDirectEndpoints else {
            throw .invalidField(field: "direct endpoints", reason: "at most \(Self.maximumDirectEndpoints)")
        }
        guard contacts.relays.count <= Self.maximumRelays else {
            throw .invalidField(field: "relays", reason: "at most \(Self.maximumRelays)")
        }
        guard expiresAt > issuedAt else { throw .invalidField(field: "expires at", reason: "not after issued at") }
    }
}

// MARK: - Withdrawal

/// A provider's signed tombstone: it takes back its offer of `serviceType` with a seq at most `seq`,
/// and is remembered until `expiresAt` so that such an offer cannot come back. It should expire no
/// earlier than the offers it withdraws.
public struct ProposalWithdrawal: Hashable, Sendable {
    public var protocolVersion: UInt16
    public var provider: PublicKey
    public var seq: UInt64
    public var issuedAt: Instant
    public var expiresAt: Instant
    public var serviceType: String

    public init(
        provider: PublicKey, seq: UInt64, issuedAt: Instant, expiresAt: Instant, serviceType: String,
        protocolVersion: UInt16 = SignedProposal.currentVersion
    ) {
        self.protocolVersion = protocolVersion
        self.provider = provider
        self.seq = seq
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.serviceType = serviceType
    }

    public var id: ProposalID { ProposalID(provider: provider, serviceType: serviceType) }

    func validateFields() throws(ProposalError) {
        guard ServiceProposal.isValidServiceType(serviceType) else {
            throw .invalidField(field: "service type", reason: "must be 1...32 bytes of a-z, 0-9, -")
        }
        guard expiresAt > issuedAt else { throw .invalidField(field: "expires at", reason: "not after issued at") }
    }
}
