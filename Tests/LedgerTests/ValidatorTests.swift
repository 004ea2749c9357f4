import Testing
import UmbraCore
import UmbraTestKit

@testable import Ledger

@Suite("Validator: persist before vote, one vote per slot")
struct ValidatorTests {
    let start = state()
    var validator: Validator { Validator(identity: validatorIdentities[0], ledger: start) }

    @Test("no vote leaves before the lock is persisted; the persisted input releases exactly one vote")
    func persistBeforeVote() throws {
        var validator = validator
        let request = entry(alice, .transfer(recipient: bob.publicKey, amount: 5), on: start)
        let effects = validator.handleRequest(request, now: t0)
        guard case .persistLock(let token, let lock) = try #require(effects.first), effects.count == 1 else {
            Issue.record("expected one persistLock, got \(effects)")
            return
        }
        #expect(lock == LockRecord(slot: Slot(entry: request), entryHash: request.hash, report: 0, channelMark: .none))
        // A repeat while the lock is being written: still no vote.
        #expect(validator.handleRequest(request, now: t0).isEmpty)
        #expect(validator.persisted(token: token + 1).isEmpty)
        let released = validator.persisted(token: token)
        guard case .sendVote(let vote, nil) = try #require(released.first) else {
            Issue.record("expected a vote, got \(released)")
            return
        }
        #expect(vote.entryHash == request.hash)
        #expect(vote.epoch == 0)
        #expect(vote.hasValidSignature(network: network))
        #expect(validator.persisted(token: token).isEmpty)
        // A repeated request gets the stored vote back, without another persist.
        #expect(validator.handleRequest(request, now: t0) == [.sendVote(vote, proof: nil)])
    }

    @Test("a different entry for a locked slot is refused, durable or not")
    func slotLocked() {
        var validator = validator
        let first = entry(alice, .transfer(recipient: bob.publicKey, amount: 5), on: start)
        let second = entry(alice, .transfer(recipient: bob.publicKey, amount: 6), on: start)
        _ = validator.handleRequest(first, now: t0)
        #expect(validator.handleRequest(second, now: t0) == [.refuse(second.hash, .slotLocked(existing: first.hash))])
        _ = validator.persisted(token: 1)
        #expect(validator.handleRequest(second, now: t0) == [.refuse(second.hash, .slotLocked(existing: first.hash))])
    }

    @Test("after a restart with its lock records, a validator answers with the same vote and refuses others")
    func restart() throws {
        var before = validator
        let request = entry(alice, .transfer(recipient: bob.publicKey, amount: 5), on: start)
        guard case .persistLock(let token, let lock) = before.handleRequest(request, now: t0).first else {
            Issue.record("no persistLock")
            return
        }
        let vote = before.persisted(token: token)
        var after = Validator(identity: validatorIdentities[0], ledger: start, restoredLocks: [lock])
        #expect(after.handleRequest(request, now: t0) == vote)
        let other = entry(alice, .transfer(recipient: bob.publicKey, amount: 6), on: start)
        #expect(after.handleRequest(other, now: t0) == [.refuse(other.hash, .slotLocked(existing: request.hash))])
    }

    @Test("requests are checked: wrong epoch, committee, signature, balance, time skew, channel expiry")
    func refusals() {
        var validator = validator
        let wrongEpoch = entry(alice, .transfer(recipient: bob.publicKey, amount: 5), on: start, epoch: 1)
        #expect(
            validator.handleRequest(wrongEpoch, now: t0) == [.refuse(wrongEpoch.hash, .wrongEpoch(expected: 0, got: 1))]
        )
        let broke = entry(alice, .transfer(recipient: bob.publicKey, amount: 5_000), on: start)
        #expect(
            validator.handleRequest(broke, now: t0)
                == [.refuse(broke.hash, .insufficientBalance(needed: 5_000, available: 1_000))])
        var forged = entry(bob, .transfer(recipient: alice.publicKey, amount: 5), on: start)
        forged.signature[10] ^= 0x40
        #expect(validator.handleRequest(forged, now: t0) == [.refuse(forged.hash, .badSignature)])
        let skewed = entry(alice, .withdraw(at: t0 + 31), on: start)
        #expect(validator.handleRequest(skewed, now: t0) == [.refuse(skewed.hash, .timeOutOfRange)])
        let expired = entry(alice, .channelOpen(provider: carol.publicKey, deposit: 1, expiry: t0), on: start)
        #expect(validator.handleRequest(expired, now: t0) == [.refuse(expired.hash, .channelExpired)])
        var outsider = Validator(identity: alice, ledger: start)
        let fine = entry(bob, .transfer(recipient: alice.publicKey, amount: 5), on: start)
        #expect(outsider.handleRequest(fine, now: t0) == [.refuse(fine.hash, .notInCommittee(alice.publicKey))])
        #expect(validator.pendingPersists == 0)
    }

    @Test("claims raise the acked maximum; a close reports it; after its close vote no claim is acked")
    func channelMarks() throws {
        var net = Network()
        let open = try net.submit(
            alice, .channelOpen(provider: carol.publicKey, deposit: 500, expiry: t0 + 60), now: t0)
        let id = open.entry.hash
        let promise100 = ChannelPromise.make(channel: id, amount: 100, consumer: alice, network: network)
        let claim1 = entry(carol, .channelClaim(promise100), on: net.replica)
        var lone = net.validators[0]
        _ = lone.handleRequest(claim1, now: t0)
        #expect(lone.ackedClaims[id] == 100)
        // The claim was never certified; the consumer closes after expiry: the vote reports 100.
        let close = entry(alice, .channelClose(channel: id, at: t0 + 61), on: net.replica)
        guard case .persistLock(let token, let lock) = lone.handleRequest(close, now: t0 + 61).first else {
            Issue.record("close refused")
            return
        }
        #expect(lock.report == 100)
        #expect(lock.channelMark == .close(id, proof: promise100))
        guard case .sendVote(let vote, let proof) = lone.persisted(token: token).first else { return }
        #expect(vote.report == 100 && proof == promise100, "the report travels with its promise")
        #expect(lone.closeVotes[id] == 100)
        // Any claim after that is refused, however high.
        let claim2 = LedgerEntry.make(
            network: network, epoch: 0, identity: carol, height: 1, prev: .zero,
            body: .channelClaim(.make(channel: id, amount: 400, consumer: alice, network: network)))
        #expect(lone.handleRequest(claim2, now: t0 + 62) == [.refuse(claim2.hash, .channelClosing(id))])
    }

    @Test("an epoch change is voted for only with the deterministic next committee")
    func epochChangeCommittee() {
        var validator = validator
        let wrong = entry(
            alice,
            .epochChange(newEpoch: 1, committee: [CommitteeMember(identity: alice.publicKey, stake: 100)], at: t0),
            on: start)
        #expect(
            validator.handleRequest(wrong, now: t0)
                == [.refuse(wrong.hash, .invalidCommittee("not the top 4 validator bonds"))])
        let right = entry(alice, .epochChange(newEpoch: 1, committee: start.nextCommittee(), at: t0), on: start)
        guard case .persistLock = validator.handleRequest(right, now: t0).first else {
            Issue.record("the right committee was refused")
            return
        }
    }
}

@Suite("Certificates and the collector")
struct CertificateTests {
    @Test(
        "a certificate needs strictly more than two thirds of the stake",
        arguments: [
            // (stakes, how many of the first voters sign, quorum?)
            ([100, 100, 100], 2, false),  // exactly 2/3
            ([100, 100, 100], 3, true),
            ([100, 100, 100, 100], 3, true),  // 3/4
            ([100, 100, 100, 100], 2, false),
            ([200, 99, 1], 1, false),  // exactly 2/3 of 300
            ([201, 99], 1, true),  // 603 > 600
            ([200, 100], 1, false),  // exactly 2/3
            ([200, 99, 1], 2, true),  // 299/300
        ])
    func quorumBoundary(stakes: [Int], signers: Int, expected: Bool) throws {
        let voters = (0..<stakes.count).map { identity(index: 100 + $0) }
        let members = zip(voters, stakes).map { CommitteeMember(identity: $0.publicKey, stake: Amount($1)) }
        let committee = try Committee(members)
        let signed = stakes.prefix(signers).reduce(0, +)
        let quorum = 3 * signed > 2 * stakes.reduce(0, +)
        #expect(exceedsTwoThirds(Amount(signed), of: committee.totalStake) == quorum)
        #expect(quorum == expected)
        let request = LedgerEntry.make(
            network: network, epoch: 0, identity: alice, height: 0, prev: .zero,
            body: .transfer(recipient: bob.publicKey, amount: 1))
        var collector = CertificateCollector(entry: request, committee: committee)
        var made: Certificate?
        for voter in voters.prefix(signers) {
            let vote = Vote.make(
                identity: voter, network: network, slot: Slot(entry: request), entryHash: request.hash, report: 0)
            if let certificate = try collector.add(vote) { made = certificate }
            #expect(try collector.add(vote) == nil)  // a repeat is ignored
        }
        #expect((made != nil) == quorum)
        let full = certificate(request, by: Array(voters.prefix(signers)))
        if quorum {
            try full.verify(for: request, committee: committee)
            #expect(made.map { Set($0.votes) } == Set(full.votes))
        } else {
            #expect(throws: LedgerError.noQuorum(signed: Amount(signed), total: committee.totalStake)) {
                try full.verify(for: request, committee: committee)
            }
        }
    }

    @Test("the two-thirds rule never overflows near UInt64.max")
    func quorumOverflow() {
        #expect(exceedsTwoThirds(.max, of: .max))
        #expect(!exceedsTwoThirds(.max / 3 * 2, of: .max))
        #expect(exceedsTwoThirds(.max / 3 * 2 + 2, of: .max))
        #expect(!exceedsTwoThirds(0, of: 0))
    }

    @Test("the collector and verify refuse wrong epoch, other entries, outsiders, bad signatures, duplicates")
    func collectorRefusals() throws {
        let ledger = state()
        let request = entry(alice, .transfer(recipient: bob.publicKey, amount: 1), on: ledger)
        var collector = CertificateCollector(entry: request, committee: ledger.committee)
        let member = validatorIdentities[0]
        var vote = Vote.make(
            identity: member, network: network, slot: Slot(entry: request), entryHash: request.hash, report: 0)
        var wrongEpoch = Vote.make(
            identity: member, network: network, slot: Slot(account: alice.publicKey, height: 0, epoch: 1),
            entryHash: request.hash, report: 0)
        #expect(throws: LedgerError.wrongEpoch(expected: 0, got: 1)) { try collector.add(wrongEpoch) }
        wrongEpoch.epoch = 0
        #expect(throws: LedgerError.badVoteSignature(member.publicKey)) { try collector.add(wrongEpoch) }
        let other = Vote.make(
            identity: member, network: network, slot: Slot(entry: request), entryHash: .zero, report: 0)
        #expect(throws: LedgerError.voteForOtherEntry) { try collector.add(other) }
        let outsider = Vote.make(
            identity: alice, network: network, slot: Slot(entry: request), entryHash: request.hash, report: 0)
        #expect(throws: LedgerError.notInCommittee(alice.publicKey)) { try collector.add(outsider) }
        vote.report = 5
        #expect(throws: LedgerError.badVoteSignature(member.publicKey)) { try collector.add(vote) }
        #expect(collector.collectedStake == 0)

        var cert = certificate(request, by: Array(validatorIdentities.prefix(3)))
        cert.votes.append(cert.votes[0])
        #expect(throws: LedgerError.duplicateVote(cert.votes[0].validator)) {
            try cert.verify(for: request, committee: ledger.committee)
        }
        let foreign = certificate(request, by: [alice] + Array(validatorIdentities.prefix(3)))
        #expect(throws: LedgerError.notInCommittee(alice.publicKey)) {
            try foreign.verify(for: request, committee: ledger.committee)
        }
    }
}
