// The responder side of the join sync: a store answers a range request with a burst of pages in sync
// key order. Pages tile the requested range exactly (page i covers up to the key before page i+1's
// first item), so a requester that loses a page knows which sub-range to ask for again.

import UmbraCore

extension ProposalStore {
    /// The most pages a store sends for one request.
    public static let maximumPagesPerRequest = 256

    /// The live entries (offers and tombstones) with a sync key in `range`, as consecutive pages that
    /// together cover `range` from its lower bound: at most `maxPages` pages (clamped to
    /// 1...`maximumPagesPerRequest`) of at most `maxPageBytes` encoded bytes (clamped so one maximal
    /// proposal always fits and the page stays within `ProposalSyncMessage.maximumSize`) and at most
    /// `ProposalSyncMessage.maximumItemsPerPage` items. The final page has `isLast`; when the page cap
    /// cut the answer short, its `covered.upperBound` is below `range.upperBound`.
    public func syncPages(
        requestID: UInt32 = 0, range: KeyRange, maxPages: Int, maxPageBytes: Int = ProposalSyncMessage.maximumSize,
        now: Instant
    ) -> [ProposalSyncMessage.Page] {
        let pageLimit = min(max(maxPages, 1), Self.maximumPagesPerRequest)
        let smallestPage = ProposalSyncMessage.pageHeaderSize + 2 + SignedProposal.maximumEncodedSize
        let byteLimit = min(max(maxPageBytes, smallestPage), ProposalSyncMessage.maximumSize)

        var pages: [ProposalSyncMessage.Page] = []
        var start = range.lowerBound
        var items: [[UInt8]] = []
        var size = ProposalSyncMessage.pageHeaderSize
        var index = insertionIndex(of: range.lowerBound)
        while index < sortedKeys.count, sortedKeys[index] <= range.upperBound {
            let key = sortedKeys[index]
            index += 1
            guard let entry = entries[key], entry.signed.expiresAt > now else { continue }
            let itemSize = 2 + entry.bytes.count
            if !items.isEmpty, size + itemSize > byteLimit || items.count == ProposalSyncMessage.maximumItemsPerPage {
                // Every item on the page has a key in [start, key), so key > start.
                guard let end = key.predecessor else { preconditionFailure("a key above another has a predecessor") }
                let isLast = pages.count + 1 == pageLimit
                pages.append(
                    .init(requestID: requestID, covered: .init(unchecked: start, end), items: items, isLast: isLast))
                if isLast { return pages }
                start = key
                items = []
                size = ProposalSyncMessage.pageHeaderSize
            }
            items.append(entry.bytes)
            size += itemSize
        }
        pages.append(
            .init(requestID: requestID, covered: .init(unchecked: start, range.upperBound), items: items, isLast: true))
        return pages
    }

    /// The answer to a sync message from a peer: pages for a request, nothing for anything else.
    /// (Rate limits per peer belong to the caller.)
    public func respond(to message: ProposalSyncMessage, now: Instant) -> [ProposalSyncMessage] {
        guard case .request(let request) = message else { return [] }
        return syncPages(requestID: request.requestID, range: request.range, maxPages: Int(request.maxPages), now: now)
            .map { .page($0) }
    }
}
