import ArgumentParser
import Foundation
import NodeAPI
import NodeRuntime

/// `umbra api PATH`: one raw request to the running node's control API, through the same client
/// every other command uses; for scripts and debugging (docs/api.md lists the paths).
struct APICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api",
        abstract: "Send one request to the running node's control API and print its JSON answer.",
        discussion: """
            For scripts and debugging: every path of docs/api.md, e.g. `umbra api /v1/dht` or \\
            `umbra api --method POST /v1/tunnel/disconnect`. Exits 1 with the node's error if the answer is \\
            not a success.
            """)
    @OptionGroup var options: DataDirOptions
    @Option(help: ArgumentHelp("GET or POST.", valueName: "method")) var method = "GET"
    @Option(help: ArgumentHelp("Seconds to wait for the answer.", valueName: "n")) var timeout = 30
    @Argument(help: ArgumentHelp("The path and query, starting with /v1/.", valueName: "path")) var path: String

    func validate() throws {
        guard ["GET", "POST"].contains(method.uppercased()) else {
            throw ValidationError("--method must be GET or POST, not '\(method)'")
        }
        guard path.hasPrefix("/v1/"), !path.contains(where: { $0 == " " || $0.isNewline }) else {
            throw ValidationError(
                "the path must start with /v1/ and hold no spaces (percent-encode them), e.g. /v1/dht")
        }
        guard (1...600).contains(timeout) else { throw ValidationError("--timeout must be 1 to 600 seconds") }
    }

    func run() async throws {
        let socket = DataDirectory.resolve(options.dataDir).controlSocket
        do {
            let (status, body) = try ControlClient.raw(
                method: method.uppercased(), path: path, socket: socket, timeoutSeconds: timeout)
            guard (200..<300).contains(status) else {
                let message =
                    (try? ControlJSON.decoder.decode(ErrorReport.self, from: Data(body)))?.error
                    ?? String(decoding: body, as: UTF8.self)
                throw ControlError.server(status: status, message: message)
            }
            print(String(decoding: body, as: UTF8.self))
        } catch let error as ControlError {
            throw CLIError("umbra api: \(error)")
        }
    }
}
