import Testing
import UmbraCore
import UmbraTestKit

@testable import Ledger

@Suite("Channel settlement properties")
struct ChannelPropertyTests {
    @Test("paid + refunded = deposit and paid covers every certified claim, over many seeded cases", arguments: 0..<40)
    func settlementMath(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        var ledger = state()
        let deposit = Amount.random(in: 1...900, using: &rng)
        let open = try append(
            alice, .channelOpen(provider: carol.publicKey, deposit: deposit, expiry: t0 + 60), to: &ledger)
        var highestCertified: Amount = 0
        for _ in 0..<Int.random(in: 0...4, using: &rng) {
            let amount = Amount.random(in: 0...deposit, using: &rng)
            try append(
                carol, .channelClaim(.make(channel: open.hash, amount: amount, consumer: alice, network: network)),
                to: &ledger)
            highestCertified = max(highestCertified, amount)
        }
        // The close certificate's votes report what each validator acked, each with the consumer's
        // promise (possibly above the deposit, which the consumer may sign: the ledger caps it).
        let reports = (0..<3).map { _ in Amount.random(in: 0...(deposit + 10), using: &rng) }
        let closer = Bool.random(using: &rng) ? alice : carol
        let close = entry(closer, .channelClose(channel: open.hash, at: t0 + 60), on: ledger)
        let votes = zip(validatorIdentities.prefix(3), reports).map { who, report in
            let vote = Vote.make(
                identity: who, network: network, slot: Slot(entry: close), entryHash: close.hash, report: report)
            let proof = ChannelPromise.make(channel: open.hash, amount: report, consumer: alice, network: network)
            return CertificateVote(
                validator: vote.validator, report: vote.report, signature: vote.signature,
                proof: report > 0 ? proof : nil)
        }
        let certificate = Certificate(
            epoch: 0, account: close.account, height: close.height, entryHash: close.hash, votes: votes)
        _ = try ledger.apply(CertifiedEntry(entry: close, certificate: certificate))
        let settlement = try #require(ledger.channels[open.hash]?.settlement)
        #expect(settlement.paid + settlement.refunded == deposit)
        #expect(settlement.paid == min(deposit, max(highestCertified, reports.max()!)))
        #expect(settlement.paid >= highestCertified)
        #expect(ledger.totalHeld + ledger.burned == ledger.supply)
    }

    @Test("a validator's close report covers every claim it acked, whatever the order of requests", arguments: 0..<40)
    func validatorCloseRule(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        var ledger = state()
        let open = try append(
            alice, .channelOpen(provider: carol.publicKey, deposit: 500, expiry: t0 + 60), to: &ledger)
        var validator = Validator(identity: validatorIdentities[0], ledger: ledger)
        var acked: [Amount] = []
        var report: Amount?
        let closeAt = Int.random(in: 0...6, using: &rng)
        for step in 0...6 {
            if step == closeAt {
                let close = entry(alice, .channelClose(channel: open.hash, at: t0 + 61), on: validator.ledger)
                guard case .persistLock(let token, let lock) = validator.handleRequest(close, now: t0 + 61).first else {
                    Issue.record("close refused")
                    return
                }
                report = lock.report
                guard case .sendVote(let vote, _) = validator.persisted(token: token).first else {
                    Issue.record("no close vote")
                    return
                }
                #expect(vote.report == lock.report)
                continue
            }
            let amount = Amount.random(in: 0...500, using: &rng)
            let promise = ChannelPromise.make(channel: open.hash, amount: amount, consumer: alice, network: network)
            let claim = entry(carol, .channelClaim(promise), on: validator.ledger)
            let effects = validator.handleRequest(claim, now: t0 + 61)
            switch effects.first {
            case .persistLock(let token, _):
                #expect(report == nil, "a claim was acked after the close vote")
                _ = validator.persisted(token: token)
                acked.append(amount)
                // Sometimes the claim is certified (and the provider moves to its next height).
                if Bool.random(using: &rng) {
                    let certified = CertifiedEntry(
                        entry: claim, certificate: certificate(claim, by: Array(validatorIdentities.prefix(3))))
                    _ = try validator.applyCertified(certified)
                }
            case .refuse(_, .channelClosing): #expect(report != nil)
            case .refuse(_, .slotLocked): break  // the provider's slot holds an uncertified claim
            default: Issue.record("unexpected \(effects)")
            }
        }
        let closeReport = try #require(report)
        #expect(acked.allSatisfy { $0 <= closeReport })
    }
}

@Suite("A small deterministic network with one byzantine validator")
struct ByzantineSimulationTests {
    @Test(
        "an equivocating account and a double-voting validator: never two certificates for one slot, and evidence slashes",
        arguments: 0..<12)
    func equivocationRace(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        var net = Network()
        let byzantine = 3
        let toBob = entry(alice, .transfer(recipient: bob.publicKey, amount: 100), on: net.replica)
        let toCarol = entry(alice, .transfer(recipient: carol.publicKey, amount: 100), on: net.replica)
        var collectors = [toBob, toCarol].map { CertificateCollector(entry: $0, committee: net.replica.committee) }
        var certificates: [Certificate] = []
        var byzantineVotes: [Vote] = []

        // Every (validator, entry) request in a seeded order; persists complete in a seeded order too.
        var requests = (0..<4).flatMap { validator in [(validator, 0), (validator, 1)] }
        requests.shuffle(using: &rng)
        var waiting: [(Int, UInt64)] = []
        func deliver(_ vote: Vote) throws {
            let index = vote.entryHash == toBob.hash ? 0 : 1
            if let made = try collectors[index].add(vote) { certificates.append(made) }
        }
        for (validator, which) in requests {
            let request = which == 0 ? toBob : toCarol
            if validator == byzantine {
                // Signs whatever it is asked, skipping its lock.
                let vote = Vote.make(
                    identity: validatorIdentities[validator], network: network, slot: Slot(entry: request),
                    entryHash: request.hash, report: 0)
                byzantineVotes.append(vote)
                try deliver(vote)
                continue
            }
            for effect in net.validators[validator].handleRequest(request, now: t0) {
                switch effect {
                case .persistLock(let token, _): waiting.append((validator, token))
                case .sendVote(let vote, _): try deliver(vote)
                case .refuse(_, let error):
                    #expect(error == .slotLocked(existing: toBob.hash) || error == .slotLocked(existing: toCarol.hash))
                }
            }
            if Bool.random(using: &rng), !waiting.isEmpty {
                let (index, token) = waiting.remove(at: Int.random(in: 0..<waiting.count, using: &rng))
                for case .sendVote(let vote, _) in net.validators[index].persisted(token: token) { try deliver(vote) }
            }
        }
        waiting.shuffle(using: &rng)
        for (index, token) in waiting {
            for case .sendVote(let vote, _) in net.validators[index].persisted(token: token) { try deliver(vote) }
        }

        // Quorum intersection: at most one of the two conflicting entries is certified.
        #expect(certificates.count <= 1)
        #expect(byzantineVotes.count == 2)
        if let certificate = certificates.first {
            let certified = CertifiedEntry(
                entry: certificate.entryHash == toBob.hash ? toBob : toCarol, certificate: certificate)
            try net.distribute(certified)
        }

        // The byzantine validator's two votes are evidence on their own; certified, they burn its stake.
        let evidence = Evidence.doubleVote(byzantineVotes[0], byzantineVotes[1])
        #expect(try evidence.verify(network: network).offender == validatorIdentities[byzantine].publicKey)
        try net.submit(bob, .evidence(evidence, at: t0 + 1), now: t0 + 1)
        for ledger in [net.replica] + net.validators.map(\.ledger) {
            #expect(ledger.accounts[validatorIdentities[byzantine].publicKey]?.bonded(.validator) == 0)
            #expect(ledger.accounts[validatorIdentities[byzantine].publicKey]?.slashed == 100)
            #expect(ledger.totalHeld + ledger.burned == ledger.supply)
        }
        // Alice's two signed entries for height 0 are evidence against her too (she holds no stake, so
        // it is refused as pointless, but it verifies).
        #expect(try Evidence.equivocation(toBob, toCarol).verify(network: network).offender == alice.publicKey)
        // Every honest replica agrees.
        let balances = net.validators.map { $0.ledger.balance(of: bob.publicKey) }
        #expect(Set(balances + [net.replica.balance(of: bob.publicKey)]).count == 1)
    }
}
