// Issue #12.4 and #12.5 on the relay side: reservations and circuits capped per source address and
// wide prefix (one /48 or /24 cannot fill a relay, one socket on loopback cannot either, a loopback
// cluster still fits), and hole-punch targets filtered to what a peer may steer us at.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Relay

/// A key from a 16-bit number (more than 255 distinct keys).
private func wideKey(_ number: Int) -> PublicKey {
    var bytes = [UInt8](repeating: 0xA5, count: PublicKey.byteCount)
    bytes[0] = UInt8(truncatingIfNeeded: number >> 8)
    bytes[1] = UInt8(truncatingIfNeeded: number)
    guard let key = try? PublicKey(bytes: bytes) else { preconditionFailure("32 bytes") }
    return key
}

/// 2001:db8:<block>:<subnet>::1 — `block` picks the /48, `subnet` the /64 inside it.
private func v6Source(block: UInt16, subnet: UInt16, port: UInt16 = 4747) -> Endpoint {
    Endpoint(
        address: .v6(high: 0x2001_0DB8_0000_0000 | UInt64(block) << 16 | UInt64(subnet), low: 1), port: port)
}

private func reserve(
    _ server: inout RelayServer, _ peer: PublicKey, from source: Endpoint, at now: Instant = t0
) -> ReservationStatus? {
    let effects = server.handle(
        .reserve(requestID: 1), from: peer, ipKey: RelayServer.ipKey(for: source.address), source: source, now: now,
        isConnected: { _ in true })
    guard case .send(.reserveResult(_, let status, _, _), _)? = effects.first else { return nil }
    return status
}

@Suite struct SourceCapsTests {
    @Test func oneIPv6Slash48CannotFillTheRelay() {
        // Before: only a per-/64 cap, so 32 /64s of one /48 (4 each) took all 128 reservations.
        var server = RelayServer()
        var granted = 0
        for subnet in 0..<64 {
            for host in 0..<4 {
                let peer = wideKey(subnet * 4 + host)
                if reserve(&server, peer, from: v6Source(block: 7, subnet: UInt16(subnet))) == .ok { granted += 1 }
            }
        }
        let share = Int(Double(server.config.maximumReservations) * server.config.reservationPrefixShare)
        #expect(granted == share, "one /48 holds its share, \(share), not \(granted)")
        // Another prefix still gets in.
        #expect(reserve(&server, wideKey(9999), from: v6Source(block: 8, subnet: 1)) == .ok)
    }

    @Test func oneIPv4Slash24CannotFillTheRelay() {
        var server = RelayServer()
        var granted = 0
        for host in 0..<200 {
            let source = Endpoint(address: .v4(0xC633_6400 | UInt32(host)), port: 4747)
            if reserve(&server, wideKey(host), from: source) == .ok { granted += 1 }
        }
        #expect(granted == 16)
    }

    @Test func oneLoopbackSocketIsCappedButALoopbackClusterFits() {
        var server = RelayServer()
        let socket = Endpoint(address: .v4(0x7F00_0001), port: 5000)
        let fromOneSocket = (0..<20).filter { reserve(&server, wideKey($0), from: socket) == .ok }.count
        #expect(fromOneSocket == server.config.maximumReservationsPerIP)
        // 100 nodes on 127.0.0.1, one socket each: all reserve.
        let cluster = (0..<100).filter {
            reserve(&server, wideKey(1000 + $0), from: Endpoint(address: .v4(0x7F00_0001), port: UInt16(6000 + $0)))
                == .ok
        }.count
        #expect(cluster == 100)
    }

    @Test func circuitsFromOneSourceAreCapped() {
        var config = RelayServerConfig()
        config.maximumCircuitsPerPeer = 1_000
        var server = RelayServer(config: config)
        // 200 targets reserve from their own /48s.
        for target in 0..<200 {
            _ = reserve(&server, wideKey(target), from: v6Source(block: UInt16(100 + target), subnet: 1))
        }
        #expect(server.activeReservations > 64)
        let attacker = v6Source(block: 1, subnet: 1)
        var opened = 0
        for target in 0..<server.activeReservations {
            let effects = server.handle(
                .forward(peer: wideKey(target), bytes: [1]), from: wideKey(5000 + target), ipKey: nil, source: attacker,
                now: t0, isConnected: { _ in true })
            if case .send(.deliver, _)? = effects.first { opened += 1 }
        }
        #expect(opened == config.circuitShares.addressLimit(of: config.maximumCircuits))
        #expect(opened < config.maximumCircuits)
    }

    // MARK: - Hole-punch targets

    private let ownPublic: [IPAddress] = [.v4(0xC633_6401)]

    @Test func punchTargetsRefuseWhatAPeerMustNotSteerUsAt() {
        let candidates: [Endpoint] = [
            Endpoint(address: .v4(0x7F00_0001), port: 22),  // loopback
            Endpoint(address: .v4(0x0A00_0001), port: 53),  // a LAN we are not on
            Endpoint(address: .v4(0), port: 4747),  // unspecified
            Endpoint(address: .v4(0xE000_00FB), port: 5353),  // multicast
            Endpoint(address: .v4(0xFFFF_FFFF), port: 4747),  // broadcast
            Endpoint(address: .v4(0xA9FE_A9FE), port: 80),  // link-local (cloud metadata)
            Endpoint(address: .v4(0xCB00_7105), port: 0),  // port 0
            discardOnly(3, port: 4747),  // discard-only 100::/64
            Endpoint(address: .v6(high: 0x2001_0DB8_0000_0001, low: 5), port: 4747),  // IPv6, we have none
            publicEndpoint(9, port: 4000),  // the one good candidate
        ]
        let targets = HolePunch.punchTargets(candidates, own: ownPublic, limit: 8)
        #expect(targets == [publicEndpoint(9, port: 4000)])
    }

    @Test func privateTargetsOnlyOnOurOwnPrivateNetwork() {
        let lan = Endpoint(address: .v4(0xC0A8_0105), port: 4747)  // 192.168.1.5
        #expect(HolePunch.punchTargets([lan], own: ownPublic, limit: 8).isEmpty)
        #expect(HolePunch.punchTargets([lan], own: [.v4(0xC0A8_0109)], limit: 8) == [lan])
        #expect(HolePunch.punchTargets([lan], own: [.v4(0x0A00_0001)], limit: 8).isEmpty)
    }

    @Test func punchTargetsAreBounded() {
        let many = (1...8).map { publicEndpoint(UInt8($0)) } + [publicEndpoint(1)]
        #expect(HolePunch.punchTargets(many, own: ownPublic, limit: 4) == Array(many.prefix(4)))
    }

    @Test func sharesNeverGiveOneSourceTheWholeCapacity() {
        let shares = SourceShares(addressShare: 0.25, prefixShare: 0.5)
        #expect(shares.addressLimit(of: 8) == 2)
        #expect(shares.prefixLimit(of: 8) == 4)
        #expect(shares.addressLimit(of: 2) == 1)
        #expect(shares.prefixLimit(of: 2) == 1)
        #expect(shares.addressLimit(of: 1) == 1)
        let whole = SourceShares(addressShare: 1, prefixShare: 1)
        #expect(whole.addressLimit(of: 8) == 7)
    }
}
