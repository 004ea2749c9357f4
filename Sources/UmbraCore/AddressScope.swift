// Where an address is, as far as deciding whom a node may send to on someone else's word (issue #12:
// a peer must not be able to steer a node at its own host, its LAN, or at addresses no datagram
// should go to) and whose requests count together against a cap (`SourcePrefix`).

/// The reach of an IP address.
public enum AddressScope: Sendable, Hashable, Comparable {
    /// Never a destination: unspecified, multicast, broadcast, 0.0.0.0/8, 240.0.0.0/4, the
    /// discard-only block 100::/64 (RFC 6666), and port 0 (judged by `Endpoint.scope`).
    case unusable
    /// 127.0.0.0/8, ::1.
    case loopback
    /// 169.254.0.0/16, fe80::/10 (only meaningful together with an interface).
    case linkLocal
    /// 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7.
    case `private`
    /// Anything else: a global unicast address.
    case global
}

extension IPAddress {
    /// 224.0.0.0/4 and ff00::/8.
    public var isMulticast: Bool {
        switch unmapped {
        case .v4(let value): value >> 28 == 0xE
        case .v6(let high, _): high >> 56 == 0xFF
        }
    }

    /// Whether this is an IPv4 address (IPv4-mapped IPv6 included).
    public var isIPv4Family: Bool { if case .v4 = unmapped { true } else { false } }

    public var scope: AddressScope {
        let address = unmapped
        if address.isUnspecified || address.isMulticast { return .unusable }
        switch address {
        case .v4(let value):
            // 0/8 ("this network"), 240/4 (reserved) and the limited broadcast address.
            if value >> 24 == 0 || value >> 28 == 0xF { return .unusable }
        case .v6:
            if address.isDiscardOnly { return .unusable }
        }
        if address.isLoopback { return .loopback }
        if address.isLinkLocal { return .linkLocal }
        if address.isPrivate { return .private }
        return .global
    }

    /// Whether two private addresses are on one private network: the same IPv4 /16 or IPv6 /48.
    /// (A LAN is rarely wider than a /16; a node is only steered at private peers of its own network.)
    public func sharesPrivateNetwork(with other: IPAddress) -> Bool {
        switch (unmapped, other.unmapped) {
        case (.v4(let one), .v4(let two)): one >> 16 == two >> 16
        case (.v6(let one, _), .v6(let two, _)): one >> 16 == two >> 16
        default: false
        }
    }
}

extension Endpoint {
    /// The scope of the address; `.unusable` for port 0 as well.
    public var scope: AddressScope { port == 0 ? .unusable : address.scope }
}

/// Whether a node may send to an endpoint that someone else named (a DHT contact, a hole-punch
/// candidate). Global unicast endpoints are fine; unusable and link-local ones never; loopback ones
/// only when the node itself is on loopback; private ones only when one of the node's own addresses
/// is on the same private network (`sharesPrivateNetwork`). `own` are the node's own addresses as
/// far as it knows them (its socket address, advertised and observed addresses, and the address of
/// the peer that named the endpoint when that peer reaches us at a loopback or private address: it
/// is then on our host or network).
public enum SteeringPolicy {
    public static func admits(_ endpoint: Endpoint, own: [IPAddress]) -> Bool {
        switch endpoint.scope {
        case .unusable, .linkLocal: false
        case .global: true
        case .loopback: own.contains { $0.scope == .loopback }
        case .private: own.contains { $0.scope == .private && $0.sharesPrivateNetwork(with: endpoint.address) }
        }
    }
}

/// The keys one source address counts under for per-source caps, hierarchical: the address itself
/// (an IPv4 /32 or an IPv6 /64, what one subscriber usually gets) and its wider prefix (an IPv4 /24
/// or an IPv6 /48, what one operator cheaply holds). Loopback, private and link-local sources are
/// many nodes on one machine or LAN (tests, demos, namespaces): they count per full endpoint
/// (address and port, i.e. per socket) instead, so one process cannot take a whole capacity with
/// fresh identities, while a cluster of nodes on 127.0.0.1 still gets in.
public enum SourcePrefix: Hashable, Sendable {
    case v4Address(UInt32)
    case v4Prefix(UInt32)
    case v6Address(UInt64)
    case v6Prefix(UInt64)
    case socket(Endpoint)

    /// The narrow key (address or socket) and, for global sources, the wide one.
    public static func keys(for endpoint: Endpoint) -> (address: SourcePrefix, prefix: SourcePrefix?) {
        let address = endpoint.address.unmapped
        switch address.scope {
        case .global:
            switch address {
            case .v4(let value): return (.v4Address(value), .v4Prefix(value & 0xFFFF_FF00))
            case .v6(let high, _): return (.v6Address(high), .v6Prefix(high & 0xFFFF_FFFF_FFFF_0000))
            }
        default:
            return (.socket(Endpoint(address: address, port: endpoint.port)), nil)
        }
    }
}

/// Shares of a capacity that one source may hold: at most `addressShare` of it per address (or
/// socket) and `prefixShare` per wide prefix, never the whole capacity once it is above 1.
public struct SourceShares: Sendable, Equatable {
    public var addressShare: Double
    public var prefixShare: Double

    public init(addressShare: Double, prefixShare: Double) {
        self.addressShare = addressShare
        self.prefixShare = prefixShare
    }

    /// How many of `capacity` one address may hold (at least `floor`, at least 1, below `capacity`
    /// when `capacity` > 1).
    public func addressLimit(of capacity: Int, floor: Int = 1) -> Int { limit(addressShare, capacity, floor) }

    /// How many of `capacity` one wide prefix may hold (never below the address limit).
    public func prefixLimit(of capacity: Int, floor: Int = 1) -> Int {
        max(limit(prefixShare, capacity, floor), addressLimit(of: capacity, floor: floor))
    }

    private func limit(_ share: Double, _ capacity: Int, _ floor: Int) -> Int {
        let scaled = Int((Double(capacity) * min(max(share, 0), 1)).rounded(.down))
        let ceiling = capacity > 1 ? capacity - 1 : capacity
        return max(1, min(max(scaled, floor), max(ceiling, 1)))
    }

    /// Whether one more holder from `source` fits, given the sources of the current holders.
    public func admits(
        _ source: Endpoint, holders: some Sequence<Endpoint>, capacity: Int, floor: Int = 1
    ) -> Bool {
        let keys = SourcePrefix.keys(for: source)
        var sameAddress = 0
        var samePrefix = 0
        for holder in holders {
            let other = SourcePrefix.keys(for: holder)
            if other.address == keys.address { sameAddress += 1 }
            if let prefix = keys.prefix, other.prefix == prefix { samePrefix += 1 }
        }
        if sameAddress >= addressLimit(of: capacity, floor: floor) { return false }
        if keys.prefix != nil, samePrefix >= prefixLimit(of: capacity, floor: floor) { return false }
        return true
    }
}
