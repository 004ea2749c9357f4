import ArgumentParser
import Foundation
import NodeAPI
import NodeRuntime

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the running node's state and counters.")
    @OptionGroup var options: DataDirOptions
    @Flag(help: "Print the control API's JSON document.") var json = false

    func run() async throws {
        let socket = DataDirectory.resolve(options.dataDir).controlSocket
        if json {
            print(try fetchRaw("/v1/status", socket: socket, command: "status"))
            return
        }
        let report: StatusReport
        do {
            report = try ControlClient.request(StatusReport.self, method: "GET", path: "/v1/status", socket: socket)
        } catch { throw CLIError("umbra status: \(error)") }
        print("address     \(report.address)")
        print("listen      \(report.listen)")
        print("uptime      \(Format.duration(report.uptimeSeconds))")
        print("peers       \(report.peers) known, \(report.sessions) with an established session")
        print(
            "datagrams   \(report.datagrams.received) in (\(Format.bytes(report.datagrams.bytesReceived))), "
                + "\(report.datagrams.sent) out (\(Format.bytes(report.datagrams.bytesSent)))")
        print(
            "handshakes  \(report.handshakes.initiated) initiated, \(report.handshakes.completed) completed, "
                + "\(report.handshakes.cookieRepliesSent) cookie replies")
        let drops = report.dropped.filter { $0.value > 0 }.sorted { $0.key < $1.key }
            .map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        print("dropped     \(report.droppedTotal)" + (drops.isEmpty ? "" : " (\(drops))"))
        if let market = try? ControlClient.request(MarketReport.self, method: "GET", path: "/v1/market", socket: socket)
        {
            let refused = market.refusals.values.reduce(0, +)
            print(
                "market      \(market.proposals) live proposals; \(market.gossipPeers.count) gossip peers, "
                    + "mesh \(market.meshSize); \(market.accepted) accepted, \(market.rejected) rejected, "
                    + "\(refused) refused; sync \(market.syncPhase)")
            if let provider = market.provider {
                print(
                    "providing   \(provider.serviceType ?? "-") seq \(provider.seq.map(String.init) ?? "-")"
                        + (provider.withdrawn ? " (withdrawn)" : "")
                        + (provider.bondNeeded.map {
                            "; not offered: needs a provider bond of \($0) (umbra ledger bond provider \($0))"
                        } ?? ""))
            }
        }
        if let relay = report.relay { printRelayStatus(relay) }
        if let dht = try? ControlClient.request(DHTStatusReport.self, method: "GET", path: "/v1/dht", socket: socket) {
            let buckets = dht.buckets.filter { $0.contacts > 0 }.map { "\($0.index):\($0.contacts)" }
            print(
                "dht         \(dht.server ? "server" : "client"), \(dht.tableSize) contacts in the routing table"
                    + (buckets.isEmpty ? " (empty: joining)" : " (bucket:contacts \(buckets.joined(separator: " ")))")
                    + ", \(dht.records) records stored")
        }
        if let tunnel = report.tunnel { TunnelText.lines(tunnel).forEach { print($0) } }
    }
}

struct Peers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the running node's peers and their sessions.")
    @OptionGroup var options: DataDirOptions
    @Flag(help: "Print the control API's JSON document.") var json = false

    func run() async throws {
        let socket = DataDirectory.resolve(options.dataDir).controlSocket
        if json {
            print(try fetchRaw("/v1/peers", socket: socket, command: "peers"))
            return
        }
        let report: PeersReport
        do {
            report = try ControlClient.request(PeersReport.self, method: "GET", path: "/v1/peers", socket: socket)
        } catch { throw CLIError("umbra peers: \(error)") }
        if report.peers.isEmpty { print("no peers yet") }
        let rows = report.peers.map { peer in
            [
                peer.address, peer.endpoint ?? "-", peer.state, peer.rttMs.map { String(format: "%.2f ms", $0) } ?? "-",
                peer.lastHandshakeSecondsAgo.map { Format.duration($0) + " ago" } ?? "-",
                peer.bootstrap ? "yes" : "no",
            ]
        }
        if !rows.isEmpty {
            Format.table(header: ["ADDRESS", "ENDPOINT", "STATE", "RTT", "HANDSHAKE", "BOOTSTRAP"], rows: rows)
        }
        let established = report.peers.filter { $0.state == "established" }.count
        print("\(established) of \(report.peers.count) peers authenticated")
        if let dht = try? ControlClient.request(DHTStatusReport.self, method: "GET", path: "/v1/dht", socket: socket) {
            let buckets = dht.buckets.map { "\($0.index):\($0.contacts)" }.joined(separator: " ")
            print(
                "DHT routing table: \(dht.tableSize) contacts in \(dht.buckets.count) buckets"
                    + (buckets.isEmpty ? "" : " (bucket:contacts \(buckets))") + "; \(dht.records) records stored")
        }
    }
}

func fetchRaw(_ path: String, socket: String, command: String) throws -> String {
    do {
        let (status, body) = try ControlClient.raw(method: "GET", path: path, socket: socket)
        let text = String(decoding: body, as: UTF8.self)
        guard status == 200 else { throw ControlError.server(status: status, message: text) }
        return text
    } catch { throw CLIError("umbra \(command): \(error)") }
}

enum Format {
    static func duration(_ seconds: Double) -> String {
        if seconds < 1 { return String(format: "%.0f ms", seconds * 1000) }
        if seconds < 60 { return String(format: "%.1f s", seconds) }
        let total = Int(seconds)
        if total < 3600 { return "\(total / 60)m \(total % 60)s" }
        return "\(total / 3600)h \(total % 3600 / 60)m"
    }

    static func bytes(_ count: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
    }

    static func table(header: [String], rows: [[String]]) {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        for row in all {
            let cells = row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }
            print(cells.joined(separator: "  "))
        }
    }
}
