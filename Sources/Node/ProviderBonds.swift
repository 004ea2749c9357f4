// Stakes gate the market (issue #15 item 1, docs/threat-model.md §"Sybil cost"): with a ledger, a
// provider's offers count only while its certified provider bond is at least the genesis minimum.
// The ledger part tells the market part what it knows (`NodeNotice.providerBonds`): the whole table
// when it becomes ready (or after evidence burned stake), then each provider whose bond changed.

import Ledger
import UmbraCore

/// Provider bonds as the ledger part reports them.
public struct ProviderBonds: Sendable, Equatable {
    /// The genesis minimum for a provider bond.
    public var minimum: Amount
    /// Bonded provider stake by account (changed accounts only, unless `isComplete`).
    public var bonds: [PublicKey: Amount]
    /// The whole table (replaces what the receiver held), or only changes.
    public var isComplete: Bool

    public init(minimum: Amount, bonds: [PublicKey: Amount], isComplete: Bool) {
        self.minimum = minimum
        self.bonds = bonds
        self.isComplete = isComplete
    }

    /// The table of `state`: every account with a provider bond.
    public init(_ state: LedgerState) {
        self.init(
            minimum: state.parameters.minimumBonds.provider,
            bonds: state.accounts.compactMapValues { account in
                let bond = account.bonded(.provider)
                return bond > 0 ? bond : nil
            }, isComplete: true)
    }

    /// Merges a report into the table held.
    public mutating func merge(_ report: ProviderBonds) {
        minimum = report.minimum
        if report.isComplete {
            bonds = report.bonds
        } else {
            for (key, bond) in report.bonds { bonds[key] = bond > 0 ? bond : nil }
        }
    }

    public func bond(of provider: PublicKey) -> Amount { bonds[provider] ?? 0 }

    /// Whether `provider` may offer services.
    public func admits(_ provider: PublicKey) -> Bool { bond(of: provider) >= minimum && bond(of: provider) > 0 }
}
