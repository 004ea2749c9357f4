// The consumer's host setup in a real network namespace: what `up` changes, that packets flow
// through the TUN, and that `down`, a failed `up` and crash recovery all leave the namespace
// exactly as it was (routes, rules, addresses, nftables ruleset, ip_forward, resolv.conf). Only
// packets carrying the node's fwmark bypass the tunnel; no destination does.

import HostNetwork
import NodeRuntime
import Testing
import UmbraCore

@Suite(.enabled(if: HostLab.available, HostLab.unavailableComment))
struct ConsumerNetworkTests {
    static let inner = "10.182.0.2"
    static let mark = ConsumerNetwork.bypassMark

    func config(
        _ lab: HostLab, routes: ConsumerNetworkConfig.Routes = .full, killSwitch: Bool = true
    )
        throws -> ConsumerNetworkConfig
    {
        ConsumerNetworkConfig(
            innerAddress: try #require(IPAddress(parsing: Self.inner)), mtu: 1400,
            underlay: try #require(IPAddress(parsing: HostLab.routerExtraAddress)), routes: routes,
            dns: ["10.99.0.53", "10.99.0.54"], resolvConfPath: lab.directory + "/resolv.conf", killSwitch: killSwitch,
            namespace: lab.node, bypassMark: Self.mark)
    }

    /// One ping from the node namespace with the node socket's fwmark (`ping -m`).
    func markedPing(_ lab: HostLab, _ address: String) -> Bool {
        (try? lab.inNode.runAllowingFailure(["ping", "-n", "-c1", "-W1", "-m", "\(Self.mark)", address]).succeeded)
            ?? false
    }

    /// The device `ip route get` picks for `address` (with `mark`, as the node's socket would).
    func routeDevice(_ lab: HostLab, _ address: String, mark: UInt32? = nil) throws -> String {
        let argv = ["ip", "route", "get", address] + (mark.map { ["mark", "\($0)"] } ?? [])
        let words = try lab.inNode.run(argv).outputText.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard let index = words.firstIndex(of: "dev"), index + 1 < words.count else { return "" }
        return String(words[index + 1])
    }

    @Test func upChangesTheHostAndDownRestoresItExactly() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        let config = try config(lab)
        try lab.writeFile(config.resolvConfPath, "nameserver 192.0.2.53\noptions edns0\n")
        let before = try lab.snapshot(resolvConf: config.resolvConfPath)

        let journal = try HostJournal(path: lab.journalPath, key: HostLab.key)
        let handle = try ConsumerNetwork.up(config, journal: journal, runner: lab.inNode)
        var down = false
        defer { if !down { handle.down() } }
        #expect(handle.tun.name == "umbra0")

        let routes = try lab.inNode.run(["ip", "route", "show"]).outputText
        #expect(routes.contains("0.0.0.0/1 dev umbra0"))
        #expect(routes.contains("128.0.0.0/1 dev umbra0"))
        #expect(routes.contains("default via \(HostLab.routerAddress) dev veth0"), "the default route stays")
        #expect(!routes.contains("/32 via"), "no host route bypasses the tunnel")
        let rules = try lab.inNode.run(["ip", "rule", "show"]).outputText
        #expect(rules.contains("4746:\tfrom all fwmark 0x4747 lookup main suppress_prefixlength 1"), "\(rules)")
        #expect(rules.contains("4747:\tfrom all fwmark 0x4747 lookup 4747"), "\(rules)")
        #expect(!rules.contains("sport"), "no rule by port: another socket on it would bypass too")
        let link = try lab.inNode.run(["ip", "addr", "show", "dev", "umbra0"]).outputText
        #expect(link.contains("inet \(Self.inner)/32"))
        #expect(link.contains("mtu 1400"))
        #expect(link.contains(",UP"))
        let table = try lab.inNode.run(["nft", "list", "table", "inet", "umbra_killswitch"]).outputText
        #expect(table.contains("policy drop"))
        #expect(table.contains("oifname \"lo\" accept"))
        #expect(table.contains("oifname \"umbra0\" accept"))
        #expect(table.contains("meta mark 0x00004747 accept"))
        #expect(table.contains("hook forward priority filter; policy drop;"), "containers and VMs are covered")
        let resolv = String(decoding: lab.readFile(config.resolvConfPath) ?? [], as: UTF8.self)
        #expect(resolv.hasSuffix("nameserver 10.99.0.53\nnameserver 10.99.0.54\n"))
        #expect(!resolv.contains("192.0.2.53"))
        // link, kill switch, 2 bypass rules and their table's route, 2 tunnel routes, DNS
        #expect(try HostJournal(path: lab.journalPath, key: HostLab.key).pending.count == 8)

        // The kill switch: the router is on-link, outside the tunnel, so it is unreachable now...
        #expect(!lab.ping(HostLab.routerAddress))
        // ... except for the node's own (marked) packets: on-link by the host's own route, and
        // beyond the router by the old default route.
        #expect(markedPing(lab, HostLab.routerAddress))
        #expect(markedPing(lab, HostLab.routerExtraAddress))
        #expect(try routeDevice(lab, HostLab.routerExtraAddress) == "umbra0")
        #expect(try routeDevice(lab, HostLab.routerExtraAddress, mark: Self.mark) == "veth0")

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
        let journal = try HostJournal(path: lab.journalPath, key: HostLab.key)
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
                config, journal: try HostJournal(path: lab.journalPath, key: HostLab.key), runner: lab.inNode)
            let routes = try lab.inNode.run(["ip", "route", "show"]).outputText
            #expect(routes.contains("10.99.0.0/16 dev umbra0"))
            #expect(routes.contains("172.20.0.0/14 dev umbra0"))
            #expect(!routes.contains("0.0.0.0/1"))
            // The process dies: the kernel closes the fd; nothing else is undone.
            handle.tun.close()
        }
        #expect(lab.readFile(lab.journalPath) != nil)
        #expect(try lab.snapshot(resolvConf: config.resolvConfPath) != before)

        let report = HostJournal.recover(at: lab.journalPath, key: HostLab.key, runner: lab.inNode)
        #expect(report.isComplete, "\(report)")
        // The split routes and the link went with the TUN; the rest was undone now.
        #expect(report.alreadyGone.contains(.deleteLink(name: "umbra0")))
        #expect(report.alreadyGone.contains(.deleteRoute(HostRoute(destination: "10.99.0.0/16", device: "umbra0"))))
        #expect(report.undone.contains(.deleteNftTable(family: "inet", name: "umbra_killswitch")))
        #expect(report.undone.count == 2)  // kill switch, resolv.conf
        #expect(lab.readFile(lab.journalPath) == nil)
        #expect(try lab.snapshot(resolvConf: config.resolvConfPath) == before)

        // A second recovery has nothing to do.
        let again = HostJournal.recover(at: lab.journalPath, key: HostLab.key, runner: lab.inNode)
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
            _ = try ConsumerNetwork.up(
                config, journal: try HostJournal(path: lab.journalPath, key: HostLab.key), runner: lab.inNode)
        } throws: { error in
            guard case HostNetworkError.setupFailed(let reason, let rollback) = error else { return false }
            // Undone: the kill switch, the bypass rules and table; the link and tunnel routes left with the TUN.
            return reason.contains("no-such-directory") && rollback.isComplete && rollback.failed.isEmpty
                && rollback.undone.count == 4 && rollback.alreadyGone.count == 3
        }
        #expect(lab.readFile(lab.journalPath) == nil)
        #expect(try lab.snapshot() == before)
        #expect(lab.ping(HostLab.routerAddress))
    }

    @Test func invalidConfigurationChangesNothing() throws {
        let lab = try HostLab.make()
        defer { lab.destroy() }
        // A LAN the host already routes: a provider must not be able to grant addresses inside it.
        try lab.inNode.run(["ip", "route", "add", "10.5.0.0/24", "via", HostLab.routerAddress])
        let before = try lab.snapshot()
        func granted(_ inner: String, mtu: Int = 1400) throws -> ConsumerNetworkConfig {
            var config = try config(lab)
            config.innerAddress = try #require(IPAddress(parsing: inner))
            config.mtu = mtu
            return config
        }
        for bad in [
            try config(lab, routes: .split(["10.0.0.1/8"])),  // host bits set
            ConsumerNetworkConfig(innerAddress: try #require(IPAddress(parsing: "fd00::2")), namespace: lab.node),
            // What a provider grants: a public address, the host's own, one inside its LAN,
            // loopback, an MTU below 1280 or above the link's 1500.
            try granted("8.8.8.8"), try granted(HostLab.nodeAddress), try granted("10.5.0.7"),
            try granted("127.0.0.2"), try granted(Self.inner, mtu: 1200), try granted(Self.inner, mtu: 1600),
        ] {
            #expect(throws: HostNetworkError.self) {
                _ = try ConsumerNetwork.up(
                    bad, journal: try HostJournal(path: lab.journalPath, key: HostLab.key), runner: lab.inNode)
            }
        }
        #expect(lab.readFile(lab.journalPath) == nil)
        #expect(try lab.snapshot() == before)
    }
}
