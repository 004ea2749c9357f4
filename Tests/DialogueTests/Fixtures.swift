// Fixtures of the dialogue tests: inner addresses and a standard grant (keys and `t0` come from
// UmbraTestKit).

import UmbraCore

@testable import Dialogue

/// 10.182.x.y.
func inner(_ x: UInt32, _ y: UInt32) -> IPAddress { .v4(0x0AB6_0000 | x << 8 | y) }

let sampleV6 = IPAddress.v6(high: 0xFD00_0000_0000_00B6, low: 0x0000_0000_0000_0002)

let sampleGrant = SessionGrant(
    innerIPv4: InterfaceAddress(address: inner(0, 2), prefixLength: 16),
    innerIPv6: InterfaceAddress(address: sampleV6, prefixLength: 64), gateway: inner(0, 1),
    dnsServers: [.v4(0x0101_0101), .v6(high: 0x2606_4700_4700_0000, low: 0x1111)], mtu: 1420, keepaliveSeconds: 5)
