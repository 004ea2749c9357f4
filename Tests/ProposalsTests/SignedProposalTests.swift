import Testing
import UmbraCore
import UmbraCrypto
import UmbraTestKit

@testable import Proposals

@Suite("Signed proposal codec")
struct ProposalCodecTests {
    @Test("an offer with every field round-trips through the wire form")
    func offerRoundTrip() throws {
        let proposal = signed(fullOffer(), by: alice)
        let bytes = proposal.encoded()
        #expect(bytes.count == proposal.encodedSize)
        #expect(bytes.first == SignedProposal.Kind.offer.rawValue)
        let decoded = try SignedProposal(decoding: bytes)
        #expect(decoded == proposal)
        #expect(decoded.encoded() == bytes)
        try decoded.verify(networkID: network, now: start)
    }

    @Test("a minimal offer (no region, ip type or contacts) round-trips and keeps nil as nil")
    func minimalOfferRoundTrip() throws {
        let proposal = signed(offer(alice, ipType: nil, contacts: .init()), by: alice)
        let decoded = try SignedProposal(decoding: proposal.encoded())
        #expect(decoded == proposal)
        #expect(decoded.offer?.location.region == nil)
        #expect(decoded.offer?.location.ipType == nil)
    }

    @Test("a tombstone round-trips and is as small as documented")
    func tombstoneRoundTrip() throws {
        let withdrawal = tombstone(alice, service: "a", seq: 7)
        let bytes = withdrawal.encoded()
        #expect(bytes.count == SignedProposal.minimumEncodedSize)
        #expect(bytes.first == SignedProposal.Kind.withdrawal.rawValue)
        let decoded = try SignedProposal(decoding: bytes)
        #expect(decoded == withdrawal)
        #expect(decoded.withdrawal?.seq == 7)
        try decoded.verify(networkID: network, now: start)
    }

    @Test("the wire layout is pinned: kind, version, provider, seq, times, service type, offer fields")
    func layout() {
        let proposal = signed(offer(alice, seq: 0x0102, ipType: .mobile, contacts: .init()), by: alice)
        let bytes = proposal.encoded()
        var expected: [UInt8] = [1, 1, 0]  // kind offer, version 1 (u16 LE)
        expected += alice.publicKey.bytes
        expected += [0x02, 0x01, 0, 0, 0, 0, 0, 0]  // seq LE
        var writer = ByteWriter()
        writer.write(start.nanoseconds)
        writer.write((start + .seconds(180)).nanoseconds)
        expected += writer.bytes
        expected += [9, 0] + Array("ip-tunnel".utf8)
        expected += Array("DE".utf8) + [0, 0]  // country, empty region
        expected += [3]  // ip type mobile
        expected += [0x80, 0x84, 0x1E, 0, 0, 0, 0, 0]  // 2_000_000
        expected += [0x10, 0x27, 0, 0, 0, 0, 0, 0]  // 10_000
        expected += [8, 0, 0, 0]  // capacity
        expected += [0, 0, 0]  // open access, no direct endpoints, no relays
        #expect(Array(bytes.dropLast(64)) == expected)
        #expect(Array(bytes.suffix(64)) == proposal.signature)
    }

    @Test("every proper prefix of a valid proposal is refused as malformed")
    func truncations() throws {
        let bytes = signed(fullOffer(), by: alice).encoded()
        for length in 0..<bytes.count {
            #expect(throws: ProposalError.self) { try SignedProposal(decoding: Array(bytes.prefix(length))) }
        }
        #expect(throws: ProposalError.malformed(.truncated(offset: 0, needed: 1))) {
            try SignedProposal(decoding: [])
        }
    }

    @Test("a trailing byte, an unknown kind, ip type or access policy are malformed")
    func malformedInputs() throws {
        let proposal = signed(offer(alice, contacts: .init()), by: alice)
        let bytes = proposal.encoded()
        #expect(throws: ProposalError.malformed(.trailingBytes(count: 1))) {
            try SignedProposal(decoding: bytes + [0])
        }
        var kind = bytes
        kind[0] = 3
        #expect(throws: ProposalError.malformed(.unknownTag(field: "proposal kind", value: 3))) {
            try SignedProposal(decoding: kind)
        }
        // ip type sits after kind, version, provider, seq, two times, service type, country, region.
        let ipTypeOffset = 1 + 2 + 32 + 24 + 2 + 9 + 2 + 2
        var ipType = bytes
        ipType[ipTypeOffset] = 4
        #expect(throws: ProposalError.malformed(.unknownTag(field: "ip type", value: 4))) {
            try SignedProposal(decoding: ipType)
        }
        var access = bytes
        access[ipTypeOffset + 1 + 8 + 8 + 4] = 2
        #expect(throws: ProposalError.malformed(.unknownTag(field: "access policy", value: 2))) {
            try SignedProposal(decoding: access)
        }
    }

    @Test("a field rule broken on the wire is refused by the decoder as invalidField")
    func decoderChecksFieldRules() throws {
        let proposal = forceSigned(.offer(offer(alice, country: "de")), by: alice)
        #expect(throws: ProposalError.invalidField(field: "country", reason: "must be two uppercase letters A-Z")) {
            try SignedProposal(decoding: proposal.encoded())
        }
        let badType = forceSigned(
            .withdrawal(
                .init(
                    provider: alice.publicKey, seq: 1, issuedAt: start,
                    expiresAt: start + .seconds(60), serviceType: "IP")), by: alice)
        #expect(throws: ProposalError.self) { try SignedProposal(decoding: badType.encoded()) }
    }
}

@Suite("Signed proposal validation")
struct ProposalValidationTests {
    @Test("the signing input is the domain tag, NUL, the network id and the unsigned wire bytes")
    func signingInput() {
        let proposal = signed(offer(alice), by: alice)
        var expected = Array("umbra/proposal/v1".utf8) + [0]
        expected += [UInt8(network.utf8.count), 0] + Array(network.utf8)
        expected += proposal.encoded().dropLast(64)
        #expect(proposal.signedBytes(networkID: network) == expected)
        #expect(Ed25519.verify(signature: proposal.signature, message: expected, publicKey: alice.publicKey.bytes))
    }

    @Test("changing any signed field breaks the signature")
    func everyFieldIsSigned() throws {
        // Each changes one signed field of `fullOffer()`, keeping every rule.
        let mutations: [(String, (inout ServiceProposal) -> Void)] = [
            ("seq", { $0.seq += 1 }),
            ("issuedAt", { $0.issuedAt = $0.issuedAt + .seconds(1) }),
            ("expiresAt", { $0.expiresAt = $0.expiresAt + .seconds(1) }),
            ("serviceType", { $0.serviceType = "socks5" }),
            ("country", { $0.location.country = "FR" }),
            ("region", { $0.location.region = "Bavarib" }),
            ("region removed", { $0.location.region = nil }),
            ("ipType", { $0.location.ipType = .hosting }),
            ("ipType removed", { $0.location.ipType = nil }),
            ("pricePerGiB", { $0.pricePerGiB += 1 }),
            ("pricePerMinute", { $0.pricePerMinute += 1 }),
            ("capacity", { $0.capacity += 1 }),
            ("access open", { $0.access = .open }),
            ("allow list order", { $0.access = .allowList([carol.publicKey, bob.publicKey]) }),
            ("direct endpoint port", { $0.contacts.direct[0].port += 1 }),
            ("direct endpoint dropped", { $0.contacts.direct.removeLast() }),
            ("relay key", { $0.contacts.relays[0].publicKey = bob.publicKey }),
            ("relay endpoint", { $0.contacts.relays[0].endpoint = endpoint(10) }),
            ("relays dropped", { $0.contacts.relays = [] }),
        ]
        let original = signed(fullOffer(), by: alice)
        try original.verify(networkID: network, now: start)
        for (name, mutate) in mutations {
            var changed = fullOffer()
            mutate(&changed)
            #expect(changed != fullOffer(), "\(name) changed nothing")
            let forged = SignedProposal(content: .offer(changed), signature: original.signature)
            #expect(throws: ProposalError.badSignature, "\(name)") {
                try forged.verify(networkID: network, now: start)
            }
        }
        var otherProvider = fullOffer()
        otherProvider.provider = bob.publicKey
        #expect(throws: ProposalError.badSignature) {
            try SignedProposal(content: .offer(otherProvider), signature: original.signature)
                .verify(networkID: network, now: start)
        }
    }

    @Test("a tombstone's fields are signed, and a tombstone signature is no offer signature")
    func tombstoneFieldsAreSigned() throws {
        let original = tombstone(alice, seq: 5)
        guard let withdrawal = original.withdrawal else { Issue.record("not a tombstone"); return }
        var mutations = [withdrawal, withdrawal, withdrawal, withdrawal]
        mutations[0].seq = 6
        mutations[1].serviceType = "socks5"
        mutations[2].expiresAt = withdrawal.expiresAt + .seconds(1)
        mutations[3].issuedAt = withdrawal.issuedAt + .seconds(1)
        for changed in mutations {
            #expect(throws: ProposalError.badSignature) {
                try SignedProposal(content: .withdrawal(changed), signature: original.signature)
                    .verify(networkID: network, now: start)
            }
        }
    }

    @Test("a proposal signed for another network id is refused")
    func otherNetwork() throws {
        let proposal = signed(offer(alice), by: alice, networkID: "umbra-other")
        try proposal.verify(networkID: "umbra-other", now: start)
        #expect(throws: ProposalError.badSignature) { try proposal.verify(networkID: network, now: start) }
    }

    @Test("a forged signature (one flipped bit) is refused")
    func forgedSignature() {
        var proposal = signed(offer(alice), by: alice)
        proposal.signature[17] ^= 0x04
        #expect(throws: ProposalError.badSignature) { try proposal.verify(networkID: network, now: start) }
    }

    @Test("a signature of the wrong length is refused without a trap")
    func shortSignature() {
        var proposal = signed(offer(alice), by: alice)
        proposal.signature.removeLast()
        #expect(throws: ProposalError.invalidField(field: "signature", reason: "must be 64 bytes")) {
            try proposal.verify(networkID: network, now: start)
        }
    }

    @Test("a tombstone signed by someone other than its provider is refused")
    func tombstoneBySomeoneElse() {
        let withdrawal = ProposalWithdrawal(
            provider: alice.publicKey, seq: 9, issuedAt: start, expiresAt: start + .seconds(180),
            serviceType: "ip-tunnel")
        #expect(throws: ProposalError.invalidField(field: "provider", reason: "is not the signing identity's key")) {
            try SignedProposal.make(withdrawal: withdrawal, identity: bob, networkID: network)
        }
        let forged = forceSigned(.withdrawal(withdrawal), by: bob)
        #expect(throws: ProposalError.badSignature) { try forged.verify(networkID: network, now: start) }
    }

    @Test("expired: refused at and after expiresAt, accepted just before")
    func expired() throws {
        let proposal = signed(offer(alice), by: alice)
        try proposal.verify(networkID: network, now: proposal.expiresAt - .nanoseconds(1))
        #expect(throws: ProposalError.expired) { try proposal.verify(networkID: network, now: proposal.expiresAt) }
        #expect(throws: ProposalError.expired) {
            try proposal.verify(networkID: network, now: proposal.expiresAt + .seconds(3600))
        }
    }

    @Test("issued more than 60 s in the future: not yet valid")
    func notYetValid() throws {
        let proposal = signed(offer(alice, issuedAt: start + .seconds(60)), by: alice)
        try proposal.verify(networkID: network, now: start)
        #expect(throws: ProposalError.notYetValid) {
            try proposal.verify(networkID: network, now: start - .nanoseconds(1))
        }
    }

    @Test("a lifetime above one hour cannot be made, and is refused when signed anyway")
    func lifetimeTooLong() throws {
        _ = signed(offer(alice, lifetime: .seconds(3600)), by: alice)
        let long = offer(alice, lifetime: .seconds(3600) + .nanoseconds(1))
        #expect(throws: ProposalError.lifetimeTooLong) {
            try SignedProposal.make(offer: long, identity: alice, networkID: network)
        }
        let forced = forceSigned(.offer(long), by: alice)
        #expect(throws: ProposalError.lifetimeTooLong) { try forced.verify(networkID: network, now: start) }
        let backwards = forceSigned(.offer(offer(alice, lifetime: .zero)), by: alice)
        #expect(throws: ProposalError.invalidField(field: "expires at", reason: "not after issued at")) {
            try backwards.verify(networkID: network, now: start - .seconds(1))
        }
    }

    @Test("an unknown protocol version cannot be made, is refused by verify and by the decoder")
    func unknownVersion() {
        let future = offer(alice, version: 2)
        #expect(throws: ProposalError.unsupportedVersion(2)) {
            try SignedProposal.make(offer: future, identity: alice, networkID: network)
        }
        let forced = forceSigned(.offer(future), by: alice)
        #expect(throws: ProposalError.unsupportedVersion(2)) { try forced.verify(networkID: network, now: start) }
        #expect(throws: ProposalError.unsupportedVersion(2)) { try SignedProposal(decoding: forced.encoded()) }
        // Version first: an unknown version is reported even when the rest is garbage.
        #expect(throws: ProposalError.unsupportedVersion(0x0302)) {
            try SignedProposal(decoding: [1, 2, 3, 0xFF])
        }
    }

    @Test("a proposal over 1000 bytes cannot be made, and the decoder refuses it")
    func oversized() throws {
        let keys = (0..<16).map { identity(index: $0).publicKey }
        let v6 = Endpoint(address: .v6(high: 0x2001_0DB8_0000_0000, low: 1), port: 4747)
        let relays = (0..<4).map { ServiceProposal.Relay(publicKey: keys[$0], endpoint: v6) }
        let big = offer(
            alice, service: String(repeating: "x", count: 32), region: String(repeating: "r", count: 32),
            access: .allowList(keys), contacts: .init(direct: Array(repeating: v6, count: 4), relays: relays))
        let size = SignedProposal(content: .offer(big), signature: [UInt8](repeating: 0, count: 64)).encodedSize
        #expect(size == 1010)  // every field at its limit: the cap bites
        #expect(throws: ProposalError.oversized(size)) {
            try SignedProposal.make(offer: big, identity: alice, networkID: network)
        }
        let forced = forceSigned(.offer(big), by: alice)
        #expect(throws: ProposalError.oversized(size)) { try forced.verify(networkID: network, now: start) }
        #expect(throws: ProposalError.oversized(size)) { try SignedProposal(decoding: forced.encoded()) }

        // Just under the limit is fine: one fewer allow-list key.
        var fits = big
        fits.access = .allowList(Array(keys.prefix(13)))
        let made = try SignedProposal.make(offer: fits, identity: alice, networkID: network)
        #expect(made.encodedSize <= SignedProposal.maximumEncodedSize)
        #expect(try SignedProposal(decoding: made.encoded()) == made)
    }

    @Test("each field rule refuses what breaks it", arguments: FieldRuleCase.all)
    func fieldRules(_ rule: FieldRuleCase) {
        var proposal = offer(alice)
        rule.mutate(&proposal)
        do {
            _ = try SignedProposal.make(offer: proposal, identity: alice, networkID: network)
            Issue.record("\(rule.name) was signed")
        } catch {
            guard case .invalidField(let refused, _) = error else {
                Issue.record("\(rule.name): \(error)")
                return
            }
            #expect(refused == rule.field)
        }
    }

    @Test("the limits themselves are accepted: 32-byte type and region, 16 keys, 4 + 4 contacts")
    func limitsAccepted() throws {
        let keys = (0..<16).map { identity(index: $0).publicKey }
        let atLimits = offer(
            alice, service: String(repeating: "a", count: 32), region: String(repeating: "~", count: 32),
            access: .allowList(keys), contacts: .init(direct: (1...4).map { endpoint($0) }))
        let made = try SignedProposal.make(offer: atLimits, identity: alice, networkID: network)
        try made.verify(networkID: network, now: start)
        let relays = (1...4).map { ServiceProposal.Relay(publicKey: keys[Int($0)], endpoint: endpoint($0)) }
        let withRelays = offer(alice, contacts: .init(direct: (1...4).map { endpoint($0) }, relays: relays))
        try SignedProposal.make(offer: withRelays, identity: alice, networkID: network)
            .verify(networkID: network, now: start)
    }

    @Test("checks run in the documented order: version, limits, expiry, skew, lifetime, signature")
    func checkOrder() {
        var expiredAndForged = signed(offer(alice), by: alice)
        expiredAndForged.signature[0] ^= 1
        #expect(throws: ProposalError.expired) {
            try expiredAndForged.verify(networkID: network, now: start + .seconds(3600))
        }
        let futureAndLong = forceSigned(
            .offer(offer(alice, issuedAt: start + .seconds(120), lifetime: .seconds(7200))), by: alice)
        #expect(throws: ProposalError.notYetValid) { try futureAndLong.verify(networkID: network, now: start) }
        let badFieldAndVersion = forceSigned(.offer(offer(alice, country: "xx", version: 9)), by: alice)
        #expect(throws: ProposalError.unsupportedVersion(9)) {
            try badFieldAndVersion.verify(networkID: network, now: start)
        }
        let longAndForged = SignedProposal(
            content: .offer(offer(alice, lifetime: .seconds(7200))), signature: [UInt8](repeating: 0, count: 64))
        #expect(throws: ProposalError.lifetimeTooLong) { try longAndForged.verify(networkID: network, now: start) }
    }

    @Test("an offer must be signed by its provider")
    func makeChecksProvider() {
        #expect(throws: ProposalError.invalidField(field: "provider", reason: "is not the signing identity's key")) {
            try SignedProposal.make(offer: offer(alice), identity: bob, networkID: network)
        }
    }

    @Test("errors describe themselves briefly")
    func descriptions() {
        let errors: [ProposalError] = [
            .malformed(.trailingBytes(count: 1)), .unsupportedVersion(2), .oversized(1200),
            .invalidField(field: "country", reason: "bad"), .expired, .notYetValid, .lifetimeTooLong,
            .badSignature, .storeFull, .overQuota,
        ]
        #expect(Set(errors.map(\.reason)).count == ProposalError.Reason.allCases.count)
        for error in errors { #expect(!error.description.isEmpty && error.description.count < 120) }
    }
}

/// One broken field rule: how to break it and which field `make` must name.
struct FieldRuleCase: Sendable, CustomTestStringConvertible {
    var name: String
    var field: String
    var mutate: @Sendable (inout ServiceProposal) -> Void

    var testDescription: String { name }

    static let all: [FieldRuleCase] = [
        .init(name: "service type empty", field: "service type") { $0.serviceType = "" },
        .init(name: "service type uppercase", field: "service type") { $0.serviceType = "IP-Tunnel" },
        .init(name: "service type underscore", field: "service type") { $0.serviceType = "ip_tunnel" },
        .init(name: "service type 33 bytes", field: "service type") {
            $0.serviceType = String(repeating: "a", count: 33)
        },
        .init(name: "country lowercase", field: "country") { $0.location.country = "de" },
        .init(name: "country three letters", field: "country") { $0.location.country = "DEU" },
        .init(name: "region empty", field: "region") { $0.location.region = "" },
        .init(name: "region non-ASCII", field: "region") { $0.location.region = "Zürich" },
        .init(name: "region 33 bytes", field: "region") { $0.location.region = String(repeating: "r", count: 33) },
        .init(name: "region control character", field: "region") { $0.location.region = "a\nb" },
        .init(name: "allow list empty", field: "allow list") { $0.access = .allowList([]) },
        .init(name: "allow list 17 keys", field: "allow list") {
            $0.access = .allowList((0..<17).map { identity(index: $0).publicKey })
        },
        .init(name: "5 direct endpoints", field: "direct endpoints") {
            $0.contacts.direct = (1...5).map { endpoint($0) }
        },
        .init(name: "5 relays", field: "relays") {
            $0.contacts.relays = (1...5).map { .init(publicKey: bob.publicKey, endpoint: endpoint($0)) }
        },
    ]
}
