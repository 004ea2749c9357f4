// The provider's host setup in a real network namespace whose uplink goes to a router namespace:
// consumer packets written into the TUN are masqueraded out and their replies come back, blocked
// destinations and inbound connections are dropped, and `down` / crash recovery restore the
// namespace exactly (including net.ipv4.ip_forward).

import Foundation
import Glibc
import HostNetwork
import NodeRuntime
import Testing
import UmbraCore

@Suite(.enabled(if: HostLab.available, HostLab.unavailableComment))
struct ProviderNetworkTests {
    static let consumer = "10.182.0.2"

    func config(_ lab: HostLab) throws -> ProviderNetworkConfig {
        ProviderNetworkConfig(
            gateway: try #require(IPAddress(parsing: "10.182.0.1")), mtu: 1400,
            blockedDestinations: ProviderNetworkConfig.defaultBlockedDestinations + ["198.51.100.0/24", "10.9.0.0/16"],
            namespace: lab.node)
    }

    @Test func upForwardsAndMasqueradesAndDownRestoresExactly() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        let before = try lab.snapshot()
        #expect(before.forwarding == "0\n")

        let handle = try ProviderNetwork.up(
            try config(lab), journal: try HostJournal(path: lab.journalPath, key: HostLab.key), runner: lab.inNode)
        var down = false
        defer { if !down { handle.down() } }
        #expect(handle.tun.name == "umbrap0")
        #expect(try lab.inNode.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).outputText == "1\n")
        let link = try lab.inNode.run(["ip", "addr", "show", "dev", "umbrap0"]).outputText
        #expect(link.contains("inet 10.182.0.1/16"))
        let table = try lab.inNode.run(["nft", "list", "table", "ip", "umbra_provider"]).outputText
        #expect(table.contains("ip saddr 10.182.0.0/16 oifname != \"umbrap0\" masquerade"))
        #expect(table.contains("iifname \"umbrap0\" ip daddr {"))
        #expect(table.contains("198.51.100.0/24"))
        #expect(!table.contains("10.9.0.0/16"), "inside 10.0.0.0/8, so merged away")
        #expect(table.contains("oifname \"umbrap0\" ct state established,related accept"))
        #expect(table.contains("oifname \"umbrap0\" drop"))
        #expect(table.contains("iifname \"umbrap0\" drop"))

        // A consumer's ping to the router leaves masqueraded; the reply comes back into the TUN.
        let request = EchoPacket(
            source: Self.consumer, destination: HostLab.routerAddress, isRequest: true, identifier: 0x0101)
        #expect(handle.tun.write(request.encoded()))
        let reply = handle.tun.awaitEcho(within: 2000) { !$0.isRequest && $0.identifier == 0x0101 }
        #expect(
            reply
                == EchoPacket(
                    source: HostLab.routerAddress, destination: Self.consumer, isRequest: false, identifier: 0x0101))

        // A blocked destination (reachable without the block: the router holds it) gets nothing.
        let blocked = EchoPacket(
            source: Self.consumer, destination: HostLab.routerExtraAddress, isRequest: true, identifier: 0x0202)
        #expect(handle.tun.write(blocked.encoded()))
        #expect(handle.tun.awaitEcho(within: 1000) { $0.identifier == 0x0202 } == nil)

        // Nobody outside opens a connection into the pool, even with a route to it.
        try lab.inRouter.run(["ip", "route", "add", "10.182.0.0/16", "via", HostLab.nodeAddress])
        _ = try lab.inRouter.runAllowingFailure(["ping", "-n", "-c1", "-W1", Self.consumer])
        #expect(handle.tun.awaitEcho(within: 300) { $0.isRequest && $0.destination == request.source } == nil)

        // Consumers cannot reach the provider host's own services (its gateway address).
        let toHost = EchoPacket(source: Self.consumer, destination: "10.182.0.1", isRequest: true, identifier: 0x0303)
        #expect(handle.tun.write(toHost.encoded()))
        #expect(handle.tun.awaitEcho(within: 500) { $0.identifier == 0x0303 } == nil)

        let report = handle.down()
        down = true
        #expect(report.isComplete, "\(report)")
        #expect(report.undone.contains(.restoreSysctl(key: "net.ipv4.ip_forward", previousValue: "0")))
        #expect(lab.readFile(lab.journalPath) == nil)
        #expect(try lab.snapshot() == before)
    }

    @Test func crashRecoveryRestoresTheHost() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        let before = try lab.snapshot()
        do {
            let handle = try ProviderNetwork.up(
                try config(lab), journal: try HostJournal(path: lab.journalPath, key: HostLab.key), runner: lab.inNode)
            handle.tun.close()
        }
        #expect(try lab.inNode.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).outputText == "1\n")

        let report = HostJournal.recover(at: lab.journalPath, key: HostLab.key, runner: lab.inNode)
        #expect(report.isComplete, "\(report)")
        #expect(report.alreadyGone == [.deleteLink(name: "umbrap0")])
        #expect(report.undone.count == 2)  // the table, then ip_forward
        #expect(try lab.snapshot() == before)
    }

    @Test func consumerAndProviderShareOneJournal() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        let before = try lab.snapshot()
        let journal = try HostJournal(path: lab.journalPath, key: HostLab.key)
        let provider = try ProviderNetwork.up(try config(lab), journal: journal, runner: lab.inNode)
        let consumer = try ConsumerNetwork.up(
            ConsumerNetworkConfig(
                innerAddress: try #require(IPAddress(parsing: "10.77.0.2")), routes: .split(["10.99.0.0/16"]),
                namespace: lab.node),
            journal: journal, runner: lab.inNode)

        #expect(consumer.down().isComplete)
        // The provider's side is untouched by the consumer's down.
        #expect(try lab.inNode.run(["nft", "list", "table", "ip", "umbra_provider"]).succeeded)
        #expect(journal.pending.allSatisfy { $0.scope == ProviderNetwork.journalScope })
        #expect(provider.down().isComplete)
        #expect(try lab.snapshot() == before)
    }

    /// Packets the node namespace sent out of `side0`, a second interface that is not the uplink.
    func sentOnSecondInterface(_ lab: HostLab) throws -> Int {
        let text = try lab.inNode.run(["cat", "/sys/class/net/side0/statistics/tx_packets"]).outputText
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    /// A second interface (`side0`, 203.0.113.1/24, a veth whose peer stays in the namespace, with a
    /// static neighbour so nothing but forwarded packets leaves it) and a route on the router
    /// through the node to it.
    func addSecondInterface(_ lab: HostLab) throws {
        try lab.inNode.run(["ip", "link", "add", "side0", "type", "veth", "peer", "name", "side1"])
        try lab.inNode.run(["ip", "addr", "add", "203.0.113.1/24", "dev", "side0"])
        try lab.inNode.run(["ip", "link", "set", "side0", "up"])
        try lab.inNode.run(["ip", "link", "set", "side1", "up"])
        try lab.inNode.run([
            "ip", "neigh", "add", "203.0.113.9", "lladdr", "02:00:00:00:00:09", "dev", "side0", "nud", "permanent",
        ])
        try lab.inRouter.run(["ip", "route", "add", "203.0.113.0/24", "via", HostLab.nodeAddress])
    }

    /// Forwarding the node turned on serves the pool and the uplink only: the host does not become a
    /// router between its other interfaces, and consumers leave by the uplink only.
    @Test func forwardingItTurnedOnServesOnlyThePool() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        try addSecondInterface(lab)
        let handle = try ProviderNetwork.up(
            try config(lab), journal: try HostJournal(path: lab.journalPath, key: HostLab.key), runner: lab.inNode)
        defer { handle.down() }
        let table = try lab.inNode.run(["nft", "list", "table", "ip", "umbra_provider"]).outputText
        #expect(table.contains("hook forward priority filter; policy drop;"))
        #expect(
            table.contains("iifname \"umbrap0\" oifname \"veth0\" accept")
                || table.contains("iifname \"umbrap0\" oifname { \"veth0\" } accept"), "\(table)")

        let before = try sentOnSecondInterface(lab)
        // The router sends through the node toward side0: not forwarded.
        _ = try lab.inRouter.runAllowingFailure(["ping", "-n", "-c2", "-i0.2", "-W1", "203.0.113.9"])
        // A consumer sends toward side0 (a public address, not in the block list): not forwarded.
        let sideways = EchoPacket(
            source: Self.consumer, destination: "203.0.113.9", isRequest: true, identifier: 0x0404)
        #expect(handle.tun.write(sideways.encoded()))
        usleep(300_000)
        #expect(try sentOnSecondInterface(lab) == before)

        // The uplink still works for consumers.
        let request = EchoPacket(
            source: Self.consumer, destination: HostLab.routerAddress, isRequest: true, identifier: 0x0505)
        #expect(handle.tun.write(request.encoded()))
        #expect(handle.tun.awaitEcho(within: 2000) { !$0.isRequest && $0.identifier == 0x0505 } != nil)
    }

    /// A host that already forwarded (a router, Docker, VMs) keeps its own forwarding; only the
    /// pool's traffic is restricted to the uplink.
    @Test func aHostThatAlreadyForwardedKeepsItsForwarding() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        try addSecondInterface(lab)
        try lab.inNode.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        let handle = try ProviderNetwork.up(
            try config(lab), journal: try HostJournal(path: lab.journalPath, key: HostLab.key), runner: lab.inNode)
        defer { handle.down() }
        let before = try sentOnSecondInterface(lab)
        _ = try lab.inRouter.runAllowingFailure(["ping", "-n", "-c1", "-W1", "203.0.113.9"])
        let forwarded = try sentOnSecondInterface(lab)
        #expect(forwarded > before, "the host's own forwarding still works")
        let sideways = EchoPacket(
            source: Self.consumer, destination: "203.0.113.9", isRequest: true, identifier: 0x0606)
        #expect(handle.tun.write(sideways.encoded()))
        usleep(300_000)
        #expect(try sentOnSecondInterface(lab) == forwarded, "consumers leave by the uplink only")
    }
}
