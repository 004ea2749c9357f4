// Gossip wire messages, carried in the gossip frame channel of an authenticated session
// (docs/protocol.md §Gossip). One message per frame: `tag u8 | fields`, integers little-endian.
// Every message fits one control datagram (`maximumSize` = 1180 bytes, leaving room for the frame
// header and channel byte). The sender is the session's peer; no message names or signs its origin:
// the application signs what it publishes (proposals, ledger entries), and ids are content addressed.
//
// A topic on the wire is `length u8 (1...32) | ASCII bytes (0x21...0x7E)`; a message id is its 16
// bytes. Lists are never empty.

import UmbraCore

public enum GossipMessage: Equatable, Sendable {
    /// `0x01 | count u8 (1...16) | topic × count` — the sender joined these topics.
    case subscribe([Topic])
    /// `0x02 | count u8 (1...16) | topic × count` — the sender left these topics.
    case unsubscribe([Topic])
    /// `0x03 | topic | length u16 (0...1000) | data` — a message; its id is derived, not sent.
    case publish(topic: Topic, data: [UInt8])
    /// `0x04 | topic | count u8 (1...64) | id (16 bytes) × count` — the sender has these messages.
    case ihave(topic: Topic, ids: [MessageID])
    /// `0x05 | count u8 (1...64) | id (16 bytes) × count` — please send these messages.
    case iwant([MessageID])
    /// `0x06 | topic` — the sender added the receiver to its mesh for the topic.
    case graft(Topic)
    /// `0x07 | topic | backoff seconds u16` — the sender removed the receiver from its mesh; the
    /// receiver must not GRAFT again for `backoff` seconds. (No peer exchange.)
    case prune(Topic, backoffSeconds: UInt16)

    public enum Tag: UInt8, Sendable, CaseIterable {
        case subscribe = 1, unsubscribe, publish, ihave, iwant, graft, prune
    }

    /// The byte budget of one gossip message: a 1200-byte control frame minus the frame overhead.
    public static let maximumSize = 1180
    /// Most data bytes in one published message.
    public static let maximumDataSize = 1000
    /// Most topics in one SUBSCRIBE / UNSUBSCRIBE.
    public static let maximumTopics = 16
    /// Most ids in one IHAVE / IWANT.
    public static let maximumIDs = 64

    public var tag: Tag {
        switch self {
        case .subscribe: .subscribe
        case .unsubscribe: .unsubscribe
        case .publish: .publish
        case .ihave: .ihave
        case .iwant: .iwant
        case .graft: .graft
        case .prune: .prune
        }
    }

    /// The wire bytes. Precondition: lists are non-empty and within the limits above, and the data
    /// is at most `maximumDataSize` bytes (the router only builds such messages).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        writer.write(tag.rawValue)
        switch self {
        case .subscribe(let topics), .unsubscribe(let topics):
            precondition((1...Self.maximumTopics).contains(topics.count), "topic count out of range")
            writer.write(UInt8(topics.count))
            for topic in topics { Self.write(topic, &writer) }
        case .publish(let topic, let data):
            precondition(data.count <= Self.maximumDataSize, "gossip data too large")
            Self.write(topic, &writer)
            writer.write(lengthPrefixed: data)
        case .ihave(let topic, let ids):
            Self.write(topic, &writer)
            Self.write(ids, &writer)
        case .iwant(let ids):
            Self.write(ids, &writer)
        case .graft(let topic):
            Self.write(topic, &writer)
        case .prune(let topic, let backoff):
            Self.write(topic, &writer)
            writer.write(backoff)
        }
        return writer.bytes
    }

    /// Decodes one message; total and bounded: anything malformed is a typed error.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard bytes.count <= Self.maximumSize else {
            throw .lengthTooLarge(offset: 0, length: bytes.count, limit: Self.maximumSize)
        }
        var reader = ByteReader(bytes)
        let rawTag = try reader.readUInt8()
        guard let tag = Tag(rawValue: rawTag) else {
            throw .unknownTag(field: "gossip message", value: UInt64(rawTag))
        }
        switch tag {
        case .subscribe: self = .subscribe(try Self.readTopics(&reader))
        case .unsubscribe: self = .unsubscribe(try Self.readTopics(&reader))
        case .publish:
            let topic = try Self.readTopic(&reader)
            self = .publish(topic: topic, data: try reader.readLengthPrefixed(limit: Self.maximumDataSize))
        case .ihave:
            let topic = try Self.readTopic(&reader)
            self = .ihave(topic: topic, ids: try Self.readIDs(&reader))
        case .iwant: self = .iwant(try Self.readIDs(&reader))
        case .graft: self = .graft(try Self.readTopic(&reader))
        case .prune:
            let topic = try Self.readTopic(&reader)
            self = .prune(topic, backoffSeconds: try reader.readUInt16())
        }
        try reader.expectEnd()
    }

    // MARK: - Fields

    private static func write(_ topic: Topic, _ writer: inout ByteWriter) {
        writer.write(UInt8(topic.bytes.count))
        writer.write(raw: topic.bytes)
    }

    private static func write(_ ids: [MessageID], _ writer: inout ByteWriter) {
        precondition((1...maximumIDs).contains(ids.count), "id count out of range")
        writer.write(UInt8(ids.count))
        for id in ids {
            writer.write(id.high)
            writer.write(id.low)
        }
    }

    static func readTopic(_ reader: inout ByteReader) throws(DecodeError) -> Topic {
        let start = reader.offset
        let length = Int(try reader.readUInt8())
        guard length >= 1 else { throw .invalid(field: "topic", reason: "empty name") }
        guard length <= Topic.maximumLength else {
            throw .lengthTooLarge(offset: start, length: length, limit: Topic.maximumLength)
        }
        let bytes = try reader.readBytes(length)
        guard Topic.isValid(bytes) else { throw .invalid(field: "topic", reason: "not printable ASCII") }
        return Topic(uncheckedBytes: bytes)
    }

    private static func readTopics(_ reader: inout ByteReader) throws(DecodeError) -> [Topic] {
        let count = try readCount(&reader, limit: maximumTopics, field: "topic list")
        var topics: [Topic] = []
        topics.reserveCapacity(count)
        for _ in 0..<count { topics.append(try readTopic(&reader)) }
        return topics
    }

    private static func readIDs(_ reader: inout ByteReader) throws(DecodeError) -> [MessageID] {
        let count = try readCount(&reader, limit: maximumIDs, field: "id list")
        var ids: [MessageID] = []
        ids.reserveCapacity(count)
        for _ in 0..<count {
            let high = try reader.readUInt64()
            ids.append(MessageID(high: high, low: try reader.readUInt64()))
        }
        return ids
    }

    private static func readCount(_ reader: inout ByteReader, limit: Int, field: String) throws(DecodeError) -> Int {
        let start = reader.offset
        let count = Int(try reader.readUInt8())
        guard count >= 1 else { throw .invalid(field: field, reason: "empty") }
        guard count <= limit else { throw .lengthTooLarge(offset: start, length: count, limit: limit) }
        return count
    }
}
