// Issue #12.7: free identities filled the record store and every honest STORE was refused until
// their records expired. Now records are capped per source address and prefix, the store has a
// byte budget, and a full store evicts from the heaviest source for a lighter one.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Kademlia

private let start = t0
private let hour = Duration.seconds(3600)

private func peerRecord(_ rng: inout SeededRandom, expiresAt: Instant = start + hour) -> SignedRecord {
    let who = Identity.generate(using: &rng)
    return SignedRecord.peer(
        PeerRecordValue(endpoints: [Endpoint(address: .v4(0xC633_6401), port: 4747)]), seq: 1, expiresAt: expiresAt,
        identity: who, networkID: network)
}

/// 203.0.<block>.<host>:4747.
private func source(block: UInt8, host: UInt8) -> Endpoint {
    Endpoint(address: .v4(0xCB00_0000 | UInt32(block) << 8 | UInt32(host)), port: 4747)
}

private func smallStore() -> RecordStore {
    var config = RecordStoreConfig()
    config.maximumRecords = 256
    return RecordStore(networkID: network, config: config)
}

@Suite struct RecordStoreFloodTests {
    @Test func oneAddressHoldsOnlyItsShare() {
        var store = smallStore()
        var rng = SeededRandom(seed: 1)
        let attacker = source(block: 1, host: 1)
        let stored = (0..<40).filter { _ in store.store(peerRecord(&rng), now: start, source: attacker) == .stored }
        #expect(stored.count == store.config.sourceShares.addressLimit(of: 256))
        #expect(store.recordCount(fromSource: attacker) == stored.count)
    }

    @Test func onePrefixHoldsOnlyItsShare() {
        var store = smallStore()
        var rng = SeededRandom(seed: 2)
        var stored = 0
        for host in 1...100 {
            for _ in 0..<4
            where store.store(peerRecord(&rng), now: start, source: source(block: 1, host: UInt8(host)))
                == .stored
            {
                stored += 1
            }
        }
        #expect(stored == store.config.sourceShares.prefixLimit(of: 256))
    }

    @Test func aFloodFromManyIdentitiesLeavesRoomForHonestStores() {
        var store = smallStore()
        var rng = SeededRandom(seed: 3)
        // Many prefixes, many addresses, fresh identities: the store fills.
        var flooded = 0
        outer: for block in 1...60 {
            for host in 1...8 {
                for _ in 0..<4 {
                    if store.store(peerRecord(&rng), now: start, source: source(block: UInt8(block), host: UInt8(host)))
                        == .stored
                    {
                        flooded += 1
                    }
                    if store.count == store.config.maximumRecords { break outer }
                }
            }
        }
        #expect(store.count == store.config.maximumRecords)
        // Honest publishers from elsewhere are still accepted, each pushing out a flood record.
        for host in 1...20 {
            let honest = Endpoint(address: .v4(0xC633_0001 | UInt32(host) << 8), port: 4747)  // 198.51.<host>.1
            #expect(store.store(peerRecord(&rng), now: start, source: honest) == .stored)
        }
        #expect(store.count == store.config.maximumRecords)
        #expect(store.evictions == 20)
    }

    @Test func theHeaviestSourceCannotEvictLighterOnes() {
        var config = RecordStoreConfig()
        config.maximumRecords = 64
        config.sourceShares = SourceShares(addressShare: 0.9, prefixShare: 0.9)
        var store = RecordStore(networkID: network, config: config)
        var rng = SeededRandom(seed: 4)
        let heavy = source(block: 1, host: 1)
        for block in 2...33 {
            _ = store.store(peerRecord(&rng), now: start, source: source(block: UInt8(block), host: 1))
        }
        while store.count < 64 { _ = store.store(peerRecord(&rng), now: start, source: heavy) }
        // The heaviest source is full and refused; it does not push out anyone else.
        #expect(store.store(peerRecord(&rng), now: start, source: heavy) == .refused(.storeFull))
        #expect(store.evictions == 0)
    }

    @Test func ownRecordsAreNeverEvicted() {
        var config = RecordStoreConfig()
        config.maximumRecords = 8
        var store = RecordStore(networkID: network, config: config)
        var rng = SeededRandom(seed: 5)
        for _ in 0..<8 { _ = store.store(peerRecord(&rng), now: start) }
        #expect(store.store(peerRecord(&rng), now: start, source: source(block: 1, host: 1)) == .refused(.storeFull))
    }

    @Test func theByteBudgetIsEnforced() {
        var config = RecordStoreConfig()
        var rng = SeededRandom(seed: 6)
        let sample = peerRecord(&rng)
        config.maximumBytes = sample.encodedSize * 5
        var store = RecordStore(networkID: network, config: config)
        for _ in 0..<5 { #expect(store.store(peerRecord(&rng), now: start) == .stored) }
        #expect(store.store(peerRecord(&rng), now: start) == .refused(.storeFull))
        #expect(store.bytes == sample.encodedSize * 5)
    }
}
