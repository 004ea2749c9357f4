// Issue #12.5 on the provider side: one host with free identities cannot book the provider's whole
// capacity (8/8 before); one address and one wide prefix hold at most their share, other sources
// still get in, and many consumers on 127.0.0.1 (one socket each) are not limited.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Dialogue

private func consumer(_ number: Int) -> PublicKey {
    var bytes = [UInt8](repeating: 0x3C, count: PublicKey.byteCount)
    bytes[0] = UInt8(truncatingIfNeeded: number >> 8)
    bytes[1] = UInt8(truncatingIfNeeded: number)
    guard let key = try? PublicKey(bytes: bytes) else { preconditionFailure("32 bytes") }
    return key
}

private func request(
    _ server: inout DialogueServer, _ peer: PublicKey, from source: Endpoint?, rng: inout SeededRandom
) -> DialogueMessage? {
    let effects = server.handle(
        .request(requestID: 1, serviceType: "ip-tunnel", proposalSeq: 1, mode: .fullTunnel, wantsIPv6: false),
        from: peer, source: source, now: t0, rng: &rng)
    for case .send(let message, let to) in effects where to == peer { return message }
    return nil
}

private func isAccept(_ message: DialogueMessage?) -> Bool {
    if case .accept? = message { true } else { false }
}

@Suite struct SourceShareTests {
    @Test func oneHostCannotBookTheWholeCapacity() {
        var config = DialogueServerConfig()
        config.capacity = 8
        var server = DialogueServer(config: config)
        var rng = SeededRandom(seed: 5)
        let host = Endpoint(address: .v4(0xCB00_7105), port: 40000)
        let accepted = (0..<8).filter { isAccept(request(&server, consumer($0), from: host, rng: &rng)) }.count
        #expect(accepted == 2, "one address holds a quarter of 8")
        // Other ports of the same address count together; other addresses of its /24 up to half.
        var prefixAccepted = accepted
        for host in 6..<20 {
            let source = Endpoint(address: .v4(0xCB00_7100 | UInt32(host)), port: 40000)
            if isAccept(request(&server, consumer(100 + host), from: source, rng: &rng)) { prefixAccepted += 1 }
        }
        #expect(prefixAccepted == 4)
        #expect(server.counters.rejectedOverSourceShare > 0)
        // An honest consumer elsewhere still gets a session.
        let honest = Endpoint(address: .v4(0xC633_6401), port: 4747)
        #expect(isAccept(request(&server, consumer(999), from: honest, rng: &rng)))
    }

    @Test func ipv6CountsPerSlash64AndSlash48() {
        var config = DialogueServerConfig()
        config.capacity = 8
        var server = DialogueServer(config: config)
        var rng = SeededRandom(seed: 6)
        var accepted = 0
        for number in 0..<16 {
            let source = Endpoint(
                address: .v6(high: 0x2001_0DB8_0042_0000 | UInt64(number), low: UInt64(number + 1)), port: 4747)
            if isAccept(request(&server, consumer(number), from: source, rng: &rng)) { accepted += 1 }
        }
        #expect(accepted == 4, "one /48 holds half of 8")
    }

    @Test func loopbackConsumersCountPerSocket() {
        var config = DialogueServerConfig()
        config.capacity = 8
        var server = DialogueServer(config: config)
        var rng = SeededRandom(seed: 7)
        let sameSocket = Endpoint(address: .v4(0x7F00_0001), port: 5000)
        let fromOneSocket = (0..<4).filter { isAccept(request(&server, consumer($0), from: sameSocket, rng: &rng)) }
        #expect(fromOneSocket.count == 2)
        let cluster = (0..<6).filter {
            isAccept(
                request(
                    &server, consumer(50 + $0), from: Endpoint(address: .v4(0x7F00_0001), port: UInt16(6000 + $0)),
                    rng: &rng))
        }
        #expect(cluster.count == 6, "the rest of the capacity goes to other nodes on 127.0.0.1")
    }

    @Test func aReplacedSessionDoesNotCountAgainstItsOwnSource() {
        var config = DialogueServerConfig()
        config.capacity = 4
        var server = DialogueServer(config: config)
        var rng = SeededRandom(seed: 8)
        let host = Endpoint(address: .v4(0xCB00_7105), port: 40000)
        #expect(isAccept(request(&server, consumer(1), from: host, rng: &rng)))
        let again = server.handle(
            .request(requestID: 2, serviceType: "ip-tunnel", proposalSeq: 1, mode: .fullTunnel, wantsIPv6: false),
            from: consumer(1), source: host, now: t0, rng: &rng)
        #expect(again.contains { if case .send(.accept, _) = $0 { true } else { false } })
    }
}
