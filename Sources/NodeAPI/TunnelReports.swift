// Control API of the tunnel: `POST /v1/tunnel/connect` (open a dialogue, set up the host, route
// packets), `POST /v1/tunnel/disconnect`, `GET /v1/tunnel` (docs/api.md).

import Dialogue
import Node
import NodeRuntime
import Proposals
import Tunnel
import UmbraCore

/// One direction's totals and current rate.
public struct TunnelTrafficReport: Codable, Sendable, Equatable {
    public var bytes: UInt64
    public var packets: UInt64
    public var bytesPerSecond: Double
}

public struct TunnelConsumerReport: Codable, Sendable, Equatable {
    public var provider: String
    public var sessionId: String
    /// `direct`, `hole-punched` or `relayed via umbra1…`.
    public var path: String?
    /// The underlay endpoint datagrams go to (the provider's, or the relay's).
    public var endpoint: String?
    public var interface: String
    public var innerAddress: String
    public var gateway: String
    public var mtu: Int
    public var routes: [String]
    public var dns: [String]
    public var killSwitch: Bool
    public var ageSeconds: Double
    public var sent: TunnelTrafficReport
    public var received: TunnelTrafficReport
    /// Stages of the dialogue open (lookup, dial, handshake, request, accept).
    public var stages: [StageReport]
    /// From the API request to the data plane carrying packets (dialogue + host set-up).
    public var connectMs: Double?
}

public struct TunnelServedReport: Codable, Sendable, Equatable {
    public var consumer: String
    public var sessionId: String
    public var innerAddress: String
    public var ageSeconds: Double
    /// From the consumer (to the internet).
    public var received: TunnelTrafficReport
    /// To the consumer.
    public var sent: TunnelTrafficReport
    /// The consumer's own meters, from its last status report (its `bytes_sent` is our received).
    public var consumerReport: ConsumerMetersReport?
}

public struct ConsumerMetersReport: Codable, Sendable, Equatable {
    public var bytesSent: UInt64
    public var bytesReceived: UInt64
    public var packetsSent: UInt64
    public var packetsReceived: UInt64
}

public struct TunnelReport: Codable, Sendable, Equatable {
    /// `connected`, `down` (the dialogue ended; routes stay until disconnect) or `none`.
    public var state: String
    public var consumer: TunnelConsumerReport?
    public var served: [TunnelServedReport]
    public var packetsOut: UInt64
    public var packetsIn: UInt64
    public var slowPath: UInt64
    public var icmpTooBigSent: UInt64
    public var drops: [String: UInt64]
}

extension TunnelTrafficReport {
    init(bytes: UInt64, packets: UInt64, rate: UInt64) {
        self.bytes = bytes
        self.packets = packets
        self.bytesPerSecond = Double(rate)
    }
}

extension ControlRouter {
    func tunnelRoute(_ request: APIRequest) async throws -> APIResponse? {
        switch (request.method, request.path) {
        case (.GET, "/v1/tunnel"):
            return try relayJSON(try await tunnelReport(connectMs: nil))
        case (.POST, "/v1/tunnel/connect"):
            let (report, problem) = try await connect(request.query)
            guard let report else {
                return try relayJSON(ErrorReport(error: problem ?? "bad request"), status: .badRequest)
            }
            return try relayJSON(report)
        case (.POST, "/v1/tunnel/disconnect"):
            guard let tunnel else {
                return try relayJSON(ErrorReport(error: "this node has no tunnel controller"), status: .badRequest)
            }
            let provider = await tunnel.disconnect()
            if let provider { try await host.closeDialogue(with: provider) }
            return try relayJSON(["status": provider == nil ? "no tunnel was up" : "disconnected"])
        case (_, "/v1/tunnel"), (_, "/v1/tunnel/connect"), (_, "/v1/tunnel/disconnect"):
            return try relayJSON(
                ErrorReport(error: "method \(request.method) not allowed on \(request.path)"),
                status: .methodNotAllowed)
        default:
            return nil
        }
    }

    /// `provider=umbra1…` or `country=CC` (the cheapest reachable offer), `split=CIDR,CIDR`,
    /// `dns=IP,IP`, `killswitch=1`.
    func connect(_ query: [String: String]) async throws -> (TunnelReport?, String?) {
        guard let tunnel else { return (nil, "this node has no tunnel controller") }
        let startedAt = host.clock.now
        let service = "ip-tunnel"
        var options = TunnelController.ConnectOptions()
        if let split = query["split"], !split.isEmpty {
            let prefixes = split.split(separator: ",").map(String.init)
            for prefix in prefixes {
                guard let parsed = try? IPPrefix(parsing: prefix), case .v4 = parsed.address else {
                    return (nil, "split: \"\(prefix)\" is not an IPv4 CIDR block such as 198.51.100.0/24")
                }
            }
            options.routes = .split(prefixes)
        }
        if let dns = query["dns"], !dns.isEmpty {
            let servers = dns.split(separator: ",").map(String.init)
            for server in servers where IPAddress(parsingIPv4: Substring(server)) == nil {
                return (nil, "dns: \"\(server)\" is not an IPv4 address such as 9.9.9.9")
            }
            options.dns = servers
        }
        options.killSwitch = ["1", "true", "yes"].contains(query["killswitch"] ?? "")
        let isProvider = try await host.withInstance { $0.dialogueStatus.serverCounters != nil }
        if isProvider {
            return (nil, "this node provides ip-tunnel; run the consumer as a separate node (another data dir)")
        }

        // The node chooses: the provider named, or the country's offers cheapest first; it fetches
        // an offer it lacks, opens a dialogue, and fails over to the next candidate.
        let target: ConnectRequest.Target
        if let text = query["provider"] {
            guard let provider = try? NodeAddress(parsing: text).publicKey else {
                return (nil, "provider must be a node address (umbra1…), e.g. from umbra proposals")
            }
            target = .provider(provider)
        } else if let country = query["country"]?.uppercased(), ServiceProposal.isValidCountry(country) {
            target = .country(country)
        } else {
            return (nil, "name a provider (umbra1…) or a two-letter country code")
        }

        // One tunnel at a time: a previous one (and its dialogue) ends first.
        if let previous = await tunnel.disconnect() { try? await host.closeDialogue(with: previous) }
        let mode: TunnelMode = if case .split = options.routes { .split } else { .fullTunnel }
        let result = try await host.run(
            .connect(ConnectRequest(target: target, serviceType: service, mode: mode, startedAt: startedAt)))
        guard case .connected(let session, _) = result else {
            if case .failed(let failure) = result { return (nil, failure.description) }
            return (nil, "the connect ended unexpectedly: \(result)")
        }
        let provider = session.provider
        // Nothing the proposal names becomes a route: the node's own socket is marked and only it
        // bypasses the tunnel (ConsumerNetwork). The current endpoint is only checked against.
        // A relayed session's endpoint is its relay's.
        let underlay = try await host.withInstance { $0.sessionPath(of: provider)?.endpoint?.address }
        do {
            try await tunnel.connect(session: session, underlay: underlay, options: options)
        } catch {
            try? await host.closeDialogue(with: provider)
            return (nil, "the session opened but the host could not be set up: \(error)")
        }
        let connectMs = host.clock.now.since(startedAt).seconds * 1000
        return (try await tunnelReport(connectMs: connectMs), nil)
    }

    func tunnelReport(connectMs: Double?) async throws -> TunnelReport {
        let consumerState = await tunnel?.consumer
        return try await host.withInstance { [host] instance in
            let now = host.clock.now
            let status = instance.tunnelStatus
            var consumerReport: TunnelConsumerReport?
            var state = "none"
            if let consumerState {
                let path = instance.sessionPath(of: consumerState.provider)
                let client = instance.dialogueStatus.clients.first { $0.provider == consumerState.provider }
                let grant = consumerState.session.grant
                let account = status.consumer?.account
                let rates = account?.rates(at: now)
                state = status.consumer == nil ? "down" : "connected"
                let routes: [String] =
                    switch consumerState.options.routes {
                    case .full: ["0.0.0.0/1", "128.0.0.0/1"]
                    case .split(let prefixes): prefixes
                    }
                consumerReport = TunnelConsumerReport(
                    provider: NodeAddress(publicKey: consumerState.provider).description,
                    sessionId: String(consumerState.session.sessionID, radix: 16),
                    path: path.map {
                        $0.path.rawValue
                            + ($0.path == .relayed
                                ? $0.relay.map { " via \(NodeAddress(publicKey: $0.publicKey))" } ?? "" : "")
                    },
                    endpoint: path?.endpoint?.description, interface: consumerState.interface,
                    innerAddress: grant.innerIPv4.address.description, gateway: grant.gateway.description,
                    mtu: Int(grant.mtu), routes: routes, dns: consumerState.options.dns,
                    killSwitch: consumerState.options.killSwitch,
                    ageSeconds: now.since(status.consumer?.attachedAt ?? consumerState.session.openedAt).seconds,
                    sent: TunnelTrafficReport(
                        bytes: account?.sentBytes ?? 0, packets: account?.sentPackets ?? 0, rate: rates?.sent ?? 0),
                    received: TunnelTrafficReport(
                        bytes: account?.receivedBytes ?? 0, packets: account?.receivedPackets ?? 0,
                        rate: rates?.received ?? 0),
                    stages: (client?.timings ?? []).map {
                        StageReport(
                            stage: $0.stage.description, elapsedMs: $0.elapsed.seconds * 1000,
                            durationMs: $0.duration.seconds * 1000)
                    }, connectMs: connectMs)
            }
            let served = status.served.map { entry in
                let rates = entry.account.rates(at: now)
                return TunnelServedReport(
                    consumer: NodeAddress(publicKey: entry.consumer).description,
                    sessionId: String(entry.sessionID, radix: 16), innerAddress: entry.innerAddress.description,
                    ageSeconds: now.since(entry.account.openedAt).seconds,
                    received: TunnelTrafficReport(
                        bytes: entry.account.receivedBytes, packets: entry.account.receivedPackets,
                        rate: rates.received),
                    sent: TunnelTrafficReport(
                        bytes: entry.account.sentBytes, packets: entry.account.sentPackets, rate: rates.sent),
                    consumerReport: entry.consumerReport.map {
                        ConsumerMetersReport(
                            bytesSent: $0.bytesSent, bytesReceived: $0.bytesReceived, packetsSent: $0.packetsSent,
                            packetsReceived: $0.packetsReceived)
                    })
            }
            return TunnelReport(
                state: state, consumer: consumerReport, served: served, packetsOut: status.counters.packetsOut,
                packetsIn: status.counters.packetsIn, slowPath: status.counters.slowPath,
                icmpTooBigSent: status.counters.icmpTooBigSent,
                drops: Dictionary(uniqueKeysWithValues: status.counters.drops.map { ("\($0.key)", $0.value) }))
        }
    }
}
