// The genesis parameters of a ledger network (DESIGN §6; issue #14 item 8 makes a file of them): the
// network id, what is minted and to whom, the first committee (whose stake is minted bonded), and
// the rules every replica applies. Plain values; the file format and CLI live outside the core.

import UmbraCore

/// The smallest bond accepted for each role.
public struct MinimumBonds: Hashable, Sendable {
    public var provider: Amount
    public var relay: Amount
    public var validator: Amount

    public init(provider: Amount, relay: Amount, validator: Amount) {
        self.provider = provider
        self.relay = relay
        self.validator = validator
    }

    public subscript(role: Role) -> Amount {
        switch role {
        case .provider: provider
        case .relay: relay
        case .validator: validator
        }
    }
}

/// Amounts minted to a balance at genesis.
public struct Allocation: Hashable, Sendable {
    public var recipient: PublicKey
    public var amount: Amount

    public init(recipient: PublicKey, amount: Amount) {
        self.recipient = recipient
        self.amount = amount
    }
}

/// Everything a replica needs to start the ledger of one network.
public struct GenesisParameters: Hashable, Sendable {
    public var network: String
    public var allocations: [Allocation]
    /// Epoch 0's committee; each member's stake is minted as its bonded validator stake.
    public var committee: [CommitteeMember]
    public var minimumBonds: MinimumBonds
    /// How long unbonded stake waits before it can be withdrawn (and stays slashable).
    public var unbondingDelay: Duration
    /// How long after an epoch ends evidence of an offense in it is accepted. At most `unbondingDelay`.
    public var evidenceLifetime: Duration
    /// N: how many validators the next committee takes (the top N by validator bond).
    public var committeeSize: Int
    /// The share of burned stake credited to the reporter, in parts per million.
    public var reporterRewardPPM: UInt32

    public static let ppm: UInt32 = 1_000_000

    public init(
        network: String, allocations: [Allocation], committee: [CommitteeMember], minimumBonds: MinimumBonds,
        unbondingDelay: Duration, evidenceLifetime: Duration, committeeSize: Int, reporterRewardPPM: UInt32
    ) {
        self.network = network
        self.allocations = allocations
        self.committee = committee
        self.minimumBonds = minimumBonds
        self.unbondingDelay = unbondingDelay
        self.evidenceLifetime = evidenceLifetime
        self.committeeSize = committeeSize
        self.reporterRewardPPM = reporterRewardPPM
    }

    /// Throws unless the parameters can start a ledger: a network id of 1...64 bytes, a valid first
    /// committee of at most `committeeSize` members each bonded at least the validator minimum,
    /// `committeeSize` in 1...`LedgerLimits.maximumCommitteeSize`, a non-negative evidence lifetime no
    /// longer than the unbonding delay, a reward of at most one million ppm, and a minted supply that
    /// does not overflow.
    public func validate() throws(LedgerError) {
        guard (1...LedgerLimits.maximumNetworkBytes).contains(network.utf8.count) else {
            throw .invalidField(field: "network", reason: "must be 1...\(LedgerLimits.maximumNetworkBytes) bytes")
        }
        guard (1...LedgerLimits.maximumCommitteeSize).contains(committeeSize) else {
            throw .invalidField(field: "committee size", reason: "must be 1...\(LedgerLimits.maximumCommitteeSize)")
        }
        let first = try Committee(committee)
        guard first.members.count <= committeeSize else {
            throw .invalidCommittee("\(first.members.count) members, the committee size is \(committeeSize)")
        }
        guard committee.allSatisfy({ $0.stake >= minimumBonds.validator }) else {
            throw .bondBelowMinimum(role: .validator, minimum: minimumBonds.validator)
        }
        guard evidenceLifetime >= .zero, unbondingDelay >= evidenceLifetime else {
            throw .invalidField(field: "unbonding delay", reason: "must be at least the evidence lifetime")
        }
        guard reporterRewardPPM <= Self.ppm else {
            throw .invalidField(field: "reporter reward", reason: "above one million ppm")
        }
        var supply = first.totalStake
        for allocation in allocations { supply = try supply.adding(allocation.amount) }
    }

    /// The source hash of the `index`th allocation (so genesis credits are idempotent like any other).
    func allocationHash(_ index: Int) -> EntryHash {
        var writer = ByteWriter(capacity: 48)
        writer.write(UInt32(index))
        writer.write(allocations[index].recipient)
        writer.write(allocations[index].amount)
        return LedgerDomain.hash(
            LedgerDomain.signingInput(tag: LedgerDomain.genesisAllocation, network: network, fields: writer.bytes))
    }
}
