// The catch-up frames (LedgerSync.swift): exact bytes, and refusals of what a peer may not send.

import Ledger
import Testing
import UmbraCore
import UmbraTestKit

@Suite("Ledger sync codec")
struct SyncCodecTests {
    static let keys = UmbraTestKit.identities(3, seed: 61).map(\.publicKey).sorted {
        $0.bytes.lexicographicallyPrecedes($1.bytes)
    }

    @Test func everyMessageRoundTripsInExactBytes() throws {
        let messages: [LedgerSyncMessage] = [
            .frontierRequest(after: nil, limit: 24),
            .frontierRequest(after: Self.keys[0], limit: 1),
            .frontier([], more: false),
            .frontier(
                [.init(account: Self.keys[0], nextHeight: 3), .init(account: Self.keys[1], nextHeight: 1)], more: true),
            .rangeRequest(account: Self.keys[2], from: 7, count: 16),
        ]
        for message in messages {
            #expect(try LedgerSyncMessage(decoding: message.encoded()) == message)
        }
        #expect(LedgerSyncMessage.frontierRequest(after: nil, limit: 24).encoded() == [1, 0, 24, 0])
        #expect(
            LedgerSyncMessage.rangeRequest(account: Self.keys[0], from: 1, count: 2).encoded()
                == [3] + Self.keys[0].bytes + [1, 0, 0, 0, 0, 0, 0, 0, 2, 0])
        // A full page fits one control frame.
        let page = (0..<LedgerSyncMessage.maximumFrontier).map { index in
            LedgerSyncMessage.Frontier(
                account: try! PublicKey(bytes: [UInt8](repeating: UInt8(index), count: 32)), nextHeight: 1)
        }
        #expect(LedgerSyncMessage.frontier(page, more: true).encoded().count <= LedgerSyncMessage.maximumSize)
    }

    @Test func whatAPeerMayNotSendIsRefused() {
        let refused: [[UInt8]] = [
            [],
            [9],
            [1, 0, 0, 0],  // a limit of 0
            [1, 0, 25, 0],  // above the page size
            [1, 2] + [UInt8](repeating: 0, count: 34),  // an unknown cursor flag
            [2, 25] + [UInt8](repeating: 0, count: 25 * 40 + 1),  // too many accounts
            [2, 1] + Self.keys[0].bytes + [0, 0, 0, 0, 0, 0, 0, 0, 0],  // an account without entries
            [2, 2] + Self.keys[1].bytes + [1, 0, 0, 0, 0, 0, 0, 0] + Self.keys[0].bytes + [1, 0, 0, 0, 0, 0, 0, 0, 0],
            [3] + Self.keys[0].bytes + [0, 0, 0, 0, 0, 0, 0, 0, 17, 0],  // above the range limit
            [3] + Self.keys[0].bytes + [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  // an empty range
            [1, 0, 24, 0, 0],  // trailing bytes
            [4, 1, 2, 3],  // not a certified entry
            [UInt8](repeating: 2, count: LedgerSyncMessage.maximumSize + 1),
        ]
        for bytes in refused {
            #expect(throws: DecodeError.self, "\(bytes.prefix(4))") { try LedgerSyncMessage(decoding: bytes) }
        }
    }
}
