// The identity of a genesis: a hash over every parameter in canonical bytes, so two nodes agree on a
// network's rules, not only on its name. A data dir remembers the id of the genesis it joined and a
// node refuses to start with another (docs/operations.md §"Ledger").

import UmbraCore

extension LedgerDomain {
    public static let genesis = "umbra/genesis/v1"
}

extension GenesisParameters {
    /// BLAKE2b-256 of `umbra/genesis/v1 || 0 || network || committeeSize u32 | minimum bonds 3×u64 |
    /// unbonding delay | evidence lifetime (each seconds i64, attoseconds i64) | reward u32 |
    /// count u32 | committee (key 32 | stake u64)… | count u32 | allocations (key 32 | amount u64)…`,
    /// all integers little-endian, lists in the file's order.
    public var id: Key256 {
        var writer = ByteWriter(capacity: 96 + 40 * (committee.count + allocations.count))
        writer.write(UInt32(clamping: committeeSize))
        writer.write(minimumBonds.provider)
        writer.write(minimumBonds.relay)
        writer.write(minimumBonds.validator)
        for duration in [unbondingDelay, evidenceLifetime] {
            writer.write(UInt64(bitPattern: duration.components.seconds))
            writer.write(UInt64(bitPattern: duration.components.attoseconds))
        }
        writer.write(reporterRewardPPM)
        writer.write(UInt32(clamping: committee.count))
        for member in committee {
            writer.write(member.identity)
            writer.write(member.stake)
        }
        writer.write(UInt32(clamping: allocations.count))
        for allocation in allocations {
            writer.write(allocation.recipient)
            writer.write(allocation.amount)
        }
        return LedgerDomain.hash(
            LedgerDomain.signingInput(tag: LedgerDomain.genesis, network: network, fields: writer.bytes))
    }
}
