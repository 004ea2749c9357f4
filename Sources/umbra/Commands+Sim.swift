import ArgumentParser
import Foundation
import NetSim
import Node
import UmbraCore

struct Sim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run deterministic simulations of the overlay (NetSim: virtual time, seeded links).",
        subcommands: [Handshake.self])

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
