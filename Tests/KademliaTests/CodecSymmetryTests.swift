// Encoder/decoder symmetry of every DHT message kind, property-style over seeded random messages
// (issue #12: a port-0 contact the encoder wrote and every decoder refused poisoned NODES answers).
// For any message the encoder accepts, decode(encode(m)) is m without its unshareable contacts, and
// that form is a fixed point of encode∘decode.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Kademlia

/// Endpoints of every kind a contact list may meet: good ones and ones nobody may dial.
private func randomEndpoint(_ rng: inout SeededRandom) -> Endpoint {
    let port = UInt16.random(in: 1...UInt16.max, using: &rng)
    switch Int.random(in: 0..<9, using: &rng) {
    case 0: return Endpoint(address: .v4(0xC633_6400 | UInt32.random(in: 1...254, using: &rng)), port: port)
    case 1: return Endpoint(address: .v6(high: 0x2001_0DB8_0000_0000 | rng.next() >> 32, low: rng.next()), port: port)
    case 2: return Endpoint(address: .v4(0x7F00_0001), port: port)
    case 3: return Endpoint(address: .v4(0x0A00_0000 | UInt32.random(in: 1...0xFFFF, using: &rng)), port: port)
    case 4: return Endpoint(address: .v4(0xCB00_7101), port: 0)
    case 5: return discardOnly(rng.next(), port: UInt16.random(in: 0...1, using: &rng) * port)
    case 6: return Endpoint(address: .v4(0), port: port)
    case 7: return Endpoint(address: .v6(high: 0xFF02_0000_0000_0000, low: 1), port: port)
    default: return Endpoint(address: .v4(UInt32.random(in: 0...UInt32.max, using: &rng)), port: port)
    }
}

private func randomContact(_ rng: inout SeededRandom) -> NodeContact {
    NodeContact(publicKey: randomKey(&rng), endpoint: randomEndpoint(&rng))
}

private let records: [SignedRecord] = {
    var rng = SeededRandom(seed: 99)
    let expiry = Instant(nanoseconds: 1_800_000_000_000_000_000)
    return (0..<3).map { number in
        SignedRecord.peer(
            PeerRecordValue(endpoints: [Endpoint(address: .v4(0xC633_6400 | UInt32(number + 1)), port: 4747)]),
            seq: UInt64(number + 1), expiresAt: expiry, identity: Identity.generate(using: &rng), networkID: network)
    }
}()

private func randomMessage(_ rng: inout SeededRandom) -> DHTMessage {
    let id = rng.next()
    let flags: DHTFlags = Bool.random(using: &rng) ? .server : []
    let body: DHTMessage.Body
    switch Int.random(in: 0..<8, using: &rng) {
    case 0: body = .ping
    case 1:
        var observed = randomEndpoint(&rng)
        if observed.port == 0 { observed.port = 1 }
        body = .pong(observed: observed)
    case 2: body = .findNode(target: Key256.random(using: &rng))
    case 3: body = .nodes(contacts: (0..<Int.random(in: 0...20, using: &rng)).map { _ in randomContact(&rng) })
    case 4: body = .findValue(key: Key256.random(using: &rng), page: UInt16.random(in: 0...UInt16.max, using: &rng))
    case 5:
        let held = Array(records.prefix(Int.random(in: 0...1, using: &rng)))
        body = .values(
            page: UInt16.random(in: 0...7, using: &rng), pages: UInt16.random(in: 0...8, using: &rng), records: held,
            contacts: (0..<Int.random(in: 0...(held.isEmpty ? 20 : 4), using: &rng)).map { _ in randomContact(&rng) })
    case 6: body = .store(record: records[Int.random(in: 0..<records.count, using: &rng)])
    default: body = .stored(status: StoreStatus.allCases[Int.random(in: 0..<StoreStatus.allCases.count, using: &rng)])
    }
    return DHTMessage(id: id, flags: flags, body: body)
}

/// What the decoder gives back for `message`: its contact lists without unshareable contacts.
private func shareable(_ message: DHTMessage) -> DHTMessage {
    var expected = message
    switch message.body {
    case .nodes(let contacts): expected.body = .nodes(contacts: contacts.filter(\.isShareable))
    case .values(let page, let pages, let records, let contacts):
        expected.body = .values(page: page, pages: pages, records: records, contacts: contacts.filter(\.isShareable))
    default: break
    }
    return expected
}

@Suite struct CodecSymmetryTests {
    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func everyMessageKindRoundTrips(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        var kinds = Set<UInt8>()
        var unshareableSeen = 0
        for _ in 0..<500 {
            let message = randomMessage(&rng)
            kinds.insert(message.tag.rawValue)
            let bytes = message.encoded()
            #expect(bytes.count <= DHTMessage.maximumSize)
            let decoded = try DHTMessage(decoding: bytes)
            #expect(decoded == shareable(message))
            #expect(decoded.encoded() == (shareable(message)).encoded())
            #expect(try DHTMessage(decoding: decoded.encoded()) == decoded)
            if decoded != message { unshareableSeen += 1 }
        }
        #expect(kinds.count == 8, "every message kind was generated")
        #expect(unshareableSeen > 0, "unshareable contacts were generated and left out")
    }

    @Test func noShareableContactIsRefusedByTheDecoder() throws {
        var rng = SeededRandom(seed: 7)
        for _ in 0..<2000 {
            let contact = randomContact(&rng)
            let bytes = DHTMessage(id: 1, flags: [], body: .nodes(contacts: [contact])).encoded()
            let decoded = try DHTMessage(decoding: bytes)
            #expect(decoded.body == .nodes(contacts: contact.isShareable ? [contact] : []))
        }
    }
}
