// Issue #12.4 and #12.8 in the DHT: contacts that cannot be handed out (relay paths, port 0) never
// enter a routing table or an answer, a NODES answer with one bad contact still yields the good
// ones, a node on a public address is not steered at loopback or LAN contacts, and request ids are
// unpredictable and bound to the peer they were sent to.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Kademlia

private func contact(_ byte: UInt8, _ endpoint: Endpoint) -> NodeContact {
    NodeContact(publicKey: key(byte), endpoint: endpoint)
}

private func v4(_ value: UInt32, port: UInt16 = 4747) -> Endpoint { Endpoint(address: .v4(value), port: port) }

/// A node and one seed, both on public addresses; returns the node after it sent its first query
/// to the seed, and that query.
private func nodeQueryingSeed(own: [IPAddress], seed: NodeContact) -> (DHTNode, DHTMessage)? {
    var rng = SeededRandom(seed: 11)
    let identity = Identity.generate(using: &rng)
    var node = DHTNode(identity: identity, networkID: network, now: t0, rng: &rng)
    node.setOwnAddresses(own)
    let effects = node.bootstrap([seed], now: t0, rng: &rng)
    for case .send(let message, let to) in effects where to == seed { return (node, message) }
    return nil
}

private func queried(_ effects: [DHTEffect]) -> [Endpoint] {
    effects.compactMap { if case .send(let message, let to) = $0, message.isRequest { to.endpoint } else { nil } }
}

@Suite struct SteeringTests {
    // MARK: - Routing table and answers

    @Test func discardOnlyAddressesAndPortZeroNeverEnterTheTable() {
        var table = RoutingTable(localID: contact(1, v4(0xC633_6401)).id, now: t0)
        #expect(table.observe(contact(2, discardOnly(7)), now: t0) == .rejectedEndpoint)
        #expect(table.observe(contact(6, discardOnly(7, port: 4747)), now: t0) == .rejectedEndpoint)
        #expect(table.observe(contact(3, v4(0xC633_6403, port: 0)), now: t0) == .rejectedEndpoint)
        #expect(table.observe(contact(4, v4(0)), now: t0) == .rejectedEndpoint)
        #expect(table.observe(contact(5, v4(0xC633_6405)), now: t0) == .inserted)
        #expect(table.count == 1)
    }

    @Test func aRelayedRequesterIsNotVerifiedIntoTheTable() {
        var rng = SeededRandom(seed: 3)
        var node = DHTNode(identity: Identity.generate(using: &rng), networkID: network, now: t0, rng: &rng)
        let relayed = contact(9, v4(0xC633_6409)).publicKey
        let effects = node.handle(
            DHTMessage(id: 5, flags: .server, body: .ping), from: relayed, at: nil, now: t0, rng: &rng)
        // Answered, but no verification ping (there is no address to put in the table).
        #expect(queried(effects).isEmpty)
        #expect(effects.count == 1)
        guard case .send(let pong, let to)? = effects.first else {
            Issue.record("no answer")
            return
        }
        #expect(to.publicKey == relayed)
        #expect(pong.body == .pong(observed: .unknown), "a pong that names no address of the requester")
        #expect(node.table.count == 0)
    }

    @Test func encoderLeavesOutUnshareableContacts() throws {
        let good = contact(2, v4(0xC633_6402))
        let message = DHTMessage(
            id: 1, flags: [],
            body: .nodes(contacts: [contact(1, discardOnly(3)), good, contact(3, v4(0xC633_6403, port: 0))]))
        let decoded = try DHTMessage(decoding: message.encoded())
        #expect(decoded.body == .nodes(contacts: [good]))
    }

    @Test func aNodesAnswerWithABadContactYieldsTheGoodOnes() throws {
        // Written by hand: a peer that puts a port-0 contact between two good ones.
        let good = [contact(2, v4(0xC633_6402)), contact(4, v4(0xC633_6404))]
        var writer = ByteWriter()
        writer.write(DHTMessage.Tag.nodes.rawValue)
        writer.write(UInt64(77))
        writer.write(DHTFlags.server.rawValue)
        writer.write(UInt8(3))
        writer.write(good[0])
        writer.write(raw: contact(3, v4(0xC633_6403)).publicKey.bytes)
        writer.write(UInt8(4))
        writer.write(raw: [198, 51, 100, 3])
        writer.write(UInt16(0))
        writer.write(good[1])
        let decoded = try DHTMessage(decoding: writer.bytes)
        #expect(decoded.body == .nodes(contacts: good))
        #expect(decoded.id == 77)
    }

    // MARK: - Lookups

    @Test func aPublicNodeIsNotSteeredAtLoopbackOrLANContacts() throws {
        let seed = contact(2, v4(0xC633_6402))
        let (node, query) = try #require(nodeQueryingSeed(own: [.v4(0xCB00_7101)], seed: seed))
        var dht = node
        var rng = SeededRandom(seed: 12)
        let answer = DHTMessage(
            id: query.id, flags: .server,
            body: .nodes(contacts: [
                contact(3, v4(0x7F00_0001, port: 22)), contact(4, v4(0x0A00_0005, port: 53)),
                contact(5, v4(0xC0A8_0001)), contact(6, v4(0xA9FE_A9FE, port: 80)),
                contact(7, v4(0xE000_00FB)), contact(8, v4(0xC633_6408)),
            ]))
        let effects = dht.handle(answer, from: seed, now: t0 + .milliseconds(20), rng: &rng)
        #expect(queried(effects) == [v4(0xC633_6408)])
    }

    @Test func aLoopbackClusterStillFindsItsPeers() throws {
        let seed = contact(2, v4(0x7F00_0001, port: 5000))
        let (node, query) = try #require(nodeQueryingSeed(own: [], seed: seed))
        var dht = node
        var rng = SeededRandom(seed: 13)
        let peers = (3...5).map { contact(UInt8($0), v4(0x7F00_0001, port: 5000 + UInt16($0))) }
        let answer = DHTMessage(id: query.id, flags: .server, body: .nodes(contacts: peers))
        let effects = dht.handle(answer, from: seed, now: t0 + .milliseconds(20), rng: &rng)
        #expect(Set(queried(effects)) == Set(peers.map(\.endpoint)))
    }

    @Test func aLANNodeDialsContactsOfItsOwnNetworkOnly() throws {
        let seed = contact(2, v4(0x0A00_0002))
        let (node, query) = try #require(nodeQueryingSeed(own: [.v4(0x0A00_0001)], seed: seed))
        var dht = node
        var rng = SeededRandom(seed: 14)
        let answer = DHTMessage(
            id: query.id, flags: .server,
            body: .nodes(contacts: [
                contact(3, v4(0x0A00_0003)), contact(4, v4(0x0A07_0004)), contact(5, v4(0x7F00_0001)),
            ]))
        let effects = dht.handle(answer, from: seed, now: t0 + .milliseconds(20), rng: &rng)
        #expect(queried(effects) == [v4(0x0A00_0003)])
    }

    // MARK: - Request ids

    @Test func requestIdsAreNotSequential() {
        var rng = SeededRandom(seed: 21)
        var node = DHTNode(identity: Identity.generate(using: &rng), networkID: network, now: t0, rng: &rng)
        let ids = (0..<16).flatMap { number -> [UInt64] in
            node.ping(contact(UInt8(10 + number), v4(0xC633_6400 | UInt32(10 + number))), now: t0).compactMap {
                if case .send(let message, _) = $0 { message.id } else { nil }
            }
        }
        #expect(ids.count == 16)
        #expect(Set(ids).count == 16)
        let steps = zip(ids, ids.dropFirst()).filter { $1 &- $0 == 1 }.count
        #expect(steps == 0, "consecutive ids: \(ids)")
    }

    @Test func requestIdsReplayForASeed() {
        func firstID() -> UInt64? {
            var rng = SeededRandom(seed: 22)
            var node = DHTNode(identity: Identity.generate(using: &rng), networkID: network, now: t0, rng: &rng)
            for case .send(let message, _) in node.ping(contact(9, v4(0xC633_6409)), now: t0) { return message.id }
            return nil
        }
        #expect(firstID() != nil)
        #expect(firstID() == firstID())
    }

    @Test func anAnswerFromAnotherPeerWithTheRightIdIsIgnored() throws {
        let seed = contact(2, v4(0xC633_6402))
        let (node, query) = try #require(nodeQueryingSeed(own: [.v4(0xCB00_7101)], seed: seed))
        var dht = node
        var rng = SeededRandom(seed: 15)
        let intruder = contact(3, v4(0xC633_6403))
        let answer = DHTMessage(id: query.id, flags: .server, body: .nodes(contacts: [contact(8, v4(0xC633_6408))]))
        let effects = dht.handle(answer, from: intruder, now: t0 + .milliseconds(20), rng: &rng)
        #expect(queried(effects).isEmpty)
        #expect(dht.counters.unexpectedResponses == 1)
    }
}
