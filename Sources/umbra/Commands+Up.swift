import ArgumentParser
import Foundation
import HostNetwork
import Ledger
import Logging
import NIOPosix
import Node
import NodeAPI
import NodeRuntime
import ServiceLifecycle
import Sessions
import UmbraCore
import UmbraCrypto

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the node in the foreground until SIGTERM, SIGINT or `umbra down`.")

    @OptionGroup var options: DataDirOptions
    @OptionGroup var relayOptions: RelayUpOptions

    @Option(help: ArgumentHelp("UDP address to listen on: IPv4 `HOST:PORT` or `[IPv6]:PORT`.", valueName: "host:port"))
    var listen = "0.0.0.0:\(NetworkDefaults.port)"

    @Option(
        help: ArgumentHelp(
            "Another endpoint to publish in this node's peer record and proposals (a port forward, a second "
                + "address); repeatable.", valueName: "host:port"))
    var advertise: [String] = []

    @Option(
        help: ArgumentHelp(
            "Bootstrap list: one contact `umbra1…@host:port` per line, `#` comments.",
            valueName: "file"))
    var bootstrap: String?

    @Option(help: "Network id; nodes of different networks cannot talk.")
    var networkId = SessionConfig().networkID

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Flag(
        name: .customLong("dht-client"),
        help: "Use the DHT without serving it (for a node that others cannot reach).")
    var noDHTServer = false

    @OptionGroup(title: "Provider") var provider: ProvideOptions

    @Option(
        help: ArgumentHelp(
            "The ledger network's genesis file (umbra ledger genesis makes one); remembered in the data dir, so "
                + "later starts need not repeat it.", valueName: "file"))
    var genesis: String?

    @Flag(help: "Vote on ledger entries when this node's identity is in the committee (needs a genesis).")
    var validator = false

    static let defaultBootstrapFile = "./bootstrap-peers.txt"

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw CLIError(
                "umbra up: unknown --log-level '\(logLevel)'; use one of "
                    + Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))
        }
        let listenEndpoint: Endpoint
        do { listenEndpoint = try Endpoint(parsing: listen) } catch {
            throw CLIError("umbra up: --listen '\(listen)': \(error)")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "umbra")
        logger.logLevel = level

        let directory = DataDirectory.resolve(options.dataDir)
        // The genesis is checked before anything is touched: a bad file, or another network's than
        // the data dir joined, changes nothing.
        let ledgerGenesis: (parameters: GenesisParameters, isNew: Bool)?
        do { ledgerGenesis = try GenesisFile.resolve(given: genesis, directory: directory) } catch {
            throw CLIError("umbra up: --genesis: \(error)")
        }
        if validator, ledgerGenesis == nil {
            throw CLIError("umbra up: --validator needs a ledger: pass --genesis FILE (see umbra ledger genesis)")
        }
        // First of all: one node per data dir. A second `up` must not replay the journal (that would
        // undo the live node's tunnel) or touch anything else; held until the process exits.
        let lock: DataDirectoryLock
        do { lock = try DataDirectoryLock.acquire(directory) } catch { throw CLIError("umbra up: \(error)") }
        defer { withExtendedLifetime(lock) {} }
        let (identity, created): (Identity, Bool)
        do { (identity, created) = try IdentityStore.loadOrCreate(in: directory) } catch {
            throw CLIError("umbra up: \(error)")
        }
        if created { logger.notice("created a new identity", metadata: ["file": "\(directory.identityFile)"]) }

        var config = NodeConfig()
        config.sessions.networkID = networkId
        if let ledgerGenesis {
            config.ledger.genesis = ledgerGenesis.parameters
            config.ledger.isValidator = validator
            if validator, !ledgerGenesis.parameters.committee.contains(where: { $0.identity == identity.publicKey }) {
                logger.warning(
                    "--validator: this identity is not in the genesis committee; it votes once an epoch change elects it",
                    metadata: ["address": "\(identity.address)"])
            }
        }
        config.bootstrap = try loadBootstrap(logger: logger, own: identity.publicKey)
        // The node's disk: the DHT records it holds and its routing table, loaded by the node at start
        // (so a restart needs no bootstrap list) and written as they change.
        let store: NodeStore
        do {
            let (opened, imported) = try NodeStore.open(in: directory)
            store = opened
            if imported > 0 {
                logger.notice(
                    "imported the routing table file of an older umbra into the node store",
                    metadata: ["contacts": "\(imported)", "file": "\(opened.path)"])
            }
        } catch { throw CLIError("umbra up: \(error)") }
        config.storage.isEnabled = true
        // A specific listen address is published in our peer record; 0.0.0.0 / :: is not an address.
        if listenEndpoint.address != .v4(0), listenEndpoint.address != .v6(high: 0, low: 0) {
            config.advertisedEndpoints = [listenEndpoint]
        }
        for text in advertise {
            do { config.advertisedEndpoints.append(try Endpoint(parsing: text)) } catch {
                throw CLIError("umbra up: --advertise '\(text)': \(error)")
            }
        }
        config.dht.isServer = !noDHTServer
        try provider.apply(to: &config.market)
        try provider.applyTunnel(to: &config)
        config.relay = try relayOptions.config(listen: listenEndpoint)

        let group = MultiThreadedEventLoopGroup.singleton
        var rng = SecureRandomGenerator()
        let clock = RuntimeClock()
        let host = NodeDriver(
            instance: NodeInstance(identity: identity, config: config, now: clock.now, rng: &rng),
            eventLoop: group.next(), logger: logger, clock: clock, store: store)
        // The tunnel's host changes: first undo what a crashed run left, then (provider) set up.
        let tunnel = TunnelController(
            host: host, directory: directory, journalKey: HostJournalKey(identity: identity), logger: logger)
        await tunnel.recover()
        await host.setHostHandler(tunnel)
        if config.market.provide?.serviceType == "ip-tunnel", provider.tunnelDevice != "none" {
            do {
                try await tunnel.startProvider(
                    interface: provider.tunnelDevice, pool: config.dialogue.server.pool,
                    mtu: config.tunnel.directMTU,
                    blocked: config.tunnel.egress.blocked.map(\.prefix).filter {
                        if case .v4 = $0.address { true } else { false }
                    }.map(\.description),
                    allowed: config.tunnel.egress.allowed.filter {
                        if case .v4 = $0.address { true } else { false }
                    }.map(\.description))
            } catch {
                await tunnel.stop()
                throw CLIError(
                    "umbra up: --provide ip-tunnel needs root (CAP_NET_ADMIN) to create its TUN device, forwarding "
                        + "and NAT, or --tunnel-device none to only advertise: \(error)")
            }
        }
        let shutdown = ShutdownTrigger()
        let node = NodeService(
            host: host, listenHost: listenEndpoint.address.description, listenPort: Int(listenEndpoint.port),
            logger: logger, tunnel: tunnel)
        let control = ControlService(
            socketPath: directory.controlSocket,
            router: ControlRouter(
                host: host, tunnel: tunnel,
                requestShutdown: {
                    // The service group's graceful shutdown, as SIGTERM triggers it; a moment later so
                    // the HTTP answer goes out first.
                    Task {
                        try? await Task.sleep(for: .milliseconds(50))
                        await shutdown.trigger()
                    }
                }),
            group: group, logger: logger)
        logger.info(
            "starting node",
            metadata: [
                "address": "\(identity.address)", "bootstrap.peers": "\(config.bootstrap.count)",
                "provide": "\(config.market.provide.map { "\($0.serviceType) in \($0.location.country)" } ?? "no")",
                "ledger": "\(config.ledger.genesis.map { "\($0.network)\(validator ? " (validator)" : "")" } ?? "off")",
            ])
        // The data dir joins the genesis only now, when every other check has passed: a start that
        // failed leaves it free to be started with another file.
        if let ledgerGenesis, ledgerGenesis.isNew {
            do { try GenesisFile.remember(ledgerGenesis.parameters, in: directory) } catch {
                await tunnel.stop()
                throw CLIError("umbra up: \(error)")
            }
        }
        let services = ServiceGroup(
            configuration: .init(
                services: [.init(service: node), .init(service: control)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        await shutdown.attach(services)
        do { try await services.run() } catch { throw CLIError("umbra up: \(error)") }
        logger.info("stopped")
    }

    private func loadBootstrap(logger: Logger, own: PublicKey) throws -> [DialTarget] {
        let path = bootstrap ?? Self.defaultBootstrapFile
        guard let data = FileManager.default.contents(atPath: path) else {
            if bootstrap == nil {
                logger.warning("no bootstrap list, starting alone", metadata: ["file": "\(path)"])
                return []
            }
            throw CLIError("umbra up: cannot read the bootstrap list \(path); check the --bootstrap path")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw CLIError("umbra up: the bootstrap list \(path) is not UTF-8 text")
        }
        let (contacts, errors) = BootstrapList.parse(text)
        for error in errors {
            logger.warning(
                "skipping a bootstrap line",
                metadata: [
                    "file": "\(path)", "line": "\(error.line)",
                    "reason": "\(error.message)",
                ])
        }
        var targets: [DialTarget] = []
        for contact in contacts where contact.publicKey != own {
            do {
                targets.append(DialTarget(publicKey: contact.publicKey, endpoint: try Resolver.endpoint(of: contact)))
            } catch {
                logger.warning(
                    "skipping a bootstrap contact",
                    metadata: [
                        "contact": "\(contact)",
                        "reason": "\(error)",
                    ])
            }
        }
        return targets
    }
}

struct Down: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop the running node gracefully.")
    @OptionGroup var options: DataDirOptions

    func run() async throws {
        let directory = DataDirectory.resolve(options.dataDir)
        do {
            _ = try ControlClient.request(
                [String: String].self, method: "POST", path: "/v1/shutdown",
                socket: directory.controlSocket)
        } catch { throw CLIError("umbra down: \(error)") }
        // Wait (bounded) until the node has closed its control socket.
        for _ in 0..<100 where ControlClient.isListening(directory.controlSocket) {
            try await Task.sleep(for: .milliseconds(100))
        }
        guard !ControlClient.isListening(directory.controlSocket) else {
            throw CLIError("umbra down: the node accepted the request but still answers after 10 s; check its log")
        }
        print("stopped")
    }
}

/// Lets `POST /v1/shutdown` (`umbra down`) stop the node through the service group's graceful
/// shutdown, the path SIGTERM takes.
actor ShutdownTrigger {
    private var group: ServiceGroup?
    private var requested = false

    func attach(_ group: ServiceGroup) async {
        self.group = group
        if requested { await group.triggerGracefulShutdown() }
    }

    func trigger() async {
        requested = true
        await group?.triggerGracefulShutdown()
    }
}
