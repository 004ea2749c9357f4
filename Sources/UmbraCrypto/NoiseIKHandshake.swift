/// The handshake of `Noise_IK_25519_ChaChaPoly_BLAKE2b` (Noise spec rev 34, §7.5):
///
///     <- s
///     ...
///     -> e, es, s, ss      message 1: e(32) || enc(s)(48) || enc(payload)(len + 16)
///     <- e, ee, se         message 2: e(32) || enc(payload)(len + 16)
///
/// A pure value: the ephemeral secret is a parameter, so the caller supplies the randomness (the CSPRNG in
/// production, fixed bytes in tests). A message that fails to read leaves the state untouched, so one
/// forged packet cannot wedge a handshake. Untrusted input ends in a thrown `CryptoError`, never a trap.
public struct NoiseIKHandshake: Sendable {
    public enum Role: Sendable {
        case initiator
        case responder
    }

    public static let protocolName = "Noise_IK_25519_ChaChaPoly_BLAKE2b"
    /// The shortest valid message 1 (empty payload): e(32) + enc(s)(48) + tag(16).
    public static let minimumInitiationLength = X25519.keyBytes + X25519.keyBytes + 2 * ChaCha20Poly1305.tagBytes
    /// The shortest valid message 2 (empty payload): e(32) + tag(16).
    public static let minimumResponseLength = X25519.keyBytes + ChaCha20Poly1305.tagBytes
    /// Noise's limit on any message.
    public static let maximumMessageLength = 65535

    /// What this side does next.
    private enum Step: Sendable {
        case writeInitiation
        case readInitiation
        case writeResponse
        case readResponse
        case complete
    }

    public let role: Role
    private var step: Step
    private var symmetric: NoiseSymmetricState
    private let staticSecretKey: [UInt8]
    private let staticPublicKey: [UInt8]
    private var ephemeralSecretKey: [UInt8]
    private let ephemeralPublicKey: [UInt8]
    public private(set) var remoteStaticKey: [UInt8]?
    public private(set) var remoteEphemeralKey: [UInt8]?

    /// `remoteStaticKey` is required for the initiator and must be nil for the responder (it learns it from
    /// message 1). All keys are 32-byte X25519 keys.
    public init(
        role: Role, prologue: [UInt8], staticSecretKey: [UInt8], remoteStaticKey: [UInt8]?,
        ephemeralSecretKey: [UInt8]
    ) throws {
        try requireLength(staticSecretKey, X25519.keyBytes, "static secret key")
        try requireLength(ephemeralSecretKey, X25519.keyBytes, "ephemeral secret key")
        switch role {
        case .initiator:
            guard let remoteStaticKey else {
                throw CryptoError.handshake("the initiator needs the responder's static key")
            }
            try requireLength(remoteStaticKey, X25519.keyBytes, "remote static key")
        case .responder:
            guard remoteStaticKey == nil else {
                throw CryptoError.handshake("the responder learns the remote static key from message 1")
            }
        }
        self.role = role
        self.staticSecretKey = staticSecretKey
        self.staticPublicKey = try X25519.publicKey(secretKey: staticSecretKey)
        self.ephemeralSecretKey = ephemeralSecretKey
        self.ephemeralPublicKey = try X25519.publicKey(secretKey: ephemeralSecretKey)
        self.remoteStaticKey = remoteStaticKey
        self.remoteEphemeralKey = nil

        var symmetric = NoiseSymmetricState(protocolName: Array(NoiseIKHandshake.protocolName.utf8))
        symmetric.mixHash(prologue)
        // Pre-message pattern "<- s": both sides hash the responder's static public key.
        switch role {
        case .initiator:
            symmetric.mixHash(remoteStaticKey ?? [])
            step = .writeInitiation
        case .responder:
            symmetric.mixHash(staticPublicKey)
            step = .readInitiation
        }
        self.symmetric = symmetric
    }

    /// True once both messages have been written/read.
    public var isComplete: Bool {
        if case .complete = step { return true }
        return false
    }

    /// The handshake hash h: a unique, transcript-bound identifier of this handshake (channel binding).
    public var handshakeHash: [UInt8] { symmetric.h }

    /// Writes this side's next message carrying `payload` (encrypted: both messages have a key by then).
    public mutating func writeMessage(payload: [UInt8]) throws -> [UInt8] {
        var next = self
        let message: [UInt8]
        switch step {
        case .writeInitiation:
            guard payload.count <= Self.maximumMessageLength - Self.minimumInitiationLength else {
                throw CryptoError.handshake("payload too long for a Noise message")
            }
            message = try next.writeInitiation(payload: payload)
            next.step = .readResponse
        case .writeResponse:
            guard payload.count <= Self.maximumMessageLength - Self.minimumResponseLength else {
                throw CryptoError.handshake("payload too long for a Noise message")
            }
            message = try next.writeResponse(payload: payload)
            next.step = .complete
            SecureMemory.zero(&next.ephemeralSecretKey)
        case .readInitiation, .readResponse, .complete:
            throw CryptoError.handshake("not this side's turn to write")
        }
        self = next
        return message
    }

    /// Reads the peer's next message and returns its decrypted payload. Throws (and changes nothing) on a
    /// short, long, forged or out-of-turn message.
    public mutating func readMessage(_ message: [UInt8]) throws -> [UInt8] {
        guard message.count <= Self.maximumMessageLength else {
            throw CryptoError.handshake("message longer than \(Self.maximumMessageLength) bytes")
        }
        var next = self
        let payload: [UInt8]
        switch step {
        case .readInitiation:
            guard message.count >= Self.minimumInitiationLength else {
                throw CryptoError.invalidLength(
                    field: "handshake initiation", expected: Self.minimumInitiationLength, actual: message.count)
            }
            payload = try next.readInitiation(message)
            next.step = .writeResponse
        case .readResponse:
            guard message.count >= Self.minimumResponseLength else {
                throw CryptoError.invalidLength(
                    field: "handshake response", expected: Self.minimumResponseLength, actual: message.count)
            }
            payload = try next.readResponse(message)
            next.step = .complete
            SecureMemory.zero(&next.ephemeralSecretKey)
        case .writeInitiation, .writeResponse, .complete:
            throw CryptoError.handshake("not this side's turn to read")
        }
        self = next
        return payload
    }

    /// After completion: the two transport cipher states, oriented for this role (the initiator sends with
    /// Noise's first cipher state, the responder with the second).
    public func split() throws -> (send: NoiseCipherState, receive: NoiseCipherState) {
        guard isComplete else { throw CryptoError.handshake("split before the handshake is complete") }
        let (first, second) = symmetric.split()
        switch role {
        case .initiator: return (send: first, receive: second)
        case .responder: return (send: second, receive: first)
        }
    }

    // MARK: - Message patterns

    /// -> e, es, s, ss
    private mutating func writeInitiation(payload: [UInt8]) throws -> [UInt8] {
        let remoteStatic = remoteStaticKey ?? []
        var message = ephemeralPublicKey
        message.reserveCapacity(Self.minimumInitiationLength + payload.count)
        symmetric.mixHash(ephemeralPublicKey)
        try symmetric.mixDH(secretKey: ephemeralSecretKey, publicKey: remoteStatic)  // es
        message += try symmetric.encryptAndHash(staticPublicKey)  // s
        try symmetric.mixDH(secretKey: staticSecretKey, publicKey: remoteStatic)  // ss
        message += try symmetric.encryptAndHash(payload)
        return message
    }

    /// -> e, es, s, ss (responder side)
    private mutating func readInitiation(_ message: [UInt8]) throws -> [UInt8] {
        let keyLength = X25519.keyBytes
        let remoteEphemeral = Array(message[0..<keyLength])
        let encryptedStatic = Array(message[keyLength..<(2 * keyLength + ChaCha20Poly1305.tagBytes)])
        let encryptedPayload = Array(message[(2 * keyLength + ChaCha20Poly1305.tagBytes)...])
        symmetric.mixHash(remoteEphemeral)
        try symmetric.mixDH(secretKey: staticSecretKey, publicKey: remoteEphemeral)  // es
        let remoteStatic = try symmetric.decryptAndHash(encryptedStatic)  // s
        try symmetric.mixDH(secretKey: staticSecretKey, publicKey: remoteStatic)  // ss
        let payload = try symmetric.decryptAndHash(encryptedPayload)
        remoteEphemeralKey = remoteEphemeral
        remoteStaticKey = remoteStatic
        return payload
    }

    /// <- e, ee, se
    private mutating func writeResponse(payload: [UInt8]) throws -> [UInt8] {
        let remoteEphemeral = remoteEphemeralKey ?? []
        let remoteStatic = remoteStaticKey ?? []
        var message = ephemeralPublicKey
        message.reserveCapacity(Self.minimumResponseLength + payload.count)
        symmetric.mixHash(ephemeralPublicKey)
        try symmetric.mixDH(secretKey: ephemeralSecretKey, publicKey: remoteEphemeral)  // ee
        try symmetric.mixDH(secretKey: ephemeralSecretKey, publicKey: remoteStatic)  // se (responder: DH(e, rs))
        message += try symmetric.encryptAndHash(payload)
        return message
    }

    /// <- e, ee, se (initiator side)
    private mutating func readResponse(_ message: [UInt8]) throws -> [UInt8] {
        let keyLength = X25519.keyBytes
        let remoteEphemeral = Array(message[0..<keyLength])
        let encryptedPayload = Array(message[keyLength...])
        symmetric.mixHash(remoteEphemeral)
        try symmetric.mixDH(secretKey: ephemeralSecretKey, publicKey: remoteEphemeral)  // ee
        try symmetric.mixDH(secretKey: staticSecretKey, publicKey: remoteEphemeral)  // se (initiator: DH(s, re))
        let payload = try symmetric.decryptAndHash(encryptedPayload)
        remoteEphemeralKey = remoteEphemeral
        return payload
    }
}

/// Noise SymmetricState (spec §5.2) for BLAKE2b and ChaChaPoly: chaining key ck, handshake hash h and a
/// CipherState.
struct NoiseSymmetricState: Sendable {
    private(set) var chainingKey: [UInt8]
    private(set) var h: [UInt8]
    private var cipher: NoiseCipherState

    /// InitializeSymmetric: h = name padded with zeros to HASHLEN if it fits, else HASH(name); ck = h.
    init(protocolName: [UInt8]) {
        if protocolName.count <= NoiseHKDF.hashLength {
            h = protocolName + [UInt8](repeating: 0, count: NoiseHKDF.hashLength - protocolName.count)
        } else {
            h = BLAKE2b.hash(protocolName)
        }
        chainingKey = h
        cipher = NoiseCipherState(key: nil)
    }

    /// h = HASH(h || data)
    mutating func mixHash(_ data: [UInt8]) {
        h = BLAKE2b.hash([h, data])
    }

    /// ck, temp_k = HKDF(ck, ikm, 2); the cipher key is temp_k truncated to 32 bytes, nonce 0.
    mutating func mixKey(_ inputKeyMaterial: [UInt8]) {
        var outputs = NoiseHKDF.hkdf(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: 2)
        SecureMemory.zero(&chainingKey)
        chainingKey = outputs[0]
        cipher = NoiseCipherState(key: Array(outputs[1].prefix(ChaCha20Poly1305.keyBytes)))
        SecureMemory.zero(&outputs[1])
    }

    /// MixKey(DH(secret, public)), zeroing the shared secret afterwards.
    mutating func mixDH(secretKey: [UInt8], publicKey: [UInt8]) throws {
        var shared = try X25519.sharedSecret(secretKey: secretKey, publicKey: publicKey)
        defer { SecureMemory.zero(&shared) }
        mixKey(shared)
    }

    mutating func encryptAndHash(_ plaintext: [UInt8]) throws -> [UInt8] {
        let ciphertext = try cipher.encrypt(associatedData: h, plaintext: plaintext)
        mixHash(ciphertext)
        return ciphertext
    }

    mutating func decryptAndHash(_ ciphertext: [UInt8]) throws -> [UInt8] {
        let plaintext = try cipher.decrypt(associatedData: h, ciphertext: ciphertext)
        mixHash(ciphertext)
        return plaintext
    }

    /// temp_k1, temp_k2 = HKDF(ck, "", 2), each truncated to 32 bytes.
    func split() -> (NoiseCipherState, NoiseCipherState) {
        var outputs = NoiseHKDF.hkdf(chainingKey: chainingKey, inputKeyMaterial: [], outputs: 2)
        defer {
            SecureMemory.zero(&outputs[0])
            SecureMemory.zero(&outputs[1])
        }
        return (
            NoiseCipherState(key: Array(outputs[0].prefix(ChaCha20Poly1305.keyBytes))),
            NoiseCipherState(key: Array(outputs[1].prefix(ChaCha20Poly1305.keyBytes)))
        )
    }
}
