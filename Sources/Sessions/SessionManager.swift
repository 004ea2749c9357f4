// The session layer: Noise IK handshakes, transport keys, replay windows and timers for every
// peer of a node, as a pure state machine (DESIGN §1, §3).
//
// Inputs: `receive(datagram:from:now:rng:)`, `send(_:to:now:rng:)`, `connect`, `tick(now:rng:)`.
// Outputs: `[SessionEffect]` (datagrams to send, frames to deliver, peer up/down) and
// `nextDeadline`, the earliest instant at which `tick` has work to do. The shell owns the socket and
// the clock; this type never touches either.
//
// Receive path, cheapest checks first so garbage costs as little as possible:
//   1. type byte and exact size            -> drop `too_short`, `unknown_type`, `malformed`
//   2. mac1 keyed by our own static key    -> drop `bad_mac1` (random bytes stop here: no DH)
//   3. under load: mac2 (cookie) or reply with a cookie -> drop `cookie_required`
//   4. Noise (DH, AEAD), identity binding, timestamp replay check, flood check
// Transport path: index lookup, replay-window check, key age, AEAD open, then replay accept, then
// path validation: an authenticated packet from a new path does not move the peer; it makes the
// path a candidate that gets a PATH_CHALLENGE (SessionControl.swift) and at most 3x the bytes
// received from it until the PATH_RESPONSE comes back from there (QUIC, RFC 9000 §8-9).
//
// Timers live in a heap keyed by peer (TimerHeap.swift): `nextDeadline` is O(1), `tick` visits only
// due peers, so the work per datagram does not grow with the peer table.

import UmbraCore
import UmbraCrypto

/// What the shell must do after a call into the session layer.
public enum SessionEffect: Sendable, Equatable {
    /// Send these bytes along this path (a socket send or a relay frame, the node layer decides).
    case send([UInt8], to: PeerPath)
    /// An authenticated frame (never empty: keepalives are consumed here) arrived from a peer.
    case deliver(peer: PublicKey, frame: [UInt8])
    /// A frame that rode in a handshake initiation (0-RTT early data). It is authenticated, but the
    /// peer's address is not validated and it is replayable until the handshake is confirmed: the
    /// node accepts it only on channels meant for early data.
    case deliverEarly(peer: PublicKey, frame: [UInt8])
    /// A peer's session became usable in both directions.
    case established(peer: PublicKey, path: PeerPath)
    /// An established peer went silent for `peerTimeout`; its keys were dropped.
    case lost(peer: PublicKey)
    /// No handshake with this peer succeeded within `rekeyAttemptTime`; queued frames were dropped.
    case unreachable(peer: PublicKey)
    /// The peer's validated path moved: a new path answered a path challenge (roaming), or a
    /// confirmed handshake came by another path.
    case pathChanged(peer: PublicKey, path: PeerPath)
}

/// A read-only view of one peer, for status output.
public struct PeerSnapshot: Sendable, Equatable {
    public enum State: String, Sendable, Codable { case idle, handshaking, established }
    public var publicKey: PublicKey
    public var path: PeerPath?
    public var state: State
    public var lastHandshake: Instant?
    public var lastReceived: Instant?
    public var bytesSent: UInt64
    public var bytesReceived: UInt64
}

/// The session layer of one node. Not thread safe: the shell calls it from one place at a time.
public struct SessionManager: Sendable, CustomReflectable {
    public let identity: Identity
    public let config: SessionConfig
    public private(set) var counters = SessionCounters()

    private var peers: [PublicKey: Peer] = [:]
    /// Local session index -> the peer that owns it (a pending handshake or a keypair).
    private var indices: [UInt32: PublicKey] = [:]
    private let prologue: [UInt8]
    private let ownMac1Key: [UInt8]
    private var cookieSecret: [UInt8] = []
    private var cookieSecretCreated: Instant?
    private var initiationWindowStart = Instant.zero
    private var initiationsInWindow = 0
    private var lastTimestampSent: UInt64 = 0
    /// Every peer's next timer (see TimerHeap.swift).
    private var timers = TimerHeap()
    /// Bytes in all peers' queues together (bounded by `config.maximumQueuedBytes`).
    public private(set) var queuedBytes = 0
    /// Key of the path challenge tokens: derived from our static secret, so a peer cannot predict
    /// the token we send to an address it spoofed.
    private let pathSecret: [UInt8]

    public init(identity: Identity, config: SessionConfig = SessionConfig()) {
        self.identity = identity
        self.config = config
        self.prologue = config.prologue
        self.ownMac1Key = Self.mac1Key(for: identity.x25519PublicKey)
        self.pathSecret = BLAKE2b.hash(
            [Array("umbra/path-token/v1".utf8), identity.x25519SecretKey], outputLength: 32)
    }

    /// Keys never appear in dumps or test failure messages.
    public var customMirror: Mirror {
        Mirror(self, children: ["identity": identity.address.description, "peers": peers.count, "counters": counters])
    }

    // MARK: - Queries

    public var peerCount: Int { peers.count }
    public var establishedCount: Int { peers.values.reduce(0) { $0 + ($1.isEstablished ? 1 : 0) } }

    public func isEstablished(_ peer: PublicKey) -> Bool { peers[peer]?.isEstablished ?? false }

    public func snapshot(of key: PublicKey) -> PeerSnapshot? { peers[key].map { $0.snapshot } }

    /// Where datagrams to `key` go now (cheaper than a snapshot, for the data plane).
    public func path(of key: PublicKey) -> PeerPath? { peers[key]?.path }

    public var snapshots: [PeerSnapshot] {
        peers.values.map(\.snapshot).sorted { $0.publicKey.bytes.lexicographicallyPrecedes($1.publicKey.bytes) }
    }

    /// The earliest instant at which `tick` has something to do, or nil when nothing is pending.
    /// O(1): the top of the timer heap. Never later than the earliest timer of any peer.
    public var nextDeadline: Instant? { timers.min?.due }

    /// The earliest timer found by visiting every peer (tests compare it with `nextDeadline`).
    var scannedDeadline: Instant? { peers.values.compactMap { $0.deadline(config: config) }.min() }

    /// Entries in the timer heap (stale ones included), for tests of its compaction.
    var timerEntryCount: Int { timers.count }

    /// The sum of every peer's queue, for tests and fuzzing of `queuedBytes` (scans every peer).
    public var scannedQueuedBytes: Int { peers.values.reduce(0) { $0 + $1.queue.bytes } }

    /// Registered session indices, for tests that state is released.
    var indexCount: Int { indices.count }

    /// Whether `key` has a path being validated, for tests.
    func candidate(of key: PublicKey) -> PeerPath? { peers[key]?.candidate?.path }

    // MARK: - Commands

    /// Registers a peer (or updates its path) without sending anything.
    /// Returns false when the key is not a valid Ed25519 point or the table is full.
    @discardableResult
    public mutating func addPeer(_ key: PublicKey, path: PeerPath?) -> Bool {
        if peers[key] != nil {
            // The node chose this path itself (a dial): it is where datagrams go from now on.
            if let path {
                peers[key]!.path = path
                if peers[key]!.candidate?.path == path { peers[key]!.candidate = nil }
            }
            return true
        }
        guard key != identity.publicKey, let remoteStatic = try? Ed25519.x25519PublicKey(fromEd25519: key.bytes)
        else { return false }
        if peers.count >= config.maximumPeers && !evictIdlePeer() { return false }
        peers[key] = Peer(publicKey: key, remoteStatic: remoteStatic, path: path)
        return true
    }

    /// Makes room in a full table by forgetting the peer heard from least recently among those
    /// with no session and no handshake of ours in flight. False when every peer is in use.
    private mutating func evictIdlePeer() -> Bool {
        var victim: (key: PublicKey, heard: Instant)?
        for (key, peer) in peers where !peer.isEstablished && peer.pending == nil {
            let heard = peer.lastReceived ?? peer.lastHandshake ?? .zero
            if victim.map({ heard < $0.heard }) ?? true { victim = (key, heard) }
        }
        guard let victim else { return false }
        removePeer(victim.key)
        return true
    }

    /// Forgets a peer and all its keys.
    public mutating func removePeer(_ key: PublicKey) {
        guard let peer = peers.removeValue(forKey: key) else { return }
        for index in peer.ownedIndices { indices.removeValue(forKey: index) }
        queuedBytes -= peer.queue.bytes
        dropStaleTimers()
    }

    /// Starts a handshake with `peer` directly at `endpoint` unless one is established or in flight.
    public mutating func connect(
        _ key: PublicKey, endpoint: Endpoint, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [SessionEffect] {
        guard addPeer(key, path: .direct(endpoint)) else { return [] }
        peers[key]!.persistent = true
        defer { reschedule(key) }  // a kept peer has more timers (keepalive, liveness)
        guard !(peers[key]!.isEstablished || peers[key]!.pending != nil) else { return [] }
        var effects: [SessionEffect] = []
        initiateHandshake(key, now: now, rng: &rng, effects: &effects)
        return effects
    }

    /// Starts a new handshake with `peer` now, even when a session is established or a handshake is in
    /// flight (its retry timer is cut short), on `path` when one is given. The node layer uses it
    /// when a kept peer stops answering (a restarted relay has lost our keys) and to move a dial that
    /// gets no answer onto a relayed path. Queued frames stay queued and go out once it completes.
    public mutating func rehandshake(
        _ key: PublicKey, path: PeerPath? = nil, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [SessionEffect] {
        guard addPeer(key, path: path) else { return [] }
        peers[key]!.pending?.retryAt = now
        var effects: [SessionEffect] = []
        initiateHandshake(key, now: now, rng: &rng, effects: &effects)
        reschedule(key)
        return effects
    }

    /// Encrypts `frame` to `peer`, or queues it and starts a handshake when there is no session.
    ///
    /// With `early`, a frame that has to wait for a handshake rides inside the initiation (0-RTT,
    /// at most `WireSize.maximumEarlyData` bytes): the responder gets it one round trip sooner. Such
    /// a frame has weaker protection than transport data — it is not forward secret against a later
    /// compromise of the responder's static key — so only idempotent requests for public data (DHT
    /// queries) should use it.
    public mutating func send(
        _ frame: [UInt8], to key: PublicKey, early: Bool = false, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [SessionEffect] {
        guard peers[key] != nil else { return [] }
        var effects: [SessionEffect] = []
        if sendNow(frame, to: key, now: now, effects: &effects) {
            // An on-demand session that idled past its rekey time rekeys when used again.
            if let current = peers[key]!.current, peers[key]!.pending == nil, current.isInitiator,
                now.since(current.createdAt) >= config.rekeyAfterTime
            {
                initiateHandshake(key, now: now, rng: &rng, effects: &effects)
            }
        } else {
            enqueue(frame, early: early, for: key)
            // A session we just answered is waiting for the initiator's confirmation (which
            // flushes the queue); do not start a handshake of our own towards a maybe-spoofed source.
            // A half-open peer (known only from an unconfirmed initiation) never gets one.
            let awaitingConfirmation =
                peers[key]!.halfOpen
                || (peers[key]!.next.map { now.since($0.createdAt) < config.rekeyTimeout } ?? false)
            if !awaitingConfirmation { initiateHandshake(key, now: now, rng: &rng, effects: &effects) }
        }
        reschedule(key)
        return effects
    }

    /// Queues a frame for `key` within the per-peer byte cap (the oldest frames go first) and the
    /// global byte budget (past it, the new frame is dropped).
    private mutating func enqueue(_ frame: [UInt8], early: Bool, for key: PublicKey) {
        guard frame.count <= config.maximumQueuedBytesPerPeer else { return count(.queueFull) }
        while let queue = peers[key]?.queue, !queue.isEmpty,
            queue.count >= config.maximumQueuedFrames || queue.bytes + frame.count > config.maximumQueuedBytesPerPeer
        {
            queuedBytes -= peers[key]!.queue.removeFirst()
            count(.queueFull)
        }
        guard queuedBytes + frame.count <= config.maximumQueuedBytes else { return count(.queueFull) }
        peers[key]!.queue.append(QueuedFrame(bytes: frame, early: early && frame.count <= WireSize.maximumEarlyData))
        queuedBytes += frame.count
    }

    /// Empties `peer`'s queue and returns what it held, keeping `queuedBytes` in step.
    private mutating func takeQueue(of peer: inout Peer) -> [QueuedFrame] {
        queuedBytes -= peer.queue.bytes
        return peer.queue.takeAll()
    }

    /// Marks a peer as one to keep: its session gets keepalives and its silence is reported as
    /// `lost`. Other peers' sessions are on demand: they idle out quietly when their keys expire.
    public mutating func setPersistent(_ key: PublicKey, _ persistent: Bool) {
        peers[key]?.persistent = persistent
        reschedule(key)
    }

    /// Handles one datagram that came along `source`.
    public mutating func receive(
        _ datagram: [UInt8], from source: PeerPath, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [SessionEffect] {
        counters.datagramsReceived += 1
        counters.bytesReceived += UInt64(datagram.count)
        guard datagram.count >= WireSize.header else {
            count(.tooShort)
            return []
        }
        var effects: [SessionEffect] = []
        switch MessageType(rawValue: datagram[0]) {
        case .handshakeInitiation: handleInitiation(datagram, from: source, now: now, rng: &rng, effects: &effects)
        case .handshakeResponse: handleResponse(datagram, from: source, now: now, rng: &rng, effects: &effects)
        case .cookieReply: handleCookieReply(datagram, now: now)
        case .transportData: handleTransport(datagram, from: source, now: now, rng: &rng, effects: &effects)
        case nil: count(.unknownType)
        }
        return effects
    }

    /// Runs the timers: retransmits, rekeys, keepalives, expiry, liveness.
    public mutating func tick(now: Instant, rng: inout some RandomNumberGenerator) -> [SessionEffect] {
        var effects: [SessionEffect] = []
        // Only the peers whose timers are due: pop them all first (a peer may be due once however
        // many of its entries surface), then run them in deadline order.
        var due: [PublicKey] = []
        while let top = timers.min, top.due <= now {
            _ = timers.popMin()
            guard peers[top.key]?.timerDue == top.due else { continue }  // stale
            peers[top.key]!.timerDue = nil
            due.append(top.key)
        }
        for key in due {
            tickPeer(key, now: now, rng: &rng, effects: &effects)
            reschedule(key)
        }
        dropStaleTimers()
        return effects
    }

    // MARK: - Zero-copy transport (data plane and benchmarks)

    /// Seals `frame` for `peer` into `output` (header + ciphertext). Returns the datagram length and
    /// path, or nil when there is no usable session (use `send` to queue and handshake).
    /// `output` needs `WireSize.transportHeader + frame.count + 16` bytes. Does not allocate.
    public mutating func seal(
        _ frame: UnsafeRawBufferPointer, to key: PublicKey, into output: UnsafeMutableRawBufferPointer, now: Instant
    ) -> (length: Int, path: PeerPath)? {
        seal(frame, to: key, into: output, now: now, route: .normal)
    }

    /// Where a sealed datagram goes.
    private enum Route {
        /// The validated path, or a path being validated within its allowance.
        case normal
        /// This path, within the anti-amplification allowance if it is the path being validated
        /// (session control answers).
        case control(PeerPath)
        /// This path, unconditionally: the node chose it (hole-punching probes).
        case probe(PeerPath)
    }

    private mutating func seal(
        _ frame: UnsafeRawBufferPointer, to key: PublicKey, into output: UnsafeMutableRawBufferPointer, now: Instant,
        route: Route
    ) -> (length: Int, path: PeerPath)? {
        guard let slot = peers.index(forKey: key) else { return nil }
        let config = self.config
        let size = WireSize.transportHeader + frame.count + 16
        var exhausted = false
        // One hash lookup, then the peer is mutated in place (no copy of its replay windows).
        let sealed: (length: Int, path: PeerPath)? = modifyPeer(at: slot) { peer in
            guard output.count >= size else { return nil }
            // A responder sends on its newest keypair (`next`) before the initiator confirmed it:
            // a reply to early data then costs no extra round trip, and a peer that restarted (and
            // lost the old keys) can read it. Anyone who replayed the initiation cannot read it,
            // and replays are refused by the timestamp check anyway. Such replies go only to the
            // address the initiation came from, within the keypair's allowance.
            var keySlot: KeySlot = peer.next != nil ? .next : .current
            if case .normal = route {} else if peer.current != nil { keySlot = .current }
            let destination: PeerPath
            var chargeCandidate = false
            switch route {
            case .probe(let path):
                destination = path
            case .control(let path):
                destination = path
                if let candidate = peer.candidate, candidate.path == path, path != peer.path {
                    guard candidate.allowance >= size else { return nil }
                    chargeCandidate = true
                }
            case .normal:
                if keySlot == .next, let path = peer.next?.path {
                    destination = path
                } else if let candidate = peer.candidate, now.since(candidate.startedAt) < config.pathValidationTimeout,
                    candidate.allowance >= size
                {
                    // While a new address is validated, replies follow the peer there within the
                    // allowance (NAT rebinding then costs no round trip), then the validated path.
                    destination = candidate.path
                    chargeCandidate = true
                } else if let path = peer.path {
                    exhausted = peer.candidate != nil
                    destination = path
                } else {
                    return nil
                }
            }
            let length: Int? =
                peer.withKeypair(in: keySlot) { keypair in
                    guard keypair.canSend(now: now, config: config) else { return nil }
                    if let allowance = keypair.unconfirmedAllowance {
                        // Unconfirmed: within the anti-amplification allowance, or wait (queued).
                        guard size <= allowance else { return nil }
                        keypair.unconfirmedAllowance = allowance - size
                    }
                    let counter = keypair.sendCounter
                    keypair.sendCounter += 1
                    TransportHeader(receiverIndex: keypair.remoteIndex, counter: counter).write(into: output)
                    let body = UnsafeMutableRawBufferPointer(rebasing: output[WireSize.transportHeader...])
                    return WireSize.transportHeader
                        + keypair.sendKey.seal(
                            counter: counter, plaintext: frame,
                            associatedData: UnsafeRawBufferPointer(start: nil, count: 0), into: body)
                } ?? nil
            guard let length else { return nil }
            if chargeCandidate { peer.candidate!.bytesSent += length }
            peer.lastSent = now
            peer.unansweredDataSince = nil
            peer.bytesSent += UInt64(frame.count)
            return (length, destination)
        }
        if let sealed {
            counters.datagramsSent += 1
            counters.bytesSent += UInt64(sealed.length)
            if exhausted { counters.pathAllowanceExhausted += 1 }
            // Sending only moves this peer's timers later, except an on-demand session's rekey,
            // which becomes due when it is used again.
            armTimerIfEarlier(at: slot)
        }
        return sealed
    }

    /// Sends a keepalive on the current session directly to `endpoint` instead of along the peer's
    /// path (hole punching: if it arrives, the peer validates the path it came by and moves to it).
    /// Nothing without a usable session.
    public mutating func probe(_ key: PublicKey, at endpoint: Endpoint, now: Instant) -> [SessionEffect] {
        var datagram = [UInt8](repeating: 0, count: WireSize.transportHeader + 16)
        let sealed = datagram.withUnsafeMutableBytes { output in
            seal(
                UnsafeRawBufferPointer(start: nil, count: 0), to: key, into: output, now: now,
                route: .probe(.direct(endpoint)))
        }
        guard let sealed else { return [] }
        return [.send(Array(datagram.prefix(sealed.length)), to: sealed.path)]
    }

    /// Result of opening a transport datagram in place.
    public enum OpenResult: Sendable, Equatable {
        /// The frame is `datagram[range]` (empty for a keepalive or a session control frame).
        case frame(peer: PublicKey, range: Range<Int>)
        case dropped(DropReason)
    }

    /// What an authenticated packet asks of the session layer once its peer is updated.
    private struct PathWork {
        var challenge: (path: PeerPath, token: UInt64)?
        var response: (path: PeerPath, token: UInt64)?
        var isControl = false
    }

    /// Authenticates and decrypts a transport datagram in place. Keepalives and session control
    /// frames yield an empty range. Session confirmation, path validation and liveness are updated
    /// here too; a path challenge or response goes out in `events`.
    public mutating func open(
        _ datagram: UnsafeMutableRawBufferPointer, from source: PeerPath, now: Instant,
        events: inout [SessionEffect]
    ) -> OpenResult {
        let header: TransportHeader
        do { header = try TransportHeader(decoding: UnsafeRawBufferPointer(datagram)) } catch {
            return drop(.malformed)
        }
        guard let key = indices[header.receiverIndex], let peerSlot = peers.index(forKey: key) else {
            return drop(.unknownIndex)
        }
        let config = self.config
        let pathSecret = self.pathSecret
        var work = PathWork()
        var validated = false
        let outcome: Result<Int, DropReason> = modifyPeer(at: peerSlot) { peer in
            guard let slot = peer.slot(forLocalIndex: header.receiverIndex) else { return .failure(.unknownIndex) }
            let opened: Result<Int, DropReason> =
                peer.withKeypair(in: slot) { keypair in
                    guard keypair.replay.check(header.counter) else { return .failure(.replayedCounter) }
                    guard now.since(keypair.createdAt) < config.rejectAfterTime,
                        header.counter < config.rejectAfterMessages
                    else { return .failure(.expiredKeys) }
                    let ciphertext = UnsafeRawBufferPointer(rebasing: datagram[WireSize.transportHeader...])
                    let body = UnsafeMutableRawBufferPointer(rebasing: datagram[WireSize.transportHeader...])
                    do {
                        let length = try keypair.receiveKey.open(
                            counter: header.counter, ciphertext: ciphertext,
                            associatedData: UnsafeRawBufferPointer(start: nil, count: 0), into: body)
                        keypair.replay.accept(header.counter)
                        return .success(length)
                    } catch {
                        return .failure(.authenticationFailed)
                    }
                } ?? .failure(.unknownIndex)
            guard case .success(let length) = opened else { return opened }
            let wasEstablished = peer.isEstablished
            var moved = false
            if slot == .next {
                // The initiator could only make this packet from our response, which went to the
                // address its initiation came from: that path is validated.
                let path = peer.next?.path
                peer.confirmNext()
                peer.halfOpen = false
                if let path, peer.path != path {
                    peer.path = path
                    moved = true
                }
                if let path, peer.candidate?.path == path { peer.candidate = nil }
            }
            peer.lastReceived = now
            let frame = UnsafeRawBufferPointer(
                rebasing: datagram[WireSize.transportHeader..<WireSize.transportHeader + length])
            work.isControl = SessionControl.isControl(frame)
            let control = work.isControl ? SessionControl(frame: frame) : nil
            if length > 0, !work.isControl, peer.unansweredDataSince == nil { peer.unansweredDataSince = now }
            peer.bytesReceived += UInt64(length)
            // Path validation. A direct path is never given up for a relayed one (a hole-punched
            // session keeps its direct path while relayed packets still drain; a handshake through
            // the relay moves it, above). A direct path may replace a relayed one, once validated.
            let relayedOverDirect: Bool =
                switch (peer.path, source) {
                case (.direct?, .relayed): true
                default: false
                }
            if peer.path != source, !relayedOverDirect {
                if peer.candidate.map({
                    $0.path != source || now.since($0.startedAt) >= config.pathValidationTimeout
                }) ?? true {
                    peer.candidate = PathCandidate(
                        path: source,
                        token: Self.pathToken(
                            secret: pathSecret, key: key, source: source, index: header.receiverIndex,
                            counter: header.counter),
                        startedAt: now)
                }
                peer.candidate!.bytesReceived += datagram.count
                if case .pathResponse(let token) = control, token == peer.candidate!.token {
                    peer.path = source
                    peer.candidate = nil
                    moved = true
                    validated = true
                } else if peer.candidate!.challengedAt.map({ now.since($0) >= config.pathChallengeInterval }) ?? true {
                    peer.candidate!.challengedAt = now
                    work.challenge = (source, peer.candidate!.token)
                }
            }
            if case .pathChallenge(let token) = control { work.response = (source, token) }
            if moved, wasEstablished, let path = peer.path {
                events.append(.pathChanged(peer: key, path: path))
            }
            if !peer.isEstablished {
                peer.isEstablished = true
                events.append(.established(peer: key, path: peer.path ?? source))
            }
            return opened
        }
        let length: Int
        switch outcome {
        case .failure(let reason): return drop(reason)
        case .success(let value): length = value
        }
        // Keys that confirmNext retired no longer own their indices.
        while let retired = peers.values[peerSlot].retiredIndices.popLast() { indices.removeValue(forKey: retired) }
        armTimerIfEarlier(at: peerSlot)
        if validated { counters.pathsValidated += 1 }
        if let challenge = work.challenge,
            sendControl(
                .pathChallenge(token: challenge.token), to: key, at: challenge.path, now: now, events: &events)
        {
            counters.pathChallengesSent += 1
        }
        if let response = work.response {
            _ = sendControl(
                .pathResponse(token: response.token), to: key, at: response.path, now: now, events: &events)
        }
        let start = WireSize.transportHeader
        return .frame(peer: key, range: work.isControl ? start..<start : start..<start + length)
    }

    /// Seals a session control frame along `path` (within its allowance if it is being validated).
    private mutating func sendControl(
        _ message: SessionControl, to key: PublicKey, at path: PeerPath, now: Instant,
        events: inout [SessionEffect]
    ) -> Bool {
        let frame = message.encoded()
        var datagram = [UInt8](repeating: 0, count: WireSize.transportHeader + frame.count + 16)
        let sealed = frame.withUnsafeBytes { plain in
            datagram.withUnsafeMutableBytes { seal(plain, to: key, into: $0, now: now, route: .control(path)) }
        }
        guard let sealed else { return false }
        events.append(.send(Array(datagram.prefix(sealed.length)), to: sealed.path))
        return true
    }

    /// A path challenge token: unpredictable to the peer (keyed by our secret), unique per packet.
    private static func pathToken(
        secret: [UInt8], key: PublicKey, source: PeerPath, index: UInt32, counter: UInt64
    ) -> UInt64 {
        var writer = ByteWriter(capacity: 64)
        writer.write(raw: key.bytes)
        writer.write(source)
        writer.write(index)
        writer.write(counter)
        let digest = BLAKE2b.hash(writer.bytes, outputLength: 16, key: secret)
        return digest.prefix(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    // MARK: - Handshake: initiator

    private mutating func initiateHandshake(
        _ key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, effects: inout [SessionEffect]
    ) {
        guard var peer = peers[key], let path = peer.path else { return }
        if let pending = peer.pending, now < pending.retryAt { return }
        if let old = peer.pending { indices.removeValue(forKey: old.localIndex) }
        let localIndex = newIndex(for: key, rng: &rng)
        var ephemeral = rng.bytes(32)
        defer { SecureMemory.zero(&ephemeral) }
        guard
            var noise = try? NoiseIKHandshake(
                role: .initiator, prologue: prologue, staticSecretKey: identity.x25519SecretKey,
                remoteStaticKey: peer.remoteStatic, ephemeralSecretKey: ephemeral)
        else { return }
        // Coarsened to 2^24 ns (~16.8 ms) like WireGuard, so the timestamp does not leak a
        // precise clock; strictly increasing so back-to-back initiations stay valid.
        lastTimestampSent = max(now.nanoseconds & ~((1 << 24) - 1), lastTimestampSent + 1)
        // Early data: the first queued frame that was marked for it (sent again with every retry;
        // the layer above tolerates duplicates, as it must over UDP anyway).
        if peer.earlyFrame == nil, let early = peer.queue.removeFirstEarly() {
            queuedBytes -= early.count
            peer.earlyFrame = early
        }
        var payload = ByteWriter(capacity: WireSize.initiationPayload + (peer.earlyFrame?.count ?? 0))
        payload.write(raw: identity.publicKey.bytes)
        payload.write(lastTimestampSent)
        if let early = peer.earlyFrame {
            payload.write(UInt16(early.count))
            payload.write(raw: early)
            // Pad so the initiation is at least `minimumEarlyInitiation` bytes (see there).
            let unpadded = WireSize.initiation + payload.count - WireSize.initiationPayload
            if unpadded < WireSize.minimumEarlyInitiation {
                payload.write(raw: [UInt8](repeating: 0, count: WireSize.minimumEarlyInitiation - unpadded))
            }
        }
        guard let message = try? noise.writeMessage(payload: payload.bytes) else { return }
        var initiation = HandshakeInitiation(
            senderIndex: localIndex, noiseMessage: message, mac1: Self.zeroMac, mac2: Self.zeroMac)
        var bytes = initiation.encoded()
        let mac1Offset = HandshakeInitiation.mac1Offset(length: bytes.count)
        initiation.mac1 = Self.mac(key: peer.mac1Key, bytes[..<mac1Offset])
        bytes.replaceSubrange(mac1Offset..<mac1Offset + WireSize.mac, with: initiation.mac1)
        if let cookie = peer.cookie, now.since(cookie.receivedAt) < config.cookieLifetime {
            let mac2 = Self.mac(key: cookie.value, bytes[..<(mac1Offset + WireSize.mac)])
            bytes.replaceSubrange((mac1Offset + WireSize.mac)..<bytes.count, with: mac2)
        }
        let jitter = Duration.nanoseconds(
            Int64(UInt64.random(in: 0...UInt64(max(0, config.rekeyJitter.nanosecondsClamped)), using: &rng)))
        peer.pending = PendingHandshake(
            localIndex: localIndex, noise: noise, mac1: initiation.mac1, retryAt: now + config.rekeyTimeout + jitter,
            destination: path)
        if peer.attemptingSince == nil { peer.attemptingSince = now }
        peers[key] = peer
        counters.handshakesInitiated += 1
        emit(bytes, to: path, effects: &effects)
    }

    private mutating func handleResponse(
        _ datagram: [UInt8], from source: PeerPath, now: Instant, rng: inout some RandomNumberGenerator,
        effects: inout [SessionEffect]
    ) {
        guard let response = try? HandshakeResponse(decoding: datagram) else { return count(.malformed) }
        guard checkMacs(datagram, mac1Offset: HandshakeResponse.mac1Offset, from: source, now: now, rng: &rng) else {
            return
        }
        guard let key = indices[response.receiverIndex], var peer = peers[key],
            let pending = peer.pending, pending.localIndex == response.receiverIndex
        else { return count(.unknownIndex) }
        var noise = pending.noise
        guard (try? noise.readMessage(response.noiseMessage)) != nil, noise.isComplete,
            let keypair = Self.keypair(
                from: noise, localIndex: pending.localIndex, remoteIndex: response.senderIndex, now: now,
                isInitiator: true)
        else { return count(.handshakeFailed) }
        peer.pending = nil
        peer.earlyFrame = nil
        if let next = peer.next {
            // Initiations crossed: the peer may already send on the keypair of its own initiation
            // (our `next`). Keep it receivable as `previous`; the rest retires (WireGuard's rule).
            for old in [peer.current, peer.previous].compactMap({ $0 }) { indices.removeValue(forKey: old.localIndex) }
            peer.previous = next
            peer.next = nil
        } else {
            if let previous = peer.previous { indices.removeValue(forKey: previous.localIndex) }
            peer.previous = peer.current
        }
        peer.current = keypair
        // The response proves the peer received our initiation where we sent it: that address is
        // validated. One from elsewhere does not move the peer there (its transport packets from
        // there will make it a candidate for path validation).
        let wasEstablished = peer.isEstablished
        let moved = peer.path != pending.destination
        peer.path = pending.destination
        if peer.candidate?.path == pending.destination { peer.candidate = nil }
        peer.halfOpen = false
        peer.lastHandshake = now
        peer.lastReceived = now
        peer.attemptingSince = nil
        peer.isEstablished = true
        let queued = takeQueue(of: &peer)
        peers[key] = peer
        counters.handshakesCompleted += 1
        if !wasEstablished {
            effects.append(.established(peer: key, path: pending.destination))
        } else if moved {
            effects.append(.pathChanged(peer: key, path: pending.destination))
        }
        // Confirm the session to the responder at once: queued frames, or a keepalive.
        if queued.isEmpty, sendNow([], to: key, now: now, effects: &effects) { counters.keepalivesSent += 1 }
        for frame in queued { _ = sendNow(frame.bytes, to: key, now: now, effects: &effects) }
        reschedule(key)
    }

    private mutating func handleCookieReply(_ datagram: [UInt8], now: Instant) {
        guard let reply = try? CookieReply(decoding: datagram) else { return count(.malformed) }
        guard let key = indices[reply.receiverIndex], var peer = peers[key],
            let pending = peer.pending, pending.localIndex == reply.receiverIndex
        else { return count(.unknownIndex) }
        guard
            let cookie = try? XChaCha20Poly1305.open(
                key: Self.cookieKey(for: peer.remoteStatic), nonce: reply.nonce, ciphertext: reply.encryptedCookie,
                associatedData: pending.mac1)
        else { return count(.badCookie) }
        peer.cookie = (cookie, now)
        peers[key] = peer
    }

    // MARK: - Handshake: responder

    private mutating func handleInitiation(
        _ datagram: [UInt8], from source: PeerPath, now: Instant, rng: inout some RandomNumberGenerator,
        effects: inout [SessionEffect]
    ) {
        guard let initiation = try? HandshakeInitiation(decoding: datagram) else { return count(.malformed) }
        guard
            checkMacs(
                datagram, mac1Offset: HandshakeInitiation.mac1Offset(length: datagram.count), from: source, now: now,
                rng: &rng,
                senderIndex: initiation.senderIndex, effects: &effects)
        else { return }
        var ephemeral = rng.bytes(32)
        defer { SecureMemory.zero(&ephemeral) }
        guard
            var noise = try? NoiseIKHandshake(
                role: .responder, prologue: prologue, staticSecretKey: identity.x25519SecretKey,
                remoteStaticKey: nil, ephemeralSecretKey: ephemeral),
            let payload = try? noise.readMessage(initiation.noiseMessage),
            let remoteStatic = noise.remoteStaticKey
        else { return count(.handshakeFailed) }
        var reader = ByteReader(payload)
        guard let identityBytes = try? reader.readBytes(32), let timestamp = try? reader.readUInt64(),
            let early = try? Self.readEarlyData(&reader), let key = try? PublicKey(bytes: identityBytes),
            let derived = try? Ed25519.x25519PublicKey(fromEd25519: identityBytes),
            SecureMemory.equals(derived, remoteStatic)
        else { return count(.identityMismatch) }
        guard key != identity.publicKey else { return count(.selfConnection) }
        if peers[key] == nil {
            guard addPeer(key, path: source) else { return count(.peerTableFull) }
            // Known only from this initiation until the initiator confirms it: forgotten if it
            // never does (`Peer.halfOpenExpiry`).
            peers[key]!.halfOpen = true
        }
        var peer = peers[key]!
        guard timestamp > peer.latestTimestamp else { return count(.replayedInitiation) }
        if let last = peer.lastInitiationReceived, now.since(last) < config.minimumInitiationInterval {
            return count(.initiationFlood)
        }
        guard let message = try? noise.writeMessage(payload: []), noise.isComplete else {
            reschedule(key)  // a half-open peer created above is forgotten on its timer
            return count(.handshakeFailed)
        }
        let localIndex = newIndex(for: key, rng: &rng)
        guard
            var keypair = Self.keypair(
                from: noise, localIndex: localIndex, remoteIndex: initiation.senderIndex, now: now,
                isInitiator: false)
        else {
            indices.removeValue(forKey: localIndex)
            reschedule(key)
            return count(.handshakeFailed)
        }
        keypair.unconfirmedAllowance = 3 * datagram.count - WireSize.response
        // The source is not validated (it may be spoofed): the peer moves there only when the
        // initiator confirms this keypair, which proves it received our response there.
        keypair.path = source
        peer.latestTimestamp = timestamp
        peer.lastInitiationReceived = now
        if let next = peer.next { indices.removeValue(forKey: next.localIndex) }
        peer.next = keypair
        if peer.path == nil { peer.path = source }
        peer.lastHandshake = now
        var response = HandshakeResponse(
            senderIndex: localIndex, receiverIndex: initiation.senderIndex, noiseMessage: message,
            mac1: Self.zeroMac, mac2: Self.zeroMac)
        var bytes = response.encoded()
        response.mac1 = Self.mac(key: peer.mac1Key, bytes[..<HandshakeResponse.mac1Offset])
        bytes.replaceSubrange(HandshakeResponse.mac1Offset..<HandshakeResponse.mac2Offset, with: response.mac1)
        if let cookie = peer.cookie, now.since(cookie.receivedAt) < config.cookieLifetime {
            let mac2 = Self.mac(key: cookie.value, bytes[..<HandshakeResponse.mac2Offset])
            bytes.replaceSubrange(HandshakeResponse.mac2Offset..<WireSize.response, with: mac2)
        }
        peers[key] = peer
        counters.handshakesCompleted += 1
        emit(bytes, to: source, effects: &effects)
        // Early data is delivered after the response is on its way, so an immediate reply (sent on
        // the new keypair, see `seal`) follows the response on the wire.
        reschedule(key)
        if !early.isEmpty {
            counters.earlyFramesReceived += 1
            effects.append(.deliverEarly(peer: key, frame: early))
        }
    }

    /// Verifies mac1, and under load mac2 (answering with a cookie reply when it is missing).
    private mutating func checkMacs(
        _ datagram: [UInt8], mac1Offset: Int, from source: PeerPath, now: Instant,
        rng: inout some RandomNumberGenerator, senderIndex: UInt32? = nil, effects: inout [SessionEffect]
    ) -> Bool {
        let mac1 = Array(datagram[mac1Offset..<mac1Offset + WireSize.mac])
        guard SecureMemory.equals(Self.mac(key: ownMac1Key, datagram[..<mac1Offset]), mac1) else {
            count(.badMac1)
            return false
        }
        // Only initiations count towards load: a response is processed only for an index we are
        // waiting on, so it cannot make us do work for strangers.
        guard let senderIndex else { return true }
        if now.since(initiationWindowStart) >= .seconds(1) {
            initiationWindowStart = now
            initiationsInWindow = 0
        }
        initiationsInWindow += 1
        guard initiationsInWindow > config.handshakesPerSecondBeforeCookies else { return true }
        let cookie = currentCookie(for: source, now: now, rng: &rng)
        let mac2Offset = mac1Offset + WireSize.mac
        let mac2 = Array(datagram[mac2Offset..<mac2Offset + WireSize.mac])
        if SecureMemory.equals(Self.mac(key: cookie, datagram[..<mac2Offset]), mac2) { return true }
        let nonce = rng.bytes(WireSize.cookieNonce)
        if let sealed = try? XChaCha20Poly1305.seal(
            key: Self.cookieKey(for: identity.x25519PublicKey), nonce: nonce, plaintext: cookie,
            associatedData: mac1)
        {
            counters.cookieRepliesSent += 1
            emit(
                CookieReply(receiverIndex: senderIndex, nonce: nonce, encryptedCookie: sealed).encoded(),
                to: source, effects: &effects)
        }
        count(.cookieRequired)
        return false
    }

    private mutating func checkMacs(
        _ datagram: [UInt8], mac1Offset: Int, from source: PeerPath, now: Instant,
        rng: inout some RandomNumberGenerator
    ) -> Bool {
        var ignored: [SessionEffect] = []
        return checkMacs(datagram, mac1Offset: mac1Offset, from: source, now: now, rng: &rng, effects: &ignored)
    }

    private mutating func currentCookie(
        for source: PeerPath, now: Instant, rng: inout some RandomNumberGenerator
    ) -> [UInt8] {
        if cookieSecretCreated.map({ now.since($0) >= config.cookieSecretLifetime }) ?? true {
            cookieSecret = rng.bytes(32)
            cookieSecretCreated = now
        }
        var writer = ByteWriter(capacity: 19)
        writer.write(source)
        return BLAKE2b.hash(writer.bytes, outputLength: WireSize.mac, key: cookieSecret)
    }

    // MARK: - Transport

    /// Opens a transport datagram in place (the data plane's receive path: no copy, no allocation
    /// for data frames) and, like `receive`, flushes frames queued for a session it confirms. The
    /// frame is `datagram[range]`; the caller delivers it. Non-transport datagrams go to `receive`.
    public mutating func receiveTransport(
        _ datagram: UnsafeMutableRawBufferPointer, from source: PeerPath, now: Instant, effects: inout [SessionEffect]
    ) -> OpenResult {
        counters.datagramsReceived += 1
        counters.bytesReceived += UInt64(datagram.count)
        let result = open(datagram, from: source, now: now, events: &effects)
        if case .frame(let key, _) = result { flushQueue(of: key, now: now, effects: &effects) }
        return result
    }

    private mutating func handleTransport(
        _ datagram: [UInt8], from source: PeerPath, now: Instant, rng: inout some RandomNumberGenerator,
        effects: inout [SessionEffect]
    ) {
        var copy = datagram
        let result = copy.withUnsafeMutableBytes { open($0, from: source, now: now, events: &effects) }
        switch result {
        case .dropped: return
        case .frame(let key, let range):
            // Empty frames are keepalives: authenticated, counted above, nothing to deliver.
            if !range.isEmpty { effects.append(.deliver(peer: key, frame: Array(copy[range]))) }
            // A session confirmed by this packet (even a keepalive) flushes what was queued.
            flushQueue(of: key, now: now, effects: &effects)
        }
    }

    private mutating func flushQueue(of key: PublicKey, now: Instant, effects: inout [SessionEffect]) {
        guard let slot = peers.index(forKey: key), !peers.values[slot].queue.isEmpty else { return }
        queuedBytes -= peers.values[slot].queue.bytes
        let queued = peers.values[slot].queue.takeAll()
        for frame in queued where !sendNow(frame.bytes, to: key, now: now, effects: &effects) {
            // Still no usable session (an unconfirmed keypair's allowance ran out): keep it queued.
            enqueue(frame.bytes, early: frame.early, for: key)
        }
    }

    /// Seals and emits `frame` if a usable session exists. Returns false when it does not.
    private mutating func sendNow(
        _ frame: [UInt8], to key: PublicKey, now: Instant, effects: inout [SessionEffect]
    ) -> Bool {
        var datagram = [UInt8](repeating: 0, count: WireSize.transportHeader + frame.count + 16)
        let sealed = frame.withUnsafeBytes { plain in
            datagram.withUnsafeMutableBytes { seal(plain, to: key, into: $0, now: now) }
        }
        guard let sealed else { return false }
        effects.append(.send(datagram, to: sealed.path))
        return true
    }

    // MARK: - Timers

    private mutating func tickPeer(
        _ key: PublicKey, now: Instant, rng: inout some RandomNumberGenerator, effects: inout [SessionEffect]
    ) {
        guard var peer = peers[key] else { return }
        // A half-open peer whose initiator never confirmed: forget it, keys, queue and indices.
        if let expiry = peer.halfOpenExpiry(config: config), now >= expiry {
            removePeer(key)
            counters.halfOpenPeersFreed += 1
            return
        }
        // Liveness.
        if peer.persistent, peer.isEstablished, let heard = peer.lastReceived ?? peer.lastHandshake,
            now.since(heard) >= config.peerTimeout
        {
            for index in peer.ownedIndices { indices.removeValue(forKey: index) }
            peer.dropKeys()
            peer.isEstablished = false
            peer.attemptingSince = nil
            peer.candidate = nil
            _ = takeQueue(of: &peer)
            peers[key] = peer
            effects.append(.lost(peer: key))
            return
        }
        // Key expiry.
        for slot in [KeySlot.previous, .next, .current] {
            if let keypair = peer.keypair(in: slot), now.since(keypair.createdAt) >= config.rejectAfterTime {
                indices.removeValue(forKey: keypair.localIndex)
                peer.clear(slot)
            }
        }
        if peer.isEstablished && peer.current == nil && peer.next == nil {
            // Keys ran out without a successful rekey: a kept peer is as good as lost; an on-demand
            // session simply idles out.
            peer.isEstablished = false
            peer.attemptingSince = nil
            peer.candidate = nil
            _ = takeQueue(of: &peer)
            if peer.persistent { effects.append(.lost(peer: key)) }
        }
        peers[key] = peer
        // Handshake retry or give-up.
        if let pending = peer.pending, now >= pending.retryAt {
            if let since = peer.attemptingSince, now.since(since) >= config.rekeyAttemptTime {
                indices.removeValue(forKey: pending.localIndex)
                peers[key]!.pending = nil
                peers[key]!.attemptingSince = nil
                queuedBytes -= peers[key]!.queue.bytes
                _ = peers[key]!.queue.takeAll()
                peers[key]!.earlyFrame = nil
                if !peer.isEstablished { effects.append(.unreachable(peer: key)) }
                return
            }
            initiateHandshake(key, now: now, rng: &rng, effects: &effects)
            return
        }
        // Rekey: the initiator after rekeyAfterTime, the responder shortly before its keys expire.
        // On-demand sessions rekey only while in use (sent something in the last keepalive interval).
        let inUse = peer.persistent || now.since(peer.lastSent ?? .zero) < config.keepaliveInterval
        if peer.pending == nil, inUse, let current = peer.current {
            let age = now.since(current.createdAt)
            let due =
                current.isInitiator
                ? age >= config.rekeyAfterTime
                : age >= config.rejectAfterTime - config.keepaliveInterval - config.rekeyTimeout
            if due || current.sendCounter >= config.rekeyAfterMessages {
                initiateHandshake(key, now: now, rng: &rng, effects: &effects)
            }
        }
        // Keepalive.
        if let peer = peers[key], peer.isEstablished {
            let persistentDue =
                peer.persistent && peer.current != nil && now.since(peer.lastSent ?? .zero) >= config.keepaliveInterval
            let passiveDue = peer.passiveKeepaliveDue(config: config).map { $0 <= now } ?? false
            if persistentDue || passiveDue, sendNow([], to: key, now: now, effects: &effects) {
                counters.keepalivesSent += 1
            }
        }
    }

    // MARK: - Timer heap

    /// Gives `key` a heap entry at its next timer if that is earlier than its live entry (a later
    /// timer keeps the earlier entry: the tick then finds nothing to do and re-arms).
    private mutating func reschedule(_ key: PublicKey) {
        guard let slot = peers.index(forKey: key) else { return }
        armTimerIfEarlier(at: slot)
    }

    private mutating func armTimerIfEarlier(at slot: Dictionary<PublicKey, Peer>.Index) {
        let config = self.config
        let armed: (due: Instant, key: PublicKey)? = modifyPeer(at: slot) { peer in
            guard let due = peer.deadline(config: config), peer.timerDue.map({ due < $0 }) ?? true else { return nil }
            peer.timerDue = due
            return (due, peer.publicKey)
        }
        guard let armed else { return }
        timers.insert(TimerEntry(due: armed.due, key: armed.key))
        // Superseded entries stay until they surface; rebuild when they outnumber the live ones.
        if timers.count > 2 * peers.count + 64 {
            timers = TimerHeap(
                peers.values.compactMap { peer in peer.timerDue.map { TimerEntry(due: $0, key: peer.publicKey) } })
        }
    }

    /// Pops stale entries off the top, so `nextDeadline` is exactly the earliest live entry.
    private mutating func dropStaleTimers() {
        while let top = timers.min, peers[top.key]?.timerDue != top.due { _ = timers.popMin() }
    }

    // MARK: - Helpers

    /// Mutates the peer at `slot` in place: one hash lookup per packet, no copy-on-write.
    private mutating func modifyPeer<R>(
        at slot: Dictionary<PublicKey, Peer>.Index, _ body: (inout Peer) throws -> R
    ) rethrows -> R {
        try body(&peers.values[slot])
    }

    private mutating func newIndex(for key: PublicKey, rng: inout some RandomNumberGenerator) -> UInt32 {
        while true {
            let candidate = UInt32.random(in: 1...UInt32.max, using: &rng)
            if indices[candidate] == nil {
                indices[candidate] = key
                return candidate
            }
        }
    }

    private mutating func emit(_ bytes: [UInt8], to path: PeerPath, effects: inout [SessionEffect]) {
        counters.datagramsSent += 1
        counters.bytesSent += UInt64(bytes.count)
        effects.append(.send(bytes, to: path))
    }

    private mutating func count(_ reason: DropReason) {
        counters.dropped[reason, default: 0] += 1
    }

    private mutating func drop(_ reason: DropReason) -> OpenResult {
        count(reason)
        return .dropped(reason)
    }

    private static let zeroMac = [UInt8](repeating: 0, count: WireSize.mac)

    /// The early data after the identity key and timestamp of an initiation's payload: nothing, or
    /// `length u16 | frame | zero padding`.
    static func readEarlyData(_ reader: inout ByteReader) throws(DecodeError) -> [UInt8] {
        guard !reader.isAtEnd else { return [] }
        let early = try reader.readLengthPrefixed(limit: WireSize.maximumEarlyData)
        guard reader.readRemaining().allSatisfy({ $0 == 0 }) else {
            throw .invalid(field: "initiation padding", reason: "padding must be zero bytes")
        }
        return early
    }

    /// The key of mac1 for messages to the holder of `staticPublicKey` (its X25519 Noise key).
    public static func mac1Key(for staticPublicKey: [UInt8]) -> [UInt8] {
        BLAKE2b.hash(Array("mac1----".utf8) + staticPublicKey, outputLength: 32)
    }

    static func cookieKey(for staticPublicKey: [UInt8]) -> [UInt8] {
        BLAKE2b.hash(Array("cookie--".utf8) + staticPublicKey, outputLength: 32)
    }

    /// A 16-byte keyed BLAKE2b MAC (mac1, mac2).
    public static func mac(key: [UInt8], _ bytes: ArraySlice<UInt8>) -> [UInt8] {
        BLAKE2b.hash(Array(bytes), outputLength: WireSize.mac, key: key)
    }

    private static func keypair(
        from noise: NoiseIKHandshake, localIndex: UInt32, remoteIndex: UInt32, now: Instant, isInitiator: Bool
    ) -> Keypair? {
        guard let (send, receive) = try? noise.split(), var sendBytes = send.key, var receiveBytes = receive.key,
            let sendKey = try? SymmetricKey(bytes: sendBytes), let receiveKey = try? SymmetricKey(bytes: receiveBytes)
        else { return nil }
        SecureMemory.zero(&sendBytes)
        SecureMemory.zero(&receiveBytes)
        return Keypair(
            localIndex: localIndex, remoteIndex: remoteIndex, sendKey: sendKey, receiveKey: receiveKey,
            createdAt: now, isInitiator: isInitiator)
    }
}
