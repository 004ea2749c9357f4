import ArgumentParser
import Foundation
import NodeRuntime
import UmbraCore

struct IdentityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identity",
        abstract: "Create or show this node's identity (its Ed25519 key).",
        subcommands: [New.self, Show.self]
    )

    struct New: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a new identity key (mode 0600) in the data directory.")
        @OptionGroup var options: DataDirOptions

        func run() async throws {
            let directory = DataDirectory.resolve(options.dataDir)
            do {
                let identity = try IdentityStore.create(in: directory)
                print("created \(directory.identityFile)")
                print("address \(identity.address)")
            } catch { throw CLIError("umbra identity new: \(error)") }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print this node's address and DHT id.")
        @OptionGroup var options: DataDirOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let directory = DataDirectory.resolve(options.dataDir)
            let identity: Identity
            do { identity = try IdentityStore.load(from: directory) } catch {
                throw CLIError("umbra identity show: \(error)")
            }
            if json {
                let object = [
                    "address": identity.address.description, "node_id": identity.nodeID.description,
                    "public_key_hex": Hex.encode(identity.publicKey.bytes),
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print("address  \(identity.address)")
                print("node id  \(identity.nodeID)")
                print("key file \(directory.identityFile)")
            }
        }
    }
}
