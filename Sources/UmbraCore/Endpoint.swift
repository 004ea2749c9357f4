// Network endpoints as plain values. Text parsing and formatting live in Endpoint+Text.swift;
// the binary form in Endpoint+Codec.swift.

/// An IPv4 or IPv6 address, stored without heap allocation (endpoints are compared per datagram).
public enum IPAddress: Hashable, Sendable {
    /// IPv4, the four octets in network order packed big-endian (10.0.0.1 == 0x0A00_0001).
    case v4(UInt32)
    /// IPv6, the sixteen octets in network order packed big-endian into two words.
    case v6(high: UInt64, low: UInt64)
}

/// A UDP endpoint: an IP address and a port.
public struct Endpoint: Hashable, Sendable {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }
}

// MARK: - The discard prefix

extension IPAddress {
    /// Whether this is in 100::/64, IPv6's discard-only block (RFC 6666): no real packet is ever
    /// addressed to it, so no peer record, relay candidate or other endpoint a peer names may use it.
    public var isDiscardOnly: Bool {
        if case .v6(let high, _) = self { return high == 0x0100_0000_0000_0000 }
        return false
    }
}

extension Endpoint {
    /// `[100::]:0`: an endpoint no datagram is ever sent to (RFC 6666's discard-only prefix, port
    /// 0). It stands where a wire or disk format needs an endpoint and none is known: the `observed`
    /// address of a pong to a requester whose address we do not know, the source a record store
    /// charges for a STORE that came with no address.
    public static let unknown = Endpoint(address: .v6(high: 0x0100_0000_0000_0000, low: 0), port: 0)
}
