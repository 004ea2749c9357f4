// Catch-up (DESIGN §6, docs/protocol.md §15.11): how a replica that missed entries — new, restarted,
// or cut off by a partition — fetches them from a peer. The frames of the ledger-sync channel:
//
//   tag u8 | body
//   1 frontier request   after: flag u8 (0 from the start, 1 then account 32) | limit u16
//   2 frontier           count u8 | count × (account 32 | next height u64) | more u8
//                        (accounts with at least one entry, in byte order after `after`)
//   3 range request      account 32 | from u64 | count u16  (1...maximumRange)
//   4 entry              a certified entry's wire form (answers a range request, one per frame)
//
// A frontier page names what the peer holds; the requester fetches every account where the peer is
// ahead, `maximumRange` entries per request, and applies what arrives like gossip (certificate
// first). Every decoder is bounded and canonical.

import UmbraCore

public enum LedgerSyncMessage: Hashable, Sendable {
    case frontierRequest(after: PublicKey?, limit: Int)
    case frontier([Frontier], more: Bool)
    case rangeRequest(account: PublicKey, from: UInt64, count: Int)
    case entry(CertifiedEntry)

    /// One account's position: how many entries it has.
    public struct Frontier: Hashable, Sendable {
        public var account: PublicKey
        public var nextHeight: UInt64

        public init(account: PublicKey, nextHeight: UInt64) {
            self.account = account
            self.nextHeight = nextHeight
        }
    }

    enum Tag: UInt8 {
        case frontierRequest = 1, frontier = 2, rangeRequest = 3, entry = 4
    }

    /// Accounts in one frontier page at most (a page fits one control frame).
    public static let maximumFrontier = 24
    /// Entries one range request asks for at most.
    public static let maximumRange = 16
    /// The largest message that fits one control frame after its channel byte.
    public static let maximumSize = 1199

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        switch self {
        case .frontierRequest(let after, let limit):
            writer.write(Tag.frontierRequest.rawValue)
            if let after {
                writer.write(UInt8(1))
                writer.write(after)
            } else {
                writer.write(UInt8(0))
            }
            writer.write(UInt16(clamping: limit))
        case .frontier(let frontiers, let more):
            writer.write(Tag.frontier.rawValue)
            writer.write(UInt8(clamping: frontiers.count))
            for frontier in frontiers {
                writer.write(frontier.account)
                writer.write(frontier.nextHeight)
            }
            writer.write(more)
        case .rangeRequest(let account, let from, let count):
            writer.write(Tag.rangeRequest.rawValue)
            writer.write(account)
            writer.write(from)
            writer.write(UInt16(clamping: count))
        case .entry(let certified):
            writer.write(Tag.entry.rawValue)
            writer.write(raw: certified.encoded())
        }
        return writer.bytes
    }

    /// Decodes exactly `bytes` (at most `maximumSize`). Certificates are not checked.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard bytes.count <= Self.maximumSize else {
            throw .lengthTooLarge(offset: 0, length: bytes.count, limit: Self.maximumSize)
        }
        var reader = ByteReader(bytes)
        let tagByte = try reader.readUInt8()
        switch Tag(rawValue: tagByte) {
        case .frontierRequest:
            let after: PublicKey? =
                switch try reader.readUInt8() {
                case 0: nil
                case 1: try reader.readPublicKey()
                case let flag: throw .unknownTag(field: "frontier cursor flag", value: UInt64(flag))
                }
            let limit = Int(try reader.readUInt16())
            guard (1...Self.maximumFrontier).contains(limit) else {
                throw .invalid(field: "frontier limit", reason: "\(limit) is not 1...\(Self.maximumFrontier)")
            }
            self = .frontierRequest(after: after, limit: limit)
        case .frontier:
            let count = Int(try reader.readUInt8())
            guard count <= Self.maximumFrontier else {
                throw .invalid(field: "frontier count", reason: "\(count) is above \(Self.maximumFrontier)")
            }
            var frontiers: [Frontier] = []
            frontiers.reserveCapacity(count)
            for _ in 0..<count {
                let account = try reader.readPublicKey()
                let next = try reader.readUInt64()
                guard next > 0 else { throw .invalid(field: "frontier height", reason: "an account without entries") }
                if let last = frontiers.last, !last.account.bytes.lexicographicallyPrecedes(account.bytes) {
                    throw .invalid(field: "frontier", reason: "accounts not in increasing byte order")
                }
                frontiers.append(Frontier(account: account, nextHeight: next))
            }
            self = .frontier(frontiers, more: try reader.readBool(field: "frontier more"))
        case .rangeRequest:
            let account = try reader.readPublicKey()
            let from = try reader.readUInt64()
            let count = Int(try reader.readUInt16())
            guard (1...Self.maximumRange).contains(count) else {
                throw .invalid(field: "range count", reason: "\(count) is not 1...\(Self.maximumRange)")
            }
            self = .rangeRequest(account: account, from: from, count: count)
        case .entry:
            self = .entry(try CertifiedEntry(decoding: reader.readRemaining()))
        case nil:
            throw .unknownTag(field: "ledger sync message", value: UInt64(tagByte))
        }
        try reader.expectEnd()
    }
}
