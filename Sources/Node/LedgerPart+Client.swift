// The ledger part's client side (LedgerPart.swift): this node's own entries and the committee it
// asks for votes.
//
// - Drafts. `NodeCommand.ledger` has the part make the node's next entry: network, epoch, height
//   and prev from the replica, times from `now`, signed, then checked against the replica, so an
//   action the ledger would refuse fails here with the exact reason (insufficient balance, bond
//   below the minimum, withdraw before the delay) and nothing is sent. An entry sent for votes is
//   kept (`unfinished`, and on disk in `ledger.own`) until it is certified: validators that voted
//   for it have locked the account's slot to it, so the next draft is that entry again, never
//   another one for the same slot (an account that signed two entries for one height can be
//   reported and its stake burned).
// - Committee contacts. Vote requests travel over sessions. Every member of the current epoch's
//   committee is kept connected (a dial target of kind `peer`): its endpoint comes from the routing
//   table, else from its peer record in the DHT, looked up again every `committeeCheckInterval`
//   until it is known. `LedgerNodeConfig.committeeContacts` are dialled at start as well.

import Kademlia
import Ledger
import UmbraCore

extension StorageNamespace {
    /// This node's own entry sent for votes and not certified yet. Key: `LedgerPart.ownKey`.
    /// Value: the entry's wire form.
    public static let ledgerOwn = StorageNamespace("ledger.own")
}

extension LedgerPart {
    static let ownKey: [UInt8] = Array("unfinished".utf8)
    /// How often members without a session are looked for.
    static let committeeCheckInterval: Duration = .seconds(10)

    // MARK: - Drafts

    /// This node's next entry for `action` (or its unfinished one first).
    func draft(_ action: LedgerAction, now: Instant) -> Result<LedgerDraft, CommandFailure> {
        guard phase == .ready, let state else {
            return .failure(
                .invalid(
                    phase == .off
                        ? "the ledger is off on this node: start it with --genesis FILE (see umbra ledger genesis)"
                        : "the ledger is still loading its entries; try again in a moment"))
        }
        guard !ownUnreadable else {
            return .failure(
                .invalid(
                    "this node could not read its pending ledger entry from its store at start, so it makes no "
                        + "entry in this run (it must never sign two for one height); restart it"))
        }
        let me = identity.publicKey
        let account = state.accounts[me]
        // An unfinished entry of an earlier epoch is not sent again: the current committee refuses
        // it (wrong epoch), and a fresh entry in this epoch is a crossing that the members locked to
        // the old one refuse, so no second certificate for that height can come of it.
        if let unfinished, unfinished.height == account?.nextHeight ?? 0, unfinished.prev == account?.head ?? .zero,
            unfinished.epoch == state.epoch
        {
            return .success(LedgerDraft(entry: unfinished, isRetry: true))
        }
        guard let account else {
            return .failure(
                .invalid(
                    "this node's account \(NodeAddress(publicKey: me)) has no funds on ledger '\(state.network)' "
                        + "yet; it needs a transfer first"))
        }
        let entry = LedgerEntry.make(
            network: state.network, epoch: state.epoch, identity: identity, height: account.nextHeight,
            prev: account.head, body: action.body(now: now))
        do { try state.check(entry) } catch { return .failure(.invalid(Self.explain(error, action: action, state))) }
        return .success(LedgerDraft(entry: entry, isRetry: false))
    }

    /// What an operator should read when the replica refuses `action`.
    static func explain(_ error: LedgerError, action: LedgerAction, _ state: LedgerState) -> String {
        switch error {
        case .insufficientBalance(let needed, let available):
            return "insufficient balance: \(action) needs \(needed), the balance is \(available)"
        case .bondBelowMinimum(let role, let minimum):
            return "bond below the minimum: a \(role) bond must total at least \(minimum) "
                + "(or be unbonded entirely)"
        case .insufficientBond(let role, let bonded):
            return "only \(bonded) is bonded as \(role)"
        case .withdrawBeforeDelay(let releaseAt):
            return "nothing to withdraw yet: the first unbonding is released at \(releaseAt.rfc3339) "
                + "(the unbonding delay is \(state.parameters.unbondingDelay))"
        case .nothingToWithdraw:
            return "nothing to withdraw: no stake is unbonding (umbra ledger unbond first)"
        case .tooManyUnbondings:
            return "too many unbondings in progress (at most \(LedgerLimits.maximumPendingUnbondings)); withdraw first"
        default:
            return "the ledger refuses \(action): \(error)"
        }
    }

    /// An entry of ours is about to go out for votes: kept until certified, and durable first. The
    /// command hears `ledgerOwnPersisted` once the write completed (at once when the entry is on disk
    /// already, or storage is off); only then do its vote requests leave. A crash between the two
    /// otherwise leaves validators locked to an entry this node no longer knows, and its next draft
    /// would be a second entry for that height.
    mutating func submitted(_ entry: LedgerEntry, for command: CommandID, _ node: inout NodeKernel) {
        guard entry != unfinished else {
            node.notify(.ledgerOwnPersisted(command, durable: true))
            return
        }
        unfinished = entry
        guard let token = node.requestStorage(.write([.put(.ledgerOwn, key: Self.ownKey, value: entry.encoded())]))
        else {
            node.notify(.ledgerOwnPersisted(command, durable: true))  // storage off: memory is all there is
            return
        }
        ownWrites[token] = command
    }

    /// An entry of this account applied: an unfinished entry at or below its height is done.
    mutating func ownApplied(_ entry: LedgerEntry, _ node: inout NodeKernel) {
        guard entry.account == identity.publicKey, let unfinished, unfinished.height <= entry.height else { return }
        self.unfinished = nil
        _ = node.requestStorage(.write([.delete(.ledgerOwn, key: Self.ownKey)]))
    }

    /// After the replay: a pending entry whose height the stored entries pass was certified (its
    /// delete did not reach the disk before a crash).
    mutating func dropCertifiedOwn(_ node: inout NodeKernel) {
        guard let unfinished, let state,
            (state.accounts[identity.publicKey]?.nextHeight ?? 0) > unfinished.height
        else { return }
        self.unfinished = nil
        _ = node.requestStorage(.write([.delete(.ledgerOwn, key: Self.ownKey)]))
    }

    /// The unfinished entry read back at start.
    mutating func restoreOwn(_ stored: [StorageEntry]) {
        guard let value = stored.first(where: { $0.key == Self.ownKey })?.value,
            let entry = try? LedgerEntry(decoding: value), entry.account == identity.publicKey,
            entry.hasValidSignature
        else { return }
        unfinished = entry
    }

    // MARK: - Committee contacts

    /// Keeps the current committee's members connected, looking up those whose endpoint is not known.
    mutating func reachCommittee(_ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator) {
        guard phase == .ready, let state else { return }
        if let next = nextCommitteeCheck, next > now { return }
        nextCommitteeCheck = now + Self.committeeCheckInterval
        for member in state.committee.members where member.identity != identity.publicKey {
            let key = member.identity
            if node.isKept(key) || node.sessions.isEstablished(key) { continue }
            if let contact = node.dht.table.contact(for: NodeID(publicKey: key)), contact.isShareable {
                node.addDialTarget(
                    DialTarget(publicKey: key, endpoint: contact.endpoint), kind: .peer, now: now, rng: &rng)
                continue
            }
            let target = RecordKey.peer(key)
            guard !committeeLookups.values.contains(key), committeeLookups.count < LedgerLimits.maximumCommitteeSize
            else { continue }
            committeeLookups[target] = key
            _ = node.lookup(target, kind: .value, now: now, rng: &rng)
        }
    }

    /// A lookup of a member's peer record finished: dial its first direct endpoint.
    mutating func committeeLookupFinished(
        _ report: LookupReport, _ node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        guard let member = committeeLookups.removeValue(forKey: report.target) else { return }
        let endpoint = report.records.lazy.filter { $0.publisher == member }
            .compactMap { try? PeerRecordValue.decode($0.value) }.first?.endpoints.first
        guard let endpoint else { return }
        node.addDialTarget(DialTarget(publicKey: member, endpoint: endpoint), kind: .peer, now: now, rng: &rng)
    }
}

// MARK: - What the API reads

extension LedgerPart {
    /// Whether this node runs the ledger (it was given a genesis).
    public var isOn: Bool { phase != .off }
    /// Whether the saved entries are still being read back.
    public var isLoading: Bool { phase == .loading }
    /// Whether this node votes (asked to with `--validator`, in the committee, its locks readable).
    public var isVoting: Bool { validator != nil }
    /// Whether this node was asked to vote (`--validator`).
    public var isValidatorConfigured: Bool { config.isValidator }
    /// The id of the genesis this node runs (nil: the ledger is off).
    public var genesisID: Key256? { config.genesis?.id }
}

// MARK: - Reading stored entries

extension LedgerPart {
    /// The most entries one `ledgerEntries` command reads.
    public static let maximumEntriesRead = 1000
    /// Store reads in flight at most (one per command; commands are bounded too).
    static let maximumEntryReads = 16

    /// Reads `account`'s stored entries from `height` on (`ledger.entries` keys sort by account,
    /// height, epoch), answering with the notice `ledgerEntriesRead`.
    mutating func readEntries(
        for command: CommandID, account: PublicKey, from height: UInt64, limit: Int, _ node: inout NodeKernel
    ) {
        func fail(_ reason: String) { node.notify(.ledgerEntriesRead(command, .failure(.invalid(reason)))) }
        guard phase == .ready else {
            return fail(
                phase == .off
                    ? "the ledger is off on this node: start it with --genesis FILE (see umbra ledger genesis)"
                    : "the ledger is still loading its entries; try again in a moment")
        }
        guard entryReads.count < Self.maximumEntryReads else {
            return node.notify(.ledgerEntriesRead(command, .failure(.busy)))
        }
        let from = Slot(account: account, height: height, epoch: 0).storageKey
        var below = account.bytes
        // The smallest key after every key of `account`: its bytes plus one, as a big number.
        var index = below.count - 1
        while index >= 0, below[index] == 0xFF {
            below[index] = 0
            index -= 1
        }
        if index >= 0 { below[index] += 1 } else { below = [UInt8](repeating: 0xFF, count: 49) }
        let operation = StorageOperation.loadRange(
            .ledgerEntries, from: from, below: below, limit: min(max(1, limit), Self.maximumEntriesRead))
        guard let token = node.requestStorage(operation) else {
            return fail("this node keeps no ledger store (storage is off)")
        }
        entryReads[token] = command
    }

    mutating func entriesRead(_ completion: StorageCompletion, for command: CommandID, _ node: inout NodeKernel) {
        guard case .loaded(let stored) = completion.outcome else {
            counters.storageFailures += 1
            return node.notify(.ledgerEntriesRead(command, .failure(.invalid("the ledger store could not be read"))))
        }
        let entries = stored.compactMap { try? CertifiedEntry(decoding: $0.value) }
        node.notify(.ledgerEntriesRead(command, .success(entries)))
    }
}

// MARK: - Provider bonds for the market

extension LedgerPart {
    /// Tells the market of a provider bond an applied entry changed (the whole table after evidence,
    /// which may burn anyone's stake).
    mutating func noteBondChange(_ entry: LedgerEntry, _ node: inout NodeKernel) {
        guard let state else { return }
        switch entry.body {
        case .bond(.provider, _), .unbond(.provider, _, _):
            let bond = state.accounts[entry.account]?.bonded(.provider) ?? 0
            node.notify(
                .providerBonds(
                    ProviderBonds(
                        minimum: state.parameters.minimumBonds.provider, bonds: [entry.account: bond], isComplete: false
                    )))
        case .evidence:
            node.notify(.providerBonds(ProviderBonds(state)))
        default:
            break
        }
    }
}
