// The relay wire format: every message kind round-trips with its documented layout, the largest
// forward and punch messages fit the budget, and the decoder refuses unknown tags and codes,
// truncation, trailing bytes, oversized input, oversized datagrams and too many candidates.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Relay

private let limits = CircuitLimits(bytes: 1 << 30, seconds: 3600)

/// One message of every kind (and the edge shapes of the list- and bytes-carrying ones).
private let samples: [RelayMessage] =
    [
        .reserve(requestID: 0),
        .reserve(requestID: .max),
        .unreserve,
        .forward(peer: key(1), bytes: []),
        .forward(peer: key(2), bytes: Array(0..<200)),
        .forward(peer: key(3), bytes: [UInt8](repeating: 0xAB, count: RelayMessage.maximumForwardBytes)),
        .deliver(peer: key(4), bytes: [1, 2, 3]),
        .deliver(peer: key(5), bytes: [UInt8](repeating: 0xCD, count: RelayMessage.maximumForwardBytes)),
        .dialBackRequest(nonce: 0x0102_0304_0506_0708, endpoint: publicEndpoint(1)),
        .dialBackRequest(nonce: .max, endpoint: v6Endpoint),
        .dialBackOrder(target: key(6), endpoint: publicEndpoint(2), nonce: 42),
        .dialBackOrder(target: key(7), endpoint: v6Endpoint, nonce: 0),
        .dialBackProbe(nonce: 99),
        .punchConnect(nonce: 1, candidates: []),
        .punchConnect(nonce: 2, candidates: [publicEndpoint(1), lanEndpoint(2), v6Endpoint]),
        .punchConnectReply(nonce: 3, candidates: (0..<8).map { _ in v6Endpoint }),
        .punchConnectReply(nonce: 4, candidates: [lanEndpoint(9)]),
        .punchSync(nonce: .max),
        .relayAvailable,
    ]
    + ReservationStatus.allCases.map {
        .reserveResult(requestID: 7, status: $0, ttlSeconds: $0 == .ok ? 3600 : 0, limits: $0 == .ok ? limits : .none)
    }
    + CircuitCode.allCases.map { .circuitStatus(peer: key(8), code: $0) }
    + DialBackRefusal.allCases.map { .dialBackRefused(nonce: 5, reason: $0) }

extension RelayMessage: CustomTestStringConvertible {
    public var testDescription: String { "\(tag)" }
}

@Suite struct RelayMessageTests {
    @Test(arguments: samples)
    func everyMessageRoundTrips(message: RelayMessage) throws {
        let bytes = message.encoded()
        #expect(bytes.count <= RelayMessage.maximumSize)
        #expect(bytes.first == message.tag.rawValue)
        let decoded = try RelayMessage(decoding: bytes)
        #expect(decoded == message)
        #expect(decoded.encoded() == bytes)
    }

    @Test func everyTagIsCovered() {
        #expect(Set(samples.map(\.tag)) == Set(RelayMessage.Tag.allCases))
        #expect(RelayMessage.Tag.allCases.map(\.rawValue) == Array(1...14))
    }

    @Test func theLargestMessagesFitTheBudget() {
        let forward = RelayMessage.forward(
            peer: key(1), bytes: [UInt8](repeating: 0, count: RelayMessage.maximumForwardBytes))
        #expect(forward.encoded().count == RelayMessage.maximumSize)
        #expect(RelayMessage.maximumForwardBytes == 1365)
        let punch = RelayMessage.punchConnect(nonce: 1, candidates: (0..<8).map { _ in v6Endpoint })
        #expect(punch.encoded().count == 1 + 8 + 1 + 8 * 19)
    }

    @Test func layoutsAreAsDocumented() {
        #expect(RelayMessage.reserve(requestID: 0x0403_0201).encoded() == [0x01, 0x01, 0x02, 0x03, 0x04])
        #expect(RelayMessage.unreserve.encoded() == [0x03])
        #expect(RelayMessage.relayAvailable.encoded() == [0x0E])
        let result = RelayMessage.reserveResult(
            requestID: 1, status: .refusedPerIP, ttlSeconds: 0x0A0B_0C0D, limits: CircuitLimits(bytes: 2, seconds: 3)
        ).encoded()
        #expect(result == [0x02, 1, 0, 0, 0, 2, 0x0D, 0x0C, 0x0B, 0x0A, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0])
        let forward = RelayMessage.forward(peer: key(0xEE), bytes: [9, 8, 7]).encoded()
        #expect(forward == [0x04] + [UInt8](repeating: 0xEE, count: 32) + [3, 0, 9, 8, 7])
        let status = RelayMessage.circuitStatus(peer: key(1), code: .overByteLimit).encoded()
        #expect(status == [0x06] + [UInt8](repeating: 1, count: 32) + [3])
        let request = RelayMessage.dialBackRequest(nonce: 1, endpoint: publicEndpoint(7, port: 0x1234)).encoded()
        #expect(request == [0x07, 1, 0, 0, 0, 0, 0, 0, 0, 4, 198, 51, 100, 7, 0x34, 0x12])
        let order = RelayMessage.dialBackOrder(target: key(2), endpoint: publicEndpoint(7), nonce: 5).encoded()
        #expect(order.count == 1 + 32 + 7 + 8)
        #expect(Array(order.suffix(8)) == [5, 0, 0, 0, 0, 0, 0, 0])
        #expect(RelayMessage.dialBackRefused(nonce: 1, reason: .noPeers).encoded().last == 3)
        let punch = RelayMessage.punchConnect(nonce: 1, candidates: [publicEndpoint(1)]).encoded()
        #expect(punch == [0x0B, 1, 0, 0, 0, 0, 0, 0, 0, 1, 4, 198, 51, 100, 1, 0x8B, 0x12])
    }

    @Test func wireCodesAreStable() {
        #expect(ReservationStatus.allCases.map(\.rawValue) == [0, 1, 2, 3, 4])
        #expect(CircuitCode.allCases.map(\.rawValue) == [1, 2, 3, 4, 5, 6, 7])
        #expect(DialBackRefusal.allCases.map(\.rawValue) == [1, 2, 3, 4])
        #expect(CircuitCode.allCases.allSatisfy { !$0.description.isEmpty && $0.description.count < 80 })
        #expect(CircuitCode.allCases.filter { !$0.closesCircuit } == [.rateLimited])
    }

    @Test(arguments: [UInt8(0), 0x0F, 0x30, 0xFF])
    func unknownTagsAreRefused(tag: UInt8) {
        #expect(throws: DecodeError.unknownTag(field: "relay message", value: UInt64(tag))) {
            try RelayMessage(decoding: [tag, 0, 0, 0, 0])
        }
    }

    @Test func emptyInputIsTruncated() {
        #expect(throws: DecodeError.truncated(offset: 0, needed: 1)) { try RelayMessage(decoding: []) }
    }

    @Test(arguments: samples)
    func everyTruncationIsRefused(message: RelayMessage) {
        let bytes = message.encoded()
        for length in 0..<bytes.count {
            #expect(throws: DecodeError.self) { try RelayMessage(decoding: Array(bytes.prefix(length))) }
        }
    }

    @Test(arguments: samples)
    func trailingBytesAreRefused(message: RelayMessage) {
        guard message.encoded().count < RelayMessage.maximumSize else { return }
        #expect(throws: DecodeError.trailingBytes(count: 1)) { try RelayMessage(decoding: message.encoded() + [0]) }
    }

    @Test func oversizedInputIsRefusedBeforeParsing() {
        let bytes = [UInt8](repeating: 0x04, count: RelayMessage.maximumSize + 1)
        #expect(throws: DecodeError.lengthTooLarge(offset: 0, length: 1401, limit: 1400)) {
            try RelayMessage(decoding: bytes)
        }
    }

    @Test func aDatagramAboveTheLimitIsRefused() {
        // Length 1366 declared; the input itself stays under maximumSize so the field check is what fires.
        let bytes = [0x04] + [UInt8](repeating: 1, count: 32) + [0x56, 0x05] + [UInt8](repeating: 0, count: 10)
        #expect(throws: DecodeError.lengthTooLarge(offset: 33, length: 1366, limit: 1365)) {
            try RelayMessage(decoding: bytes)
        }
    }

    @Test func tooManyCandidatesAreRefused() {
        var bytes = RelayMessage.punchConnect(nonce: 1, candidates: (0..<8).map { publicEndpoint(UInt8($0)) })
            .encoded()
        bytes[9] = 9
        bytes += [4, 198, 51, 100, 9, 0x8B, 0x12]
        #expect(throws: DecodeError.lengthTooLarge(offset: 9, length: 9, limit: 8)) {
            try RelayMessage(decoding: bytes)
        }
    }

    @Test func unknownCodesAreRefused() {
        let result = RelayMessage.reserveResult(requestID: 1, status: .ok, ttlSeconds: 1, limits: limits).encoded()
        var bad = result
        bad[5] = 5
        #expect(throws: DecodeError.unknownTag(field: "reservation status", value: 5)) {
            try RelayMessage(decoding: bad)
        }
        var status = RelayMessage.circuitStatus(peer: key(1), code: .closed).encoded()
        status[33] = 0
        #expect(throws: DecodeError.unknownTag(field: "circuit code", value: 0)) { try RelayMessage(decoding: status) }
        var refused = RelayMessage.dialBackRefused(nonce: 1, reason: .rateLimited).encoded()
        refused[9] = 0xFF
        #expect(throws: DecodeError.unknownTag(field: "dial-back refusal", value: 255)) {
            try RelayMessage(decoding: refused)
        }
    }

    @Test func malformedEndpointsAreRefused() {
        var bytes = RelayMessage.dialBackRequest(nonce: 1, endpoint: publicEndpoint(1)).encoded()
        bytes[9] = 5
        #expect(throws: DecodeError.unknownTag(field: "address family", value: 5)) { try RelayMessage(decoding: bytes) }
        var zeroPort = RelayMessage.dialBackRequest(nonce: 1, endpoint: publicEndpoint(1)).encoded()
        zeroPort[14] = 0
        zeroPort[15] = 0
        #expect(throws: DecodeError.invalid(field: "endpoint port", reason: "port 0")) {
            try RelayMessage(decoding: zeroPort)
        }
    }
}
