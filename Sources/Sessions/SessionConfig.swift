import UmbraCore

/// Timers and limits of the session layer. The defaults are WireGuard's timers (whitepaper §6);
/// everything is a parameter so the simulator and tests can compress time.
public struct SessionConfig: Sendable {
    /// Network id mixed into the Noise prologue: nodes of different networks cannot handshake.
    public var networkID: String = "umbra-main"
    /// The initiator of a session starts a new handshake when its keys are this old.
    public var rekeyAfterTime: Duration = .seconds(120)
    /// Keys older than this are never used again, for sending or receiving.
    public var rejectAfterTime: Duration = .seconds(180)
    /// An unanswered initiation is retried after this (plus up to `rekeyJitter`).
    public var rekeyTimeout: Duration = .seconds(5)
    public var rekeyJitter: Duration = .milliseconds(333)
    /// A peer that has not answered any initiation for this long is given up on.
    public var rekeyAttemptTime: Duration = .seconds(90)
    /// An established session sends an empty (keepalive) packet when it sent nothing for this long.
    public var keepaliveInterval: Duration = .seconds(10)
    /// An established peer silent for this long is declared lost.
    public var peerTimeout: Duration = .seconds(35)
    public var rekeyAfterMessages: UInt64 = 1 << 60
    public var rejectAfterMessages: UInt64 = UInt64.max - (1 << 13)
    /// Above this many initiations per second, initiations must carry a valid cookie MAC (mac2).
    public var handshakesPerSecondBeforeCookies: Int = 256
    /// How often the secret that cookies derive from is replaced.
    public var cookieSecretLifetime: Duration = .seconds(120)
    /// A cookie received from a responder is used for this long.
    public var cookieLifetime: Duration = .seconds(115)
    /// Initiations from one peer closer together than this are dropped (flood check).
    public var minimumInitiationInterval: Duration = .milliseconds(20)
    /// Most peers (known or handshaking) the table holds.
    public var maximumPeers: Int = 4096
    /// Frames queued per peer while its handshake is in flight.
    public var maximumQueuedFrames: Int = 64
    /// Bytes queued per peer while its handshake is in flight (the oldest frames go first).
    public var maximumQueuedBytesPerPeer: Int = 96 * 1024
    /// Bytes queued for all peers together: a frame that would exceed it is dropped, so a flood of
    /// handshakes from fresh identities cannot grow the node's memory without bound.
    public var maximumQueuedBytes: Int = 8 * 1024 * 1024
    /// A new address is given this long to answer a path challenge before another one replaces it.
    public var pathValidationTimeout: Duration = .seconds(3)
    /// An unanswered path challenge is repeated (on the next packet from the address) after this.
    public var pathChallengeInterval: Duration = .seconds(1)

    public init() {}

    /// The Noise prologue: protocol label, a zero byte, the network id.
    public var prologue: [UInt8] { Array("umbra/noise/v1".utf8) + [0] + Array(networkID.utf8) }
}

/// Why a datagram was dropped. Every drop is counted under exactly one reason.
public enum DropReason: String, CaseIterable, Sendable, Codable, Error {
    case tooShort = "too_short"
    case unknownType = "unknown_type"
    case malformed
    case badMac1 = "bad_mac1"
    case cookieRequired = "cookie_required"
    case handshakeFailed = "handshake_failed"
    case identityMismatch = "identity_mismatch"
    case selfConnection = "self_connection"
    case replayedInitiation = "replayed_initiation"
    case initiationFlood = "initiation_flood"
    case peerTableFull = "peer_table_full"
    case unknownIndex = "unknown_index"
    case badCookie = "bad_cookie"
    case replayedCounter = "replayed_counter"
    case expiredKeys = "expired_keys"
    case authenticationFailed = "authentication_failed"
    case queueFull = "queue_full"
}

/// Counters of the session layer, read by `umbra status`.
public struct SessionCounters: Sendable, Equatable {
    public var datagramsReceived: UInt64 = 0
    public var datagramsSent: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var handshakesInitiated: UInt64 = 0
    public var handshakesCompleted: UInt64 = 0
    public var cookieRepliesSent: UInt64 = 0
    public var keepalivesSent: UInt64 = 0
    public var earlyFramesReceived: UInt64 = 0
    public var pathChallengesSent: UInt64 = 0
    /// New addresses of peers that answered a path challenge (the peer moved there).
    public var pathsValidated: UInt64 = 0
    /// Datagrams that went to the validated endpoint rather than to an unvalidated new address,
    /// because the new address's anti-amplification allowance was used up.
    public var pathAllowanceExhausted: UInt64 = 0
    /// Half-open peers (an initiation never confirmed) forgotten at the handshake timeout.
    public var halfOpenPeersFreed: UInt64 = 0
    public var dropped: [DropReason: UInt64] = [:]

    public init() {}

    public var droppedTotal: UInt64 { dropped.values.reduce(0, +) }
}
