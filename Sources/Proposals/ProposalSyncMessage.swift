// Join sync messages (docs/protocol.md §Proposal sync). A joining node asks a peer for a range of the
// proposal key space (`ProposalID.syncKey`); the peer answers with a burst of pages, each declaring
// the exact closed sub-range it covers, so the requester knows what it holds even when pages are lost.
// Every message fits one control datagram: at most `maximumSize` bytes.
//
//   request: tag u8 = 1 | request id u32 | first key (32) | last key (32) | max pages u16 (≥ 1)
//   page:    tag u8 = 2 | request id u32 | covered first (32) | covered last (32) | last u8 (0/1) |
//            item count u8 (≤ 64) | items, each u16 length (1...1000) + a SignedProposal wire form

import UmbraCore

public enum ProposalSyncMessage: Equatable, Sendable {
    case request(Request)
    case page(Page)

    /// "Send me the entries whose sync key is in `range`, in at most `maxPages` pages."
    public struct Request: Equatable, Sendable {
        public var requestID: UInt32
        public var range: KeyRange
        public var maxPages: UInt16

        public init(requestID: UInt32, range: KeyRange, maxPages: UInt16) {
            self.requestID = requestID
            self.range = range
            self.maxPages = maxPages
        }
    }

    /// Every live entry with a sync key in `covered`, as signed wire bytes. `isLast` marks the last
    /// page of the answer to a request; its `covered.upperBound` below the request's upper bound
    /// means the responder stopped there (its page cap).
    public struct Page: Equatable, Sendable {
        public var requestID: UInt32
        public var covered: KeyRange
        public var items: [[UInt8]]
        public var isLast: Bool

        public init(requestID: UInt32, covered: KeyRange, items: [[UInt8]], isLast: Bool) {
            self.requestID = requestID
            self.covered = covered
            self.items = items
            self.isLast = isLast
        }

        /// The length of the encoded page.
        public var encodedSize: Int { ProposalSyncMessage.pageHeaderSize + items.reduce(0) { $0 + 2 + $1.count } }
    }

    public enum Tag: UInt8, Sendable {
        case request = 1
        case page = 2
    }

    /// A control datagram (1200 bytes) minus the frame header and channel byte, with room to spare.
    public static let maximumSize = 1180
    public static let maximumItemsPerPage = 64
    public static let requestSize = 1 + 4 + 2 * Key256.byteCount + 2
    public static let pageHeaderSize = 1 + 4 + 2 * Key256.byteCount + 1 + 1

    public var tag: Tag {
        switch self {
        case .request: .request
        case .page: .page
        }
    }

    public var requestID: UInt32 {
        switch self {
        case .request(let request): request.requestID
        case .page(let page): page.requestID
        }
    }

    /// The wire form. Precondition: at most 255 items of at most 65535 bytes each (`decode` refuses
    /// more than `maximumItemsPerPage` items or items above `SignedProposal.maximumEncodedSize`).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 128)
        writer.write(tag.rawValue)
        writer.write(requestID)
        switch self {
        case .request(let request):
            writer.write(request.range.lowerBound)
            writer.write(request.range.upperBound)
            writer.write(request.maxPages)
        case .page(let page):
            writer.write(page.covered.lowerBound)
            writer.write(page.covered.upperBound)
            writer.write(page.isLast)
            writer.write(UInt8(page.items.count))
            for item in page.items { writer.write(lengthPrefixed: item) }
        }
        return writer.bytes
    }

    /// Decodes exactly `bytes`: at most `maximumSize` bytes, a known tag, ordered bounds, at least one
    /// page asked for, at most `maximumItemsPerPage` non-empty items of at most
    /// `SignedProposal.maximumEncodedSize` bytes. Items are not decoded here.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard bytes.count <= Self.maximumSize else {
            throw .lengthTooLarge(offset: 0, length: bytes.count, limit: Self.maximumSize)
        }
        var reader = ByteReader(bytes)
        let rawTag = try reader.readUInt8()
        guard let tag = Tag(rawValue: rawTag) else {
            throw .unknownTag(field: "proposal sync message", value: UInt64(rawTag))
        }
        let requestID = try reader.readUInt32()
        let lower = try reader.readKey256()
        let upper = try reader.readKey256()
        guard let range = KeyRange(lower, upper) else {
            throw .invalid(field: "proposal sync range", reason: "first key above last key")
        }
        switch tag {
        case .request:
            let maxPages = try reader.readUInt16()
            guard maxPages > 0 else { throw .invalid(field: "proposal sync max pages", reason: "zero") }
            self = .request(Request(requestID: requestID, range: range, maxPages: maxPages))
        case .page:
            let isLast = try reader.readBool(field: "proposal sync last flag")
            let countOffset = reader.offset
            let count = Int(try reader.readUInt8())
            guard count <= Self.maximumItemsPerPage else {
                throw .lengthTooLarge(offset: countOffset, length: count, limit: Self.maximumItemsPerPage)
            }
            var items: [[UInt8]] = []
            items.reserveCapacity(count)
            for _ in 0..<count {
                let item = try reader.readLengthPrefixed(limit: SignedProposal.maximumEncodedSize)
                guard !item.isEmpty else { throw .invalid(field: "proposal sync item", reason: "empty") }
                items.append(item)
            }
            self = .page(Page(requestID: requestID, covered: range, items: items, isLast: isLast))
        }
        try reader.expectEnd()
    }
}
