// The genesis file (NodeRuntime/GenesisFile.swift): what `umbra ledger genesis` writes reads back to
// the same parameters and id; every malformed file is refused with the key that is wrong; a data dir
// keeps its genesis and refuses another. The store's range read, which `umbra ledger entries` and
// catch-up use, on a real SQLite file.

import Foundation
import Ledger
import Node
import NodeRuntime
import Testing
import UmbraCore
import UmbraTestKit

@Suite("Genesis file")
struct GenesisFileTests {
    static let keys = UmbraTestKit.identities(3, seed: 77).map(\.publicKey)

    static var parameters: GenesisParameters {
        GenesisParameters(
            network: "file-test", allocations: [Allocation(recipient: keys[2], amount: 5_000)],
            committee: keys.prefix(2).map { CommitteeMember(identity: $0, stake: 1_000) },
            minimumBonds: MinimumBonds(provider: 100, relay: 100, validator: 1_000), unbondingDelay: .seconds(600),
            evidenceLifetime: .seconds(300), committeeSize: 4, reporterRewardPPM: 100_000)
    }

    @Test func whatIsWrittenReadsBackWithTheSameID() throws {
        let text = GenesisFile.encode(Self.parameters)
        let decoded = try GenesisFile.decode(Data(text.utf8))
        #expect(decoded == Self.parameters && decoded.id == Self.parameters.id)
        var other = Self.parameters
        other.allocations[0].amount += 1
        #expect(other.id != Self.parameters.id, "every parameter is in the id")
    }

    @Test func malformedFilesAreRefusedWithTheKeyThatIsWrong() throws {
        let good = try #require(
            JSONSerialization.jsonObject(with: Data(GenesisFile.encode(Self.parameters).utf8)) as? [String: Any])
        func refusal(_ change: (inout [String: Any]) -> Void) -> String {
            var object = good
            change(&object)
            guard let data = try? JSONSerialization.data(withJSONObject: object) else { return "unencodable" }
            do {
                _ = try GenesisFile.decode(data)
                return "accepted"
            } catch { return error.description }
        }
        #expect(refusal { $0["colour"] = "red" }.contains("unknown key 'colour'"))
        #expect(
            refusal { $0["minimumBonds"] = ["provider": 1, "relay": 1, "validator": 1, "x": 1] }.contains(
                "'minimumBonds.x'"))
        #expect(refusal { $0["network"] = nil }.contains("missing key 'network'"))
        #expect(
            refusal { $0["committee"] = [["validator": "umbra1abc", "stake": 1000]] }.contains("committee[0].validator")
        )
        #expect(refusal { $0["committeeSize"] = "four" }.contains("committeeSize"))
        #expect(refusal { $0["committee"] = [] }.contains("committee"))
        #expect(refusal { $0["evidenceLifetimeSeconds"] = 601 }.contains("unbonding delay"))
        #expect(refusal { $0["committeeSize"] = 9 }.contains("at most 8 validators"))
        #expect(refusal { $0["allocations"] = [["account": Self.address(0), "amount": -1]] } != "accepted")
        #expect(throws: GenesisFileError.self) { try GenesisFile.decode(Data("not json".utf8)) }
        #expect(throws: GenesisFileError.self) {
            try GenesisFile.decode(Data(repeating: 32, count: GenesisFile.maximumSize + 1))
        }
    }

    static func address(_ index: Int) -> String { NodeAddress(publicKey: keys[index]).description }

    @Test func aDataDirKeepsItsGenesisAndRefusesAnother() throws {
        let path = try NodeStoreTests.temporaryDirectory()
        defer {
            for name in [GenesisFile.dataDirName, "given.json", "other.json"] { unlink(path + "/" + name) }
            rmdir(path)
        }
        let directory = DataDirectory.resolve(path)
        #expect(try GenesisFile.resolve(given: nil, directory: directory) == nil, "no genesis anywhere: ledger off")
        try Data(GenesisFile.encode(Self.parameters).utf8).write(to: URL(fileURLWithPath: path + "/given.json"))
        let first = try #require(try GenesisFile.resolve(given: path + "/given.json", directory: directory))
        #expect(first.isNew && first.0 == Self.parameters)
        #expect(!FileManager.default.fileExists(atPath: path + "/" + GenesisFile.dataDirName), "resolve writes nothing")
        try GenesisFile.remember(first.0, in: directory)
        let remembered = try #require(try GenesisFile.resolve(given: nil, directory: directory))
        #expect(!remembered.isNew && remembered.0.id == Self.parameters.id)
        var other = Self.parameters
        other.network = "another"
        try Data(GenesisFile.encode(other).utf8).write(to: URL(fileURLWithPath: path + "/other.json"))
        #expect {
            _ = try GenesisFile.resolve(given: path + "/other.json", directory: directory)
        } throws: { error in
            (error as? GenesisFileError)?.description.contains("joined ledger network 'file-test'") == true
        }
    }

    @Test func theStoreReadsAKeyRangeInOrderUpToItsLimit() async throws {
        let path = try NodeStoreTests.temporaryDirectory()
        defer { NodeStoreTests.removeTree(path) }
        let (store, _) = try NodeStore.open(in: DataDirectory.resolve(path))
        let namespace = StorageNamespace("range-test")
        let keys: [[UInt8]] = [[1], [1, 0], [1, 5], [2], [2, 0], [0xFF]]
        let write = await store.perform(
            StorageRequest(
                token: StorageToken(1), operation: .write(keys.map { .put(namespace, key: $0, value: $0 + [9]) })))
        #expect(write.outcome == .written)
        let read = await store.perform(
            StorageRequest(
                token: StorageToken(2), operation: .loadRange(namespace, from: [1, 0], below: [2, 0], limit: 10)))
        #expect(read.outcome == .loaded([[1, 0], [1, 5], [2]].map { StorageEntry(key: $0, value: $0 + [9]) }))
        let limited = await store.perform(
            StorageRequest(token: StorageToken(3), operation: .loadRange(namespace, from: [1], below: [0xFF], limit: 2))
        )
        #expect(limited.outcome == .loaded([[1], [1, 0]].map { StorageEntry(key: $0, value: $0 + [9]) }))
        var image = StorageImage()
        for key in keys { image.apply(.put(namespace, key: key, value: key + [9])) }
        #expect(
            image.perform(.loadRange(namespace, from: [1, 0], below: [2, 0], limit: 10)) == read.outcome,
            "NetSim's disk agrees")
        await store.close()
    }
}
