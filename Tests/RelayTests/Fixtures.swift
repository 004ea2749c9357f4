// Shared fixtures for the relay tests: keys, endpoints, a start instant.

import UmbraCore

@testable import Relay

let t0 = Instant(nanoseconds: 1_700_000_000_000_000_000)

/// A public key whose 32 bytes are all `byte`.
func key(_ byte: UInt8) -> PublicKey {
    guard let key = try? PublicKey(bytes: [UInt8](repeating: byte, count: PublicKey.byteCount)) else {
        preconditionFailure("32 bytes")
    }
    return key
}

/// 198.51.100.x:port (documentation range, treated as public).
func publicEndpoint(_ host: UInt8, port: UInt16 = 4747) -> Endpoint {
    Endpoint(address: .v4(0xC633_6400 | UInt32(host)), port: port)
}

/// 192.168.1.x:port.
func lanEndpoint(_ host: UInt8, port: UInt16 = 4747) -> Endpoint {
    Endpoint(address: .v4(0xC0A8_0100 | UInt32(host)), port: port)
}

let v6Endpoint = Endpoint(address: .v6(high: 0x2001_0DB8_0000_0001, low: 0xFFFF_0000_0000_0042), port: 65535)

extension Instant {
    static func + (lhs: Instant, rhs: Int) -> Instant { lhs + .seconds(rhs) }
}
