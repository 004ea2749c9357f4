// The ledger at a scale a test would not run (`umbra sim ledger`, docs/benchmarks.md): V validators
// and C clients, full nodes in NetSim with simulated disks, each client making E transfers one after
// another through `NodeCommand.ledger` (the node drafts, the committee certifies). Some validators
// may be down from the start (f of them). Measures finality (submit to certificate at the client,
// virtual time), throughput, and checks at the end that every node holds the same heads and balances
// and that supply is conserved.

import Ledger
import Node
import UmbraCore

public struct LedgerSimConfig: Sendable {
    public var validators = 4
    public var clients = 10
    public var entriesPerClient = 10
    /// Validators killed before the first entry (the committee must still certify: down < n/3).
    public var down = 0
    public var seed: UInt64 = 1
    public var link = LinkModel(minimumLatency: .milliseconds(20), maximumLatency: .milliseconds(50), lossRate: 0)
    public var warmUp: Duration = .seconds(15)
    public init() {}
}

public struct LedgerSimResult: Sendable, Codable {
    public var validators: Int
    public var clients: Int
    public var down: Int
    public var seed: UInt64
    public var submitted: Int
    public var certified: Int
    public var failed: Int
    public var finalityP50Ms: Double
    public var finalityP90Ms: Double
    public var finalityP99Ms: Double
    /// Certified entries per second of virtual time, from the first submit to the last certificate.
    public var entriesPerSecond: Double
    /// Live nodes whose heads and balances equal the first client's at the end.
    public var nodesAgreeing: Int
    public var nodesLive: Int
    public var supplyConserved: Bool
}

public struct LedgerSim {
    public let config: LedgerSimConfig

    public init(config: LedgerSimConfig) { self.config = config }

    public func run() -> LedgerSimResult {
        var rng = SeededRandom(seed: config.seed ^ 0x1ED6_E45)
        let identities = (0..<(config.validators + config.clients)).map { _ in Identity.generate(using: &rng) }
        let validators = Array(identities.prefix(config.validators))
        let clients = Array(identities.dropFirst(config.validators))
        let genesis = GenesisParameters(
            network: "sim-ledger",
            allocations: clients.map { Allocation(recipient: $0.publicKey, amount: 1_000_000) },
            committee: validators.map { CommitteeMember(identity: $0.publicKey, stake: 100) },
            minimumBonds: MinimumBonds(provider: 10, relay: 10, validator: 50), unbondingDelay: .seconds(600),
            evidenceLifetime: .seconds(600), committeeSize: max(4, config.validators), reporterRewardPPM: 100_000)
        var sim = NetSim(seed: config.seed, link: config.link)
        for (index, identity) in identities.enumerated() {
            var node = NodeConfig()
            node.storage.isEnabled = true
            node.ledger.genesis = genesis
            node.ledger.isValidator = index < config.validators
            node.bootstrap = (0..<min(3, config.validators)).filter { $0 != index }.map {
                DialTarget(publicKey: identities[$0].publicKey, endpoint: NetSim.endpoint(forNode: $0))
            }
            sim.addNode(identity: identity, config: node)
        }
        sim.run(for: config.warmUp)
        for index in 0..<min(config.down, config.validators) { sim.kill(config.validators - 1 - index) }

        // Each client transfers 1 to the next client, one entry after another.
        var started: [Int: Instant] = [:]
        var made = Array(repeating: 0, count: config.clients)
        var nextID: UInt64 = 1
        var pending: [Int: CommandID] = [:]
        var finality: [Double] = []
        var failed = 0
        let first = sim.now
        var last = sim.now
        func submit(_ client: Int, _ sim: inout NetSim) {
            let id = CommandID(nextID)
            nextID += 1
            let recipient = clients[(client + 1) % clients.count].publicKey
            pending[client] = id
            started[client] = sim.now
            made[client] += 1
            sim.submit(.ledger(.transfer(to: recipient, amount: 1)), id: id, on: config.validators + client)
        }
        for client in 0..<config.clients { submit(client, &sim) }
        let limit = sim.now + .seconds(Int64(60 + config.entriesPerClient * 15))
        while !pending.isEmpty, sim.now < limit {
            sim.run(for: .milliseconds(1))
            for client in pending.keys.sorted() {
                guard let id = pending[client], let result = sim.completion(of: id, on: config.validators + client)
                else { continue }
                pending[client] = nil
                if case .ledgerCertified = result {
                    finality.append(sim.now.since(started[client]!).seconds * 1000)
                    last = sim.now
                } else {
                    failed += 1
                }
                if made[client] < config.entriesPerClient { submit(client, &sim) }
            }
        }
        sim.run(for: .seconds(3))

        let live = (0..<sim.nodeCount).filter { index in
            !(index >= config.validators - min(config.down, config.validators) && index < config.validators)
        }
        let reference = sim.instance(config.validators).ledger.state
        let agreeing = live.filter { index in
            guard let state = sim.instance(index).ledger.state, let reference else { return false }
            return clients.allSatisfy {
                state.accounts[$0.publicKey]?.head == reference.accounts[$0.publicKey]?.head
                    && state.balance(of: $0.publicKey) == reference.balance(of: $0.publicKey)
            }
        }.count
        let conserved = live.allSatisfy { index in
            guard let state = sim.instance(index).ledger.state else { return false }
            return state.totalHeld &+ state.burned == state.supply
        }
        finality.sort()
        let span = last.since(first).seconds
        return LedgerSimResult(
            validators: config.validators, clients: config.clients, down: config.down, seed: config.seed,
            submitted: Int(nextID - 1), certified: finality.count, failed: failed,
            finalityP50Ms: percentile(finality, 0.50) ?? 0, finalityP90Ms: percentile(finality, 0.90) ?? 0,
            finalityP99Ms: percentile(finality, 0.99) ?? 0,
            entriesPerSecond: span > 0 ? Double(finality.count) / span : 0, nodesAgreeing: agreeing,
            nodesLive: live.count, supplyConserved: conserved)
    }
}
