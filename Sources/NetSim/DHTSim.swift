// DHTSim: the DHT core (Kademlia.DHTNode, the same value the node runs) at network scale, over
// virtual links. The session layer underneath is not simulated here: a DHT request to a node
// without a session rides in the Noise initiation as early data (0-RTT) and the reply follows the
// handshake response, so a request costs one round trip with or without a session — exactly what
// a direct link models. Message encoding is skipped (the codec is tested and fuzzed on its own).
//
// Scenario (`run`): nodes join one after another over `joinDuration`, each bootstrapping from a
// few random earlier nodes; the network settles; then `churn` × N nodes are killed at once (no
// refresh runs before the lookups: dead contacts stay in tables and must be routed around); then
// `lookups` node lookups, each from a random live node for a random live target, one after another
// in overlapping waves. A lookup succeeds when the target's contact is found.
//
// Links: NetSim's (`SimLinks`, Links.swift): a stable one-way base latency per directed pair, jitter,
// loss, FIFO per directed pair unless `link.reordering` is set.

import Kademlia
import UmbraCore

public struct DHTSimConfig: Sendable {
    public var nodes = 1000
    public var lookups = 1000
    public var churn = 0.0
    public var seed: UInt64 = 1
    public var link = LinkModel()
    public var dht = DHTConfig()
    public var bootstrapSeeds = 3
    public var joinDuration: Duration = .seconds(60)
    public var settleDuration: Duration = .seconds(30)
    /// Lookups start this far apart (they overlap: each may take longer).
    public var lookupSpacing: Duration = .milliseconds(20)
    public init() {}
}

public struct DHTSimResult: Sendable, Codable {
    public var nodes: Int
    public var lookups: Int
    public var churn: Double
    public var seed: UInt64
    public var successRate: Double
    public var hopsP50: Int
    public var hopsP90: Int
    public var hopsP99: Int
    public var latencyP50Ms: Double
    public var latencyP90Ms: Double
    public var latencyP99Ms: Double
    /// Requests plus responses per lookup (from the lookup's own queries and their answers).
    public var messagesPerLookup: Double
    public var queriesPerLookup: Double
    public var averageTableSize: Double
    public var datagramsSent: UInt64
    public var datagramsLost: UInt64
    public var virtualSeconds: Double
}

public struct DHTSim {
    private enum Event {
        case deliver(DHTMessage, from: Int, to: Int)
        case timer(node: Int, generation: UInt64)
        case join(node: Int)
        case lookup(from: Int, target: Int)
    }

    private struct SimNode {
        var dht: DHTNode?
        let contact: NodeContact
        var isUp = false
        var armed: UInt64?
        var generation: UInt64 = 0
    }

    public let config: DHTSimConfig
    private var rng: SeededRandom
    private var nodes: [SimNode] = []
    private var byKey: [PublicKey: Int] = [:]
    private var queue = EventQueue<Event>()
    private var now = Instant.zero
    private var links: SimLinks
    private var reports: [UInt64: LookupReport] = [:]
    private var measured: Set<UInt64> = []
    private var sent: UInt64 = 0
    private var lost: UInt64 = 0

    public init(config: DHTSimConfig) {
        self.config = config
        self.rng = SeededRandom(seed: config.seed)
        self.links = SimLinks(model: config.link)
        var keys = SeededRandom(seed: config.seed ^ 0x00D7_5EED)
        for index in 0..<config.nodes {
            let identity = Identity.generate(using: &keys)
            let endpoint = Endpoint(address: .v4(0x0A00_0000 | UInt32(index + 1)), port: 4747)
            nodes.append(SimNode(dht: nil, contact: NodeContact(publicKey: identity.publicKey, endpoint: endpoint)))
            byKey[identity.publicKey] = index
            identities.append(identity)
        }
    }

    private var identities: [Identity] = []

    /// Runs the whole scenario and returns the measurements.
    public mutating func run() -> DHTSimResult {
        let count = config.nodes
        let spacing = config.joinDuration.nanosecondsClamped / Int64(max(1, count))
        for index in 0..<count { queue.push(.join(node: index), at: UInt64(Int64(index) * spacing)) }
        let lookupsStart = Instant.zero + config.joinDuration + config.settleDuration
        runEvents(until: lookupsStart)

        // Churn: kill a random fraction at once.
        let killed = Int((Double(count) * config.churn).rounded())
        var order = Array(0..<count)
        order.shuffle(using: &rng)
        for index in order.prefix(killed) {
            nodes[index].isUp = false
            nodes[index].generation += 1
        }
        let alive = (0..<count).filter { nodes[$0].isUp }

        // Lookups in overlapping waves.
        var at = lookupsStart.nanoseconds
        for _ in 0..<config.lookups {
            let from = alive.randomElement(using: &rng)!
            var target = alive.randomElement(using: &rng)!
            while target == from && alive.count > 1 { target = alive.randomElement(using: &rng)! }
            queue.push(.lookup(from: from, target: target), at: at)
            at += UInt64(config.lookupSpacing.nanosecondsClamped)
        }
        let end = Instant(nanoseconds: at) + .seconds(30)
        runEvents(until: end)

        let finished = measured.compactMap { reports[$0] }
        let successes = finished.filter(\.found)
        let hops = successes.map(\.hops).sorted()
        let latencies = successes.map { $0.latency.seconds * 1000 }.sorted()
        let tables = alive.compactMap { nodes[$0].dht?.table.count }
        return DHTSimResult(
            nodes: count, lookups: config.lookups, churn: config.churn, seed: config.seed,
            successRate: Double(successes.count) / Double(max(1, config.lookups)),
            hopsP50: percentile(hops, 0.50) ?? 0, hopsP90: percentile(hops, 0.90) ?? 0,
            hopsP99: percentile(hops, 0.99) ?? 0,
            latencyP50Ms: percentile(latencies, 0.50) ?? 0, latencyP90Ms: percentile(latencies, 0.90) ?? 0,
            latencyP99Ms: percentile(latencies, 0.99) ?? 0,
            messagesPerLookup: Double(finished.reduce(0) { $0 + $1.queries + $1.responses })
                / Double(max(1, finished.count)),
            queriesPerLookup: Double(finished.reduce(0) { $0 + $1.queries }) / Double(max(1, finished.count)),
            averageTableSize: Double(tables.reduce(0, +)) / Double(max(1, tables.count)),
            datagramsSent: sent, datagramsLost: lost, virtualSeconds: now.since(.zero).seconds)
    }

    // MARK: - Events

    private mutating func runEvents(until deadline: Instant) {
        while let next = queue.nextTime, next <= deadline.nanoseconds {
            let (time, event) = queue.pop()!
            now = Instant(nanoseconds: time)
            switch event {
            case .join(let index):
                var dht = DHTNode(
                    identity: identities[index], networkID: "umbra-sim", config: config.dht, now: now,
                    rng: &rng)
                nodes[index].isUp = true
                let earlier = (0..<index).filter { nodes[$0].isUp }
                var seeds: [NodeContact] = []
                for _ in 0..<min(config.bootstrapSeeds, earlier.count) {
                    seeds.append(nodes[earlier.randomElement(using: &rng)!].contact)
                }
                let effects = dht.bootstrap(seeds, now: now, rng: &rng)
                nodes[index].dht = dht
                apply(effects, from: index)
            case .deliver(let message, let from, let to):
                guard nodes[to].isUp, nodes[to].dht != nil else { continue }
                let effects = nodes[to].dht!.handle(message, from: nodes[from].contact, now: now, rng: &rng)
                apply(effects, from: to)
            case .timer(let index, let generation):
                guard nodes[index].isUp, nodes[index].generation == generation else { continue }
                nodes[index].armed = nil
                let effects = nodes[index].dht!.tick(now: now, rng: &rng)
                apply(effects, from: index)
            case .lookup(let from, let target):
                guard nodes[from].isUp else { continue }
                let (id, effects) = nodes[from].dht!.lookup(nodes[target].contact.id, kind: .node, now: now, rng: &rng)
                measured.insert(id)
                apply(effects, from: from)
            }
        }
        if now < deadline { now = deadline }
    }

    private mutating func apply(_ effects: [DHTEffect], from index: Int) {
        for effect in effects {
            switch effect {
            case .send(let message, let contact):
                sent += 1
                guard let target = byKey[contact.publicKey] else { continue }
                guard let at = links.transmit(from: index, to: target, now: now.nanoseconds, rng: &rng) else {
                    lost += 1
                    continue
                }
                queue.push(.deliver(message, from: index, to: target), at: at)
            case .lookupFinished(let report):
                if measured.contains(report.id) { reports[report.id] = report }
            case .putFinished, .contactFailed, .observedAddress:
                break
            }
        }
        arm(index)
    }

    private mutating func arm(_ index: Int) {
        guard nodes[index].isUp, let deadline = nodes[index].dht?.nextDeadline else { return }
        let at = deadline.nanoseconds > now.nanoseconds ? deadline.nanoseconds : now.nanoseconds + 1_000_000
        if let armed = nodes[index].armed, armed <= at { return }
        nodes[index].generation += 1
        nodes[index].armed = at
        queue.push(.timer(node: index, generation: nodes[index].generation), at: at)
    }
}

/// The value at quantile `q` (nearest rank) of sorted values.
func percentile<T>(_ sorted: [T], _ q: Double) -> T? {
    guard !sorted.isEmpty else { return nil }
    let rank = Int((q * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}
