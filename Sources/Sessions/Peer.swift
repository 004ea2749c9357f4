import UmbraCore
import UmbraCrypto

/// One direction pair of transport keys, from one completed handshake.
struct Keypair: Sendable {
    let localIndex: UInt32
    let remoteIndex: UInt32
    let sendKey: SymmetricKey
    let receiveKey: SymmetricKey
    let createdAt: Instant
    let isInitiator: Bool
    var sendCounter: UInt64 = 0
    var replay = ReplayWindow()
    /// Bytes a responder may still send on this keypair before the initiator confirms it (nil: no
    /// limit). Three times the initiation's size, as QUIC allows before address validation, so a
    /// spoofed initiation cannot be turned into a larger flood at its claimed source.
    var unconfirmedAllowance: Int?
    /// For a responder's keypair: the address the initiation came from, where the response went.
    /// The initiator's first packet on this keypair proves it received that response, so the path
    /// is validated when the keypair is confirmed. Before that, replies on it go only there.
    var path: PeerPath?

    init(
        localIndex: UInt32, remoteIndex: UInt32, sendKey: SymmetricKey, receiveKey: SymmetricKey, createdAt: Instant,
        isInitiator: Bool
    ) {
        self.localIndex = localIndex
        self.remoteIndex = remoteIndex
        self.sendKey = sendKey
        self.receiveKey = receiveKey
        self.createdAt = createdAt
        self.isInitiator = isInitiator
    }

    func canSend(now: Instant, config: SessionConfig) -> Bool {
        now.since(createdAt) < config.rejectAfterTime && sendCounter < config.rejectAfterMessages
    }
}

/// A frame waiting for a session.
struct QueuedFrame: Sendable {
    var bytes: [UInt8]
    /// May ride in the initiation as early data.
    var early: Bool
}

/// Frames waiting for a session, with their total size (queues are capped in bytes, not frames).
struct FrameQueue: Sendable {
    private(set) var frames: [QueuedFrame] = []
    private(set) var bytes = 0

    var isEmpty: Bool { frames.isEmpty }
    var count: Int { frames.count }

    mutating func append(_ frame: QueuedFrame) {
        frames.append(frame)
        bytes += frame.bytes.count
    }

    /// Removes the oldest frame; returns its size.
    mutating func removeFirst() -> Int {
        let size = frames.removeFirst().bytes.count
        bytes -= size
        return size
    }

    /// Removes the first frame marked for early data.
    mutating func removeFirstEarly() -> [UInt8]? {
        guard let index = frames.firstIndex(where: \.early) else { return nil }
        let frame = frames.remove(at: index).bytes
        bytes -= frame.count
        return frame
    }

    /// Empties the queue (releasing its storage) and returns what it held.
    mutating func takeAll() -> [QueuedFrame] {
        defer {
            frames = []
            bytes = 0
        }
        return frames
    }
}

/// A path an authenticated packet came from that is not the peer's validated path, while we
/// check that the peer is really there (QUIC path validation, RFC 9000 §8.2 and §9). Until a
/// PATH_RESPONSE with `token` comes back from it, at most three times the bytes received from it are
/// sent to it, so a spoofed source cannot be turned into a flood at its owner.
struct PathCandidate: Sendable {
    let path: PeerPath
    let token: UInt64
    let startedAt: Instant
    var bytesReceived = 0
    var bytesSent = 0
    var challengedAt: Instant?

    /// Bytes that may still go to this address before it is validated.
    var allowance: Int { 3 * bytesReceived - bytesSent }
}

/// An initiation we sent and wait to have answered.
struct PendingHandshake: Sendable {
    let localIndex: UInt32
    let noise: NoiseIKHandshake
    let mac1: [UInt8]
    var retryAt: Instant
    /// Where the initiation went: a response to it proves the peer is reachable there.
    let destination: PeerPath
}

/// Where a keypair sits: `current` sends; `previous` still receives late packets after a rekey;
/// `next` is a responder's keypair that becomes current when the initiator's first packet arrives.
enum KeySlot: Sendable { case current, previous, next }

/// Everything the session layer knows about one peer.
struct Peer: Sendable {
    let publicKey: PublicKey
    /// The peer's Noise static key (X25519 form of its Ed25519 identity).
    let remoteStatic: [UInt8]
    let mac1Key: [UInt8]
    /// The validated path: datagrams to the peer go here (see `candidate` for the exception).
    var path: PeerPath?
    /// A new address the peer's authenticated packets came from, being validated.
    var candidate: PathCandidate?
    /// Created by an initiation that has not been confirmed yet (a responder's half-open peer):
    /// forgotten when the handshake times out unconfirmed.
    var halfOpen = false
    /// The deadline of this peer's live entry in the manager's timer heap (never later than
    /// `deadline(config:)`; nil: no entry).
    var timerDue: Instant?
    var pending: PendingHandshake?
    var current: Keypair?
    var previous: Keypair?
    var next: Keypair?
    var isEstablished = false
    /// Highest initiation timestamp accepted from this peer (replay protection).
    var latestTimestamp: UInt64 = 0
    var lastInitiationReceived: Instant?
    /// When we started trying to reach the peer; cleared on success.
    var attemptingSince: Instant?
    var lastHandshake: Instant?
    var lastSent: Instant?
    var lastReceived: Instant?
    /// The first data (non-empty) frame received since we last sent anything: a passive keepalive
    /// is due one keepalive interval after it. Keepalives never trigger keepalives.
    var unansweredDataSince: Instant?
    var cookie: (value: [UInt8], receivedAt: Instant)?
    var queue = FrameQueue()
    /// The frame riding in our initiations as early data, until the handshake completes.
    var earlyFrame: [UInt8]?
    /// Kept peers get keepalives and liveness reports; others are on demand.
    var persistent = false
    var bytesSent: UInt64 = 0
    var bytesReceived: UInt64 = 0
    /// Local indices of keys dropped inside a per-packet mutation, for the manager to unregister.
    var retiredIndices: [UInt32] = []

    init(publicKey: PublicKey, remoteStatic: [UInt8], path: PeerPath?) {
        self.publicKey = publicKey
        self.remoteStatic = remoteStatic
        self.mac1Key = SessionManager.mac1Key(for: remoteStatic)
        self.path = path
    }

    var ownedIndices: [UInt32] {
        [pending?.localIndex, current?.localIndex, previous?.localIndex, next?.localIndex].compactMap { $0 }
    }

    func slot(forLocalIndex index: UInt32) -> KeySlot? {
        if current?.localIndex == index { return .current }
        if next?.localIndex == index { return .next }
        if previous?.localIndex == index { return .previous }
        return nil
    }

    func keypair(in slot: KeySlot) -> Keypair? {
        switch slot {
        case .current: current
        case .previous: previous
        case .next: next
        }
    }

    /// Runs `body` on the keypair in `slot` in place; nil when the slot is empty.
    mutating func withKeypair<R>(in slot: KeySlot, _ body: (inout Keypair) throws -> R) rethrows -> R? {
        switch slot {
        case .current: if current == nil { return nil } else { return try body(&current!) }
        case .previous: if previous == nil { return nil } else { return try body(&previous!) }
        case .next: if next == nil { return nil } else { return try body(&next!) }
        }
    }

    /// The initiator's first packet on the `next` keypair confirms it: it becomes current.
    mutating func confirmNext() {
        guard let confirmed = next else { return }
        if let previous { retiredIndices.append(previous.localIndex) }
        previous = current
        current = confirmed
        current!.unconfirmedAllowance = nil
        next = nil
        attemptingSince = nil
        // A crossing initiation of ours (if any) stays pending: its response, when it comes,
        // simply rotates in one more fresh keypair, and both sides converge on it.
    }

    /// Removes and returns the keypair in `slot` (so it can be mutated without a copy).
    mutating func take(_ slot: KeySlot) -> Keypair? {
        defer { clear(slot) }
        return keypair(in: slot)
    }

    mutating func store(_ keypair: Keypair, in slot: KeySlot) {
        switch slot {
        case .current: current = keypair
        case .previous: previous = keypair
        case .next: next = keypair
        }
    }

    mutating func clear(_ slot: KeySlot) {
        switch slot {
        case .current: current = nil
        case .previous: previous = nil
        case .next: next = nil
        }
    }

    mutating func dropKeys() {
        current = nil
        previous = nil
        next = nil
        pending = nil
    }

    /// The earliest instant at which a timer of this peer fires. Allocation-free: it runs on the data
    /// path whenever a packet may have moved a timer earlier.
    func deadline(config: SessionConfig) -> Instant? {
        var earliest: Instant?
        func consider(_ instant: Instant) {
            if earliest.map({ instant < $0 }) ?? true { earliest = instant }
        }
        if let pending { consider(pending.retryAt) }
        if persistent, isEstablished, let heard = lastReceived ?? lastHandshake { consider(heard + config.peerTimeout) }
        if let current { consider(current.createdAt + config.rejectAfterTime) }
        if let previous { consider(previous.createdAt + config.rejectAfterTime) }
        if let next { consider(next.createdAt + config.rejectAfterTime) }
        if let expiry = halfOpenExpiry(config: config) { consider(expiry) }
        if let current, pending == nil {
            let rekeyAge =
                current.isInitiator
                ? config.rekeyAfterTime : config.rejectAfterTime - config.keepaliveInterval - config.rekeyTimeout
            let rekeyDue = current.createdAt + rekeyAge
            // On-demand sessions rekey on their timer only if still in use then (else on next send).
            if persistent || (lastSent.map { $0 + config.keepaliveInterval > rekeyDue } ?? false) {
                consider(rekeyDue)
            }
            if persistent && isEstablished { consider((lastSent ?? .zero) + config.keepaliveInterval) }
            if let due = passiveKeepaliveDue(config: config) { consider(due) }
        }
        return earliest
    }

    /// When a half-open peer (created by an initiation, see `halfOpen`) is forgotten: its handshake
    /// timed out unconfirmed, and nothing of ours keeps it (no handshake in flight, not kept).
    func halfOpenExpiry(config: SessionConfig) -> Instant? {
        guard halfOpen, !isEstablished, !persistent, pending == nil else { return nil }
        return (next?.createdAt ?? lastHandshake ?? .zero) + config.rekeyTimeout
    }

    /// WireGuard's passive keepalive: data arrived and we sent nothing since; answer within the
    /// keepalive interval so the sender knows the session is alive.
    func passiveKeepaliveDue(config: SessionConfig) -> Instant? {
        guard isEstablished, current != nil || next != nil, let data = unansweredDataSince else { return nil }
        return data + config.keepaliveInterval
    }

    var snapshot: PeerSnapshot {
        PeerSnapshot(
            publicKey: publicKey, path: path,
            state: isEstablished ? .established : (pending != nil ? .handshaking : .idle),
            lastHandshake: lastHandshake, lastReceived: lastReceived, bytesSent: bytesSent,
            bytesReceived: bytesReceived)
    }
}
