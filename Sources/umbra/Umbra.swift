// The `umbra` executable: one binary that is a full peer (`umbra up`) and the CLI that talks to it.

import ArgumentParser

@main
struct Umbra: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "umbra",
        abstract: "A decentralized VPN: every umbra binary is a full peer of one overlay.",
        version: "0.1.0",
        subcommands: [
            Up.self, Down.self, Connect.self, Disconnect.self, Status.self, Peers.self, Ping.self,
            ProposalsCommand.self, SessionCommand.self,
            DHTCommand.self, IdentityCommand.self, LedgerCommand.self, APICommand.self, Sim.self,
        ]
    )
}

/// Options every command that finds a node by its data dir shares.
struct DataDirOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The node's data directory (identity key, control socket).",
            discussion: "Defaults to $UMBRA_DATA_DIR, else ~/.umbra.", valueName: "dir"))
    var dataDir: String?
}

/// An error that is printed as is, with exit status 1 (ArgumentParser would add usage text).
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
