// The genesis file (docs/operations.md §"Ledger"): a ledger network's parameters as JSON, the
// form an operator writes, reviews and hands to every node (`umbra ledger genesis` makes one).
// Read strictly: unknown keys, missing keys, bad addresses and out-of-range numbers are refused
// with the key that is wrong, and the parameters must pass `GenesisParameters.validate()`.
//
// A data dir remembers the genesis it joined (`<data dir>/genesis.json`): `umbra up` without
// `--genesis` uses it, and a different genesis is refused, so one node never mixes two networks.

import Foundation
import Ledger
import UmbraCore

public struct GenesisFileError: Error, CustomStringConvertible, Equatable {
    public var description: String
    init(_ description: String) { self.description = description }
}

public enum GenesisFile {
    /// Larger files are refused before they are parsed.
    public static let maximumSize = 1 << 20
    /// The copy a data dir keeps.
    public static let dataDirName = "genesis.json"
    /// The largest committee a genesis may name today: a certified entry travels in one gossip message
    /// or one sync frame (about 1,000 bytes), and a transfer's certificate from more than two thirds
    /// of 8 equal members (6 votes of 104 bytes) is the most that fits. Larger committees need
    /// entries carried in pieces or aggregate signatures (docs/threat-model.md).
    public static let maximumCommitteeSize = 8

    /// Throws unless every entry certified under `parameters` can be replicated.
    public static func checkCarriable(_ parameters: GenesisParameters) throws(GenesisFileError) {
        guard parameters.committeeSize <= maximumCommitteeSize, parameters.committee.count <= maximumCommitteeSize
        else {
            throw GenesisFileError(
                "a committee of at most \(maximumCommitteeSize) validators (committeeSize and the first committee): "
                    + "a larger committee's certificates do not fit one gossip message yet")
        }
    }

    private struct Document: Codable {
        struct Member: Codable {
            var validator: String
            var stake: UInt64
        }
        struct Allocation: Codable {
            var account: String
            var amount: UInt64
        }
        struct Bonds: Codable {
            var provider: UInt64
            var relay: UInt64
            var validator: UInt64
        }
        var network: String
        var committeeSize: Int
        var minimumBonds: Bonds
        var unbondingDelaySeconds: UInt64
        var evidenceLifetimeSeconds: UInt64
        var reporterRewardPPM: UInt32
        var committee: [Member]
        var allocations: [Allocation]
    }

    private static let keys: Set<String> = [
        "network", "committeeSize", "minimumBonds", "unbondingDelaySeconds", "evidenceLifetimeSeconds",
        "reporterRewardPPM", "committee", "allocations",
    ]
    private static let nestedKeys: [String: Set<String>] = [
        "minimumBonds": ["provider", "relay", "validator"],
        "committee": ["validator", "stake"],
        "allocations": ["account", "amount"],
    ]

    /// The JSON text of `parameters` (keys sorted, one value per line), ending in a newline.
    public static func encode(_ parameters: GenesisParameters) -> String {
        let document = Document(
            network: parameters.network, committeeSize: parameters.committeeSize,
            minimumBonds: .init(
                provider: parameters.minimumBonds.provider, relay: parameters.minimumBonds.relay,
                validator: parameters.minimumBonds.validator),
            unbondingDelaySeconds: UInt64(max(0, parameters.unbondingDelay.components.seconds)),
            evidenceLifetimeSeconds: UInt64(max(0, parameters.evidenceLifetime.components.seconds)),
            reporterRewardPPM: parameters.reporterRewardPPM,
            committee: parameters.committee.map {
                .init(validator: NodeAddress(publicKey: $0.identity).description, stake: $0.stake)
            },
            allocations: parameters.allocations.map {
                .init(account: NodeAddress(publicKey: $0.recipient).description, amount: $0.amount)
            })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(document) else { preconditionFailure("a genesis document always encodes") }
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    /// Parses and validates genesis JSON.
    public static func decode(_ data: Data) throws(GenesisFileError) -> GenesisParameters {
        guard data.count <= maximumSize else { throw GenesisFileError("larger than \(maximumSize) bytes") }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw GenesisFileError("not JSON: \(error.localizedDescription)")
        }
        guard let top = object as? [String: Any] else { throw GenesisFileError("not a JSON object") }
        try checkKeys(top, allowed: keys, at: "")
        for (key, allowed) in nestedKeys {
            switch top[key] {
            case let object as [String: Any]: try checkKeys(object, allowed: allowed, at: key + ".")
            case let list as [Any]:
                for (index, item) in list.enumerated() {
                    guard let object = item as? [String: Any] else {
                        throw GenesisFileError("\(key)[\(index)] is not an object")
                    }
                    try checkKeys(object, allowed: allowed, at: "\(key)[\(index)].")
                }
            default: break
            }
        }
        let document: Document
        do { document = try JSONDecoder().decode(Document.self, from: data) } catch {
            throw GenesisFileError(describe(error))
        }
        var committee: [CommitteeMember] = []
        for (index, member) in document.committee.enumerated() {
            let address: NodeAddress
            do { address = try NodeAddress(parsing: member.validator) } catch {
                throw GenesisFileError("committee[\(index)].validator: \(error)")
            }
            committee.append(CommitteeMember(identity: address.publicKey, stake: member.stake))
        }
        var allocations: [Ledger.Allocation] = []
        for (index, allocation) in document.allocations.enumerated() {
            let address: NodeAddress
            do { address = try NodeAddress(parsing: allocation.account) } catch {
                throw GenesisFileError("allocations[\(index)].account: \(error)")
            }
            allocations.append(.init(recipient: address.publicKey, amount: allocation.amount))
        }
        let limit = UInt64(Int64.max / 1_000_000_000)
        guard document.unbondingDelaySeconds <= limit, document.evidenceLifetimeSeconds <= limit else {
            throw GenesisFileError("unbondingDelaySeconds and evidenceLifetimeSeconds must be at most \(limit)")
        }
        let parameters = GenesisParameters(
            network: document.network, allocations: allocations, committee: committee,
            minimumBonds: MinimumBonds(
                provider: document.minimumBonds.provider, relay: document.minimumBonds.relay,
                validator: document.minimumBonds.validator),
            unbondingDelay: .seconds(Int64(document.unbondingDelaySeconds)),
            evidenceLifetime: .seconds(Int64(document.evidenceLifetimeSeconds)),
            committeeSize: document.committeeSize, reporterRewardPPM: document.reporterRewardPPM)
        do { try parameters.validate() } catch { throw GenesisFileError(error.description) }
        try checkCarriable(parameters)
        return parameters
    }

    /// Reads and validates the genesis file at `path`.
    public static func load(_ path: String) throws(GenesisFileError) -> GenesisParameters {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw GenesisFileError("cannot read \(path); check the path and its permissions")
        }
        defer { try? handle.close() }
        let data: Data
        do { data = try handle.read(upToCount: maximumSize + 1) ?? Data() } catch {
            throw GenesisFileError("cannot read \(path): \(error.localizedDescription)")
        }
        do { return try decode(data) } catch { throw GenesisFileError("\(path): \(error.description)") }
    }

    /// The genesis of `directory`'s node: `given` (a path) checked against the one the data dir
    /// joined before, else the data dir's. Nothing is written; `remember` records a new one.
    /// Nil: no genesis anywhere (the ledger stays off).
    public static func resolve(
        given: String?, directory: DataDirectory
    ) throws(GenesisFileError) -> (
        GenesisParameters, isNew: Bool
    )? {
        let stored = directory.path + "/" + dataDirName
        let known: GenesisParameters? =
            FileManager.default.fileExists(atPath: stored) ? try load(stored) : nil
        guard let given else { return known.map { ($0, false) } }
        let parameters = try load(given)
        if let known, known.id != parameters.id {
            throw GenesisFileError(
                "this data dir joined ledger network '\(known.network)' (genesis \(known.id.description.prefix(16))…), "
                    + "and \(given) is another genesis ('\(parameters.network)', "
                    + "\(parameters.id.description.prefix(16))…); use the same file, or another --data-dir")
        }
        return (parameters, known == nil)
    }

    /// Writes `parameters` as the data dir's genesis (atomically).
    public static func remember(_ parameters: GenesisParameters, in directory: DataDirectory) throws(GenesisFileError) {
        let path = directory.path + "/" + dataDirName
        do { try Data(encode(parameters).utf8).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw GenesisFileError("cannot write \(path): \(error.localizedDescription)")
        }
    }

    private static func checkKeys(
        _ object: [String: Any], allowed: Set<String>, at prefix: String
    )
        throws(GenesisFileError)
    {
        if let unknown = object.keys.filter({ !allowed.contains($0) }).sorted().first {
            throw GenesisFileError(
                "unknown key '\(prefix)\(unknown)'; the keys are " + allowed.sorted().joined(separator: ", "))
        }
    }

    private static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
                .trimmingCharacters(in: CharacterSet(charactersIn: "."))
        }
        switch error {
        case .keyNotFound(let key, let context):
            let at = path(context)
            return "missing key '\(at.isEmpty ? "" : at + ".")\(key.stringValue)'"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "'\(path(context))' has the wrong type: \(context.debugDescription)"
        case .dataCorrupted(let context):
            return "'\(path(context))': \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}
