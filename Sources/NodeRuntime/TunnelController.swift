// What the node changes on the host for the tunnel, and when it undoes it (docs/operations.md
// "What the node changes on the host").
//
// - Provider (`--provide ip-tunnel`): at start, its TUN device, the pool's gateway address,
//   IP forwarding and an nftables table (masquerade out of the uplink, nothing into the pool from
//   outside, nothing from the pool to the host itself); undone at a clean stop.
// - Consumer (`umbra connect`): the TUN device `umbra0` with the inner address, routes (whole
//   traffic or split), policy rules that let the node's own marked socket keep the old path,
//   optionally DNS and the kill switch; undone by `umbra disconnect` and at a clean stop.
// Every change is journalled (HostJournal) before it is made, one journal per role in the data
// dir, so a node that starts after a crash first undoes what the dead process left behind.

import Dialogue
import HostNetwork
import Logging
import Node
import UmbraCore

public actor TunnelController {
    public enum Routes: Sendable, Equatable {
        case full
        case split([String])
    }

    public struct ConnectOptions: Sendable {
        public var routes: Routes = .full
        public var dns: [String] = []
        public var killSwitch = false
        public init() {}
    }

    /// The consumer tunnel as the host set it up.
    public struct ConsumerState: Sendable {
        public var provider: PublicKey
        public var session: ClientSession
        public var options: ConnectOptions
        public var interface: String
    }

    public struct TunnelError: Error, CustomStringConvertible {
        public var description: String
    }

    public static let consumerInterface = "umbra0"
    public static let providerInterface = "umbrap0"

    private let host: NodeHost
    private let directory: DataDirectory
    private let logger: Logger
    private let journalKey: HostJournalKey
    private let runner = HostCommand()
    private var consumerHandle: ConsumerNetworkHandle?
    /// One journal for both roles (entries are scoped), so neither overwrites the other's.
    private var journal: HostJournal?
    private var providerHandle: ProviderNetworkHandle?
    public private(set) var consumer: ConsumerState?

    /// `journalKey` authenticates the host-change journal (`HostJournalKey(identity:)`).
    public init(host: NodeHost, directory: DataDirectory, journalKey: HostJournalKey, logger: Logger) {
        self.journalKey = journalKey
        self.host = host
        self.directory = directory
        self.logger = logger
    }

    private var journalPath: String { directory.path + "/" + HostJournal.fileName }

    private func sharedJournal() throws -> HostJournal {
        if let journal { return journal }
        let opened = try HostJournal(path: journalPath, key: journalKey)
        journal = opened
        return opened
    }

    /// At node start, with the data dir locked (DataDirectoryLock): undoes what a crashed run left
    /// on the host (routes, DNS, firewall).
    public func recover() {
        let report = HostJournal.recover(at: journalPath, key: journalKey, runner: runner)
        if !report.undone.isEmpty || !report.alreadyGone.isEmpty || !report.isComplete {
            logger.notice(
                "undid host changes left by a previous run",
                metadata: [
                    "journal": "\(journalPath)", "undone": "\(report.undone.count)",
                    "already_gone": "\(report.alreadyGone.count)", "failed": "\(report.failed.count)",
                ])
        }
        for failure in report.failed {
            logger.error(
                "could not undo a host change; it stays journaled for the next start",
                metadata: ["change": "\(failure.action)", "reason": "\(failure.reason)"])
        }
        for skipped in report.leftAlone {
            logger.notice(
                "left a host change alone", metadata: ["change": "\(skipped.action)", "reason": "\(skipped.reason)"])
        }
        if let problem = report.journalError { logger.error("the host journal", metadata: ["error": "\(problem)"]) }
    }

    /// Provider: sets up the TUN device, forwarding and NAT for the address pool, and starts the
    /// data plane on it.
    public func startProvider(
        interface: String, pool: IPv4Network, mtu: Int, blocked: [String], allowed: [String] = []
    ) async throws {
        let journal = try sharedJournal()
        var config = ProviderNetworkConfig(gateway: pool.gateway)
        config.tunName = interface
        config.pool = pool.description
        config.mtu = mtu
        config.blockedDestinations = blocked
        config.allowedDestinations = allowed
        config.offload = true
        let handle = try ProviderNetwork.up(config, journal: journal, runner: runner)
        providerHandle = handle
        try await host.attachDevice(handle.tun, mtu: mtu)
        logger.info(
            "provider tunnel up", metadata: ["interface": "\(handle.tun.name)", "pool": "\(pool)", "mtu": "\(mtu)"])
    }

    /// Consumer: sets up the host for `session` (an open dialogue) and routes packets through it.
    /// `underlay` (the session's current endpoint) is only checked against, never routed.
    public func connect(session: ClientSession, underlay: IPAddress?, options: ConnectOptions) async throws {
        if consumer != nil { await disconnect() }
        let journal = try sharedJournal()
        let mark = host.socketMark
        if mark == nil, options.killSwitch || options.routes == .full {
            throw TunnelError(
                description: "the node's UDP socket carries no fwmark (SO_MARK needs CAP_NET_ADMIN: run `umbra up` "
                    + "as root), so its own datagrams could not bypass the tunnel")
        }
        var config = ConsumerNetworkConfig(
            innerAddress: session.grant.innerIPv4.address, tunName: Self.consumerInterface, mtu: Int(session.grant.mtu),
            underlay: underlay, dns: options.dns, killSwitch: options.killSwitch, bypassMark: mark)
        config.offload = true
        switch options.routes {
        case .full: config.routes = .full
        case .split(let prefixes): config.routes = .split(prefixes)
        }
        let handle = try ConsumerNetwork.up(config, journal: journal, runner: runner)
        consumerHandle = handle
        do {
            try await host.attachDevice(handle.tun, mtu: Int(session.grant.mtu))
            let now = host.clock.now
            try await host.perform { instance, _, _ in
                instance.attachTunnel(session, now: now)
                return ((), [])
            }
        } catch {
            handle.down()
            consumerHandle = nil
            throw error
        }
        consumer = ConsumerState(
            provider: session.provider, session: session, options: options, interface: handle.tun.name)
        logger.info(
            "tunnel up",
            metadata: [
                "provider": "\(NodeAddress(publicKey: session.provider))",
                "inner": "\(session.grant.innerIPv4.address)", "interface": "\(handle.tun.name)",
            ])
    }

    /// Consumer: detaches the data plane and restores routes, DNS and firewall exactly. Returns the
    /// provider the tunnel went to (nil: no tunnel was up).
    @discardableResult
    public func disconnect() async -> PublicKey? {
        let provider = consumer?.provider
        _ = try? await host.perform { instance, _, _ in
            instance.detachTunnel()
            return ((), [])
        }
        if consumerHandle != nil { await host.detachDevice() }
        if let report = consumerHandle?.down(), !report.isComplete {
            logger.error("could not undo every host change of the tunnel", metadata: ["report": "\(report)"])
        }
        consumerHandle = nil
        consumer = nil
        return provider
    }

    /// At a clean stop: both roles undone.
    public func stop() async {
        await disconnect()
        if providerHandle != nil { await host.detachDevice() }
        if let report = providerHandle?.down(), !report.isComplete {
            logger.error("could not undo every host change of the provider", metadata: ["report": "\(report)"])
        }
        providerHandle = nil
    }
}
