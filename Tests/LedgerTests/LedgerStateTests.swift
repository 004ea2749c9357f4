import Testing
import UmbraCore
import UmbraTestKit

@testable import Ledger

@Suite("Ledger state: kind rules")
struct LedgerStateTests {
    @Test("genesis mints the allocations and the committee's bonds; invalid genesis parameters are refused")
    func genesisState() throws {
        let ledger = state()
        #expect(ledger.balance(of: alice.publicKey) == 1_000)
        #expect(ledger.accounts[validatorIdentities[0].publicKey]?.bonded(.validator) == 100)
        #expect(ledger.supply == 1_700 + 400)
        #expect(ledger.totalHeld == ledger.supply)
        #expect(ledger.committee.totalStake == 400)

        #expect(
            throws: LedgerError.invalidField(field: "unbonding delay", reason: "must be at least the evidence lifetime")
        ) {
            try LedgerState(genesis: genesis(unbondingDelay: .seconds(10), evidenceLifetime: .seconds(11)))
        }
        #expect(throws: LedgerError.bondBelowMinimum(role: .validator, minimum: 50)) {
            try LedgerState(genesis: genesis(committee: [CommitteeMember(identity: alice.publicKey, stake: 49)]))
        }
        #expect(throws: LedgerError.invalidCommittee("a member listed twice")) {
            let member = CommitteeMember(identity: alice.publicKey, stake: 60)
            return try LedgerState(genesis: genesis(committee: [member, member]))
        }
        #expect(throws: LedgerError.overflow) {
            try LedgerState(
                genesis: genesis(allocations: [
                    Allocation(recipient: alice.publicKey, amount: .max),
                    Allocation(recipient: bob.publicKey, amount: 1),
                ]))
        }
        #expect(throws: LedgerError.self) { try LedgerState(genesis: genesis(committeeSize: 3)) }
        #expect(throws: LedgerError.self) { try LedgerState(genesis: genesis(reporterRewardPPM: 1_000_001)) }
    }

    @Test("a transfer moves the amount; a repeat is a duplicate that credits nothing twice")
    func transfer() throws {
        var ledger = state()
        let made = entry(alice, .transfer(recipient: bob.publicKey, amount: 300), on: ledger)
        #expect(try applyCertified(made, to: &ledger) == .applied(made.hash))
        #expect(ledger.balance(of: alice.publicKey) == 700)
        #expect(ledger.balance(of: bob.publicKey) == 800)
        #expect(try applyCertified(made, to: &ledger) == .duplicate(made.hash))
        #expect(ledger.balance(of: bob.publicKey) == 800)
        #expect(ledger.accounts[alice.publicKey]?.nextHeight == 1)
        #expect(ledger.accounts[alice.publicKey]?.head == made.hash)
        #expect(ledger.totalHeld == ledger.supply)
    }

    @Test("transfer errors: insufficient balance, unknown account, zero, to self, overflow")
    func transferErrors() throws {
        var ledger = state()
        let dave = identity(4)
        #expect(throws: LedgerError.insufficientBalance(needed: 1_001, available: 1_000)) {
            try applyCertified(
                entry(alice, .transfer(recipient: bob.publicKey, amount: 1_001), on: ledger), to: &ledger)
        }
        #expect(throws: LedgerError.unknownAccount(dave.publicKey)) {
            try applyCertified(entry(dave, .transfer(recipient: bob.publicKey, amount: 1), on: ledger), to: &ledger)
        }
        #expect(throws: LedgerError.invalidField(field: "amount", reason: "must be positive")) {
            try applyCertified(entry(alice, .transfer(recipient: bob.publicKey, amount: 0), on: ledger), to: &ledger)
        }
        #expect(throws: LedgerError.invalidField(field: "recipient", reason: "is the sender")) {
            try applyCertified(entry(alice, .transfer(recipient: alice.publicKey, amount: 1), on: ledger), to: &ledger)
        }
        // Supply is capped at genesis, so no credit can overflow; the checked helpers refuse anyway.
        #expect(throws: LedgerError.overflow) { try Amount.max.adding(1) }
        #expect(throws: LedgerError.overflow) { try Amount(1).subtracting(2) }
        #expect(Amount(1_000_001).scaled(by: 999_999, over: 1_000_000) == 999_999)
        #expect(Amount.max.scaled(by: 1_000_000, over: 1_000_000) == .max)
        #expect(ledger.balance(of: alice.publicKey) == 1_000)
    }

    @Test("height, prev, network, signature, genesis kind and certificate are all checked")
    func chainRules() throws {
        var ledger = state()
        let body = EntryBody.transfer(recipient: bob.publicKey, amount: 1)
        let skip = LedgerEntry.make(network: network, epoch: 0, identity: alice, height: 1, prev: .zero, body: body)
        #expect(throws: LedgerError.wrongHeight(expected: 0, got: 1)) { try applyCertified(skip, to: &ledger) }
        let first = try append(alice, body, to: &ledger)
        let badPrev = LedgerEntry.make(network: network, epoch: 0, identity: alice, height: 1, prev: .zero, body: body)
        #expect(throws: LedgerError.wrongPrev) { try applyCertified(badPrev, to: &ledger) }
        let otherNetwork = LedgerEntry.make(
            network: "elsewhere", epoch: 0, identity: alice, height: 1, prev: first.hash, body: body)
        #expect(throws: LedgerError.wrongNetwork("elsewhere")) { try applyCertified(otherNetwork, to: &ledger) }
        var forged = entry(alice, body, on: ledger)
        forged.signature[0] ^= 1
        #expect(throws: LedgerError.badSignature) { try applyCertified(forged, to: &ledger) }
        #expect(throws: LedgerError.genesisEntry) {
            try applyCertified(
                entry(alice, .genesisAllocation(recipient: alice.publicKey, amount: 5), on: ledger), to: &ledger)
        }
        let next = entry(alice, body, on: ledger)
        let weak = CertifiedEntry(entry: next, certificate: certificate(next, by: Array(validatorIdentities.prefix(2))))
        #expect(throws: LedgerError.noQuorum(signed: 200, total: 400)) { try ledger.apply(weak) }
        let future = entry(alice, body, on: ledger, epoch: 3)
        #expect(throws: LedgerError.unknownEpoch(3)) { try applyCertified(future, to: &ledger) }
        #expect(ledger.accounts[alice.publicKey]?.nextHeight == 1)
    }

    @Test("bond, unbond and withdraw: minimums, the unbonding delay and its errors")
    func bonds() throws {
        var ledger = state()
        #expect(throws: LedgerError.bondBelowMinimum(role: .relay, minimum: 20)) {
            try append(alice, .bond(role: .relay, amount: 19), to: &ledger)
        }
        #expect(throws: LedgerError.insufficientBalance(needed: 2_000, available: 1_000)) {
            try append(alice, .bond(role: .validator, amount: 2_000), to: &ledger)
        }
        try append(alice, .bond(role: .relay, amount: 20), to: &ledger)
        try append(alice, .bond(role: .relay, amount: 1), to: &ledger)  // adds to a bond above the minimum
        try append(alice, .bond(role: .provider, amount: 100), to: &ledger)
        #expect(ledger.accounts[alice.publicKey]?.bonded(.relay) == 21)
        #expect(ledger.balance(of: alice.publicKey) == 879)

        #expect(throws: LedgerError.insufficientBond(role: .relay, bonded: 21)) {
            try append(alice, .unbond(role: .relay, amount: 22, at: t0), to: &ledger)
        }
        #expect(throws: LedgerError.bondBelowMinimum(role: .relay, minimum: 20)) {
            try append(alice, .unbond(role: .relay, amount: 2, at: t0), to: &ledger)
        }
        #expect(throws: LedgerError.nothingToWithdraw) { try append(alice, .withdraw(at: t0), to: &ledger) }
        try append(alice, .unbond(role: .relay, amount: 21, at: t0), to: &ledger)
        try append(alice, .unbond(role: .provider, amount: 40, at: t0 + 10), to: &ledger)
        #expect(ledger.accounts[alice.publicKey]?.bonded(.relay) == 0)
        #expect(throws: LedgerError.withdrawBeforeDelay(releaseAt: t0 + 100)) {
            try append(alice, .withdraw(at: t0 + 99), to: &ledger)
        }
        try append(alice, .withdraw(at: t0 + 100), to: &ledger)
        #expect(ledger.balance(of: alice.publicKey) == 900)
        #expect(ledger.accounts[alice.publicKey]?.unbonding.count == 1)
        try append(alice, .withdraw(at: t0 + 200), to: &ledger)
        #expect(ledger.balance(of: alice.publicKey) == 940)
        #expect(ledger.totalHeld == ledger.supply)
    }

    @Test("at most a fixed number of unbondings wait at once")
    func unbondingCap() throws {
        var ledger = state()
        try append(alice, .bond(role: .provider, amount: 500), to: &ledger)
        for index in 0..<LedgerLimits.maximumPendingUnbondings {
            try append(alice, .unbond(role: .provider, amount: 1, at: t0 + index), to: &ledger)
        }
        #expect(throws: LedgerError.tooManyUnbondings) {
            try append(alice, .unbond(role: .provider, amount: 1, at: t0), to: &ledger)
        }
    }

    @Test("channel open, claim and close: who may do what, and when")
    func channelRules() throws {
        var ledger = state()
        #expect(throws: LedgerError.invalidField(field: "provider", reason: "is the consumer")) {
            try append(alice, .channelOpen(provider: alice.publicKey, deposit: 10, expiry: t0 + 60), to: &ledger)
        }
        #expect(throws: LedgerError.invalidField(field: "deposit", reason: "must be positive")) {
            try append(alice, .channelOpen(provider: carol.publicKey, deposit: 0, expiry: t0 + 60), to: &ledger)
        }
        let open = try append(
            alice, .channelOpen(provider: carol.publicKey, deposit: 300, expiry: t0 + 60), to: &ledger)
        let id = open.hash
        #expect(ledger.balance(of: alice.publicKey) == 700)
        #expect(ledger.totalHeld == ledger.supply)

        let promise = ChannelPromise.make(channel: id, amount: 120, consumer: alice, network: network)
        #expect(throws: LedgerError.notChannelProvider) { try append(bob, .channelClaim(promise), to: &ledger) }
        let forged = ChannelPromise.make(channel: id, amount: 120, consumer: bob, network: network)
        #expect(throws: LedgerError.badPromiseSignature) { try append(carol, .channelClaim(forged), to: &ledger) }
        let tooMuch = ChannelPromise.make(channel: id, amount: 301, consumer: alice, network: network)
        #expect(throws: LedgerError.claimAboveDeposit(deposit: 300)) {
            try append(carol, .channelClaim(tooMuch), to: &ledger)
        }
        let unknown = Key256(bytes: [UInt8](repeating: 9, count: 32))!
        #expect(throws: LedgerError.unknownChannel(unknown)) {
            try append(
                carol,
                .channelClaim(ChannelPromise.make(channel: unknown, amount: 1, consumer: alice, network: network)),
                to: &ledger)
        }
        try append(carol, .channelClaim(promise), to: &ledger)
        let lower = ChannelPromise.make(channel: id, amount: 50, consumer: alice, network: network)
        try append(carol, .channelClaim(lower), to: &ledger)
        #expect(ledger.channels[id]?.claimed == 120)

        #expect(throws: LedgerError.channelNotExpired(expiry: t0 + 60)) {
            try append(alice, .channelClose(channel: id, at: t0 + 59), to: &ledger)
        }
        #expect(throws: LedgerError.notChannelParty) {
            try append(bob, .channelClose(channel: id, at: t0 + 61), to: &ledger)
        }
        try append(alice, .channelClose(channel: id, at: t0 + 60), to: &ledger)
        #expect(ledger.channels[id]?.settlement == Channel.Settlement(paid: 120, refunded: 180))
        #expect(ledger.balance(of: carol.publicKey) == 320)
        #expect(ledger.balance(of: alice.publicKey) == 880)
        #expect(ledger.totalHeld == ledger.supply)

        // A claim certified after the close only advances the provider's chain.
        let late = ChannelPromise.make(channel: id, amount: 200, consumer: alice, network: network)
        try append(carol, .channelClaim(late), to: &ledger)
        #expect(ledger.channels[id]?.claimed == 120)
        #expect(ledger.balance(of: carol.publicKey) == 320)
    }

    @Test("the provider may release (close) a channel before expiry; the close report raises the payment")
    func providerRelease() throws {
        var ledger = state()
        let open = try append(
            alice, .channelOpen(provider: carol.publicKey, deposit: 300, expiry: t0 + 60), to: &ledger)
        let close = entry(carol, .channelClose(channel: open.hash, at: t0 + 1), on: ledger)
        try applyCertified(
            close, to: &ledger, proof: .make(channel: open.hash, amount: 90, consumer: alice, network: network))
        #expect(ledger.channels[open.hash]?.settlement == Channel.Settlement(paid: 90, refunded: 210))
        // A report above the deposit still pays at most the deposit.
        let second = try append(
            alice, .channelOpen(provider: carol.publicKey, deposit: 10, expiry: t0 + 60), to: &ledger)
        try applyCertified(
            entry(carol, .channelClose(channel: second.hash, at: t0 + 1), on: ledger), to: &ledger,
            proof: .make(channel: second.hash, amount: 11, consumer: alice, network: network))
        #expect(ledger.channels[second.hash]?.settlement == Channel.Settlement(paid: 10, refunded: 0))
        #expect(ledger.totalHeld == ledger.supply)
    }
}
