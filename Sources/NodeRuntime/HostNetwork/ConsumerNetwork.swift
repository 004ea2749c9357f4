// The consumer's side of the tunnel on the host: what `up` changes, in this order, and how each
// change is undone (every undo action is journaled in HostJournal, scope "consumer", before the
// change is made):
//
//   1. TUN device `umbra0` (TunDevice, non-persistent)             undo: ip link del umbra0
//      ip addr add INNER/32 dev umbra0; ip link set dev umbra0 mtu MTU up   (go with the device)
//   2. per exempt underlay IP (the provider's or relay's endpoint), before any tunnel route exists:
//      `ip -j route get IP` → gateway, dev; ip route add IP/32 via GW dev DEV (no gateway: dev DEV)
//                                                                   undo: ip route del (same route)
//   3. kill switch (optional): nft table inet umbra_killswitch, an output chain with policy drop
//      accepting oifname "lo", oifname "umbra0" and udp sport LISTEN_PORT (the overlay socket)
//                                                                   undo: nft delete table inet umbra_killswitch
//   3b. overlay bypass (full routes with `overlayPort`): table 4747 gets today's default route,
//      and `ip rule add priority 4747 ipproto udp sport PORT lookup 4747` sends the node's own UDP
//      (DHT, gossip, relays, the tunnel's session) by it, never into the tunnel; before it,
//      `priority 4746 … lookup main suppress_prefixlength 1` keeps LAN and host routes for it
//                                                 undo: ip rule del …; ip route del default table 4747
//   4. routes: full → ip route add 0.0.0.0/1 dev umbra0; ip route add 128.0.0.0/1 dev umbra0
//      (more specific than any default route, which stays untouched); split → one route per CIDR
//                                                                   undo: ip route del CIDR dev umbra0
//   4b. full routes with IPv6 on: ip -6 route add unreachable ::/1; … 8000::/1 (the tunnel is
//      IPv4 only; IPv6 fails at once instead of leaving around it)   undo: ip -6 route del (same)
//   5. DNS (optional): /etc/resolv.conf rewritten IN PLACE (truncate + write, never rename: under
//      `ip netns exec` it is a bind mount of /etc/netns/NS/resolv.conf, and a rename would replace
//      the mount point's directory entry, not the file the namespace sees; a symlinked file, e.g.
//      systemd-resolved's stub, is written through the link)   undo: the old bytes written back
//
// The exempt routes come first so the underlay path is pinned before the tunnel routes would
// capture it; the kill switch comes before the tunnel routes so no packet leaks in between. The
// TUN's own addresses and routes vanish with the device, so after a crash the kernel has already
// removed most of it; the exempt routes, the kill switch table and resolv.conf are what `recover`
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
    /// Underlay IPs that must keep their current path (the provider's or relay's endpoints).
    public var exempt: [IPAddress]
    public var routes: Routes
    /// Name servers for resolv.conf while the tunnel is up; empty leaves DNS alone.
    public var dns: [String]
    public var resolvConfPath: String
    /// The overlay's UDP listen port; when set, nothing else may leave outside the tunnel.
    public var killSwitch: UInt16?
    /// A network namespace (/var/run/netns/NAME) to do all of it in; must match the runner's.
    public var namespace: String?
    /// Open the TUN device with IFF_VNET_HDR and TSO offloads (TunDevice).
    public var offload = false
    /// The overlay's own UDP port: with full routes, its datagrams (DHT, gossip, relays, the
    /// tunnel's own session) keep the old default route through a policy rule, so the node stays
    /// part of the overlay while everything else enters the tunnel.
    public var overlayPort: UInt16?

    public init(
        innerAddress: IPAddress, tunName: String = "umbra0", mtu: Int = 1420, exempt: [IPAddress] = [],
        routes: Routes = .full, dns: [String] = [], resolvConfPath: String = "/etc/resolv.conf",
        killSwitch: UInt16? = nil, namespace: String? = nil, overlayPort: UInt16? = nil
    ) {
        self.overlayPort = overlayPort
        self.innerAddress = innerAddress
        self.tunName = tunName
        self.mtu = mtu
        self.exempt = exempt
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
        try HostNetworkSetup.checkMTU(config.mtu)
        guard case .v4 = config.innerAddress else {
            throw .invalidConfiguration("the inner address \(config.innerAddress) is not IPv4")
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
                for address in config.exempt {
                    try addExemptRoute(address, tunName: tun.name, setup: setup)
                }
                if let port = config.killSwitch {
                    try setup.change(undo: .deleteNftTable(family: "inet", name: killSwitchTable)) {
                        try runner.run(
                            ["nft", "-f", "-"], input: Array(killSwitchRules(tun: tun.name, port: port).utf8))
                    }
                }
                if case .full = config.routes, let port = config.overlayPort {
                    try addOverlayBypass(port: port, setup: setup)
                }
                for network in tunnelRoutes {
                    let route = [network, "dev", tun.name]
                    try setup.change(undo: .deleteRoute(argv: ["ip", "route", "del"] + route)) {
                        try runner.run(["ip", "route", "add"] + route)
                    }
                }
                if case .full = config.routes { try blockIPv6(setup: setup) }
                if !nameServers.isEmpty {
                    let path = config.resolvConfPath
                    try setup.change(undo: try HostUndoAction.restoring(file: path)) {
                        if let failure = HostFiles.writeInPlace(path, Array(resolvConf(nameServers).utf8)) {
                            throw HostChangeError(failure)
                        }
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
    public static func killSwitchRules(tun: String, port: UInt16) -> String {
        """
        table inet \(killSwitchTable)
        delete table inet \(killSwitchTable)
        table inet \(killSwitchTable) {
            chain output {
                type filter hook output priority filter; policy drop;
                oifname "lo" accept
                oifname "\(tun)" accept
                udp sport \(port) accept
            }
        }

        """
    }

    static func resolvConf(_ nameServers: [String]) -> String {
        "# written by umbra while the tunnel is up; the previous file is put back when it goes down\n"
            + nameServers.map { "nameserver \($0)\n" }.joined()
    }

    /// `ip -j route get IP` as the kernel answers it today, pinned as a host route.
    private static func addExemptRoute(_ address: IPAddress, tunName: String, setup: HostNetworkSetup) throws {
        let runner = setup.runner
        let output = try runner.run(["ip", "-j", "route", "get", address.description])
        let decoded: [RouteLookup]
        do {
            decoded = try JSONDecoder().decode([RouteLookup].self, from: Data(output.standardOutput))
        } catch {
            throw HostChangeError("cannot parse `ip -j route get \(address)` output (\(error)): \(output.outputText)")
        }
        guard let lookup = decoded.first, let device = lookup.dev else {
            throw HostChangeError("the kernel has no route to the exempt address \(address)")
        }
        // A local address needs no route; one already routed into the tunnel means a stale setup.
        if lookup.type == "local" || device == "lo" { return }
        guard device != tunName else {
            throw HostChangeError(
                "the exempt address \(address) is already routed into \(tunName); is an old tunnel still up?")
        }
        let hostPrefix = if case .v4 = address { "/32" } else { "/128" }
        var route = [address.description + hostPrefix]
        if let gateway = lookup.gateway { route += ["via", gateway] }
        route += ["dev", device]
        do {
            try setup.change(undo: .deleteRoute(argv: ["ip", "route", "del"] + route)) {
                try runner.run(["ip", "route", "add"] + route)
            }
        } catch let error as HostCommandError where error.standardError.contains("File exists") {
            return  // the host already pins this address; leave its route alone
        }
    }

    /// The routing table and rule priority of the overlay bypass.
    public static let bypassTable = 4747

    /// `ip rule add priority T ipproto udp sport PORT lookup T` with table T holding today's default
    /// route: the node's own datagrams never enter the tunnel (as wg-quick does with a fwmark).
    private static func addOverlayBypass(port: UInt16, setup: HostNetworkSetup) throws {
        for family in ["-4", "-6"] {
            let runner = setup.runner
            // Without IPv6 in this namespace `ip -6` fails: there is nothing to keep.
            guard family == "-4" || ipv6Available(runner) else { continue }
            let output = try runner.run(["ip", "-j", family, "route", "show", "default"])
            let routes: [RouteLookup]
            do {
                routes = try JSONDecoder().decode([RouteLookup].self, from: Data(output.standardOutput))
            } catch {
                throw HostChangeError(
                    "cannot parse `ip -j \(family) route show default` output (\(error)): \(output.outputText)")
            }
            // No default route: nothing to keep; the exempt host routes still pin the tunnel's peers.
            guard let current = routes.first, let device = current.dev else { continue }
            let table = String(bypassTable)
            var route = ["default"]
            if let gateway = current.gateway { route += ["via", gateway] }
            route += ["dev", device, "table", table]
            try setup.change(undo: .deleteRoute(argv: ["ip", family, "route", "del", "default", "table", table])) {
                try runner.run(["ip", family, "route", "add"] + route)
            }
            let rule = ["priority", table, "ipproto", "udp", "sport", String(port), "lookup", table]
            try setup.change(undo: .deleteRoute(argv: ["ip", family, "rule", "del"] + rule)) {
                try runner.run(["ip", family, "rule", "add"] + rule)
            }
            // Before it, the main table without its /0 and /1 routes (the default and the tunnel's):
            // peers on the LAN and pinned host routes stay reachable directly, not via the gateway.
            let local = [
                "priority", String(bypassTable - 1), "ipproto", "udp", "sport", String(port), "lookup", "main",
                "suppress_prefixlength", "1",
            ]
            try setup.change(undo: .deleteRoute(argv: ["ip", family, "rule", "del"] + local)) {
                try runner.run(["ip", family, "rule", "add"] + local)
            }
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
            let route = ["unreachable", network]
            try setup.change(undo: .deleteRoute(argv: ["ip", "-6", "route", "del"] + route)) {
                try setup.runner.run(["ip", "-6", "route", "add"] + route)
            }
        }
    }

    private struct RouteLookup: Decodable {
        var type: String?
        var dst: String?
        var gateway: String?
        var dev: String?
    }
}

/// A consumer tunnel that is up. `down()` closes the TUN and undoes every host change.
public typealias ConsumerNetworkHandle = HostNetworkHandle<ConsumerNetworkConfig>
#endif
