import Kademlia
import NetSim
import Node
import Testing
import UmbraCore
import UmbraTestKit

/// A node with a simulated disk is killed while a write is in flight and restarted from its disk
/// with no bootstrap list: it holds the records it held (but those whose writes were in flight) and
/// rejoins the DHT from its stored contacts. Seeded, so a failure replays.
@Suite("StorageSim", .timeLimit(.minutes(3)))
struct StorageSimTests {
    static let nodes = 8
    static let victim = 7

    /// What a run ends with, to compare two runs of one seed.
    struct Summary: Equatable {
        var heldBefore: [String]
        var heldAfter: [String]
        var disk: DiskStatistics
        var tableAfterRejoin: Int
    }

    static func textRecordValue(_ name: String) -> [UInt8] {
        (try? TextRecordValue(name: name, text: "value of \(name)"))!.encoded()
    }

    /// Every record `node` holds under `keys`, as "key/publisher/seq".
    static func held(_ node: NodeInstance, keys: [Key256], now: Instant) -> [SignedRecord] {
        keys.flatMap { node.dht.store.records(for: $0, now: now) }
    }

    static func label(_ record: SignedRecord) -> String { "\(record.key)/\(record.publisher)/\(record.seq)" }

    static func run(seed: UInt64) throws -> Summary {
        var sim = NetSim(
            seed: seed,
            link: LinkModel(minimumLatency: .milliseconds(10), maximumLatency: .milliseconds(40), lossRate: 0))
        let identities = UmbraTestKit.identities(nodes, seed: seed ^ 0xD15C)
        var config = NodeConfig()
        config.storage.isEnabled = true
        config.bootstrap = [0, 1].map {
            DialTarget(publicKey: identities[$0].publicKey, endpoint: NetSim.endpoint(forNode: $0))
        }
        for identity in identities { sim.addNode(identity: identity, config: config) }
        sim.run(for: .seconds(20))

        // Every node but the victim publishes records; with 8 nodes and 10 replicas, all hold all.
        var keys = identities.map { RecordKey.peer($0.publicKey) }
        func publishBurst(_ round: Int) {
            for index in 0..<victim {
                for item in 0..<3 {
                    let name = "r\(round)-\(index)-\(item)"
                    keys.append(RecordKey.text(name))
                    sim.perform(on: index) { node, now, rng in
                        node.publish(
                            kind: .text, key: RecordKey.text(name), value: textRecordValue(name), now: now, rng: &rng
                        )
                        .effects
                    }
                }
            }
        }
        publishBurst(0)
        sim.run(for: .seconds(10))
        #expect(sim.instance(victim).storageIsReady)
        #expect(sim.diskImage(of: victim).count(in: .dhtContacts) > 0, "the routing table reached the disk")

        // A second burst; stop the clock as soon as the victim has a write in flight, and crash it.
        publishBurst(1)
        var steps = 0
        while steps < 5_000,
            !sim.storageInFlight(of: victim).contains(where: { if case .write = $0.operation { true } else { false } })
        {
            sim.run(for: .milliseconds(1))
            steps += 1
        }
        let inFlight = sim.storageInFlight(of: victim)
        try #require(inFlight.contains { if case .write = $0.operation { true } else { false } })
        let inFlightKeys = Set(
            inFlight.flatMap { request -> [[UInt8]] in
                guard case .write(let mutations) = request.operation else { return [] }
                return mutations.compactMap {
                    switch $0 {
                    case .put(.dhtRecords, let key, _), .delete(.dhtRecords, let key): key
                    default: nil
                    }
                }
            })
        let heldBefore = held(sim.instance(victim), keys: keys, now: sim.now)
        #expect(heldBefore.count >= 20, "the victim held records before the crash")
        sim.kill(victim)
        #expect(sim.diskStatistics.writesLost + sim.diskStatistics.writesTorn >= 1)
        sim.run(for: .seconds(2))

        // Restarted with no bootstrap list at all: what it knows comes from its disk.
        var bare = config
        bare.bootstrap = []
        sim.restart(victim, config: bare)
        sim.run(for: .milliseconds(500))
        let restored = sim.instance(victim)
        #expect(restored.storageIsReady)
        var lost: [String] = []
        for record in heldBefore where record.expiresAt > sim.now {
            let key = RecordDiskEntry.key(record.key, publisher: record.publisher)
            guard !inFlightKeys.contains(key) else { continue }  // may be lost: its write was in flight
            let now = restored.dht.store.record(for: record.key, publisher: record.publisher, now: sim.now)
            if now.map({ $0.seq < record.seq }) ?? true { lost.append(label(record)) }
        }
        #expect(lost.isEmpty, "records lost though their writes had completed: \(lost)")
        let heldAfter = held(restored, keys: keys, now: sim.now)
        // Nothing comes back that the node did not hold (a torn or corrupted value is refused).
        let before = Set(heldBefore.map(label))
        #expect(heldAfter.allSatisfy { before.contains(label($0)) })
        #expect(restored.storageCounters.contactsLoaded > 0)

        sim.run(for: .seconds(30))
        let table = sim.instance(victim).dht.table.count
        #expect(table > 0, "the restarted node rejoined the DHT from its stored contacts")
        #expect(sim.instance(victim).establishedPeerCount > 0)
        return Summary(
            heldBefore: heldBefore.map(label).sorted(), heldAfter: heldAfter.map(label).sorted(),
            disk: sim.diskStatistics, tableAfterRejoin: table)
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func crashMidWriteRestartsFromDisk(seed: UInt64) throws {
        _ = try Self.run(seed: seed)
    }

    @Test func aRunReplaysFromItsSeed() throws {
        let first = try Self.run(seed: 42)
        let second = try Self.run(seed: 42)
        #expect(first == second)
    }

    @Test func aCleanRestartLosesNoWrite() {
        var sim = NetSim(seed: 5, link: LinkModel(lossRate: 0))
        let identities = UmbraTestKit.identities(3, seed: 0xC1EA)
        var config = NodeConfig()
        config.storage.isEnabled = true
        config.bootstrap = [DialTarget(publicKey: identities[0].publicKey, endpoint: NetSim.endpoint(forNode: 0))]
        for identity in identities { sim.addNode(identity: identity, config: config) }
        sim.run(for: .seconds(10))
        sim.perform(on: 2) { node, now, rng in
            node.publish(
                kind: .text, key: RecordKey.text("clean"), value: Self.textRecordValue("clean"), now: now, rng: &rng
            )
            .effects
        }
        // Restarted at once, with the write still queued: a clean stop lets it land.
        #expect(!sim.storageInFlight(of: 2).isEmpty)
        sim.restart(2)
        #expect(sim.diskStatistics.writesFlushed >= 1)
        sim.run(for: .seconds(1))
        #expect(
            sim.instance(2).dht.store.record(
                for: RecordKey.text("clean"), publisher: identities[2].publicKey, now: sim.now) != nil)
    }
}
