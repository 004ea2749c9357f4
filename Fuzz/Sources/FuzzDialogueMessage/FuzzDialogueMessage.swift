// Dialogue messages from untrusted bytes: a decoded message re-encodes to exactly its input and
// respects every limit (size, DNS servers, service type, reason); a provider (with an open session
// for the sender) and a consumer (requesting, then open) handed the message never trap, and every
// message they answer with fits the budget and decodes to itself; errors are short.

import Dialogue
import FuzzSupport
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

private func key(_ byte: UInt8) -> PublicKey {
    do { return try PublicKey(bytes: [UInt8](repeating: byte, count: PublicKey.byteCount)) } catch {
        fatalError("\(error)")
    }
}

private let consumer = key(1)
private let provider = key(2)

private func check(_ message: DialogueMessage, from core: String) {
    let bytes = message.encoded()
    require(bytes.count <= DialogueMessage.maximumSize, "\(core) sent a \(message.tag) of \(bytes.count) bytes")
    require((try? DialogueMessage(decoding: bytes)) == message, "\(core)'s \(message.tag) does not decode to itself")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = LibFuzzer.bytes(data, size)
    let message: DialogueMessage
    do throws(DecodeError) {
        message = try DialogueMessage(decoding: input)
    } catch {
        require(error.description.utf8.count < 400, "error message too long")
        return 0
    }
    require(message.encoded() == input, "\(message.tag) re-encodes differently")
    require(input.count <= DialogueMessage.maximumSize, "accepted \(input.count) bytes")
    switch message {
    case .request(_, let serviceType, _, _, _):
        require(DialogueMessage.isValidServiceType(serviceType), "service type \(serviceType.utf8.count) bytes")
    case .accept(_, _, let grant):
        require(grant.dnsServers.count <= DialogueMessage.maximumDNSServers, "\(grant.dnsServers.count) DNS servers")
    case .reject(_, _, let reason):
        require(reason.utf8.count <= DialogueMessage.maximumReasonLength, "reason of \(reason.utf8.count) bytes")
    default:
        break
    }

    var rng = SeededRandom(seed: UInt64(input.count))
    let now = Instant(nanoseconds: 1_700_000_000_000_000_000)

    // A provider with a small pool, an open session for the sender, and the message twice.
    var config = DialogueServerConfig()
    config.capacity = 2
    config.sessionByteLimit = 1 << 20
    var server = DialogueServer(config: config)
    var effects = server.handle(
        .request(requestID: 1, serviceType: "ip-tunnel", proposalSeq: 1, mode: .fullTunnel, wantsIPv6: false),
        from: consumer, now: now, rng: &rng)
    for round in 0..<2 {
        effects += server.handle(message, from: consumer, now: now + .seconds(round), rng: &rng)
    }
    for session in server.sessions {
        effects += server.account(session.sessionID, bytesIn: 1 << 19, bytesOut: 1 << 19, now: now)
    }
    effects += server.tick(now: now + .seconds(5)) + server.tick(now: now + .seconds(60))
    effects += server.endAll(code: .shuttingDown, now: now + .seconds(61))
    for effect in effects {
        if case .send(let answer, _) = effect { check(answer, from: "the server") }
    }
    require(server.activeSessions == 0 && server.addressesInUse == 0, "a session outlived endAll")

    // A consumer handed the message while requesting, then (after an accept) while open.
    var client = DialogueClient()
    var clientEffects = client.open(
        provider: provider, serviceType: "ip-tunnel", proposalSeq: 1, mode: .split, now: now, rng: &rng)
    clientEffects += client.handle(message, from: provider, now: now)
    clientEffects += client.tick(now: now + .seconds(1))
    if case .send(.request(let requestID, _, _, _, _), _) = clientEffects.first {
        let grant = SessionGrant(
            innerIPv4: InterfaceAddress(address: .v4(0x0AB6_0002), prefixLength: 16), gateway: .v4(0x0AB6_0001),
            dnsServers: [], mtu: 1420, keepaliveSeconds: 5)
        clientEffects += client.handle(
            .accept(requestID: requestID, sessionID: 9, grant: grant), from: provider, now: now)
    }
    clientEffects += client.handle(message, from: provider, now: now + .seconds(2))
    clientEffects += client.reportStatus(
        StatusReport(bytesSent: 1, bytesReceived: 2, packetsSent: 3, packetsReceived: 4), now: now + .seconds(3))
    clientEffects += client.tick(now: now + .seconds(10)) + client.tick(now: now + .seconds(120))
    clientEffects += client.close(now: now + .seconds(121))
    for effect in clientEffects {
        if case .send(let answer, _) = effect { check(answer, from: "the client") }
    }
    require(client.session == nil && client.nextDeadline == nil, "the client outlived its timeouts")
    return 0
}
