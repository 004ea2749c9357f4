import ArgumentParser
import Foundation
import NodeAPI
import NodeRuntime

struct Ping: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reach a peer (directly, hole-punched or through one of its relays) and ping it.",
        discussion: """
            Without a session, the peer's record is looked up in the DHT: its direct endpoints are tried \
            first, then its relays. Prints the path the reply took and the round-trip time. Exit status 0 \
            only when a reply arrived.
            """)
    @OptionGroup var options: DataDirOptions
    @Argument(help: ArgumentHelp("A node address (umbra1…) or a contact (umbra1…@ip:port).", valueName: "address"))
    var target: String
    @Option(help: "Seconds to wait for each reply.") var timeout: Double = 5
    @Option(name: .shortAndLong, help: "Pings to send, one a second.") var count = 1
    @Flag(help: "Print JSON (one document per ping).") var json = false

    func run() async throws {
        let socket = DataDirectory.resolve(options.dataDir).controlSocket
        var replies = 0
        for index in 0..<max(1, count) {
            if index > 0 { try await Task.sleep(for: .seconds(1)) }
            let path = "/v1/ping?target=\(percentEncoded(target))&timeout=\(timeout)"
            let status: Int
            let body: [UInt8]
            do {
                (status, body) = try ControlClient.raw(
                    method: "POST", path: path, socket: socket, timeoutSeconds: Int(timeout.rounded(.up)) + 30)
            } catch { throw CLIError("umbra ping: \(error)") }
            guard let report = try? ControlJSON.decoder.decode(PingReport.self, from: Data(body)) else {
                let message =
                    (try? ControlJSON.decoder.decode(ErrorReport.self, from: Data(body)))?.error
                    ?? String(decoding: body, as: UTF8.self)
                throw CLIError("umbra ping: \(ControlError.server(status: status, message: message))")
            }
            if json {
                print(String(decoding: body, as: UTF8.self))
            } else if report.reply {
                var line = "reply from \(report.address): path=\(report.path ?? "?")"
                line += String(format: " rtt=%.2f ms time=%.0f ms", report.rttMs ?? 0, report.elapsedMs)
                if let relay = report.relay, report.path != "direct" { line += " relay=\(relay)" }
                if let endpoint = report.endpoint, report.path != "relayed" { line += " endpoint=\(endpoint)" }
                print(line)
            } else {
                FileHandle.standardError.write(
                    Data("umbra ping: \(report.address): \(report.error ?? "no reply")\n".utf8))
            }
            if report.reply { replies += 1 }
        }
        if replies == 0 { throw ExitCode(1) }
    }
}
