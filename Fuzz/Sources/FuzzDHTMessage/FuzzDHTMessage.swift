// DHT messages from untrusted bytes: a decoded message re-encodes to its input (less any skipped
// unshareable contacts) and respects every limit (contacts, records, size); a DHT node handed the
// message from a peer never traps, and whatever it answers fits one datagram and decodes again;
// errors are short.

import FuzzSupport
import Kademlia
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

private let identity: Identity = {
    do { return try Identity(seed: [UInt8](repeating: 7, count: Identity.seedByteCount)) } catch {
        fatalError("\(error)")
    }
}()

private let peer: NodeContact = {
    do {
        let key = try PublicKey(bytes: [UInt8](repeating: 9, count: PublicKey.byteCount))
        return NodeContact(publicKey: key, endpoint: Endpoint(address: .v4(0xC633_6401), port: 4747))
    } catch {
        fatalError("\(error)")
    }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)
    let message: DHTMessage
    do throws(DecodeError) {
        message = try DHTMessage(decoding: input)
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
        return 0
    }
    // The decoder skips well-formed contacts nobody may dial (port 0, relay paths): then the message
    // re-encodes shorter, and that form is a fixed point. Otherwise it re-encodes to exactly its input.
    let reencoded = message.encoded()
    require(reencoded == input || reencoded.count < input.count, "\(message.tag) re-encodes differently")
    require((try? DHTMessage(decoding: reencoded)) == message, "\(message.tag) re-encodes to another message")
    require(input.count <= DHTMessage.maximumSize, "accepted \(input.count) bytes")
    switch message.body {
    case .nodes(let contacts):
        require(contacts.count <= DHTMessage.maximumContacts, "\(contacts.count) contacts")
    case .values(_, _, let records, let contacts):
        require(contacts.count <= DHTMessage.maximumContacts, "\(contacts.count) contacts")
        require(records.count <= DHTMessage.maximumRecords, "\(records.count) records")
    default:
        break
    }

    // Handled by a node, as a request or as an (unexpected) response: never a trap, and any answer
    // is a well-formed message that fits a datagram.
    var rng = SeededRandom(seed: UInt64(input.count))
    let now = Instant(nanoseconds: 1_700_000_000_000_000_000)
    var node = DHTNode(identity: identity, networkID: "fuzz", now: now, rng: &rng)
    for effect in node.handle(message, from: peer, now: now, rng: &rng) {
        guard case .send(let reply, _) = effect else { continue }
        let bytes = reply.encoded()
        require(bytes.count <= DHTMessage.maximumSize, "a \(reply.tag) answer of \(bytes.count) bytes")
        require((try? DHTMessage(decoding: bytes)) == reply, "the answer does not decode to itself")
    }
    if !message.isRequest { require(node.counters.unexpectedResponses == 1, "an unasked-for response was used") }
    return 0
}
