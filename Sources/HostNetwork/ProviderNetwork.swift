// The provider's side of the tunnel on the host: consumers' packets come out of the TUN, are
// forwarded and masqueraded out of the uplink; replies come back into the TUN. What `up` changes,
// in this order, each undo action journaled (HostJournal, scope "provider") before the change:
//
//   1. TUN device `umbrap0` (TunDevice, non-persistent)             undo: ip link del umbrap0
//      ip addr add GATEWAY/POOL_LENGTH dev umbrap0 (also the pool's connected route);
//      ip link set dev umbrap0 mtu MTU up                             (go with the device)
//   2. net.ipv4.ip_forward=1 via `sysctl -w` (per network namespace), only if it is not 1 already
//                                                                   undo: sysctl -w net.ipv4.ip_forward=OLD
//   3. nft table ip umbra_provider (one atomic `nft -f -` transaction):
//        postrouting (nat, srcnat):  ip saddr POOL oifname != "umbrap0" masquerade
//        forward (filter), policy drop if step 2 turned forwarding on, else accept:
//                                    iifname "umbrap0" ip daddr { BLOCKED } drop
//                                    iifname "umbrap0" oifname { UPLINKS } accept
//                                    iifname "umbrap0" drop      (consumers leave by the uplink only)
//                                    oifname "umbrap0" ct state established,related accept
//                                    oifname "umbrap0" drop      (nobody opens connections into the pool,
//                                                                 consumers included)
//        input (filter):             iifname "umbrap0" drop      (consumers cannot reach the host's services)
//                                                                   undo: nft delete table ip umbra_provider
//
// The forward policy: net.ipv4.ip_forward=1 turns the whole host into a router between all its
// interfaces, not only pool↔uplink. When the node is the one that turned it on, nothing else was
// forwarded before, so the chain drops every forward that is not the pool's (policy drop): the host
// routes for its consumers and for nobody else. When forwarding was already on, the host is a
// router by its operator's choice (Docker, a home gateway, VMs): its other forwarding is left to
// its own rules (policy accept) and only the pool's traffic is restricted. UPLINKS are the devices
// of the host's default routes at start (`ip -j route show default`); with none, the pool may leave
// by any interface but its own.
//
// Other tables' base chains still vote: a forward chain elsewhere with policy drop (Docker's, a
// distribution firewall) also drops the consumers' traffic; accept here cannot override it.
// Per-session anti-spoofing (a session may only send from its own inner address) is the data
// plane's job, before packets reach the TUN.

#if os(Linux)
import Foundation
import UmbraCore

public struct ProviderNetworkConfig: Sendable {
    public var tunName: String
    /// The consumers' address pool, an IPv4 CIDR.
    public var pool: String
    /// The provider's own address in the pool (conventionally its .1); consumers route through it.
    public var gateway: IPAddress
    public var mtu: Int
    /// Destinations consumers may not reach (defense in depth behind the data plane's egress policy).
    public var blockedDestinations: [String]
    /// Operator overrides (`--egress-allow`): accepted before the block rule.
    public var allowedDestinations: [String] = []
    /// A network namespace (/var/run/netns/NAME) to do all of it in; must match the runner's.
    public var namespace: String?
    /// Open the TUN device with IFF_VNET_HDR and TSO offloads (TunDevice).
    public var offload = false

    /// Private, loopback, link-local (cloud metadata at 169.254.169.254), CGNAT, multicast and
    /// reserved ranges: a provider's consumers reach the public internet only.
    public static let defaultBlockedDestinations = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.168.0.0/16", "168.63.129.16/32", "224.0.0.0/4", "240.0.0.0/4",
    ]

    public init(
        gateway: IPAddress, tunName: String = "umbrap0", pool: String = "10.182.0.0/16", mtu: Int = 1420,
        blockedDestinations: [String] = ProviderNetworkConfig.defaultBlockedDestinations, namespace: String? = nil
    ) {
        self.gateway = gateway
        self.tunName = tunName
        self.pool = pool
        self.mtu = mtu
        self.blockedDestinations = blockedDestinations
        self.namespace = namespace
    }
}

public enum ProviderNetwork {
    public static let journalScope = "provider"
    public static let table = "umbra_provider"
    static let forwardingKey = "net.ipv4.ip_forward"

    /// Sets up the provider's host network (see the file header). On failure, rolls back what it did
    /// and throws; on success the caller owns the handle and must call `down()`.
    public static func up(
        _ config: ProviderNetworkConfig, journal: HostJournal, runner: HostCommand
    )
        throws(HostNetworkError) -> ProviderNetworkHandle
    {
        try HostNetworkSetup.checkNamespace(config.namespace, runner: runner)
        try HostNetworkSetup.checkInterfaceName(config.tunName)
        try HostNetworkSetup.checkMTU(config.mtu)
        guard let pool = IPv4Prefix(parsing: config.pool), pool.length <= 30 else {
            throw .invalidConfiguration("the pool \"\(config.pool)\" is not an IPv4 CIDR of /30 or larger")
        }
        guard case .v4(let gateway) = config.gateway, pool.contains(gateway), gateway != pool.network,
            gateway != pool.network | ~IPv4Prefix.mask(pool.length)
        else {
            throw .invalidConfiguration("the gateway \(config.gateway) is not a host address in the pool \(pool)")
        }
        let blocked = try normalize(config.blockedDestinations)
        let allowed = try normalize(config.allowedDestinations)

        let setup = HostNetworkSetup(journal: journal, runner: runner, scope: journalScope)
        let name = config.tunName
        let tun = try setup.atomically {
            let tun = try setup.change(undo: .deleteLink(name: name)) {
                try TunDevice.open(name: name, namespace: config.namespace, offload: config.offload)
            }
            do {
                try runner.run(["ip", "addr", "add", "\(config.gateway)/\(pool.length)", "dev", tun.name])
                try runner.run(["ip", "link", "set", "dev", tun.name, "mtu", "\(config.mtu)", "up"])
                let forwarding = try runner.run(["sysctl", "-n", forwardingKey]).outputText.trimmingWhitespace
                let uplinks = try uplinkDevices(runner: runner).filter { $0 != tun.name }
                if forwarding != "1" {
                    try setup.change(undo: .restoreSysctl(key: forwardingKey, previousValue: forwarding)) {
                        try runner.run(["sysctl", "-w", "\(forwardingKey)=1"])
                    }
                }
                try setup.change(undo: .deleteNftTable(family: "ip", name: table)) {
                    let rules = firewallRules(
                        tun: tun.name, pool: pool, blocked: blocked, allowed: allowed, uplinks: uplinks,
                        forwardingWasOff: forwarding != "1")
                    try runner.run(["nft", "-f", "-"], input: Array(rules.utf8))
                }
            } catch {
                tun.close()
                throw error
            }
            return tun
        }
        return ProviderNetworkHandle(tun: tun, config: config, journal: journal, runner: runner, scope: journalScope)
    }

    /// The nftables script; replaces a leftover table of the same name atomically.
    public static func firewallRules(
        tun: String, pool: IPv4Prefix, blocked: [IPv4Prefix], allowed: [IPv4Prefix] = [], uplinks: [String] = [],
        forwardingWasOff: Bool = true
    ) -> String {
        let outRule =
            uplinks.isEmpty
            ? "        iifname \"\(tun)\" oifname != \"\(tun)\" accept\n"
            : "        iifname \"\(tun)\" oifname { \(uplinks.map { "\"\($0)\"" }.joined(separator: ", ")) } accept\n"
        let allowRule =
            allowed.isEmpty
            ? ""
            : "        iifname \"\(tun)\" ip daddr { \(allowed.map(\.description).joined(separator: ", ")) } accept\n"
        let blockRule =
            allowRule
            + (blocked.isEmpty
                ? ""
                : "        iifname \"\(tun)\" ip daddr { \(blocked.map(\.description).joined(separator: ", ")) } drop\n")
        return """
            table ip \(table)
            delete table ip \(table)
            table ip \(table) {
                chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
                    ip saddr \(pool) oifname != "\(tun)" masquerade
                }
                chain forward {
                    type filter hook forward priority filter; policy \(forwardingWasOff ? "drop" : "accept");
            \(blockRule)\(outRule)        iifname "\(tun)" drop
                    oifname "\(tun)" ct state established,related accept
                    oifname "\(tun)" drop
                }
                chain input {
                    type filter hook input priority filter; policy accept;
                    iifname "\(tun)" drop
                }
            }

            """
    }

    /// The devices of the host's IPv4 default routes: where consumers' traffic may leave.
    static func uplinkDevices(runner: HostCommand) throws -> [String] {
        struct Route: Decodable { var dev: String? }
        let output = try runner.run(["ip", "-j", "-4", "route", "show", "default"])
        let routes = (try? JSONDecoder().decode([Route].self, from: Data(output.standardOutput))) ?? []
        var devices: [String] = []
        for case let device? in routes.map(\.dev) where !devices.contains(device) {
            if (try? HostNetworkSetup.checkInterfaceName(device)) != nil { devices.append(device) }
        }
        return devices
    }

    /// Parses the CIDRs and drops those inside another (nft rejects overlapping set elements).
    static func normalize(_ networks: [String]) throws(HostNetworkError) -> [IPv4Prefix] {
        var prefixes: [IPv4Prefix] = []
        for text in networks {
            guard let prefix = IPv4Prefix(parsing: text) else {
                throw .invalidConfiguration("blocked destination \"\(text)\" is not an IPv4 CIDR like 10.0.0.0/8")
            }
            prefixes.append(prefix)
        }
        return prefixes.enumerated().filter { index, prefix in
            !prefixes.enumerated().contains { other, candidate in
                other != index && candidate.contains(prefix) && (candidate != prefix || other < index)
            }
        }.map(\.element)
    }
}

/// A provider tunnel that is up. `down()` closes the TUN and undoes every host change.
public typealias ProviderNetworkHandle = HostNetworkHandle<ProviderNetworkConfig>
#endif
