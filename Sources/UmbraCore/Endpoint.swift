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

// MARK: - Relay paths

extension Endpoint {
    /// The prefix of relay paths: 100::/64, IPv6's discard-only block (RFC 6666), which no real
    /// packet is ever addressed to.
    public static let relayPathPrefix: UInt64 = 0x0100_0000_0000_0000

    /// A virtual endpoint that stands for "through a relay": the node layer keeps a table from
    /// `index` to (relay, remote peer), hands the session layer this endpoint, and turns every send
    /// to it into a relay frame. It never reaches a socket.
    public static func relayPath(_ index: UInt32) -> Endpoint {
        Endpoint(address: .v6(high: relayPathPrefix, low: UInt64(index)), port: 0)
    }

    /// Whether this is a virtual relay path (see `relayPath(_:)`).
    public var isRelayPath: Bool {
        if case .v6(let high, _) = address { return high == Self.relayPathPrefix }
        return false
    }

    /// The index of a relay path, or nil for a real endpoint.
    public var relayPathIndex: UInt32? {
        guard case .v6(let high, let low) = address, high == Self.relayPathPrefix, low <= UInt64(UInt32.max)
        else { return nil }
        return UInt32(low)
    }
}
