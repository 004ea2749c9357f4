// The one link model of every simulator (NetSim, DHTSim, GossipSim): what happens to a datagram
// between the moment a node sends it and the moment another node receives it.
//
// 1. Loss: the datagram is dropped with probability `lossRate` (one draw per datagram).
// 2. Base latency: each *directed* pair (from, to) has a one-way base latency drawn uniformly from
//    [minimumLatency, maximumLatency] the first time it carries anything, and keeps it (a path has a
//    stable delay, as on the real internet). The two directions of a pair are drawn independently
//    (routes are often asymmetric); a round trip costs both.
// 3. Jitter: each datagram adds a delay uniform in [0, jitter × base).
// 4. Order: by default a directed pair delivers in order (FIFO, like UDP over one path): a datagram
//    never arrives before, or at the same instant as, an earlier one on the same pair. With
//    `reordering`, that clamp is off and a datagram may overtake an earlier one by its jitter.
//
// Partitions, NAT boxes and dead nodes are faults of the simulator using the links, not of the
// links: each simulator checks them before it hands a datagram to `SimLinks.transmit`. Every draw
// comes from the simulator's one seeded RNG, in the order above, so a seed replays exactly.

import UmbraCore

/// How simulated links behave (the parameters; `SimLinks` holds the per-pair state). See the
/// header of Links.swift for the semantics.
public struct LinkModel: Sendable, Equatable {
    public var minimumLatency: Duration = .milliseconds(20)
    public var maximumLatency: Duration = .milliseconds(200)
    /// Probability in [0, 1] that a datagram is lost.
    public var lossRate: Double = 0.01
    /// Per-datagram extra delay, as a fraction of the pair's base latency.
    public var jitter: Double = 0.05
    /// When true, a directed pair no longer delivers in order: jitter may reorder datagrams.
    public var reordering = false

    public init(
        minimumLatency: Duration = .milliseconds(20), maximumLatency: Duration = .milliseconds(200),
        lossRate: Double = 0.01, jitter: Double = 0.05, reordering: Bool = false
    ) {
        self.minimumLatency = minimumLatency
        self.maximumLatency = maximumLatency
        self.lossRate = lossRate
        self.jitter = jitter
        self.reordering = reordering
    }
}

/// The simulated links between nodes numbered 0, 1, 2, …: a `LinkModel` and, per directed pair
/// that has carried something, its base latency and last arrival. Times are virtual nanoseconds.
/// NOTE: grows by one entry per directed pair used (a simulator's nodes × their peers).
public struct SimLinks: Sendable {
    public var model: LinkModel

    private struct Path: Sendable {
        let base: UInt64
        var lastArrival: UInt64 = 0
    }

    private var paths: [UInt64: Path] = [:]

    public init(model: LinkModel) { self.model = model }

    /// The stable one-way base latency from `from` to `to`, drawn on first use.
    public mutating func baseLatency(from: Int, to: Int, rng: inout SeededRandom) -> UInt64 {
        let key = Self.key(from, to)
        if let known = paths[key] { return known.base }
        let low = UInt64(max(0, model.minimumLatency.nanosecondsClamped))
        let high = max(low, UInt64(max(0, model.maximumLatency.nanosecondsClamped)))
        let base = UInt64.random(in: low...high, using: &rng)
        paths[key] = Path(base: base)
        return base
    }

    /// The base round trip between two nodes: there over one direction, back over the other.
    public mutating func roundTrip(_ a: Int, _ b: Int, rng: inout SeededRandom) -> UInt64 {
        baseLatency(from: a, to: b, rng: &rng) + baseLatency(from: b, to: a, rng: &rng)
    }

    /// One datagram sent at `now`: nil if it is lost, else the instant it arrives.
    public mutating func transmit(from: Int, to: Int, now: UInt64, rng: inout SeededRandom) -> UInt64? {
        if model.lossRate > 0, Double.random(in: 0..<1, using: &rng) < model.lossRate { return nil }
        let base = baseLatency(from: from, to: to, rng: &rng)
        let jitter = model.jitter > 0 ? UInt64(Double(base) * Double.random(in: 0..<model.jitter, using: &rng)) : 0
        var arrival = now + base + jitter
        if !model.reordering {
            let key = Self.key(from, to)
            arrival = max(arrival, paths[key]!.lastArrival + 1)
            paths[key]!.lastArrival = arrival
        }
        return arrival
    }

    private static func key(_ from: Int, _ to: Int) -> UInt64 { UInt64(UInt32(from)) << 32 | UInt64(UInt32(to)) }
}
