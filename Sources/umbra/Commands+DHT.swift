import ArgumentParser
import Foundation
import NodeAPI
import NodeRuntime

struct DHTCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dht",
        abstract: "Ask the running node's DHT: find nodes, store and read signed records.",
        subcommands: [Lookup.self, Put.self, Get.self])

    struct Lookup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Find nodes by their addresses (or any 256-bit keys in hex): closest nodes, hops, time.",
            discussion: """
                Several targets are looked up one after the other; with --json each answer is printed as one \
                line of JSON (JSON Lines). Exits 1 if any target was not found.
                """)
        @OptionGroup var options: DataDirOptions
        @Argument(help: ArgumentHelp("Node addresses (umbra1…) or 64 hex digits.", valueName: "address|hex-key"))
        var targets: [String]
        @Flag(help: "Print JSON (one line per target).") var json = false

        func validate() throws {
            guard !targets.isEmpty else { throw ValidationError("name at least one address (umbra1…) or hex key") }
        }

        func run() async throws {
            var missed = 0
            for (index, target) in targets.enumerated() {
                let path = "/v1/dht/lookup?target=" + percentEncoded(target)
                let report: LookupResultReport = try call(
                    "GET", path, options: options, command: "dht lookup", json: json, compact: targets.count > 1)
                if !report.found { missed += 1 }
                guard !json else { continue }
                if targets.count > 1 { print((index > 0 ? "\n" : "") + "target     \(target)") }
                if let contact = report.contact {
                    print("found      \(contact.address)@\(contact.endpoint)")
                } else {
                    print("not found  (the closest nodes are listed below)")
                }
                print(
                    "hops       \(report.hops), \(report.queries) queries, \(report.responses) answers, "
                        + "\(report.failures) failed")
                print(
                    String(
                        format: "time       %.0f ms to find, %.0f ms to converge", report.latencyMs,
                        report.durationMs))
                print("closest    \(report.closest.count) nodes")
                for contact in report.closest.prefix(5) { print("           \(contact.address)@\(contact.endpoint)") }
            }
            if missed > 0 { throw ExitCode(1) }
        }
    }

    struct Put: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign a text record under KEY and store it on the nodes closest to it.")
        @OptionGroup var options: DataDirOptions
        @Option(help: "The record's name (1 to 64 bytes).") var key: String
        @Option(help: "The text to store (at most 800 bytes).") var value: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let path = "/v1/dht/put?key=" + percentEncoded(key) + "&value=" + percentEncoded(value)
            let report: PutResultReport = try call("POST", path, options: options, command: "dht put", json: json)
            if !json {
                print(
                    "stored on \(report.stored) of \(report.attempted) nodes in "
                        + String(format: "%.0f ms", report.durationMs))
            }
            if report.stored == 0 { throw ExitCode(1) }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Read the text records stored under KEY.")
        @OptionGroup var options: DataDirOptions
        @Argument(help: "The record's name.") var key: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let path = "/v1/dht/get?key=" + percentEncoded(key)
            let report: LookupResultReport = try call("GET", path, options: options, command: "dht get", json: json)
            if !json {
                if report.records.isEmpty { print("no record under '\(key)'") }
                for record in report.records {
                    print("\(record.text ?? record.valueHex)")
                    print(
                        "    by \(record.publisher), seq \(record.seq), "
                            + "expires in \(Format.duration(record.expiresInSeconds))")
                }
            }
            if report.records.isEmpty { throw ExitCode(1) }
        }
    }
}

/// Calls the control API; prints the raw JSON when `json` is set; returns the decoded report.
func call<T: Decodable>(
    _ method: String, _ path: String, options: DataDirOptions, command: String, json: Bool,
    compact: Bool = false, timeoutSeconds: Int = 30
) throws -> T {
    let socket = DataDirectory.resolve(options.dataDir).controlSocket
    do {
        let (status, body) = try ControlClient.raw(
            method: method, path: path, socket: socket,
            timeoutSeconds: timeoutSeconds)
        guard status == 200 else {
            let message =
                (try? ControlJSON.decoder.decode(ErrorReport.self, from: Data(body)))?.error
                ?? String(decoding: body, as: UTF8.self)
            throw ControlError.server(status: status, message: message)
        }
        if json {
            if compact, let object = try? JSONSerialization.jsonObject(with: Data(body)),
                let line = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            {
                print(String(decoding: line, as: UTF8.self))
            } else {
                print(String(decoding: body, as: UTF8.self))
            }
        }
        do { return try ControlJSON.decoder.decode(T.self, from: Data(body)) } catch {
            throw ControlError.badResponse("\(error)")
        }
    } catch let error as ControlError {
        throw CLIError("umbra \(command): \(error)")
    }
}

func percentEncoded(_ text: String) -> String {
    // RFC 3986 unreserved characters only (ASCII): everything else, UTF-8 included, is escaped.
    let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
}
