// The simulated disk of one node (modelled on TigerBeetle's src/testing/storage.zig): an in-memory
// `StorageImage` behind a queue of requests that complete after a seeded latency, in the order they
// were issued (the storage contract, UmbraCore/Storage.swift).
//
// - A write changes the image when it completes, and only then is the node told.
// - A clean restart (`NetSim.restart` of a running node) lets every queued write land first, like a
//   shell that closes its database on shutdown.
// - A crash (`NetSim.kill`) cancels the queue. Each write still in flight is, by a seeded draw,
//   lost (nothing lands) or torn (a prefix of its mutations lands), and a torn write may leave its
//   last landed value corrupted (a byte flipped). That is harsher than SQLite (whose batches are
//   atomic): the node's loading code has to survive what a broken disk or a tampered file holds.
// - Loads in flight at a crash are dropped; the restarted node issues its own.

import UmbraCore

/// How simulated disks behave.
public struct DiskModel: Sendable {
    public var minimumLatency: Duration = .microseconds(200)
    public var maximumLatency: Duration = .milliseconds(20)
    /// Probability that a write in flight at a crash is torn rather than lost whole.
    public var tornWriteRate = 0.5
    /// Probability that a torn write corrupts the last value it landed.
    public var corruptionRate = 0.5

    public init() {}
}

/// Counters of all simulated disks.
public struct DiskStatistics: Sendable, Equatable {
    public var loads: UInt64 = 0
    public var writes: UInt64 = 0
    /// Writes in flight at a crash that left nothing.
    public var writesLost: UInt64 = 0
    /// Writes in flight at a crash that left a prefix of their mutations.
    public var writesTorn: UInt64 = 0
    /// Values corrupted by torn writes.
    public var valuesCorrupted: UInt64 = 0
    /// Writes that landed whole at a clean restart.
    public var writesFlushed: UInt64 = 0

    public init() {}
}

struct SimDisk: Sendable {
    var image = StorageImage()
    /// Requests issued and not completed, oldest first, with their completion time.
    var queue: [(request: StorageRequest, at: UInt64)] = []
    var lastCompletion: UInt64 = 0

    /// Queues `request` and returns when it completes (strictly after the one before).
    mutating func submit(
        _ request: StorageRequest, now: UInt64, model: DiskModel, rng: inout some RandomNumberGenerator
    ) -> UInt64 {
        let low = UInt64(max(0, model.minimumLatency.nanosecondsClamped))
        let high = max(low, UInt64(max(0, model.maximumLatency.nanosecondsClamped)))
        let at = max(now + UInt64.random(in: low...high, using: &rng), lastCompletion + 1)
        lastCompletion = at
        queue.append((request, at))
        return at
    }

    /// Completes the oldest request: applies it to the image and returns its completion.
    mutating func completeNext(statistics: inout DiskStatistics) -> StorageCompletion? {
        guard !queue.isEmpty else { return nil }
        let request = queue.removeFirst().request
        switch request.operation {
        case .load, .loadRange: statistics.loads += 1
        case .write: statistics.writes += 1
        }
        return StorageCompletion(token: request.token, outcome: image.perform(request.operation))
    }

    /// A clean shutdown: every queued write lands whole; nobody hears of it.
    mutating func flush(statistics: inout DiskStatistics) {
        for (request, _) in queue {
            guard case .write(let mutations) = request.operation else { continue }
            for mutation in mutations { image.apply(mutation) }
            statistics.writesFlushed += 1
        }
        queue.removeAll()
    }

    /// A crash: writes in flight are lost or torn (and maybe corrupted), by seeded draws.
    mutating func crash(model: DiskModel, statistics: inout DiskStatistics, rng: inout some RandomNumberGenerator) {
        for (request, _) in queue {
            guard case .write(let mutations) = request.operation, !mutations.isEmpty else { continue }
            guard Double.random(in: 0..<1, using: &rng) < model.tornWriteRate else {
                statistics.writesLost += 1
                continue
            }
            statistics.writesTorn += 1
            let landed = Int.random(in: 1...mutations.count, using: &rng)
            for mutation in mutations.prefix(landed) { image.apply(mutation) }
            guard Double.random(in: 0..<1, using: &rng) < model.corruptionRate,
                case .put(let namespace, let key, var value) = mutations[landed - 1], !value.isEmpty
            else { continue }
            let index = Int.random(in: 0..<value.count, using: &rng)
            value[index] ^= UInt8.random(in: 1...255, using: &rng)
            image.apply(.put(namespace, key: key, value: value))
            statistics.valuesCorrupted += 1
        }
        queue.removeAll()
        lastCompletion = 0
    }
}
