// An iterative Kademlia lookup as a pure state machine: events in (responses, failures, time),
// queries out. α queries are in flight at once; a query slower than its soft timeout stops
// counting against α (the lookup widens instead of stalling) but a late answer is still used;
// after its hard timeout it has failed. The lookup ends when the k closest nodes it knows of have
// all answered (or failed), when it has nothing left to ask, or at its query budget.

import UmbraCore

public struct LookupConfig: Sendable {
    public var alpha = 3
    public var k = 20
    /// Most queries one lookup may send.
    public var maximumQueries = 120
    /// Candidates remembered (closest first); farther ones are forgotten.
    public var maximumCandidates = 100
    public init() {}
}

/// What a lookup is after.
public enum LookupKind: Sendable, Equatable {
    case node
    case value
}

public struct Lookup: Sendable {
    enum State: Sendable, Equatable {
        case fresh
        case inFlight(softDeadline: Instant, hardDeadline: Instant)
        case responded
        case failed
    }

    struct Candidate: Sendable {
        var contact: NodeContact
        var distance: Key256.Distance
        var state: State
        /// The query depth at which this contact was learned (seeds: 0); querying it is hop depth+1.
        var depth: Int
    }

    public let target: Key256
    public let kind: LookupKind
    public let startedAt: Instant
    let config: LookupConfig
    let localID: NodeID
    private(set) var candidates: [Candidate] = []
    private var known: Set<NodeID> = []
    public private(set) var queriesSent = 0
    public private(set) var responses = 0
    public private(set) var failures = 0
    /// When and at which hop the target node itself was first learned (node lookups).
    public private(set) var targetFound: (at: Instant, hops: Int, contact: NodeContact)?
    /// Records found, one per publisher (highest seq), and when the first one arrived.
    public private(set) var records: [PublicKey: SignedRecord] = [:]
    public private(set) var firstRecord: (at: Instant, hops: Int)?
    public private(set) var finishedAt: Instant?
    /// Further pages of VALUES answers being fetched; the lookup does not end before they arrive.
    public private(set) var pagesPending = 0
    /// The deepest hop whose answer moved the lookup closer (the path length).
    public private(set) var hops = 0

    /// `localRecords`: records for the target this node already holds (found at hop 0).
    public init(
        target: Key256, kind: LookupKind, seeds: [NodeContact], localID: NodeID, config: LookupConfig,
        now: Instant, localRecords: [SignedRecord] = []
    ) {
        self.target = target
        self.kind = kind
        self.startedAt = now
        self.config = config
        self.localID = localID
        merge(localRecords, depth: 0, now: now)
        add(seeds, depth: 0)
    }

    public var isFinished: Bool { finishedAt != nil }

    /// The queries to send now. `timeouts(id)` gives the (soft, hard) timeout for a contact.
    public mutating func poll(now: Instant, timeouts: (NodeID) -> (soft: Duration, hard: Duration)) -> [NodeContact] {
        guard !isFinished else { return [] }
        expire(now: now)
        var queries: [NodeContact] = []
        var active = candidates.reduce(0) { count, candidate in
            if case .inFlight(let soft, _) = candidate.state, soft > now { return count + 1 }
            return count
        }
        // One pass in distance order; `rank` counts the non-failed candidates seen so far, so only
        // the k closest of them are ever queried.
        var rank = 0
        for index in candidates.indices {
            guard active < config.alpha, queriesSent < config.maximumQueries, rank < config.k else { break }
            if candidates[index].state == .failed { continue }
            rank += 1
            guard candidates[index].state == .fresh else { continue }
            let (soft, hard) = timeouts(candidates[index].contact.id)
            candidates[index].state = .inFlight(softDeadline: now + soft, hardDeadline: now + hard)
            queries.append(candidates[index].contact)
            queriesSent += 1
            active += 1
        }
        checkFinished(now: now)
        return queries
    }

    /// A contact answered. `contacts` are the closer nodes it returned, `records` any values.
    public mutating func onResponse(
        from id: NodeID, contacts: [NodeContact], records found: [SignedRecord],
        now: Instant
    ) {
        guard let index = candidates.firstIndex(where: { $0.contact.id == id }) else { return }
        switch candidates[index].state {
        case .inFlight, .failed: break  // a late answer after the hard timeout still counts
        case .fresh, .responded: return  // unsolicited or duplicate
        }
        candidates[index].state = .responded
        responses += 1
        let depth = candidates[index].depth + 1
        hops = max(hops, depth)
        merge(found, depth: depth, now: now)
        if kind == .node, targetFound == nil, let match = contacts.first(where: { $0.id == target }) {
            targetFound = (now, depth, match)
        }
        add(contacts, depth: depth)
        checkFinished(now: now)
    }

    /// The caller is fetching `count` more pages of a VALUES answer; the lookup waits for them.
    public mutating func expectPages(_ count: Int) {
        guard !isFinished, count > 0 else { return }
        pagesPending += count
    }

    /// A further page of records arrived (`records` nil: the page request failed).
    public mutating func onPage(records found: [SignedRecord]?, hops depth: Int, now: Instant) {
        guard pagesPending > 0 else { return }
        pagesPending -= 1
        merge(found ?? [], depth: depth, now: now)
        checkFinished(now: now)
    }

    /// The query depth of a contact that answered (for pages fetched from it).
    public func depth(of id: NodeID) -> Int {
        (candidates.first { $0.contact.id == id }?.depth ?? 0) + 1
    }

    /// A query failed (hard timeout, or the session could not be set up).
    public mutating func onFailure(from id: NodeID, now: Instant) {
        guard let index = candidates.firstIndex(where: { $0.contact.id == id }) else { return }
        guard case .inFlight = candidates[index].state else { return }
        candidates[index].state = .failed
        failures += 1
        checkFinished(now: now)
    }

    /// The earliest soft or hard deadline of a query in flight.
    public var nextDeadline: Instant? {
        guard !isFinished else { return nil }
        var earliest: Instant?
        for candidate in candidates {
            guard case .inFlight(let soft, let hard) = candidate.state else { continue }
            for deadline in [soft, hard] where earliest.map({ deadline < $0 }) ?? true { earliest = deadline }
        }
        return earliest
    }

    /// The k closest contacts that answered, closest first.
    public var closestResponded: [NodeContact] {
        Array(candidates.lazy.filter { $0.state == .responded }.prefix(config.k).map(\.contact))
    }

    /// Contacts whose queries are in flight (to fail them if the lookup is abandoned).
    public var inFlight: [NodeID] {
        candidates.compactMap { if case .inFlight = $0.state { $0.contact.id } else { nil } }
    }

    // MARK: - Internals

    /// Keeps one record per publisher (the highest seq) among those for the target.
    private mutating func merge(_ found: [SignedRecord], depth: Int, now: Instant) {
        for record in found where record.key == target {
            if let existing = records[record.publisher], existing.seq >= record.seq { continue }
            records[record.publisher] = record
            if firstRecord == nil { firstRecord = (now, depth) }
        }
    }

    private mutating func add(_ contacts: [NodeContact], depth: Int) {
        for contact in contacts where contact.id != localID && !known.contains(contact.id) {
            known.insert(contact.id)
            let candidate = Candidate(
                contact: contact, distance: contact.id.xorDistance(to: target), state: .fresh, depth: depth)
            // Insert in distance order (binary search).
            var low = 0
            var high = candidates.count
            while low < high {
                let mid = (low + high) / 2
                if candidates[mid].distance < candidate.distance { low = mid + 1 } else { high = mid }
            }
            candidates.insert(candidate, at: low)
        }
        if candidates.count > config.maximumCandidates {
            // Forget the farthest fresh candidates; never drop one we are waiting on.
            var index = candidates.count - 1
            while candidates.count > config.maximumCandidates, index >= 0 {
                if candidates[index].state == .fresh { candidates.remove(at: index) }
                index -= 1
            }
        }
    }

    private mutating func expire(now: Instant) {
        for index in candidates.indices {
            if case .inFlight(_, let hard) = candidates[index].state, hard <= now {
                candidates[index].state = .failed
                failures += 1
            }
        }
    }

    private mutating func checkFinished(now: Instant) {
        guard finishedAt == nil, pagesPending == 0 else { return }
        var rank = 0
        var waiting = false
        for candidate in candidates where candidate.state != .failed {
            guard rank < config.k else { break }
            rank += 1
            switch candidate.state {
            case .fresh: if queriesSent < config.maximumQueries { waiting = true }
            case .inFlight: waiting = true
            default: break
            }
        }
        if !waiting { finishedAt = now }
    }
}
