import Testing
import UmbraCore

@testable import Sessions

@Suite("Timer heap: O(1) next deadline, only due peers ticked")
struct TimerHeapTests {
    @Test(arguments: [1, 2, 3] as [UInt64])
    func theHeapPopsInTheOrderOfASortedList(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        var heap = TimerHeap()
        var model: [TimerEntry] = []
        var keys = SeededRandom(seed: seed + 100)
        let pool = (0..<8).map { _ in Identity.generate(using: &keys).publicKey }
        for _ in 0..<2000 {
            if Bool.random(using: &rng) || model.isEmpty {
                let entry = TimerEntry(
                    due: Instant(nanoseconds: UInt64.random(in: 0..<50, using: &rng)),
                    key: pool.randomElement(using: &rng)!)
                heap.insert(entry)
                model.append(entry)
            } else {
                model.sort()
                #expect(heap.popMin() == model.removeFirst())
            }
            #expect(heap.count == model.count)
        }
    }

    /// Random operations on one node talking to many; after each, the heap's deadline is never
    /// later than a scan of every peer, and ticking at it leaves no peer overdue.
    @Test(arguments: [7, 8, 9] as [UInt64])
    func nextDeadlineNeverMissesATimerUnderRandomOperations(seed: UInt64) {
        var config = SessionConfig()
        config.maximumPeers = 64
        var rng = SeededRandom(seed: seed)
        var keys = SeededRandom(seed: seed ^ 0xABCD)
        var now = Instant(nanoseconds: 1_000_000_000_000)
        var hub = SessionManager(identity: Identity.generate(using: &keys), config: config)
        let hubEndpoint = Endpoint(address: .v4(0x0A00_0001), port: 1)
        var spokes = (0..<12).map { _ in SessionManager(identity: Identity.generate(using: &keys), config: config) }
        let endpoints = (0..<12).map { Endpoint(address: .v4(0x0A00_0100 + UInt32($0)), port: 2) }
        var inFlight: [(bytes: [UInt8], from: Int?, to: Int?)] = []  // nil: the hub
        func route(_ effects: [SessionEffect], from: Int?) {
            for (bytes, to) in sends(effects) {
                if to == .direct(hubEndpoint) { inFlight.append((bytes, from, nil)) }
                if let index = to.directEndpoint.flatMap({ endpoints.firstIndex(of: $0) }) {
                    inFlight.append((bytes, from, index))
                }
            }
        }
        for _ in 0..<1500 {
            let spoke = Int.random(in: 0..<spokes.count, using: &rng)
            let key = spokes[spoke].identity.publicKey
            switch Int.random(in: 0..<9, using: &rng) {
            case 0: route(hub.connect(key, endpoint: endpoints[spoke], now: now, rng: &rng), from: nil)
            case 1:
                _ = spokes[spoke].addPeer(hub.identity.publicKey, path: .direct(hubEndpoint))
                route(
                    spokes[spoke].send([0x10, 1], to: hub.identity.publicKey, early: true, now: now, rng: &rng),
                    from: spoke)
            case 2: route(hub.send([0x20, 2], to: key, now: now, rng: &rng), from: nil)
            case 3: hub.setPersistent(key, Bool.random(using: &rng))
            case 4: if Int.random(in: 0..<4, using: &rng) == 0 { hub.removePeer(key) }
            case 5, 6:
                if !inFlight.isEmpty {
                    let datagram = inFlight.remove(at: Int.random(in: 0..<inFlight.count, using: &rng))
                    let source = datagram.from.map { endpoints[$0] } ?? hubEndpoint
                    if let target = datagram.to {
                        route(
                            spokes[target].receive(datagram.bytes, from: .direct(source), now: now, rng: &rng),
                            from: target)
                    } else {
                        route(hub.receive(datagram.bytes, from: .direct(source), now: now, rng: &rng), from: nil)
                    }
                }
            default:
                // Time passes: to the heap's deadline (the shell's timer) or a random step.
                let step = Duration.milliseconds(Int64.random(in: 1...40_000, using: &rng))
                now = min(hub.nextDeadline ?? now + step, now + step)
                route(hub.tick(now: now, rng: &rng), from: nil)
                for index in spokes.indices { route(spokes[index].tick(now: now, rng: &rng), from: index) }
                if let scanned = hub.scannedDeadline { #expect(scanned > now, "a due timer was left behind") }
            }
            if let scanned = hub.scannedDeadline {
                #expect(hub.nextDeadline.map { $0 <= scanned } == true, "heap \(hub.nextDeadline!) > scan \(scanned)")
            }
            #expect(hub.timerEntryCount <= 2 * hub.peerCount + 65)
            #expect(hub.queuedBytes == hub.scannedQueuedBytes)
            if inFlight.count > 200 { inFlight.removeFirst(100) }
        }
    }

    @Test func manyPeersKeepAnExactDeadlineAndTickOnlyTheDueOnes() {
        var pair = Pair()
        var keys = SeededRandom(seed: 3000)
        for index in 0..<3000 {
            let key = Identity.generate(using: &keys).publicKey
            pair.now = pair.now + .milliseconds(1)
            _ = pair.a.connect(
                key, endpoint: Endpoint(address: .v4(0x0A00_0000 + UInt32(index)), port: 9), now: pair.now,
                rng: &pair.rng)
            #expect(pair.a.nextDeadline == pair.a.scannedDeadline)
        }
        // At the first deadline exactly one peer retries its initiation (retry times are jittered).
        let first = pair.a.nextDeadline!
        let effects = pair.a.tick(now: first, rng: &pair.rng)
        #expect(sends(effects).count == 1)
        #expect(pair.a.nextDeadline == pair.a.scannedDeadline)
        #expect(pair.a.nextDeadline! > first)
    }
}
