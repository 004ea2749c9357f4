import Ledger
import Testing
import UmbraCore
import UmbraTestKit

// MARK: - Fixtures shared by the ledger tests

// `network`, `identity(_:)`, `identity(index:)` and `t0` come from UmbraTestKit.

let alice = identity(1)
let bob = identity(2)
let carol = identity(3)
/// The four validators of epoch 0, 100 stake each.
let validatorIdentities = (0..<4).map { identity(index: $0) }

let minimums = MinimumBonds(provider: 10, relay: 20, validator: 50)

func genesis(
    committee: [CommitteeMember] = validatorIdentities.map { CommitteeMember(identity: $0.publicKey, stake: 100) },
    allocations: [Allocation] = [
        Allocation(recipient: alice.publicKey, amount: 1_000), Allocation(recipient: bob.publicKey, amount: 500),
        Allocation(recipient: carol.publicKey, amount: 200),
    ],
    committeeSize: Int = 4, unbondingDelay: Duration = .seconds(100), evidenceLifetime: Duration = .seconds(50),
    reporterRewardPPM: UInt32 = 100_000
) -> GenesisParameters {
    GenesisParameters(
        network: network, allocations: allocations, committee: committee, minimumBonds: minimums,
        unbondingDelay: unbondingDelay, evidenceLifetime: evidenceLifetime, committeeSize: committeeSize,
        reporterRewardPPM: reporterRewardPPM)
}

func state(_ parameters: GenesisParameters = genesis()) -> LedgerState {
    do { return try LedgerState(genesis: parameters) } catch { fatalError("\(error)") }
}

/// `who`'s next entry on top of `state` (its next height and head, the current epoch).
func entry(_ who: Identity, _ body: EntryBody, on state: LedgerState, epoch: UInt64? = nil) -> LedgerEntry {
    let account = state.accounts[who.publicKey]
    return LedgerEntry.make(
        network: state.network, epoch: epoch ?? state.epoch, identity: who, height: account?.nextHeight ?? 0,
        prev: account?.head ?? .zero, body: body)
}

/// A certificate for `entry` signed by `voters` in `epoch` (default: the entry's), every vote
/// reporting `proof`'s amount (0 without one).
func certificate(
    _ entry: LedgerEntry, by voters: [Identity], proof: ChannelPromise? = nil, epoch: UInt64? = nil
) -> Certificate {
    let slot = Slot(account: entry.account, height: entry.height, epoch: epoch ?? entry.epoch)
    let votes = voters.map {
        Vote.make(identity: $0, network: entry.network, slot: slot, entryHash: entry.hash, report: proof?.amount ?? 0)
    }
    return Certificate(
        epoch: slot.epoch, account: entry.account, height: entry.height, entryHash: entry.hash,
        votes: votes.map {
            CertificateVote(validator: $0.validator, report: $0.report, signature: $0.signature, proof: proof)
        })
}

/// Applies `entry` with a certificate from the first three validators (reports resting on `proof`).
@discardableResult
func applyCertified(
    _ entry: LedgerEntry, to state: inout LedgerState, proof: ChannelPromise? = nil
) throws -> ApplyOutcome {
    try state.apply(
        CertifiedEntry(
            entry: entry, certificate: certificate(entry, by: Array(validatorIdentities.prefix(3)), proof: proof)))
}

/// Appends `body` for `who` on `state`, certified; returns the entry.
@discardableResult
func append(_ who: Identity, _ body: EntryBody, to state: inout LedgerState) throws -> LedgerEntry {
    let made = entry(who, body, on: state)
    try applyCertified(made, to: &state)
    return made
}

// MARK: - A small network of validators

/// Validators that vote, persist instantly (or not), and a client replica; `certify` runs one entry
/// through the whole protocol: request → persistLock → persisted → vote → collector → certificate →
/// apply everywhere.
struct Network {
    var validators: [Validator]
    var replica: LedgerState

    init(_ parameters: GenesisParameters = genesis(), identities: [Identity] = validatorIdentities) {
        let start = state(parameters)
        validators = identities.map { Validator(identity: $0, ledger: start) }
        replica = start
    }

    /// The votes of validator `index` for `entry` (persisting at once; two for a crossing when it
    /// sits in both committees), or the refusal.
    mutating func votes(
        _ index: Int, _ entry: LedgerEntry, now: Instant
    ) -> Result<[(Vote, ChannelPromise?)], LedgerError> {
        var votes: [(Vote, ChannelPromise?)] = []
        for effect in validators[index].handleRequest(entry, now: now) {
            switch effect {
            case .persistLock(let token, _):
                for case .sendVote(let vote, let proof) in validators[index].persisted(token: token) {
                    votes.append((vote, proof))
                }
            case .sendVote(let vote, let proof): votes.append((vote, proof))
            case .refuse(_, let error): return .failure(error)
            }
        }
        return .success(votes)
    }

    /// The (first) vote of validator `index` for `entry` (persisting at once), or the refusal.
    mutating func vote(_ index: Int, _ entry: LedgerEntry, now: Instant) -> Result<Vote, LedgerError> {
        switch votes(index, entry, now: now) {
        case .success(let votes):
            guard let first = votes.first else {
                Issue.record("no vote")
                return .failure(.voteForOtherEntry)
            }
            return .success(first.0)
        case .failure(let error): return .failure(error)
        }
    }

    /// Runs `entry` through every validator, builds the certificate (and the anchor for a crossing)
    /// and applies it everywhere.
    @discardableResult
    mutating func certify(_ entry: LedgerEntry, now: Instant) throws -> CertifiedEntry {
        var consumer: PublicKey?
        if case .channelClose(let channel, _) = entry.body { consumer = replica.channels[channel]?.consumer }
        var collectors = [
            CertificateCollector(entry: entry, committee: replica.committees[entry.epoch]!, channelConsumer: consumer)
        ]
        if let anchor = replica.anchorEpoch(for: entry) {
            collectors.append(
                CertificateCollector(
                    entry: entry, committee: replica.committees[anchor]!, epoch: anchor, channelConsumer: consumer))
        }
        var made: [UInt64: Certificate] = [:]
        var refusals: [LedgerError] = []
        for index in validators.indices {
            switch votes(index, entry, now: now) {
            case .success(let votes):
                for (vote, proof) in votes {
                    for slot in collectors.indices where collectors[slot].epoch == vote.epoch {
                        if let certificate = try collectors[slot].add(vote, proof: proof) {
                            made[vote.epoch] = certificate
                        }
                    }
                }
            case .failure(let error): refusals.append(error)
            }
        }
        guard let certificate = made[entry.epoch] else {
            throw refusals.first ?? LedgerError.noQuorum(signed: 0, total: 0)
        }
        var anchor: Certificate?
        if collectors.count > 1 {
            guard let anchorCertificate = made[collectors[1].epoch] else {
                throw refusals.first ?? LedgerError.anchorRequired(epoch: collectors[1].epoch)
            }
            anchor = anchorCertificate
        }
        let certified = CertifiedEntry(entry: entry, certificate: certificate, anchor: anchor)
        try distribute(certified)
        return certified
    }

    mutating func distribute(_ certified: CertifiedEntry) throws {
        _ = try replica.apply(certified)
        for index in validators.indices { _ = try validators[index].applyCertified(certified) }
    }

    /// `who`'s next entry on the replica, certified.
    @discardableResult
    mutating func submit(_ who: Identity, _ body: EntryBody, now: Instant) throws -> CertifiedEntry {
        try certify(entry(who, body, on: replica), now: now)
    }
}
