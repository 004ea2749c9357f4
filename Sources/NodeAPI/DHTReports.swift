// JSON documents of the DHT routes (docs/api.md §DHT).

import Kademlia
import NodeRuntime
import UmbraCore

public struct DHTStatusReport: Codable, Sendable {
    public struct Bucket: Codable, Sendable {
        public var index: Int
        public var contacts: Int
        public var replacements: Int
    }

    public var server: Bool
    public var tableSize: Int
    public var buckets: [Bucket]
    public var records: Int
    public var pendingRequests: Int
    public var activeLookups: Int
    public var requestsSent: UInt64
    public var requestsReceived: UInt64
    public var responsesReceived: UInt64
    public var timeouts: UInt64
    public var lookupsStarted: UInt64
    public var lookupsFinished: UInt64
    public var storesAccepted: UInt64
    public var storesRefused: UInt64
    /// Records refused by this node's store, by reason; every reason is present.
    public var refused: [String: UInt64]

    public init(_ dht: DHTNode) {
        server = dht.config.isServer
        tableSize = dht.table.count
        buckets = dht.table.buckets.map {
            Bucket(index: $0.index, contacts: $0.contacts, replacements: $0.replacements)
        }
        records = dht.store.count
        pendingRequests = dht.pendingRequestCount
        activeLookups = dht.activeLookupCount
        let counters = dht.counters
        requestsSent = counters.requestsSent
        requestsReceived = counters.requestsReceived
        responsesReceived = counters.responsesReceived
        timeouts = counters.timeouts
        lookupsStarted = counters.lookupsStarted
        lookupsFinished = counters.lookupsFinished
        storesAccepted = counters.storesAccepted
        storesRefused = counters.storesRefused
        var refused: [String: UInt64] = [:]
        for reason in RecordRefusal.allCases { refused[reason.rawValue] = dht.store.refusals[reason, default: 0] }
        self.refused = refused
    }
}

public struct ContactReport: Codable, Sendable {
    public var address: String
    public var endpoint: String
    public var nodeId: String

    public init(_ contact: NodeContact) {
        address = NodeAddress(publicKey: contact.publicKey).description
        endpoint = contact.endpoint.description
        nodeId = contact.id.description
    }
}

public struct RecordReport: Codable, Sendable {
    public var kind: String
    public var key: String
    public var publisher: String
    public var seq: UInt64
    public var expiresInSeconds: Double
    /// The text of a text record (`umbra dht put`), when the record is one.
    public var name: String?
    public var text: String?
    public var valueHex: String

    public init(_ record: SignedRecord, now: Instant) {
        kind = "\(record.kind)"
        key = record.key.description
        publisher = NodeAddress(publicKey: record.publisher).description
        seq = record.seq
        expiresInSeconds = record.expiresAt.since(now).seconds
        if record.kind == .text, let value = try? TextRecordValue.decode(record.value) {
            name = value.name
            text = value.text
        }
        valueHex = Hex.encode(record.value)
    }
}

public struct LookupResultReport: Codable, Sendable {
    public var target: String
    public var kind: String
    public var found: Bool
    /// Node lookups: the target's contact when found.
    public var contact: ContactReport?
    public var records: [RecordReport]
    public var closest: [ContactReport]
    public var hops: Int
    public var queries: Int
    public var responses: Int
    public var failures: Int
    public var latencyMs: Double
    public var durationMs: Double

    public init(_ report: LookupReport, now: Instant) {
        target = report.target.description
        kind = report.kind == .node ? "node" : "value"
        found = report.found
        contact = report.targetContact.map(ContactReport.init)
        records = report.records.map { RecordReport($0, now: now) }
        closest = report.closest.map(ContactReport.init)
        hops = report.hops
        queries = report.queries
        responses = report.responses
        failures = report.failures
        latencyMs = report.latency.seconds * 1000
        durationMs = report.duration.seconds * 1000
    }
}

public struct PutResultReport: Codable, Sendable {
    public var key: String
    public var stored: Int
    public var attempted: Int
    public var durationMs: Double

    public init(_ report: PutReport) {
        key = report.key.description
        stored = report.stored
        attempted = report.attempted
        durationMs = report.duration.seconds * 1000
    }
}
