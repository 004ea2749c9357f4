// An in-memory network of gossip routers for the tests: `.send` effects go through the wire format
// into a time-ordered queue, with a seeded per-frame latency and loss (and an optional filter),
// and timers fire at each router's `nextDeadline`. Peers outside the network ("external") can be
// connected and speak through `inject`; what is sent to them is kept in `inbox`.

import Testing
import UmbraCore
import UmbraTestKit

@testable import Gossip

struct GossipNetwork {
    struct Event: Comparable {
        enum Kind {
            case frame(from: PublicKey, to: Int, bytes: [UInt8])
            case tick(Int)
        }

        var at: Instant
        var sequence: UInt64
        var kind: Kind

        static func < (lhs: Event, rhs: Event) -> Bool { (lhs.at, lhs.sequence) < (rhs.at, rhs.sequence) }
        static func == (lhs: Event, rhs: Event) -> Bool { (lhs.at, lhs.sequence) == (rhs.at, rhs.sequence) }
    }

    /// Routers; a slot is nil only while its router is being called.
    private var routers: [GossipRouter?] = []
    private(set) var keys: [PublicKey] = []
    private var index: [PublicKey: Int] = [:]
    private(set) var now = t0
    var rng: SeededRandom
    /// One-way latency of a frame, in milliseconds (drawn per frame).
    var latency: ClosedRange<Int> = 5...20
    /// Probability that a frame between routers is lost.
    var loss = 0.0
    /// Drops frames for which it returns true (after decoding; `now` is the send time).
    var dropFilter: (_ from: PublicKey, _ to: Int, _ message: GossipMessage, _ now: Instant) -> Bool = { _, _, _, _ in
        false
    }
    var validator: (_ node: Int, _ topic: Topic, _ data: [UInt8]) -> ValidationResult = { testValidator($1, $2) }
    private(set) var validatorCalls: [Int] = []
    /// Validator calls that returned `.reject`, per node.
    private(set) var rejections: [Int] = []
    /// Per node: how often each message id was delivered to the application.
    private(set) var delivered: [[MessageID: Int]] = []
    private(set) var graylisted: [[PublicKey]] = []
    /// Frames sent to external peers.
    private(set) var inbox: [PublicKey: [GossipMessage]] = [:]
    private(set) var framesSent = 0
    private(set) var framesLost = 0
    /// FNV-1a over every frame delivered (time, endpoints, bytes): equal traces hash equally.
    private(set) var traceHash: UInt64 = 0xCBF2_9CE4_8422_2325
    private var heap: [Event] = []
    private var sequence: UInt64 = 0
    private var scheduled: [Instant?] = []

    init(count: Int, seed: UInt64, config: GossipConfig = GossipConfig()) {
        rng = SeededRandom(seed: seed)
        for number in 0..<count {
            var key: PublicKey
            repeat {
                key = (try? PublicKey(bytes: rng.bytes(PublicKey.byteCount))) ?? peerKey(number)
            } while index[key] != nil
            index[key] = number
            keys.append(key)
            routers.append(GossipRouter(localPeer: key, config: config))
            validatorCalls.append(0)
            rejections.append(0)
            delivered.append([:])
            graylisted.append([])
            scheduled.append(nil)
        }
    }

    var count: Int { keys.count }

    func router(_ node: Int) -> GossipRouter { routers[node]! }

    /// Connects every node to `degree` random others (it dials them), so each has at least `degree` peers.
    mutating func connectRandomly(degree: Int) {
        for node in 0..<count {
            var others = Array(0..<count).filter { $0 != node && !router($0).peers.contains(keys[node]) }
            others.shuffle(using: &rng)
            for other in others.prefix(degree) { connect(node, other) }
        }
    }

    mutating func connect(_ dialer: Int, _ listener: Int, colocation: [UInt8]? = nil) {
        let dialerKey = keys[dialer]
        let listenerKey = keys[listener]
        call(dialer) { router, now, _ in
            router.addPeer(listenerKey, colocationKey: colocation, outbound: true, now: now)
        }
        call(listener) { router, now, _ in
            router.addPeer(dialerKey, colocationKey: colocation, outbound: false, now: now)
        }
    }

    /// Connects an outside peer to `node` (inbound).
    mutating func connectExternal(_ key: PublicKey, to node: Int) {
        call(node) { router, now, _ in router.addPeer(key, colocationKey: nil, outbound: false, now: now) }
    }

    mutating func subscribeAll(_ topic: Topic) {
        for node in 0..<count { call(node) { router, now, rng in router.subscribe(topic, now: now, rng: &rng) } }
    }

    @discardableResult
    mutating func publish(_ data: [UInt8], from node: Int, topic: Topic = .proposals) -> MessageID {
        var id: MessageID?
        call(node) { router, now, rng in
            let result = router.publish(data, topic: topic, now: now, rng: &rng)
            id = result.id
            return result.effects
        }
        return id!
    }

    /// A frame from an outside peer, arriving at `node` now.
    mutating func inject(_ message: GossipMessage, from key: PublicKey, to node: Int) {
        push(Event(at: now, sequence: 0, kind: .frame(from: key, to: node, bytes: message.encoded())))
    }

    /// Runs every event up to `now + duration`.
    mutating func run(for duration: Duration) {
        let end = now + duration
        while let next = heap.first, next.at <= end {
            let event = pop()
            now = max(now, event.at)
            switch event.kind {
            case .frame(let from, let to, let bytes):
                traceHash = (traceHash ^ now.nanoseconds) &* 0x100_0000_01B3
                for byte in from.bytes.prefix(8) + [UInt8(truncatingIfNeeded: to)] + bytes {
                    traceHash = (traceHash ^ UInt64(byte)) &* 0x100_0000_01B3
                }
                var calls = 0
                var rejected = 0
                let validator = self.validator
                call(to) { router, now, rng in
                    router.receive(bytes, from: from, now: now, rng: &rng) { topic, data in
                        calls += 1
                        let result = validator(to, topic, data)
                        if result == .reject { rejected += 1 }
                        return result
                    }
                }
                validatorCalls[to] += calls
                rejections[to] += rejected
            case .tick(let node):
                guard scheduled[node] == event.at else { continue }
                scheduled[node] = nil
                call(node) { router, now, rng in router.tick(now: now, rng: &rng) }
            }
        }
        now = end
    }

    /// Nodes that have delivered `id`.
    func reached(_ id: MessageID) -> Int { delivered.filter { $0[id] != nil }.count }

    // MARK: - Internals

    /// Calls `body` on node `node`'s router (moved out of the array, so it is not copied) and
    /// applies its effects.
    private mutating func call(
        _ node: Int, _ body: (inout GossipRouter, Instant, inout SeededRandom) -> [GossipEffect]
    ) {
        var router = routers[node].take()!
        let effects = body(&router, now, &rng)
        routers[node] = router
        apply(effects, of: node)
    }

    private mutating func apply(_ effects: [GossipEffect], of node: Int) {
        for effect in effects {
            switch effect {
            case .send(let bytes, let to):
                framesSent += 1
                #expect(bytes.count <= GossipMessage.maximumSize)
                guard let message = try? GossipMessage(decoding: bytes) else {
                    Issue.record("node \(node) sent a frame that does not decode")
                    continue
                }
                #expect(to != keys[node], "node \(node) sent to itself")
                guard let destination = index[to] else {
                    inbox[to, default: []].append(message)
                    continue
                }
                if dropFilter(keys[node], destination, message, now) || Double.random(in: 0..<1, using: &rng) < loss {
                    framesLost += 1
                    continue
                }
                let delay = Duration.milliseconds(Int.random(in: latency, using: &rng))
                push(Event(at: now + delay, sequence: 0, kind: .frame(from: keys[node], to: destination, bytes: bytes)))
            case .deliver(_, _, let id, _):
                delivered[node][id, default: 0] += 1
            case .peerGraylisted(let peer):
                graylisted[node].append(peer)
            }
        }
        if let deadline = router(node).nextDeadline, scheduled[node] != deadline {
            scheduled[node] = deadline
            push(Event(at: max(deadline, now), sequence: 0, kind: .tick(node)))
        }
    }

    // A binary min-heap on (time, sequence); the sequence keeps same-time events in push order.

    private mutating func push(_ event: Event) {
        var event = event
        sequence += 1
        event.sequence = sequence
        heap.append(event)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child] < heap[parent] else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func pop() -> Event {
        let top = heap[0]
        let last = heap.removeLast()
        guard !heap.isEmpty else { return top }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count, heap[left] < heap[smallest] { smallest = left }
            if right < heap.count, heap[right] < heap[smallest] { smallest = right }
            guard smallest != parent else { break }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
        return top
    }
}
