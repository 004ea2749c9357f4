// Encoder/decoder symmetry of every relay message kind, property-style over seeded random messages:
// decode(encode(m)) is m (punch candidates without the ones nobody may punch, port 0 or relay paths,
// which the encoder leaves out), and that form is a fixed point.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Relay

private func randomEndpoint(_ rng: inout SeededRandom, allowUnsendable: Bool) -> Endpoint {
    let port = UInt16.random(in: 1...UInt16.max, using: &rng)
    switch Int.random(in: 0..<(allowUnsendable ? 6 : 4), using: &rng) {
    case 0: return Endpoint(address: .v4(UInt32.random(in: 0...UInt32.max, using: &rng)), port: port)
    case 1: return Endpoint(address: .v6(high: rng.next(), low: rng.next()), port: port)
    case 2: return Endpoint(address: .v4(0x7F00_0001), port: port)
    case 3: return Endpoint(address: .v4(0xC633_6401), port: port)
    case 4: return Endpoint(address: .v4(0xC633_6402), port: 0)
    default: return discardOnly(rng.next(), port: port)
    }
}

private func pick<T: CaseIterable>(_: T.Type, _ rng: inout SeededRandom) -> T where T.AllCases: RandomAccessCollection {
    let all = T.allCases
    return all[all.index(all.startIndex, offsetBy: Int.random(in: 0..<all.count, using: &rng))]
}

private func randomMessage(_ rng: inout SeededRandom) -> RelayMessage {
    func candidates() -> [Endpoint] {
        (0..<Int.random(in: 0...RelayMessage.maximumCandidates, using: &rng)).map { _ in
            randomEndpoint(&rng, allowUnsendable: true)
        }
    }
    func payload() -> [UInt8] { rng.bytes(Int.random(in: 0...RelayMessage.maximumForwardBytes, using: &rng)) }
    switch pick(RelayMessage.Tag.self, &rng) {
    case .reserve: return .reserve(requestID: UInt32.random(in: 0...UInt32.max, using: &rng))
    case .reserveResult:
        return .reserveResult(
            requestID: UInt32.random(in: 0...UInt32.max, using: &rng), status: pick(ReservationStatus.self, &rng),
            ttlSeconds: UInt32.random(in: 0...UInt32.max, using: &rng),
            limits: CircuitLimits(bytes: rng.next(), seconds: UInt32.random(in: 0...UInt32.max, using: &rng)))
    case .unreserve: return .unreserve
    case .forward: return .forward(peer: randomKey(&rng), bytes: payload())
    case .deliver: return .deliver(peer: randomKey(&rng), bytes: payload())
    case .circuitStatus: return .circuitStatus(peer: randomKey(&rng), code: pick(CircuitCode.self, &rng))
    case .dialBackRequest:
        return .dialBackRequest(nonce: rng.next(), endpoint: randomEndpoint(&rng, allowUnsendable: false))
    case .dialBackOrder:
        return .dialBackOrder(
            target: randomKey(&rng), endpoint: randomEndpoint(&rng, allowUnsendable: false), nonce: rng.next())
    case .dialBackProbe: return .dialBackProbe(nonce: rng.next())
    case .dialBackRefused: return .dialBackRefused(nonce: rng.next(), reason: pick(DialBackRefusal.self, &rng))
    case .punchConnect: return .punchConnect(nonce: rng.next(), candidates: candidates())
    case .punchConnectReply: return .punchConnectReply(nonce: rng.next(), candidates: candidates())
    case .punchSync: return .punchSync(nonce: rng.next())
    case .relayAvailable: return .relayAvailable
    }
}

private func sendable(_ message: RelayMessage) -> RelayMessage {
    switch message {
    case .punchConnect(let nonce, let candidates):
        .punchConnect(nonce: nonce, candidates: candidates.filter(RelayMessage.isCandidate))
    case .punchConnectReply(let nonce, let candidates):
        .punchConnectReply(nonce: nonce, candidates: candidates.filter(RelayMessage.isCandidate))
    default: message
    }
}

@Suite struct RelayCodecSymmetryTests {
    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func everyMessageKindRoundTrips(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        var kinds = Set<UInt8>()
        var leftOut = 0
        for _ in 0..<600 {
            let message = randomMessage(&rng)
            kinds.insert(message.tag.rawValue)
            let bytes = message.encoded()
            #expect(bytes.count <= RelayMessage.maximumSize)
            let decoded = try RelayMessage(decoding: bytes)
            #expect(decoded == sendable(message))
            #expect(try RelayMessage(decoding: decoded.encoded()) == decoded)
            if decoded != message { leftOut += 1 }
        }
        #expect(kinds.count == RelayMessage.Tag.allCases.count, "every message kind was generated")
        #expect(leftOut > 0, "unsendable candidates were generated and left out")
    }

    @Test func aPunchMessageWithAPortZeroCandidateKeepsTheOthers() throws {
        // Written by hand, as a peer that does not filter would.
        let good = publicEndpoint(9)
        var writer = ByteWriter()
        writer.write(RelayMessage.Tag.punchConnect.rawValue)
        writer.write(UInt64(5))
        writer.write(UInt8(2))
        writer.write(UInt8(4))
        writer.write(raw: [198, 51, 100, 3])
        writer.write(UInt16(0))
        writer.write(good)
        #expect(try RelayMessage(decoding: writer.bytes) == .punchConnect(nonce: 5, candidates: [good]))
    }
}
