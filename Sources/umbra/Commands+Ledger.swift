// `umbra ledger …`: the ledger as this node's replica sees it, and this node's own entries
// (docs/operations.md §"Ledger"). Every command but `genesis` asks the running node; the node drafts,
// signs, checks and certifies entries (its key never leaves it).

import ArgumentParser
import Foundation
import Ledger
import NodeAPI
import NodeRuntime
import UmbraCore

struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Balances, stakes and channels on the overlay's ledger; make a genesis file.",
        subcommands: [
            LedgerStatus.self, LedgerBalance.self, LedgerTransfer.self, LedgerBond.self, LedgerUnbond.self,
            LedgerWithdraw.self, LedgerChannels.self, LedgerEntries.self, LedgerCommittee.self, LedgerGenesis.self,
        ],
        defaultSubcommand: LedgerStatus.self)
}

/// Parses an amount: a whole number of units above zero.
private func parseAmount(_ text: String, option: String) throws -> Amount {
    guard let value = Amount(text.replacingOccurrences(of: "_", with: "")), value > 0 else {
        throw ValidationError("\(option) must be a whole number of units above 0, not '\(text)'")
    }
    return value
}

private func checkAddress(_ text: String, what: String) throws {
    do { _ = try NodeAddress(parsing: text) } catch { throw ValidationError("\(what) '\(text)': \(error)") }
}

private func checkRole(_ text: String) throws {
    guard Role.allCases.contains(where: { $0.description == text }) else {
        throw ValidationError("the role must be provider, relay or validator, not '\(text)'")
    }
}

enum LedgerText {
    static func account(_ report: LedgerAccountReport, title: String = "account") -> [String] {
        var lines = ["\(title.padding(toLength: 11, withPad: " ", startingAt: 0)) \(report.address)"]
        lines.append("balance     \(report.balance)")
        for (role, amount) in report.bonded.sorted(by: { $0.key < $1.key }) {
            lines.append("bonded      \(amount) as \(role)")
        }
        for unbonding in report.unbonding {
            let when =
                unbonding.releaseInSeconds > 0
                ? "withdrawable at \(unbonding.releaseAt) (in \(Format.duration(unbonding.releaseInSeconds)))"
                : "withdrawable now"
            lines.append("unbonding   \(unbonding.amount) of \(unbonding.role), \(when)")
        }
        if report.slashed > 0 { lines.append("slashed     \(report.slashed)") }
        lines.append("entries     \(report.nextHeight)")
        return lines
    }

    static func certified(_ report: LedgerCertifiedReport) -> [String] {
        var lines: [String] = []
        if let retried = report.retriedEntry {
            lines.append("first certified an earlier entry of this node that held the slot: \(retried.prefix(16))…")
        }
        lines.append(
            "certified   \(report.kind) at height \(report.height) (epoch \(report.epoch)) by \(report.signers) "
                + "validators, \(report.signedStake) of \(report.committeeStake) stake, in "
                + Format.duration(report.elapsedMs / 1000))
        lines.append("entry       \(report.entry)")
        if let after = report.after { lines += account(after).dropFirst() }
        return lines
    }
}

struct LedgerStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "The ledger network, committee and this node's account.")
    @OptionGroup var options: DataDirOptions
    @Flag(help: "Print the control API's JSON document.") var json = false

    func run() async throws {
        let report: LedgerStatusReport = try call(
            "GET", "/v1/ledger", options: options, command: "ledger status", json: json)
        guard !json else { return }
        guard report.state != "off" else {
            print("ledger      off (start the node with --genesis FILE; umbra ledger genesis makes one)")
            return
        }
        print("ledger      \(report.network ?? "-") epoch \(report.epoch ?? 0), \(report.state)")
        print("genesis     \(report.genesis ?? "-")")
        let role =
            report.voting
            ? "validator (voting)"
            : report.validatorRequested ? "validator (not voting: not in the committee)" : "replica"
        print("role        \(role)")
        let connected = report.committee.filter(\.connected).count
        print(
            "committee   \(report.committee.count) members, \(report.committeeStake ?? 0) stake, \(connected) reachable"
        )
        print("accounts    \(report.accounts ?? 0), supply \(report.supply ?? 0), burned \(report.burned ?? 0)")
        print("applied     \(report.counters["entries_applied"] ?? 0) entries, \(report.pending) waiting")
        if let height = report.unfinishedHeight {
            print(
                "unfinished  an entry at height \(height) is not certified yet; the next command sends it again first")
        }
        if let account = report.account { LedgerText.account(account).forEach { print($0) } }
    }
}

struct LedgerBalance: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "balance", abstract: "An account's balance, stakes and unbondings (default: this node's).")
    @OptionGroup var options: DataDirOptions
    @Argument(help: ArgumentHelp("The account's address.", valueName: "umbra1…")) var address: String?
    @Flag(help: "Print the control API's JSON document.") var json = false

    func validate() throws { if let address { try checkAddress(address, what: "the address") } }

    func run() async throws {
        let path = "/v1/ledger/balance" + (address.map { "?account=" + percentEncoded($0) } ?? "")
        let report: LedgerAccountReport = try call("GET", path, options: options, command: "ledger balance", json: json)
        if !json { LedgerText.account(report).forEach { print($0) } }
    }
}

/// The part every entry-making command shares: send, wait for the certificate, print it.
private func submit(_ path: String, options: DataDirOptions, command: String, json: Bool) throws {
    let report: LedgerCertifiedReport = try call(
        "POST", path, options: options, command: command, json: json, timeoutSeconds: 60)
    if !json { LedgerText.certified(report).forEach { print($0) } }
}

struct LedgerTransfer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transfer", abstract: "Send units from this node's account to another.")
    @OptionGroup var options: DataDirOptions
    @Argument(help: ArgumentHelp("The recipient's address.", valueName: "umbra1…")) var recipient: String
    @Argument(help: ArgumentHelp("Units to send.", valueName: "amount")) var amount: String
    @Flag(help: "Print the control API's JSON document.") var json = false

    func validate() throws {
        try checkAddress(recipient, what: "the recipient")
        _ = try parseAmount(amount, option: "the amount")
    }

    func run() async throws {
        let value = try parseAmount(amount, option: "the amount")
        try submit(
            "/v1/ledger/transfer?to=\(percentEncoded(recipient))&amount=\(value)", options: options,
            command: "ledger transfer", json: json)
    }
}

struct LedgerBond: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bond", abstract: "Lock units as stake for a role (provider, relay or validator).")
    @OptionGroup var options: DataDirOptions
    @Argument(help: ArgumentHelp("provider, relay or validator.", valueName: "role")) var role: String
    @Argument(help: ArgumentHelp("Units to bond.", valueName: "amount")) var amount: String
    @Flag(help: "Print the control API's JSON document.") var json = false

    func validate() throws {
        try checkRole(role)
        _ = try parseAmount(amount, option: "the amount")
    }

    func run() async throws {
        let value = try parseAmount(amount, option: "the amount")
        try submit("/v1/ledger/bond?role=\(role)&amount=\(value)", options: options, command: "ledger bond", json: json)
    }
}

struct LedgerUnbond: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unbond",
        abstract: "Start unbonding stake; it can be withdrawn after the network's unbonding delay.")
    @OptionGroup var options: DataDirOptions
    @Argument(help: ArgumentHelp("provider, relay or validator.", valueName: "role")) var role: String
    @Argument(help: ArgumentHelp("Units to unbond.", valueName: "amount")) var amount: String
    @Flag(help: "Print the control API's JSON document.") var json = false

    func validate() throws {
        try checkRole(role)
        _ = try parseAmount(amount, option: "the amount")
    }

    func run() async throws {
        let value = try parseAmount(amount, option: "the amount")
        try submit(
            "/v1/ledger/unbond?role=\(role)&amount=\(value)", options: options, command: "ledger unbond", json: json)
    }
}

struct LedgerWithdraw: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "withdraw", abstract: "Move every unbonding whose delay has passed back to the balance.")
    @OptionGroup var options: DataDirOptions
    @Flag(help: "Print the control API's JSON document.") var json = false

    func run() async throws {
        try submit("/v1/ledger/withdraw", options: options, command: "ledger withdraw", json: json)
    }
}

struct LedgerChannels: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channels", abstract: "Payment channels where an account pays or is paid (default: this node).")
    @OptionGroup var options: DataDirOptions
    @Argument(help: ArgumentHelp("The account's address.", valueName: "umbra1…")) var address: String?
    @Flag(help: "Print the control API's JSON document.") var json = false

    func validate() throws { if let address { try checkAddress(address, what: "the address") } }

    func run() async throws {
        struct Channels: Decodable { var channels: [LedgerChannelReport] }
        let path = "/v1/ledger/channels" + (address.map { "?account=" + percentEncoded($0) } ?? "")
        let report: Channels = try call("GET", path, options: options, command: "ledger channels", json: json)
        guard !json else { return }
        if report.channels.isEmpty { print("no channels") }
        for channel in report.channels {
            var line = "\(channel.id.prefix(16))…  \(channel.state)  \(channel.consumer) -> \(channel.provider)  "
            line += "deposit \(channel.deposit), claimed \(channel.claimed), expires \(channel.expiry)"
            if let paid = channel.paid, let refunded = channel.refunded {
                line += ", paid \(paid), refunded \(refunded)"
            }
            print(line)
        }
    }
}

struct LedgerCommittee: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "committee", abstract: "The validators that certify entries in the current epoch.")
    @OptionGroup var options: DataDirOptions
    @Flag(help: "Print the control API's JSON document.") var json = false

    func run() async throws {
        let report: LedgerCommitteeReport = try call(
            "GET", "/v1/ledger/committee", options: options, command: "ledger committee", json: json)
        guard !json else { return }
        print("epoch \(report.epoch), \(report.members.count) members, \(report.totalStake) stake")
        for member in report.members {
            let state = member.isSelf ? "this node" : member.connected ? "connected" : "not connected"
            print("\(member.address)  \(member.stake)  \(state)")
        }
    }
}

struct LedgerEntries: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "entries", abstract: "An account's certified entries, oldest first (default: this node's).")
    @OptionGroup var options: DataDirOptions
    @Argument(help: ArgumentHelp("The account's address.", valueName: "umbra1…")) var address: String?
    @Option(help: ArgumentHelp("The first height to show.", valueName: "height")) var from: UInt64 = 0
    @Option(help: ArgumentHelp("Entries to show at most (1 to 1000).", valueName: "n")) var limit = 100
    @Flag(help: "Print the control API's JSON document.") var json = false

    func validate() throws {
        if let address { try checkAddress(address, what: "the address") }
        guard (1...1000).contains(limit) else { throw ValidationError("--limit must be 1 to 1000, not \(limit)") }
    }

    func run() async throws {
        var path = "/v1/ledger/entries?from=\(from)&limit=\(limit)"
        if let address { path += "&account=" + percentEncoded(address) }
        let report: LedgerEntriesReport = try call("GET", path, options: options, command: "ledger entries", json: json)
        guard !json else { return }
        if report.entries.isEmpty { print("no entries of \(report.account) from height \(from)") }
        for entry in report.entries {
            print(
                "\(String(entry.height).padding(toLength: 6, withPad: " ", startingAt: 0)) \(entry.hash.prefix(16))…  \(entry.summary)"
            )
        }
    }
}

struct LedgerGenesis: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "genesis",
        abstract: "Write a genesis file for a new ledger network (or check one with --check).",
        discussion: """
            Every node of the network starts with the same file: `umbra up --genesis FILE` (add \\
            --validator on the committee's nodes). The first committee's stake is minted bonded; \\
            allocations are minted to balances. Addresses come from `umbra identity show`. Example:

              umbra ledger genesis --network my-net --validator umbra1…=1000 --validator umbra1…=1000 \\
                --allocate umbra1…=1000000 --output genesis.json
            """)

    @Option(help: ArgumentHelp("The network's name (1 to 64 bytes).", valueName: "name")) var network: String?
    @Option(
        help: ArgumentHelp(
            "A member of the first committee and its bonded stake (repeatable).", valueName: "umbra1…=stake"))
    var validator: [String] = []
    @Option(help: ArgumentHelp("Units minted to an account (repeatable).", valueName: "umbra1…=amount"))
    var allocate: [String] = []
    @Option(help: ArgumentHelp("Validators in each later committee (the top N by bond).", valueName: "n"))
    var committeeSize: Int?
    @Option(help: ArgumentHelp("Smallest provider bond.", valueName: "units")) var minimumProviderBond: UInt64 = 100
    @Option(help: ArgumentHelp("Smallest relay bond.", valueName: "units")) var minimumRelayBond: UInt64 = 100
    @Option(help: ArgumentHelp("Smallest validator bond.", valueName: "units")) var minimumValidatorBond: UInt64 = 1000
    @Option(help: ArgumentHelp("Seconds unbonded stake waits before it can be withdrawn.", valueName: "seconds"))
    var unbondingDelay: UInt64 = 14 * 86_400
    @Option(
        help: ArgumentHelp(
            "Seconds after an epoch ends that evidence of an offense in it is accepted (at most the unbonding delay).",
            valueName: "seconds"))
    var evidenceLifetime: UInt64?
    @Option(help: ArgumentHelp("Share of burned stake paid to the reporter, in parts per million.", valueName: "ppm"))
    var reporterReward: UInt32 = 100_000
    @Option(help: ArgumentHelp("Write the file here instead of standard output.", valueName: "file"))
    var output: String?
    @Option(help: ArgumentHelp("Check this genesis file and print its network and id.", valueName: "file"))
    var check: String?

    func validate() throws {
        if check != nil {
            guard network == nil, validator.isEmpty, allocate.isEmpty, output == nil else {
                throw ValidationError("--check takes no other options")
            }
            return
        }
        _ = try parameters()
        if let output, FileManager.default.fileExists(atPath: output) {
            throw ValidationError("\(output) exists; remove it or choose another --output")
        }
    }

    private static func pair(_ text: String, option: String) throws -> (PublicKey, UInt64) {
        let parts = text.split(separator: "=", omittingEmptySubsequences: false)
        guard parts.count == 2, let value = UInt64(parts[1].replacingOccurrences(of: "_", with: "")), value > 0 else {
            throw ValidationError("--\(option) '\(text)': expected umbra1…=N with N a whole number above 0")
        }
        do { return (try NodeAddress(parsing: parts[0]).publicKey, value) } catch {
            throw ValidationError("--\(option) '\(text)': \(error)")
        }
    }

    private func parameters() throws -> GenesisParameters {
        guard let network, !network.isEmpty else {
            throw ValidationError("--network is required (a name for the network)")
        }
        guard !validator.isEmpty else {
            throw ValidationError("name at least one --validator umbra1…=stake (the first committee)")
        }
        let committee = try validator.map { text in
            let (key, stake) = try Self.pair(text, option: "validator")
            return CommitteeMember(identity: key, stake: stake)
        }
        let allocations = try allocate.map { text in
            let (key, amount) = try Self.pair(text, option: "allocate")
            return Allocation(recipient: key, amount: amount)
        }
        let size = committeeSize ?? max(committee.count, 4)
        let lifetime = evidenceLifetime ?? unbondingDelay
        let limit = UInt64(Int64.max / 1_000_000_000)
        guard unbondingDelay <= limit, lifetime <= limit else {
            throw ValidationError("--unbonding-delay and --evidence-lifetime must be at most \(limit) seconds")
        }
        let parameters = GenesisParameters(
            network: network, allocations: allocations, committee: committee,
            minimumBonds: MinimumBonds(
                provider: minimumProviderBond, relay: minimumRelayBond, validator: minimumValidatorBond),
            unbondingDelay: .seconds(Int64(unbondingDelay)), evidenceLifetime: .seconds(Int64(lifetime)),
            committeeSize: size, reporterRewardPPM: reporterReward)
        do { try parameters.validate() } catch { throw ValidationError("the genesis is not valid: \(error)") }
        do { try GenesisFile.checkCarriable(parameters) } catch {
            throw ValidationError("the genesis is not valid: \(error)")
        }
        return parameters
    }

    func run() async throws {
        if let check {
            let parameters: GenesisParameters
            do { parameters = try GenesisFile.load(check) } catch { throw CLIError("umbra ledger genesis: \(error)") }
            print("network     \(parameters.network)")
            print("genesis     \(parameters.id)")
            print(
                "committee   \(parameters.committee.count) members, \(parameters.committee.reduce(0) { $0 + $1.stake }) stake"
            )
            print(
                "allocated   \(parameters.allocations.reduce(0) { $0 + $1.amount }) to \(parameters.allocations.count) accounts"
            )
            return
        }
        let parameters = try parameters()
        let text = GenesisFile.encode(parameters)
        guard let output else {
            print(text, terminator: "")
            return
        }
        // validate() refused an existing file.
        guard
            FileManager.default.createFile(
                atPath: output, contents: Data(text.utf8), attributes: [.posixPermissions: 0o644])
        else {
            throw CLIError("umbra ledger genesis: cannot write \(output); check the directory exists and is writable")
        }
        print("wrote \(output): network \(parameters.network), genesis \(parameters.id)")
    }
}
