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
