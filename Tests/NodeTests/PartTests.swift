// Each part alone: events in, what it queued in the kernel (notices, frames, events) out.

import Gossip
import Kademlia
import Proposals
import Relay
import Sessions
import Testing
import Tunnel
import UmbraCore

@testable import Dialogue
@testable import Node

/// One part driven by hand over a real kernel (sessions, DHT) that no network is attached to.
struct PartBench<Part: NodePart> {
    var part: Part
    var kernel: NodeKernel
    var now = Instant(nanoseconds: 1_700_000_000_000_000_000)
    var rng = SeededRandom(seed: 7)

    init(identity: Identity, config: NodeConfig, make: (Identity, NodeConfig) -> Part) {
        var rng = SeededRandom(seed: 1)
        kernel = NodeKernel(identity: identity, config: config, now: now, rng: &rng)
        part = make(identity, config)
    }

    /// Feeds one event; returns the notices the part queued (and drops the rest of the outbox).
    @discardableResult
    mutating func feed(_ event: PartEvent) -> [NodeNotice] {
        part.handle(event, node: &kernel, now: now, rng: &rng)
        return takeNotices()
    }

    mutating func takeNotices() -> [NodeNotice] {
        defer { kernel.pending.removeAll() }
        return kernel.pending.compactMap { if case .notice(let notice) = $0 { notice } else { nil } }
    }

    mutating func takeEvents() -> [NodeEvent] {
        kernel.takeEffects().compactMap { if case .event(let event) = $0 { event } else { nil } }
    }
}

private let network = "umbra-main"

private func identities(_ count: Int, seed: UInt64) -> [Identity] {
    var rng = SeededRandom(seed: seed)
    return (0..<count).map { _ in Identity.generate(using: &rng) }
}

@Suite("Parts, each alone")
struct PartTests {
    // MARK: - Gossip

    /// A gossip part whose peers 1...3 subscribed to `proposals` and grafted us.
    static func gossipBench() -> (PartBench<GossipPart>, [Identity]) {
        let ids = identities(4, seed: 3)
        var bench = PartBench(identity: ids[0], config: NodeConfig()) {
            GossipPart(identity: $0, config: $1.market, topics: [.proposals])
        }
        bench.feed(.start)
        for peer in ids[1...] {
            for message in [GossipMessage.subscribe([.proposals]), .graft(.proposals)] {
                bench.feed(.frame(.gossip, message.encoded(), from: peer.publicKey))
            }
        }
        return (bench, ids)
    }

    @Test func gossipHoldsAMessageUntilItsTopicOwnerAnswers() {
        var (bench, ids) = Self.gossipBench()
        #expect(bench.part.router.mesh(.proposals).count == 3)
        let data: [UInt8] = [1, 2, 3]
        let id = MessageID(topic: .proposals, data: data)
        let notices = bench.feed(
            .frame(.gossip, GossipMessage.publish(topic: .proposals, data: data).encoded(), from: ids[1].publicKey))
        #expect(notices == [.gossipValidate(.proposals, data, id, from: ids[1].publicKey)])
        #expect(bench.part.router.counters.forwarded == 0, "nothing forwarded before the verdict")

        bench.feed(.notice(.gossipVerdict(id, .accept)))
        #expect(bench.part.router.counters.forwarded == 2, "to the mesh but the sender")
        #expect(bench.part.counters.verdicts == 1)
    }

    @Test func gossipDropsTopicsNobodyOwnsAndPublishesForItsOwners() {
        var (bench, ids) = Self.gossipBench()
        let ledger = GossipMessage.publish(topic: .ledger, data: [9]).encoded()
        #expect(bench.feed(.frame(.gossip, ledger, from: ids[1].publicKey)).isEmpty)
        #expect(bench.part.router.counters.unsubscribedDrops == 1)

        bench.feed(.notice(.gossipPublish(.proposals, [4, 5])))
        #expect(bench.part.router.counters.published == 1)
        #expect(bench.part.router.counters.publishedCopies == 3, "one copy per subscribed peer")
    }

    // MARK: - Market

    static func marketBench(provide: Bool) -> (PartBench<MarketPart>, [Identity]) {
        let ids = identities(3, seed: 5)
        var config = NodeConfig()
        if provide { config.market.provide = MarketTests.provide("DE", priceGiB: 3) }
        config.advertisedEndpoints = [Endpoint(address: .v4(0xC000_0201), port: 4000)]
        let bench = PartBench(identity: ids[0], config: config) { MarketPart(identity: $0, config: $1) }
        return (bench, ids)
    }

    @Test func marketValidatesProposalsIntoItsStore() {
        var (bench, ids) = Self.marketBench(provide: false)
        let offer = MarketTests.offer(by: ids[1], seq: 1, issued: bench.now).encoded()
        let id = MessageID(topic: .proposals, data: offer)
        let first = bench.feed(.notice(.gossipValidate(.proposals, offer, id, from: ids[2].publicKey)))
        #expect(first == [.offerStored(ids[1].publicKey, serviceType: "ip-tunnel"), .gossipVerdict(id, .accept)])
        #expect(bench.part.store.count == 1)
        let again = bench.feed(.notice(.gossipValidate(.proposals, offer, id, from: ids[2].publicKey)))
        #expect(again == [.gossipVerdict(id, .ignore)])
        var forged = offer
        forged[forged.count - 1] ^= 1
        let forgedID = MessageID(topic: .proposals, data: forged)
        let verdict = bench.feed(.notice(.gossipValidate(.proposals, forged, forgedID, from: ids[2].publicKey)))
        #expect(verdict == [.gossipVerdict(forgedID, .reject)])
        #expect(bench.part.counters.proposalsAccepted == 1 && bench.part.counters.proposalsRejected == 1)
    }

    @Test func providerPublishesItsOfferAndAgainWhenItsContactsChange() throws {
        var (bench, ids) = Self.marketBench(provide: true)
        bench.feed(.start)
        let published = bench.feed(.tick)
        guard case .gossipPublish(.proposals, let bytes)? = published.first else {
            Issue.record("no publish: \(published)")
            return
        }
        let offer = try #require(try SignedProposal(decoding: bytes).offer)
        #expect(offer.provider == ids[0].publicKey)
        #expect(offer.contacts.direct == [Endpoint(address: .v4(0xC000_0201), port: 4000)])

        let relay = ServiceProposal.Relay(
            publicKey: ids[2].publicKey, endpoint: Endpoint(address: .v4(0xC000_0202), port: 4001))
        bench.feed(.notice(.contactsChanged(ServiceProposal.Contacts(direct: [], relays: [relay]))))
        bench.now = bench.now + .seconds(1)
        #expect(bench.feed(.tick).isEmpty, "not before the minimum republish interval")
        bench.now = bench.now + .seconds(2)
        guard case .gossipPublish(_, let again)? = bench.feed(.tick).first else {
            Issue.record("no republish after the contacts changed")
            return
        }
        #expect(try SignedProposal(decoding: again).offer?.contacts.relays == [relay])
    }

    // MARK: - Dialogue and tunnel

    @Test func dialogueServerAdmitsAConsumerAndTellsTheTunnel() throws {
        let ids = identities(2, seed: 11)
        var config = NodeConfig()
        config.market.provide = MarketTests.provide("DE", priceGiB: 1)
        var bench = PartBench(identity: ids[0], config: config) { DialoguePart(identity: $0, config: $1) }
        let request = DialogueMessage.request(
            requestID: 1, serviceType: "ip-tunnel", proposalSeq: 0, mode: .fullTunnel, wantsIPv6: false)
        let notices = bench.feed(.frame(.dialogue, request.encoded(), from: ids[1].publicKey))
        guard case .serving(let session)? = notices.first else {
            Issue.record("not admitted: \(notices)")
            return
        }
        #expect(session.consumer == ids[1].publicKey)
        #expect(bench.takeEvents() == [.dialogue(.served(session))])

        let usage = TunnelUsage(consumer: ids[1].publicKey, sessionID: session.sessionID, bytesIn: 500, bytesOut: 700)
        bench.feed(.notice(.tunnelUsage([usage])))
        let served = try #require(bench.part.server?.session(of: ids[1].publicKey))
        #expect(served.bytesIn == 500 && served.bytesOut == 700)
    }

    @Test func tunnelPassesOnlyWhatTheDialogueAdmitted() {
        let ids = identities(2, seed: 13)
        var config = NodeConfig()
        config.market.provide = MarketTests.provide("DE", priceGiB: 1)
        var bench = PartBench(identity: ids[0], config: config) { TunnelPart(config: $1) }
        let consumer = ids[1].publicKey
        let inner: UInt32 = 0x0A07_0002
        let packet = TestPacket.ipv4(from: inner, to: TestPacket.web)
        func passes(_ bench: inout PartBench<TunnelPart>, _ bytes: [UInt8]) -> Bool {
            let now = bench.now
            return bytes.withUnsafeBytes { bench.part.inbound($0, from: consumer, now: now) } != nil
        }
        #expect(!passes(&bench, packet), "not served yet")

        let session = ServerSession(
            consumer: consumer, source: nil, sessionID: 42, requestID: 1, mode: .fullTunnel,
            innerIPv4: InterfaceAddress(address: .v4(inner), prefixLength: 24), openedAt: bench.now,
            lastHeard: bench.now)
        bench.feed(.notice(.serving(session)))
        #expect(passes(&bench, packet))
        #expect(!passes(&bench, TestPacket.ipv4(from: inner + 1, to: TestPacket.web)), "another source: spoofed")

        bench.now = bench.now + .seconds(2)
        let notices = bench.feed(.tick)
        #expect(
            notices == [
                .tunnelUsage([
                    TunnelUsage(consumer: consumer, sessionID: 42, bytesIn: UInt64(packet.count), bytesOut: 0)
                ])
            ])

        bench.feed(.notice(.serviceEnded(session)))
        #expect(!passes(&bench, packet), "ended: no longer served")
        #expect(bench.part.counters.drops[.notServed] == 2)
    }

    @Test func gossipDropsAPublishLargerThanAMessageInsteadOfTrapping() {
        let ids = identities(1, seed: 15)
        var bench = PartBench(identity: ids[0], config: NodeConfig()) {
            GossipPart(identity: $0, config: $1.market, topics: [.proposals])
        }
        bench.feed(.start)
        bench.feed(.notice(.gossipPublish(.proposals, [UInt8](repeating: 7, count: 1001))))
        #expect(bench.part.counters.publishesTooLarge == 1)
    }

    @Test func tunnelHostStateFollowsTheShellsAnswers() {
        let ids = identities(2, seed: 14)
        var bench = PartBench(identity: ids[0], config: NodeConfig()) { TunnelPart(config: $1) }
        var session = ClientSession.placeholder
        session.provider = ids[1].publicKey
        let plan = ConsumerTunnelPlan(session: session, options: ConsumerTunnelOptions(), underlay: nil)
        func hostRequests(_ bench: inout PartBench<TunnelPart>) -> [HostRequest] {
            bench.kernel.takeEffects().compactMap { if case .host(let request) = $0 { request } else { nil } }
        }

        bench.part.setUpHost(plan, &bench.kernel)
        let setUp = hostRequests(&bench)
        #expect(setUp.map(\.action) == [.setUpConsumerTunnel(plan)])
        #expect(bench.part.consumer == nil, "no packets before the host is ready")
        // An answer to some other request changes nothing.
        bench.feed(.notice(.hostCompleted(HostRequest(token: HostToken(99), action: .tearDownConsumerTunnel), .done)))
        #expect(bench.part.host == .settingUp(setUp[0].token, plan))
        bench.feed(.notice(.hostCompleted(setUp[0], .done)))
        #expect(bench.part.host == .up(plan) && bench.part.consumer?.provider == ids[1].publicKey)

        // The dialogue ends: packets stop, the routes stay until a disconnect.
        bench.feed(.notice(.dialogueEnded(provider: ids[1].publicKey)))
        #expect(bench.part.consumer == nil && bench.part.host == .up(plan))

        #expect(bench.part.tearDownHost(&bench.kernel) == ids[1].publicKey)
        let tearDown = hostRequests(&bench)
        #expect(tearDown.map(\.action) == [.tearDownConsumerTunnel])
        #expect(bench.part.tearDownHost(&bench.kernel) == nil, "already being torn down")
        bench.feed(.notice(.hostCompleted(tearDown[0], .failed("journalled for the next start"))))
        #expect(bench.part.host == .none)

        // A set-up that fails leaves nothing.
        bench.part.setUpHost(plan, &bench.kernel)
        bench.feed(.notice(.hostCompleted(hostRequests(&bench)[0], .failed("no TUN"))))
        #expect(bench.part.host == .none && bench.part.consumer == nil)
    }

    // MARK: - Relay

    @Test func relayPartRejectsUndecodableFramesAndDropsSendsOnUnknownPaths() {
        let ids = identities(2, seed: 11)
        var bench = PartBench(identity: ids[0], config: NodeConfig()) { RelayPart(config: $1, now: .zero) }
        bench.feed(.start)
        bench.feed(.frame(.relay, [0xFF, 0x00], from: ids[1].publicKey))
        #expect(bench.part.counters.framesUndecodable == 1)
        #expect(bench.kernel.counters.framesRejected == 1)
        #expect(bench.takeEvents().contains { if case .frameRejected = $0 { true } else { false } })

        // A datagram along a relayed path the part never allocated goes nowhere.
        bench.part.sendRelayed([1, 2, 3], path: RelayPathID(42), node: &bench.kernel, now: bench.now, rng: &bench.rng)
        #expect(bench.part.counters.forwardsDropped == 1)
        #expect(bench.kernel.pending.isEmpty)
    }

    @Test func relayPartDialsThroughARelayAndWrapsTheSessionsDatagramsInForward() throws {
        let ids = identities(3, seed: 12)
        let (target, relay) = (ids[1].publicKey, ids[2].publicKey)
        let relayEndpoint = Endpoint(address: .v4(0xC000_0203), port: 4002)
        var bench = PartBench(identity: ids[0], config: NodeConfig()) { RelayPart(config: $1, now: .zero) }
        bench.feed(.start)
        // A record with no direct endpoint: the dial goes through its relay at once.
        let record = PeerRecordValue(endpoints: [], relays: [NodeContact(publicKey: relay, endpoint: relayEndpoint)])
        bench.part.dial(target, record: record, &bench.kernel, now: bench.now, rng: &bench.rng)
        #expect(bench.kernel.isKept(relay), "the relay is kept connected")
        let path = try #require(bench.part.paths.index(relay: relay, peer: target))
        #expect(bench.kernel.sessions.path(of: target) == .relayed(path))
        // The handshake to the target leaves along the relayed path (the router hands it back).
        let relayed = bench.kernel.pending.compactMap { item -> [UInt8]? in
            guard case .session(.send(let bytes, .relayed(let id))) = item, id == path else { return nil }
            return bytes
        }
        #expect(relayed.count == 1)
        // ... and the relay, kept connected, gets a handshake at its endpoint.
        #expect(
            bench.kernel.pending.contains {
                if case .session(.send(_, .direct(relayEndpoint))) = $0 { true } else { false }
            })
        bench.kernel.pending.removeAll()

        // The router hands the datagram back: it becomes a `forward` on the session with the relay
        // (queued there until that handshake completes).
        bench.part.sendRelayed(relayed[0], path: path, node: &bench.kernel, now: bench.now, rng: &bench.rng)
        #expect(bench.part.counters.datagramsForwarded == 1 && bench.part.counters.forwardsDropped == 0)
        // A datagram too large for one `forward` is dropped, not cut.
        let large = [UInt8](repeating: 0, count: RelayMessage.maximumForwardBytes + 1)
        bench.part.sendRelayed(large, path: path, node: &bench.kernel, now: bench.now, rng: &bench.rng)
        #expect(bench.part.counters.forwardsDropped == 1)
    }
}
