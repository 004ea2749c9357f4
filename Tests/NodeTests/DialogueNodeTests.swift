import Dialogue
import NetSim
import Proposals
import Testing
import UmbraCore

@testable import Node

/// The consumer↔provider dialogue through whole nodes (sessions, frames, dialogue cores) in NetSim.
@Suite("Dialogue through the node")
struct DialogueNodeTests {
    static func dialogueEvents(_ sim: NetSim, node: Int) -> [DialogueEvent] {
        sim.trace.compactMap { entry in
            guard entry.node == node, case .dialogue(let event) = entry.event else { return nil }
            return event
        }
    }

    static func open(_ sim: inout NetSim, from consumer: Int, to provider: Int) {
        let key = sim.instance(provider).identity.publicKey
        let endpoint = NetSim.endpoint(forNode: provider)
        sim.perform(on: consumer) { node, now, rng in
            _ = node.sessions.addPeer(key, path: .direct(endpoint))
            return node.openDialogue(with: key, now: now, rng: &rng)
        }
    }

    @Test func aConsumerGetsAnInnerAddressAndDeclaresAKilledProviderDeadWithin15Seconds() {
        var (sim, ids) = MarketTests.market(nodes: 3, providers: [1: MarketTests.provide("DE", priceGiB: 1)])
        sim.run(for: .seconds(2))
        Self.open(&sim, from: 0, to: 1)
        sim.run(for: .seconds(2))
        guard case .opened(let session)? = Self.dialogueEvents(sim, node: 0).first else {
            Issue.record("no session opened: \(Self.dialogueEvents(sim, node: 0))")
            return
        }
        #expect(session.provider == ids[1].publicKey)
        #expect(session.grant.innerIPv4.address == .v4(0x0AB6_0002))  // 10.182.0.2, the pool's first
        #expect(session.grant.mtu == 1420)
        #expect(sim.instance(1).dialogueStatus.served.map(\.consumer) == [ids[0].publicKey])
        let stages = sim.instance(0).dialogueStatus.clients.first?.timings.map(\.stage) ?? []
        #expect(stages.contains(.handshake) && stages.contains(.accepted))
        // Keepalives hold it open for a minute.
        sim.run(for: .seconds(60))
        #expect(!Self.dialogueEvents(sim, node: 0).contains { if case .ended = $0 { true } else { false } })
        // The provider dies: dead within 3 missed keepalives (15 s).
        let killedAt = sim.now
        sim.kill(1)
        sim.run(for: .seconds(16))
        let ended = sim.trace.first { entry in
            guard entry.node == 0, case .dialogue(.ended(_, .dead)) = entry.event else { return false }
            return true
        }
        #expect(ended != nil)
        if let ended { #expect(ended.time.since(killedAt) <= .seconds(15)) }
    }

    @Test func closingFreesTheAddressAndANonProviderRejectsWithACode() {
        var (sim, ids) = MarketTests.market(nodes: 3, providers: [1: MarketTests.provide("DE", priceGiB: 1)])
        sim.run(for: .seconds(2))
        Self.open(&sim, from: 0, to: 1)
        sim.run(for: .seconds(2))
        #expect(sim.instance(1).dialogueStatus.served.count == 1)
        let provider = ids[1].publicKey
        sim.perform(on: 0) { node, now, rng in node.closeDialogue(with: provider, now: now, rng: &rng) }
        sim.run(for: .seconds(1))
        #expect(sim.instance(1).dialogueStatus.served.isEmpty)
        // Node 2 provides nothing.
        Self.open(&sim, from: 0, to: 2)
        sim.run(for: .seconds(2))
        let failure = Self.dialogueEvents(sim, node: 0).compactMap { event -> DialogueFailure? in
            if case .failed(_, let failure) = event { return failure }
            return nil
        }
        #expect(failure.first == .rejected(.unknownService, reason: "this node provides no service"))
    }

    @Test func anAllowListProviderRejectsOthersWithNotAllowed() {
        var provide = MarketTests.provide("DE", priceGiB: 1)
        var keys = SeededRandom(seed: 3)
        provide.access = .allowList([Identity.generate(using: &keys).publicKey])
        var (sim, _) = MarketTests.market(nodes: 2, providers: [1: provide])
        sim.run(for: .seconds(2))
        Self.open(&sim, from: 0, to: 1)
        sim.run(for: .seconds(2))
        let rejected = Self.dialogueEvents(sim, node: 0).contains { event in
            if case .failed(_, .rejected(.notAllowed, _)) = event { return true }
            return false
        }
        #expect(rejected)
        #expect(sim.instance(1).dialogueStatus.serverCounters?.rejected[.notAllowed] == 1)
    }
}
