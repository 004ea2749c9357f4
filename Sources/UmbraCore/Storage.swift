// Storage as host requests (docs/architecture.md, "Host requests"). A pure core never opens a file:
// it emits a `StorageRequest` (a token and an operation) as an effect, its shell performs it (SQLite
// in the runtime, a simulated disk in NetSim), and the answer comes back as an input, a
// `StorageCompletion` carrying the same token. A core that must not act before its state is on disk
// (a ledger must not vote before its lock is durable) emits the write and acts on the completion.
//
// The contract every shell keeps:
// 1. Requests complete in the order they were issued: a load sees every write issued before it and
//    none issued after it.
// 2. `.written` means the whole batch is durable: it survives the process dying and the machine
//    losing power.
// 3. A batch is atomic: after a crash, either all of its mutations are on disk or none is.
// 4. Nothing read back is trusted: the disk may have been tampered with, so a core re-validates
//    what a load returns exactly as it validates what arrives from the network.

/// A named key-value space (a table in the runtime's SQLite store). Names are short, stable, and
/// chosen by the core that owns the data (e.g. "dht.records").
public struct StorageNamespace: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let name: String

    public init(_ name: String) { self.name = name }

    public static func < (lhs: StorageNamespace, rhs: StorageNamespace) -> Bool { lhs.name < rhs.name }
    public var description: String { name }
}

/// Identifies one request; its completion carries the same token. Tokens are chosen by the core and
/// unique among its requests in flight.
public struct StorageToken: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: UInt64

    public init(_ value: UInt64) { self.value = value }

    public static func < (lhs: StorageToken, rhs: StorageToken) -> Bool { lhs.value < rhs.value }
    public var description: String { "#\(value)" }
}

/// One change of a write batch.
public enum StorageMutation: Sendable, Equatable {
    /// Sets `key` in `namespace` to `value` (replacing any value held).
    case put(StorageNamespace, key: [UInt8], value: [UInt8])
    /// Removes `key` from `namespace` (nothing happens if it is absent).
    case delete(StorageNamespace, key: [UInt8])

    public var namespace: StorageNamespace {
        switch self {
        case .put(let namespace, _, _), .delete(let namespace, _): namespace
        }
    }
}

/// What a request asks the shell to do.
public enum StorageOperation: Sendable, Equatable {
    /// Read every entry of a namespace (ordered by key bytes).
    case load(StorageNamespace)
    /// Read the entries of a namespace with `from <= key < below` (byte order), the first `limit`.
    case loadRange(StorageNamespace, from: [UInt8], below: [UInt8], limit: Int)
    /// Apply the mutations in order, atomically, and complete only once they are durable.
    case write([StorageMutation])
}

/// A request the core emits; the shell answers it with a `StorageCompletion` of the same token.
public struct StorageRequest: Sendable, Equatable, CustomStringConvertible {
    public var token: StorageToken
    public var operation: StorageOperation

    public init(token: StorageToken, operation: StorageOperation) {
        self.token = token
        self.operation = operation
    }

    public var description: String {
        switch operation {
        case .load(let namespace): "storage \(token) load \(namespace)"
        case .loadRange(let namespace, _, _, let limit): "storage \(token) load up to \(limit) of \(namespace)"
        case .write(let mutations): "storage \(token) write \(mutations.count) mutations"
        }
    }
}

/// One key and its value, as a load returns them.
public struct StorageEntry: Sendable, Equatable {
    public var key: [UInt8]
    public var value: [UInt8]

    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
    }
}

/// How a request ended.
public enum StorageOutcome: Sendable, Equatable {
    /// A load's entries, ordered by key bytes.
    case loaded([StorageEntry])
    /// A write batch is durable.
    case written
    /// The shell could not perform the request (the reason is for logs; the shell also logs it and
    /// says what an operator should do). A failed write may or may not have reached the disk.
    case failed(String)
}

/// The answer to a `StorageRequest`, fed back to the core as an input.
public struct StorageCompletion: Sendable, Equatable {
    public var token: StorageToken
    public var outcome: StorageOutcome

    public init(token: StorageToken, outcome: StorageOutcome) {
        self.token = token
        self.outcome = outcome
    }
}

// MARK: - In-memory double

/// Namespaces of key-value entries in memory: what a disk holds, for the simulator's disk and for
/// tests. `perform` is the whole contract of a shell but durability (everything is applied at once).
public struct StorageImage: Sendable, Equatable {
    public private(set) var namespaces: [StorageNamespace: [[UInt8]: [UInt8]]] = [:]

    public init() {}

    /// Performs `operation` at once and returns its outcome.
    public mutating func perform(_ operation: StorageOperation) -> StorageOutcome {
        switch operation {
        case .load(let namespace): return .loaded(entries(in: namespace))
        case .loadRange(let namespace, let from, let below, let limit):
            let inRange = entries(in: namespace).filter {
                !$0.key.lexicographicallyPrecedes(from) && $0.key.lexicographicallyPrecedes(below)
            }
            return .loaded(Array(inRange.prefix(max(0, limit))))
        case .write(let mutations):
            for mutation in mutations { apply(mutation) }
            return .written
        }
    }

    public mutating func apply(_ mutation: StorageMutation) {
        switch mutation {
        case .put(let namespace, let key, let value): namespaces[namespace, default: [:]][key] = value
        case .delete(let namespace, let key):
            namespaces[namespace]?[key] = nil
            if namespaces[namespace]?.isEmpty == true { namespaces[namespace] = nil }
        }
    }

    /// The entries of `namespace`, ordered by key bytes.
    public func entries(in namespace: StorageNamespace) -> [StorageEntry] {
        (namespaces[namespace] ?? [:]).map { StorageEntry(key: $0.key, value: $0.value) }
            .sorted { $0.key.lexicographicallyPrecedes($1.key) }
    }

    public func value(in namespace: StorageNamespace, key: [UInt8]) -> [UInt8]? { namespaces[namespace]?[key] }

    public func count(in namespace: StorageNamespace) -> Int { namespaces[namespace]?.count ?? 0 }
}
