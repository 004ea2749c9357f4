// Untrusted datagrams into a node's session layer, which holds an established session. Inputs are
// steered past the cheap checks so the deep paths get exercised too: handshake-sized inputs get a
// valid mac1 (reaching the Noise decoding), transport inputs get a live receiver index (reaching
// the replay window and AEAD). Properties: nothing crashes or hangs; every datagram is either
// counted as dropped or handled; garbage never yields a delivered frame or a new session.

import FuzzSupport
import Sessions
import UmbraCore

@main enum Main {
    static func main() { LibFuzzer.run { fuzz($0, $1) } }
}

nonisolated(unsafe) var harness = Harness()
nonisolated(unsafe) var inputs = 0

struct Harness {
    var victim: SessionManager
    let victimMac1Key: [UInt8]
    let peerEndpoint = Endpoint(address: .v4(0x0A00_0001), port: 1)
    let liveIndices: [UInt32]
    var rng = SeededRandom(seed: 1)
    var now = Instant(nanoseconds: 1_000_000_000_000)

    init() {
        var keys = SeededRandom(seed: 7)
        var victim = SessionManager(identity: Identity.generate(using: &keys))
        var peer = SessionManager(identity: Identity.generate(using: &keys))
        let victimEndpoint = Endpoint(address: .v4(0x0A00_0002), port: 2)
        var rng = SeededRandom(seed: 8)
        let now = Instant(nanoseconds: 1_000_000_000_000)
        // A real handshake, so transport inputs can target live indices.
        var inFlight = peer.connect(victim.identity.publicKey, endpoint: victimEndpoint, now: now, rng: &rng)
            .map { (toVictim: true, effect: $0) }
        var indices: [UInt32] = []
        while let (toVictim, effect) = inFlight.first {
            inFlight.removeFirst()
            guard case .send(let bytes, _) = effect else { continue }
            if toVictim {
                inFlight += victim.receive(
                    bytes, from: .direct(Endpoint(address: .v4(0x0A00_0001), port: 1)), now: now, rng: &rng
                )
                .map { (false, $0) }
            } else {
                if bytes[0] == 2 {
                    indices.append(
                        UInt32(bytes[4]) | UInt32(bytes[5]) << 8 | UInt32(bytes[6]) << 16 | UInt32(bytes[7]) << 24)
                }
                inFlight += peer.receive(bytes, from: .direct(victimEndpoint), now: now, rng: &rng).map { (true, $0) }
            }
        }
        self.victim = victim
        victimMac1Key = SessionManager.mac1Key(for: victim.identity.x25519PublicKey)
        liveIndices = indices
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = LibFuzzer.bytes(data, size)
    if input.count == WireSize.initiation, input[0] == 1 {
        let mac = SessionManager.mac(key: harness.victimMac1Key, input[..<HandshakeInitiation.mac1Offset])
        input.replaceSubrange(HandshakeInitiation.mac1Offset..<HandshakeInitiation.mac2Offset, with: mac)
    } else if input.count == WireSize.response, input[0] == 2 {
        let mac = SessionManager.mac(key: harness.victimMac1Key, input[..<HandshakeResponse.mac1Offset])
        input.replaceSubrange(HandshakeResponse.mac1Offset..<HandshakeResponse.mac2Offset, with: mac)
    } else if input.count >= WireSize.transportMinimum, input[0] == 4, input[1] & 1 == 1,
        let index = harness.liveIndices.first
    {
        input[1] = 0
        withUnsafeBytes(of: index.littleEndian) { input.replaceSubrange(4..<8, with: $0) }
    }
    // A fresh session every 2000 inputs (60 s of virtual time), so transport inputs keep
    // reaching the AEAD instead of stopping at `expired_keys`.
    inputs += 1
    if inputs % 2000 == 0 { harness = Harness() }
    let before = harness.victim.counters
    let sessionsBefore = harness.victim.establishedCount
    harness.now = harness.now + .milliseconds(30)
    var rng = harness.rng  // a separate variable: two inout accesses to `harness` would conflict
    let effects = harness.victim.receive(input, from: .direct(harness.peerEndpoint), now: harness.now, rng: &rng)
    harness.rng = rng
    let after = harness.victim.counters
    require(after.datagramsReceived == before.datagramsReceived + 1, "datagram not counted")
    for effect in effects {
        if case .deliver = effect { require(false, "garbage delivered a frame") }
        if case .established = effect { require(false, "garbage established a session") }
    }
    require(harness.victim.establishedCount == sessionsBefore, "session count changed")
    require(after.droppedTotal == before.droppedTotal + 1, "a garbage datagram was not counted as dropped")
    return 0
}
