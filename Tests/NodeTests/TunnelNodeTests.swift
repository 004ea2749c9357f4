import Dialogue
import NetSim
import Proposals
import Testing
import Tunnel
import UmbraCore
import UmbraTestKit

@testable import Node

/// IPv4 packets for the data plane tests: a valid header (checksum included) and a UDP or TCP
/// header with the ports, then `payload` bytes.
enum TestPacket {
    static func ipv4(
        from source: UInt32, to destination: UInt32, protocol proto: UInt8 = 17, destinationPort: UInt16 = 53,
        payload: Int = 32, dontFragment: Bool = true
    ) -> [UInt8] {
        let transport = proto == 6 ? 20 : 8
        let total = 20 + transport + payload
        var bytes = [UInt8](repeating: 0, count: total)
        bytes[0] = 0x45
        bytes[2] = UInt8(total >> 8)
        bytes[3] = UInt8(total & 0xFF)
        bytes[6] = dontFragment ? 0x40 : 0
        bytes[8] = 64
        bytes[9] = proto
        for index in 0..<4 {
            bytes[12 + index] = UInt8(truncatingIfNeeded: source >> (24 - 8 * index))
            bytes[16 + index] = UInt8(truncatingIfNeeded: destination >> (24 - 8 * index))
        }
        var sum: UInt32 = 0
        for index in stride(from: 0, to: 20, by: 2) { sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1]) }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        let checksum = ~UInt16(sum)
        bytes[10] = UInt8(checksum >> 8)
        bytes[11] = UInt8(checksum & 0xFF)
        bytes[20] = 0x30
        bytes[21] = 0x39  // source port 12345
        bytes[22] = UInt8(destinationPort >> 8)
        bytes[23] = UInt8(destinationPort & 0xFF)
        if proto == 17 {
            bytes[24] = UInt8((8 + payload) >> 8)
            bytes[25] = UInt8((8 + payload) & 0xFF)
        } else {
            bytes[32] = 0x50  // data offset 5
        }
        for index in 0..<payload { bytes[20 + transport + index] = UInt8(truncatingIfNeeded: index) }
        return bytes
    }

    /// 198.18.4.1: the test network's "public" web host.
    static let web: UInt32 = 0xC612_0401
}

/// The tunnel data plane through whole nodes (sessions, dialogue, egress policy) in NetSim: what the
/// consumer's TUN device reads reaches the provider's, and only what may.
@Suite("Tunnel through the node")
struct TunnelNodeTests {
    /// A consumer (node 0) with an attached tunnel to the provider (node 1).
    static func connected() -> (NetSim, ClientSession) {
        var (sim, _) = MarketTests.market(nodes: 3, providers: [1: MarketTests.provide("DE", priceGiB: 1)])
        sim.run(for: .seconds(2))
        DialogueNodeTests.open(&sim, from: 0, to: 1)
        sim.run(for: .seconds(2))
        guard case .opened(let session)? = DialogueNodeTests.dialogueEvents(sim, node: 0).first else {
            Issue.record("no session opened")
            return (sim, ClientSession.placeholder)
        }
        sim.perform(on: 0) { node, now, _ in
            node.attachTunnel(session, now: now)
            return []
        }
        return (sim, session)
    }

    static func inner(_ session: ClientSession) -> UInt32 {
        guard case .v4(let value) = session.grant.innerIPv4.address else { return 0 }
        return value
    }

    @Test func packetsCrossBothWaysAndAreAccounted() {
        var (sim, session) = Self.connected()
        let inner = Self.inner(session)
        let outbound = TestPacket.ipv4(from: inner, to: TestPacket.web, payload: 100)
        sim.tunnelRead(outbound, at: 0)
        sim.run(for: .milliseconds(500))
        #expect(sim.tunnelPackets(of: 1) == [outbound])
        // The provider's TUN device reads the answer, addressed to the consumer's inner address.
        let reply = TestPacket.ipv4(from: TestPacket.web, to: inner, payload: 500)
        sim.tunnelRead(reply, at: 1)
        sim.run(for: .milliseconds(500))
        #expect(sim.tunnelPackets(of: 0) == [reply])
        let consumer = sim.instance(0).tunnelStatus
        #expect(consumer.consumer?.account.sentBytes == UInt64(outbound.count))
        #expect(consumer.consumer?.account.receivedBytes == UInt64(reply.count))
        let provider = sim.instance(1).tunnelStatus
        #expect(provider.served.count == 1)
        #expect(provider.served.first?.account.receivedBytes == UInt64(outbound.count))
        #expect(provider.served.first?.account.sentBytes == UInt64(reply.count))
        // Once a second the provider's dialogue server learns the bytes (what payments bill from).
        sim.run(for: .seconds(2))
        let served = sim.instance(1).dialogueStatus.served.first
        #expect(served?.bytesIn == UInt64(outbound.count))
        #expect(served?.bytesOut == UInt64(reply.count))
        // Both directions took the zero-copy path.
        #expect(consumer.counters.slowPath == 0 && provider.counters.slowPath == 0)
        // Every 10 s the consumer reports its meters; the provider keeps them next to its own.
        sim.run(for: .seconds(10))
        let claimed = sim.instance(1).tunnelStatus.served.first?.consumerReport
        #expect(claimed?.bytesSent == UInt64(outbound.count))
        #expect(claimed?.bytesReceived == UInt64(reply.count))
        #expect(claimed?.packetsSent == 1 && claimed?.packetsReceived == 1)
    }

    @Test func aForgedSourceAPrivateDestinationTheMetadataAddressAndSMTPGetNothingThrough() {
        var (sim, session) = Self.connected()
        let inner = Self.inner(session)
        let forbidden: [([UInt8], String)] = [
            (TestPacket.ipv4(from: inner + 1, to: TestPacket.web), "egress_spoofed_source"),
            (TestPacket.ipv4(from: inner, to: 0xA9FE_A9FE), "egress_blocked_destination_cloud_metadata"),
            (TestPacket.ipv4(from: inner, to: 0xC0A8_0101), "egress_blocked_destination_private"),
            (TestPacket.ipv4(from: inner, to: 0x0A00_0001), "egress_blocked_destination_private"),
            (TestPacket.ipv4(from: inner, to: 0x7F00_0001), "egress_blocked_destination_loopback"),
            (TestPacket.ipv4(from: inner, to: 0x6440_0001), "egress_blocked_destination_carrier_grade_nat"),
            (TestPacket.ipv4(from: inner, to: TestPacket.web, protocol: 6, destinationPort: 25), "egress_blocked_port"),
        ]
        for (packet, _) in forbidden { sim.tunnelRead(packet, at: 0) }
        sim.run(for: .milliseconds(500))
        #expect(sim.tunnelPackets(of: 1).isEmpty)
        let drops = sim.instance(1).tunnelStatus.counters.drops
        #expect(drops.values.reduce(0, +) == UInt64(forbidden.count))
        let reasons = Set(drops.keys.map(\.description))
        for (_, reason) in forbidden {
            #expect(reasons.contains { $0.hasPrefix(reason) }, "no drop counted as \(reason): \(reasons)")
        }
        // Submission on 587 and an ordinary public destination pass.
        let allowed = TestPacket.ipv4(from: inner, to: TestPacket.web, protocol: 6, destinationPort: 587)
        sim.tunnelRead(allowed, at: 0)
        sim.run(for: .milliseconds(500))
        #expect(sim.tunnelPackets(of: 1) == [allowed])
    }

    @Test func aPeerWithoutADialogueGetsNothingThroughAndTheConsumerTakesOnlyItsOwnAddress() {
        var (sim, session) = Self.connected()
        let inner = Self.inner(session)
        // Node 2 has no dialogue with the provider: it attaches a forged tunnel and sends anyway.
        let provider = sim.instance(1).identity.publicKey
        let forged = ClientSession(
            provider: provider, requestID: 1, sessionID: 99, mode: .fullTunnel, grant: session.grant,
            openedAt: sim.now, keepaliveInterval: .seconds(5))
        let endpoint = NetSim.endpoint(forNode: 1)
        sim.perform(on: 2) { node, now, _ in
            _ = node.sessions.addPeer(provider, path: .direct(endpoint))
            node.attachTunnel(forged, now: now)
            return []
        }
        sim.tunnelRead(TestPacket.ipv4(from: inner, to: TestPacket.web), at: 2)
        sim.run(for: .seconds(1))
        #expect(sim.tunnelPackets(of: 1).isEmpty)
        #expect(sim.instance(1).tunnelStatus.counters.drops[.notServed] == 1)
        // A packet for another consumer's address is not delivered to this one.
        sim.tunnelRead(TestPacket.ipv4(from: TestPacket.web, to: inner + 7), at: 1)
        sim.run(for: .milliseconds(500))
        #expect(sim.tunnelPackets(of: 0).isEmpty)
        #expect(sim.instance(1).tunnelStatus.counters.drops[.noRoute] == 1)
    }

    @Test func aPacketAboveTheMTUGetsAnICMPTooBigBackAndNothingElse() {
        var (sim, session) = Self.connected()
        let inner = Self.inner(session)
        let big = TestPacket.ipv4(from: inner, to: TestPacket.web, payload: 1500)
        sim.tunnelRead(big, at: 0)
        sim.run(for: .milliseconds(500))
        #expect(sim.tunnelPackets(of: 1).isEmpty)
        let replies = sim.tunnelPackets(of: 0)
        #expect(replies.count == 1)
        if let reply = replies.first {
            let info = reply.withUnsafeBytes { try? IPPacketInfo(parsing: $0) }
            #expect(info?.destination == .v4(inner))
            #expect(info?.source == session.grant.gateway)
            #expect(info?.icmpType == 3 && info?.icmpCode == 4)
            #expect(Int(reply[26]) << 8 | Int(reply[27]) == 1420)  // next-hop MTU
        }
        #expect(sim.instance(0).tunnelStatus.counters.icmpTooBigSent == 1)
    }

    @Test func afterTheDialogueEndsPacketsStop() {
        var (sim, session) = Self.connected()
        let inner = Self.inner(session)
        let provider = session.provider
        sim.perform(on: 0) { node, now, rng in node.closeDialogue(with: provider, now: now, rng: &rng) }
        sim.run(for: .seconds(1))
        sim.tunnelRead(TestPacket.ipv4(from: inner, to: TestPacket.web), at: 0)
        sim.run(for: .milliseconds(500))
        #expect(sim.tunnelPackets(of: 1).isEmpty)
        #expect(sim.instance(0).tunnelStatus.consumer == nil)
    }
}

/// The tunnel over a relayed session: the consumer behind a symmetric NAT (node 4), the provider
/// behind an endpoint-independent one (node 2); punching fails, so every packet takes the relay.
@Suite("Tunnel over a relay")
struct RelayedTunnelTests {
    @Test func packetsRideTheRelayAndTheRelayedMTUIsEnforcedWithICMP() {
        var sim = RelayScenario.make(seed: 11) { index, config in
            if index == 2 { config.market.provide = MarketTests.provide("NL", priceGiB: 1) }
        }
        sim.run(for: .seconds(20))
        let provider = sim.instance(2).identity.publicKey
        let record = RelayScenario.record(of: 2, in: sim)
        sim.perform(on: 4) { node, now, rng in
            node.dial(provider, record: record, now: now, rng: &rng)
                + node.openDialogue(with: provider, now: now, rng: &rng)
        }
        sim.run(for: .seconds(5))
        guard case .opened(let session)? = DialogueNodeTests.dialogueEvents(sim, node: 4).first else {
            Issue.record("no session opened: \(DialogueNodeTests.dialogueEvents(sim, node: 4))")
            return
        }
        #expect(sim.instance(4).sessionPath(of: provider)?.path == .relayed)
        sim.perform(on: 4) { node, now, _ in
            node.attachTunnel(session, now: now)
            return []
        }
        let inner = TunnelNodeTests.inner(session)
        let fits = TestPacket.ipv4(from: inner, to: TestPacket.web, payload: TunnelNodeConfig.relayedMTU - 28)
        #expect(fits.count == TunnelNodeConfig.relayedMTU)
        sim.tunnelRead(fits, at: 4)
        sim.run(for: .seconds(1))
        #expect(sim.tunnelPackets(of: 2) == [fits])
        let reply = TestPacket.ipv4(from: TestPacket.web, to: inner, payload: 900)
        sim.tunnelRead(reply, at: 2)
        sim.run(for: .seconds(1))
        #expect(sim.tunnelPackets(of: 4) == [reply])
        #expect(sim.instance(4).tunnelStatus.counters.slowPath == 1)
        #expect(sim.instance(2).tunnelStatus.counters.slowPath == 1)
        // One byte more than a relay forward holds: an ICMP "too big" naming the relayed MTU.
        sim.clearTunnelPackets(of: 4)
        let big = TestPacket.ipv4(from: inner, to: TestPacket.web, payload: TunnelNodeConfig.relayedMTU - 27)
        sim.tunnelRead(big, at: 4)
        sim.run(for: .seconds(1))
        #expect(sim.tunnelPackets(of: 2).count == 1)
        let icmp = sim.tunnelPackets(of: 4)
        #expect(icmp.count == 1)
        if let packet = icmp.first {
            #expect(packet[20] == 3 && packet[21] == 4)
            #expect(Int(packet[26]) << 8 | Int(packet[27]) == TunnelNodeConfig.relayedMTU)
        }
    }
}

extension ClientSession {
    static let placeholder = ClientSession(
        provider: identity(7).publicKey, requestID: 0, sessionID: 0,
        mode: .fullTunnel,
        grant: SessionGrant(
            innerIPv4: InterfaceAddress(address: .v4(0), prefixLength: 32), gateway: .v4(0), dnsServers: [], mtu: 1420,
            keepaliveSeconds: 5), openedAt: .zero, keepaliveInterval: .seconds(5))
}
