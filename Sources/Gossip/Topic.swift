// Topic names and content-addressed message ids (docs/protocol.md §Gossip).

import UmbraCore
import UmbraCrypto

/// A gossip topic: a short ASCII name of 1...32 printable, non-space bytes (`0x21...0x7E`).
public struct Topic: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Longest topic name, in bytes.
    public static let maximumLength = 32

    /// Service proposals (DESIGN §4).
    public static let proposals = Topic("proposals")
    /// Ledger entries, votes and certificates (DESIGN §6).
    public static let ledger = Topic("ledger")

    /// The name's ASCII bytes.
    public let bytes: [UInt8]

    /// A topic from a name known to be valid (a literal). Precondition: `Topic.isValid(name)`.
    public init(_ name: String) {
        guard let topic = Topic(validating: name) else { preconditionFailure("invalid gossip topic name '\(name)'") }
        self = topic
    }

    /// A topic from untrusted text, or nil when the name is empty, too long or not printable ASCII.
    public init?(validating name: String) {
        let bytes = Array(name.utf8)
        guard Topic.isValid(bytes) else { return nil }
        self.bytes = bytes
    }

    /// A topic from wire bytes (already checked).
    init(uncheckedBytes bytes: [UInt8]) { self.bytes = bytes }

    public var name: String { String(decoding: bytes, as: UTF8.self) }

    public var description: String { name }

    public static func isValid(_ bytes: [UInt8]) -> Bool {
        (1...maximumLength).contains(bytes.count) && bytes.allSatisfy { (0x21...0x7E).contains($0) }
    }

    public static func < (lhs: Topic, rhs: Topic) -> Bool { lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }
}

/// A message's identity: BLAKE2b-128 over `"umbra/gossip/id/v1" | topic length u8 | topic | data`.
/// Content addressed, so the same data on the same topic is the same message wherever it comes
/// from, and an id cannot be claimed for other content.
public struct MessageID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let byteCount = 16
    static let domain = Array("umbra/gossip/id/v1".utf8)

    /// The first and last 8 bytes of the digest, little-endian (two words hash and compare fast).
    let high: UInt64
    let low: UInt64

    /// The id of `data` published on `topic`.
    public init(topic: Topic, data: [UInt8]) {
        let digest = BLAKE2b.hash(
            [MessageID.domain, [UInt8(topic.bytes.count)], topic.bytes, data], outputLength: MessageID.byteCount)
        self.init(digest)
    }

    /// An id from its 16 bytes. Precondition: `bytes.count == 16`.
    public init(bytes: [UInt8]) {
        precondition(bytes.count == MessageID.byteCount, "a message id is \(MessageID.byteCount) bytes")
        self.init(bytes)
    }

    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    private init(_ bytes: [UInt8]) {
        var high: UInt64 = 0
        var low: UInt64 = 0
        for index in 0..<8 {
            high |= UInt64(bytes[index]) << (8 * index)
            low |= UInt64(bytes[8 + index]) << (8 * index)
        }
        self.high = high
        self.low = low
    }

    /// The 16 digest bytes.
    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(MessageID.byteCount)
        for index in 0..<8 { out.append(UInt8(truncatingIfNeeded: high >> (8 * index))) }
        for index in 0..<8 { out.append(UInt8(truncatingIfNeeded: low >> (8 * index))) }
        return out
    }

    /// The first 8 bytes in hex: enough to tell ids apart in logs.
    public var description: String { Hex.encode(Array(bytes.prefix(8))) }

    public static func < (lhs: MessageID, rhs: MessageID) -> Bool {
        (lhs.high.byteSwapped, lhs.low.byteSwapped) < (rhs.high.byteSwapped, rhs.low.byteSwapped)
    }
}

extension PublicKey {
    /// A total order on keys (by bytes), so peer sets are iterated the same way in every run.
    static func precedes(_ lhs: PublicKey, _ rhs: PublicKey) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}
