// Issue #12.4 at the node level, in NetSim: a session peer that is not our relay cannot feed us
// `deliver`s (no "relayed" session, no relay path, nothing handed to the session layer), nor end our
// circuits; and a relayed peer cannot aim our hole-punch bursts at loopback or a LAN we are not on,
// while real relaying and punching keep working.

import Kademlia
import NetSim
import Relay
import Sessions
import Testing
import UmbraCore
import UmbraTestKit

@testable import Node

@Suite("Forged relay frames in NetSim")
struct ForgedRelayTests {

    @Test(arguments: [1, 2] as [UInt64])
    func aPeerThatIsNotOurRelayCannotDeliver(seed: UInt64) {
        var sim = RelayScenario.make(seed: seed)
        sim.run(for: .seconds(20))
        let attacker = 1  // a public node with a session to everyone, not a relay
        let victim = 2  // NATed, reserved on node 0
        let victimKey = sim.instance(victim).identity.publicKey
        #expect(
            sim.instance(attacker).peers.contains {
                $0.session.publicKey == victimKey && $0.session.state == .established
            })
        let before = sim.instance(victim).relayStatus.counters
        let sessionsBefore = sim.instance(victim).peers.count
        sim.perform(on: attacker) { node, now, rng in
            var effects: [NodeEffect] = []
            for byte in 1...8 as ClosedRange<UInt8> {
                node.sendFrame(
                    .relay, RelayMessage.deliver(peer: key(byte), bytes: [1, 2, 3, byte]).encoded(), to: victimKey,
                    now: now, rng: &rng, into: &effects)
            }
            node.sendFrame(
                .relay, RelayMessage.circuitStatus(peer: key(9), code: .targetGone).encoded(), to: victimKey,
                now: now, rng: &rng, into: &effects)
            return effects
        }
        sim.run(for: .seconds(1))
        let after = sim.instance(victim).relayStatus.counters
        #expect(after.deliversRefused == before.deliversRefused + 8)
        #expect(after.datagramsDelivered == before.datagramsDelivered, "nothing reached the session layer")
        #expect(after.relayNoticesRefused == before.relayNoticesRefused + 1)
        #expect(sim.instance(victim).relayedSessions.isEmpty)
        #expect(sim.instance(victim).peers.count == sessionsBefore)
    }

    @Test(arguments: [1, 2] as [UInt64])
    func holePunchBurstsGoOnlyToAdmissibleCandidates(seed: UInt64) {
        // Node 3 lists loopback and a LAN node 2 is not on among its candidates.
        var sim = RelayScenario.make(seed: seed) { index, config in
            if index == 3 {
                config.relay.localEndpoints = [
                    Endpoint(address: .v4(0x7F00_0001), port: 22), Endpoint(address: .v4(0xC0A8_4D01), port: 53),
                ]
            }
        }
        sim.run(for: .seconds(20))
        _ = RelayScenario.ping(2, 3, in: &sim)
        sim.run(for: .seconds(4))
        let target = sim.instance(3).identity.publicKey
        #expect(sim.instance(2).sessionPath(of: target)?.path == .holePunched, "punching still works")
        let targets = sim.instance(2).relay.links[target]?.probeTargets ?? []
        #expect(!targets.isEmpty)
        #expect(!targets.contains { $0.address.isLoopback || $0.address == .v4(0xC0A8_4D01) }, "\(targets)")
        #expect(sim.instance(2).relayStatus.counters.punchTargetsRefused >= 2)
    }

    @Test func aRelayedPeerCannotMakeUsPunchWithoutLimit() {
        // Node 4 sits behind a symmetric NAT, so its session with node 2 stays relayed; as the
        // initiator it may ask node 2 to punch, and here it asks again and again, naming a victim.
        var sim = RelayScenario.make(seed: 7)
        sim.run(for: .seconds(20))
        _ = RelayScenario.ping(4, 2, in: &sim)
        sim.run(for: .seconds(2))
        let responderKey = sim.instance(2).identity.publicKey
        #expect(sim.instance(4).sessionPath(of: responderKey)?.path == .relayed)
        let victim = Endpoint(address: .v4(0xC633_6409), port: 4000)
        let probesBefore = sim.instance(2).relayStatus.counters.punchProbesSent
        for nonce in 1_000...1_019 as ClosedRange<UInt64> {
            for message in [RelayMessage.punchConnect(nonce: nonce, candidates: [victim]), .punchSync(nonce: nonce)] {
                sim.perform(on: 4) { node, now, rng in
                    var effects: [NodeEffect] = []
                    node.sendFrame(.relay, message.encoded(), to: responderKey, now: now, rng: &rng, into: &effects)
                    return effects
                }
                sim.run(for: .milliseconds(150))
            }
        }
        sim.run(for: .seconds(1))
        let counters = sim.instance(2).relayStatus.counters
        let punch = HolePunchConfig()
        #expect(counters.punchesLimited > 0)
        // Every allowed burst is `punchProbes` probes to at most `maximumTargets` targets.
        let bursts = (counters.punchProbesSent - probesBefore) / UInt64(NodeConfig().relay.punchProbes)
        #expect(bursts <= UInt64(punch.maximumPunchesPerPeer), "\(bursts) bursts in one window")
    }
}
