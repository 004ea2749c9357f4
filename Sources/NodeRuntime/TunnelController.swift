// What the node changes on the host for the tunnel, and when it undoes it (docs/operations.md
// "What the node changes on the host").
//
// - Provider (`--provide ip-tunnel`): at start, its TUN device, the pool's gateway address,
//   IP forwarding and an nftables table (masquerade out of the uplink, nothing into the pool from
//   outside, nothing from the pool to the host itself); undone at a clean stop.
// - Consumer (`umbra connect`): the TUN device `umbra0` with the inner address, routes (whole
//   traffic or split), policy rules that let the node's own marked socket keep the old path,
//   optionally DNS and the kill switch; undone by `umbra disconnect` and at a clean stop. The node
//   asks for both as host requests (`HostAction`, performed here one at a time); it owns the
//   tunnel's state, this actor only the handles of what it changed.
// Every change is journalled (HostJournal) before it is made, one journal per role in the data
// dir, so a node that starts after a crash first undoes what the dead process left behind.

import Dialogue
import HostNetwork
import Logging
import Node
import UmbraCore

public actor TunnelController: HostNetworkHandler {
    public struct TunnelError: Error, CustomStringConvertible {
        public var description: String
    }

    public static let consumerInterface = "umbra0"
    public static let providerInterface = "umbrap0"

    private let host: NodeDriver
    private let directory: DataDirectory
    private let logger: Logger
    private let journalKey: HostJournalKey
    private let runner = HostCommand()
    private var consumerHandle: ConsumerNetworkHandle?
    /// One journal for both roles (entries are scoped), so neither overwrites the other's.
    private var journal: HostJournal?
    private var providerHandle: ProviderNetworkHandle?
    /// Set by `stop`: nothing is set up any more (a set-up asked for before, or in flight across an
    /// `await`, is refused or undone).
    private var stopped = false

    /// `journalKey` authenticates the host-change journal (`HostJournalKey(identity:)`).
    public init(host: NodeDriver, directory: DataDirectory, journalKey: HostJournalKey, logger: Logger) {
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
        await host.attachDevice(handle.tun, mtu: mtu)
        logger.info(
            "provider tunnel up", metadata: ["interface": "\(handle.tun.name)", "pool": "\(pool)", "mtu": "\(mtu)"])
    }

    // MARK: - Host requests (the node's connect and disconnect commands)

    public func perform(_ action: HostAction) async -> HostOutcome {
        switch action {
        case .setUpConsumerTunnel(let plan):
            guard !stopped else { return .failed("the node is stopping") }
            do {
                try await setUpConsumer(plan)
                return .done
            } catch {
                return .failed("\(error)")
            }
        case .tearDownConsumerTunnel:
            return await tearDownConsumer()
        }
    }

    /// Consumer: sets up the host for `plan.session` (an open dialogue) and starts moving its
    /// packets; the node routes them once this returns. `plan.underlay` (the session's current
    /// endpoint) is only checked against, never routed. On a failure nothing stays changed.
    private func setUpConsumer(_ plan: ConsumerTunnelPlan) async throws {
        if consumerHandle != nil { _ = await tearDownConsumer() }
        let journal = try sharedJournal()
        let mark = await host.socketMark
        guard !stopped else { throw TunnelError(description: "the node is stopping") }
        let options = plan.options
        if mark == nil, options.killSwitch || options.routes == .full {
            throw TunnelError(description: Self.noMarkReason)
        }
        let session = plan.session
        var config = ConsumerNetworkConfig(
            innerAddress: session.grant.innerIPv4.address, tunName: Self.consumerInterface, mtu: Int(session.grant.mtu),
            underlay: plan.underlay, dns: options.dns, killSwitch: options.killSwitch, bypassMark: mark)
        config.offload = true
        switch options.routes {
        case .full: config.routes = .full
        case .split(let prefixes): config.routes = .split(prefixes)
        }
        let handle = try ConsumerNetwork.up(config, journal: journal, runner: runner)
        consumerHandle = handle
        await host.attachDevice(handle.tun, mtu: Int(session.grant.mtu))
        // `stop` may have run while the device was being attached (it undid the handle then).
        guard !stopped, consumerHandle === handle else {
            if consumerHandle === handle { _ = await tearDownConsumer() }
            throw TunnelError(description: "the node is stopping")
        }
        logger.info(
            "tunnel up",
            metadata: [
                "provider": "\(NodeAddress(publicKey: session.provider))",
                "inner": "\(session.grant.innerIPv4.address)", "interface": "\(handle.tun.name)",
            ])
    }

    /// Why a tunnel that must bypass by fwmark cannot be set up.
    public static let noMarkReason =
        "the node's UDP socket carries no fwmark (SO_MARK needs CAP_NET_ADMIN: run `umbra up` as root), so its "
        + "own datagrams could not bypass the tunnel"

    /// Consumer: stops reading the TUN device and restores routes, DNS and firewall exactly.
    private func tearDownConsumer() async -> HostOutcome {
        guard let handle = consumerHandle else { return .done }
        consumerHandle = nil  // before the await: a second tear-down finds nothing to undo
        await host.detachDevice()
        let report = handle.down()
        guard report.isComplete else {
            logger.error("could not undo every host change of the tunnel", metadata: ["report": "\(report)"])
            return .failed("some host changes could not be undone (they stay journalled for the next start): \(report)")
        }
        logger.info("tunnel down")
        return .done
    }

    /// At a clean stop: both roles undone.
    public func stop() async {
        stopped = true
        _ = await tearDownConsumer()
        if providerHandle != nil { await host.detachDevice() }
        if let report = providerHandle?.down(), !report.isComplete {
            logger.error("could not undo every host change of the provider", metadata: ["report": "\(report)"])
        }
        providerHandle = nil
    }
}
