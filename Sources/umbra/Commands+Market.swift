import ArgumentParser
import Dialogue
import Foundation
import Node
import NodeAPI
import NodeRuntime
import Proposals
import Tunnel
import UmbraCore

/// `umbra up --provide …`: what a provider offers.
struct ProvideOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Sell this service (today: ip-tunnel): sign, gossip and refresh a proposal; withdraw it on stop.",
            valueName: "service"))
    var provide: String?

    @Option(help: ArgumentHelp("Provider: ISO 3166 country the traffic leaves from.", valueName: "CC"))
    var country: String?

    @Option(help: ArgumentHelp("Provider: optional region or city (≤ 32 ASCII characters).", valueName: "text"))
    var region: String?

    @Option(help: ArgumentHelp("Provider: residential, hosting or mobile.", valueName: "kind"))
    var ipType: String?

    @Option(help: ArgumentHelp("Provider: price per GiB in micro-units.", valueName: "n"))
    var priceGib: UInt64 = 0

    @Option(help: ArgumentHelp("Provider: price per minute in micro-units.", valueName: "n"))
    var priceMin: UInt64 = 0

    @Option(help: ArgumentHelp("Provider: concurrent sessions offered.", valueName: "n"))
    var capacity: UInt32 = 64

    @Option(
        name: .customLong("allow"),
        help: ArgumentHelp("Provider: admit only these consumers (repeatable; default: open).", valueName: "umbra1…"))
    var allow: [String] = []

    @Option(
        help: ArgumentHelp(
            "Provider: proposal lifetime in seconds (default 180; refreshed every third of it). For test networks.",
            valueName: "seconds"))
    var proposalLifetime: Int?

    @Option(
        help: ArgumentHelp(
            "Provider of ip-tunnel: the consumers' inner address pool (the provider's TUN network).",
            valueName: "cidr"))
    var tunnelPool = "10.182.0.0/16"

    @Option(
        help: ArgumentHelp(
            "Provider of ip-tunnel: the TUN device to create, or `none` to only advertise and answer dialogues "
                + "(no data plane, no root needed; for test networks).", valueName: "name"))
    var tunnelDevice = "umbrap0"

    @Option(
        help: ArgumentHelp(
            "Provider of ip-tunnel: let consumers reach this block although the egress policy blocks it by default "
                + "(private, loopback, link-local, carrier-grade NAT, metadata) (repeatable).", valueName: "cidr"))
    var egressAllow: [String] = []

    /// The data plane settings of a provider.
    func applyTunnel(to config: inout NodeConfig) throws {
        do { config.dialogue.server.pool = try IPv4Network(parsing: tunnelPool) } catch {
            throw CLIError("umbra up: --tunnel-pool: \(error)")
        }
        for text in egressAllow {
            do { config.tunnel.egress.allowed.append(try IPPrefix(parsing: text)) } catch {
                throw CLIError("umbra up: --egress-allow: \(error)")
            }
        }
        if tunnelDevice != "none", tunnelDevice.isEmpty || tunnelDevice.utf8.count > 15 {
            throw CLIError("umbra up: --tunnel-device must be 1 to 15 characters (an interface name) or none")
        }
    }

    /// Applies the lifetime to the market settings (refresh at a third of it, as 60 s of 180 s).
    func apply(to market: inout MarketConfig) throws {
        market.provide = try config()
        guard let proposalLifetime else { return }
        guard (6...3600).contains(proposalLifetime) else {
            throw CLIError("umbra up: --proposal-lifetime must be 6 to 3600 seconds")
        }
        market.proposalLifetime = .seconds(Int64(proposalLifetime))
        market.refreshInterval = .seconds(Int64(proposalLifetime)) / 3
    }

    /// The provider settings, or nil without `--provide`; throws a CLI error naming the bad flag.
    func config() throws -> ProvideConfig? {
        guard let provide else {
            let stray = [
                country.map { _ in "--country" }, region.map { _ in "--region" }, ipType.map { _ in "--ip-type" },
            ]
            .compactMap { $0 }
            if let flag = stray.first { throw CLIError("umbra up: \(flag) only applies with --provide ip-tunnel") }
            return nil
        }
        guard ServiceProposal.isValidServiceType(provide) else {
            throw CLIError("umbra up: --provide '\(provide)': a service is 1 to 32 characters of a-z, 0-9 and '-'")
        }
        guard let country else {
            throw CLIError("umbra up: --provide needs --country (the ISO 3166 code your traffic leaves from, e.g. DE)")
        }
        let code = country.uppercased()
        guard ServiceProposal.isValidCountry(code) else {
            throw CLIError("umbra up: --country '\(country)': use a two-letter ISO 3166 code such as DE")
        }
        if let region, !ServiceProposal.isValidRegion(region) {
            throw CLIError("umbra up: --region '\(region)': at most 32 printable ASCII characters")
        }
        var kind: ServiceProposal.IPType?
        if let ipType {
            switch ipType.lowercased() {
            case "residential": kind = .residential
            case "hosting": kind = .hosting
            case "mobile": kind = .mobile
            default: throw CLIError("umbra up: --ip-type '\(ipType)': use residential, hosting or mobile")
            }
        }
        var config = ProvideConfig()
        config.serviceType = provide
        config.location = ServiceProposal.Location(country: code, region: region, ipType: kind)
        config.pricePerGiB = priceGib
        config.pricePerMinute = priceMin
        config.capacity = capacity
        if !allow.isEmpty {
            var keys: [PublicKey] = []
            for text in allow {
                do { keys.append(try NodeAddress(parsing: text).publicKey) } catch {
                    throw CLIError("umbra up: --allow '\(text)': \(error)")
                }
            }
            guard keys.count <= 16 else { throw CLIError("umbra up: --allow takes at most 16 addresses") }
            config.access = .allowList(keys)
        }
        return config
    }
}

struct ProposalsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proposals",
        abstract: "List the live service proposals this node knows, cheapest first.")
    @OptionGroup var options: DataDirOptions

    @Option(help: "Service type.") var service = "ip-tunnel"
    @Option(help: ArgumentHelp("Only providers in this ISO 3166 country.", valueName: "CC")) var country: String?
    @Option(help: ArgumentHelp("Only up to this price per GiB (micro-units).", valueName: "n")) var maxPriceGib: UInt64?
    @Option(help: ArgumentHelp("Only up to this price per minute (micro-units).", valueName: "n"))
    var maxPriceMin: UInt64?
    @Flag(
        help: "Also ask the DHT's provider index (needs --country) and fetch offers gossip has not brought yet.")
    var dht = false
    @Flag(help: "Print the control API's JSON document.") var json = false

    func run() async throws {
        let socket = DataDirectory.resolve(options.dataDir).controlSocket
        if dht, country == nil { throw CLIError("umbra proposals: --dht needs --country (e.g. --country DE)") }
        var query = ["service=" + percentEncoded(service)]
        if dht { query.append("dht=1") }
        if let country { query.append("country=" + percentEncoded(country)) }
        if let maxPriceGib { query.append("max_price_gib=\(maxPriceGib)") }
        if let maxPriceMin { query.append("max_price_min=\(maxPriceMin)") }
        let path = "/v1/proposals?" + query.joined(separator: "&")
        if json {
            print(try fetchRaw(path, socket: socket, command: "proposals"))
            return
        }
        let report: ProposalsReport
        do { report = try ControlClient.request(ProposalsReport.self, method: "GET", path: path, socket: socket) } catch
        {
            throw CLIError("umbra proposals: \(error)")
        }
        if report.proposals.isEmpty {
            print("no matching proposals (\(report.stored) live proposals known in all)")
            if let indexed = report.indexed { print("DHT provider index: \(indexed) providers") }
            return
        }
        // With a ledger, each provider's bond is shown (only bonded providers' offers count).
        let bonded = report.proposals.contains { $0.bond != nil }
        let rows = report.proposals.map { proposal in
            [
                proposal.provider, proposal.country + (proposal.region.map { "/\($0)" } ?? ""),
                proposal.ipType ?? "-", "\(proposal.pricePerGib)", "\(proposal.pricePerMinute)", "\(proposal.capacity)",
                proposal.access, proposal.rttMs.map { String(format: "%.1f ms", $0) } ?? "-",
                proposal.direct.first ?? (proposal.relays.isEmpty ? "-" : "relayed"),
            ] + (bonded ? [proposal.bond.map(String.init) ?? "-"] : [])
        }
        Format.table(
            header: ["PROVIDER", "LOCATION", "IP", "PRICE/GIB", "PRICE/MIN", "CAPACITY", "ACCESS", "RTT", "CONTACT"]
                + (bonded ? ["BOND"] : []),
            rows: rows)
        print("\(report.proposals.count) matching of \(report.stored) live proposals")
        if let indexed = report.indexed {
            print("DHT provider index: \(indexed) providers; \(report.fetched ?? 0) offers fetched from them directly")
        }
    }
}
