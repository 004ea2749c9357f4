// The gossip wire format: every message kind round-trips and fits one datagram at its limits; the
// decoder refuses unknown tags, oversized input, every truncation, bad topics, empty or too-long
// lists, too much data and trailing bytes. Message ids are content addressed.

import Testing
import UmbraCore

@testable import Gossip

// MARK: - Fixtures

private let longTopic = Topic(String(repeating: "t", count: Topic.maximumLength))

private func ids(_ count: Int, seed: UInt64 = 1) -> [MessageID] {
    var rng = SeededRandom(seed: seed)
    return (0..<count).map { _ in MessageID(bytes: rng.bytes(MessageID.byteCount)) }
}

/// One message of every kind, at the small and at the large end of its limits.
private let samples: [GossipMessage] = [
    .subscribe([.proposals]),
    .subscribe((0..<GossipMessage.maximumTopics).map { Topic("topic-\($0)-" + String(repeating: "x", count: 20)) }),
    .unsubscribe([.ledger, .proposals]),
    .publish(topic: .proposals, data: []),
    .publish(topic: longTopic, data: [UInt8](repeating: 0xAB, count: GossipMessage.maximumDataSize)),
    .ihave(topic: .ledger, ids: ids(1)),
    .ihave(topic: longTopic, ids: ids(GossipMessage.maximumIDs)),
    .iwant(ids(1)),
    .iwant(ids(GossipMessage.maximumIDs)),
    .graft(.proposals),
    .graft(Topic("!~")),
    .prune(.proposals, backoffSeconds: 0),
    .prune(longTopic, backoffSeconds: .max),
]

private func decodeError(_ bytes: [UInt8]) -> DecodeError? {
    do throws(DecodeError) {
        _ = try GossipMessage(decoding: bytes)
        return nil
    } catch {
        return error
    }
}

extension GossipMessage: CustomTestStringConvertible {
    public var testDescription: String { "\(tag) (\(encoded().count) bytes)" }
}

// MARK: - Tests

@Suite struct GossipMessageTests {
    @Test(arguments: samples)
    func roundTripsAndFitsADatagram(_ message: GossipMessage) throws {
        let bytes = message.encoded()
        #expect(bytes.count <= GossipMessage.maximumSize)
        #expect(bytes.first == message.tag.rawValue)
        #expect(try GossipMessage(decoding: bytes) == message)
    }

    @Test(arguments: samples)
    func everyTruncationIsRefused(_ message: GossipMessage) {
        let bytes = message.encoded()
        for length in 0..<bytes.count {
            guard let error = decodeError(Array(bytes.prefix(length))) else {
                Issue.record("\(message.tag) cut to \(length) bytes decoded")
                continue
            }
            if case .truncated = error { continue }
            Issue.record("\(message.tag) cut to \(length) bytes: \(error), expected truncation")
        }
    }

    @Test(arguments: samples)
    func trailingBytesAreRefused(_ message: GossipMessage) {
        #expect(decodeError(message.encoded() + [0]) == .trailingBytes(count: 1))
    }

    @Test(arguments: [UInt8(0), 8, 0x7F, 0xFF])
    func unknownTagIsRefused(_ tag: UInt8) {
        #expect(decodeError([tag, 1, 0x61]) == .unknownTag(field: "gossip message", value: UInt64(tag)))
    }

    @Test func oversizedInputIsRefusedBeforeParsing() {
        let bytes = GossipMessage.graft(.proposals).encoded() + [UInt8](repeating: 0, count: GossipMessage.maximumSize)
        #expect(
            decodeError(bytes)
                == .lengthTooLarge(offset: 0, length: bytes.count, limit: GossipMessage.maximumSize))
    }

    @Test func badTopicsAreRefused() {
        let graft = GossipMessage.Tag.graft.rawValue
        #expect(decodeError([graft, 0]) == .invalid(field: "topic", reason: "empty name"))
        let tooLong = [UInt8](repeating: 0x61, count: Topic.maximumLength + 1)
        #expect(
            decodeError([graft, UInt8(tooLong.count)] + tooLong)
                == .lengthTooLarge(offset: 1, length: Topic.maximumLength + 1, limit: Topic.maximumLength))
        for bad: UInt8 in [0x20, 0x00, 0x7F, 0x80, 0xFF] {
            #expect(
                decodeError([graft, 3, 0x61, bad, 0x62]) == .invalid(field: "topic", reason: "not printable ASCII"))
        }
        #expect(Topic(validating: "") == nil)
        #expect(Topic(validating: "with space") == nil)
        #expect(Topic(validating: "ünïcode") == nil)
        #expect(Topic(validating: String(repeating: "a", count: 33)) == nil)
        #expect(Topic(validating: "ledger") == .ledger)
    }

    @Test func listsMustBeNonEmptyAndWithinLimits() {
        let tags = GossipMessage.Tag.self
        #expect(decodeError([tags.subscribe.rawValue, 0]) == .invalid(field: "topic list", reason: "empty"))
        #expect(decodeError([tags.iwant.rawValue, 0]) == .invalid(field: "id list", reason: "empty"))
        let topic: [UInt8] = [1, 0x61]
        let tooManyTopics = [tags.unsubscribe.rawValue, 17] + Array([[UInt8]](repeating: topic, count: 17).joined())
        #expect(
            decodeError(tooManyTopics)
                == .lengthTooLarge(offset: 1, length: 17, limit: GossipMessage.maximumTopics))
        let tooManyIDs = [tags.ihave.rawValue] + topic + [65] + [UInt8](repeating: 1, count: 65 * 16)
        #expect(decodeError(tooManyIDs) == .lengthTooLarge(offset: 3, length: 65, limit: GossipMessage.maximumIDs))
    }

    @Test func dataOverTheLimitIsRefused() {
        let length = UInt16(GossipMessage.maximumDataSize + 1)
        let bytes =
            [GossipMessage.Tag.publish.rawValue, 1, 0x61, UInt8(length & 0xFF), UInt8(length >> 8)]
            + [UInt8](repeating: 0, count: Int(length))
        #expect(
            decodeError(bytes)
                == .lengthTooLarge(offset: 3, length: Int(length), limit: GossipMessage.maximumDataSize))
    }

    @Test func layoutIsAsDocumented() {
        #expect(GossipMessage.prune(Topic("ab"), backoffSeconds: 0x0102).encoded() == [7, 2, 0x61, 0x62, 0x02, 0x01])
        #expect(GossipMessage.publish(topic: Topic("a"), data: [9, 8]).encoded() == [3, 1, 0x61, 2, 0, 9, 8])
        let id = MessageID(bytes: Array(1...16))
        #expect(GossipMessage.iwant([id]).encoded() == [5, 1] + Array(1...16))
        #expect(id.bytes == Array(1...16))
        #expect(GossipMessage.subscribe([Topic("a"), Topic("b")]).encoded() == [1, 2, 1, 0x61, 1, 0x62])
    }

    @Test func messageIDsAreContentAddressed() {
        let data: [UInt8] = [1, 2, 3]
        let id = MessageID(topic: .proposals, data: data)
        #expect(MessageID(topic: .proposals, data: data) == id)
        #expect(MessageID(topic: .ledger, data: data) != id)
        #expect(MessageID(topic: .proposals, data: [1, 2, 4]) != id)
        // The topic is length-prefixed: moving bytes between topic and data changes the id.
        #expect(MessageID(topic: Topic("ab"), data: [0x63]) != MessageID(topic: Topic("a"), data: [0x62, 0x63]))
        #expect(MessageID(bytes: id.bytes) == id)
        #expect(id.bytes.count == MessageID.byteCount)
    }
}
