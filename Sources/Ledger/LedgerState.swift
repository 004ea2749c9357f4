// The ledger's deterministic state machine (DESIGN §6): applies certified entries to balances, bonds,
// unbondings, channels and slashes. Every replica that applies the same certified entries ends in the
// same state whatever the order across accounts (an account's own entries apply in height order;
// credits to other accounts commute). `apply` is all or nothing: a thrown `LedgerError` leaves the
// state as it was. An entry refused for `insufficientBalance` or `unknownChannel`/`unknownAccount` may
// depend on a certified entry of another account not applied yet: the caller retries it later.

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
    public var settlement: Settlement?

    public var isClosed: Bool { settlement != nil }
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

    /// Verifies `certified`'s certificate against the committee of its entry's epoch, then applies
    /// the entry. A certified channel close settles at least the highest report in the certificate.
    public mutating func apply(_ certified: CertifiedEntry) throws(LedgerError) -> ApplyOutcome {
        let entry = certified.entry
        let hash = entry.hash
        if applied.contains(hash) { return .duplicate(hash) }
        guard let committee = committees[entry.epoch] else { throw .unknownEpoch(entry.epoch) }
        try certified.certificate.verify(for: entry, committee: committee)
        var next = self
        try next.execute(entry, hash: hash, closeReport: certified.certificate.highestReport)
        self = next
        return .applied(hash)
    }

    /// Throws the error `apply` would throw for `entry` (certificate aside), without changing anything:
    /// what a validator checks before it votes. `closeReport` stands in for the certificate's reports.
    public func check(_ entry: LedgerEntry, closeReport: Amount = 0) throws(LedgerError) {
        var scratch = self
        try scratch.execute(entry, hash: entry.hash, closeReport: closeReport)
    }

    /// Applies `entry` in place. Not atomic by itself: callers run it on a copy (`apply`, `check`).
    private mutating func execute(_ entry: LedgerEntry, hash: EntryHash, closeReport: Amount) throws(LedgerError) {
        guard entry.network == network else { throw .wrongNetwork(entry.network) }
        guard entry.kind != .genesisAllocation else { throw .genesisEntry }
        guard entry.hasValidSignature else { throw .badSignature }
        guard var account = accounts[entry.account] else { throw .unknownAccount(entry.account) }
        guard entry.height == account.nextHeight else {
            throw .wrongHeight(expected: account.nextHeight, got: entry.height)
        }
        guard entry.prev == account.head else { throw .wrongPrev }

        switch entry.body {
        case .genesisAllocation:
            throw .genesisEntry

        case .transfer(let recipient, let amount):
            guard amount > 0 else { throw .invalidField(field: "amount", reason: "must be positive") }
            guard recipient != entry.account else {
                throw .invalidField(field: "recipient", reason: "is the sender")
            }
            try debit(&account, amount)
            accounts[entry.account] = account
            try credit(recipient, amount)
            account = accounts[entry.account] ?? account

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
            channels[hash] = Channel(
                id: hash, consumer: entry.account, provider: provider, deposit: deposit, expiry: expiry, claimed: 0,
                settlement: nil)

        case .channelClaim(let promise):
            guard var channel = channels[promise.channel] else { throw .unknownChannel(promise.channel) }
            guard entry.account == channel.provider else { throw .notChannelProvider }
            guard promise.verify(consumer: channel.consumer, network: network) else { throw .badPromiseSignature }
            guard promise.amount <= channel.deposit else { throw .claimAboveDeposit(deposit: channel.deposit) }
            // A claim certified after the close is already counted in the close's reports (quorum
            // intersection): it only advances the provider's chain.
            if !channel.isClosed {
                channel.claimed = max(channel.claimed, promise.amount)
                channels[promise.channel] = channel
            }

        case .channelClose(let id, let at):
            guard var channel = channels[id] else { throw .unknownChannel(id) }
            guard entry.account == channel.consumer || entry.account == channel.provider else {
                throw .notChannelParty
            }
            if entry.account == channel.consumer && entry.account != channel.provider {
                guard at >= channel.expiry else { throw .channelNotExpired(expiry: channel.expiry) }
            }
            if !channel.isClosed {
                let paid = min(channel.deposit, max(channel.claimed, closeReport))
                let refunded = channel.deposit - paid
                channel.settlement = .init(paid: paid, refunded: refunded)
                channels[id] = channel
                accounts[entry.account] = account
                try credit(channel.provider, paid)
                try credit(channel.consumer, refunded)
                account = accounts[entry.account] ?? account
            }

        case .evidence(let evidence, let at):
            let offense = try evidence.verify(network: network)
            guard !punished.contains(offense.key) else { throw .duplicateEvidence }
            if let end = epochEnds[offense.epoch], at > end + parameters.evidenceLifetime { throw .evidenceExpired }
            accounts[entry.account] = account
            try slash(offense, reporter: entry.account)
            account = accounts[entry.account] ?? account

        case .epochChange(let newEpoch, let members, let at):
            guard entry.epoch == epoch else { throw .wrongEpoch(expected: epoch, got: entry.epoch) }
            guard newEpoch == epoch + 1 else { throw .wrongEpoch(expected: epoch + 1, got: newEpoch) }
            let next = try Committee(members)
            guard members.count <= parameters.committeeSize else {
                throw .invalidCommittee("\(members.count) members, the committee size is \(parameters.committeeSize)")
            }
            committees[newEpoch] = next
            epochEnds[epoch] = at
            epoch = newEpoch
        }

        account.nextHeight += 1
        account.head = hash
        accounts[entry.account] = account
        applied.insert(hash)
    }

    private func debit(_ account: inout AccountState, _ amount: Amount) throws(LedgerError) {
        guard account.balance >= amount else {
            throw .insufficientBalance(needed: amount, available: account.balance)
        }
        account.balance -= amount
    }

    private mutating func credit(_ recipient: PublicKey, _ amount: Amount) throws(LedgerError) {
        var account = accounts[recipient, default: AccountState()]
        account.balance = try account.balance.adding(amount)
        accounts[recipient] = account
    }

    /// Burns the offender's bonded and unbonding stake; the reporter gets `reporterRewardPPM` of it.
    private mutating func slash(_ offense: Evidence.Offense, reporter: PublicKey) throws(LedgerError) {
        guard var offender = accounts[offense.offender], offender.stake > 0 else {
            throw .invalidEvidence("the offender has no stake to burn")
        }
        let stake = offender.stake
        let reward = stake.scaled(by: UInt64(parameters.reporterRewardPPM), over: UInt64(GenesisParameters.ppm))
        offender.bonded = [:]
        offender.unbonding = []
        offender.slashed = try offender.slashed.adding(stake)
        accounts[offense.offender] = offender
        try credit(reporter, reward)
        burned = try burned.adding(stake - reward)
        punished.insert(offense.key)
    }
}
