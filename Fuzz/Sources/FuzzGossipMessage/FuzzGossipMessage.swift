// Gossip messages from untrusted bytes: a decoded message re-encodes to exactly its input and
// respects every limit (size, topics, ids, data, topic names); errors are short. A router that is
// already meshed, with messages cached, is handed the input from a peer — as one frame, and as a
// sequence of length-prefixed frames with time passing — and never traps; everything it sends
// decodes again and fits one datagram, and everything it delivers is within the data limit.

import FuzzSupport
import Gossip
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

private func key(_ number: UInt8) -> PublicKey {
    do { return try PublicKey(bytes: [number] + [UInt8](repeating: 0, count: PublicKey.byteCount - 1)) } catch {
        fatalError("\(error)")
    }
}

private let start = Instant(nanoseconds: 1_700_000_000_000_000_000)
private let peer = key(9)

/// Even first byte: valid; odd: invalid; empty: stale.
private func validate(_ topic: Topic, _ data: [UInt8]) -> ValidationResult {
    guard let first = data.first else { return .ignore }
    return first & 1 == 0 ? .accept : .reject
}

/// A router with peers 2...12 on both topics, a mesh for `proposals`, and cached messages (one of
/// them with the id of `[0]` on `proposals`, so IWANT can be answered).
private let template: GossipRouter = {
    var rng = SeededRandom(seed: 1)
    var router = GossipRouter(localPeer: key(1))
    for number in UInt8(2)...12 {
        _ = router.addPeer(
            key(number), colocationKey: number < 5 ? [10, 0, 0, 1] : nil, outbound: number % 2 == 0, now: start)
        _ = router.receive(
            GossipMessage.subscribe([.proposals, .ledger]).encoded(), from: key(number), now: start, rng: &rng,
            validate: validate)
    }
    _ = router.subscribe(.proposals, now: start, rng: &rng)
    _ = router.publish([0], topic: .proposals, now: start, rng: &rng)
    _ = router.publish([2, 2], topic: .ledger, now: start, rng: &rng)
    _ = router.receive(
        GossipMessage.publish(topic: .proposals, data: [4]).encoded(), from: key(3), now: start, rng: &rng,
        validate: validate)
    return router
}()

private func check(_ effects: [GossipEffect], config: GossipConfig) {
    for effect in effects {
        switch effect {
        case .send(let bytes, let to):
            require(bytes.count <= GossipMessage.maximumSize, "a send of \(bytes.count) bytes")
            require(to != key(1), "a send to ourselves")
            guard let message = try? GossipMessage(decoding: bytes) else {
                fatalError("property violated: a send does not decode")
            }
            require(message.encoded() == bytes, "a send re-encodes differently")
        case .deliver(_, let data, _, let from):
            require(data.count <= config.maximumDataSize, "delivered \(data.count) bytes")
            require(from != nil, "delivered our own message")
        case .peerGraylisted:
            break
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)
    do throws(DecodeError) {
        let message = try GossipMessage(decoding: input)
        require(message.encoded() == input, "\(message.tag) re-encodes differently")
        require(input.count <= GossipMessage.maximumSize, "accepted \(input.count) bytes")
        switch message {
        case .subscribe(let topics), .unsubscribe(let topics):
            require((1...GossipMessage.maximumTopics).contains(topics.count), "\(topics.count) topics")
            for topic in topics { require(Topic.isValid(topic.bytes), "bad topic accepted") }
        case .publish(let topic, let data):
            require(data.count <= GossipMessage.maximumDataSize, "\(data.count) data bytes")
            require(Topic.isValid(topic.bytes), "bad topic accepted")
        case .ihave(let topic, let ids):
            require((1...GossipMessage.maximumIDs).contains(ids.count), "\(ids.count) ids")
            require(Topic.isValid(topic.bytes), "bad topic accepted")
        case .iwant(let ids):
            require((1...GossipMessage.maximumIDs).contains(ids.count), "\(ids.count) ids")
        case .graft(let topic), .prune(let topic, _):
            require(Topic.isValid(topic.bytes), "bad topic accepted")
        }
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
    }

    // The whole input as one frame, twice (the second is a duplicate or a repeat), then a heartbeat.
    var rng = SeededRandom(seed: UInt64(input.count))
    var router = template
    var now = start
    for _ in 0..<2 {
        check(router.receive(input, from: peer, now: now, rng: &rng, validate: validate), config: router.config)
    }
    now = now + .seconds(1)
    check(router.tick(now: now, rng: &rng), config: router.config)

    // The input as a sequence of `length u8 | frame` from alternating peers, 400 ms apart.
    router = template
    var reader = ByteReader(input)
    var sender: UInt8 = 9
    var frames = 0
    while frames < 64, let length = try? reader.readUInt8(),
        let frame = try? reader.readBytes(min(Int(length), reader.remaining))
    {
        frames += 1
        check(router.receive(frame, from: key(sender), now: now, rng: &rng, validate: validate), config: router.config)
        now = now + .milliseconds(400)
        check(router.tick(now: now, rng: &rng), config: router.config)
        sender = sender == 9 ? 4 : 9
    }
    require(router.mcacheCount <= router.config.maximumCachedMessages, "message cache over its cap")
    require(router.seenCount <= router.config.maximumSeen, "seen cache over its cap")
    require(router.peers.count <= router.config.maximumPeers, "too many peers")
    return 0
}
