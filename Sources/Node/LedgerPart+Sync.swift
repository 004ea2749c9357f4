// The ledger part's catch-up (LedgerSync.swift has the frames, docs/protocol.md §15.11): a replica
// that missed entries — new, restarted, or on the far side of a partition — fetches them from a
// connected committee member.
//
// A round: ask the partner for its frontier a page at a time (accounts in byte order with their
// entry counts); every account where the partner is ahead goes to `wanted`; fetch those ranges
// `maximumRange` entries per request, one request in flight; each entry that arrives is taken
// like a gossiped one (certificate checked, applied, or held for a predecessor). A round runs at
// `syncInterval`, soon after start, and soon after an entry arrives ahead of its account (a gap).
// Any step that gets no answer within `syncStepTimeout` ends the round; the next one may pick
// another partner.
//
// Serving: a frontier page comes from the sorted index of accounts with entries (binary search, so
// the work per request does not grow with the ledger); a range is one bounded store read, at most
// `maximumSyncReads` in flight and one per peer (more are dropped: the requester times out).

import Ledger
import UmbraCore

/// Catch-up state: the requester's round and the server's reads.
struct LedgerSyncState: Sendable {
    /// Accounts with at least one entry, in byte order.
    var index: [PublicKey] = []
    var partner: PublicKey?
    var cursor: PublicKey?
    var frontierDone = false
    var awaitingFrontier = false
    /// Ranges to fetch from the partner: `from..<to` of an account.
    var wanted: [(account: PublicKey, from: UInt64, to: UInt64)] = []
    /// The range request in flight: the next height expected and the end of the request.
    var fetching: (account: PublicKey, next: UInt64, end: UInt64, to: UInt64)?
    var deadline: Instant?
    var nextRound: Instant?
    var lastRoundStart: Instant?
    /// An entry arrived ahead of its account: a round should run soon.
    var gapSeen = false
    /// Store reads serving range requests: token → requester.
    var serving: [StorageToken: PublicKey] = [:]

    /// The position of `account` in `index` (or where it would go).
    func slot(of account: PublicKey) -> (index: Int, found: Bool) {
        var low = 0
        var high = index.count
        while low < high {
            let middle = (low + high) / 2
            if index[middle].bytes.lexicographicallyPrecedes(account.bytes) { low = middle + 1 } else { high = middle }
        }
        return (low, low < index.count && index[low] == account)
    }

    mutating func noteAccount(_ account: PublicKey) {
        let (position, found) = slot(of: account)
        if !found { index.insert(account, at: position) }
    }
}

/// Catch-up counters (part of `LedgerCounters` through `LedgerPart.syncCounters`).
public struct LedgerSyncCounters: Sendable, Equatable {
    public var rounds: UInt64 = 0
    public var roundsAbandoned: UInt64 = 0
    public var entriesFetched: UInt64 = 0
    public var unsolicited: UInt64 = 0
    public var frontierPagesServed: UInt64 = 0
    public var rangesServed: UInt64 = 0
    public var rangesDropped: UInt64 = 0
    /// Range fetches that timed out (the round went on with the next account).
    public var rangesStalled: UInt64 = 0
    public init() {}
}

extension LedgerPart {
    /// How often a replica compares its frontier with a committee member's.
    static let syncInterval: Duration = .seconds(60)
    /// How long one step of a round waits for its answer.
    static let syncStepTimeout: Duration = .seconds(5)
    /// The soonest a gap starts another round after the last one started.
    static let syncGapDelay: Duration = .seconds(2)
    /// Wanted ranges held at most (the frontier is paged further only below this).
    static let maximumWanted = 256
    /// Store reads for range requests in flight at most.
    static let maximumSyncReads = 8

    // MARK: - Requester

    /// Starts, times out or continues a round, as due at `now`.
    mutating func syncTick(_ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator) {
        guard phase == .ready, let state else { return }
        if sync.partner != nil {
            guard let deadline = sync.deadline, deadline <= now else { return }
            if sync.fetching != nil {
                // One account's range stalled (an entry the partner cannot send, or lost frames): the
                // next account goes on; this one is asked again next round.
                syncCounters.rangesStalled += 1
                sync.fetching = nil
                pump(&node, now: now, rng: &rng)
            } else {
                endRound(abandoned: true, now: now)
            }
            return
        }
        let due = sync.nextRound.map { $0 <= now } ?? true
        let gapDue = sync.gapSeen && (sync.lastRoundStart.map { now >= $0 + Self.syncGapDelay } ?? true)
        guard due || gapDue else { return }
        let candidates = state.committee.members.map(\.identity).filter {
            $0 != identity.publicKey && node.sessions.isEstablished($0)
        }
        guard let partner = candidates.randomElement(using: &rng) else {
            sync.nextRound = now + .seconds(1)
            return
        }
        sync.partner = partner
        sync.cursor = nil
        sync.frontierDone = false
        sync.wanted = []
        sync.fetching = nil
        sync.gapSeen = false
        sync.lastRoundStart = now
        requestFrontier(node: &node, now: now, rng: &rng)
    }

    private mutating func requestFrontier(node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator) {
        guard let partner = sync.partner else { return }
        sync.awaitingFrontier = true
        sync.deadline = now + Self.syncStepTimeout
        let request = LedgerSyncMessage.frontierRequest(after: sync.cursor, limit: LedgerSyncMessage.maximumFrontier)
        node.sendFrame(.ledgerSync, request.encoded(), to: partner, now: now, rng: &rng)
    }

    private mutating func endRound(abandoned: Bool, now: Instant) {
        if abandoned { syncCounters.roundsAbandoned += 1 } else { syncCounters.rounds += 1 }
        sync.partner = nil
        sync.awaitingFrontier = false
        sync.fetching = nil
        sync.wanted = []
        sync.deadline = nil
        sync.nextRound = now + (abandoned ? .seconds(2) : Self.syncInterval)
    }

    /// Sends the next range request, or the next frontier request, or ends the round.
    mutating func pump(_ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator) {
        guard let partner = sync.partner, sync.fetching == nil, !sync.awaitingFrontier, let state else { return }
        while !sync.wanted.isEmpty {
            let range = sync.wanted.removeFirst()
            let have = state.accounts[range.account]?.nextHeight ?? 0
            let from = max(range.from, have)
            guard from < range.to else { continue }
            let count = Int(min(UInt64(LedgerSyncMessage.maximumRange), range.to - from))
            sync.fetching = (range.account, from, from + UInt64(count), range.to)
            sync.deadline = now + Self.syncStepTimeout
            let request = LedgerSyncMessage.rangeRequest(account: range.account, from: from, count: count)
            node.sendFrame(.ledgerSync, request.encoded(), to: partner, now: now, rng: &rng)
            return
        }
        if !sync.frontierDone {
            requestFrontier(node: &node, now: now, rng: &rng)
        } else {
            endRound(abandoned: false, now: now)
        }
    }

    // MARK: - Frames

    mutating func receiveSync(
        _ payload: [UInt8], from key: PublicKey, _ node: inout NodeKernel, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        let message: LedgerSyncMessage
        do { message = try LedgerSyncMessage(decoding: payload) } catch {
            counters.malformed += 1
            node.rejectFrame(from: key, reason: "ledger sync: \(error)")
            return
        }
        guard phase == .ready, let state else { return }
        switch message {
        case .frontierRequest(let after, let limit):
            var start = 0
            if let after {
                let (position, found) = sync.slot(of: after)
                start = found ? position + 1 : position
            }
            let end = min(sync.index.count, start + limit)
            let page = sync.index[start..<end].map {
                LedgerSyncMessage.Frontier(account: $0, nextHeight: state.accounts[$0]?.nextHeight ?? 0)
            }.filter { $0.nextHeight > 0 }
            syncCounters.frontierPagesServed += 1
            let answer = LedgerSyncMessage.frontier(page, more: end < sync.index.count)
            node.sendFrame(.ledgerSync, answer.encoded(), to: key, now: now, rng: &rng)

        case .rangeRequest(let account, let from, let count):
            guard sync.serving.count < Self.maximumSyncReads, !sync.serving.values.contains(key) else {
                syncCounters.rangesDropped += 1
                return
            }
            let (end, overflow) = from.addingReportingOverflow(UInt64(count))
            let below =
                overflow
                ? account.bytes + [UInt8](repeating: 0xFF, count: 17)
                : Slot(account: account, height: end, epoch: 0).storageKey
            let read = StorageOperation.loadRange(
                .ledgerEntries, from: Slot(account: account, height: from, epoch: 0).storageKey, below: below,
                limit: count)
            guard let token = node.requestStorage(read) else {
                syncCounters.rangesDropped += 1
                return
            }
            sync.serving[token] = key

        case .frontier(let frontiers, let more):
            guard key == sync.partner, sync.awaitingFrontier else {
                syncCounters.unsolicited += 1
                return
            }
            sync.awaitingFrontier = false
            for frontier in frontiers {
                let have = state.accounts[frontier.account]?.nextHeight ?? 0
                if frontier.nextHeight > have, sync.wanted.count < Self.maximumWanted {
                    sync.wanted.append((frontier.account, have, frontier.nextHeight))
                }
            }
            sync.cursor = frontiers.last?.account ?? sync.cursor
            sync.frontierDone = !more || frontiers.isEmpty
            pump(&node, now: now, rng: &rng)

        case .entry(let certified):
            guard key == sync.partner, let fetching = sync.fetching, certified.entry.account == fetching.account,
                certified.entry.height == fetching.next
            else {
                // Not part of a fetch: a client's push of its new certificate (`pushToCommittee`),
                // taken like a gossiped one (the certificate is checked first). A member that
                // applies it publishes it too: the client's own gossip may not reach far yet (a
                // client that just restarted has no mesh), and the message id is the bytes', so
                // copies from several publishers are one message to the network.
                syncCounters.unsolicited += 1
                let hash = certified.entry.hash
                let known = state.applied.contains(hash)
                let rejectedBefore = counters.certificatesRejected
                take(certified, size: payload.count, messageID: nil, source: key, &node)
                if counters.certificatesRejected > rejectedBefore {
                    node.rejectFrame(from: key, reason: "ledger sync: a pushed certificate that does not verify")
                }
                if !known, self.state?.applied.contains(hash) == true {
                    node.notify(.gossipPublish(.ledger, certified.encoded()))
                }
                return
            }
            syncCounters.entriesFetched += 1
            take(certified, size: payload.count, messageID: nil, source: key, &node)
            let next = fetching.next + 1
            if next < fetching.end {
                sync.fetching = (fetching.account, next, fetching.end, fetching.to)
                sync.deadline = now + Self.syncStepTimeout
                return
            }
            sync.fetching = nil
            if fetching.end < fetching.to { sync.wanted.insert((fetching.account, fetching.end, fetching.to), at: 0) }
            pump(&node, now: now, rng: &rng)
        }
    }

    /// Sends a certificate this node made straight to the committee, ahead of gossip, so the
    /// members hold it before the vote requests for this account's next entry arrive.
    mutating func pushToCommittee(
        _ certified: CertifiedEntry, _ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        guard let committee = state?.committees[certified.entry.epoch] ?? state?.committee else { return }
        let frame = LedgerSyncMessage.entry(certified).encoded()
        guard frame.count <= LedgerSyncMessage.maximumSize else { return }
        for member in committee.members where member.identity != identity.publicKey {
            node.sendFrame(.ledgerSync, frame, to: member.identity, now: now, rng: &rng)
        }
    }

    /// A store read for a range request completed: one frame per entry, in height order.
    mutating func servedRange(
        _ completion: StorageCompletion, to key: PublicKey, _ node: inout NodeKernel, now: Instant,
        rng: inout some RandomNumberGenerator
    ) {
        guard case .loaded(let stored) = completion.outcome else {
            counters.storageFailures += 1
            return
        }
        syncCounters.rangesServed += 1
        for item in stored {
            guard let certified = try? CertifiedEntry(decoding: item.value) else { continue }
            let frame = LedgerSyncMessage.entry(certified).encoded()
            guard frame.count <= LedgerSyncMessage.maximumSize else { continue }
            node.sendFrame(.ledgerSync, frame, to: key, now: now, rng: &rng)
        }
    }
}
