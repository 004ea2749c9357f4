// IP-prefix diversity caps: one operator with one /24 (IPv4) or /48 (IPv6) cannot fill a bucket or
// a large share of the table with sybils. Loopback, private and link-local addresses are exempt when
// `diversityExemptsPrivate` is set, so local clusters and simulations are not limited.

import UmbraCore

extension RoutingTable {
    /// The prefix an address is counted under: an IPv4 /24 or an IPv6 /48.
    enum Subnet: Hashable, Sendable {
        case v4(UInt32)
        case v6(UInt64)
    }

    /// The subnet `endpoint` counts against, or `nil` when it is exempt from the caps.
    func subnet(of endpoint: Endpoint) -> Subnet? {
        // Endpoints are normalised (no IPv4-mapped IPv6); unmapping anyway keeps the count honest.
        let address = endpoint.address.unmapped
        if config.diversityExemptsPrivate && (address.isLoopback || address.isPrivate || address.isLinkLocal) {
            return nil
        }
        switch address {
        case .v4(let value): return .v4(value & 0xFFFF_FF00)
        case .v6(let high, _): return .v6(high & 0xFFFF_FFFF_FFFF_0000)
        }
    }

    /// Whether one more contact at `endpoint` fits the caps of bucket `index` and of the table.
    /// The contact itself must not be counted already (callers remove it first).
    func admits(_ endpoint: Endpoint, inBucket index: Int) -> Bool {
        guard let subnet = subnet(of: endpoint) else { return true }
        guard subnetCounts[subnet, default: 0] < config.maxPerSubnetInTable else { return false }
        let inBucket = slots[index].entries.count { self.subnet(of: $0.contact.endpoint) == subnet }
        return inBucket < config.maxPerSubnetInBucket
    }

    /// Adds `delta` to the table-wide count of `endpoint`'s subnet (if it is counted).
    mutating func account(_ endpoint: Endpoint, by delta: Int) {
        guard let subnet = subnet(of: endpoint) else { return }
        let updated = subnetCounts[subnet, default: 0] + delta
        assert(updated >= 0, "subnet count went negative")
        subnetCounts[subnet] = updated > 0 ? updated : nil
    }
}
