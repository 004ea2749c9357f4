// The consumer's host setup in a real network namespace: what `up` changes, that packets flow
// through the TUN, and that `down`, a failed `up` and crash recovery all leave the namespace
// exactly as it was (routes, addresses, nftables ruleset, ip_forward, resolv.conf).

import NodeRuntime
import Testing
import UmbraCore

@Suite(.enabled(if: HostLab.available, HostLab.unavailableComment))
struct ConsumerNetworkTests {
    static let exempt = "203.0.113.7"
    static let inner = "10.182.0.2"

    func config(
        _ lab: HostLab, routes: ConsumerNetworkConfig.Routes = .full, killSwitch: UInt16? = 51820
    )
        throws -> ConsumerNetworkConfig
    {
        ConsumerNetworkConfig(
            innerAddress: try #require(IPAddress(parsing: Self.inner)), mtu: 1400,
            exempt: [try #require(IPAddress(parsing: Self.exempt))], routes: routes, dns: ["10.99.0.53", "10.99.0.54"],
            resolvConfPath: lab.directory + "/resolv.conf", killSwitch: killSwitch, namespace: lab.node)
    }

    @Test func upChangesTheHostAndDownRestoresItExactly() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        let config = try config(lab)
        try lab.writeFile(config.resolvConfPath, "nameserver 192.0.2.53\noptions edns0\n")
        let before = try lab.snapshot(resolvConf: config.resolvConfPath)

        let journal = try HostJournal(path: lab.journalPath)
        let handle = try ConsumerNetwork.up(config, journal: journal, runner: lab.inNode)
        var down = false
        defer { if !down { handle.down() } }
        #expect(handle.tun.name == "umbra0")

        let routes = try lab.inNode.run(["ip", "route", "show"]).outputText
        #expect(routes.contains("0.0.0.0/1 dev umbra0"))
        #expect(routes.contains("128.0.0.0/1 dev umbra0"))
        #expect(routes.contains("\(Self.exempt) via \(HostLab.routerAddress) dev veth0"))
        #expect(routes.contains("default via \(HostLab.routerAddress) dev veth0"), "the default route stays")
        let link = try lab.inNode.run(["ip", "addr", "show", "dev", "umbra0"]).outputText
        #expect(link.contains("inet \(Self.inner)/32"))
        #expect(link.contains("mtu 1400"))
        #expect(link.contains(",UP"))
        let table = try lab.inNode.run(["nft", "list", "table", "inet", "umbra_killswitch"]).outputText
        #expect(table.contains("policy drop"))
        #expect(table.contains("oifname \"lo\" accept"))
        #expect(table.contains("oifname \"umbra0\" accept"))
        #expect(table.contains("udp sport 51820 accept"))
        let resolv = String(decoding: lab.readFile(config.resolvConfPath) ?? [], as: UTF8.self)
        #expect(resolv.hasSuffix("nameserver 10.99.0.53\nnameserver 10.99.0.54\n"))
        #expect(!resolv.contains("192.0.2.53"))
        #expect(try HostJournal(path: lab.journalPath).pending.count == 6)  // link, exempt, table, 2 routes, DNS

        // The kill switch: the router is on-link, outside the tunnel, so it is unreachable now.
        #expect(!lab.ping(HostLab.routerAddress))

        let report = handle.down()
        down = true
        #expect(report.isComplete, "\(report)")
        #expect(report.failed.isEmpty)
        #expect(lab.readFile(lab.journalPath) == nil, "the journal is removed once everything is undone")
        let after = try lab.snapshot(resolvConf: config.resolvConfPath)
        #expect(after == before)
        #expect(lab.ping(HostLab.routerAddress))
    }

    @Test func packetsFlowThroughTheTunInBothDirections() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        let journal = try HostJournal(path: lab.journalPath)
        let handle = try ConsumerNetwork.up(try config(lab), journal: journal, runner: lab.inNode)
        defer { handle.down() }

        // Outbound: the kernel routes a ping into umbra0 (0.0.0.0/1); the node reads it from the fd.
        _ = try lab.inNode.runAllowingFailure(["ping", "-n", "-c1", "-W1", "10.99.0.1"])
        let request = handle.tun.awaitEcho(within: 2000) { $0.isRequest }
        let expected = EchoPacket(source: Self.inner, destination: "10.99.0.1", isRequest: true, identifier: 0)
        #expect(request?.source == expected.source)
        #expect(request?.destination == expected.destination)

        // Inbound: a packet written into the TUN reaches the stack, whose reply comes back out of it.
        let probe = EchoPacket(source: "10.99.0.1", destination: Self.inner, isRequest: true, identifier: 0x4242)
        #expect(handle.tun.write(probe.encoded()))
        let reply = handle.tun.awaitEcho(within: 2000) { !$0.isRequest && $0.identifier == 0x4242 }
        #expect(
            reply
                == EchoPacket(source: Self.inner, destination: "10.99.0.1", isRequest: false, identifier: 0x4242))

        // A batch: three probes in, three replies out through readBatch.
        for sequence in 1...3 {
            let probe = EchoPacket(
                source: "10.99.0.1", destination: Self.inner, isRequest: true, identifier: 0x4343,
                sequence: UInt16(sequence))
            #expect(handle.tun.write(probe.encoded()))
        }
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 8 * 2048, alignment: 16)
        defer { storage.deallocate() }
        let buffers = (0..<8).map { UnsafeMutableRawBufferPointer(rebasing: storage[$0 * 2048..<($0 + 1) * 2048]) }
        var replies: [UInt16] = []
        let deadline = ContinuousClock.now + .seconds(2)
        while replies.count < 3, ContinuousClock.now < deadline {
            guard handle.tun.waitReadable(timeoutMilliseconds: 100) else { continue }
            var sizes: [Int] = []
            let count = handle.tun.readBatch(into: buffers, sizes: &sizes)
            for index in 0..<count {
                let bytes = Array(buffers[index][0..<sizes[index]])
                if let packet = EchoPacket(parsing: bytes[...]), packet.identifier == 0x4343 {
                    replies.append(packet.sequence)
                }
            }
        }
        #expect(replies == [1, 2, 3])
    }

    @Test func crashRecoveryRestoresTheHost() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        let config = try config(lab, routes: .split(["10.99.0.0/16", "172.20.0.0/14"]))
        try lab.writeFile(config.resolvConfPath, "nameserver 192.0.2.53\n")
        let before = try lab.snapshot(resolvConf: config.resolvConfPath)

        do {
            let handle = try ConsumerNetwork.up(
                config, journal: try HostJournal(path: lab.journalPath), runner: lab.inNode)
            let routes = try lab.inNode.run(["ip", "route", "show"]).outputText
            #expect(routes.contains("10.99.0.0/16 dev umbra0"))
            #expect(routes.contains("172.20.0.0/14 dev umbra0"))
            #expect(!routes.contains("0.0.0.0/1"))
            // The process dies: the kernel closes the fd; nothing else is undone.
            handle.tun.close()
        }
        #expect(lab.readFile(lab.journalPath) != nil)
        #expect(try lab.snapshot(resolvConf: config.resolvConfPath) != before)

        let report = HostJournal.recover(at: lab.journalPath, runner: lab.inNode)
        #expect(report.isComplete, "\(report)")
        // The split routes and the link went with the TUN; the rest was undone now.
        #expect(report.alreadyGone.contains(.deleteLink(name: "umbra0")))
        #expect(
            report.alreadyGone.contains(.deleteRoute(argv: ["ip", "route", "del", "10.99.0.0/16", "dev", "umbra0"])))
        #expect(report.undone.contains(.deleteNftTable(family: "inet", name: "umbra_killswitch")))
        #expect(report.undone.count == 3)  // exempt route, kill switch, resolv.conf
        #expect(lab.readFile(lab.journalPath) == nil)
        #expect(try lab.snapshot(resolvConf: config.resolvConfPath) == before)

        // A second recovery has nothing to do.
        let again = HostJournal.recover(at: lab.journalPath, runner: lab.inNode)
        #expect(again.isComplete && again.undone.isEmpty && again.alreadyGone.isEmpty)
    }

    @Test func aFailureMidwayRollsBackWhatWasDone() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        var config = try config(lab)
        // The last step (DNS) fails: its directory does not exist.
        config.resolvConfPath = lab.directory + "/no-such-directory/resolv.conf"
        let before = try lab.snapshot()

        #expect {
            _ = try ConsumerNetwork.up(config, journal: try HostJournal(path: lab.journalPath), runner: lab.inNode)
        } throws: { error in
            guard case HostNetworkError.setupFailed(let reason, let rollback) = error else { return false }
            // Undone: the exempt route and the kill switch; the link and tunnel routes left with the TUN.
            return reason.contains("no-such-directory") && rollback.isComplete && rollback.failed.isEmpty
                && rollback.undone.count == 2 && rollback.alreadyGone.count == 3
        }
        #expect(lab.readFile(lab.journalPath) == nil)
        #expect(try lab.snapshot() == before)
        #expect(lab.ping(HostLab.routerAddress))
    }

    @Test func invalidConfigurationChangesNothing() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        let before = try lab.snapshot()
        for bad in [
            try config(lab, routes: .split(["10.0.0.1/8"])),  // host bits set
            ConsumerNetworkConfig(innerAddress: try #require(IPAddress(parsing: "fd00::2")), namespace: lab.node),
        ] {
            #expect(throws: HostNetworkError.self) {
                _ = try ConsumerNetwork.up(bad, journal: try HostJournal(path: lab.journalPath), runner: lab.inNode)
            }
        }
        #expect(lab.readFile(lab.journalPath) == nil)
        #expect(try lab.snapshot() == before)
    }
}
