// The ledger's deterministic state machine (DESIGN §6): applies certified entries to balances, bonds,
// unbondings, channels and slashes. Every replica that applies the same certified entries ends in the
// same state whatever the order across accounts (an account's own entries apply in height order;
// credits to other accounts commute). `apply` is all or nothing: every rule is checked on a draft of
// the few accounts an entry touches before anything changes, so a thrown `LedgerError` leaves the
// state as it was (and nothing else is copied). An entry refused for `insufficientBalance` or
// `unknownChannel`/`unknownAccount` may depend on a certified entry of another account not applied
// yet: the caller retries it later (`verify` once, then `apply(VerifiedEntry)` as often as needed).

import UmbraCore

/// One account's state.
public struct AccountState: Hashable, Sendable {
    public struct Unbonding: Hashable, Sendable {
        public var role: Role
        public var amount: Amount
        public var releaseAt: Instant
    }

    public var balance: Amount = 0
    /// The height of the account's next entry.
    public var nextHeight: UInt64 = 0
    /// The hash of the account's last applied entry (all zero before its first).
    public var head: EntryHash = .zero
    public var bonded: [Role: Amount] = [:]
    public var unbonding: [Unbonding] = []
    /// Stake burned from this account by evidence.
    public var slashed: Amount = 0
    /// The epoch of the account's last entry (0 before its first). Its next entry is of this epoch or
    /// a later one; a later one needs an anchor from this epoch's committee.
    public var epoch: UInt64 = 0

    public func bonded(_ role: Role) -> Amount { bonded[role] ?? 0 }

    /// Bonded plus unbonding: what evidence can burn.
    var stake: Amount {
        let bondedSum = bonded.values.reduce(Amount(0)) { $0 &+ $1 }
        return unbonding.reduce(bondedSum) { $0 &+ $1.amount }
    }
}

/// A payment channel (DESIGN §6, Channels).
public struct Channel: Hashable, Sendable {
    /// How a closed channel was settled. `paid + refunded == deposit`.
    public struct Settlement: Hashable, Sendable {
        public var paid: Amount
        public var refunded: Amount
    }

    public var id: ChannelID
    public var consumer: PublicKey
    public var provider: PublicKey
    public var deposit: Amount
    public var expiry: Instant
    /// The highest certified claim.
    public var claimed: Amount
    /// The consumer's promise of `claimed` (nil while nothing is claimed): what a validator's close
    /// report rests on.
    public var claimProof: ChannelPromise?
    public var settlement: Settlement?

    public var isClosed: Bool { settlement != nil }
}

/// A certified entry whose certificate, anchor and signature `LedgerState.verify` checked: it can
/// wait and be retried without checking them again.
public struct VerifiedEntry: Sendable {
    public let certified: CertifiedEntry
    public let hash: EntryHash

    fileprivate init(certified: CertifiedEntry, hash: EntryHash) {
        self.certified = certified
        self.hash = hash
    }
}

/// What `apply` did.
public enum ApplyOutcome: Hashable, Sendable {
    case applied(EntryHash)
    /// The entry was applied before; nothing changed (credits are idempotent by source hash).
    case duplicate(EntryHash)
}

/// The replicated ledger state.
public struct LedgerState: Sendable {
    public let parameters: GenesisParameters
    public var network: String { parameters.network }
    /// The current epoch.
    public private(set) var epoch: UInt64 = 0
    /// The committee of every epoch so far (certificates of an older epoch are checked against its own).
    public private(set) var committees: [UInt64: Committee]
    /// When each finished epoch ended (the `at` of its epoch change).
    public private(set) var epochEnds: [UInt64: Instant] = [:]
    public private(set) var accounts: [PublicKey: AccountState] = [:]
    public private(set) var channels: [ChannelID: Channel] = [:]
    /// Every applied entry (and genesis allocation), by source hash.
    public private(set) var applied: Set<EntryHash> = []
    /// Offenses already punished.
    public private(set) var punished: Set<Key256> = []
    /// Total minted at genesis.
    public let supply: Amount
    /// Total destroyed by slashing (after the reporters' rewards).
    public private(set) var burned: Amount = 0

    /// The state at genesis. Throws if `genesis.validate()` does.
    public init(genesis: GenesisParameters) throws(LedgerError) {
        try genesis.validate()
        parameters = genesis
        let first = try Committee(genesis.committee)
        committees = [0: first]
        var supply = first.totalStake
        for member in genesis.committee {
            accounts[member.identity, default: AccountState()].bonded[.validator] = member.stake
        }
        for (index, allocation) in genesis.allocations.enumerated() {
            let source = genesis.allocationHash(index)
            guard applied.insert(source).inserted else { continue }
            var account = accounts[allocation.recipient, default: AccountState()]
            account.balance = try account.balance.adding(allocation.amount)
            accounts[allocation.recipient] = account
            supply = try supply.adding(allocation.amount)
        }
        self.supply = supply
    }

    /// The current epoch's committee.
    public var committee: Committee {
        guard let committee = committees[epoch] else { preconditionFailure("no committee for the current epoch") }
        return committee
    }

    public func balance(of account: PublicKey) -> Amount { accounts[account]?.balance ?? 0 }

    /// Everything held: balances, bonds, unbondings and open channels' deposits. With `burned` it is
    /// always `supply` (nothing is created or lost outside genesis and slashing).
    public var totalHeld: Amount {
        var total: Amount = 0
        for account in accounts.values { total &+= account.balance &+ account.stake }
        for channel in channels.values where !channel.isClosed { total &+= channel.deposit }
        return total
    }

    /// The next committee (DESIGN §6, Epochs): the top `committeeSize` accounts by validator bond
    /// among those bonded at least the validator minimum; ties by public key bytes, ascending.
    public func nextCommittee() -> [CommitteeMember] {
        let minimum = parameters.minimumBonds.validator
        let candidates = accounts.compactMap { key, account -> CommitteeMember? in
            let stake = account.bonded(.validator)
            return stake >= minimum && stake > 0 ? CommitteeMember(identity: key, stake: stake) : nil
        }
        let sorted = candidates.sorted {
            $0.stake != $1.stake ? $0.stake > $1.stake : $0.identity.bytes.lexicographicallyPrecedes($1.identity.bytes)
        }
        return Array(sorted.prefix(parameters.committeeSize))
    }

    // MARK: Applying

    /// Verifies `certified` (its certificate against the committee of its entry's epoch, its anchor
    /// against the committee of the anchor's epoch, the entry's signature), then applies the entry. A
    /// certified channel close settles the highest promise its votes prove (docs/protocol.md §15.4).
    public mutating func apply(_ certified: CertifiedEntry) throws(LedgerError) -> ApplyOutcome {
        let hash = certified.entry.hash
        if applied.contains(hash) { return .duplicate(hash) }
        return try apply(verify(certified))
    }

    /// Checks what does not depend on the account's position: the certificate and anchor signatures
    /// and quorums, and the entry's signature. The result can be applied (and retried) without
    /// checking them again: committees never change once known.
    public func verify(_ certified: CertifiedEntry) throws(LedgerError) -> VerifiedEntry {
        let entry = certified.entry
        let hash = entry.hash
        guard let committee = committees[entry.epoch] else { throw .unknownEpoch(entry.epoch) }
        try certified.certificate.verify(for: entry, hash: hash, committee: committee, epoch: entry.epoch)
        if let anchor = certified.anchor {
            guard anchor.epoch < entry.epoch else {
                throw .invalidField(field: "anchor", reason: "not of an earlier epoch than the entry")
            }
            guard let old = committees[anchor.epoch] else { throw .unknownEpoch(anchor.epoch) }
            try anchor.verify(for: entry, hash: hash, committee: old, epoch: anchor.epoch)
        }
        guard entry.hasValidSignature else { throw .badSignature }
        return VerifiedEntry(certified: certified, hash: hash)
    }

    /// Applies an entry `verify` accepted. All or nothing: every rule is checked before anything
    /// changes, and nothing is copied but the few accounts the entry touches.
    public mutating func apply(_ verified: VerifiedEntry) throws(LedgerError) -> ApplyOutcome {
        if applied.contains(verified.hash) { return .duplicate(verified.hash) }
        let certified = verified.certified
        let proofs = certified.certificate.proofs + (certified.anchor?.proofs ?? [])
        let draft = try plan(
            certified.entry, hash: verified.hash, proofs: proofs, anchor: .certified(certified.anchor?.epoch),
            signatureChecked: true)
        commit(draft, hash: verified.hash)
        return .applied(verified.hash)
    }

    /// Throws the error `apply` would throw for `entry` (certificate and anchor aside), without
    /// changing anything: what a validator checks before it votes.
    public func check(_ entry: LedgerEntry) throws(LedgerError) {
        _ = try plan(entry, hash: entry.hash, proofs: [], anchor: .notChecked, signatureChecked: false)
    }

    /// The epoch whose committee must anchor `entry`, if it is a crossing (its epoch above its
    /// account's, docs/protocol.md §15.4); nil when the certificate of its own epoch suffices.
    public func anchorEpoch(for entry: LedgerEntry) -> UInt64? {
        let accountEpoch = accounts[entry.account]?.epoch ?? 0
        return entry.epoch > accountEpoch ? accountEpoch : nil
    }

    /// How `plan` treats the anchor rule.
    private enum AnchorRule {
        /// The anchor epoch the certified entry carries (nil: none).
        case certified(UInt64?)
        /// A validator's check before voting: the client gathers the anchor.
        case notChecked
    }

    /// What applying an entry changes: the accounts it touches (their new states), at most one
    /// channel, and the rest. Built by `plan` (which throws and changes nothing), applied by
    /// `commit` (which cannot fail).
    private struct Draft {
        var accounts: [PublicKey: AccountState] = [:]
        var channel: Channel?
        var punished: Key256?
        var burned: Amount?
        var epochChange: (epoch: UInt64, committee: Committee, endedAt: Instant)?
    }

    /// `key`'s state as the draft sees it.
    private func account(_ key: PublicKey, in draft: Draft) -> AccountState {
        draft.accounts[key] ?? accounts[key] ?? AccountState()
    }

    private func credit(_ recipient: PublicKey, _ amount: Amount, in draft: inout Draft) throws(LedgerError) {
        var state = account(recipient, in: draft)
        state.balance = try state.balance.adding(amount)
        draft.accounts[recipient] = state
    }

    /// Every rule of `entry`, checked against the state without changing it.
    private func plan(
        _ entry: LedgerEntry, hash: EntryHash, proofs: [ChannelPromise], anchor: AnchorRule, signatureChecked: Bool
    ) throws(LedgerError) -> Draft {
        guard entry.network == network else { throw .wrongNetwork(entry.network) }
        guard entry.kind != .genesisAllocation else { throw .genesisEntry }
        guard signatureChecked || entry.hasValidSignature else { throw .badSignature }
        guard var account = accounts[entry.account] else { throw .unknownAccount(entry.account) }
        guard entry.height == account.nextHeight else {
            throw .wrongHeight(expected: account.nextHeight, got: entry.height)
        }
        guard entry.prev == account.head else { throw .wrongPrev }
        // An account's epochs never go back, and it moves to a later epoch only with an anchor from
        // the committee of its current one (docs/threat-model.md, epoch changes).
        guard entry.epoch >= account.epoch else { throw .wrongEpoch(expected: account.epoch, got: entry.epoch) }
        if case .certified(let anchorEpoch) = anchor {
            if entry.epoch > account.epoch {
                guard anchorEpoch == account.epoch else { throw .anchorRequired(epoch: account.epoch) }
            } else if anchorEpoch != nil {
                throw .invalidField(field: "anchor", reason: "the entry does not leave its account's epoch")
            }
        }
        if !proofs.isEmpty {
            guard case .channelClose = entry.body else {
                throw .invalidField(field: "report", reason: "a report on an entry that closes no channel")
            }
        }

        var draft = Draft()
        switch entry.body {
        case .genesisAllocation:
            throw .genesisEntry

        case .transfer(let recipient, let amount):
            guard amount > 0 else { throw .invalidField(field: "amount", reason: "must be positive") }
            guard recipient != entry.account else {
                throw .invalidField(field: "recipient", reason: "is the sender")
            }
            try debit(&account, amount)
            try credit(recipient, amount, in: &draft)

        case .bond(let role, let amount):
            guard amount > 0 else { throw .invalidField(field: "amount", reason: "must be positive") }
            let total = try account.bonded(role).adding(amount)
            guard total >= parameters.minimumBonds[role] else {
                throw .bondBelowMinimum(role: role, minimum: parameters.minimumBonds[role])
            }
            try debit(&account, amount)
            account.bonded[role] = total

        case .unbond(let role, let amount, let at):
            guard amount > 0 else { throw .invalidField(field: "amount", reason: "must be positive") }
            let bonded = account.bonded(role)
            guard amount <= bonded else { throw .insufficientBond(role: role, bonded: bonded) }
            let remaining = bonded - amount
            guard remaining == 0 || remaining >= parameters.minimumBonds[role] else {
                throw .bondBelowMinimum(role: role, minimum: parameters.minimumBonds[role])
            }
            guard account.unbonding.count < LedgerLimits.maximumPendingUnbondings else { throw .tooManyUnbondings }
            account.bonded[role] = remaining == 0 ? nil : remaining
            account.unbonding.append(.init(role: role, amount: amount, releaseAt: at + parameters.unbondingDelay))

        case .withdraw(let at):
            let released = account.unbonding.filter { $0.releaseAt <= at }
            guard !released.isEmpty else {
                if let earliest = account.unbonding.map(\.releaseAt).min() {
                    throw .withdrawBeforeDelay(releaseAt: earliest)
                }
                throw .nothingToWithdraw
            }
            for unbonding in released { account.balance = try account.balance.adding(unbonding.amount) }
            account.unbonding.removeAll { $0.releaseAt <= at }

        case .channelOpen(let provider, let deposit, let expiry):
            guard deposit > 0 else { throw .invalidField(field: "deposit", reason: "must be positive") }
            guard provider != entry.account else { throw .invalidField(field: "provider", reason: "is the consumer") }
            try debit(&account, deposit)
            draft.channel = Channel(
                id: hash, consumer: entry.account, provider: provider, deposit: deposit, expiry: expiry, claimed: 0,
                settlement: nil)

        case .channelClaim(let promise):
            guard var channel = channels[promise.channel] else { throw .unknownChannel(promise.channel) }
            guard entry.account == channel.provider else { throw .notChannelProvider }
            guard promise.verify(consumer: channel.consumer, network: network) else { throw .badPromiseSignature }
            guard promise.amount <= channel.deposit else { throw .claimAboveDeposit(deposit: channel.deposit) }
            // A claim certified after the close is already counted in the close's reports (quorum
            // intersection): it only advances the provider's chain.
            if !channel.isClosed, promise.amount > channel.claimed {
                channel.claimed = promise.amount
                channel.claimProof = promise
                draft.channel = channel
            }

        case .channelClose(let id, let at):
            guard var channel = channels[id] else { throw .unknownChannel(id) }
            guard entry.account == channel.consumer || entry.account == channel.provider else {
                throw .notChannelParty
            }
            if entry.account == channel.consumer && entry.account != channel.provider {
                guard at >= channel.expiry else { throw .channelNotExpired(expiry: channel.expiry) }
            }
            // A report counts only with the consumer's promise it rests on.
            var proven: Amount = 0
            for proof in proofs {
                guard proof.channel == id else {
                    throw .invalidField(field: "report", reason: "a promise for another channel")
                }
                guard proof.verify(consumer: channel.consumer, network: network) else { throw .badPromiseSignature }
                proven = max(proven, proof.amount)
            }
            if !channel.isClosed {
                let paid = min(channel.deposit, max(channel.claimed, proven))
                let refunded = channel.deposit - paid
                channel.settlement = .init(paid: paid, refunded: refunded)
                draft.channel = channel
                draft.accounts[entry.account] = account
                try credit(channel.provider, paid, in: &draft)
                try credit(channel.consumer, refunded, in: &draft)
                account = self.account(entry.account, in: draft)
            }

        case .evidence(let evidence, let at):
            let offense = try evidence.verify(network: network)
            guard !punished.contains(offense.key) else { throw .duplicateEvidence }
            if let end = epochEnds[offense.epoch], at > end + parameters.evidenceLifetime { throw .evidenceExpired }
            draft.accounts[entry.account] = account
            try slash(offense, reporter: entry.account, in: &draft)
            account = self.account(entry.account, in: draft)

        case .epochChange(let newEpoch, let members, let at):
            guard entry.epoch == epoch else { throw .wrongEpoch(expected: epoch, got: entry.epoch) }
            guard newEpoch == epoch + 1 else { throw .wrongEpoch(expected: epoch + 1, got: newEpoch) }
            let next = try Committee(members)
            guard members.count <= parameters.committeeSize else {
                throw .invalidCommittee("\(members.count) members, the committee size is \(parameters.committeeSize)")
            }
            draft.epochChange = (newEpoch, next, at)
        }

        account.nextHeight += 1
        account.head = hash
        account.epoch = entry.epoch
        draft.accounts[entry.account] = account
        return draft
    }

    /// Applies a draft `plan` built. Cannot fail.
    private mutating func commit(_ draft: Draft, hash: EntryHash) {
        for (key, account) in draft.accounts { accounts[key] = account }
        if let channel = draft.channel { channels[channel.id] = channel }
        if let key = draft.punished { punished.insert(key) }
        if let burned = draft.burned { self.burned = burned }
        if let change = draft.epochChange {
            committees[change.epoch] = change.committee
            epochEnds[epoch] = change.endedAt
            epoch = change.epoch
        }
        applied.insert(hash)
    }

    private func debit(_ account: inout AccountState, _ amount: Amount) throws(LedgerError) {
        guard account.balance >= amount else {
            throw .insufficientBalance(needed: amount, available: account.balance)
        }
        account.balance -= amount
    }

    /// Burns the offender's bonded and unbonding stake; the reporter gets `reporterRewardPPM` of it,
    /// unless it is the offender (an offender reporting itself would only get its reward back).
    private func slash(_ offense: Evidence.Offense, reporter: PublicKey, in draft: inout Draft) throws(LedgerError) {
        var offender = account(offense.offender, in: draft)
        guard accounts[offense.offender] != nil, offender.stake > 0 else {
            throw .invalidEvidence("the offender has no stake to burn")
        }
        let stake = offender.stake
        let reward =
            reporter == offense.offender
            ? 0 : stake.scaled(by: UInt64(parameters.reporterRewardPPM), over: UInt64(GenesisParameters.ppm))
        offender.bonded = [:]
        offender.unbonding = []
        offender.slashed = try offender.slashed.adding(stake)
        draft.accounts[offense.offender] = offender
        try credit(reporter, reward, in: &draft)
        draft.burned = try burned.adding(stake - reward)
        draft.punished = offense.key
    }
}
