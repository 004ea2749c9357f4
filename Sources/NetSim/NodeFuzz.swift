// Stateful fuzzing of a whole node: a NodeInstance driven by a byte string of operations from
// several authenticated attackers — frames on every channel, requests sent with a victim's source
// address after the handshake, forged relay `deliver` frames that open "relayed" sessions, punch
// requests naming addresses of the attacker's choice, 0-RTT data from fresh identities, garbage,
// and the passing of time. The node starts as a public relay and DHT server that has been up for
// 15 s of virtual time among eight honest neighbours (four of them providers), so its routing
// table and market hold real contents worth reflecting. After every operation the harness checks
// the node's invariants:
//
// - no datagram to the discard-only 100::/64, port 0 or an unspecified address leaves the node
//   (a relayed session path cannot reach the socket at all: `NodeEffect.send` takes an `Endpoint`);
// - bytes sent to an address that never completed a handshake or answered a challenge (a
//   victim) stay within 3 × the bytes that arrived from it (handshake initiations, which a node
//   sends to contacts in order to validate them, are counted apart);
// - the session layer's queued bytes stay within its budget and match its books;
// - the session table stays within its cap.
//
// The same harness runs under libFuzzer (Fuzz/Sources/FuzzNode) and as seeded Swift tests. The
// input is consumed as it goes; an exhausted input reads as zero bytes, so every input is valid.

import Kademlia
import Node
import Proposals
import Relay
import Sessions
import UmbraCore

/// One broken invariant, with the operation that broke it.
public struct NodeFuzzViolation: Error, Sendable, CustomStringConvertible {
    public var step: Int
    public var operation: String
    public var invariant: String

    public var description: String { "step \(step) (\(operation)): \(invariant)" }
}

/// A node under attack and the attackers around it. Deterministic for a given input.
public struct NodeFuzzHarness: Sendable {
    /// An attacker with a session of its own to the node, at its real address.
    struct Attacker: Sendable {
        var sessions: SessionManager
        var home: Endpoint
    }

    /// An honest node next to the one under test (it answers, gossips and ticks like any other).
    struct Neighbor: Sendable {
        var instance: NodeInstance
        var endpoint: Endpoint
    }

    /// An identity that talks to the node through an attacker posing as its relay.
    struct Relayed: Sendable {
        var sessions: SessionManager
        var relay: Int
    }

    public private(set) var node: NodeInstance
    public let nodeEndpoint = Endpoint(address: .v4(0xC633_6401), port: 4747)  // 198.51.100.1
    /// Addresses the attackers may put in a source field or a message: two global ones, a LAN one
    /// and loopback. None of them ever answers.
    public static let victims: [Endpoint] = [
        Endpoint(address: .v4(0xC000_0201), port: 9),  // 192.0.2.1
        Endpoint(address: .v4(0xC000_0202), port: 53),  // 192.0.2.2
        Endpoint(address: .v4(0x0A00_0001), port: 80),  // 10.0.0.1
        Endpoint(address: .v4(0x7F00_0001), port: 4747),  // 127.0.0.1
    ]
    /// Where relayed identities believe the node is (they never send there: the relay carries it).
    static let relayedView = Endpoint(address: .v4(0xCB00_71C8), port: 1)

    var attackers: [Attacker] = []
    var neighbors: [Neighbor] = []
    var relayed: [Relayed] = []
    var freshSeed: UInt64 = 1000
    public private(set) var now = Instant(nanoseconds: 1_000_000_000_000)
    var rng = SeededRandom(seed: 1)
    var input: [UInt8] = []
    var cursor = 0
    /// Off while the harness is being set up.
    var checking = false

    /// Bytes that arrived from each victim address, and bytes the node sent there (initiations apart).
    public private(set) var bytesFromVictim: [Endpoint: Int] = [:]
    public private(set) var bytesToVictim: [Endpoint: Int] = [:]
    public private(set) var initiationsToVictim: [Endpoint: Int] = [:]
    public private(set) var steps = 0
    /// Datagrams delivered among the participants so far (a measure of the work an input causes).
    public private(set) var datagramsDelivered = 0
    /// The operations run so far, for a failure message.
    public private(set) var trace: [String] = []

    public static let maximumRelayed = 6
    public static let maximumDatagramsPerStep = 20_000

    /// A node after 15 s among its neighbours, built once and copied for every run (a value type).
    public static let prepared = NodeFuzzHarness(attackers: 3, neighbors: 8, providers: 4)

    public init(attackers count: Int, neighbors neighborCount: Int, providers: Int) {
        var keys = SeededRandom(seed: 77)
        let identity = Identity.generate(using: &keys)
        let neighborIdentities = (0..<neighborCount).map { _ in Identity.generate(using: &keys) }
        let neighborEndpoints = (0..<neighborCount).map {
            Endpoint(address: .v4(0xC633_6410 + UInt32($0)), port: 4747)  // 198.51.100.16…
        }
        var config = NodeConfig()
        config.relay.isRelay = true
        config.relay.reachabilityMode = .public
        config.relay.localEndpoints = [nodeEndpoint]
        config.advertisedEndpoints = [nodeEndpoint]
        var setupRNG = SeededRandom(seed: 78)
        node = NodeInstance(identity: identity, config: config, now: now, rng: &setupRNG)
        for index in 0..<neighborCount {
            var neighborConfig = NodeConfig()
            neighborConfig.relay.reachabilityMode = .public
            neighborConfig.relay.localEndpoints = [neighborEndpoints[index]]
            neighborConfig.advertisedEndpoints = [neighborEndpoints[index]]
            neighborConfig.bootstrap = [DialTarget(publicKey: identity.publicKey, endpoint: nodeEndpoint)]
            if index < providers {
                var provide = ProvideConfig()
                provide.location = ServiceProposal.Location(country: index % 2 == 0 ? "DE" : "NL")
                provide.pricePerGiB = 1000 * UInt64(index + 1)
                neighborConfig.market.provide = provide
            }
            neighbors.append(
                Neighbor(
                    instance: NodeInstance(
                        identity: neighborIdentities[index], config: neighborConfig, now: now, rng: &setupRNG),
                    endpoint: neighborEndpoints[index]))
        }
        for index in 0..<count {
            let home = Endpoint(address: .v4(0xCB00_7101 + UInt32(index)), port: 5000 + UInt16(index))  // 203.0.113.x
            attackers.append(Attacker(sessions: SessionManager(identity: Identity.generate(using: &keys)), home: home))
        }
        // Fifteen seconds of honest life, in 100 ms steps. Invariants are not checked here: nothing
        // has attacked yet, and no victim address is known to anyone.
        var queue = node.start(now: now, rng: &rng).sendsFrom(nodeEndpoint)
        for index in neighbors.indices {
            queue += neighbors[index].instance.start(now: now, rng: &rng).sendsFrom(neighbors[index].endpoint)
        }
        try? drain(queue)
        for _ in 0..<150 {
            now = now + .milliseconds(100)
            try? tickEveryone()
        }
        steps = 0
    }

    // MARK: - Running

    /// Runs every operation in `bytes` (at most `maximumSteps`), checking the invariants after each.
    public mutating func run(_ bytes: [UInt8], maximumSteps: Int = 256) throws(NodeFuzzViolation) {
        checking = true
        input = bytes
        cursor = 0
        while cursor < input.count, steps < maximumSteps {
            try step()
        }
    }

    mutating func step() throws(NodeFuzzViolation) {
        steps += 1
        let op = Int(byte()) % 13
        let attacker = Int(byte()) % attackers.count
        let source = self.source(byte(), attacker: attacker)
        let name: String
        switch op {
        case 0:
            name = "handshake a\(attacker) from \(source)"
            let effects = attackers[attacker].sessions.rehandshake(
                node.identity.publicKey, path: .direct(nodeEndpoint), now: now, rng: &rng)
            try deliver(attackerEffects: effects, attacker: attacker, from: source)
        case 1:
            name = "ping a\(attacker) from \(source)"
            try send(Frame.ping(nonce: word()).encoded(), attacker: attacker, from: source)
        case 2:
            name = "find-node a\(attacker) from \(source)"
            let message = DHTMessage(id: word(), flags: [.server], body: .findNode(target: key()))
            try send(Frame.dht(message).encoded(), attacker: attacker, from: source)
        case 3:
            name = "find-value a\(attacker) from \(source)"
            let message = DHTMessage(id: word(), flags: [], body: .findValue(key: key(), page: UInt16(byte() % 4)))
            try send(Frame.dht(message).encoded(), attacker: attacker, from: source)
        case 4:
            name = "proposal-sync a\(attacker) from \(source)"
            let request = ProposalSyncMessage.request(
                .init(requestID: UInt32(truncatingIfNeeded: word()), range: .full, maxPages: UInt16(byte())))
            try send(Frame.opaque(.proposalSync, request.encoded()).encoded(), attacker: attacker, from: source)
        case 5:
            name = "reserve a\(attacker) from \(source)"
            let reserve = RelayMessage.reserve(requestID: UInt32(truncatingIfNeeded: word()))
            try send(Frame.opaque(.relay, reserve.encoded()).encoded(), attacker: attacker, from: source)
        case 6:
            name = "forged relayed handshake via a\(attacker)"
            try openRelayed(via: attacker)
        case 7:
            name = "punch at the victims"
            let nonce = word()
            try relayedSend(relayMessage: .punchConnect(nonce: nonce, candidates: Self.victims))
            try relayedSend(relayMessage: .punchSync(nonce: nonce))
        case 8:
            name = "dial-back request a\(attacker) from \(source)"
            let request = RelayMessage.dialBackRequest(nonce: word(), endpoint: source)
            try send(Frame.opaque(.relay, request.encoded()).encoded(), attacker: attacker, from: source)
        case 9:
            let channel = FrameChannel.allCases[Int(byte()) % FrameChannel.allCases.count]
            name = "raw \(channel) a\(attacker) from \(source)"
            try send([channel.rawValue] + bytes(Int(byte()) % 96), attacker: attacker, from: source)
        case 10:
            name = "early data from a fresh identity at \(source)"
            try earlyData(from: source)
        case 11:
            let wait = Duration.milliseconds(50 * Int64(byte()) + 1)
            name = "wait \(wait)"
            now = now + wait
            try tickEveryone()
        default:
            name = "garbage from \(source)"
            try receive(bytes(1 + Int(byte()) % 160), from: source)
        }
        if trace.count < 512 { trace.append(name) }
        try check(after: name)
    }

    // MARK: - Operations

    /// Seals `frame` on the attacker's session (handshaking first when there is none, from its home)
    /// and delivers the datagrams from `source`.
    mutating func send(_ frame: [UInt8], attacker: Int, from source: Endpoint) throws(NodeFuzzViolation) {
        if !attackers[attacker].sessions.isEstablished(node.identity.publicKey) {
            let effects = attackers[attacker].sessions.connect(
                node.identity.publicKey, endpoint: nodeEndpoint, now: now, rng: &rng)
            try deliver(attackerEffects: effects, attacker: attacker, from: attackers[attacker].home)
        }
        let effects = attackers[attacker].sessions.send(frame, to: node.identity.publicKey, now: now, rng: &rng)
        try deliver(attackerEffects: effects, attacker: attacker, from: source)
    }

    /// A new identity handshakes with the node inside `deliver` frames from `relay`, which the node
    /// never reserved on nor dialled through.
    mutating func openRelayed(via relay: Int) throws(NodeFuzzViolation) {
        guard relayed.count < Self.maximumRelayed else { return }
        var keys = SeededRandom(seed: freshSeed)
        freshSeed += 1
        var inner = SessionManager(identity: Identity.generate(using: &keys))
        let effects = inner.connect(node.identity.publicKey, endpoint: Self.relayedView, now: now, rng: &rng)
        relayed.append(Relayed(sessions: inner, relay: relay))
        try forwardRelayed(effects, index: relayed.count - 1)
    }

    /// The newest relayed identity sends a relay-channel message on its end-to-end session.
    mutating func relayedSend(relayMessage: RelayMessage) throws(NodeFuzzViolation) {
        guard !relayed.isEmpty else { return }
        let index = relayed.count - 1
        let frame = Frame.opaque(.relay, relayMessage.encoded()).encoded()
        let effects = relayed[index].sessions.send(frame, to: node.identity.publicKey, now: now, rng: &rng)
        try forwardRelayed(effects, index: index)
    }

    /// Wraps a relayed identity's datagrams in `deliver` frames from its relay.
    mutating func forwardRelayed(_ effects: [SessionEffect], index: Int) throws(NodeFuzzViolation) {
        let relay = relayed[index].relay
        let key = relayed[index].sessions.identity.publicKey
        for case .send(let bytes, _) in effects {
            let deliver = RelayMessage.deliver(peer: key, bytes: bytes)
            try send(Frame.opaque(.relay, deliver.encoded()).encoded(), attacker: relay, from: attackers[relay].home)
        }
    }

    /// A handshake initiation from a fresh identity carrying a frame as 0-RTT data.
    mutating func earlyData(from source: Endpoint) throws(NodeFuzzViolation) {
        var keys = SeededRandom(seed: freshSeed)
        freshSeed += 1
        var fresh = SessionManager(identity: Identity.generate(using: &keys))
        fresh.addPeer(node.identity.publicKey, path: .direct(nodeEndpoint))
        let channel = FrameChannel.allCases[Int(byte()) % FrameChannel.allCases.count]
        let frame: [UInt8]
        switch channel {
        case .dht: frame = Frame.dht(DHTMessage(id: word(), flags: [], body: .findNode(target: key()))).encoded()
        case .proposalSync:
            let request = ProposalSyncMessage.request(.init(requestID: 1, range: .full, maxPages: 255))
            frame = Frame.opaque(.proposalSync, request.encoded()).encoded()
        default: frame = [channel.rawValue] + bytes(Int(byte()) % 64)
        }
        for case .send(let bytes, _) in fresh.send(frame, to: node.identity.publicKey, early: true, now: now, rng: &rng)
        {
            try receive(bytes, from: source)
        }
    }

    // MARK: - Plumbing

    mutating func deliver(
        attackerEffects: [SessionEffect], attacker: Int, from source: Endpoint
    )
        throws(NodeFuzzViolation)
    {
        var queue: [Datagram] = []
        for case .send(let bytes, _) in attackerEffects {
            queue.append(Datagram(bytes: bytes, from: source, to: nodeEndpoint))
        }
        try drain(queue)
    }

    /// One datagram into the node, then everything that follows from it.
    mutating func receive(_ datagram: [UInt8], from source: Endpoint) throws(NodeFuzzViolation) {
        try drain([Datagram(bytes: datagram, from: source, to: nodeEndpoint)])
    }

    mutating func tickEveryone() throws(NodeFuzzViolation) {
        var queue = node.tick(now: now, rng: &rng).sendsFrom(nodeEndpoint)
        for index in neighbors.indices {
            queue += neighbors[index].instance.tick(now: now, rng: &rng).sendsFrom(neighbors[index].endpoint)
        }
        try drain(queue)
    }

    /// A datagram in flight between the participants (delivered at once, in order).
    struct Datagram: Sendable {
        var bytes: [UInt8]
        var from: Endpoint
        var to: Endpoint
    }

    /// Delivers datagrams until none is left (or a bound is reached): to the node, to a neighbour,
    /// to an attacker (who answers at the session layer, and plays relay for its relayed
    /// identities), or to a victim (counted, never answered).
    mutating func drain(_ initial: [Datagram]) throws(NodeFuzzViolation) {
        var queue = initial
        var delivered = 0
        defer { datagramsDelivered += delivered }
        while !queue.isEmpty, delivered < Self.maximumDatagramsPerStep {
            let datagram = queue.removeFirst()
            delivered += 1
            if datagram.from == nodeEndpoint, checking { try checkDestination(datagram.to) }
            if Self.victims.contains(datagram.to) {
                guard datagram.from == nodeEndpoint else { continue }
                if datagram.bytes.first == 1 {
                    initiationsToVictim[datagram.to, default: 0] += 1
                } else {
                    bytesToVictim[datagram.to, default: 0] += datagram.bytes.count
                }
                continue
            }
            if datagram.to == nodeEndpoint {
                if Self.victims.contains(datagram.from) {
                    bytesFromVictim[datagram.from, default: 0] += datagram.bytes.count
                }
                queue += node.receive(datagram.bytes, from: datagram.from, now: now, rng: &rng).sendsFrom(nodeEndpoint)
            } else if let index = neighbors.firstIndex(where: { $0.endpoint == datagram.to }) {
                queue += neighbors[index].instance.receive(datagram.bytes, from: datagram.from, now: now, rng: &rng)
                    .sendsFrom(neighbors[index].endpoint)
            } else if let index = attackers.firstIndex(where: { $0.home == datagram.to }),
                datagram.from == nodeEndpoint
            {
                let home = attackers[index].home
                for answer in attackers[index].sessions.receive(
                    datagram.bytes, from: .direct(nodeEndpoint), now: now, rng: &rng)
                {
                    switch answer {
                    case .send(let reply, _): queue.append(Datagram(bytes: reply, from: home, to: nodeEndpoint))
                    case .deliver(_, let frame): queue += relayedDeliveries(frame, relay: index)
                    default: break
                    }
                }
            }
        }
    }

    /// A `forward` the node sent to an attacker it takes for a relay: hand the bytes to the relayed
    /// identity and carry its answers back as `deliver` frames.
    mutating func relayedDeliveries(_ frame: [UInt8], relay: Int) -> [Datagram] {
        guard frame.first == FrameChannel.relay.rawValue,
            case .forward(let peer, let bytes)? = try? RelayMessage(decoding: Array(frame.dropFirst())),
            let index = relayed.firstIndex(where: { $0.sessions.identity.publicKey == peer && $0.relay == relay })
        else { return [] }
        var out: [Datagram] = []
        let answers = relayed[index].sessions.receive(bytes, from: .direct(Self.relayedView), now: now, rng: &rng)
        for case .send(let reply, _) in answers {
            let deliver = Frame.opaque(.relay, RelayMessage.deliver(peer: peer, bytes: reply).encoded()).encoded()
            for case .send(let datagram, _) in attackers[relay].sessions.send(
                deliver, to: node.identity.publicKey, now: now, rng: &rng)
            {
                out.append(Datagram(bytes: datagram, from: attackers[relay].home, to: nodeEndpoint))
            }
        }
        return out
    }

    // MARK: - Invariants

    /// A relayed session path cannot reach the socket at all (`NodeEffect.send` carries an `Endpoint`,
    /// never a `PeerPath`); what is checked here is where real datagrams go.
    func checkDestination(_ endpoint: Endpoint) throws(NodeFuzzViolation) {
        if endpoint.address.isDiscardOnly { throw violation("a datagram to the discard-only 100::/64 (\(endpoint))") }
        if endpoint.port == 0 { throw violation("a datagram to port 0 (\(endpoint))") }
        if endpoint.address.isUnspecified { throw violation("a datagram to an unspecified address (\(endpoint))") }
    }

    func check(after operation: String) throws(NodeFuzzViolation) {
        guard checking else { return }
        for victim in Self.victims {
            let sent = bytesToVictim[victim] ?? 0
            let received = bytesFromVictim[victim] ?? 0
            if sent > 3 * received {
                throw violation("sent \(sent) bytes to \(victim), which sent \(received) and never proved its address")
            }
        }
        let queued = node.sessions.queuedBytes
        if queued > node.config.sessions.maximumQueuedBytes || queued != node.sessions.scannedQueuedBytes {
            throw violation("queued bytes \(queued) (scanned \(node.sessions.scannedQueuedBytes)) off budget or books")
        }
        if node.sessions.peerCount > node.config.sessions.maximumPeers {
            throw violation("\(node.sessions.peerCount) session peers, over the cap")
        }
    }

    func violation(_ invariant: String) -> NodeFuzzViolation {
        NodeFuzzViolation(step: steps, operation: trace.last ?? "start", invariant: invariant)
    }

    // MARK: - Reading the input

    mutating func byte() -> UInt8 {
        guard cursor < input.count else { return 0 }
        defer { cursor += 1 }
        return input[cursor]
    }

    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in byte() } }

    mutating func word() -> UInt64 { bytes(8).reduce(0) { $0 << 8 | UInt64($1) } }

    mutating func key() -> Key256 { Key256(bytes: bytes(32))! }

    /// A victim's address, or (two choices in six) the attacker's own.
    func source(_ selector: UInt8, attacker: Int) -> Endpoint {
        let choice = Int(selector) % (Self.victims.count + 2)
        return choice < Self.victims.count ? Self.victims[choice] : attackers[attacker].home
    }
}

extension [NodeEffect] {
    /// The datagrams among these effects, as sent from `source`.
    fileprivate func sendsFrom(_ source: Endpoint) -> [NodeFuzzHarness.Datagram] {
        compactMap {
            guard case .send(let bytes, let destination) = $0 else { return nil }
            return NodeFuzzHarness.Datagram(bytes: bytes, from: source, to: destination)
        }
    }
}
