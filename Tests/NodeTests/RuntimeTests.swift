import Logging
import NIOPosix
import Node
import NodeRuntime
import Testing
import UmbraCore
import UmbraTestKit

#if canImport(Glibc)
import Glibc
#endif

/// Real nodes on real UDP sockets on loopback, in this process.
struct LiveNode {
    let host: NodeDriver
    let identity: Identity
    var endpoint: Endpoint

    static func start(seed: UInt64) async throws -> LiveNode {
        let identity = identities(1, seed: seed)[0]
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        var rng = SeededRandom(seed: seed)
        let host = NodeDriver(
            instance: NodeInstance(identity: identity, config: NodeConfig(), rng: &rng),
            eventLoop: MultiThreadedEventLoopGroup.singleton.next(), logger: logger)
        try await host.start(host: "127.0.0.1", port: 0)
        let endpoint = try await host.snapshot().listen
        return LiveNode(host: host, identity: identity, endpoint: endpoint)
    }

    var target: DialTarget { DialTarget(publicKey: identity.publicKey, endpoint: endpoint) }

    /// Polls (bounded) until `condition` holds for this node's snapshot.
    func wait(seconds: Double = 10, until condition: @escaping (NodeSnapshot) -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if condition(try await host.snapshot()) { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}

@Suite("Runtime over real UDP on loopback", .serialized)
struct RuntimeTests {
    @Test func meshHandshakesAndPingsOverRealSockets() async throws {
        var nodes: [LiveNode] = []
        for seed in 100..<104 as Range<UInt64> { nodes.append(try await LiveNode.start(seed: seed)) }
        defer { for node in nodes { Task { await node.host.stop() } } }
        for node in nodes {
            for other in nodes where other.identity.publicKey != node.identity.publicKey {
                try await node.host.connect(other.target)
            }
        }
        for node in nodes {
            #expect(try await node.wait { $0.establishedPeerCount == 3 })
        }
        let rtt = try await nodes[0].host.ping(nodes[2].identity.publicKey, timeout: .seconds(2))
        #expect(rtt > .zero && rtt < .seconds(1))
        let snapshot = try await nodes[0].host.snapshot()
        #expect(snapshot.sessionCounters.droppedTotal == 0)
        for node in nodes { await node.host.stop() }
    }

    @Test func tenThousandRandomDatagramsAreCountedAndAFreshHandshakeStillWorks() async throws {
        let victim = try await LiveNode.start(seed: 200)
        defer { Task { await victim.host.stop() } }
        let sent = try sendGarbage(count: 10_000, to: victim.endpoint, seed: 77)
        #expect(try await victim.wait { $0.sessionCounters.datagramsReceived >= UInt64(sent) })
        let afterGarbage = try await victim.host.snapshot()
        #expect(afterGarbage.sessionCounters.datagramsReceived == UInt64(sent))
        #expect(afterGarbage.sessionCounters.droppedTotal == UInt64(sent))
        #expect(afterGarbage.sessionCounters.dropped[.handshakeFailed, default: 0] == 0)
        #expect(afterGarbage.knownPeerCount == 0)

        let friend = try await LiveNode.start(seed: 201)
        defer { Task { await friend.host.stop() } }
        try await friend.host.connect(victim.target)
        #expect(try await victim.wait { $0.establishedPeerCount == 1 })
        let rtt = try await friend.host.ping(victim.identity.publicKey, timeout: .seconds(2))
        #expect(rtt > .zero)
        await friend.host.stop()
        await victim.host.stop()
    }

    /// Sends `count` random datagrams (random sizes and type bytes) from a plain UDP socket,
    /// paced so the loopback receive queue never overflows. Returns how many were sent.
    func sendGarbage(count: Int, to endpoint: Endpoint, seed: UInt64) throws -> Int {
        guard case .v4(let address) = endpoint.address else { return 0 }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var destination = sockaddr_in()
        destination.sin_family = sa_family_t(AF_INET)
        destination.sin_port = endpoint.port.bigEndian
        destination.sin_addr.s_addr = address.bigEndian
        var rng = SeededRandom(seed: seed)
        var sent = 0
        for index in 0..<count {
            var bytes = rng.bytes(Int.random(in: 0...300, using: &rng))
            // A quarter look like our message types, to reach the deeper checks.
            if !bytes.isEmpty, index % 4 == 0 { bytes[0] = UInt8.random(in: 1...4, using: &rng) }
            let result = bytes.withUnsafeBytes { raw in
                withUnsafePointer(to: &destination) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
            if result >= 0 { sent += 1 }
            if index % 200 == 199 { usleep(2000) }
        }
        return sent
    }
}
