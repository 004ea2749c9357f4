// Why a service proposal was refused, by the decoder, by `SignedProposal.verify`, by a constructor or
// by a store. One case per reason; `reason` is the metric/report label.

import UmbraCore

/// Why a proposal was refused. Equatable, so tests and callers match exact reasons.
public enum ProposalError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not a proposal (truncated, trailing bytes, unknown kind or tag).
    case malformed(DecodeError)
    /// `protocolVersion` is not `SignedProposal.currentVersion`.
    case unsupportedVersion(UInt16)
    /// The encoding is this many bytes, above `SignedProposal.maximumEncodedSize`.
    case oversized(Int)
    /// A field breaks its rule (service type, country, region, allow list, contacts, expiry order,
    /// signature length, provider of a constructor).
    case invalidField(field: String, reason: String)
    /// `expiresAt` is not after `now`.
    case expired
    /// `issuedAt` is more than `SignedProposal.maximumClockSkew` after `now`.
    case notYetValid
    /// `expiresAt - issuedAt` is above `SignedProposal.maximumLifetime`.
    case lifetimeTooLong
    /// The signature is not the provider's over the canonical bytes for this network.
    case badSignature
    /// The store is full and everything it holds expires later than this proposal.
    case storeFull
    /// The provider already has `ProposalStoreConfig.maximumEntriesPerProvider` entries stored.
    case overQuota

    /// Refusal reasons as metric labels.
    public enum Reason: String, CaseIterable, Sendable, Codable {
        case malformed
        case unsupportedVersion = "unsupported_version"
        case oversized
        case invalidField = "invalid_field"
        case expired
        case notYetValid = "not_yet_valid"
        case lifetimeTooLong = "lifetime_too_long"
        case badSignature = "bad_signature"
        case storeFull = "store_full"
        case overQuota = "over_quota"
    }

    public var reason: Reason {
        switch self {
        case .malformed: .malformed
        case .unsupportedVersion: .unsupportedVersion
        case .oversized: .oversized
        case .invalidField: .invalidField
        case .expired: .expired
        case .notYetValid: .notYetValid
        case .lifetimeTooLong: .lifetimeTooLong
        case .badSignature: .badSignature
        case .storeFull: .storeFull
        case .overQuota: .overQuota
        }
    }

    public var description: String {
        switch self {
        case .malformed(let error): "malformed proposal: \(error)"
        case .unsupportedVersion(let version):
            "proposal version \(version) is not supported (this build reads \(SignedProposal.currentVersion))"
        case .oversized(let size): "proposal is \(size) bytes, the limit is \(SignedProposal.maximumEncodedSize)"
        case .invalidField(let field, let reason): "invalid proposal \(field): \(reason)"
        case .expired: "proposal has expired"
        case .notYetValid: "proposal is issued in the future"
        case .lifetimeTooLong: "proposal lifetime exceeds \(SignedProposal.maximumLifetime)"
        case .badSignature: "proposal signature does not verify"
        case .storeFull: "proposal store is full of proposals that expire later"
        case .overQuota: "provider has too many proposals stored"
        }
    }
}
