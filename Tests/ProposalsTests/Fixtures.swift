import Proposals
import UmbraCore
import UmbraTestKit

// MARK: - Fixtures shared by the proposal tests

// `network`, `identity(_:)`, `identity(index:)` and `endpoint(_:port:)` come from UmbraTestKit.

/// When the proposals are issued: the kit's `t0`.
let start = t0

let alice = identity(1)
let bob = identity(2)
let carol = identity(3)

func offer(
    _ who: Identity, service: String = "ip-tunnel", country: String = "DE", seq: UInt64 = 1,
    issuedAt: Instant = start, lifetime: Duration = SignedProposal.defaultLifetime, pricePerGiB: UInt64 = 2_000_000,
    pricePerMinute: UInt64 = 10_000, capacity: UInt32 = 8, region: String? = nil,
    ipType: ServiceProposal.IPType? = .hosting, access: ServiceProposal.AccessPolicy = .open,
    contacts: ServiceProposal.Contacts = .init(direct: [endpoint(1)]), version: UInt16 = SignedProposal.currentVersion
) -> ServiceProposal {
    ServiceProposal(
        provider: who.publicKey, seq: seq, issuedAt: issuedAt, expiresAt: issuedAt + lifetime, serviceType: service,
        location: .init(country: country, region: region, ipType: ipType), pricePerGiB: pricePerGiB,
        pricePerMinute: pricePerMinute, capacity: capacity, access: access, contacts: contacts,
        protocolVersion: version)
}

/// `proposal` signed by `who` (which must be its provider and within every rule).
func signed(_ proposal: ServiceProposal, by who: Identity, networkID: String = network) -> SignedProposal {
    do { return try SignedProposal.make(offer: proposal, identity: who, networkID: networkID) } catch {
        fatalError("\(error)")
    }
}

func signedOffer(
    _ who: Identity, service: String = "ip-tunnel", country: String = "DE", seq: UInt64 = 1,
    issuedAt: Instant = start, lifetime: Duration = SignedProposal.defaultLifetime, pricePerGiB: UInt64 = 2_000_000,
    pricePerMinute: UInt64 = 10_000
) -> SignedProposal {
    signed(
        offer(
            who, service: service, country: country, seq: seq, issuedAt: issuedAt, lifetime: lifetime,
            pricePerGiB: pricePerGiB, pricePerMinute: pricePerMinute),
        by: who)
}

func tombstone(
    _ who: Identity, service: String = "ip-tunnel", seq: UInt64, issuedAt: Instant = start,
    lifetime: Duration = SignedProposal.defaultLifetime
) -> SignedProposal {
    let withdrawal = ProposalWithdrawal(
        provider: who.publicKey, seq: seq, issuedAt: issuedAt, expiresAt: issuedAt + lifetime, serviceType: service)
    do { return try SignedProposal.make(withdrawal: withdrawal, identity: who, networkID: network) } catch {
        fatalError("\(error)")
    }
}

/// A proposal carrying every optional field, for codec tests.
func fullOffer(_ who: Identity = alice) -> ServiceProposal {
    offer(
        who, region: "Bavaria", ipType: .residential, access: .allowList([bob.publicKey, carol.publicKey]),
        contacts: .init(
            direct: [endpoint(1), Endpoint(address: .v6(high: 0x2001_0DB8_0000_0000, low: 1), port: 51820)],
            relays: [.init(publicKey: carol.publicKey, endpoint: endpoint(9, port: 4748))]))
}

/// Signs `content` with `who` regardless of the rules `make` enforces (to build values that only
/// `verify` or the decoder can refuse).
func forceSigned(_ content: SignedProposal.Content, by who: Identity, networkID: String = network) -> SignedProposal {
    var proposal = SignedProposal(content: content, signature: [UInt8](repeating: 0, count: 64))
    proposal.signature = who.sign(proposal.signedBytes(networkID: networkID))
    return proposal
}
