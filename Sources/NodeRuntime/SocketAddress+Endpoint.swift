import NIOCore
import UmbraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension SocketAddress {
    /// The socket address of an endpoint, built without going through text.
    init(_ endpoint: Endpoint) {
        switch endpoint.address {
        case .v4(let value):
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = endpoint.port.bigEndian
            address.sin_addr.s_addr = value.bigEndian
            self = SocketAddress(address, host: "")
        case .v6(let high, let low):
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = endpoint.port.bigEndian
            withUnsafeMutableBytes(of: &address.sin6_addr) { raw in
                raw.storeBytes(of: high.bigEndian, toByteOffset: 0, as: UInt64.self)
                raw.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
            }
            self = SocketAddress(address, host: "")
        }
    }

    /// The endpoint of an IPv4 or IPv6 socket address (IPv4-mapped IPv6 becomes IPv4).
    var endpoint: Endpoint? {
        switch self {
        case .v4(let v4):
            return Endpoint(
                address: .v4(UInt32(bigEndian: v4.address.sin_addr.s_addr)),
                port: UInt16(bigEndian: v4.address.sin_port))
        case .v6(let v6):
            guard case .v6(let high, let low) = IPAddress(v6.address.sin6_addr) else { return nil }
            let port = UInt16(bigEndian: v6.address.sin6_port)
            if high == 0, low >> 32 == 0xFFFF {
                return Endpoint(address: .v4(UInt32(truncatingIfNeeded: low)), port: port)
            }
            return Endpoint(address: .v6(high: high, low: low), port: port)
        case .unixDomainSocket:
            return nil
        }
    }
}

extension IPAddress {
    /// The IPv6 address in a socket address structure (no IPv4-mapped normalisation here).
    init(_ address: in6_addr) {
        var address = address
        let (high, low) = withUnsafeBytes(of: &address) { raw in
            (
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            )
        }
        self = .v6(high: high, low: low)
    }
}
