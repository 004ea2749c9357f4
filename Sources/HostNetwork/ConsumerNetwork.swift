// The consumer's side of the tunnel on the host: what `up` changes, in this order, and how each
// change is undone (every undo action is journaled in HostJournal, scope "consumer", before the
// change is made):
//
//   0. checks, before anything changes: the inner address the provider granted must be private or
//      CGNAT unicast (10/8, 172.16/12, 192.168/16, 100.64/10) and not covered by any route or
//      address the host already has (it would hijack the LAN or the path to the provider); the MTU
//      it granted must lie in [1280, the MTU of the link toward the underlay endpoint]
//   1. TUN device `umbra0` (TunDevice, non-persistent)             undo: ip link del umbra0
//      ip addr add INNER/32 dev umbra0; ip link set dev umbra0 mtu MTU up   (go with the device)
//   2. kill switch (optional): nft table inet umbra_killswitch with policy drop on
//        output:  accepting oifname "lo", oifname "umbra0" and meta mark BYPASS (the node's socket)
//        forward: accepting only into and out of umbra0, so containers and VMs routed through this
//                 host cannot leave around the tunnel either (and stay cut off if the node dies)
//                                                                   undo: nft delete table inet umbra_killswitch
//   3. overlay bypass (full routes), as wg-quick does: the node's UDP socket carries the fwmark
//      BYPASS (SO_MARK, NodeDriver), table 4747 gets today's default route, and two rules steer
//      marked packets only:
//        ip rule add priority 4746 fwmark BYPASS lookup main suppress_prefixlength 1
//           (the host's own specific routes — LAN, host routes — but not /0 and not the tunnel's /1s)
//        ip rule add priority 4747 fwmark BYPASS lookup 4747   (else today's default route)
//      so the node's own datagrams (DHT, gossip, relays, the tunnel's session) never enter the
//      tunnel, and nothing else leaves outside it. No route is derived from a provider's proposal
//      or any other address a peer names: which traffic bypasses the tunnel is decided by the
//      sending socket, not by destinations a provider could choose.
//                                       undo: ip rule del (both); ip route del default table 4747
//   4. routes: full → ip route add 0.0.0.0/1 dev umbra0; ip route add 128.0.0.0/1 dev umbra0
//      (more specific than any default route, which stays untouched); split → one route per CIDR
//      (a split network must not contain the provider's or relay's underlay address)
//                                                                   undo: ip route del CIDR dev umbra0
//   4b. full routes with IPv6 on: ip -6 route add unreachable ::/1; … 8000::/1 (the tunnel is
//      IPv4 only; IPv6 fails at once instead of leaving around it)   undo: ip -6 route del (same)
//   5. DNS (optional): /etc/resolv.conf rewritten IN PLACE (truncate + write, never rename: under
//      `ip netns exec` it is a bind mount of /etc/netns/NS/resolv.conf, and a rename would replace
//      the mount point's directory entry, not the file the namespace sees; a symlinked file, e.g.
//      systemd-resolved's stub, is written through the link)
//                     undo: the old bytes written back, only if the file still holds what we wrote
//
// The kill switch comes before the tunnel routes so no packet leaks in between. The TUN's own
// addresses and routes vanish with the device, so after a crash the kernel has already removed
// most of it; the bypass rules and table, the kill switch table and resolv.conf are what `recover`
// really repairs.

#if os(Linux)
import Foundation
import UmbraCore

public struct ConsumerNetworkConfig: Sendable {
    public enum Routes: Equatable, Sendable {
        /// Everything: 0.0.0.0/1 and 128.0.0.0/1 into the tunnel.
        case full
        /// Only these IPv4 networks (CIDR strings) into the tunnel.
        case split([String])
    }

    public var tunName: String
    /// The consumer's address inside the tunnel, assigned by the provider; put on the TUN as /32.
    public var innerAddress: IPAddress
    public var mtu: Int
    /// The underlay address the tunnel's session goes to now (provider or relay). Only checked
    /// against: the inner address must not be routed toward it, and the MTU must fit the link
    /// toward it. Never becomes a route.
    public var underlay: IPAddress?
    public var routes: Routes
    /// Name servers for resolv.conf while the tunnel is up; empty leaves DNS alone.
    public var dns: [String]
    public var resolvConfPath: String
    /// Nothing may leave outside the tunnel but the node's own (marked) datagrams; needs `bypassMark`.
    public var killSwitch: Bool
    /// A network namespace (/var/run/netns/NAME) to do all of it in; must match the runner's.
    public var namespace: String?
    /// Open the TUN device with IFF_VNET_HDR and TSO offloads (TunDevice).
    public var offload = false
    /// The fwmark on the node's own UDP socket (SO_MARK): with full routes, marked datagrams (DHT,
    /// gossip, relays, the tunnel's own session) keep the old routing through policy rules, so the
    /// node stays part of the overlay while everything else enters the tunnel.
    public var bypassMark: UInt32?

    public init(
        innerAddress: IPAddress, tunName: String = "umbra0", mtu: Int = 1420, underlay: IPAddress? = nil,
        routes: Routes = .full, dns: [String] = [], resolvConfPath: String = "/etc/resolv.conf",
        killSwitch: Bool = false, namespace: String? = nil, bypassMark: UInt32? = nil
    ) {
        self.bypassMark = bypassMark
        self.innerAddress = innerAddress
        self.tunName = tunName
        self.mtu = mtu
        self.underlay = underlay
        self.routes = routes
        self.dns = dns
        self.resolvConfPath = resolvConfPath
        self.killSwitch = killSwitch
        self.namespace = namespace
    }
}

public enum ConsumerNetwork {
    public static let journalScope = "consumer"
    public static let killSwitchTable = "umbra_killswitch"

    /// Sets up the consumer's host network (see the file header). On failure, rolls back what it did
    /// and throws; on success the caller owns the handle and must call `down()`.
    public static func up(
        _ config: ConsumerNetworkConfig, journal: HostJournal, runner: HostCommand
    )
        throws(HostNetworkError) -> ConsumerNetworkHandle
    {
        // Validate everything before changing anything.
        try HostNetworkSetup.checkNamespace(config.namespace, runner: runner)
        try HostNetworkSetup.checkInterfaceName(config.tunName)
        guard case .v4(let inner) = config.innerAddress else {
            throw .invalidConfiguration("the inner address \(config.innerAddress) is not IPv4")
        }
        try checkInnerAddress(inner, runner: runner)
        try checkMTU(config.mtu, underlay: config.underlay, runner: runner)
        if config.killSwitch, config.bypassMark == nil {
            throw .invalidConfiguration(
                "the kill switch needs the node's socket to carry a fwmark (SO_MARK needs CAP_NET_ADMIN)")
        }
        let tunnelRoutes: [String]
        switch config.routes {
        case .full: tunnelRoutes = ["0.0.0.0/1", "128.0.0.0/1"]
        case .split(let networks):
            tunnelRoutes = try networks.map { text throws(HostNetworkError) in
                guard let prefix = IPv4Prefix(parsing: text) else {
                    throw .invalidConfiguration("split route \"\(text)\" is not an IPv4 CIDR like 10.0.0.0/8")
                }
                return prefix.description
            }
        }
        let nameServers = try config.dns.map { text throws(HostNetworkError) in
            guard let address = IPAddress(parsing: text) else {
                throw .invalidConfiguration("DNS server \"\(text)\" is not an IP address")
            }
            return address.description
        }

        let setup = HostNetworkSetup(journal: journal, runner: runner, scope: journalScope)
        let name = config.tunName
        let tun = try setup.atomically {
            let tun = try setup.change(undo: .deleteLink(name: name)) {
                try TunDevice.open(name: name, namespace: config.namespace, offload: config.offload)
            }
            do {
                try runner.run(["ip", "addr", "add", "\(config.innerAddress)/32", "dev", tun.name])
                try runner.run(["ip", "link", "set", "dev", tun.name, "mtu", "\(config.mtu)", "up"])
                if config.killSwitch, let mark = config.bypassMark {
                    try setup.change(undo: .deleteNftTable(family: "inet", name: killSwitchTable)) {
                        try runner.run(
                            ["nft", "-f", "-"], input: Array(killSwitchRules(tun: tun.name, mark: mark).utf8))
                    }
                }
                if case .full = config.routes, let mark = config.bypassMark {
                    try addOverlayBypass(mark: mark, setup: setup)
                }
                for network in tunnelRoutes {
                    let route = HostRoute(destination: network, device: tun.name)
                    try setup.change(undo: .deleteRoute(route)) { try runner.run(route.argv("add")) }
                }
                if case .full = config.routes { try blockIPv6(setup: setup) }
                if !nameServers.isEmpty {
                    let path = config.resolvConfPath
                    let written = Array(resolvConf(nameServers).utf8)
                    try setup.change(undo: try HostUndoAction.restoring(file: path, written: written)) {
                        if let failure = HostFiles.writeInPlace(path, written) { throw HostChangeError(failure) }
                    }
                }
            } catch {
                tun.close()  // before the rollback, so the link is gone when `ip link del` runs
                throw error
            }
            return tun
        }
        return ConsumerNetworkHandle(tun: tun, config: config, journal: journal, runner: runner, scope: journalScope)
    }

    /// The nftables script for the kill switch; replaces a leftover table of the same name atomically.
    public static func killSwitchRules(tun: String, mark: UInt32) -> String {
        """
        table inet \(killSwitchTable)
        delete table inet \(killSwitchTable)
        table inet \(killSwitchTable) {
            chain output {
                type filter hook output priority filter; policy drop;
                oifname "lo" accept
                oifname "\(tun)" accept
                meta mark \(markText(mark)) accept
            }
            chain forward {
                type filter hook forward priority filter; policy drop;
                oifname "\(tun)" accept
                iifname "\(tun)" accept
            }
        }

        """
    }

    static func markText(_ mark: UInt32) -> String { "0x" + String(mark, radix: 16) }

    static func resolvConf(_ nameServers: [String]) -> String {
        "# written by umbra while the tunnel is up; the previous file is put back when it goes down\n"
            + nameServers.map { "nameserver \($0)\n" }.joined()
    }

    // MARK: - Checks on what the provider granted

    /// Private and CGNAT unicast: the only inner addresses a consumer accepts from a provider.
    static let innerAddressRanges = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]

    /// The inner address is private or CGNAT unicast, and no route or address of the host covers it
    /// already (a provider granting the LAN's or the underlay path's addresses would hijack them).
    static func checkInnerAddress(_ inner: UInt32, runner: HostCommand) throws(HostNetworkError) {
        let ranges = innerAddressRanges.compactMap { IPv4Prefix(parsing: $0) }
        guard ranges.contains(where: { $0.contains(inner) }) else {
            throw .invalidConfiguration(
                "the provider granted the inner address \(IPAddress.v4(inner)), which is not a private or CGNAT "
                    + "unicast address (\(innerAddressRanges.joined(separator: ", ")))")
        }
        let text = IPAddress.v4(inner).description
        let output: HostCommandOutput
        do { output = try runner.run(["ip", "-j", "-4", "route", "show", "table", "all", "match", text]) } catch {
            throw .invalidConfiguration("cannot list the host's routes: \(error)")
        }
        let routes = (try? JSONDecoder().decode([RouteLookup].self, from: Data(output.standardOutput))) ?? []
        // The default route covers everything; any other route (connected LAN, host route, local
        // address) that covers the inner address means a clash.
        if let clash = routes.first(where: {
            guard let dst = $0.dst, dst != "default", dst != "0.0.0.0/0" else { return false }
            return $0.table != String(bypassTable)
        }) {
            throw .invalidConfiguration(
                "the provider granted the inner address \(text), which the host already routes "
                    + "(\(clash.dst ?? "")\(clash.dev.map { " dev \($0)" } ?? "")); refusing it")
        }
    }

    /// The MTU is at least 1280 (what IPv6 and most applications assume) and at most the MTU of the
    /// link toward the underlay endpoint (a larger one would only black-hole big packets).
    static func checkMTU(_ mtu: Int, underlay: IPAddress?, runner: HostCommand) throws(HostNetworkError) {
        let pathMTU = underlay.flatMap { linkMTU(toward: $0, runner: runner) } ?? 65535
        guard (1280...pathMTU).contains(mtu) else {
            throw .invalidConfiguration(
                "the provider granted MTU \(mtu), outside 1280...\(pathMTU) (the link toward "
                    + "\(underlay.map { "\($0)" } ?? "the provider"))")
        }
    }

    /// The MTU of the device the kernel routes `address` through (`ip -j route get`, then `ip -j link`).
    static func linkMTU(toward address: IPAddress, runner: HostCommand) -> Int? {
        guard let output = try? runner.run(["ip", "-j", "route", "get", address.description]),
            let lookup = try? JSONDecoder().decode([RouteLookup].self, from: Data(output.standardOutput)).first,
            let device = lookup.dev, device != "lo",
            let link = try? runner.run(["ip", "-j", "link", "show", "dev", device]),
            let info = try? JSONDecoder().decode([LinkInfo].self, from: Data(link.standardOutput)).first
        else { return nil }
        return info.mtu
    }

    private struct LinkInfo: Decodable {
        var mtu: Int?
    }

    /// The routing table and rule priority of the overlay bypass.
    public static let bypassTable = 4747
    /// The fwmark the node puts on its own UDP socket (SO_MARK) and the bypass rules match.
    public static let bypassMark: UInt32 = 0x4747

    /// Table 4747 holds today's default route; rules send packets carrying `mark` by the host's own
    /// specific routes (priority 4746, main without /0 and /1 routes) or else by that default route
    /// (priority 4747), never into the tunnel (wg-quick's fwmark rule).
    private static func addOverlayBypass(mark: UInt32, setup: HostNetworkSetup) throws {
        let table = UInt32(bypassTable)
        for family in [4, 6] {
            let runner = setup.runner
            // Without IPv6 in this namespace `ip -6` fails: there is nothing to keep.
            guard family == 4 || ipv6Available(runner) else { continue }
            let output = try runner.run(["ip", "-j", "-\(family)", "route", "show", "default"])
            let routes: [RouteLookup]
            do {
                routes = try JSONDecoder().decode([RouteLookup].self, from: Data(output.standardOutput))
            } catch {
                throw HostChangeError(
                    "cannot parse `ip -j -\(family) route show default` output (\(error)): \(output.outputText)")
            }
            let specific = HostRule(
                family: family, priority: table - 1, fwmark: mark, table: nil, suppressPrefixLength: 1)
            try setup.change(undo: .deleteRule(specific)) { try runner.run(specific.argv("add")) }
            // No default route: nothing more to keep.
            guard let current = routes.first, let device = current.dev else { continue }
            let route = HostRoute(
                family: family, destination: "default", gateway: current.gateway, device: device, table: table)
            try setup.change(undo: .deleteRoute(route)) { try runner.run(route.argv("add")) }
            let rule = HostRule(family: family, priority: table, fwmark: mark, table: table)
            try setup.change(undo: .deleteRule(rule)) { try runner.run(rule.argv("add")) }
        }
    }

    /// IPv6 is on in this namespace (`net.ipv6.conf.all.disable_ipv6` exists and is 0).
    private static func ipv6Available(_ runner: HostCommand) -> Bool {
        guard let output = try? runner.run(["sysctl", "-n", "net.ipv6.conf.all.disable_ipv6"]) else { return false }
        return output.outputText.trimmingWhitespace == "0"
    }

    /// The tunnel carries IPv4 only (the provider assigns no IPv6 address). With full routes, IPv6
    /// must not leave around it: `unreachable ::/1` and `unreachable 8000::/1` (more specific than
    /// any default route) make every IPv6 connection fail at once, so applications fall back to
    /// IPv4 through the tunnel. Host routes to IPv6 underlay endpoints, and the node's own sockets
    /// (the bypass rule), are more specific still and keep working.
    private static func blockIPv6(setup: HostNetworkSetup) throws {
        guard ipv6Available(setup.runner) else { return }
        for network in ["::/1", "8000::/1"] {
            let route = HostRoute(family: 6, type: "unreachable", destination: network)
            try setup.change(undo: .deleteRoute(route)) { try setup.runner.run(route.argv("add")) }
        }
    }

    private struct RouteLookup: Decodable {
        var type: String?
        var dst: String?
        var gateway: String?
        var dev: String?
        var table: String?
    }
}

/// A consumer tunnel that is up. `down()` closes the TUN and undoes every host change.
public typealias ConsumerNetworkHandle = HostNetworkHandle<ConsumerNetworkConfig>
#endif
