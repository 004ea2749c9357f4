// The DHT wire format: every message kind round-trips, the decoder refuses what it must (unknown
// tags, truncation, too many contacts or records, trailing bytes, oversized input, unknown store
// status), and the largest NODES message fits one control datagram.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Kademlia

// MARK: - Fixtures

private func contact(_ byte: UInt8, _ endpoint: Endpoint) -> NodeContact {
    guard let key = try? PublicKey(bytes: [UInt8](repeating: byte, count: PublicKey.byteCount)) else {
        preconditionFailure("32 bytes")
    }
    return NodeContact(publicKey: key, endpoint: endpoint)
}

private let v4 = Endpoint(address: .v4(0xC633_6401), port: 4747)  // 198.51.100.1
private let v6 = Endpoint(address: .v6(high: 0x2001_0DB8_0000_0001, low: 0xFFFF_0000_0000_0042), port: 65535)

private func contacts(_ count: Int, ipv6: Bool) -> [NodeContact] {
    (0..<count).map { contact(UInt8($0 + 1), ipv6 ? v6 : v4) }
}

private func record(seq: UInt64 = 7) -> SignedRecord {
    var rng = SeededRandom(seed: 1)
    let identity = Identity.generate(using: &rng)
    return SignedRecord.peer(
        PeerRecordValue(endpoints: [v4, v6]), seq: seq, expiresAt: Instant(nanoseconds: 1_800_000_000_000_000_000),
        identity: identity, networkID: network)
}

private let key = Key256(words: (0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210, 1, .max))

/// One message of every kind (and the edge shapes of the list-carrying ones).
private let samples: [DHTMessage] =
    [
        DHTMessage(id: 0, flags: [], body: .ping),
        DHTMessage(id: .max, flags: .server, body: .ping),
        DHTMessage(id: 1, flags: .server, body: .pong(observed: v4)),
        DHTMessage(id: 2, flags: [], body: .pong(observed: v6)),
        DHTMessage(id: 3, flags: .server, body: .findNode(target: key)),
        DHTMessage(id: 4, flags: .server, body: .nodes(contacts: [])),
        DHTMessage(id: 5, flags: .server, body: .nodes(contacts: contacts(3, ipv6: false) + contacts(2, ipv6: true))),
        DHTMessage(id: 6, flags: [], body: .findValue(key: key, page: 0)),
        DHTMessage(id: 7, flags: [], body: .findValue(key: key, page: .max)),
        DHTMessage(
            id: 8, flags: .server, body: .values(page: 0, pages: 0, records: [], contacts: contacts(20, ipv6: false))),
        DHTMessage(
            id: 9, flags: .server,
            body: .values(page: 1, pages: 3, records: [record(), record(seq: 8)], contacts: contacts(4, ipv6: true))),
        DHTMessage(id: 10, flags: [], body: .store(record: record())),
    ] + StoreStatus.allCases.map { DHTMessage(id: 11, flags: .server, body: .stored(status: $0)) }

// MARK: - Tests

@Suite struct DHTMessageTests {
    @Test(arguments: samples)
    func everyMessageRoundTrips(message: DHTMessage) throws {
        let bytes = message.encoded()
        #expect(bytes.count <= DHTMessage.maximumSize)
        #expect(bytes.first == message.tag.rawValue)
        let decoded = try DHTMessage(decoding: bytes)
        #expect(decoded == message)
        #expect(decoded.encoded() == bytes)
        #expect(decoded.isRequest == message.isRequest)
    }

    @Test func everyTagIsCovered() {
        let tags = Set(samples.map(\.tag.rawValue))
        #expect(tags == Set(1...8))
        #expect(
            samples.filter(\.isRequest).map(\.tag).allSatisfy { [.ping, .findNode, .findValue, .store].contains($0) })
    }

    @Test func theHeaderIsTypeThenLittleEndianIDThenFlags() {
        let bytes = DHTMessage(id: 0x0102_0304_0506_0708, flags: DHTFlags(rawValue: 0xA5), body: .ping).encoded()
        #expect(bytes == [1, 8, 7, 6, 5, 4, 3, 2, 1, 0xA5])
        #expect(bytes.count == DHTMessage.headerSize)
    }

    @Test func unknownFlagBitsSurviveARoundTrip() throws {
        let message = DHTMessage(id: 1, flags: DHTFlags(rawValue: 0xFF), body: .ping)
        let decoded = try DHTMessage(decoding: message.encoded())
        #expect(decoded.flags.rawValue == 0xFF)
        #expect(decoded.flags.contains(.server))
    }

    // MARK: Refusals

    @Test(arguments: [0, 9, 200, 255] as [UInt8])
    func anUnknownTagIsRefused(tag: UInt8) {
        var bytes = DHTMessage(id: 1, flags: [], body: .ping).encoded()
        bytes[0] = tag
        #expect(throws: DecodeError.unknownTag(field: "DHT message", value: UInt64(tag))) {
            try DHTMessage(decoding: bytes)
        }
    }

    @Test(arguments: samples)
    func everyTruncationIsRefused(message: DHTMessage) {
        let bytes = message.encoded()
        for length in 0..<bytes.count {
            do {
                let decoded = try DHTMessage(decoding: Array(bytes.prefix(length)))
                Issue.record("\(length) of \(bytes.count) bytes decoded as \(decoded)")
            } catch {
                guard case .truncated = error else {
                    Issue.record("\(length) of \(bytes.count) bytes: \(error), not truncated")
                    continue
                }
            }
        }
    }

    @Test func anEmptyInputIsTruncated() {
        #expect(throws: DecodeError.truncated(offset: 0, needed: 1)) { try DHTMessage(decoding: []) }
    }

    @Test func moreThanTwentyContactsAreRefused() {
        // Encoders write what they are given; the decoder enforces the limit.
        let nodes = DHTMessage(id: 1, flags: [], body: .nodes(contacts: contacts(21, ipv6: false))).encoded()
        #expect(throws: DecodeError.lengthTooLarge(offset: DHTMessage.headerSize, length: 21, limit: 20)) {
            try DHTMessage(decoding: nodes)
        }
        let values = DHTMessage(
            id: 1, flags: [], body: .values(page: 0, pages: 0, records: [], contacts: contacts(21, ipv6: false))
        ).encoded()
        #expect(throws: DecodeError.lengthTooLarge(offset: DHTMessage.headerSize + 5, length: 21, limit: 20)) {
            try DHTMessage(decoding: values)
        }
        // The count byte alone is enough to refuse: no contact bytes need follow.
        #expect(throws: DecodeError.lengthTooLarge(offset: DHTMessage.headerSize, length: 255, limit: 20)) {
            try DHTMessage(decoding: [4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255])
        }
    }

    @Test func moreThanSixteenRecordsAreRefused() {
        var bytes = DHTMessage(id: 1, flags: [], body: .values(page: 0, pages: 1, records: [], contacts: [])).encoded()
        bytes[DHTMessage.headerSize + 4] = 17
        #expect(throws: DecodeError.lengthTooLarge(offset: DHTMessage.headerSize + 4, length: 17, limit: 16)) {
            try DHTMessage(decoding: bytes)
        }
    }

    @Test(arguments: samples)
    func trailingBytesAreRefused(message: DHTMessage) {
        #expect(throws: DecodeError.trailingBytes(count: 1)) { try DHTMessage(decoding: message.encoded() + [0]) }
    }

    @Test func inputOverTheBudgetIsRefusedBeforeDecoding() {
        let oversized = [UInt8](repeating: 0, count: DHTMessage.maximumSize + 1)
        #expect(throws: DecodeError.lengthTooLarge(offset: 0, length: 1200, limit: 1199)) {
            try DHTMessage(decoding: oversized)
        }
        // A well-formed message one byte over the budget is refused too: 20 IPv6 contacts and padding.
        var ping = DHTMessage(id: 1, flags: [], body: .ping).encoded()
        ping += [UInt8](repeating: 0, count: DHTMessage.maximumSize + 1 - ping.count)
        #expect(throws: DecodeError.lengthTooLarge(offset: 0, length: 1200, limit: 1199)) {
            try DHTMessage(decoding: ping)
        }
    }

    @Test func anUnknownStoreStatusIsRefused() {
        let bytes = DHTMessage(id: 1, flags: [], body: .stored(status: .stored)).encoded()
        for raw in UInt8(StoreStatus.allCases.count)...UInt8.max {
            var mutated = bytes
            mutated[DHTMessage.headerSize] = raw
            #expect(throws: DecodeError.unknownTag(field: "store status", value: UInt64(raw))) {
                try DHTMessage(decoding: mutated)
            }
        }
    }

    @Test func aContactWithPortZeroIsDroppedNotTheAnswer() throws {
        // Before issue #12.4 the whole answer was refused, so one bad contact poisoned it.
        var bytes = DHTMessage(id: 1, flags: [], body: .nodes(contacts: contacts(2, ipv6: false))).encoded()
        let port = bytes.count - 2
        bytes[port] = 0
        bytes[port + 1] = 0
        let decoded = try DHTMessage(decoding: bytes)
        #expect(decoded.body == .nodes(contacts: Array(contacts(2, ipv6: false).prefix(1))))
    }

    @Test func aContactWithAnUnknownFamilyStillRefusesTheAnswer() {
        var bytes = DHTMessage(id: 1, flags: [], body: .nodes(contacts: contacts(1, ipv6: false))).encoded()
        bytes[DHTMessage.headerSize + 1 + PublicKey.byteCount] = 5
        #expect(throws: DecodeError.self) { try DHTMessage(decoding: bytes) }
    }

    @Test func aStoreWithAnOversizedValueIsRefused() {
        var oversized = record()
        oversized.value = [UInt8](repeating: 1, count: SignedRecord.maximumValueBytes + 1)
        let bytes = DHTMessage(id: 1, flags: [], body: .store(record: oversized)).encoded()
        #expect(throws: DecodeError.self) { try DHTMessage(decoding: bytes) }
    }

    // MARK: Sizes

    @Test func aFullNodesMessageOfIPv6ContactsFitsOneDatagram() throws {
        let message = DHTMessage(id: .max, flags: .server, body: .nodes(contacts: contacts(20, ipv6: true)))
        let bytes = message.encoded()
        #expect(bytes.count == DHTMessage.headerSize + 1 + 20 * (32 + 19))
        #expect(bytes.count <= DHTMessage.maximumSize)
        #expect(try DHTMessage(decoding: bytes) == message)
        #expect(DHTMessage.contactsSize(contacts(20, ipv6: true)) == 1 + 20 * 51)
        #expect(DHTMessage.contactsSize(contacts(20, ipv6: false)) == 1 + 20 * 39)
    }

    @Test func aValuesPageWithAFullRecordAndFourIPv6ContactsFits() throws {
        // The largest value a store accepts is a peer record with 6 IPv6 endpoints and 4 IPv6 relays.
        var rng = SeededRandom(seed: 2)
        let identity = Identity.generate(using: &rng)
        let relays = (0..<4).map { _ in NodeContact(publicKey: Identity.generate(using: &rng).publicKey, endpoint: v6) }
        let largest = SignedRecord.peer(
            PeerRecordValue(endpoints: Array(repeating: v6, count: 6), relays: relays), seq: 1,
            expiresAt: Instant(nanoseconds: 1), identity: identity, networkID: network)
        let message = DHTMessage(
            id: 1, flags: .server,
            body: .values(page: 0, pages: 1, records: [largest, largest], contacts: contacts(4, ipv6: true)))
        let bytes = message.encoded()
        #expect(bytes.count <= DHTMessage.maximumSize)
        #expect(try DHTMessage(decoding: bytes) == message)
    }
}
