import UmbraCore
import UmbraTestKit

@testable import Sessions

/// Two session managers wired back to back, with a manual clock: a pure test harness that
/// interprets effects exactly as a shell would (without a network in between).
struct Pair {
    var a: SessionManager
    var b: SessionManager
    var aEndpoint = Endpoint(address: .v4(0x7F00_0001), port: 1000)
    var bEndpoint = Endpoint(address: .v4(0x7F00_0001), port: 2000)
    var now = t0
    var rng = SeededRandom(seed: 42)
    var delivered: [(to: String, frame: [UInt8])] = []
    var events: [(String, SessionEffect)] = []
    /// Every datagram that went over the "wire", in order, with its destination.
    var wire: [(bytes: [UInt8], to: PeerPath)] = []

    init(config: SessionConfig = SessionConfig(), seed: UInt64 = 42) {
        var keys = SeededRandom(seed: seed)
        a = SessionManager(identity: Identity.generate(using: &keys), config: config)
        b = SessionManager(identity: Identity.generate(using: &keys), config: config)
        rng = SeededRandom(seed: seed &+ 1)
    }

    var aPath: PeerPath { .direct(aEndpoint) }
    var bPath: PeerPath { .direct(bEndpoint) }
    var aKey: PublicKey { a.identity.publicKey }
    var bKey: PublicKey { b.identity.publicKey }

    /// Delivers effects until no datagram is in flight.
    mutating func pump(_ effects: [SessionEffect], from origin: String) {
        var queue: [(String, SessionEffect)] = effects.map { (origin, $0) }
        var steps = 0
        while !queue.isEmpty, steps < 1000 {
            steps += 1
            let (source, effect) = queue.removeFirst()
            switch effect {
            case .send(let bytes, let path):
                wire.append((bytes, path))
                let sourcePath = source == "a" ? aPath : bPath
                if path == bPath {
                    queue += b.receive(bytes, from: sourcePath, now: now, rng: &rng).map { ("b", $0) }
                } else if path == aPath {
                    queue += a.receive(bytes, from: sourcePath, now: now, rng: &rng).map { ("a", $0) }
                }
            case .deliver(_, let frame), .deliverEarly(_, let frame):
                delivered.append((source, frame))
            default:
                events.append((source, effect))
            }
        }
    }

    mutating func handshake() {
        pump(a.connect(bKey, endpoint: bEndpoint, now: now, rng: &rng), from: "a")
    }

    mutating func sendAB(_ frame: [UInt8]) { pump(a.send(frame, to: bKey, now: now, rng: &rng), from: "a") }
    mutating func sendBA(_ frame: [UInt8]) { pump(b.send(frame, to: aKey, now: now, rng: &rng), from: "b") }

    mutating func advance(_ duration: Duration) {
        now = now + duration
        pump(a.tick(now: now, rng: &rng), from: "a")
        pump(b.tick(now: now, rng: &rng), from: "b")
    }

    /// Advances in steps of `step` for `total`, running both nodes' timers.
    mutating func run(for total: Duration, step: Duration = .seconds(1)) {
        var elapsed = Duration.zero
        while elapsed < total {
            advance(step)
            elapsed += step
        }
    }
}

/// The datagram bytes of the first effect that sends one.
func firstSend(_ effects: [SessionEffect]) -> [UInt8]? {
    for case .send(let bytes, _) in effects { return bytes }
    return nil
}

/// Every datagram in `effects`, with its destination.
func sends(_ effects: [SessionEffect]) -> [(bytes: [UInt8], to: PeerPath)] {
    effects.compactMap { if case .send(let bytes, let to) = $0 { (bytes, to) } else { nil } }
}
