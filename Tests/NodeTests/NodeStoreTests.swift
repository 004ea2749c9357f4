import Kademlia
import Node
import NodeRuntime
import Synchronization
import Testing
import UmbraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The SQLite store on a real file in a temporary directory.
@Suite("NodeStore")
struct NodeStoreTests {
    /// A fresh temporary directory (removed by `removeTree`).
    static func temporaryDirectory() throws -> String {
        var template = Array("/tmp/umbra-store-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        let path = try #require(made.map { String(cString: $0) })
        return path
    }

    static func removeTree(_ path: String) {
        for name in ["node.sqlite", "node.sqlite-wal", "node.sqlite-shm", "routing-table.txt"] {
            unlink(path + "/" + name)
        }
        rmdir(path)
    }

    static func writeFile(_ path: String, _ bytes: [UInt8]) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    static let records = StorageNamespace.dhtRecords
    static let contacts = StorageNamespace.dhtContacts

    @Test func writesAreLoadedBackInKeyOrderAndSurviveReopening() async throws {
        let directory = try Self.temporaryDirectory()
        defer { Self.removeTree(directory) }
        let path = directory + "/node.sqlite"
        let store = try NodeStore(path: path)
        let write = await store.perform(
            StorageRequest(
                token: StorageToken(1),
                operation: .write([
                    .put(Self.records, key: [2], value: [20]), .put(Self.records, key: [1], value: [10]),
                    .put(Self.records, key: [3], value: [30]), .put(Self.contacts, key: [1], value: [99]),
                    .delete(Self.records, key: [3]), .put(Self.records, key: [2], value: [21, 22]),
                ])))
        #expect(write == StorageCompletion(token: StorageToken(1), outcome: .written))
        let load = await store.perform(StorageRequest(token: StorageToken(2), operation: .load(Self.records)))
        let expected: [StorageEntry] = [.init(key: [1], value: [10]), .init(key: [2], value: [21, 22])]
        #expect(load == StorageCompletion(token: StorageToken(2), outcome: .loaded(expected)))
        await store.close()

        let reopened = try NodeStore(path: path)
        let again = await reopened.perform(StorageRequest(token: StorageToken(3), operation: .load(Self.records)))
        #expect(again.outcome == .loaded(expected))
        let other = await reopened.perform(StorageRequest(token: StorageToken(4), operation: .load(Self.contacts)))
        #expect(other.outcome == .loaded([.init(key: [1], value: [99])]))
        await reopened.close()
    }

    @Test func requestsCompleteInTheOrderSubmitted() async throws {
        let directory = try Self.temporaryDirectory()
        defer { Self.removeTree(directory) }
        let store = try NodeStore(path: directory + "/node.sqlite")
        let order = OrderLog()
        for token in 1...50 as ClosedRange<UInt64> {
            let operation: StorageOperation =
                token % 10 == 0
                ? .load(Self.records) : .write([.put(Self.records, key: [UInt8(token)], value: [UInt8(token)])])
            store.submit(StorageRequest(token: StorageToken(token), operation: operation)) { completion in
                order.append(completion)
            }
        }
        await store.close()
        let completions = order.all
        #expect(completions.map(\.token.value) == Array(1...50))
        // A load sees exactly the writes submitted before it.
        if case .loaded(let entries) = completions[19].outcome {
            #expect(entries.count == 18)
        } else {
            Issue.record("expected a load, got \(completions[19])")
        }
    }

    @Test func aFileFromANewerVersionIsRefusedWithAnExplanation() async throws {
        let directory = try Self.temporaryDirectory()
        defer { Self.removeTree(directory) }
        let path = directory + "/node.sqlite"
        let store = try NodeStore(path: path)
        await store.close()
        // Migrations are append-only: the store records the ones it ran; an unknown one is a newer umbra.
        let sqlite = "sqlite3 '\(path)' \"INSERT INTO grdb_migrations (identifier) VALUES ('v99: future')\""
        #expect(system(sqlite) == 0)
        let error = #expect(throws: NodeStoreError.self) { _ = try NodeStore(path: path) }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("newer umbra") && text.contains("v99: future"), "\(text)")
    }

    @Test func aCorruptedFileIsRefusedWithThePathAndWhatToDo() throws {
        let directory = try Self.temporaryDirectory()
        defer { Self.removeTree(directory) }
        let path = directory + "/node.sqlite"
        Self.writeFile(path, Array(repeating: 0x5A, count: 8192))
        let error = #expect(throws: NodeStoreError.self) { _ = try NodeStore(path: path) }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains(path) && text.contains("move it aside") && text.contains("damaged"), "\(text)")
    }

    @Test func anOldRoutingTableFileIsImportedOnceAndRemoved() async throws {
        let directory = try Self.temporaryDirectory()
        defer { Self.removeTree(directory) }
        var rng = SeededRandom(seed: 7)
        let peer = Identity.generate(using: &rng)
        let line = "\(NodeAddress(publicKey: peer.publicKey))@192.0.2.7:4747\n"
        Self.writeFile(directory + "/routing-table.txt", Array(("# old file\n" + line).utf8))
        let (store, imported) = try NodeStore.open(in: DataDirectory(path: directory))
        #expect(imported == 1)
        #expect(access(directory + "/routing-table.txt", F_OK) != 0, "the old file is gone")
        let load = await store.perform(StorageRequest(token: StorageToken(1), operation: .load(Self.contacts)))
        guard case .loaded(let entries) = load.outcome, entries.count == 1 else {
            Issue.record("expected one contact, got \(load)")
            return
        }
        var reader = ByteReader(entries[0].value)
        let contact = try reader.readNodeContact()
        #expect(contact.publicKey == peer.publicKey)
        #expect(contact.endpoint == (try Endpoint(parsing: "192.0.2.7:4747")))
        #expect(entries[0].key == peer.publicKey.bytes)
        await store.close()
        let (_, again) = try NodeStore.open(in: DataDirectory(path: directory))
        #expect(again == 0)
    }
}

/// Completions collected from the store's queue.
final class OrderLog: Sendable {
    private let items = Mutex<[StorageCompletion]>([])

    func append(_ completion: StorageCompletion) { items.withLock { $0.append(completion) } }
    var all: [StorageCompletion] { items.withLock { $0 } }
}
