import Kademlia
import NetSim
import Node
import Relay
import Sessions
import Testing
import UmbraCore
import UmbraTestKit

/// A small network with NAT boxes: node 0 relays, node 1 is a plain public node (both forced
/// public: too few nodes for dial-backs by strangers), nodes 2 and 3 sit behind endpoint-independent
/// NATs, nodes 4 and 5 behind symmetric ones. The NATed nodes find out they are private themselves.
enum RelayScenario {
    static let relay = 0
    static let nats: [Int: NATKind] = [2: .endpointIndependent, 3: .endpointIndependent, 4: .symmetric, 5: .symmetric]

    static func make(
        seed: UInt64, relayServer: RelayServerConfig = RelayServerConfig(), tamper: Bool = false,
        configure: (Int, inout NodeConfig) -> Void = { _, _ in }
    ) -> NetSim {
        var sim = NetSim(
            seed: seed,
            link: LinkModel(minimumLatency: .milliseconds(10), maximumLatency: .milliseconds(40), lossRate: 0))
        let identities = identities(6, seed: seed ^ 0x5EED)
        var base = NodeConfig()
        base.bootstrap = [0, 1].map {
            DialTarget(publicKey: identities[$0].publicKey, endpoint: NetSim.endpoint(forNode: $0))
        }
        for index in identities.indices {
            var config = base
            if index < 2 {
                config.relay.reachabilityMode = .public
                config.relay.isRelay = index == relay
                config.relay.server = relayServer
                if tamper, index == relay { config.relay.deliverTransform = flipLastByteOfTransportData }
            } else {
                config.relay.localEndpoints = [NetSim.endpoint(forNode: index)]
            }
            configure(index, &config)
            sim.addNode(identity: identities[index], config: config, nat: nats[index])
        }
        return sim
    }

    /// A deliberately tampering relay: flips the last byte of every relayed transport datagram that
    /// carries a frame (handshakes and keepalives pass untouched).
    @Sendable static func flipLastByteOfTransportData(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.first == 4, bytes.count > 32 else { return bytes }  // 32: a keepalive (header + tag)
        var tampered = bytes
        tampered[tampered.count - 1] ^= 0x01
        return tampered
    }

    /// The record `from` would find for `to` in the DHT: what `to` publishes (its relays).
    static func record(of index: Int, in sim: NetSim) -> PeerRecordValue {
        let status = sim.instance(index).relayStatus
        return PeerRecordValue(
            endpoints: [],
            relays: status.reservations.map { NodeContact(publicKey: $0.relay.publicKey, endpoint: $0.relay.endpoint) })
    }

    /// Dials `to` from `from` and pings it; returns the nonce (the pong shows up in the trace).
    static func ping(_ from: Int, _ to: Int, in sim: inout NetSim, dial: Bool = true) -> UInt64 {
        let key = sim.instance(to).identity.publicKey
        let record = record(of: to, in: sim)
        var nonce: UInt64 = 0
        sim.perform(on: from) { node, now, rng in
            var effects = dial ? node.dial(key, record: record, now: now, rng: &rng) : []
            let (sent, pingEffects) = node.ping(key, now: now, rng: &rng)
            nonce = sent
            effects += pingEffects
            return effects
        }
        return nonce
    }

    static func ponged(_ nonce: UInt64, at node: Int, in sim: NetSim) -> Bool {
        sim.trace.contains { entry in
            if entry.node == node, case .pong(_, let n, _) = entry.event { return n == nonce }
            return false
        }
    }
}

@Suite("Relay in NetSim")
struct RelaySimTests {
    @Test(arguments: [1, 2] as [UInt64])
    func natedNodesGoPrivateAndReserveOnTheRelay(seed: UInt64) {
        var sim = RelayScenario.make(seed: seed)
        sim.run(for: .seconds(20))
        let relayKey = sim.instance(RelayScenario.relay).identity.publicKey
        for index in 2...5 {
            let status = sim.instance(index).relayStatus
            #expect(status.reachability == .private, "node \(index)")
            #expect(!status.isDHTServer, "node \(index)")
            #expect(status.reservations.contains { $0.relay.publicKey == relayKey }, "node \(index)")
        }
        #expect(sim.instance(RelayScenario.relay).relayStatus.hostedReservations.count == 4)
        // The EIM nodes learnt their mapped endpoint from their peers; the symmetric ones cannot.
        #expect(sim.instance(2).relayStatus.observedEndpoint?.address == NetSim.natAddress(forNode: 2))
        #expect(sim.instance(4).relayStatus.observedEndpoint == nil)
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func eimToEimOpensRelayedThenHolePunches(seed: UInt64) {
        var sim = RelayScenario.make(seed: seed)
        sim.run(for: .seconds(20))
        let target = sim.instance(3).identity.publicKey
        let first = RelayScenario.ping(2, 3, in: &sim)
        sim.run(for: .milliseconds(400))
        let firstAnswered = RelayScenario.ponged(first, at: 2, in: sim)
        #expect(firstAnswered, "the first ping is answered (through the relay)")
        sim.run(for: .seconds(3))
        let path = sim.instance(2).sessionPath(of: target)
        #expect(path?.path == .holePunched)
        #expect(path?.endpoint?.address == NetSim.natAddress(forNode: 3))
        #expect(sim.instance(3).sessionPath(of: sim.instance(2).identity.publicKey)?.path == .holePunched)
        let second = RelayScenario.ping(2, 3, in: &sim, dial: false)
        let relayed = sim.instance(RelayScenario.relay).relayStatus.serverCounters.datagramsRelayed
        sim.run(for: .milliseconds(400))
        let secondAnswered = RelayScenario.ponged(second, at: 2, in: sim)
        #expect(secondAnswered)
        #expect(
            sim.instance(RelayScenario.relay).relayStatus.serverCounters.datagramsRelayed == relayed,
            "a hole-punched session no longer uses the relay")
        #expect(sim.instance(RelayScenario.relay).relayStatus.circuits.isEmpty, "the circuit was closed")
    }

    @Test func symmetricNATStaysRelayedAndWorks() {
        var sim = RelayScenario.make(seed: 7)
        sim.run(for: .seconds(20))
        let first = RelayScenario.ping(4, 2, in: &sim)
        sim.run(for: .seconds(10))
        let firstAnswered = RelayScenario.ponged(first, at: 4, in: sim)
        #expect(firstAnswered)
        let path = sim.instance(4).sessionPath(of: sim.instance(2).identity.publicKey)
        #expect(path?.path == .relayed)
        #expect((path?.punchAttempts ?? 0) >= 3, "it kept trying to upgrade")
        let second = RelayScenario.ping(4, 2, in: &sim, dial: false)
        sim.run(for: .milliseconds(500))
        let secondAnswered = RelayScenario.ponged(second, at: 4, in: sim)
        #expect(secondAnswered)
    }

    @Test func tamperingRelayCausesAuthenticationFailureNotCorruptData() {
        var sim = RelayScenario.make(seed: 3, tamper: true)
        sim.run(for: .seconds(20))
        let nonce = RelayScenario.ping(4, 5, in: &sim)
        sim.run(for: .seconds(2))
        let ponged = RelayScenario.ponged(nonce, at: 4, in: sim)
        #expect(!ponged)
        let dropped = sim.instance(5).sessions.counters.dropped[.authenticationFailed] ?? 0
        #expect(dropped >= 1, "the flipped byte fails the AEAD check at the receiver")
        #expect(sim.instance(5).counters.framesRejected == 0, "no corrupted frame was handed up")
        #expect(sim.instance(5).sessionPath(of: sim.instance(4).identity.publicKey)?.path == .relayed)
        let authenticated = sim.instance(5).sessions.snapshot(of: sim.instance(4).identity.publicKey)?.bytesReceived
        #expect(authenticated == 0, "not one byte from node 4 was accepted as authentic")
    }

    @Test func circuitOverItsByteLimitIsCutWithItsCodeOthersUnaffected() {
        var server = RelayServerConfig()
        server.circuitByteLimit = 1500
        var sim = RelayScenario.make(seed: 5, relayServer: server)
        sim.run(for: .seconds(20))
        for _ in 0..<12 {
            _ = RelayScenario.ping(4, 2, in: &sim)
            sim.run(for: .milliseconds(300))
        }
        let relayStatus = sim.instance(RelayScenario.relay).relayStatus
        #expect((relayStatus.serverCounters.circuitsClosed[.overByteLimit] ?? 0) >= 1)
        #expect((sim.instance(4).relayStatus.counters.circuitsEnded[.overByteLimit] ?? 0) >= 1)
        #expect((sim.instance(2).relayStatus.counters.circuitsEnded[.overByteLimit] ?? 0) >= 1)
        // Another circuit through the same relay works.
        let other = RelayScenario.ping(5, 3, in: &sim)
        sim.run(for: .seconds(1))
        let otherAnswered = RelayScenario.ponged(other, at: 5, in: sim)
        #expect(otherAnswered)
        #expect((sim.instance(5).relayStatus.counters.circuitsEnded[.overByteLimit] ?? 0) == 0)
    }

    @Test func restartedRelayGetsItsReservationsBackWithinSeconds() {
        var sim = RelayScenario.make(seed: 11)
        sim.run(for: .seconds(20))
        let relayKey = sim.instance(RelayScenario.relay).identity.publicKey
        sim.kill(RelayScenario.relay)
        sim.run(for: .seconds(1))
        sim.restart(RelayScenario.relay)
        #expect(sim.instance(RelayScenario.relay).relayStatus.hostedReservations.isEmpty)
        sim.run(for: .seconds(10))
        #expect(sim.instance(RelayScenario.relay).relayStatus.hostedReservations.count == 4)
        for index in 2...5 {
            #expect(
                sim.instance(index).relayStatus.reservations.contains {
                    $0.relay.publicKey == relayKey && $0.isConnected
                })
        }
        let nonce = RelayScenario.ping(4, 2, in: &sim)
        sim.run(for: .seconds(1))
        let nonceAnswered = RelayScenario.ponged(nonce, at: 4, in: sim)
        #expect(nonceAnswered)
    }
}
