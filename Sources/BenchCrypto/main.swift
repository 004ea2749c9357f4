// bench-crypto: data-plane crypto throughput on this machine.
//
// Build and run in release mode:   swift run -c release bench-crypto [--json] [--seconds S] [--size BYTES]
//
// Rows:
//   1. raw AEAD   — libsodium ChaCha20-Poly1305 IETF through `SymmetricKey` (seal + open into preallocated
//                   buffers, no allocation): the ceiling for the tunnel.
//   2. session    — the full transport session path (Sessions.SessionManager seal + open).
// The ratio line compares them. Every result is folded into a checksum that is printed, so the optimiser
// cannot drop the work.

import Foundation
import Sessions
import UmbraCore
import UmbraCrypto

// MARK: - Options

struct Options {
    var json = false
    var seconds = 2.0
    var packetSize = 1400
    var help = false

    init(arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--json": json = true
            case "--seconds": seconds = iterator.next().flatMap(Double.init) ?? seconds
            case "--size": packetSize = iterator.next().flatMap(Int.init) ?? packetSize
            case "-h", "--help": help = true
            default: fatalError("unknown argument \(argument); try --help")
            }
        }
    }
}

// MARK: - Results

struct BenchResult {
    let name: String
    /// Packets fully processed (for a round-trip row, one seal *and* one open).
    let packets: Int
    let packetSize: Int
    let seconds: Double
    /// A value derived from every output so none of the work is dead code.
    let checksum: UInt64

    var packetsPerSecond: Double { Double(packets) / seconds }
    /// Payload megabytes (10^6) per second.
    var megabytesPerSecond: Double { Double(packets * packetSize) / seconds / 1e6 }
}

/// Calls `body(iteration)` in batches until `duration` seconds have passed; returns iterations and elapsed time.
@inline(never)
func measure(seconds duration: Double, _ body: (Int) -> Void) -> (iterations: Int, seconds: Double) {
    let clock = ContinuousClock()
    let start = clock.now
    let deadline = start + .nanoseconds(Int64(duration * 1e9))
    var iterations = 0
    repeat {
        for _ in 0..<256 {
            body(iterations)
            iterations += 1
        }
    } while clock.now < deadline
    let elapsed = clock.now - start
    let (wholeSeconds, attoseconds) = elapsed.components
    return (iterations, Double(wholeSeconds) + Double(attoseconds) * 1e-18)
}

// MARK: - Row 1: raw libsodium AEAD via SymmetricKey

enum RawMode: String {
    case seal = "raw AEAD seal"
    case open = "raw AEAD open"
    case roundTrip = "raw AEAD seal+open"
}

func benchRawAEAD(mode: RawMode, packetSize: Int, seconds: Double) -> BenchResult {
    let key = try! SymmetricKey(bytes: SecureRandom.bytes(32))
    let plaintext = UnsafeMutableRawBufferPointer.allocate(byteCount: packetSize, alignment: 16)
    let ciphertext = UnsafeMutableRawBufferPointer.allocate(byteCount: packetSize + 16, alignment: 16)
    let opened = UnsafeMutableRawBufferPointer.allocate(byteCount: packetSize, alignment: 16)
    defer {
        plaintext.deallocate()
        ciphertext.deallocate()
        opened.deallocate()
    }
    SecureRandom.fill(plaintext)
    // Empty associated data, exactly like the session transport (WireGuard does the same).
    let associatedData = UnsafeRawBufferPointer(start: nil, count: 0)

    // For open-only: one valid ciphertext per counter would need a store; instead open the same sealed packet
    // (same counter) every time, which is exactly the work of a real open.
    _ = key.seal(
        counter: 0, plaintext: UnsafeRawBufferPointer(plaintext), associatedData: associatedData, into: ciphertext)

    var checksum: UInt64 = 0
    let (iterations, elapsed) = measure(seconds: seconds) { i in
        let counter = UInt64(truncatingIfNeeded: i)
        switch mode {
        case .seal:
            let n = key.seal(
                counter: counter, plaintext: UnsafeRawBufferPointer(plaintext), associatedData: associatedData,
                into: ciphertext)
            checksum &+= UInt64(ciphertext[i % n])
        case .open:
            do {
                let n = try key.open(
                    counter: 0, ciphertext: UnsafeRawBufferPointer(ciphertext), associatedData: associatedData,
                    into: opened)
                checksum &+= UInt64(opened[i % n])
            } catch {
                fatalError("open failed: \(error)")
            }
        case .roundTrip:
            let n = key.seal(
                counter: counter, plaintext: UnsafeRawBufferPointer(plaintext), associatedData: associatedData,
                into: ciphertext)
            do {
                let m = try key.open(
                    counter: counter, ciphertext: UnsafeRawBufferPointer(rebasing: ciphertext[0..<n]),
                    associatedData: associatedData, into: opened)
                checksum &+= UInt64(opened[i % m] ^ ciphertext[i % n])
            } catch {
                fatalError("open failed: \(error)")
            }
        }
    }
    return BenchResult(
        name: mode.rawValue, packets: iterations, packetSize: packetSize, seconds: elapsed, checksum: checksum)
}

// MARK: - Row 2: full transport session path

// The full transport path of the session layer: counter assignment, header, seal into a
// preallocated datagram (SessionManager.seal), then index lookup, replay-window check, open in place
// and window update on the receiving side (SessionManager.open). One seal+open per packet, like the
// `.roundTrip` row, so the ratio compares like with like.
func benchSession(packetSize: Int, seconds: Double) -> BenchResult? {
    var keys = SeededRandom(seed: 1)
    var sender = SessionManager(identity: Identity.generate(using: &keys))
    var receiver = SessionManager(identity: Identity.generate(using: &keys))
    let senderEndpoint = Endpoint(address: .v4(0x7F00_0001), port: 1)
    let receiverEndpoint = Endpoint(address: .v4(0x7F00_0001), port: 2)
    var rng = SeededRandom(seed: 2)
    let now = Instant(nanoseconds: 1_000_000_000)
    // Handshake by passing datagrams back and forth until both sides are established.
    var inFlight: [(bytes: [UInt8], toReceiver: Bool)] = []
    func enqueue(_ effects: [SessionEffect], toReceiver: Bool) {
        for case .send(let bytes, _) in effects { inFlight.append((bytes, toReceiver)) }
    }
    enqueue(
        sender.connect(receiver.identity.publicKey, endpoint: receiverEndpoint, now: now, rng: &rng),
        toReceiver: true)
    while !inFlight.isEmpty {
        let (bytes, toReceiver) = inFlight.removeFirst()
        if toReceiver {
            enqueue(receiver.receive(bytes, from: .direct(senderEndpoint), now: now, rng: &rng), toReceiver: false)
        } else {
            enqueue(sender.receive(bytes, from: .direct(receiverEndpoint), now: now, rng: &rng), toReceiver: true)
        }
    }
    guard sender.isEstablished(receiver.identity.publicKey), receiver.isEstablished(sender.identity.publicKey)
    else { return nil }
    let peer = receiver.identity.publicKey
    let frame = [UInt8](repeating: 0xAB, count: packetSize)
    var datagram = [UInt8](repeating: 0, count: packetSize + WireSize.transportHeader + 16)
    var events: [SessionEffect] = []
    events.reserveCapacity(4)
    var checksum: UInt64 = 0
    let (iterations, elapsed) = frame.withUnsafeBytes { plain in
        datagram.withUnsafeMutableBytes { buffer in
            measure(seconds: seconds) { _ in
                guard let (length, _) = sender.seal(plain, to: peer, into: buffer, now: now) else {
                    fatalError("session seal failed")
                }
                let packet = UnsafeMutableRawBufferPointer(rebasing: buffer[..<length])
                switch receiver.open(packet, from: .direct(senderEndpoint), now: now, events: &events) {
                case .frame(_, let range): checksum &+= UInt64(buffer[range.lowerBound]) &+ UInt64(range.count)
                case .dropped(let reason): fatalError("session open dropped a packet: \(reason)")
                }
                events.removeAll(keepingCapacity: true)
            }
        }
    }
    return BenchResult(
        name: "session seal+open", packets: iterations, packetSize: packetSize, seconds: elapsed, checksum: checksum)
}

// MARK: - Report

func format(_ value: Double, decimals: Int) -> String {
    String(format: "%.\(decimals)f", value)
}

func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
    let padding = String(repeating: " ", count: max(0, width - text.count))
    return right ? padding + text : text + padding
}

func printTable(_ results: [BenchResult], ratio: (name: String, value: Double)?) {
    print(
        pad("benchmark", 22) + pad("size", 7, right: true) + pad("packets/s", 14, right: true)
            + pad("MB/s", 11, right: true) + pad("Gbit/s", 9, right: true) + pad("checksum", 22, right: true))
    for r in results {
        print(
            pad(r.name, 22) + pad(String(r.packetSize), 7, right: true)
                + pad(format(r.packetsPerSecond, decimals: 0), 14, right: true)
                + pad(format(r.megabytesPerSecond, decimals: 1), 11, right: true)
                + pad(format(r.megabytesPerSecond * 8 / 1000, decimals: 2), 9, right: true)
                + pad(String(r.checksum), 22, right: true))
    }
    if let ratio { print("\(ratio.name): \(format(ratio.value, decimals: 3))") }
}

func printJSON(_ results: [BenchResult], ratio: (name: String, value: Double)?) {
    let rows = results.map { r in
        "{\"name\":\"\(r.name)\",\"packet_size\":\(r.packetSize),\"packets\":\(r.packets),"
            + "\"seconds\":\(r.seconds),\"packets_per_second\":\(r.packetsPerSecond),"
            + "\"megabytes_per_second\":\(r.megabytesPerSecond),\"checksum\":\(r.checksum)}"
    }
    var object = "{\"results\":[\(rows.joined(separator: ","))]"
    if let ratio { object += ",\"ratio\":{\"name\":\"\(ratio.name)\",\"value\":\(ratio.value)}" }
    print(object + "}")
}

// MARK: - Main

func run(_ options: Options) {
    Sodium.initialize()
    var results: [BenchResult] = []
    for mode in [RawMode.seal, .open, .roundTrip] {
        results.append(benchRawAEAD(mode: mode, packetSize: options.packetSize, seconds: options.seconds))
    }
    let raw = results[results.count - 1]
    var ratio: (name: String, value: Double)?
    if let session = benchSession(packetSize: options.packetSize, seconds: options.seconds) {
        results.append(session)
        ratio = ("session / raw AEAD seal+open (packets/s)", session.packetsPerSecond / raw.packetsPerSecond)
    }
    if options.json {
        printJSON(results, ratio: ratio)
    } else {
        printTable(results, ratio: ratio)
    }
}

let options = Options(arguments: CommandLine.arguments)
if options.help {
    print("usage: bench-crypto [--json] [--seconds S] [--size BYTES]")
} else {
    run(options)
}
