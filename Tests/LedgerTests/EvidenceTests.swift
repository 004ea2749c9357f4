import Testing
import UmbraCore
import UmbraTestKit

@testable import Ledger

@Suite("Evidence and slashing")
struct EvidenceTests {
    let offender = validatorIdentities[3]

    func twoVotes(_ who: Identity, ledger: LedgerState) -> (Vote, Vote) {
        let first = entry(alice, .transfer(recipient: bob.publicKey, amount: 1), on: ledger)
        let second = entry(alice, .transfer(recipient: carol.publicKey, amount: 1), on: ledger)
        return (
            Vote.make(identity: who, network: network, slot: Slot(entry: first), entryHash: first.hash, report: 0),
            Vote.make(identity: who, network: network, slot: Slot(entry: second), entryHash: second.hash, report: 0)
        )
    }

    @Test("a double vote verifies on its own and burns the validator's stake, 10% to the reporter")
    func doubleVote() throws {
        var ledger = state()
        let (first, second) = twoVotes(offender, ledger: ledger)
        let offense = try Evidence.doubleVote(first, second).verify(network: network)
        #expect(offense.offender == offender.publicKey)
        #expect(offense.epoch == 0)
        try append(bob, .evidence(.doubleVote(first, second), at: t0), to: &ledger)
        #expect(ledger.accounts[offender.publicKey]?.bonded(.validator) == 0)
        #expect(ledger.accounts[offender.publicKey]?.slashed == 100)
        #expect(ledger.balance(of: bob.publicKey) == 510)
        #expect(ledger.burned == 90)
        #expect(ledger.totalHeld + ledger.burned == ledger.supply)
        // The same offense again, even with the votes swapped: refused.
        #expect(throws: LedgerError.duplicateEvidence) {
            try append(carol, .evidence(.doubleVote(second, first), at: t0), to: &ledger)
        }
        // The slashed validator is no longer a candidate for the next committee.
        #expect(!ledger.nextCommittee().contains { $0.identity == offender.publicKey })
    }

    @Test("malformed double votes prove nothing")
    func doubleVoteInvalid() {
        let ledger = state()
        let (first, second) = twoVotes(offender, ledger: ledger)
        let (other, _) = twoVotes(validatorIdentities[2], ledger: ledger)
        var forged = second
        forged.signature[3] ^= 1
        var laterEpoch = second
        laterEpoch.epoch = 1
        for evidence in [
            Evidence.doubleVote(first, first), .doubleVote(first, other), .doubleVote(first, forged),
            .doubleVote(first, laterEpoch),
        ] {
            #expect(throws: LedgerError.self) { try evidence.verify(network: network) }
        }
        #expect(throws: LedgerError.self) { try Evidence.doubleVote(first, second).verify(network: "elsewhere") }
    }

    @Test("a claim ack above the validator's own close report is evidence; at or below is not")
    func claimAfterClose() throws {
        var ledger = state()
        let open = try append(
            alice, .channelOpen(provider: carol.publicKey, deposit: 300, expiry: t0 + 60), to: &ledger)
        let close = entry(alice, .channelClose(channel: open.hash, at: t0 + 61), on: ledger)
        let closeVote = Vote.make(
            identity: offender, network: network, slot: Slot(entry: close), entryHash: close.hash, report: 50)
        func claim(_ amount: Amount) -> (LedgerEntry, Vote) {
            let claim = entry(
                carol, .channelClaim(.make(channel: open.hash, amount: amount, consumer: alice, network: network)),
                on: ledger)
            return (
                claim,
                Vote.make(
                    identity: offender, network: network, slot: Slot(entry: claim), entryHash: claim.hash, report: 0)
            )
        }
        let (high, highVote) = claim(80)
        let evidence = Evidence.claimAfterClose(
            closeEntry: close, closeVote: closeVote, claimEntry: high, claimVote: highVote)
        #expect(try Evidence(decoding: evidence.encoded()) == evidence)
        #expect(try evidence.verify(network: network).offender == offender.publicKey)
        let (low, lowVote) = claim(50)
        #expect(throws: LedgerError.invalidEvidence("the claim does not exceed the close report")) {
            try Evidence.claimAfterClose(closeEntry: close, closeVote: closeVote, claimEntry: low, claimVote: lowVote)
                .verify(network: network)
        }
        let (_, otherVote) = claim(90)
        #expect(throws: LedgerError.invalidEvidence("a vote is not for its entry")) {
            try Evidence.claimAfterClose(
                closeEntry: close, closeVote: closeVote, claimEntry: high, claimVote: otherVote
            )
            .verify(network: network)
        }
        try append(bob, .evidence(evidence, at: t0 + 70), to: &ledger)
        #expect(ledger.accounts[offender.publicKey]?.slashed == 100)
    }

    @Test("two signed entries of one account at one height burn that account's bonds and unbondings")
    func equivocation() throws {
        var ledger = state()
        try append(carol, .bond(role: .provider, amount: 100), to: &ledger)
        try append(carol, .unbond(role: .provider, amount: 40, at: t0), to: &ledger)
        let first = entry(carol, .transfer(recipient: bob.publicKey, amount: 1), on: ledger)
        let second = entry(carol, .transfer(recipient: alice.publicKey, amount: 1), on: ledger)
        let offense = try Evidence.equivocation(first, second).verify(network: network)
        #expect(offense.offender == carol.publicKey)
        #expect(throws: LedgerError.self) { try Evidence.equivocation(first, first).verify(network: network) }
        let retry = entry(carol, .transfer(recipient: alice.publicKey, amount: 1), on: ledger, epoch: 1)
        #expect(throws: LedgerError.self) { try Evidence.equivocation(first, retry).verify(network: network) }
        try append(bob, .evidence(.equivocation(first, second), at: t0), to: &ledger)
        #expect(ledger.accounts[carol.publicKey]?.slashed == 100)
        #expect(ledger.accounts[carol.publicKey]?.unbonding.isEmpty == true)
        #expect(ledger.balance(of: bob.publicKey) == 510)
        #expect(ledger.totalHeld + ledger.burned == ledger.supply)
        // Evidence against someone with nothing at stake is refused.
        let a = entry(alice, .transfer(recipient: bob.publicKey, amount: 1), on: ledger)
        let b = entry(alice, .transfer(recipient: carol.publicKey, amount: 1), on: ledger)
        #expect(throws: LedgerError.invalidEvidence("the offender has no stake to burn")) {
            try append(bob, .evidence(.equivocation(a, b), at: t0), to: &ledger)
        }
    }

    @Test("evidence about an epoch that ended more than the evidence lifetime ago is refused")
    func evidenceLifetime() throws {
        var net = Network()
        let (first, second) = twoVotes(offender, ledger: net.replica)
        try net.submit(alice, .epochChange(newEpoch: 1, committee: net.replica.nextCommittee(), at: t0), now: t0)
        #expect(throws: LedgerError.evidenceExpired) {
            try net.submit(bob, .evidence(.doubleVote(first, second), at: t0 + 51), now: t0 + 51)
        }
        try net.submit(bob, .evidence(.doubleVote(first, second), at: t0 + 50), now: t0 + 50)
        #expect(net.replica.accounts[offender.publicKey]?.slashed == 100)
    }
}

@Suite("Epochs")
struct EpochTests {
    @Test("the next committee is the top N validator bonds above the minimum, ties by key")
    func nextCommittee() throws {
        var ledger = state(genesis(committeeSize: 4))
        try append(alice, .bond(role: .validator, amount: 150), to: &ledger)
        try append(bob, .bond(role: .validator, amount: 49 + 1), to: &ledger)
        try append(carol, .bond(role: .provider, amount: 150), to: &ledger)
        let next = ledger.nextCommittee()
        #expect(next.count == 4)
        #expect(next[0] == CommitteeMember(identity: alice.publicKey, stake: 150))
        let ties = validatorIdentities.map(\.publicKey).sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }
        #expect(next.dropFirst().map(\.identity) == Array(ties.prefix(3)))
        #expect(!next.contains { $0.identity == bob.publicKey })
        #expect(!next.contains { $0.identity == carol.publicKey })
    }

    @Test("an epoch change certified by the outgoing committee installs the next; old-epoch votes are refused")
    func epochChange() throws {
        var net = Network()
        try net.submit(alice, .bond(role: .validator, amount: 150), now: t0)
        let nextMembers = net.replica.nextCommittee()
        let dropped = validatorIdentities.first { id in !nextMembers.contains { $0.identity == id.publicKey } }!
        try net.submit(bob, .epochChange(newEpoch: 1, committee: nextMembers, at: t0 + 1), now: t0 + 1)
        #expect(net.replica.epoch == 1)
        #expect(net.replica.committee.members == nextMembers)
        #expect(net.replica.epochEnds[0] == t0 + 1)
        for validator in net.validators { #expect(validator.ledger.epoch == 1) }

        // An entry still naming epoch 0 is refused by every validator.
        let stale = entry(carol, .transfer(recipient: bob.publicKey, amount: 1), on: net.replica, epoch: 0)
        for index in net.validators.indices {
            #expect(net.vote(index, stale, now: t0 + 2) == .failure(.wrongEpoch(expected: 1, got: 0)))
        }
        // Carol's first entry of epoch 1 leaves her epoch 0: the dropped validator votes only as a
        // member of epoch 0's committee (the anchor); alice (now a member) votes in epoch 1.
        var aliceValidator = Validator(identity: alice, ledger: net.replica)
        let fresh = entry(carol, .transfer(recipient: bob.publicKey, amount: 1), on: net.replica)
        let droppedIndex = validatorIdentities.firstIndex { $0.publicKey == dropped.publicKey }!
        #expect(net.replica.anchorEpoch(for: fresh) == 0)
        #expect(try net.vote(droppedIndex, fresh, now: t0 + 2).get().epoch == 0)
        guard case .persistLock(_, let lock) = aliceValidator.handleRequest(fresh, now: t0 + 2).first else {
            Issue.record("the new member refused")
            return
        }
        #expect(lock.slot.epoch == 1)
        // A certificate from the old committee does not certify an epoch-1 entry.
        let old = CertifiedEntry(entry: fresh, certificate: certificate(fresh, by: validatorIdentities))
        var replica = net.replica
        #expect(throws: LedgerError.notInCommittee(dropped.publicKey)) { try replica.apply(old) }
        // A second change for the same epoch is refused by the state.
        var again = net.replica
        let repeatChange = entry(bob, .epochChange(newEpoch: 1, committee: nextMembers, at: t0 + 3), on: again)
        #expect(throws: LedgerError.wrongEpoch(expected: 2, got: 1)) {
            let voters = nextMembers.map { member in
                ([alice] + validatorIdentities).first { $0.publicKey == member.identity }!
            }
            return try again.apply(
                CertifiedEntry(
                    entry: repeatChange, certificate: certificate(repeatChange, by: voters),
                    anchor: certificate(repeatChange, by: Array(validatorIdentities.prefix(3)), epoch: 0)))
        }
    }
}
