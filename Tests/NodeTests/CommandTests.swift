// Commands with completions in NetSim, seeded and replayable: the connect workflow (choice,
// fetch, failover) and the DHT commands, end to end through whole nodes.

import Kademlia
import NetSim
import Proposals
import Testing
import UmbraCore

@testable import Node

@Suite("Commands in NetSim")
struct CommandTests {
    /// Consumer 0, providers 1 (DE, cheapest), 2 (DE) and 3 (FR), after the offers spread.
    static func market() -> (NetSim, [Identity]) {
        var (sim, ids) = MarketTests.market(
            nodes: 5,
            providers: [
                1: MarketTests.provide("DE", priceGiB: 1), 2: MarketTests.provide("DE", priceGiB: 5),
                3: MarketTests.provide("FR", priceGiB: 1),
            ])
        sim.run(for: .seconds(5))
        #expect(Set(MarketTests.listed(sim, 0)) == Set([1, 2, 3].map { ids[$0].publicKey }))
        return (sim, ids)
    }

    @Test func connectByCountryOpensTheCheapestLiveOffer() {
        var (sim, ids) = Self.market()
        sim.submit(.connect(ConnectRequest(target: .country("de"))), id: CommandID(1), on: 0)
        sim.run(for: .seconds(3))
        guard case .connected(let session, let proposal)? = sim.completion(of: CommandID(1), on: 0) else {
            Issue.record("not connected: \(String(describing: sim.completion(of: CommandID(1), on: 0)))")
            return
        }
        #expect(session.provider == ids[1].publicKey && proposal.provider == ids[1].publicKey)
        #expect(proposal.location.country == "DE")
    }

    @Test func connectByCountryFailsOverWhenTheCheapestProviderIsDead() {
        var (sim, ids) = Self.market()
        sim.kill(1)  // its offer is still held everywhere: the cheapest candidate is dead
        sim.submit(.connect(ConnectRequest(target: .country("DE"))), id: CommandID(7), on: 0)
        sim.run(for: .seconds(4))
        #expect(sim.completion(of: CommandID(7), on: 0) == nil, "still trying the dead provider")
        sim.run(for: .seconds(8))
        guard case .connected(let session, _)? = sim.completion(of: CommandID(7), on: 0) else {
            Issue.record("no failover: \(String(describing: sim.completion(of: CommandID(7), on: 0)))")
            return
        }
        #expect(session.provider == ids[2].publicKey, "the next live DE offer")
        #expect(sim.instance(0).commandsInFlight.isEmpty)
    }

    @Test func connectFailsWithEveryAttemptWhenNoCandidateAnswers() {
        var (sim, ids) = Self.market()
        sim.kill(1)
        sim.kill(2)
        sim.submit(.connect(ConnectRequest(target: .country("DE"))), id: CommandID(2), on: 0)
        sim.run(for: .seconds(15))
        guard case .failed(.noneAnswered(let attempts))? = sim.completion(of: CommandID(2), on: 0) else {
            Issue.record("\(String(describing: sim.completion(of: CommandID(2), on: 0)))")
            return
        }
        #expect(attempts.map(\.provider) == [ids[1].publicKey, ids[2].publicKey], "cheapest first")
    }

    @Test func connectToACountryWithoutProvidersSaysSo() {
        var (sim, _) = Self.market()
        sim.submit(.connect(ConnectRequest(target: .country("JP"))), id: CommandID(3), on: 0)
        sim.run(for: .seconds(5))
        #expect(
            sim.completion(of: CommandID(3), on: 0) == .failed(.noProvider(country: "JP", serviceType: "ip-tunnel")))
    }

    @Test func aDHTLookupAndPutCompleteByID() throws {
        var (sim, ids) = Self.market()
        let key = RecordKey.text("hello")
        let value = try TextRecordValue(name: "hello", text: "world").encoded()
        sim.submit(.publish(.text, key: key, value: value), id: CommandID(10), on: 4)
        sim.run(for: .seconds(2))
        guard case .put(let put)? = sim.completion(of: CommandID(10), on: 4) else {
            Issue.record("no put completion")
            return
        }
        #expect(put.stored > 0)
        sim.submit(.lookup(key, .value), id: CommandID(11), on: 0)
        sim.submit(.ping(ids[1].publicKey, timeout: .seconds(2)), id: CommandID(12), on: 0)
        sim.run(for: .seconds(3))
        guard case .lookup(let report)? = sim.completion(of: CommandID(11), on: 0) else {
            Issue.record("no lookup completion")
            return
        }
        #expect(report.records.contains { $0.value == value })
        guard case .pong? = sim.completion(of: CommandID(12), on: 0) else {
            Issue.record("no pong: \(String(describing: sim.completion(of: CommandID(12), on: 0)))")
            return
        }
        // The same id again while one is in flight, or a ping to a dead peer: busy, then timed out.
        sim.kill(3)
        sim.submit(.ping(ids[3].publicKey, timeout: .seconds(1)), id: CommandID(13), on: 0)
        sim.submit(.ping(ids[3].publicKey, timeout: .seconds(1)), id: CommandID(13), on: 0)
        #expect(sim.completion(of: CommandID(13), on: 0) == .failed(.busy))
        sim.run(for: .seconds(2))
        #expect(sim.completion(of: CommandID(13), on: 0) == .failed(.timedOut))
    }

    // MARK: - Host requests (connect with host options, disconnect)

    @Test func connectSetsUpTheHostAndDisconnectUndoesIt() {
        var (sim, ids) = Self.market()
        let options = ConsumerTunnelOptions(routes: .split(["198.51.100.0/24"]), dns: [], killSwitch: false)
        sim.submit(.connect(ConnectRequest(target: .country("DE"), host: options)), id: CommandID(20), on: 0)
        sim.run(for: .seconds(3))
        guard case .connected(let session, _)? = sim.completion(of: CommandID(20), on: 0) else {
            Issue.record("\(String(describing: sim.completion(of: CommandID(20), on: 0)))")
            return
        }
        let requests = sim.hostRequests(of: 0)
        guard requests.count == 1, case .setUpConsumerTunnel(let plan) = requests[0].action else {
            Issue.record("\(requests)")
            return
        }
        #expect(plan.session == session && plan.options == options)
        #expect(plan.underlay == sim.endpoint(of: 1).address, "the provider's direct address, checked against")
        #expect(sim.instance(0).tunnelStatus.host == .up(plan))
        #expect(sim.instance(0).tunnelStatus.consumer?.provider == ids[1].publicKey, "packets flow")

        sim.submit(.disconnect, id: CommandID(21), on: 0)
        #expect(sim.instance(0).tunnelStatus.consumer == nil, "packets stop at once")
        sim.run(for: .seconds(1))
        #expect(sim.completion(of: CommandID(21), on: 0) == .disconnected(provider: ids[1].publicKey))
        #expect(sim.hostRequests(of: 0).last?.action == .tearDownConsumerTunnel)
        #expect(sim.instance(0).tunnelStatus.host == .none)
        #expect(sim.instance(0).dialogueStatus.clients.allSatisfy { $0.phase == .closed }, "the dialogue ended")
        // Nothing up: a disconnect says so and asks nothing of the host.
        sim.submit(.disconnect, id: CommandID(22), on: 0)
        #expect(sim.completion(of: CommandID(22), on: 0) == .disconnected(provider: nil))
        #expect(sim.hostRequests(of: 0).count == 2)
    }

    @Test func aSecondConnectReplacesTheFirstTunnel() {
        var (sim, ids) = Self.market()
        sim.submit(.connect(ConnectRequest(target: .country("DE"), host: .init())), id: CommandID(30), on: 0)
        sim.run(for: .seconds(3))
        sim.submit(.connect(ConnectRequest(target: .country("FR"), host: .init())), id: CommandID(31), on: 0)
        sim.run(for: .seconds(3))
        guard case .connected(let session, _)? = sim.completion(of: CommandID(31), on: 0) else {
            Issue.record("\(String(describing: sim.completion(of: CommandID(31), on: 0)))")
            return
        }
        #expect(session.provider == ids[3].publicKey)
        let actions = sim.hostRequests(of: 0).map(\.action)
        #expect(actions.count == 3)
        #expect(actions[1] == .tearDownConsumerTunnel, "the first tunnel goes before the second is set up")
        #expect(
            sim.instance(0).dialogueStatus.clients.filter { $0.phase != .closed }.map(\.provider) == [ids[3].publicKey])
        #expect(sim.instance(0).tunnelStatus.consumer?.provider == ids[3].publicKey)
    }

    @Test func aHostThatCannotBeSetUpEndsTheDialogueAndTheConnect() {
        var (sim, _) = Self.market()
        sim.failHostRequests(of: 0, reason: "no CAP_NET_ADMIN")
        sim.submit(.connect(ConnectRequest(target: .country("DE"), host: .init())), id: CommandID(40), on: 0)
        sim.run(for: .seconds(3))
        #expect(sim.completion(of: CommandID(40), on: 0) == .failed(.host("no CAP_NET_ADMIN")))
        #expect(sim.hostRequests(of: 0).count == 1, "no other candidate is tried: the host would fail again")
        #expect(sim.instance(0).tunnelStatus.host == .none)
        #expect(sim.instance(0).tunnelStatus.consumer == nil)
        #expect(sim.instance(0).dialogueStatus.clients.allSatisfy { $0.phase == .closed }, "the dialogue was closed")
    }

    @Test func aSecondConnectWhileOneIsInFlightIsRefused() {
        var (sim, ids) = Self.market()
        sim.submit(.connect(ConnectRequest(target: .country("DE"), host: .init())), id: CommandID(50), on: 0)
        sim.submit(.connect(ConnectRequest(target: .country("FR"), host: .init())), id: CommandID(51), on: 0)
        guard case .failed(.invalid)? = sim.completion(of: CommandID(51), on: 0) else {
            Issue.record("\(String(describing: sim.completion(of: CommandID(51), on: 0)))")
            return
        }
        sim.run(for: .seconds(3))
        guard case .connected(let session, _)? = sim.completion(of: CommandID(50), on: 0) else {
            Issue.record("the first connect did not complete")
            return
        }
        #expect(session.provider == ids[1].publicKey && sim.hostRequests(of: 0).count == 1)
    }

    @Test func aDisconnectCancelsAConnectInFlightAndItsDialogue() {
        var (sim, _) = Self.market()
        sim.submit(.connect(ConnectRequest(target: .country("DE"), host: .init())), id: CommandID(60), on: 0)
        sim.run(for: .milliseconds(20))  // the dialogue is opening
        sim.submit(.disconnect, id: CommandID(61), on: 0)
        #expect(sim.completion(of: CommandID(60), on: 0) == .failed(.invalid("cancelled by a disconnect")))
        sim.run(for: .seconds(3))
        #expect(sim.completion(of: CommandID(61), on: 0) != nil)
        #expect(sim.instance(0).tunnelStatus.host == .none, "no tunnel comes up after the disconnect")
        #expect(sim.instance(0).tunnelStatus.consumer == nil)
        #expect(sim.instance(0).dialogueStatus.clients.allSatisfy { $0.phase == .closed || $0.phase == .idle })
    }
}
