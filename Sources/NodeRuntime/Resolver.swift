import UmbraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns contacts into endpoints; host names go through getaddrinfo (once, at start).
public enum Resolver {
    public struct Failure: Error, CustomStringConvertible {
        public var host: String
        public var reason: String
        public var description: String { "cannot resolve \(host): \(reason)" }
    }

    public static func endpoint(of contact: Contact) throws(Failure) -> Endpoint {
        switch contact.host {
        case .ip(let address): return Endpoint(address: address, port: contact.port)
        case .name(let name): return try resolve(name, port: contact.port)
        }
    }

    public static func resolve(_ name: String, port: UInt16) throws(Failure) -> Endpoint {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(name, String(port), &hints, &result)
        guard status == 0, let first = result else {
            throw Failure(host: name, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(first) }
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            if let address = info.pointee.ai_addr {
                switch Int32(address.pointee.sa_family) {
                case AF_INET:
                    let v4 = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
                    return Endpoint(address: .v4(UInt32(bigEndian: v4.sin_addr.s_addr)), port: port)
                case AF_INET6:
                    let v6 = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }
                    return Endpoint(address: IPAddress(v6.sin6_addr), port: port)
                default: break
                }
            }
            cursor = info.pointee.ai_next
        }
        throw Failure(host: name, reason: "no IPv4 or IPv6 address")
    }
}
