import Kademlia
import Node
import Sessions
import Testing
import UmbraCore

/// Issue #12, item 1, through the whole node: a peer with a session sends requests with a victim's
/// source address; the node's answers reach the victim only within 3x what came "from" it.
@Suite("Node: no reflection after roaming")
struct PathValidationNodeTests {
    @Test func requestsFromASpoofedSourceGetAtMostThreeTimesTheirBytesBack() throws {
        var rng = SeededRandom(seed: 12)
        var now = Instant(nanoseconds: 1_000_000_000_000)
        let nodeEndpoint = Endpoint(address: .v4(0x7F00_0001), port: 4747)
        let attackerEndpoint = Endpoint(address: .v4(0x7F00_0001), port: 5000)
        let victim = Endpoint(address: .v4(0xC633_6401), port: 53)
        var node = NodeInstance(identity: Identity.generate(using: &rng), config: NodeConfig(), now: now, rng: &rng)
        var attacker = SessionManager(identity: Identity.generate(using: &rng))
        let nodeKey = node.identity.publicKey
        // One honest handshake.
        let initiation = try #require(
            firstDatagram(attacker.connect(nodeKey, endpoint: nodeEndpoint, now: now, rng: &rng)))
        let response = try #require(
            node.receive(initiation, from: attackerEndpoint, now: now, rng: &rng).compactMap(\.datagram).first)
        let confirm = try #require(
            firstDatagram(attacker.receive(response, from: .direct(nodeEndpoint), now: now, rng: &rng)))
        _ = node.receive(confirm, from: attackerEndpoint, now: now, rng: &rng)
        #expect(node.sessions.path(of: attacker.identity.publicKey) == .direct(attackerEndpoint))
        // Then requests "from" the victim: pings and DHT lookups.
        var received = 0
        var reflected = 0
        for round in 0..<20 {
            now = now + .milliseconds(100)
            let frame =
                round % 2 == 0
                ? Frame.ping(nonce: UInt64(round)).encoded()
                : Frame.dht(
                    DHTMessage(id: UInt64(round), flags: [], body: .findNode(target: Key256.random(using: &rng)))
                ).encoded()
            let datagram = try #require(firstDatagram(attacker.send(frame, to: nodeKey, now: now, rng: &rng)))
            received += datagram.count
            for case .send(let bytes, let to) in node.receive(datagram, from: victim, now: now, rng: &rng)
            where to == victim {
                reflected += bytes.count
            }
            #expect(reflected <= 3 * received, "round \(round): \(reflected) bytes for \(received)")
        }
        #expect(node.sessions.path(of: attacker.identity.publicKey) == .direct(attackerEndpoint))
    }
}

private func firstDatagram(_ effects: [SessionEffect]) -> [UInt8]? {
    for case .send(let bytes, _) in effects { return bytes }
    return nil
}

extension NodeEffect {
    fileprivate var datagram: [UInt8]? { if case .send(let bytes, _) = self { bytes } else { nil } }
}
