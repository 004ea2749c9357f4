// The ledger part: alone (event in, effects out), then in NetSim with four validators and two other
// nodes, simulated disks, a crash while a lock write is in flight, and a restart that replays.

import Gossip
import Ledger
import NetSim
import Testing
import UmbraCore
import UmbraTestKit

@testable import Node

/// Four validators (100 stake each) and two funded accounts.
private struct LedgerFixture {
    static let validatorCount = 4
    let identities: [Identity]

    init(seed: UInt64) { identities = UmbraTestKit.identities(6, seed: seed ^ 0x1ED6) }

    var validators: [Identity] { Array(identities.prefix(Self.validatorCount)) }
    var payer: Identity { identities[4] }
    var payee: Identity { identities[5] }

    var genesis: GenesisParameters {
        GenesisParameters(
            network: network,
            allocations: [
                Allocation(recipient: payer.publicKey, amount: 1_000),
                Allocation(recipient: payee.publicKey, amount: 500),
            ],
            committee: validators.map { CommitteeMember(identity: $0.publicKey, stake: 100) },
            minimumBonds: MinimumBonds(provider: 10, relay: 20, validator: 50), unbondingDelay: .seconds(100),
            evidenceLifetime: .seconds(50), committeeSize: 4, reporterRewardPPM: 100_000)
    }

    func config(index: Int, storage: Bool = true) -> NodeConfig {
        var config = NodeConfig()
        config.storage.isEnabled = storage
        config.ledger.genesis = genesis
        config.ledger.isValidator = index < Self.validatorCount
        config.bootstrap = (0..<Self.validatorCount).map {
            DialTarget(publicKey: identities[$0].publicKey, endpoint: NetSim.endpoint(forNode: $0))
        }
        return config
    }

    /// `payer`'s transfer of `amount` at `height` (on top of `prev`).
    func transfer(_ amount: Amount, height: UInt64 = 0, prev: EntryHash = .zero) -> LedgerEntry {
        LedgerEntry.make(
            network: network, epoch: 0, identity: payer, height: height, prev: prev,
            body: .transfer(recipient: payee.publicKey, amount: amount))
    }
}

@Suite("Ledger part, alone")
struct LedgerPartTests {
    private static func bench(storage: Bool = true) -> (PartBench<LedgerPart>, LedgerFixture) {
        let fixture = LedgerFixture(seed: 1)
        let config = fixture.config(index: 0, storage: storage)
        var bench = PartBench(identity: fixture.validators[0], config: config) { LedgerPart(identity: $0, config: $1) }
        bench.feed(.start)
        return (bench, fixture)
    }

    /// The storage requests the part issued since the last call.
    private static func storageRequests(_ bench: inout PartBench<LedgerPart>) -> [StorageRequest] {
        bench.kernel.takeEffects().compactMap { if case .storage(let request) = $0 { request } else { nil } }
    }

    /// Starts a validator and answers its loads with `locks` and `entries`.
    private static func loaded(
        locks: [StorageEntry] = [], entries: [StorageEntry] = []
    ) -> (PartBench<LedgerPart>, LedgerFixture) {
        var (bench, fixture) = bench()
        let loads = storageRequests(&bench)
        #expect(loads.map(\.operation) == [.load(.ledgerLocks), .load(.ledgerEntries), .load(.ledgerOwn)])
        bench.feed(.notice(.storageCompleted(StorageCompletion(token: loads[0].token, outcome: .loaded(locks)))))
        bench.feed(.notice(.storageCompleted(StorageCompletion(token: loads[1].token, outcome: .loaded(entries)))))
        bench.feed(.notice(.storageCompleted(StorageCompletion(token: loads[2].token, outcome: .loaded([])))))
        return (bench, fixture)
    }

    @Test func noVoteLeavesBeforeTheLockIsDurable() throws {
        var (bench, fixture) = Self.loaded()
        let entry = fixture.transfer(10)
        bench.part.receiveOwn(.voteRequest(entry), &bench.kernel, now: bench.now, rng: &bench.rng)
        #expect(bench.takeNotices().isEmpty, "no vote before the write completes")
        let writes = Self.storageRequests(&bench)
        try #require(writes.count == 1)
        guard case .write(let mutations) = writes[0].operation,
            case .put(let namespace, let key, let value) = mutations[0]
        else {
            Issue.record("not a lock write: \(writes[0])")
            return
        }
        #expect(namespace == .ledgerLocks && key == Slot(entry: entry).storageKey)
        #expect(try LockRecord(decoding: value).entryHash == entry.hash)

        // A repeat while the write is in flight gets nothing; a failed write releases nothing.
        bench.part.receiveOwn(.voteRequest(entry), &bench.kernel, now: bench.now, rng: &bench.rng)
        #expect(bench.takeNotices().isEmpty && Self.storageRequests(&bench).isEmpty)

        let voted = bench.feed(.notice(.storageCompleted(StorageCompletion(token: writes[0].token, outcome: .written))))
        guard case .ledgerVote(let vote, nil, let from)? = voted.first, voted.count == 1 else {
            Issue.record("expected one vote, got \(voted)")
            return
        }
        #expect(from == fixture.validators[0].publicKey && vote.entryHash == entry.hash)
        #expect(vote.hasValidSignature(network: network))
        #expect(bench.part.counters.votesSent == 1)
    }

    @Test func aMemberWhoseLocksCannotBeReadDoesNotVote() throws {
        var (bench, fixture) = Self.bench()
        let loads = Self.storageRequests(&bench)
        try #require(loads.count == 3)
        bench.feed(.notice(.storageCompleted(StorageCompletion(token: loads[0].token, outcome: .failed("I/O error")))))
        bench.feed(.notice(.storageCompleted(StorageCompletion(token: loads[1].token, outcome: .loaded([])))))
        bench.feed(.notice(.storageCompleted(StorageCompletion(token: loads[2].token, outcome: .loaded([])))))
        #expect(bench.part.locksUnreadable)
        // It might have voted in any slot before the restart: it refuses, as busy, and locks nothing.
        bench.part.receiveOwn(.voteRequest(fixture.transfer(10)), &bench.kernel, now: bench.now, rng: &bench.rng)
        let notices = bench.takeNotices()
        #expect(Self.storageRequests(&bench).isEmpty, "no lock write, so no vote can follow")
        guard case .ledgerRefusal(_, let code, _)? = notices.first else {
            Issue.record("expected a refusal, got \(notices)")
            return
        }
        #expect(code == .busy && bench.part.counters.votesSent == 0)
    }

    @Test func aFailedLockWriteSendsNoVote() throws {
        var (bench, fixture) = Self.loaded()
        bench.part.receiveOwn(.voteRequest(fixture.transfer(10)), &bench.kernel, now: bench.now, rng: &bench.rng)
        let writes = Self.storageRequests(&bench)
        try #require(writes.count == 1)
        let notices = bench.feed(
            .notice(.storageCompleted(StorageCompletion(token: writes[0].token, outcome: .failed("disk full")))))
        #expect(notices.isEmpty)
        #expect(bench.part.counters.votesSent == 0 && bench.part.counters.storageFailures == 1)
    }

    @Test func aRestoredLockRefusesAnotherEntryForItsSlotAndRepeatsItsVote() throws {
        let fixture = LedgerFixture(seed: 1)
        let first = fixture.transfer(10)
        let record = LockRecord(slot: Slot(entry: first), entryHash: first.hash, report: 0, channelMark: .none)
        var (bench, _) = Self.loaded(locks: [StorageEntry(key: record.slot.storageKey, value: record.encoded())])
        #expect(bench.part.counters.locksRestored == 1)

        bench.part.receiveOwn(.voteRequest(fixture.transfer(20)), &bench.kernel, now: bench.now, rng: &bench.rng)
        let refused = bench.takeNotices()
        #expect(
            refused == [.ledgerRefusal(fixture.transfer(20).hash, .slotLocked, from: fixture.validators[0].publicKey)])

        bench.part.receiveOwn(.voteRequest(first), &bench.kernel, now: bench.now, rng: &bench.rng)
        guard case .ledgerVote(let vote, _, _)? = bench.takeNotices().first else {
            Issue.record("no repeat")
            return
        }
        #expect(vote.entryHash == first.hash)
        #expect(Self.storageRequests(&bench).isEmpty, "a durable lock is not written again")
    }

    @Test func aTornLockRecordKeepsItsSlotRefusedAndIsNotDeleted() {
        let fixture = LedgerFixture(seed: 1)
        let entry = fixture.transfer(10)
        let key = Slot(entry: entry).storageKey
        var (bench, _) = Self.loaded(locks: [StorageEntry(key: key, value: [9, 9])])
        #expect(bench.part.counters.locksRestored == 0 && bench.part.counters.storedLocksRejected == 1)
        #expect(Self.storageRequests(&bench).isEmpty, "the record stays on disk")
        // Its vote may have left before the record was damaged: no entry gets a vote for the slot.
        bench.part.receiveOwn(.voteRequest(entry), &bench.kernel, now: bench.now, rng: &bench.rng)
        #expect(bench.takeNotices() == [.ledgerRefusal(entry.hash, .slotLocked, from: fixture.validators[0].publicKey)])
        #expect(Self.storageRequests(&bench).isEmpty, "no lock written, so no vote can follow")
    }

    @Test func aFailedLockWriteIsWrittenAgainOnTheNextRequest() throws {
        var (bench, fixture) = Self.loaded()
        let entry = fixture.transfer(10)
        bench.part.receiveOwn(.voteRequest(entry), &bench.kernel, now: bench.now, rng: &bench.rng)
        let first = Self.storageRequests(&bench)
        try #require(first.count == 1)
        bench.feed(.notice(.storageCompleted(StorageCompletion(token: first[0].token, outcome: .failed("EIO")))))
        #expect(bench.takeNotices().isEmpty)
        bench.part.receiveOwn(.voteRequest(entry), &bench.kernel, now: bench.now, rng: &bench.rng)
        let second = Self.storageRequests(&bench)
        try #require(second.count == 1, "the slot is not silent until a restart")
        #expect(second[0].operation == first[0].operation)
        let voted = bench.feed(.notice(.storageCompleted(StorageCompletion(token: second[0].token, outcome: .written))))
        guard case .ledgerVote(let vote, nil, _)? = voted.first else {
            Issue.record("no vote after the second write: \(voted)")
            return
        }
        #expect(vote.entryHash == entry.hash)
    }

    @Test func locksBelowTheReplayedHeightAreDeletedAtStartAndOnlyThen() throws {
        let fixture = LedgerFixture(seed: 1)
        let committee = try LedgerState(genesis: fixture.genesis).committee
        let first = fixture.transfer(10)
        let second = fixture.transfer(20, height: 1, prev: first.hash)
        let record = { (entry: LedgerEntry) in
            let lock = LockRecord(slot: Slot(entry: entry), entryHash: entry.hash, report: 0, channelMark: .none)
            return StorageEntry(key: lock.slot.storageKey, value: lock.encoded())
        }
        let stored = { (entry: LedgerEntry) in
            StorageEntry(key: Slot(entry: entry).storageKey, value: Self.certified(entry, fixture, committee).encoded())
        }
        var (bench, _) = Self.loaded(locks: [record(first), record(second)], entries: [stored(first), stored(second)])
        #expect(bench.part.counters.entriesReplayed == 2)
        // The replayed entries are on disk: the lock below the last certified height can go.
        #expect(
            Self.storageRequests(&bench).map(\.operation) == [
                .write([.delete(.ledgerLocks, key: Slot(entry: first).storageKey)])
            ])
        #expect(bench.part.counters.locksDeleted == 1)

        // While running, a lock the ledger passes is dropped from memory, but its record stays until
        // the entries that pass it are known durable (the next start).
        let third = fixture.transfer(30, height: 2, prev: second.hash)
        bench.part.receiveOwn(.voteRequest(third), &bench.kernel, now: bench.now, rng: &bench.rng)
        let writes = Self.storageRequests(&bench)
        try #require(writes.count == 1)
        bench.feed(.notice(.storageCompleted(StorageCompletion(token: writes[0].token, outcome: .written))))
        bench.part.acceptOwn(Self.certified(third, fixture, committee), &bench.kernel, now: bench.now, rng: &bench.rng)
        let later = Self.storageRequests(&bench).map(\.operation)
        #expect(
            !later.contains { operation in
                guard case .write(let mutations) = operation else { return false }
                return mutations.contains { if case .delete = $0 { true } else { false } }
            })
    }

    @Test func aFailedEntryWriteIsRetriedThenCounted() throws {
        var (bench, fixture) = Self.loaded()
        let committee = bench.part.state!.committee
        bench.part.acceptOwn(
            Self.certified(fixture.transfer(10), fixture, committee), &bench.kernel, now: bench.now, rng: &bench.rng)
        var writes = Self.storageRequests(&bench)
        try #require(writes.count == 1)
        let operation = writes[0].operation
        for attempt in 1...4 {
            bench.feed(.notice(.storageCompleted(StorageCompletion(token: writes[0].token, outcome: .failed("EIO")))))
            writes = Self.storageRequests(&bench)
            #expect(bench.part.counters.entryWriteFailures == UInt64(attempt))
            if attempt <= 3 {
                try #require(writes.count == 1, "retry \(attempt)")
                #expect(writes[0].operation == operation)
            } else {
                #expect(writes.isEmpty && bench.part.counters.entryWritesLost == 1)
            }
        }
    }

    /// `entry` certified by the first three validators.
    private static func certified(
        _ entry: LedgerEntry, _ fixture: LedgerFixture, _ committee: Committee, voters: Range<Int> = 0..<3
    ) -> CertifiedEntry {
        let votes = fixture.validators[voters].map {
            Vote.make(identity: $0, network: network, slot: Slot(entry: entry), entryHash: entry.hash, report: 0)
        }
        return CertifiedEntry(
            entry: entry,
            certificate: Certificate(
                epoch: entry.epoch, account: entry.account, height: entry.height, entryHash: entry.hash,
                votes: votes.map { CertificateVote(validator: $0.validator, report: 0, signature: $0.signature) }))
    }

    private static func gossip(
        _ certified: CertifiedEntry, from peer: PublicKey, _ bench: inout PartBench<LedgerPart>
    ) -> [NodeNotice] {
        let bytes = certified.encoded()
        return bench.feed(.notice(.gossipValidate(.ledger, bytes, MessageID(topic: .ledger, data: bytes), from: peer)))
    }

    /// A replica (not a member) with storage off and `configure` applied.
    private static func replica(_ configure: (inout LedgerNodeConfig) -> Void) -> (PartBench<LedgerPart>, LedgerFixture)
    {
        let fixture = LedgerFixture(seed: 1)
        var config = fixture.config(index: 4, storage: false)
        configure(&config.ledger)
        var bench = PartBench(identity: fixture.payee, config: config) { LedgerPart(identity: $0, config: $1) }
        bench.feed(.start)
        return (bench, fixture)
    }

    @Test func unverifiedEntriesNeverPushVerifiedOnesOut() {
        var (bench, fixture) = Self.replica { $0.maximumPendingEntries = 3 }
        let committee = bench.part.state!.committee
        var chain: [LedgerEntry] = []
        for height in UInt64(0)...3 {
            chain.append(fixture.transfer(1, height: height, prev: chain.last?.hash ?? .zero))
        }
        for entry in chain.dropFirst() {
            _ = Self.gossip(Self.certified(entry, fixture, committee), from: fixture.validators[0].publicKey, &bench)
        }
        #expect(bench.part.pendingCount == 3)
        // Entries of an epoch nobody knows yet: their certificates cannot be checked.
        for amount in Amount(1)...4 {
            let future = LedgerEntry.make(
                network: network, epoch: 9, identity: fixture.payer, height: 0, prev: .zero,
                body: .transfer(recipient: fixture.payee.publicKey, amount: amount))
            _ = Self.gossip(Self.certified(future, fixture, committee), from: fixture.validators[1].publicKey, &bench)
        }
        #expect(bench.part.pendingCount == 3 && bench.part.pendingUnverifiedCount == 0)
        _ = Self.gossip(Self.certified(chain[0], fixture, committee), from: fixture.validators[0].publicKey, &bench)
        #expect(bench.part.state!.balance(of: fixture.payer.publicKey) == 996, "the verified chain applied whole")
    }

    @Test func unverifiedEntriesAreSignatureCheckedKeyedByCertificateAndBoundedPerPeer() {
        var (bench, fixture) = Self.replica { $0.maximumPendingPerPeer = 2 }
        let committee = bench.part.state!.committee
        // The next epoch (an epoch change on its way) is waited for; a later one is refused.
        let far = LedgerEntry.make(
            network: network, epoch: 9, identity: fixture.payer, height: 0, prev: .zero,
            body: .transfer(recipient: fixture.payee.publicKey, amount: 1))
        let refused = Self.gossip(
            Self.certified(far, fixture, committee), from: fixture.validators[0].publicKey, &bench)
        #expect(refused.count == 1 && bench.part.pendingCount == 0, "epoch 9 when 0 is current: \(refused)")
        let future = LedgerEntry.make(
            network: network, epoch: 1, identity: fixture.payer, height: 0, prev: .zero,
            body: .transfer(recipient: fixture.payee.publicKey, amount: 1))
        // Two certificates for one entry are two items: a forged one cannot stand in for a real one.
        let peer = fixture.validators[0].publicKey
        #expect(Self.gossip(Self.certified(future, fixture, committee, voters: 0..<3), from: peer, &bench).isEmpty)
        #expect(Self.gossip(Self.certified(future, fixture, committee, voters: 1..<4), from: peer, &bench).isEmpty)
        #expect(bench.part.pendingCount == 2 && bench.part.pendingUnverifiedCount == 2)
        // A third from the same peer is dropped; another peer's is held.
        let third = Self.certified(future, fixture, committee, voters: 0..<4)
        let dropped = Self.gossip(third, from: peer, &bench)
        #expect(dropped.count == 1 && bench.part.pendingCount == 2)
        #expect(Self.gossip(third, from: fixture.validators[1].publicKey, &bench).isEmpty)
        #expect(bench.part.pendingCount == 3)
        // An entry whose own signature fails is refused before it is held.
        var forged = Self.certified(future, fixture, committee, voters: 1..<3)
        forged.entry.signature[0] ^= 1
        let bytes = forged.encoded()
        let id = MessageID(topic: .ledger, data: bytes)
        #expect(
            bench.feed(.notice(.gossipValidate(.ledger, bytes, id, from: fixture.validators[2].publicKey)))
                == [.gossipVerdict(id, .reject)])
        #expect(bench.part.pendingCount == 3)
    }

    @Test func gossipedEntriesApplyInOrderAndWaitForTheirPredecessor() {
        var (bench, fixture) = Self.bench(storage: false)
        let genesisState = bench.part.state!
        let first = fixture.transfer(100)
        let second = fixture.transfer(50, height: 1, prev: first.hash)
        let certify = { (entry: LedgerEntry) -> CertifiedEntry in
            var collector = CertificateCollector(entry: entry, committee: genesisState.committee)
            var made: Certificate?
            for validator in fixture.validators.prefix(3) {
                let vote = Vote.make(
                    identity: validator, network: network, slot: Slot(entry: entry), entryHash: entry.hash, report: 0)
                made = (try? collector.add(vote)) ?? made
            }
            return CertifiedEntry(entry: entry, certificate: made!)
        }
        let secondBytes = certify(second).encoded()
        let secondID = MessageID(topic: .ledger, data: secondBytes)
        let early = bench.feed(.notice(.gossipValidate(.ledger, secondBytes, secondID, from: fixture.payee.publicKey)))
        #expect(early == [.gossipVerdict(secondID, .accept)], "a valid certificate is forwarded while it waits")
        #expect(bench.part.pendingCount == 1 && bench.part.state!.balance(of: fixture.payer.publicKey) == 1_000)

        let firstBytes = certify(first).encoded()
        let firstID = MessageID(topic: .ledger, data: firstBytes)
        #expect(
            bench.feed(.notice(.gossipValidate(.ledger, firstBytes, firstID, from: fixture.payee.publicKey)))
                == [.gossipVerdict(firstID, .accept)])
        #expect(bench.part.pendingCount == 0)
        #expect(bench.part.state!.balance(of: fixture.payer.publicKey) == 850)
        #expect(bench.part.state!.balance(of: fixture.payee.publicKey) == 650)

        // A forged certificate (a vote's signature broken) is rejected.
        var forged = certify(fixture.transfer(1, height: 2, prev: second.hash))
        forged.certificate.votes[0].signature[0] ^= 1
        let forgedBytes = forged.encoded()
        let forgedID = MessageID(topic: .ledger, data: forgedBytes)
        #expect(
            bench.feed(.notice(.gossipValidate(.ledger, forgedBytes, forgedID, from: fixture.payee.publicKey)))
                == [.gossipVerdict(forgedID, .reject)])
    }

    @Test func thePendingTableIsBounded() {
        let fixture = LedgerFixture(seed: 1)
        var config = fixture.config(index: 4, storage: false)
        config.ledger.maximumPendingEntries = 3
        var bench = PartBench(identity: fixture.payee, config: config) { LedgerPart(identity: $0, config: $1) }
        bench.feed(.start)
        let committee = bench.part.state!.committee
        for height in UInt64(1)...5 {
            let entry = fixture.transfer(
                1, height: height, prev: Key256(bytes: [UInt8](repeating: UInt8(height), count: 32))!)
            var collector = CertificateCollector(entry: entry, committee: committee)
            var made: Certificate?
            for validator in fixture.validators.prefix(3) {
                let vote = Vote.make(
                    identity: validator, network: network, slot: Slot(entry: entry), entryHash: entry.hash, report: 0)
                made = (try? collector.add(vote)) ?? made
            }
            let bytes = CertifiedEntry(entry: entry, certificate: made!).encoded()
            bench.feed(
                .notice(
                    .gossipValidate(
                        .ledger, bytes, MessageID(topic: .ledger, data: bytes), from: fixture.payer.publicKey)))
        }
        #expect(bench.part.pendingCount == 3)
        #expect(bench.part.counters.pendingDropped == 2)
    }

    @Test func aNodeWithoutGenesisIgnoresTheLedger() {
        let fixture = LedgerFixture(seed: 1)
        var bench = PartBench(identity: fixture.payer, config: NodeConfig()) { LedgerPart(identity: $0, config: $1) }
        bench.feed(.start)
        #expect(bench.part.state == nil)
        let id = MessageID(topic: .ledger, data: [1])
        #expect(
            bench.feed(.notice(.gossipValidate(.ledger, [1], id, from: fixture.payee.publicKey))) == [
                .gossipVerdict(id, .ignore)
            ])
        #expect(bench.kernel.takeEffects().isEmpty)
    }
}

@Suite("Ledger in NetSim", .timeLimit(.minutes(3)))
struct LedgerSimTests {
    private static func network(seed: UInt64) -> (NetSim, LedgerFixture) {
        var sim = NetSim(
            seed: seed,
            link: LinkModel(minimumLatency: .milliseconds(20), maximumLatency: .milliseconds(50), lossRate: 0))
        let fixture = LedgerFixture(seed: seed)
        for (index, identity) in fixture.identities.enumerated() {
            sim.addNode(identity: identity, config: fixture.config(index: index))
        }
        sim.run(for: .seconds(10))
        return (sim, fixture)
    }

    private static func balances(_ sim: NetSim, _ index: Int, _ fixture: LedgerFixture) -> [Amount]? {
        guard let state = sim.instance(index).ledger.state else { return nil }
        return [state.balance(of: fixture.payer.publicKey), state.balance(of: fixture.payee.publicKey)]
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func aTransferIsCertifiedAndEveryNodeAgreesThenARestartReplays(seed: UInt64) throws {
        var (sim, fixture) = Self.network(seed: seed)
        let first = fixture.transfer(100)
        sim.submit(.ledgerSubmit(first), id: CommandID(1), on: 4)
        sim.run(for: .seconds(3))
        guard case .ledgerCertified(let certified, _)? = sim.completion(of: CommandID(1), on: 4) else {
            Issue.record(
                "seed \(seed): not certified: \(String(describing: sim.completion(of: CommandID(1), on: 4)))")
            return
        }
        #expect(certified.entry == first)
        for index in 0..<sim.nodeCount {
            #expect(Self.balances(sim, index, fixture) == [900, 600], "seed \(seed) node \(index)")
        }

        // A second transfer, submitted on a validator (it asks itself too).
        sim.submit(.ledgerSubmit(fixture.transfer(50, height: 1, prev: first.hash)), id: CommandID(2), on: 1)
        sim.run(for: .seconds(3))
        guard case .ledgerCertified? = sim.completion(of: CommandID(2), on: 1) else {
            Issue.record(
                "seed \(seed): second not certified: \(String(describing: sim.completion(of: CommandID(2), on: 1)))")
            return
        }
        for index in 0..<sim.nodeCount {
            #expect(Self.balances(sim, index, fixture) == [850, 650], "seed \(seed) node \(index)")
            #expect(sim.diskImage(of: index).count(in: .ledgerEntries) == 2, "seed \(seed) node \(index)")
        }

        // Node 5 restarts alone (no bootstrap peers): what it knows comes from its disk.
        var lonely = fixture.config(index: 5)
        lonely.bootstrap = []
        sim.restart(5, config: lonely)
        sim.run(for: .seconds(1))
        #expect(sim.instance(5).ledger.counters.entriesReplayed == 2, "seed \(seed)")
        #expect(Self.balances(sim, 5, fixture) == [850, 650], "seed \(seed)")
    }

    @Test(arguments: [UInt64(11), 12])
    func anEntryAfterAnEpochChangeCarriesTheOldCommitteesAnchor(seed: UInt64) throws {
        var (sim, fixture) = Self.network(seed: seed)
        let next = try #require(sim.instance(0).ledger.state?.nextCommittee())
        let change = LedgerEntry.make(
            network: UmbraTestKit.network, epoch: 0, identity: fixture.payee, height: 0, prev: .zero,
            body: .epochChange(newEpoch: 1, committee: next, at: sim.now))
        sim.submit(.ledgerSubmit(change), id: CommandID(1), on: 4)
        sim.run(for: .seconds(3))
        guard case .ledgerCertified? = sim.completion(of: CommandID(1), on: 4) else {
            Issue.record("seed \(seed): epoch change not certified")
            return
        }
        for index in 0..<sim.nodeCount { #expect(sim.instance(index).ledger.state?.epoch == 1, "node \(index)") }

        // The payer's first entry of epoch 1 leaves its epoch 0: both committees certify it.
        let crossing = LedgerEntry.make(
            network: UmbraTestKit.network, epoch: 1, identity: fixture.payer, height: 0, prev: .zero,
            body: .transfer(recipient: fixture.payee.publicKey, amount: 100))
        sim.submit(.ledgerSubmit(crossing), id: CommandID(2), on: 5)
        sim.run(for: .seconds(3))
        guard case .ledgerCertified(let certified, _)? = sim.completion(of: CommandID(2), on: 5) else {
            Issue.record("seed \(seed): \(String(describing: sim.completion(of: CommandID(2), on: 5)))")
            return
        }
        #expect(certified.certificate.epoch == 1 && certified.anchor?.epoch == 0, "seed \(seed)")
        for index in 0..<sim.nodeCount {
            #expect(Self.balances(sim, index, fixture) == [900, 600], "seed \(seed) node \(index)")
            #expect(sim.instance(index).ledger.state?.accounts[fixture.payer.publicKey]?.epoch == 1)
        }
    }

    @Test(arguments: [UInt64(4), 5, 6, 7])
    func aValidatorCrashedDuringItsLockWriteNeverVotesTwiceForTheSlot(seed: UInt64) throws {
        var (sim, fixture) = Self.network(seed: seed)
        let victim = 3
        let first = fixture.transfer(100)
        sim.submit(.ledgerSubmit(first), id: CommandID(1), on: 4)
        func lockWriteInFlight() -> Bool {
            sim.storageInFlight(of: victim).contains {
                guard case .write(let mutations) = $0.operation else { return false }
                return mutations.contains { $0.namespace == .ledgerLocks }
            }
        }
        var steps = 0
        while steps < 2_000, !lockWriteInFlight() {
            sim.run(for: .milliseconds(1))
            steps += 1
        }
        try #require(lockWriteInFlight(), "seed \(seed): the victim never wrote a lock")
        let votesBefore = sim.instance(victim).ledger.recentVotes
        #expect(votesBefore.isEmpty, "seed \(seed): no vote before the lock is durable")
        sim.kill(victim)

        // The other three carry the quorum (300 of 400 stake).
        sim.run(for: .seconds(3))
        guard case .ledgerCertified? = sim.completion(of: CommandID(1), on: 4) else {
            Issue.record("seed \(seed): not certified without the victim")
            return
        }

        sim.restart(victim)
        sim.run(for: .seconds(2))
        #expect(sim.instance(victim).ledger.state != nil)

        // Another entry for the same slot: the live validators hold the first, so it is refused.
        let conflicting = fixture.transfer(40)
        sim.submit(.ledgerSubmit(conflicting), id: CommandID(2), on: 5)
        sim.run(for: .seconds(12))
        guard case .failed(.ledger)? = sim.completion(of: CommandID(2), on: 5) else {
            Issue.record(
                "seed \(seed): a second entry for one slot: \(String(describing: sim.completion(of: CommandID(2), on: 5)))"
            )
            return
        }
        for index in 0..<sim.nodeCount where index != victim {
            #expect(Self.balances(sim, index, fixture) == [900, 600], "seed \(seed) node \(index)")
        }
        // Across both lives, the victim signed at most one entry per slot.
        var signed: [Slot: Set<EntryHash>] = [:]
        for vote in votesBefore + sim.instance(victim).ledger.recentVotes {
            signed[vote.slot, default: []].insert(vote.entryHash)
        }
        #expect(signed.values.allSatisfy { $0.count <= 1 }, "seed \(seed): \(signed)")
    }

    @Test(arguments: [UInt64(8), 9, 10])
    func aValidatorCrashedRightAfterVotingRefusesAnotherEntryForTheSlotFromItsRestoredLock(seed: UInt64) throws {
        var (sim, fixture) = Self.network(seed: seed)
        let victim = 2
        let first = fixture.transfer(100)
        sim.submit(.ledgerSubmit(first), id: CommandID(1), on: 4)
        var steps = 0
        while steps < 2_000, sim.instance(victim).ledger.recentVotes.isEmpty {
            sim.run(for: .milliseconds(1))
            steps += 1
        }
        let voted = sim.instance(victim).ledger.recentVotes
        try #require(voted.map(\.entryHash) == [first.hash], "seed \(seed): the victim did not vote")
        // Its vote has just left: the certificate is not back yet, so only the lock knows the slot.
        try #require(sim.instance(victim).ledger.state?.accounts[fixture.payer.publicKey]?.nextHeight == 0)
        #expect(sim.diskImage(of: victim).count(in: .ledgerLocks) == 1, "seed \(seed): the lock is on disk")
        sim.kill(victim)
        sim.run(for: .seconds(3))
        guard case .ledgerCertified? = sim.completion(of: CommandID(1), on: 4) else {
            Issue.record("seed \(seed): not certified")
            return
        }

        // It comes back reachable only from node 5, which is no committee member: no catch-up
        // can tell it about the certificate, only its lock knows the slot.
        for other in [0, 1, 3, 4] { sim.partition(victim, other) }
        sim.restart(victim)
        sim.run(for: .seconds(1))
        let restarted = sim.instance(victim).ledger
        #expect(restarted.counters.locksRestored == 1, "seed \(seed)")
        #expect(restarted.state?.accounts[fixture.payer.publicKey]?.nextHeight == 0, "it missed the certificate")

        let conflicting = fixture.transfer(40)
        sim.submit(.ledgerSubmit(conflicting), id: CommandID(2), on: 5)
        sim.run(for: .seconds(12))
        guard case .failed(.ledger)? = sim.completion(of: CommandID(2), on: 5) else {
            Issue.record("seed \(seed): \(String(describing: sim.completion(of: CommandID(2), on: 5)))")
            return
        }
        #expect(sim.instance(victim).ledger.recentVotes.isEmpty, "seed \(seed): the restarted victim voted again")
        #expect(sim.instance(victim).ledger.counters.refusalsSent == 1, "seed \(seed): refused from its lock")
    }
}
