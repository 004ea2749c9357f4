// `umbra connect` / `umbra disconnect`: the consumer's tunnel (docs/operations.md "Connecting").
// The running node does the work (it holds the TUN device and the session); these commands ask it
// over the control API and print its report.

import ArgumentParser
import Foundation
import NodeAPI
import NodeRuntime

struct Connect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Carry this host's IP traffic through a provider (needs root: TUN, routes, firewall).",
        discussion: """
            Opens a session with the provider (or the cheapest reachable one in --country), creates \
            the TUN device umbra0 with the inner address the provider assigned, and routes everything \
            through it (0.0.0.0/1 and 128.0.0.0/1, with host routes for the provider's and relays' \
            endpoints via the old path), or only the --split blocks. `umbra disconnect` undoes it all.
            """)
    @OptionGroup var options: DataDirOptions
    @Argument(help: ArgumentHelp("The provider's address, from umbra proposals.", valueName: "umbra1…"))
    var provider: String?
    @Option(help: ArgumentHelp("Pick the cheapest reachable provider in this country.", valueName: "CC"))
    var country: String?
    @Option(help: ArgumentHelp("Route only this IPv4 block through the tunnel (repeatable).", valueName: "cidr"))
    var split: [String] = []
    @Option(help: ArgumentHelp("Use this DNS server while connected (repeatable).", valueName: "ip"))
    var dns: [String] = []
    @Flag(help: "Block every packet that would leave outside the tunnel (but the overlay's own UDP).")
    var killSwitch = false
    @Flag(help: "Print the control API's JSON document.") var json = false

    func validate() throws {
        guard (provider == nil) != (country == nil) else {
            throw ValidationError("name a provider (umbra1…) or --country CC, not both and not neither")
        }
        if let country, country.count != 2 || !country.allSatisfy(\.isLetter) {
            throw ValidationError("--country takes a two-letter ISO 3166 code such as DE, not '\(country)'")
        }
    }

    func run() async throws {
        let socket = DataDirectory.resolve(options.dataDir).controlSocket
        var query: [String] = []
        if let provider { query.append("provider=\(provider)") }
        if let country { query.append("country=\(country.uppercased())") }
        if !split.isEmpty { query.append("split=\(split.joined(separator: ","))") }
        if !dns.isEmpty { query.append("dns=\(dns.joined(separator: ","))") }
        if killSwitch { query.append("killswitch=1") }
        let report: TunnelReport
        do {
            let (status, body) = try ControlClient.raw(
                method: "POST", path: "/v1/tunnel/connect?" + query.joined(separator: "&"), socket: socket,
                timeoutSeconds: 40)
            let text = String(decoding: body, as: UTF8.self)
            guard status == 200 else {
                let message = (try? ControlJSON.decoder.decode(ErrorReport.self, from: Data(body)))?.error ?? text
                throw CLIError("umbra connect: \(message)")
            }
            if json {
                print(text)
                return
            }
            report = try ControlJSON.decoder.decode(TunnelReport.self, from: Data(body))
        } catch let error as CLIError { throw error } catch { throw CLIError("umbra connect: \(error)") }
        guard let tunnel = report.consumer else { throw CLIError("umbra connect: the node reports no tunnel") }
        print("connected   \(tunnel.provider)")
        print("path        \(tunnel.path ?? "-") (\(tunnel.endpoint ?? "-"))")
        print("inner       \(tunnel.innerAddress) on \(tunnel.interface) via \(tunnel.gateway), MTU \(tunnel.mtu)")
        print("routes      \(tunnel.routes.joined(separator: ", "))")
        if !tunnel.dns.isEmpty { print("dns         \(tunnel.dns.joined(separator: ", "))") }
        if tunnel.killSwitch { print("kill switch on") }
        if let connectMs = tunnel.connectMs { print("connected in \(String(format: "%.0f", connectMs)) ms") }
    }
}

struct Disconnect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Take the tunnel down and restore routes, DNS and firewall exactly as they were.")
    @OptionGroup var options: DataDirOptions

    func run() async throws {
        let socket = DataDirectory.resolve(options.dataDir).controlSocket
        let answer: [String: String]
        do {
            answer = try ControlClient.request(
                [String: String].self, method: "POST", path: "/v1/tunnel/disconnect", socket: socket)
        } catch { throw CLIError("umbra disconnect: \(error)") }
        print(answer["status"] ?? "disconnected")
    }
}

enum TunnelText {
    /// The tunnel lines of `umbra status`.
    static func lines(_ report: TunnelReport) -> [String] {
        var lines: [String] = []
        if let tunnel = report.consumer {
            lines.append("tunnel      \(report.state) to \(tunnel.provider)")
            lines.append("  path      \(tunnel.path ?? "-") (\(tunnel.endpoint ?? "-"))")
            lines.append("  inner     \(tunnel.innerAddress) on \(tunnel.interface), MTU \(tunnel.mtu)")
            lines.append(
                "  sent      \(Format.bytes(tunnel.sent.bytes)) (\(rate(tunnel.sent.bytesPerSecond))), received "
                    + "\(Format.bytes(tunnel.received.bytes)) (\(rate(tunnel.received.bytesPerSecond)))")
            lines.append("  age       \(Format.duration(tunnel.ageSeconds))")
        }
        for served in report.served {
            lines.append(
                "serving     \(served.consumer) inner \(served.innerAddress), in \(Format.bytes(served.received.bytes)) "
                    + "(\(rate(served.received.bytesPerSecond))), out \(Format.bytes(served.sent.bytes)) "
                    + "(\(rate(served.sent.bytesPerSecond))), age \(Format.duration(served.ageSeconds))")
        }
        let dropped = report.drops.values.reduce(0, +)
        if report.consumer != nil || !report.served.isEmpty || dropped > 0 {
            lines.append(
                "  packets   out \(report.packetsOut), in \(report.packetsIn), dropped \(dropped)"
                    + (dropped > 0
                        ? " ("
                            + report.drops.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(
                                separator: ", ") + ")" : ""))
        }
        return lines
    }

    static func rate(_ bytesPerSecond: Double) -> String {
        let bits = bytesPerSecond * 8
        if bits >= 1e9 { return String(format: "%.2f Gbit/s", bits / 1e9) }
        if bits >= 1e6 { return String(format: "%.1f Mbit/s", bits / 1e6) }
        return String(format: "%.0f kbit/s", bits / 1e3)
    }
}
