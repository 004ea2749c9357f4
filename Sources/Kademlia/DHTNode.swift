// The DHT core of one node: routing table, iterative lookups, the signed-record store, and the
// RPCs that tie them together, as a pure state machine (DESIGN §4). The node layer carries its
// messages inside sessions; NetSim's DHT simulator carries them over virtual links.
//
// Inputs: `handle(_:from:now:rng:)` for every DHT message from a peer, `tick(now:rng:)` when
// `nextDeadline` passes, and the commands `bootstrap`, `lookup`, `put`, `contactUnreachable`.
// Outputs: `[DHTEffect]`.

import UmbraCore
import UmbraCrypto

public struct DHTConfig: Sendable {
    public var table = RoutingTableConfig()
    public var store = RecordStoreConfig()
    public var lookup = LookupConfig()
    /// Whether this node answers as a DHT server (publicly reachable) or only asks (client).
    public var isServer = true
    /// Request timeouts: soft (stop counting against α) = SRTT + 4·RTTVAR, clamped; hard = 3 × soft.
    public var initialTimeout: Duration = .milliseconds(800)
    public var minimumTimeout: Duration = .milliseconds(100)
    public var maximumTimeout: Duration = .seconds(2)
    /// Most requests of ours awaiting an answer; more are not sent.
    public var maximumPendingRequests = 2048
    /// Most lookups at once.
    public var maximumLookups = 64
    /// Most reachability checks (pings to new requesters) at once.
    public var maximumVerifications = 16
    /// How many of the closest nodes a record is stored on.
    public var replicas = 10
    /// Own records are re-put this often and live this long.
    public var republishInterval: Duration = .seconds(30 * 60)
    public var recordLifetime: Duration = .seconds(60 * 60)
    /// Most pages of one VALUES answer a value lookup fetches from one node.
    public var maximumPages: UInt16 = 8
    /// A bucket refresh only needs to meet some nodes of that bucket: it stops after this many queries.
    public var refreshQueries = 8
    /// With an empty table, the bootstrap contacts are tried again after `rejoinMinimumInterval`,
    /// doubling up to this interval (a cold start fills within seconds; a dead list costs little).
    public var rebootstrapInterval: Duration = .seconds(30)
    /// Join lookups (our own id through the table and the bootstrap contacts) run again at most
    /// this often: when the table gains contacts while it holds fewer than k, and when this node
    /// turns into a server (its requests then carry the server flag, so others add it).
    public var rejoinMinimumInterval: Duration = .seconds(1)
    /// Round-trip estimates remembered for at most this many nodes.
    public var maximumRTTEntries = 4096
    public init() {}
}

/// What the shell (the node layer, or the simulator) must do.
public enum DHTEffect: Sendable, Equatable {
    case send(DHTMessage, to: NodeContact)
    case lookupFinished(LookupReport)
    case putFinished(PutReport)
    /// A request to this contact timed out (the node layer may drop an unused session).
    case contactFailed(NodeContact)
    /// A peer told us the endpoint it sees us at.
    case observedAddress(Endpoint, reporter: PublicKey)
}

public struct LookupReport: Sendable, Equatable {
    public var id: UInt64
    public var target: Key256
    public var kind: LookupKind
    /// Node lookups: the target's contact if found. Value lookups: whether any record was found.
    public var targetContact: NodeContact?
    public var records: [SignedRecord]
    public var closest: [NodeContact]
    /// Hops to the target (or first record) when found; otherwise the lookup's path length.
    public var hops: Int
    public var queries: Int
    public var responses: Int
    public var failures: Int
    /// Time until the target (or first record) was found, or until the lookup ended.
    public var latency: Duration
    /// Time until the lookup ended (converged on the k closest).
    public var duration: Duration

    public var found: Bool { kind == .node ? targetContact != nil : !records.isEmpty }
}

public struct PutReport: Sendable, Equatable {
    public var id: UInt64
    public var key: Key256
    public var attempted: Int
    public var stored: Int
    public var duration: Duration
}

public struct DHTCounters: Sendable, Equatable {
    public var requestsSent: UInt64 = 0
    public var requestsReceived: UInt64 = 0
    public var responsesReceived: UInt64 = 0
    public var timeouts: UInt64 = 0
    public var unexpectedResponses: UInt64 = 0
    public var lookupsStarted: UInt64 = 0
    public var lookupsFinished: UInt64 = 0
    public var storesAccepted: UInt64 = 0
    public var storesRefused: UInt64 = 0
    public init() {}
}

public struct DHTNode: Sendable {
    public let identity: Identity
    public let networkID: String
    public private(set) var config: DHTConfig
    public private(set) var table: RoutingTable
    public private(set) var store: RecordStore
    public private(set) var counters = DHTCounters()

    private enum Purpose: Sendable {
        case lookup(UInt64)
        /// A further page of a VALUES answer, for this lookup.
        case page(UInt64)
        case verify
        case evictionCheck
        case store(UInt64)
        case ping(UInt64)
    }

    private struct Pending: Sendable {
        var contact: NodeContact
        var sentAt: Instant
        /// The hard timeout: the request has failed.
        var deadline: Instant
        /// When `tick` must look at this request next: its soft timeout (a lookup widens), then
        /// its hard timeout.
        var nextCheck: Instant
        var purpose: Purpose
    }

    private struct LookupTask: Sendable {
        var lookup: Lookup
        /// The put waiting for this lookup, if any.
        var purpose: LookupPurpose
    }

    /// Why a lookup runs: only `.user` lookups are reported.
    private enum LookupPurpose: Sendable, Equatable {
        case user
        /// The join lookup for our own id; when it ends, the buckets farther out are refreshed.
        case bootstrap
        case refresh
        case put(UInt64)
    }

    private struct PutTask: Sendable {
        var record: SignedRecord
        var startedAt: Instant
        var attempted = 0
        var outstanding = 0
        var stored = 0
    }

    private struct RTT: Sendable {
        var smoothed: Duration
        var variance: Duration
    }

    /// A request in flight is known by the peer it went to and its id: an answer must come from
    /// that peer and echo that id.
    private struct RequestKey: Hashable, Sendable, Comparable {
        var id: UInt64
        var peer: PublicKey

        static func < (lhs: RequestKey, rhs: RequestKey) -> Bool {
            lhs.id == rhs.id ? lhs.peer.bytes.lexicographicallyPrecedes(rhs.peer.bytes) : lhs.id < rhs.id
        }
    }

    private var pending: [RequestKey: Pending] = [:]
    private var lookups: [UInt64: LookupTask] = [:]
    private var puts: [UInt64: PutTask] = [:]
    private var rtts: [NodeID: RTT] = [:]
    private var ownRecords: [Key256: SignedRecord] = [:]
    private var nextRepublish: Instant?
    private var seeds: [NodeContact] = []
    private var nextRebootstrap: Instant?
    private var rebootstrapDelay: Duration?
    // Join scheduling: a join is due when `joinRequested` or the table grew since the last one while
    // it holds fewer than k contacts; it runs no sooner than `rejoinMinimumInterval` after the last.
    private var joinRequested = false
    private var lastJoinAt: Instant?
    private var tableCountAtLastJoin = 0
    private var joinDueAt: Instant?
    private var verifying = 0
    private var nextRefreshCheck = Instant.zero + .seconds(1)
    /// Handles of lookups and puts (local only, never on the wire).
    private var nextID: UInt64
    /// Wire request ids are BLAKE2b(counter) under a key drawn from the rng at start: unpredictable
    /// to peers, yet a seed replays exactly.
    private let requestIDKey: [UInt8]
    private var requestCounter: UInt64 = 0
    /// Our own addresses as far as the node layer knows them (see `setOwnAddresses`).
    private var ownAddresses: [IPAddress] = []

    public init(
        identity: Identity, networkID: String, config: DHTConfig = DHTConfig(), now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        self.identity = identity
        self.networkID = networkID
        self.config = config
        self.table = RoutingTable(localID: identity.nodeID, config: config.table, now: now)
        self.store = RecordStore(networkID: networkID, config: config.store)
        self.nextID = rng.next()
        self.requestIDKey = rng.bytes(32)
    }

    public var localID: NodeID { identity.nodeID }
    public var pendingRequestCount: Int { pending.count }
    public var activeLookupCount: Int { lookups.count }

    /// Turns server mode on or off (e.g. when reachability is learned). Turning it on schedules a
    /// join, so the nodes we know hear from us with the server flag and put us in their tables.
    public mutating func setServer(_ isServer: Bool) {
        if isServer, !config.isServer, let last = lastJoinAt {
            joinRequested = true
            joinDueAt = joinDueAt ?? last + config.rejoinMinimumInterval
        }
        config.isServer = isServer
    }

    // MARK: - Persistence hooks

    /// Turns the record store's change log on (a node that persists the records it holds).
    public mutating func trackRecordChanges() { store.tracksChanges = true }

    /// The record store's changes since the last call (see `RecordStore.tracksChanges`).
    public mutating func drainRecordChanges() -> [RecordChange] { store.drainChanges() }

    /// Puts a record read back from disk into the store. It goes through every check a STORE from
    /// the network goes through (signature, expiry, key and value rules, seq, quotas, and the caps
    /// of `source`): the disk is trusted no more than the network.
    public mutating func restoreRecord(
        _ record: SignedRecord, source: Endpoint?, now: Instant
    )
        -> RecordStore.StoreResult
    {
        store.store(record, now: now, source: source)
    }

    /// Whether a join lookup (our own id) is running.
    public var isJoining: Bool { lookups.values.contains { $0.purpose == .bootstrap } }

    /// Our own addresses (socket, advertised, observed): loopback and private contacts handed to us
    /// are only dialled when we are on such an address ourselves (see `mayDial`).
    public mutating func setOwnAddresses(_ addresses: [IPAddress]) {
        ownAddresses = Array(Set(addresses).sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }.prefix(16))
    }

    // MARK: - Commands

    /// Remembers the bootstrap contacts and looks up our own id through them to fill the table.
    public mutating func bootstrap(
        _ contacts: [NodeContact], now: Instant, rng: inout some RandomNumberGenerator
    )
        -> [DHTEffect]
    {
        seeds = contacts.filter { $0.id != localID && $0.isShareable }
        return join(now: now, rng: &rng)
    }

    /// Looks up our own id through the table and the bootstrap contacts (Kademlia's join).
    private mutating func join(now: Instant, rng: inout some RandomNumberGenerator) -> [DHTEffect] {
        let delay = min((rebootstrapDelay ?? config.rejoinMinimumInterval / 2) * 2, config.rebootstrapInterval)
        rebootstrapDelay = delay
        nextRebootstrap = now + delay
        joinRequested = false
        joinDueAt = nil
        lastJoinAt = now
        tableCountAtLastJoin = table.count
        guard !seeds.isEmpty || table.count > 0 else { return [] }
        return startLookup(target: localID, kind: .node, extraSeeds: seeds, purpose: .bootstrap, now: now, rng: &rng)
            .effects
    }

    /// Sets when the next join is due, if one should run: a node that has joined before, whose
    /// table grew since (while below k) or that turned server. A short delay gathers a burst of
    /// new contacts into one join.
    private mutating func scheduleJoin(now: Instant) {
        guard joinDueAt == nil, let last = lastJoinAt, seeds.count + table.count > 0, !isJoining else { return }
        let grew = table.count > tableCountAtLastJoin && table.count < config.lookup.k
        guard joinRequested || grew else { return }
        joinDueAt = max(now + .milliseconds(100), last + config.rejoinMinimumInterval)
    }

    /// Starts a lookup; its report comes back as `.lookupFinished` with the returned id.
    public mutating func lookup(
        _ target: Key256, kind: LookupKind, now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> (id: UInt64, effects: [DHTEffect]) {
        startLookup(
            target: target, kind: kind, extraSeeds: table.count == 0 ? seeds : [], purpose: .user, now: now,
            rng: &rng)
    }

    /// Stores `record` here (when it is ours, it is also republished) and on the closest nodes.
    public mutating func put(
        _ record: SignedRecord, now: Instant, rng: inout some RandomNumberGenerator
    )
        -> (id: UInt64, effects: [DHTEffect])
    {
        _ = store.store(record, now: now)
        if record.publisher == identity.publicKey {
            ownRecords[record.key] = record
            if nextRepublish == nil { nextRepublish = now + config.republishInterval }
        }
        let id = newID()
        puts[id] = PutTask(record: record, startedAt: now)
        var effects = startLookup(
            target: record.key, kind: .node, extraSeeds: table.count == 0 ? seeds : [],
            purpose: .put(id), now: now, rng: &rng
        ).effects
        if lookups.values.first(where: { $0.purpose == .put(id) }) == nil, puts[id] != nil {
            effects += finishPut(id, now: now)  // no lookup could start (table and seeds empty)
        }
        return (id, effects)
    }

    /// Signs and puts a record of ours with the configured lifetime and a seq above any before.
    public mutating func publish(
        kind: SignedRecord.Kind, key: Key256, value: [UInt8], now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> (id: UInt64, effects: [DHTEffect]) {
        let seq = max(ownRecords[key].map { $0.seq + 1 } ?? 1, now.nanoseconds / 1_000_000)
        let record = SignedRecord.make(
            kind: kind, key: key, value: value, seq: seq,
            expiresAt: now + config.recordLifetime, identity: identity, networkID: networkID)
        return put(record, now: now, rng: &rng)
    }

    /// Pings a contact (e.g. to test it); the answer updates the table.
    public mutating func ping(_ contact: NodeContact, now: Instant) -> [DHTEffect] {
        var effects: [DHTEffect] = []
        request(.ping, to: contact, purpose: .ping(0), now: now, effects: &effects)
        return effects
    }

    /// The session layer could not reach `key`: fail every request waiting on it now.
    public mutating func contactUnreachable(_ key: PublicKey, now: Instant) -> [DHTEffect] {
        var effects: [DHTEffect] = []
        for (id, entry) in pending.filter({ $0.key.peer == key }).sorted(by: { $0.key < $1.key }) {
            fail(id, entry, now: now, effects: &effects)
        }
        return effects
    }

    // MARK: - Messages

    /// Handles a DHT message that arrived from `key` (authenticated by the session layer) at
    /// `endpoint`, or from an address we do not know (nil: it came through a relay). Such a sender
    /// stands as a contact at `Endpoint.unknown`: never put into the table or handed on (not
    /// shareable), its STOREs charged together to `RecordStore.unknownSource`, its pong naming no
    /// address of its own.
    public mutating func handle(
        _ message: DHTMessage, from key: PublicKey, at endpoint: Endpoint?, now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> [DHTEffect] {
        handle(message, from: NodeContact(publicKey: key, endpoint: endpoint ?? .unknown), now: now, rng: &rng)
    }

    /// Handles a DHT message that arrived from `contact` (authenticated by the session layer).
    public mutating func handle(
        _ message: DHTMessage, from contact: NodeContact, now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> [DHTEffect] {
        var effects: [DHTEffect] = []
        if message.isRequest {
            counters.requestsReceived += 1
            answer(message, from: contact, now: now, effects: &effects)
            if message.flags.contains(.server) { verifyIfNew(contact, now: now, effects: &effects) }
        } else {
            handleResponse(message, from: contact, now: now, rng: &rng, effects: &effects)
        }
        // A due join runs now rather than from a deadline already past.
        if table.count == 0, !seeds.isEmpty, let due = nextRebootstrap, due <= now {
            effects += join(now: now, rng: &rng)
        } else if let due = joinDueAt, due <= now {
            joinDueAt = nil
            if !isJoining { effects += join(now: now, rng: &rng) }
        }
        scheduleJoin(now: now)
        return effects
    }

    /// Runs timers: request timeouts, lookup progress, bucket refresh, republish, expiry.
    public mutating func tick(now: Instant, rng: inout some RandomNumberGenerator) -> [DHTEffect] {
        var effects: [DHTEffect] = []
        let expired = pending.filter { $0.value.deadline <= now }.sorted { $0.key < $1.key }
        for (id, entry) in expired { fail(id, entry, now: now, effects: &effects) }
        for id in pending.keys where pending[id]!.nextCheck <= now { pending[id]!.nextCheck = pending[id]!.deadline }
        for id in lookups.keys.sorted() { advance(id, now: now, effects: &effects) }
        store.expire(now: now)
        for bucket in table.bucketsNeedingRefresh(now: now) where lookups.count < config.maximumLookups / 2 {
            table.markRefreshed(bucket: bucket, now: now)
            let target = table.randomID(inBucket: bucket, using: &rng)
            effects +=
                startLookup(target: target, kind: .node, extraSeeds: [], purpose: .refresh, now: now, rng: &rng)
                .effects
        }
        if let due = nextRepublish, due <= now {
            nextRepublish = now + config.republishInterval
            for key in ownRecords.keys.sorted() {
                guard let record = ownRecords[key] else { continue }
                let refreshed = SignedRecord.make(
                    kind: record.kind, key: record.key, value: record.value, seq: record.seq + 1,
                    expiresAt: now + config.recordLifetime, identity: identity, networkID: networkID)
                effects += put(refreshed, now: now, rng: &rng).effects
            }
        }
        if table.count == 0, !seeds.isEmpty, let due = nextRebootstrap, due <= now {
            effects += join(now: now, rng: &rng)
        } else if let due = joinDueAt, due <= now {
            joinDueAt = nil
            if !isJoining { effects += join(now: now, rng: &rng) }
        }
        if table.count > 0 { rebootstrapDelay = nil }
        scheduleJoin(now: now)
        // Refresh deadlines only move later with activity, so a cached one can only be early.
        nextRefreshCheck = max(table.nextRefreshDeadline ?? now + config.table.refreshInterval, now + .seconds(1))
        return effects
    }

    /// The earliest instant at which `tick` has work to do.
    public var nextDeadline: Instant? {
        var candidates: [Instant] = []
        // Lookups need no entry of their own: every query in flight is a pending request whose
        // `nextCheck` is the query's soft, then hard, timeout.
        if let earliest = pending.values.lazy.map(\.nextCheck).min() { candidates.append(earliest) }
        if table.count > 0 { candidates.append(nextRefreshCheck) }
        if let republish = nextRepublish { candidates.append(republish) }
        if let expiry = store.nextExpiry { candidates.append(expiry) }
        if table.count == 0, !seeds.isEmpty, let due = nextRebootstrap { candidates.append(due) }
        if let due = joinDueAt { candidates.append(due) }
        return candidates.min()
    }

    // MARK: - Answering requests

    private mutating func answer(
        _ message: DHTMessage, from contact: NodeContact, now: Instant,
        effects: inout [DHTEffect]
    ) {
        let flags: DHTFlags = config.isServer ? .server : []
        let body: DHTMessage.Body
        switch message.body {
        case .ping:
            body = .pong(observed: contact.endpoint)
        case .findNode(let target):
            body = .nodes(contacts: closest(to: target, excluding: contact.id, count: DHTMessage.maximumContacts))
        case .findValue(let key, let page):
            body = valuesPage(key: key, page: page, excluding: contact.id, now: now)
        case .store(let record):
            let status: StoreStatus
            switch store.store(record, now: now, source: contact.endpoint) {
            case .stored, .replaced: status = .stored
            case .unchanged: status = .unchanged
            case .refused(let reason): status = StoreStatus(reason)
            }
            if status.isSuccess { counters.storesAccepted += 1 } else { counters.storesRefused += 1 }
            body = .stored(status: status)
        case .pong, .nodes, .values, .stored:
            return
        }
        effects.append(.send(DHTMessage(id: message.id, flags: flags, body: body), to: contact))
    }

    private func closest(to target: Key256, excluding id: NodeID, count: Int) -> [NodeContact] {
        Array(table.closest(to: target, count: count + 1).lazy.filter { $0.id != id }.prefix(count))
    }

    private func valuesPage(key: Key256, page: UInt16, excluding id: NodeID, now: Instant) -> DHTMessage.Body {
        let all = store.records(for: key, now: now)
        // Pages are cut for records alone (even a 1000-byte record fits one); closer contacts fill
        // whatever room the page leaves, up to 4 when there are records, 20 when there are none.
        let budget = DHTMessage.maximumSize - DHTMessage.headerSize - 5 - DHTMessage.contactsSize([])
        // Greedy pagination: each page holds as many whole records as fit the budget.
        var pages: [[SignedRecord]] = [[]]
        var used = 0
        for record in all {
            let size = record.encodedSize
            if used + size > budget || pages[pages.count - 1].count == DHTMessage.maximumRecords {
                pages.append([])
                used = 0
            }
            pages[pages.count - 1].append(record)
            used += size
        }
        let index = Int(page)
        let records = index < pages.count ? pages[index] : []
        var room = budget - records.reduce(0) { $0 + $1.encodedSize }
        var contacts: [NodeContact] = []
        for contact in closest(to: key, excluding: id, count: all.isEmpty ? DHTMessage.maximumContacts : 4) {
            let size = DHTMessage.contactsSize([contact]) - 1
            guard size <= room else { break }
            contacts.append(contact)
            room -= size
        }
        return .values(page: page, pages: UInt16(all.isEmpty ? 0 : pages.count), records: records, contacts: contacts)
    }

    /// A server we have not verified asked us something: ping it (it enters the table if it answers).
    private mutating func verifyIfNew(_ contact: NodeContact, now: Instant, effects: inout [DHTEffect]) {
        guard contact.isShareable, !table.contains(contact.id), verifying < config.maximumVerifications,
            !pending.values.contains(where: { $0.contact.id == contact.id })
        else { return }
        verifying += 1
        request(.ping, to: contact, purpose: .verify, now: now, effects: &effects)
    }

    // MARK: - Responses

    private mutating func handleResponse(
        _ message: DHTMessage, from contact: NodeContact, now: Instant,
        rng: inout some RandomNumberGenerator, effects: inout [DHTEffect]
    ) {
        // Only the node we asked may answer (ids are random; the key binds the answer to the asked node).
        let requestKey = RequestKey(id: message.id, peer: contact.publicKey)
        guard let entry = pending[requestKey] else {
            counters.unexpectedResponses += 1
            return
        }
        pending.removeValue(forKey: requestKey)
        counters.responsesReceived += 1
        sampleRTT(contact.id, now.since(entry.sentAt))
        if message.flags.contains(.server) { observe(contact, now: now, effects: &effects) }
        switch entry.purpose {
        case .verify:
            verifying -= 1
        case .evictionCheck:
            table.evictionCheckFinished(oldest: contact.id, responded: true, now: now)
        case .ping:
            break
        case .lookup(let lookupID):
            var found: [NodeContact] = []
            var records: [SignedRecord] = []
            switch message.body {
            case .nodes(let contacts): found = contacts.filter { mayDial($0, referredBy: contact) }
            case .values(let page, let pages, let list, let contacts):
                found = contacts.filter { mayDial($0, referredBy: contact) }
                records = list.filter { store.refusal(for: $0, now: now) == nil }
                // More records than one answer holds: fetch the other pages from the same node.
                if page == 0, pages > 1, let key = lookups[lookupID]?.lookup.target {
                    let extra = Array(1..<Int(min(pages, config.maximumPages)))
                    lookups[lookupID]!.lookup.expectPages(extra.count)
                    for number in extra
                    where !request(
                        .findValue(key: key, page: UInt16(number)), to: contact, purpose: .page(lookupID), now: now,
                        effects: &effects)
                    {
                        lookups[lookupID]?.lookup.onPage(records: nil, hops: 0, now: now)
                    }
                }
            default: break
            }
            lookups[lookupID]?.lookup.onResponse(from: contact.id, contacts: found, records: records, now: now)
            advance(lookupID, now: now, effects: &effects)
        case .store(let putID):
            if case .stored(let status) = message.body, status.isSuccess { puts[putID]?.stored += 1 }
            storeAnswered(putID, now: now, effects: &effects)
        case .page(let lookupID):
            var records: [SignedRecord] = []
            if case .values(_, _, let list, _) = message.body {
                records = list.filter { store.refusal(for: $0, now: now) == nil }
            }
            if let depth = lookups[lookupID]?.lookup.depth(of: contact.id) {
                lookups[lookupID]!.lookup.onPage(records: records, hops: depth, now: now)
            }
            advance(lookupID, now: now, effects: &effects)
        }
        if case .pong(let observed) = message.body {
            effects.append(.observedAddress(observed, reporter: contact.publicKey))
        }
    }

    private mutating func observe(_ contact: NodeContact, now: Instant, effects: inout [DHTEffect]) {
        if case .pendingEviction(let oldest) = table.observe(contact, now: now) {
            request(.ping, to: oldest, purpose: .evictionCheck, now: now, effects: &effects)
        }
    }

    /// Whether a contact `referrer` handed us may be queried: shareable (`NodeContact.isShareable`),
    /// and loopback or private only when we are on such an address ourselves (`SteeringPolicy`). A
    /// referrer that reaches us at a loopback or private address is on our host or network, so its
    /// address counts as one of ours here: a cluster on 127.0.0.1 or in a LAN keeps working, while
    /// a node on a public address cannot be steered at 127.0.0.1 or 10.x.
    private func mayDial(_ candidate: NodeContact, referredBy referrer: NodeContact) -> Bool {
        guard candidate.isShareable, candidate.id != localID else { return false }
        var own = ownAddresses
        let scope = referrer.endpoint.scope
        if scope == .loopback || scope == .private {
            own.append(referrer.endpoint.address)
        }
        return SteeringPolicy.admits(candidate.endpoint, own: own)
    }

    private mutating func fail(_ id: RequestKey, _ entry: Pending, now: Instant, effects: inout [DHTEffect]) {
        pending.removeValue(forKey: id)
        counters.timeouts += 1
        table.recordFailure(entry.contact.id, now: now)
        effects.append(.contactFailed(entry.contact))
        switch entry.purpose {
        case .verify: verifying -= 1
        case .evictionCheck: table.evictionCheckFinished(oldest: entry.contact.id, responded: false, now: now)
        case .ping: break
        case .lookup(let lookupID):
            lookups[lookupID]?.lookup.onFailure(from: entry.contact.id, now: now)
            advance(lookupID, now: now, effects: &effects)
        case .store(let putID):
            storeAnswered(putID, now: now, effects: &effects)
        case .page(let lookupID):
            lookups[lookupID]?.lookup.onPage(records: nil, hops: 0, now: now)
            advance(lookupID, now: now, effects: &effects)
        }
    }

    // MARK: - Lookups and puts

    private mutating func startLookup(
        target: Key256, kind: LookupKind, extraSeeds: [NodeContact],
        purpose: LookupPurpose,
        now: Instant, rng: inout some RandomNumberGenerator
    )
        -> (id: UInt64, effects: [DHTEffect])
    {
        let id = newID()
        var effects: [DHTEffect] = []
        guard lookups.count < config.maximumLookups else {
            if purpose == .user { effects.append(.lookupFinished(emptyReport(id: id, target: target, kind: kind))) }
            return (id, effects)
        }
        let seedContacts = table.closest(to: target, count: config.lookup.k) + extraSeeds
        guard !seedContacts.isEmpty else {
            if purpose == .user { effects.append(.lookupFinished(emptyReport(id: id, target: target, kind: kind))) }
            return (id, effects)
        }
        counters.lookupsStarted += 1
        if let bucket = table.bucketIndex(for: target) { table.markRefreshed(bucket: bucket, now: now) }
        var localRecords: [SignedRecord] = []
        if kind == .value { localRecords = store.records(for: target, now: now) }
        var lookupConfig = config.lookup
        if purpose == .refresh { lookupConfig.maximumQueries = min(lookupConfig.maximumQueries, config.refreshQueries) }
        lookups[id] = LookupTask(
            lookup: Lookup(
                target: target, kind: kind, seeds: seedContacts, localID: localID, config: lookupConfig,
                now: now, localRecords: localRecords),
            purpose: purpose)
        advance(id, now: now, effects: &effects)
        return (id, effects)
    }

    /// Sends the lookup's next queries; reports and retires it when it has finished.
    private mutating func advance(_ id: UInt64, now: Instant, effects: inout [DHTEffect]) {
        guard lookups[id] != nil else { return }
        // Poll in place (a copy of the task would copy its candidate array on write).
        let (rtts, config) = (self.rtts, self.config)
        let body: DHTMessage.Body =
            lookups[id]!.lookup.kind == .node
            ? .findNode(target: lookups[id]!.lookup.target) : .findValue(key: lookups[id]!.lookup.target, page: 0)
        // A query refused at the pending cap fails at once; poll again so the lookup moves on to
        // other candidates (or finishes) instead of waiting for a timer that is not set.
        for _ in 0..<config.lookup.maximumQueries {
            let queries = lookups[id]!.lookup.poll(now: now) { Self.timeouts(for: $0, rtts: rtts, config: config) }
            var refused = false
            for contact in queries
            where !request(body, to: contact, purpose: .lookup(id), now: now, effects: &effects) {
                refused = true
            }
            if !refused || lookups[id]!.lookup.isFinished { break }
        }
        guard let task = lookups[id] else { return }
        guard task.lookup.isFinished else { return }
        lookups.removeValue(forKey: id)
        counters.lookupsFinished += 1
        switch task.purpose {
        case .put(let putID):
            startStores(putID, on: task.lookup.closestResponded, now: now, effects: &effects)
        case .user:
            effects.append(.lookupFinished(report(id: id, task.lookup, now: now)))
        case .refresh:
            break
        case .bootstrap:
            refreshFartherBuckets(now: now, effects: &effects)
        }
    }

    /// After joining, look up a random id in every bucket farther out than our closest neighbour,
    /// so each bucket fills with up to k contacts (Kademlia's join).
    private mutating func refreshFartherBuckets(now: Instant, effects: inout [DHTEffect]) {
        guard let nearest = table.closest(to: localID, count: 1).first, let deepest = table.bucketIndex(for: nearest.id)
        else { return }
        var rng = SeededRandom(seed: nextID ^ requestCounter ^ localID.words.0)  // targets only need to be spread
        for bucket in 0..<deepest where lookups.count < config.maximumLookups / 2 {
            table.markRefreshed(bucket: bucket, now: now)
            let target = table.randomID(inBucket: bucket, using: &rng)
            effects +=
                startLookup(target: target, kind: .node, extraSeeds: [], purpose: .refresh, now: now, rng: &rng)
                .effects
        }
    }

    private mutating func startStores(
        _ putID: UInt64, on contacts: [NodeContact], now: Instant,
        effects: inout [DHTEffect]
    ) {
        guard let record = puts[putID]?.record else { return }
        for contact in contacts.prefix(config.replicas)
        where request(.store(record: record), to: contact, purpose: .store(putID), now: now, effects: &effects) {
            puts[putID]!.attempted += 1
            puts[putID]!.outstanding += 1
        }
        if puts[putID]!.outstanding == 0 { effects += finishPut(putID, now: now) }
    }

    private mutating func storeAnswered(_ putID: UInt64, now: Instant, effects: inout [DHTEffect]) {
        guard puts[putID] != nil else { return }
        puts[putID]!.outstanding -= 1
        if puts[putID]!.outstanding <= 0 { effects += finishPut(putID, now: now) }
    }

    private mutating func finishPut(_ putID: UInt64, now: Instant) -> [DHTEffect] {
        guard let task = puts.removeValue(forKey: putID) else { return [] }
        return [
            .putFinished(
                PutReport(
                    id: putID, key: task.record.key, attempted: task.attempted, stored: task.stored,
                    duration: now.since(task.startedAt)))
        ]
    }

    private func report(id: UInt64, _ lookup: Lookup, now: Instant) -> LookupReport {
        let records = lookup.records.values.sorted { $0.publisher.bytes.lexicographicallyPrecedes($1.publisher.bytes) }
        var hops = lookup.hops
        var latency = now.since(lookup.startedAt)
        var targetContact: NodeContact?
        if lookup.kind == .node, let found = lookup.targetFound {
            (hops, latency, targetContact) = (found.hops, found.at.since(lookup.startedAt), found.contact)
        } else if lookup.kind == .node, let own = lookup.closestResponded.first, own.id == lookup.target {
            targetContact = own  // the target answered a query itself
        } else if let first = lookup.firstRecord {
            (hops, latency) = (first.hops, first.at.since(lookup.startedAt))
        }
        return LookupReport(
            id: id, target: lookup.target, kind: lookup.kind, targetContact: targetContact, records: records,
            closest: lookup.closestResponded, hops: hops, queries: lookup.queriesSent, responses: lookup.responses,
            failures: lookup.failures, latency: latency, duration: now.since(lookup.startedAt))
    }

    private func emptyReport(id: UInt64, target: Key256, kind: LookupKind) -> LookupReport {
        LookupReport(
            id: id, target: target, kind: kind, targetContact: nil, records: [], closest: [], hops: 0,
            queries: 0, responses: 0, failures: 0, latency: .zero, duration: .zero)
    }

    // MARK: - Requests and timeouts

    /// Sends a request and remembers it. Returns false (sending nothing) over the pending cap; a
    /// lookup query refused that way counts as failed so the lookup still progresses.
    @discardableResult
    private mutating func request(
        _ body: DHTMessage.Body, to contact: NodeContact, purpose: Purpose, now: Instant,
        effects: inout [DHTEffect]
    ) -> Bool {
        guard pending.count < config.maximumPendingRequests else {
            if case .lookup(let lookupID) = purpose { lookups[lookupID]?.lookup.onFailure(from: contact.id, now: now) }
            if case .verify = purpose { verifying -= 1 }
            return false
        }
        var id = newRequestID()
        while pending[RequestKey(id: id, peer: contact.publicKey)] != nil { id = newRequestID() }
        let (soft, hard) = timeouts(for: contact.id)
        pending[RequestKey(id: id, peer: contact.publicKey)] = Pending(
            contact: contact, sentAt: now, deadline: now + hard, nextCheck: now + soft,
            purpose: purpose)
        counters.requestsSent += 1
        effects.append(.send(DHTMessage(id: id, flags: config.isServer ? .server : [], body: body), to: contact))
        return true
    }

    /// Soft and hard timeouts for a node, from its measured round trips (RFC 6298 style).
    func timeouts(for node: NodeID) -> (soft: Duration, hard: Duration) {
        Self.timeouts(for: node, rtts: rtts, config: config)
    }

    private static func timeouts(
        for node: NodeID, rtts: [NodeID: RTT], config: DHTConfig
    )
        -> (soft: Duration, hard: Duration)
    {
        var soft = config.initialTimeout
        if let rtt = rtts[node] { soft = rtt.smoothed + rtt.variance * 4 }
        soft = min(max(soft, config.minimumTimeout), config.maximumTimeout)
        return (soft, soft * 3)
    }

    private mutating func sampleRTT(_ node: NodeID, _ sample: Duration) {
        if var rtt = rtts[node] {
            let error = sample > rtt.smoothed ? sample - rtt.smoothed : rtt.smoothed - sample
            rtt.variance = (rtt.variance * 3 + error) / 4
            rtt.smoothed = (rtt.smoothed * 7 + sample) / 8
            rtts[node] = rtt
        } else {
            if rtts.count >= config.maximumRTTEntries, let victim = rtts.keys.first { rtts.removeValue(forKey: victim) }
            rtts[node] = RTT(smoothed: sample, variance: sample / 2)
        }
    }

    private mutating func newID() -> UInt64 {
        nextID &+= 1
        return nextID
    }

    private mutating func newRequestID() -> UInt64 {
        requestCounter &+= 1
        var counter = ByteWriter(capacity: 8)
        counter.write(requestCounter)
        return BLAKE2b.hash(counter.bytes, outputLength: 16, key: requestIDKey).prefix(8).reduce(0) {
            $0 << 8 | UInt64($1)
        }
    }
}

extension StoreStatus {
    init(_ refusal: RecordRefusal) {
        switch refusal {
        case .forged: self = .forged
        case .stale: self = .stale
        case .expired: self = .expired
        case .oversized: self = .oversized
        case .overQuota: self = .overQuota
        case .wrongKey: self = .wrongKey
        case .tooFarInFuture: self = .tooFarInFuture
        case .malformedValue: self = .malformedValue
        case .storeFull: self = .storeFull
        }
    }
}
