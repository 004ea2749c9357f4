// The defects the ledger review found (docs/threat-model.md, "Found in review"): each test fails on
// the code before its fix.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Ledger

@Suite("Review fixes: epochs, close reports, slashing, locks")
struct ReviewFixTests {
    /// A network whose epoch-1 committee differs from epoch 0's (alice bonds past one validator),
    /// with carol's entry `held` certified in epoch 0 but withheld from everyone.
    private static func withheldBeforeEpochChange() throws -> (Network, held: CertifiedEntry, dropped: Int) {
        var net = Network()
        try net.submit(alice, .bond(role: .validator, amount: 150), now: t0)
        let held = entry(carol, .transfer(recipient: bob.publicKey, amount: 150), on: net.replica)
        var collector = CertificateCollector(entry: held, committee: net.replica.committee)
        var made: Certificate?
        for index in net.validators.indices {
            if case .success(let vote) = net.vote(index, held, now: t0) { made = try collector.add(vote) ?? made }
        }
        let next = net.replica.nextCommittee()
        try net.submit(bob, .epochChange(newEpoch: 1, committee: next, at: t0 + 1), now: t0 + 1)
        let dropped = validatorIdentities.firstIndex { id in !next.contains { $0.identity == id.publicKey } }!
        // Alice, now a member, votes from here on.
        net.validators.append(Validator(identity: alice, ledger: net.replica))
        return (net, CertifiedEntry(entry: held, certificate: try #require(made)), dropped)
    }

    @Test("a position certified in epoch 0 and withheld cannot be certified again in epoch 1")
    func noDoubleSpendAcrossAnEpochChange() throws {
        var (net, held, _) = try Self.withheldBeforeEpochChange()
        #expect(net.replica.epoch == 1)
        let conflicting = entry(carol, .transfer(recipient: alice.publicKey, amount: 150), on: net.replica)
        #expect(conflicting.height == held.entry.height && conflicting.epoch == 1)

        // The validators that voted for the withheld entry hold its position across epochs.
        for index in validatorIdentities.indices {
            #expect(net.vote(index, conflicting, now: t0 + 2) == .failure(.slotLocked(existing: held.entry.hash)))
        }
        // Even if the whole epoch-1 committee signed it (say it never saw the first), a replica
        // refuses it without the anchor of epoch 0's committee, which the locks above withhold.
        let newMembers = ([alice] + validatorIdentities).filter { id in
            net.replica.committee.contains(id.publicKey)
        }
        let bare = CertifiedEntry(entry: conflicting, certificate: certificate(conflicting, by: newMembers))
        var replica = net.replica
        #expect(throws: LedgerError.anchorRequired(epoch: 0)) { try replica.apply(bare) }
        // The withheld entry still applies, and then nothing else can take its position.
        #expect(try replica.apply(held) == .applied(held.entry.hash))
        #expect(throws: LedgerError.wrongHeight(expected: 1, got: 0)) { try replica.apply(bare) }
        #expect(replica.balance(of: carol.publicKey) == 50)
    }

    @Test("a crossing is certified with the anchor of its account's epoch; epochs never go back")
    func crossingNeedsTheAnchor() throws {
        var (net, _, dropped) = try Self.withheldBeforeEpochChange()
        let crossing = entry(alice, .transfer(recipient: bob.publicKey, amount: 1), on: net.replica)
        #expect(net.replica.anchorEpoch(for: crossing) == 0)
        // The dropped validator still anchors in epoch 0's committee; nobody votes in epoch 0 otherwise.
        let certified = try net.certify(crossing, now: t0 + 2)
        #expect(certified.anchor?.epoch == 0)
        let anchorSlot = Slot(account: alice.publicKey, height: crossing.height, epoch: 0)
        #expect(net.validators[dropped].lock(for: anchorSlot)?.entryHash == crossing.hash)
        #expect(try CertifiedEntry(decoding: certified.encoded()) == certified)
        #expect(net.replica.accounts[alice.publicKey]?.epoch == 1)
        // Her next entry stays in epoch 1: no anchor, and an anchor would be refused.
        let next = entry(alice, .transfer(recipient: bob.publicKey, amount: 1), on: net.replica)
        #expect(net.replica.anchorEpoch(for: next) == nil)
        let back = entry(alice, .transfer(recipient: bob.publicKey, amount: 1), on: net.replica, epoch: 0)
        #expect(throws: LedgerError.wrongEpoch(expected: 1, got: 0)) { try net.replica.check(back) }
    }

    @Test("two votes of one validator for one position in two epochs are evidence")
    func doubleVoteAcrossEpochs() throws {
        let ledger = state()
        let first = entry(carol, .transfer(recipient: bob.publicKey, amount: 1), on: ledger)
        let second = entry(carol, .transfer(recipient: alice.publicKey, amount: 1), on: ledger, epoch: 1)
        let offender = validatorIdentities[2]
        let votes = [first, second].map {
            Vote.make(identity: offender, network: network, slot: Slot(entry: $0), entryHash: $0.hash, report: 0)
        }
        let offense = try Evidence.doubleVote(votes[0], votes[1]).verify(network: network)
        #expect(offense.offender == offender.publicKey && offense.epoch == 1)
        // One vote as a member and one as an anchor for the same entry is no offense.
        let anchor = Vote.make(
            identity: offender, network: network, slot: Slot(account: carol.publicKey, height: 0, epoch: 1),
            entryHash: first.hash, report: 0)
        #expect(throws: LedgerError.invalidEvidence("the votes are for one entry")) {
            try Evidence.doubleVote(votes[0], anchor).verify(network: network)
        }
    }

    @Test("a close report counts only with the consumer's promise of it")
    func closeReportsAreProven() throws {
        var ledger = state()
        let open = try append(
            alice, .channelOpen(provider: carol.publicKey, deposit: 300, expiry: t0 + 60), to: &ledger)
        let close = entry(alice, .channelClose(channel: open.hash, at: t0 + 61), on: ledger)
        let voters = Array(validatorIdentities.prefix(3))

        // One faulty member reports the whole deposit with nothing to show: refused.
        var unproven = certificate(close, by: voters)
        let faulty = Vote.make(
            identity: voters[0], network: network, slot: Slot(entry: close), entryHash: close.hash, report: 300)
        unproven.votes = unproven.votes.map {
            $0.validator == faulty.validator
                ? CertificateVote(validator: faulty.validator, report: 300, signature: faulty.signature) : $0
        }
        var replica = ledger
        #expect(throws: LedgerError.unprovenReport(faulty.validator)) {
            try replica.apply(CertifiedEntry(entry: close, certificate: unproven))
        }
        // A promise the consumer did not sign, or one for another channel, proves nothing.
        let forged = ChannelPromise.make(channel: open.hash, amount: 300, consumer: carol, network: network)
        #expect(throws: LedgerError.badPromiseSignature) {
            try replica.apply(CertifiedEntry(entry: close, certificate: certificate(close, by: voters, proof: forged)))
        }
        let elsewhere = ChannelPromise.make(channel: .zero, amount: 300, consumer: alice, network: network)
        #expect(throws: LedgerError.self) {
            try replica.apply(
                CertifiedEntry(entry: close, certificate: certificate(close, by: voters, proof: elsewhere)))
        }
        // The collector refuses such votes as they arrive.
        var collector = CertificateCollector(
            entry: close, committee: ledger.committee, channelConsumer: alice.publicKey)
        #expect(throws: LedgerError.unprovenReport(faulty.validator)) { try collector.add(faulty) }
        #expect(throws: LedgerError.unprovenReport(faulty.validator)) { try collector.add(faulty, proof: forged) }
        #expect(replica.balance(of: carol.publicKey) == 200)

        // With the real promise of 90, the provider gets 90 and the consumer the rest.
        let real = ChannelPromise.make(channel: open.hash, amount: 90, consumer: alice, network: network)
        try applyCertified(close, to: &replica, proof: real)
        #expect(replica.channels[open.hash]?.settlement == Channel.Settlement(paid: 90, refunded: 210))
        #expect(replica.totalHeld == replica.supply)
    }

    @Test("an offender reporting itself collects no reward: all its stake is burned")
    func selfReportEarnsNothing() throws {
        var ledger = state()
        let offender = validatorIdentities[3]
        let first = entry(alice, .transfer(recipient: bob.publicKey, amount: 1), on: ledger)
        let second = entry(alice, .transfer(recipient: carol.publicKey, amount: 1), on: ledger)
        let votes = [first, second].map {
            Vote.make(identity: offender, network: network, slot: Slot(entry: $0), entryHash: $0.hash, report: 0)
        }
        let before = ledger.balance(of: offender.publicKey)
        try append(offender, .evidence(.doubleVote(votes[0], votes[1]), at: t0), to: &ledger)
        #expect(ledger.balance(of: offender.publicKey) == before)
        #expect(ledger.accounts[offender.publicKey]?.slashed == 100)
        #expect(ledger.burned == 100)
        #expect(ledger.totalHeld + ledger.burned == ledger.supply)
    }

    @Test("a verified entry waits and applies later without its certificate checked again; a refusal changes nothing")
    func verifyOnceApplyLater() throws {
        var ledger = state()
        let first = entry(alice, .transfer(recipient: bob.publicKey, amount: 10), on: ledger)
        let second = LedgerEntry.make(
            network: network, epoch: 0, identity: alice, height: 1, prev: first.hash,
            body: .transfer(recipient: bob.publicKey, amount: 1_500))
        let waiting = try ledger.verify(
            CertifiedEntry(entry: second, certificate: certificate(second, by: Array(validatorIdentities.prefix(3)))))
        #expect(throws: LedgerError.wrongHeight(expected: 0, got: 1)) { try ledger.apply(waiting) }
        try applyCertified(first, to: &ledger)
        let before = (ledger.accounts, ledger.channels, ledger.applied)
        #expect(throws: LedgerError.insufficientBalance(needed: 1_500, available: 990)) { try ledger.apply(waiting) }
        #expect(ledger.accounts == before.0 && ledger.channels == before.1 && ledger.applied == before.2)
        try append(bob, .transfer(recipient: alice.publicKey, amount: 510), to: &ledger)
        #expect(try ledger.apply(waiting) == .applied(second.hash))
        #expect(ledger.balance(of: alice.publicKey) == 0)
    }

    @Test("locks below an account's certified height are released for deletion; channel marks stay")
    func locksAreReleased() throws {
        var net = Network()
        var certified: [CertifiedEntry] = []
        for amount in Amount(1)...3 {
            certified.append(try net.submit(carol, .transfer(recipient: bob.publicKey, amount: amount), now: t0))
        }
        let released = net.validators[0].takeReleasedLocks()
        #expect(Set(released) == Set(certified.prefix(2).map { Slot(entry: $0.entry) }))
        #expect(net.validators[0].lockCount == 1, "the last certified height keeps its lock")
        #expect(net.validators[0].takeReleasedLocks().isEmpty)

        let open = try net.submit(
            alice, .channelOpen(provider: carol.publicKey, deposit: 100, expiry: t0 + 60), now: t0)
        let promise = ChannelPromise.make(channel: open.entry.hash, amount: 5, consumer: alice, network: network)
        let claim = try net.submit(carol, .channelClaim(promise), now: t0)
        _ = net.validators[0].takeReleasedLocks()
        try net.submit(carol, .transfer(recipient: bob.publicKey, amount: 1), now: t0)
        try net.submit(carol, .transfer(recipient: bob.publicKey, amount: 1), now: t0)
        let later = net.validators[0].takeReleasedLocks()
        #expect(!later.contains(Slot(entry: claim.entry)), "a claim's lock is kept")
        #expect(net.validators[0].lock(for: Slot(entry: claim.entry)) != nil)
    }

    @Test("a lock whose write failed is written again on the next request, then votes")
    func failedLockWriteIsRetried() throws {
        var validator = Validator(identity: validatorIdentities[0], ledger: state())
        let request = entry(alice, .transfer(recipient: bob.publicKey, amount: 5), on: validator.ledger)
        guard case .persistLock(let token, let lock) = validator.handleRequest(request, now: t0).first else {
            Issue.record("no persistLock")
            return
        }
        validator.persistFailed(token: token)
        #expect(validator.persisted(token: token).isEmpty, "a failed token releases nothing")
        let other = entry(alice, .transfer(recipient: bob.publicKey, amount: 6), on: validator.ledger)
        #expect(validator.handleRequest(other, now: t0) == [.refuse(other.hash, .slotLocked(existing: request.hash))])
        guard case .persistLock(let retry, let again) = validator.handleRequest(request, now: t0).first else {
            Issue.record("no second write")
            return
        }
        #expect(again == lock && retry != token)
        #expect(validator.handleRequest(request, now: t0).isEmpty, "in flight again: nothing")
        guard case .sendVote(let vote, nil) = validator.persisted(token: retry).first else {
            Issue.record("no vote after the retried write")
            return
        }
        #expect(vote.entryHash == request.hash)
    }

    @Test("a stored lock that cannot be read keeps its position refused until the account passes it")
    func unreadableLockRefuses() throws {
        var net = Network()
        let request = entry(alice, .transfer(recipient: bob.publicKey, amount: 5), on: net.replica)
        var validator = Validator(
            identity: validatorIdentities[0], ledger: net.replica, unreadableSlots: [Slot(entry: request)])
        #expect(validator.handleRequest(request, now: t0) == [.refuse(request.hash, .lockUnreadable)])
        #expect(RefusalCode(.lockUnreadable) == .slotLocked)
        // The others certify alice's height 0 and 1; the position is released with the lower ones.
        net.validators.removeFirst()
        let first = try net.certify(request, now: t0)
        _ = try validator.applyCertified(first)
        _ = try validator.applyCertified(try net.submit(alice, .transfer(recipient: bob.publicKey, amount: 1), now: t0))
        #expect(validator.takeReleasedLocks() == [Slot(entry: request)])
    }
}
