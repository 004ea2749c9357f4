// The session boundary's `PeerPath` at the node: a send along a relayed path leaves as a relay
// frame to that path's relay and never as a socket send of its own; a direct one goes to the
// socket as it is.

import NetSim
import Sessions
import Testing
import UmbraCore
import UmbraTestKit

@testable import Node

@Suite("Node: session paths at the socket")
struct PeerPathNodeTests {

    @Test func aSendAlongARelayedPathLeavesAsARelayFrameNeverAsASocketSend() throws {
        // Node 4 sits behind a symmetric NAT: its session with node 2 stays relayed through node 0.
        var sim = RelayScenario.make(seed: 7)
        sim.run(for: .seconds(20))
        _ = RelayScenario.ping(4, 2, in: &sim)
        sim.run(for: .seconds(2))
        let peer = sim.instance(2).identity.publicKey
        let relayKey = sim.instance(RelayScenario.relay).identity.publicKey
        let path = try #require(sim.instance(4).sessions.path(of: peer))
        #expect(path.isRelayed, "the scenario's session is relayed: \(path)")
        #expect(sim.instance(4).sessionPath(of: peer)?.path == .relayed)
        let relayEndpoint = try #require(sim.instance(4).sessions.path(of: relayKey)?.directEndpoint)
        let marker = [UInt8](repeating: 0xEE, count: 48)
        sim.perform(on: 4) { node, now, rng in
            let before = node.relayStatus.counters.datagramsForwarded
            var effects: [NodeEffect] = []
            node.absorb([.send(marker, to: path)], now: now, rng: &rng, into: &effects)
            let sockets = effects.compactMap { effect -> (bytes: [UInt8], to: Endpoint)? in
                if case .send(let bytes, let to) = effect { (bytes, to) } else { nil }
            }
            #expect(sockets.count == 1, "one sealed relay frame: \(sockets.map(\.to))")
            #expect(sockets.allSatisfy { $0.to == relayEndpoint }, "only towards the relay")
            #expect(!sockets.contains { $0.bytes == marker }, "the bytes never go to a socket as they are")
            #expect(node.relayStatus.counters.datagramsForwarded == before + 1)
            // A direct path goes to the socket unchanged.
            var direct: [NodeEffect] = []
            node.absorb([.send(marker, to: .direct(relayEndpoint))], now: now, rng: &rng, into: &direct)
            #expect(direct == [.send(marker, to: relayEndpoint)])
            return effects
        }
        // A relayed path whose id the node does not know is dropped, not sent anywhere.
        sim.perform(on: 4) { node, now, rng in
            let before = node.relayStatus.counters.forwardsDropped
            var effects: [NodeEffect] = []
            node.absorb([.send(marker, to: .relayed(RelayPathID(UInt32.max)))], now: now, rng: &rng, into: &effects)
            #expect(effects.isEmpty)
            #expect(node.relayStatus.counters.forwardsDropped == before + 1)
            return effects
        }
    }
}
