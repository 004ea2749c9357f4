// Relay messages from untrusted bytes: a decoded message re-encodes to its input (less skipped
// unusable punch candidates) and respects every limit (size, forwarded bytes, candidates); each
// relay core handed the message from a peer
// (a relay with a reserved, connected target; a reservation client; reachability; both hole-punch
// roles) never traps, and every message it answers with fits the budget and decodes to itself;
// errors are short.

import FuzzSupport
import Relay
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

private func key(_ byte: UInt8) -> PublicKey {
    do { return try PublicKey(bytes: [UInt8](repeating: byte, count: PublicKey.byteCount)) } catch {
        fatalError("\(error)")
    }
}

private let sender = key(9)
/// Holds a reservation on the fuzzed relay, so `forward`s to it open circuits.
private let reserved = key(1)
private let source = Endpoint(address: .v4(0xC633_6401), port: 4747)

private func check(_ message: RelayMessage, from core: String) {
    let bytes = message.encoded()
    require(bytes.count <= RelayMessage.maximumSize, "\(core) answered a \(message.tag) of \(bytes.count) bytes")
    require((try? RelayMessage(decoding: bytes)) == message, "\(core)'s \(message.tag) does not decode to itself")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)
    let message: RelayMessage
    do throws(DecodeError) {
        message = try RelayMessage(decoding: input)
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
        return 0
    }
    // The decoder skips well-formed candidates nobody may punch (port 0, relay paths): then the
    // message re-encodes shorter, and that form is a fixed point. Otherwise it re-encodes exactly.
    let reencoded = message.encoded()
    require(reencoded == input || reencoded.count < input.count, "\(message.tag) re-encodes differently")
    require((try? RelayMessage(decoding: reencoded)) == message, "\(message.tag) re-encodes to another message")
    require(input.count <= RelayMessage.maximumSize, "accepted \(input.count) bytes")
    switch message {
    case .forward(_, let bytes), .deliver(_, let bytes):
        require(bytes.count <= RelayMessage.maximumForwardBytes, "\(bytes.count) forwarded bytes")
    case .punchConnect(_, let candidates), .punchConnectReply(_, let candidates):
        require(candidates.count <= RelayMessage.maximumCandidates, "\(candidates.count) candidates")
    default:
        break
    }

    var rng = SeededRandom(seed: UInt64(input.count))
    let now = Instant(nanoseconds: 1_700_000_000_000_000_000)

    var server = RelayServer()
    _ = server.handle(.reserve(requestID: 1), from: reserved, ipKey: nil, now: now, isConnected: { _ in true })
    for round in 0..<2 {
        let at = now + .seconds(round)
        for effect in server.handle(
            message, from: sender, ipKey: [198, 51, 100, 1], now: at, isConnected: { _ in true })
        {
            guard case .send(let answer, _) = effect else { continue }
            check(answer, from: "the relay")
        }
    }
    for effect in server.peerLost(reserved, now: now) + server.tick(now: now + .seconds(7200)) {
        guard case .send(let answer, _) = effect else { continue }
        check(answer, from: "the relay")
    }
    require(server.activeCircuits == 0 && server.activeReservations == 0, "state outlived its limits")

    var client = RelayClient()
    _ = client.setCandidates([RelayContact(publicKey: sender, endpoint: source)], now: now)
    _ = client.relayConnected(sender, now: now)
    for effect in client.handle(message, from: sender, now: now) + client.tick(now: now + .seconds(3600)) {
        guard case .send(let answer, _) = effect else { continue }
        check(answer, from: "the relay client")
    }

    var reachability = Reachability(now: now)
    _ = reachability.setPeers([key(2), key(3), sender], now: now, rng: &rng)
    let effects = reachability.handle(message, from: sender, observedSource: source, now: now, rng: &rng)
    for effect in effects + reachability.tick(now: now + .seconds(10), rng: &rng) {
        if case .send(let answer, _) = effect { check(answer, from: "reachability") }
    }

    for role in [HolePunchRole.initiator, .responder] {
        var punch = HolePunch(role: role)
        punch.setLocalCandidates([source])
        var effects = punch.start(nonce: 1, localCandidates: [source], now: now)
        effects += punch.handle(message, now: now + .milliseconds(30))
        effects += punch.tick(now: now + .seconds(60))
        for effect in effects {
            switch effect {
            case .send(let answer): check(answer, from: "hole punching")
            case .punch(let endpoints):
                require(endpoints.count <= RelayMessage.maximumCandidates, "\(endpoints.count) punch targets")
            case .gaveUp: break
            }
        }
    }
    return 0
}
