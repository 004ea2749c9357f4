import ArgumentParser
import Foundation
import NetSim
import Node
import NodeAPI
import UmbraCore

struct Sim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run deterministic simulations of the overlay (NetSim: virtual time, seeded links).",
        subcommands: [Handshake.self, DHT.self, GossipSimulation.self, LedgerSimulation.self])

    struct DHT: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dht",
            abstract: "Kademlia at scale: N nodes join, churn, then L lookups; prints the measurements.")
        @Option(help: "Number of nodes.") var nodes = 1000
        @Option(help: "Number of lookups.") var lookups = 1000
        @Option(help: "Fraction of nodes killed after warm-up, before any refresh (0 to 0.9).") var churn = 0.0
        @Option(help: "RNG seed; the same seed gives the same result.") var seed: UInt64 = 1
        @Option(help: "Minimum one-way link latency in ms.") var minLatencyMs = 20
        @Option(help: "Maximum one-way link latency in ms.") var maxLatencyMs = 200
        @Option(help: "Datagram loss rate, 0 to 1.") var loss = 0.01
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            guard (2...100_000).contains(nodes) else { throw ValidationError("--nodes must be between 2 and 100000") }
            guard (1...1_000_000).contains(lookups) else { throw ValidationError("--lookups must be 1 to 1000000") }
            guard (0...0.9).contains(churn) else { throw ValidationError("--churn must be between 0 and 0.9") }
            guard (0...1).contains(loss) else { throw ValidationError("--loss must be between 0 and 1") }
            guard 0 <= minLatencyMs, minLatencyMs <= maxLatencyMs else {
                throw ValidationError("--min-latency-ms must be between 0 and --max-latency-ms")
            }
        }

        func run() async throws {
            var config = DHTSimConfig()
            config.nodes = nodes
            config.lookups = lookups
            config.churn = churn
            config.seed = seed
            config.link = LinkModel(
                minimumLatency: .milliseconds(minLatencyMs), maximumLatency: .milliseconds(maxLatencyMs),
                lossRate: loss)
            let started = ContinuousClock.now
            var sim = DHTSim(config: config)
            let result = sim.run()
            let wall = (ContinuousClock.now - started).seconds
            let rss = ProcessStats.peakResidentMiB()
            if json {
                var object =
                    try JSONSerialization.jsonObject(with: ControlJSON.encoder.encode(result)) as! [String: Any]
                object["wall_seconds"] = wall
                object["peak_rss_mib"] = rss
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print("nodes \(result.nodes), lookups \(result.lookups), churn \(result.churn), seed \(result.seed)")
                print(String(format: "success     %.2f%%", result.successRate * 100))
                print("hops        p50 \(result.hopsP50)  p90 \(result.hopsP90)  p99 \(result.hopsP99)")
                print(
                    String(
                        format: "latency     p50 %.0f ms  p90 %.0f ms  p99 %.0f ms (virtual)",
                        result.latencyP50Ms, result.latencyP90Ms, result.latencyP99Ms))
                print(
                    String(
                        format: "messages    %.1f per lookup (%.1f queries)", result.messagesPerLookup,
                        result.queriesPerLookup))
                print(String(format: "tables      %.1f contacts on average", result.averageTableSize))
                print(String(format: "wall        %.1f s, peak RSS %.0f MiB", wall, rss))
            }
        }
    }

    struct GossipSimulation: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gossip",
            abstract:
                "Gossip and proposals at scale: N nodes, P providers refreshing signed offers, K joiners syncing; "
                + "prints propagation, duplicates, bandwidth and join times.")
        @Option(help: "Number of nodes.") var nodes = 1000
        @Option(help: "Number of providers (each publishes one offer, re-signed every 60 s).") var providers = 100
        @Option(help: "RNG seed; the same seed gives the same result.") var seed: UInt64 = 1
        @Option(help: "Datagram loss rate, 0 to 1.") var loss = 0.01
        @Option(help: "Minimum one-way link latency in ms.") var minLatencyMs = 10
        @Option(help: "Maximum one-way link latency in ms.") var maxLatencyMs = 100
        @Option(help: "Gossip connections each node dials.") var outbound = 8
        @Option(help: "Nodes that join in steady state and sync.") var joiners = 5
        @Option(help: "Propagations measured.") var tracked = 20
        @Option(help: "Tampered proposals published by non-providers (must never be delivered).") var forgeries = 0
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            guard (2...100_000).contains(nodes) else { throw ValidationError("--nodes must be between 2 and 100000") }
            guard (1...nodes).contains(providers) else { throw ValidationError("--providers must be 1 to --nodes") }
            guard (0...1).contains(loss) else { throw ValidationError("--loss must be between 0 and 1") }
            guard 0 <= minLatencyMs, minLatencyMs <= maxLatencyMs else {
                throw ValidationError("--min-latency-ms must be between 0 and --max-latency-ms")
            }
            guard (1...64).contains(outbound) else { throw ValidationError("--outbound must be 1 to 64") }
            guard (0...100).contains(joiners) else { throw ValidationError("--joiners must be 0 to 100") }
            guard (0...100).contains(tracked) else { throw ValidationError("--tracked must be 0 to 100") }
            guard (0...100).contains(forgeries) else { throw ValidationError("--forgeries must be 0 to 100") }
        }

        func run() async throws {
            var config = GossipSimConfig()
            config.nodes = nodes
            config.providers = providers
            config.seed = seed
            config.link = LinkModel(
                minimumLatency: .milliseconds(minLatencyMs), maximumLatency: .milliseconds(maxLatencyMs),
                lossRate: loss)
            config.outboundPeers = outbound
            config.joiners = joiners
            config.trackedMessages = tracked
            config.forgeries = forgeries
            let started = ContinuousClock.now
            var sim = GossipSim(config: config)
            let result = sim.run()
            let wall = (ContinuousClock.now - started).seconds
            let rss = ProcessStats.peakResidentMiB()
            if json {
                var object =
                    try JSONSerialization.jsonObject(with: ControlJSON.encoder.encode(result)) as! [String: Any]
                object["wall_seconds"] = wall
                object["peak_rss_mib"] = rss
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
                print(String(decoding: data, as: UTF8.self))
            } else {
                Self.printTable(result, wall: wall, rss: rss)
            }
        }

        static func printTable(_ result: GossipSimResult, wall: Double, rss: Double) {
            func spread(_ value: GossipSimResult.Spread) -> String {
                String(format: "p50 %.0f ms  p99 %.0f ms  max %.0f ms", value.p50, value.p99, value.max)
            }
            print(
                "nodes \(result.nodes), providers \(result.providers), loss \(result.lossRate), seed \(result.seed)")
            print(
                String(
                    format: "topology     %.1f peers, mesh %.1f (%d..%d)", result.peersMean, result.meshMean,
                    result.meshMin, result.meshMax))
            print(
                "propagation  \(result.trackedReachingAll)/\(result.trackedCount) tracked messages reached every node")
            print("  to 50 %    \(spread(result.reach50))")
            print("  to 99 %    \(spread(result.reach99))")
            print("  to 100 %   \(spread(result.reach100))")
            print(
                String(
                    format: "duplicates   mean %.2f  p99 %d  max %d per node per message", result.duplicatesMean,
                    result.duplicatesP99, result.duplicatesMax))
            print(
                String(
                    format:
                        "bandwidth    in %.1f KB/min (p99 %.1f), out %.1f KB/min (p99 %.1f) per node; %.0f datagrams/min",
                    result.bytesInPerMinuteMean / 1000, result.bytesInPerMinuteP99 / 1000,
                    result.bytesOutPerMinuteMean / 1000, result.bytesOutPerMinuteP99 / 1000,
                    result.datagramsPerNodePerMinute))
            print(
                String(
                    format: "publishing   %.0f proposals/min of %.0f bytes", result.publishesPerMinute,
                    result.proposalBytesMean))
            print("join         \(result.joinersComplete)/\(result.joins.count) joiners hold every live offer")
            print("  to 99 %    \(spread(result.join99))")
            print("  to 100 %   \(spread(result.join100))")
            if result.forgeries > 0 {
                print("forgeries    \(result.forgeries) published, \(result.forgedDeliveries) delivered")
            }
            print(
                "datagrams    \(result.datagramsSent) sent, \(result.datagramsLost) lost; "
                    + "\(result.eventsProcessed) events, \(Int(result.virtualSeconds)) s virtual")
            print(String(format: "wall         %.1f s, peak RSS %.0f MiB", wall, rss))
        }
    }

    struct Handshake: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "N nodes bootstrap from each other, handshake and ping; prints the event trace.")
        @Option(help: "Number of nodes.") var nodes = 5
        @Option(help: "Virtual seconds to run.") var seconds = 30
        @Option(help: "RNG seed; the same seed gives the same trace.") var seed: UInt64 = 1
        @Option(help: "Datagram loss rate, 0 to 1.") var loss = 0.01
        @Flag(help: "Print a JSON summary instead of the trace.") var json = false

        func validate() throws {
            guard (2...2000).contains(nodes) else { throw ValidationError("--nodes must be between 2 and 2000") }
            guard (1...3600).contains(seconds) else { throw ValidationError("--seconds must be between 1 and 3600") }
            guard (0...1).contains(loss) else { throw ValidationError("--loss must be between 0 and 1") }
        }

        func run() async throws {
            let started = ContinuousClock.now
            let result = HandshakeScenario.run(nodes: nodes, seconds: seconds, seed: seed, loss: loss)
            let wall = (ContinuousClock.now - started).seconds
            if json {
                let summary: [String: Any] = [
                    "nodes": nodes, "seed": seed, "virtual_seconds": seconds, "wall_seconds": wall,
                    "fully_connected_nodes": result.fullyConnected, "trace_entries": result.trace.count,
                    "trace_digest": result.digest, "datagrams_sent": result.statistics.datagramsSent,
                    "datagrams_lost": result.statistics.datagramsLost,
                ]
                let data = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys, .prettyPrinted])
                print(String(decoding: data, as: UTF8.self))
            } else {
                for entry in result.trace { print(entry) }
                print(
                    "\(result.fullyConnected)/\(nodes) nodes have sessions with all \(nodes - 1) others; "
                        + "trace digest \(result.digest)")
            }
        }
    }
}

/// The scenario the tests also run: a full mesh bootstrapping from one list, then pings.
enum HandshakeScenario {
    struct Result {
        var trace: [TraceEntry]
        var fullyConnected: Int
        var statistics: NetSimStatistics
        var digest: String
    }

    static func run(nodes count: Int, seconds: Int, seed: UInt64, loss: Double) -> Result {
        var sim = NetSim(seed: seed, link: LinkModel(lossRate: loss))
        var keyRNG = SeededRandom(seed: seed ^ 0x5EED)
        let identities = (0..<count).map { _ in Identity.generate(using: &keyRNG) }
        let targets = identities.indices.map {
            DialTarget(publicKey: identities[$0].publicKey, endpoint: NetSim.endpoint(forNode: $0))
        }
        var config = NodeConfig()
        config.bootstrap = targets
        for identity in identities { sim.addNode(identity: identity, config: config) }
        sim.run(for: .seconds(seconds))
        let full = (0..<count).filter { sim.instance($0).establishedPeerCount == count - 1 }.count
        return Result(
            trace: sim.trace, fullyConnected: full, statistics: sim.statistics,
            digest: Digest.fnv1a(sim.trace.map(\.description).joined(separator: "\n")))
    }
}

enum ProcessStats {
    /// Peak resident set size of this process (VmHWM), in MiB; 0 where /proc is not available.
    static func peakResidentMiB() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kib = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
            return kib / 1024
        }
        return 0
    }
}

enum Digest {
    /// FNV-1a 64 of a string, as hex: a short fingerprint to compare traces by eye.
    static func fnv1a(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }
}

extension Sim {
    struct LedgerSimulation: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ledger",
            abstract:
                "The ledger: V validators (f of them down) and C clients each making E transfers; prints finality, "
                + "throughput and whether every node agrees.")
        @Option(help: "Validators in the committee.") var validators = 4
        @Option(help: "Validators down from the start (fewer than a third).") var down = 0
        @Option(help: "Clients, each with its own account.") var clients = 10
        @Option(help: "Transfers each client makes, one after another.") var entries = 10
        @Option(help: "RNG seed; the same seed gives the same result.") var seed: UInt64 = 1
        @Option(help: "Minimum one-way link latency in ms.") var minLatencyMs = 20
        @Option(help: "Maximum one-way link latency in ms.") var maxLatencyMs = 50
        @Option(help: "Datagram loss rate, 0 to 1.") var loss = 0.0
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            guard (1...64).contains(validators) else { throw ValidationError("--validators must be 1 to 64") }
            guard 0 <= down, 3 * down < validators else {
                throw ValidationError("--down must be below a third of --validators (the committee must still certify)")
            }
            guard (1...500).contains(clients) else { throw ValidationError("--clients must be 1 to 500") }
            guard (1...1000).contains(entries) else { throw ValidationError("--entries must be 1 to 1000") }
            guard (0...1).contains(loss) else { throw ValidationError("--loss must be between 0 and 1") }
            guard 0 <= minLatencyMs, minLatencyMs <= maxLatencyMs else {
                throw ValidationError("--min-latency-ms must be between 0 and --max-latency-ms")
            }
        }

        func run() async throws {
            var config = LedgerSimConfig()
            config.validators = validators
            config.down = down
            config.clients = clients
            config.entriesPerClient = entries
            config.seed = seed
            config.link = LinkModel(
                minimumLatency: .milliseconds(minLatencyMs), maximumLatency: .milliseconds(maxLatencyMs),
                lossRate: loss)
            let started = ContinuousClock.now
            let result = LedgerSim(config: config).run()
            let wall = (ContinuousClock.now - started).seconds
            if json {
                var object =
                    try JSONSerialization.jsonObject(with: ControlJSON.encoder.encode(result)) as! [String: Any]
                object["wall_seconds"] = wall
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
                print(String(data: data, encoding: .utf8)!)
            } else {
                print(
                    "validators \(result.validators) (\(result.down) down), clients \(result.clients), seed \(result.seed), "
                        + "links \(minLatencyMs)-\(maxLatencyMs) ms")
                print("certified   \(result.certified) of \(result.submitted) (\(result.failed) failed)")
                print(
                    String(
                        format: "finality    p50 %.0f ms  p90 %.0f ms  p99 %.0f ms (virtual)", result.finalityP50Ms,
                        result.finalityP90Ms, result.finalityP99Ms))
                print(String(format: "throughput  %.1f certified entries/s (virtual)", result.entriesPerSecond))
                print(
                    "agreement   \(result.nodesAgreeing) of \(result.nodesLive) live nodes hold the same heads and balances; "
                        + "supply \(result.supplyConserved ? "conserved" : "NOT conserved")")
                print(String(format: "wall        %.1f s", wall))
            }
            guard result.nodesAgreeing == result.nodesLive, result.supplyConserved else {
                throw CLIError("umbra sim ledger: the nodes disagree at the end")
            }
        }
    }
}
