// The whole node under a stateful attack (NodeFuzzHarness): directed sequences for the attacks
// found by review, then seeded random sequences of every operation. The same harness runs under
// libFuzzer as Fuzz/Sources/FuzzNode.

import NetSim
import Node
import Testing
import UmbraCore

@Suite("Whole-node stateful fuzzing")
struct NodeFuzzTests {
    /// Operation bytes as the harness reads them: `op | attacker | source | operands…`. Source
    /// selectors 0…3 are the victims, 4 and 5 the attacker's own address.
    static let home: UInt8 = 4
    static let victim: UInt8 = 0
    static func word(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) } }
    static let wait10s: [UInt8] = [11, 0, home, 200]

    func run(_ input: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
        var harness = NodeFuzzHarness.prepared
        do {
            try harness.run(input)
        } catch {
            Issue.record(
                "\(error)\nafter: \(harness.trace.suffix(12).joined(separator: " → "))", sourceLocation: sourceLocation)
        }
    }

    @Test("the node under attack holds real contents: a routing table and every neighbour's offer")
    func preparedNodeHoldsContents() {
        let harness = NodeFuzzHarness.prepared
        #expect(harness.node.dht.table.count >= 4)
        #expect(harness.node.proposals(serviceType: "ip-tunnel", now: harness.now).count == 4)
    }

    @Test("requests sent from a victim's address after the handshake get at most 3× back, over time too")
    func reflectionAfterHandshake() {
        var input: [UInt8] = [0, 0, Self.home]  // handshake from the attacker's own address
        input += [4, 0, Self.victim] + Self.word(1) + [255]  // proposal sync, from the victim
        input += [2, 0, Self.victim] + Self.word(2) + [UInt8](repeating: 7, count: 32)  // FIND_NODE
        input += [1, 0, Self.victim] + Self.word(3)  // ping
        for _ in 0..<12 { input += Self.wait10s }  // keepalives, pings and rekeys follow the session
        run(input)
    }

    @Test("a peer that is not our relay cannot make the node punch at addresses of its choice")
    func forgedRelayPunch() {
        var input: [UInt8] = [0, 0, Self.home]
        input += [6, 0, Self.home]  // a fresh identity handshakes inside forged deliver frames
        input += [7, 0, Self.home] + Self.word(9)  // …and asks for a punch at the victims
        for _ in 0..<4 { input += [11, 0, Self.home, 4] }
        run(input)
    }

    @Test("0-RTT data from fresh identities at victims' addresses is not amplified")
    func earlyDataFromVictims() {
        var input: [UInt8] = []
        for index in 0..<8 { input += [10, 0, UInt8(index % 4), UInt8(index)] }
        input += Self.wait10s
        run(input)
    }

    @Test("seeded random operation sequences keep every invariant", arguments: UInt64(1)...24)
    func randomSequences(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        run(rng.bytes(2048))
    }
}
