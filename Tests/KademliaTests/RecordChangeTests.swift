import Kademlia
import Testing
import UmbraCore

/// The record store's change log, which the node's storage glue turns into disk writes.
@Suite("RecordChange")
struct RecordChangeTests {
    static let network = "umbra-test"
    static let start = Instant(nanoseconds: 1_700_000_000_000_000_000)

    static func identity(_ byte: UInt8) -> Identity {
        do { return try Identity(seed: [UInt8](repeating: byte, count: 32)) } catch { fatalError("\(error)") }
    }

    static func peerRecord(_ who: Identity, seq: UInt64, expiresAt: Instant) -> SignedRecord {
        SignedRecord.peer(
            PeerRecordValue(endpoints: [Endpoint(address: .v4(0x0A00_0001), port: 4747)]), seq: seq,
            expiresAt: expiresAt, identity: who, networkID: network)
    }

    @Test func nothingIsLoggedUnlessAsked() {
        var store = RecordStore(networkID: Self.network)
        _ = store.store(
            Self.peerRecord(Self.identity(1), seq: 1, expiresAt: Self.start + .seconds(60)), now: Self.start)
        #expect(store.drainChanges().isEmpty)
    }

    @Test func storesReplacementsAndExpiriesAreLoggedWithTheirSource() {
        var store = RecordStore(networkID: Self.network)
        store.tracksChanges = true
        let alice = Self.identity(1)
        let source = Endpoint(address: .v4(0xC633_6401), port: 4747)
        let first = Self.peerRecord(alice, seq: 1, expiresAt: Self.start + .seconds(60))
        let second = Self.peerRecord(alice, seq: 2, expiresAt: Self.start + .seconds(120))
        #expect(store.store(first, now: Self.start, source: source) == .stored)
        #expect(store.store(second, now: Self.start, source: RecordStore.unknownSource) == .replaced)
        #expect(store.store(second, now: Self.start, source: source) == .unchanged)
        #expect(store.store(first, now: Self.start, source: source) == .refused(.stale))
        #expect(
            store.drainChanges() == [
                .held(first, source: source), .held(second, source: RecordStore.unknownSource),
            ])
        #expect(store.drainChanges().isEmpty, "draining empties the log")
        store.expire(now: Self.start + .seconds(121))
        #expect(store.drainChanges() == [.dropped(key: second.key, publisher: alice.publicKey)])
    }
}
