import NetSim
import Node
import Relay
import Testing
import UmbraCore
import UmbraTestKit

/// The reachability rule with default flags (no forced mode anywhere) in each kind of topology:
/// public nodes in front of NATed homes, homes behind endpoint-independent and symmetric NATs, and
/// nodes on one LAN. NetSim gives un-NATed nodes 10.0.0.N and NAT boxes 198.19.0.N, so a network
/// with homes has global reporters (the boxes) and one without is a LAN.
enum ReachabilityScenario {
    static func make(seed: UInt64, nats: [NATKind?], relays: Set<Int> = [0], bootstrap: [Int] = [0]) -> NetSim {
        var sim = NetSim(
            seed: seed,
            link: LinkModel(minimumLatency: .milliseconds(5), maximumLatency: .milliseconds(30), lossRate: 0))
        let identities = identities(nats.count, seed: seed ^ 0xA11CE)
        var base = NodeConfig()
        base.bootstrap = bootstrap.map {
            DialTarget(publicKey: identities[$0].publicKey, endpoint: NetSim.endpoint(forNode: $0))
        }
        for index in nats.indices {
            var config = base
            config.relay.isRelay = relays.contains(index)
            sim.addNode(identity: identities[index], config: config, nat: nats[index])
        }
        return sim
    }
}

@Suite("Reachability in NetSim, default flags")
struct ReachabilitySimTests {
    /// One public relay (everyone's bootstrap, the DHT's only server) and homes behind EIM NATs: the
    /// relay is public by its own address, the homes private, and they reserve on the relay it told
    /// them of within seconds.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func publicRelayAndEIMHomes(seed: UInt64) {
        var sim = ReachabilityScenario.make(seed: seed, nats: [nil, .endpointIndependent, .endpointIndependent])
        sim.run(for: .seconds(12))
        let relay = sim.instance(0).relayStatus
        #expect(relay.reachability == .public(NetSim.endpoint(forNode: 0)))
        #expect(relay.reachabilityBasis == .ownAddress)
        #expect(relay.isDHTServer)
        let relayKey = sim.instance(0).identity.publicKey
        for home in 1...2 {
            let status = sim.instance(home).relayStatus
            #expect(status.reachability == .private, "home \(home)")
            #expect(!status.isDHTServer, "home \(home)")
            #expect(status.reservations.contains { $0.relay.publicKey == relayKey }, "home \(home) reserved")
        }
    }

    /// Behind symmetric NATs every peer sees another port: nothing agrees, the node is private.
    @Test(arguments: [4, 5] as [UInt64])
    func symmetricHomesArePrivate(seed: UInt64) {
        var sim = ReachabilityScenario.make(
            seed: seed, nats: [nil, nil, .symmetric, .symmetric], relays: [0], bootstrap: [0, 1])
        sim.run(for: .seconds(15))
        for server in 0...1 {
            #expect(sim.instance(server).relayStatus.reachability == .public(NetSim.endpoint(forNode: server)))
        }
        for home in 2...3 {
            let status = sim.instance(home).relayStatus
            #expect(status.reachability == .private, "home \(home)")
            #expect(status.observedEndpoint == nil, "home \(home): no agreed endpoint")
            #expect(!status.reservations.isEmpty, "home \(home) reserved")
        }
    }

    /// Two public nodes and a mix of homes: the public ones serve the DHT and each holds the other.
    @Test(arguments: [6, 7] as [UInt64])
    func twoPublicNodesAndMixedHomes(seed: UInt64) {
        var sim = ReachabilityScenario.make(
            seed: seed, nats: [nil, nil, .endpointIndependent, .symmetric], relays: [0], bootstrap: [0, 1])
        sim.run(for: .seconds(12))
        for server in 0...1 {
            let instance = sim.instance(server)
            #expect(instance.relayStatus.isDHTServer, "node \(server)")
            #expect(instance.dht.table.contains(sim.instance(1 - server).identity.nodeID), "node \(server)'s table")
        }
        for home in 2...3 { #expect(sim.instance(home).relayStatus.reachability == .private, "home \(home)") }
    }

    /// Nodes on one LAN (no global peer anywhere): each is reachable at its own address on it.
    @Test(arguments: [8, 9] as [UInt64])
    func oneLAN(seed: UInt64) {
        var sim = ReachabilityScenario.make(seed: seed, nats: [nil, nil, nil, nil], relays: [])
        sim.run(for: .seconds(8))
        for index in 0..<4 {
            let status = sim.instance(index).relayStatus
            #expect(status.reachability == .public(NetSim.endpoint(forNode: index)), "node \(index)")
            #expect(status.reachabilityBasis == .ownAddress, "node \(index)")
            #expect(status.isDHTServer, "node \(index)")
            #expect(sim.instance(index).dht.table.count == 3, "node \(index): every other node in the table")
        }
    }
}
