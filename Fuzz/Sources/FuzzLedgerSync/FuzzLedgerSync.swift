// The ledger's catch-up frames (channel 0x61: frontier requests and pages, range requests, entries)
// from untrusted bytes: each decode either refuses with a short typed error or returns a message
// that re-encodes to exactly its input and respects the limits (a page of at most 24 accounts in
// increasing order with heights above 0, a range of 1...16 entries, a message that fits one frame).

import FuzzSupport
import Ledger
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)
    let message: LedgerSyncMessage
    do throws(DecodeError) {
        message = try LedgerSyncMessage(decoding: input)
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
        return 0
    }
    require(input.count <= LedgerSyncMessage.maximumSize, "decoded a message larger than a frame")
    require(message.encoded() == input, "sync message re-encodes differently")
    switch message {
    case .frontierRequest(_, let limit):
        require((1...LedgerSyncMessage.maximumFrontier).contains(limit), "frontier limit out of range")
    case .frontier(let page, _):
        require(page.count <= LedgerSyncMessage.maximumFrontier, "frontier page too long")
        require(page.allSatisfy { $0.nextHeight > 0 }, "an account without entries in a page")
        require(
            zip(page, page.dropFirst()).allSatisfy { $0.account.bytes.lexicographicallyPrecedes($1.account.bytes) },
            "frontier page not in increasing order")
    case .rangeRequest(_, _, let count):
        require((1...LedgerSyncMessage.maximumRange).contains(count), "range count out of range")
    case .entry(let certified):
        require(certified.encoded().count + 1 == input.count, "entry frame carries more than its entry")
    }
    return 0
}
