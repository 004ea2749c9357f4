// Shared fixtures for the dialogue tests: keys, a start instant, a standard grant.

import UmbraCore

@testable import Dialogue

let t0 = Instant(nanoseconds: 1_700_000_000_000_000_000)

/// A public key whose 32 bytes are all `byte`.
func key(_ byte: UInt8) -> PublicKey {
    guard let key = try? PublicKey(bytes: [UInt8](repeating: byte, count: PublicKey.byteCount)) else {
        preconditionFailure("32 bytes")
    }
    return key
}

/// 10.182.x.y.
func inner(_ x: UInt32, _ y: UInt32) -> IPAddress { .v4(0x0AB6_0000 | x << 8 | y) }

let sampleV6 = IPAddress.v6(high: 0xFD00_0000_0000_00B6, low: 0x0000_0000_0000_0002)

let sampleGrant = SessionGrant(
    innerIPv4: InterfaceAddress(address: inner(0, 2), prefixLength: 16),
    innerIPv6: InterfaceAddress(address: sampleV6, prefixLength: 64), gateway: inner(0, 1),
    dnsServers: [.v4(0x0101_0101), .v6(high: 0x2606_4700_4700_0000, low: 0x1111)], mtu: 1420, keepaliveSeconds: 5)

extension Instant {
    static func + (lhs: Instant, rhs: Int) -> Instant { lhs + .seconds(rhs) }
}
