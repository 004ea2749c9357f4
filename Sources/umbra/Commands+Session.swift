import ArgumentParser
import Foundation
import NodeAPI
import NodeRuntime

struct SessionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session",
        abstract: "Open, list and close dialogues with providers (the conversation a tunnel runs in).",
        subcommands: [SessionOpen.self, SessionList.self, SessionClose.self])
}

struct SessionOpen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "open",
        abstract: "Ask a provider for a session: prints its answer (inner address, DNS, MTU) and stage timings.")
    @OptionGroup var options: DataDirOptions
    @Argument(help: ArgumentHelp("The provider's address, from umbra proposals.", valueName: "umbra1…"))
    var provider: String
    @Option(help: "Service type.") var service = "ip-tunnel"
    @Flag(help: "Print the control API's JSON document.") var json = false

    func run() async throws {
        let socket = DataDirectory.resolve(options.dataDir).controlSocket
        let path = "/v1/sessions?provider=\(provider)&service=\(service)"
        let report: DialogueSessionReport
        do {
            let (status, body) = try ControlClient.raw(method: "POST", path: path, socket: socket, timeoutSeconds: 30)
            let text = String(decoding: body, as: UTF8.self)
            guard status == 200 else { throw ControlError.server(status: status, message: text) }
            if json {
                print(text)
                return
            }
            report = try ControlJSON.decoder.decode(DialogueSessionReport.self, from: Data(body))
        } catch { throw CLIError("umbra session open: \(error)") }
        print("provider    \(report.provider)")
        print("session     \(report.sessionId ?? "-") (\(report.state)), path \(report.path ?? "-")")
        print(
            "inner       \(report.innerAddress ?? "-") via \(report.gateway ?? "-"), MTU \(report.mtu.map(String.init) ?? "-")"
        )
        print("dns         \((report.dns ?? []).joined(separator: ", "))")
        print(
            "stages      "
                + report.stages.map { "\($0.stage) +\(String(format: "%.1f", $0.durationMs)) ms" }.joined(
                    separator: ", "))
    }
}

struct SessionList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List dialogues, both ways.")
    @OptionGroup var options: DataDirOptions
    @Flag(help: "Print the control API's JSON document.") var json = false

    func run() async throws {
        let socket = DataDirectory.resolve(options.dataDir).controlSocket
        if json {
            print(try fetchRaw("/v1/sessions", socket: socket, command: "session list"))
            return
        }
        let report: DialogueSessionsReport
        do {
            report = try ControlClient.request(
                DialogueSessionsReport.self, method: "GET", path: "/v1/sessions", socket: socket)
        } catch { throw CLIError("umbra session list: \(error)") }
        if report.sessions.isEmpty && report.served.isEmpty { print("no sessions") }
        for session in report.sessions {
            print(
                "to   \(session.provider)  \(session.state)  path \(session.path ?? "-")  inner \(session.innerAddress ?? "-")  "
                    + "age \(session.ageSeconds.map { Format.duration($0) } ?? "-")")
        }
        for served in report.served {
            print(
                "from \(served.consumer)  session \(served.sessionId)  inner \(served.innerAddress)  "
                    + "age \(Format.duration(served.ageSeconds))")
        }
    }
}

struct SessionClose: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "close", abstract: "End the dialogue with a provider.")
    @OptionGroup var options: DataDirOptions
    @Argument(help: ArgumentHelp("The provider's address.", valueName: "umbra1…")) var provider: String

    func run() async throws {
        let socket = DataDirectory.resolve(options.dataDir).controlSocket
        let answer: [String: String]
        do {
            answer = try ControlClient.request(
                [String: String].self, method: "POST", path: "/v1/sessions/close?provider=\(provider)", socket: socket)
        } catch { throw CLIError("umbra session close: \(error)") }
        print(answer["status"] ?? "closed")
    }
}
