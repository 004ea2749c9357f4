import Testing
import UmbraCore
import UmbraCrypto
import UmbraTestKit

@testable import Ledger

/// One entry of every kind, signed by alice.
func entriesOfEveryKind() -> [LedgerEntry] {
    let channel = Key256(bytes: [UInt8](repeating: 7, count: 32))!
    let promise = ChannelPromise.make(channel: channel, amount: 42, consumer: bob, network: network)
    let vote1 = Vote.make(
        identity: validatorIdentities[0], network: network, slot: Slot(account: bob.publicKey, height: 3, epoch: 0),
        entryHash: Key256(bytes: [UInt8](repeating: 1, count: 32))!, report: 0)
    var vote2 = vote1
    vote2.entryHash = Key256(bytes: [UInt8](repeating: 2, count: 32))!
    let bodies: [EntryBody] = [
        .genesisAllocation(recipient: bob.publicKey, amount: 5),
        .transfer(recipient: bob.publicKey, amount: 10),
        .bond(role: .relay, amount: 20),
        .unbond(role: .provider, amount: 30, at: t0),
        .withdraw(at: t0 + 5),
        .channelOpen(provider: carol.publicKey, deposit: 100, expiry: t0 + 60),
        .channelClaim(promise),
        .channelClose(channel: channel, at: t0 + 61),
        .evidence(.doubleVote(vote1, vote2), at: t0),
        .epochChange(
            newEpoch: 1, committee: [CommitteeMember(identity: bob.publicKey, stake: 60)], at: t0),
    ]
    return bodies.enumerated().map { index, body in
        LedgerEntry.make(
            network: network, epoch: 0, identity: alice, height: UInt64(index),
            prev: index == 0 ? .zero : Key256(bytes: [UInt8](repeating: UInt8(index), count: 32))!, body: body)
    }
}

@Suite("Ledger codecs")
struct LedgerCodecTests {
    @Test("an entry of every kind round-trips, keeps its signature valid and its hash")
    func entryRoundTrip() throws {
        let entries = entriesOfEveryKind()
        #expect(Set(entries.map(\.kind)) == Set(EntryKind.allCases))
        for entry in entries {
            let bytes = entry.encoded()
            let decoded = try LedgerEntry(decoding: bytes)
            #expect(decoded == entry)
            #expect(decoded.encoded() == bytes)
            #expect(decoded.hasValidSignature)
            #expect(decoded.hash == entry.hash)
        }
    }

    @Test("the entry layout is pinned: network, epoch, account, height, prev, kind, body, signature")
    func entryLayout() {
        let entry = LedgerEntry.make(
            network: "n", epoch: 2, identity: alice, height: 1, prev: .zero,
            body: .transfer(recipient: bob.publicKey, amount: 0x0102))
        let bytes = entry.encoded()
        #expect(bytes.count == 3 + 8 + 32 + 8 + 32 + 1 + 32 + 8 + 64)
        #expect(Array(bytes[0..<3]) == [1, 0, UInt8(ascii: "n")])
        #expect(Array(bytes[3..<11]) == [2, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[11..<43]) == alice.publicKey.bytes)
        #expect(bytes[83] == EntryKind.transfer.rawValue)
        #expect(Array(bytes[116..<124]) == [2, 1, 0, 0, 0, 0, 0, 0])
        // The signature covers the domain tag, so the same fields under another tag do not verify.
        var tagged = Array("umbra/entry/v1".utf8) + [0]
        tagged += Array(bytes[0..<(bytes.count - 64)])
        #expect(entry.signedBytes == tagged)
    }

    @Test("every truncation of an entry is refused with a typed error, and so is a trailing byte")
    func entryTruncations() {
        for entry in entriesOfEveryKind() {
            let bytes = entry.encoded()
            for length in 0..<bytes.count {
                #expect(throws: DecodeError.self) { try LedgerEntry(decoding: Array(bytes[0..<length])) }
            }
            #expect(throws: DecodeError.trailingBytes(count: 1)) { try LedgerEntry(decoding: bytes + [0]) }
        }
    }

    @Test("unknown kinds and roles, bad booleans, oversize inputs and nested evidence are refused")
    func entryMalformed() throws {
        var bytes = entriesOfEveryKind()[1].encoded()
        let kindOffset = 2 + network.utf8.count + 8 + 32 + 8 + 32
        bytes[kindOffset] = 0
        #expect(throws: DecodeError.unknownTag(field: "entry kind", value: 0)) { try LedgerEntry(decoding: bytes) }
        bytes[kindOffset] = 11
        #expect(throws: DecodeError.unknownTag(field: "entry kind", value: 11)) { try LedgerEntry(decoding: bytes) }

        var bond = entriesOfEveryKind()[2].encoded()
        bond[kindOffset + 1] = 9
        #expect(throws: DecodeError.unknownTag(field: "role", value: 9)) { try LedgerEntry(decoding: bond) }

        let huge = [UInt8](repeating: 0, count: LedgerLimits.maximumEntrySize + 1)
        #expect(throws: DecodeError.self) { try LedgerEntry(decoding: huge) }

        // A committee count above the limit is refused before anything is read for it.
        let change = entriesOfEveryKind()[9]
        var changeBytes = change.encoded()
        let countOffset = kindOffset + 1 + 16
        changeBytes[countOffset] = 0xFF
        changeBytes[countOffset + 1] = 0xFF
        #expect(throws: DecodeError.lengthTooLarge(offset: countOffset, length: 0xFFFF, limit: 128)) {
            try LedgerEntry(decoding: changeBytes)
        }

        // Evidence whose entry is itself evidence: refused (recursion is one level deep).
        let inner = entriesOfEveryKind()[8]
        let nested = LedgerEntry.make(
            network: network, epoch: 0, identity: alice, height: 0, prev: .zero,
            body: .evidence(.equivocation(inner, inner), at: t0))
        #expect(throws: DecodeError.invalid(field: "evidence", reason: "an entry inside evidence")) {
            try LedgerEntry(decoding: nested.encoded())
        }

        // A network id that is not UTF-8.
        var badNetwork = entriesOfEveryKind()[1].encoded()
        badNetwork[2] = 0xFF
        #expect(throws: DecodeError.invalid(field: "network", reason: "not valid UTF-8")) {
            try LedgerEntry(decoding: badNetwork)
        }
    }

    @Test("votes, promises, certificates and evidence round-trip and refuse truncation and trailing bytes")
    func otherRoundTrips() throws {
        let entry = entriesOfEveryKind()[1]
        let vote = Vote.make(
            identity: validatorIdentities[1], network: network, slot: Slot(entry: entry), entryHash: entry.hash,
            report: 9)
        #expect(vote.encoded().count == Vote.encodedSize)
        #expect(try Vote(decoding: vote.encoded()) == vote)
        #expect(vote.hasValidSignature(network: network))
        #expect(!vote.hasValidSignature(network: "other"))

        let promise = ChannelPromise.make(channel: entry.hash, amount: 77, consumer: bob, network: network)
        #expect(try ChannelPromise(decoding: promise.encoded()) == promise)
        #expect(promise.verify(consumer: bob.publicKey, network: network))
        #expect(!promise.verify(consumer: alice.publicKey, network: network))

        let cert = certificate(entry, by: validatorIdentities)
        let certBytes = cert.encoded()
        #expect(try Certificate(decoding: certBytes) == cert)

        let evidence = Evidence.equivocation(entriesOfEveryKind()[1], entriesOfEveryKind()[2])
        #expect(try Evidence(decoding: evidence.encoded()) == evidence)

        let decoders: [([UInt8], ([UInt8]) throws -> Void)] = [
            (vote.encoded(), { _ = try Vote(decoding: $0) }),
            (promise.encoded(), { _ = try ChannelPromise(decoding: $0) }),
            (certBytes, { _ = try Certificate(decoding: $0) }),
            (evidence.encoded(), { _ = try Evidence(decoding: $0) }),
        ]
        for (bytes, decode) in decoders {
            for length in 0..<bytes.count {
                #expect(throws: DecodeError.self) { try decode(Array(bytes[0..<length])) }
            }
        }
        #expect(throws: DecodeError.trailingBytes(count: 1)) { try Vote(decoding: vote.encoded() + [1]) }
        #expect(throws: DecodeError.trailingBytes(count: 1)) { try Certificate(decoding: certBytes + [1]) }
        #expect(throws: DecodeError.trailingBytes(count: 1)) { try Evidence(decoding: evidence.encoded() + [1]) }
    }

    @Test("a certificate with votes out of order or repeated is not canonical and is refused")
    func certificateOrder() throws {
        let entry = entriesOfEveryKind()[1]
        let cert = certificate(entry, by: Array(validatorIdentities.prefix(2)))
        var bytes = cert.encoded()
        let first = 82..<(82 + CertificateVote.encodedSize)
        let second = (82 + CertificateVote.encodedSize)..<bytes.count
        let swapped = Array(bytes[second]) + Array(bytes[first])
        bytes.replaceSubrange(82..<bytes.count, with: swapped)
        #expect(
            throws: DecodeError.invalid(field: "certificate", reason: "validators not in strictly increasing order")
        ) {
            try Certificate(decoding: bytes)
        }
        var repeated = cert.encoded()
        repeated.replaceSubrange(82..<repeated.count, with: Array(repeated[first]) + Array(repeated[first]))
        #expect(throws: DecodeError.self) { try Certificate(decoding: repeated) }
        var tooMany = cert.encoded()
        tooMany[80] = 129
        tooMany[81] = 0
        #expect(throws: DecodeError.lengthTooLarge(offset: 80, length: 129, limit: 128)) {
            try Certificate(decoding: tooMany)
        }
    }

    @Test("entries, votes and promises signed for one network do not verify in another")
    func networkBinding() {
        let entry = entriesOfEveryKind()[1]
        var moved = entry
        moved.network = "umbra-other"
        #expect(entry.hasValidSignature)
        #expect(!moved.hasValidSignature)
        #expect(moved.hash != entry.hash)
    }
}
