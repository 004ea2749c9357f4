import Foundation
import Testing
import UmbraCrypto

/// One vector of the cacophony / snow test-vector format (only the fields IK without PSKs uses).
struct NoiseVector: Decodable, Sendable, CustomTestStringConvertible {
    struct Message: Decodable, Sendable {
        let payload: String
        let ciphertext: String
    }

    let protocolName: String
    let initPrologue: String
    let initStatic: String
    let initEphemeral: String
    let initRemoteStatic: String
    let respPrologue: String
    let respStatic: String
    let respEphemeral: String
    let handshakeHash: String?
    let messages: [Message]

    var source = ""
    var testDescription: String { "\(source): \(protocolName)" }

    private enum CodingKeys: String, CodingKey {
        case protocolName = "protocol_name"
        case initPrologue = "init_prologue"
        case initStatic = "init_static"
        case initEphemeral = "init_ephemeral"
        case initRemoteStatic = "init_remote_static"
        case respPrologue = "resp_prologue"
        case respStatic = "resp_static"
        case respEphemeral = "resp_ephemeral"
        case handshakeHash = "handshake_hash"
        case messages
    }
}

private struct NoiseVectorFile: Decodable {
    let vectors: [NoiseVector]
}

func loadNoiseVectors() throws -> [NoiseVector] {
    var all: [NoiseVector] = []
    for name in ["noise-IK_25519_ChaChaPoly_BLAKE2b.cacophony", "noise-IK_25519_ChaChaPoly_BLAKE2b.snow"] {
        guard let url = Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures") else {
            throw CryptoError.handshake("missing fixture \(name).json")
        }
        let file = try JSONDecoder().decode(NoiseVectorFile.self, from: Data(contentsOf: url))
        for var vector in file.vectors {
            vector.source = name.components(separatedBy: ".").last ?? name
            all.append(vector)
        }
    }
    return all
}

@Suite("Noise IK (Noise_IK_25519_ChaChaPoly_BLAKE2b)")
struct NoiseIKTests {
    @Test func fixturesAreLoaded() throws {
        let vectors = try loadNoiseVectors()
        #expect(vectors.count >= 2)
        #expect(vectors.allSatisfy { $0.protocolName == NoiseIKHandshake.protocolName })
        #expect(vectors.allSatisfy { $0.messages.count >= 2 })
    }

    @Test("cacophony and snow vectors", arguments: try loadNoiseVectors())
    func vector(_ vector: NoiseVector) throws {
        var initiator = try NoiseIKHandshake(
            role: .initiator, prologue: hex(vector.initPrologue), staticSecretKey: hex(vector.initStatic),
            remoteStaticKey: hex(vector.initRemoteStatic), ephemeralSecretKey: hex(vector.initEphemeral))
        var responder = try NoiseIKHandshake(
            role: .responder, prologue: hex(vector.respPrologue), staticSecretKey: hex(vector.respStatic),
            remoteStaticKey: nil, ephemeralSecretKey: hex(vector.respEphemeral))

        // Message 0: initiator -> responder.
        let first = vector.messages[0]
        let message0 = try initiator.writeMessage(payload: hex(first.payload))
        #expect(message0.hexString == first.ciphertext)
        #expect(try responder.readMessage(message0) == hex(first.payload))
        #expect(try responder.remoteStaticKey == X25519.publicKey(secretKey: hex(vector.initStatic)))
        #expect(try responder.remoteEphemeralKey == X25519.publicKey(secretKey: hex(vector.initEphemeral)))
        #expect(!initiator.isComplete && !responder.isComplete)

        // Message 1: responder -> initiator.
        let second = vector.messages[1]
        let message1 = try responder.writeMessage(payload: hex(second.payload))
        #expect(message1.hexString == second.ciphertext)
        #expect(try initiator.readMessage(message1) == hex(second.payload))
        #expect(initiator.isComplete && responder.isComplete)
        #expect(try initiator.remoteEphemeralKey == X25519.publicKey(secretKey: hex(vector.respEphemeral)))

        #expect(initiator.handshakeHash == responder.handshakeHash)
        if let expectedHash = vector.handshakeHash {
            #expect(initiator.handshakeHash.hexString == expectedHash)
        }

        // Transport: messages 2... alternate initiator -> responder, responder -> initiator.
        var (initiatorSend, initiatorReceive) = try initiator.split()
        var (responderSend, responderReceive) = try responder.split()
        #expect(initiatorSend.key == responderReceive.key)
        #expect(initiatorReceive.key == responderSend.key)
        #expect(initiatorSend.key != initiatorReceive.key)
        for (index, message) in vector.messages.enumerated().dropFirst(2) {
            let payload = hex(message.payload)
            if index % 2 == 0 {
                let ciphertext = try initiatorSend.encrypt(associatedData: [], plaintext: payload)
                #expect(ciphertext.hexString == message.ciphertext, "transport message \(index)")
                #expect(try responderReceive.decrypt(associatedData: [], ciphertext: ciphertext) == payload)
            } else {
                let ciphertext = try responderSend.encrypt(associatedData: [], plaintext: payload)
                #expect(ciphertext.hexString == message.ciphertext, "transport message \(index)")
                #expect(try initiatorReceive.decrypt(associatedData: [], ciphertext: ciphertext) == payload)
            }
        }
        let transportCount = UInt64(vector.messages.count - 2)
        #expect(initiatorSend.nonce + initiatorReceive.nonce == transportCount)
        #expect(responderSend.nonce + responderReceive.nonce == transportCount)
    }

    // MARK: - Negative and state-machine tests

    struct Peers {
        var initiator: NoiseIKHandshake
        var responder: NoiseIKHandshake
        let initiatorStaticPublic: [UInt8]
        let responderStaticPublic: [UInt8]
    }

    static func makePeers(
        prologue: [UInt8] = Array("umbra/test".utf8), responderPrologue: [UInt8]? = nil
    ) throws
        -> Peers
    {
        let initiatorStatic = SecureRandom.bytes(32)
        let responderStatic = SecureRandom.bytes(32)
        let responderStaticPublic = try X25519.publicKey(secretKey: responderStatic)
        return Peers(
            initiator: try NoiseIKHandshake(
                role: .initiator, prologue: prologue, staticSecretKey: initiatorStatic,
                remoteStaticKey: responderStaticPublic, ephemeralSecretKey: SecureRandom.bytes(32)),
            responder: try NoiseIKHandshake(
                role: .responder, prologue: responderPrologue ?? prologue, staticSecretKey: responderStatic,
                remoteStaticKey: nil, ephemeralSecretKey: SecureRandom.bytes(32)),
            initiatorStaticPublic: try X25519.publicKey(secretKey: initiatorStatic),
            responderStaticPublic: responderStaticPublic)
    }

    @Test func responderLearnsInitiatorStaticAndEndToEndWorks() throws {
        var peers = try Self.makePeers()
        #expect(peers.responder.remoteStaticKey == nil)
        let m1 = try peers.initiator.writeMessage(payload: Array("hello".utf8))
        #expect(m1.count == NoiseIKHandshake.minimumInitiationLength + 5)
        #expect(try peers.responder.readMessage(m1) == Array("hello".utf8))
        #expect(peers.responder.remoteStaticKey == peers.initiatorStaticPublic)
        let m2 = try peers.responder.writeMessage(payload: [])
        #expect(m2.count == NoiseIKHandshake.minimumResponseLength)
        #expect(try peers.initiator.readMessage(m2) == [])
        #expect(peers.initiator.remoteStaticKey == peers.responderStaticPublic)
        var (iSend, _) = try peers.initiator.split()
        var (_, rReceive) = try peers.responder.split()
        let sealed = try iSend.encrypt(associatedData: [9], plaintext: [1, 2, 3])
        #expect(try rReceive.decrypt(associatedData: [9], ciphertext: sealed) == [1, 2, 3])
    }

    @Test(
        "a flipped byte anywhere in message 1 fails, and leaves the responder usable",
        arguments: [0, 31, 32, 60, 79, 80, 95, 100])
    func flippedByteInInitiationFails(index: Int) throws {
        var peers = try Self.makePeers()
        let m1 = try peers.initiator.writeMessage(payload: Array("payload!".utf8))
        let before = peers.responder.handshakeHash
        #expect(throws: CryptoError.self) { try peers.responder.readMessage(m1.flippingBit(at: index, bit: 2)) }
        #expect(peers.responder.handshakeHash == before)
        #expect(peers.responder.remoteStaticKey == nil)
        // The genuine message still works after the forgery was rejected.
        #expect(try peers.responder.readMessage(m1) == Array("payload!".utf8))
    }

    @Test func flippedByteInResponseFails() throws {
        var peers = try Self.makePeers()
        _ = try peers.responder.readMessage(try peers.initiator.writeMessage(payload: []))
        let m2 = try peers.responder.writeMessage(payload: [7, 7])
        for index in [0, 33, m2.count - 1] {
            #expect(throws: CryptoError.self) { try peers.initiator.readMessage(m2.flippingBit(at: index)) }
            #expect(!peers.initiator.isComplete)
        }
        #expect(try peers.initiator.readMessage(m2) == [7, 7])
        #expect(peers.initiator.isComplete)
    }

    @Test func differentProloguesFail() throws {
        var peers = try Self.makePeers(prologue: Array("net-a".utf8), responderPrologue: Array("net-b".utf8))
        let m1 = try peers.initiator.writeMessage(payload: [])
        #expect(throws: CryptoError.authenticationFailed) { try peers.responder.readMessage(m1) }
    }

    @Test func wrongResponderKeyFails() throws {
        var peers = try Self.makePeers()
        let stranger = try NoiseIKHandshake(
            role: .initiator, prologue: Array("umbra/test".utf8), staticSecretKey: SecureRandom.bytes(32),
            remoteStaticKey: try X25519.publicKey(secretKey: SecureRandom.bytes(32)),
            ephemeralSecretKey: SecureRandom.bytes(32))
        var strangerCopy = stranger
        let m1 = try strangerCopy.writeMessage(payload: [])
        #expect(throws: CryptoError.authenticationFailed) { try peers.responder.readMessage(m1) }
    }

    @Test func shortAndLongMessagesAreTypedErrors() throws {
        var peers = try Self.makePeers()
        for length in [0, 1, 32, 95] {
            #expect(throws: CryptoError.invalidLength(field: "handshake initiation", expected: 96, actual: length)) {
                try peers.responder.readMessage([UInt8](repeating: 0xAB, count: length))
            }
        }
        #expect(throws: CryptoError.self) {
            try peers.responder.readMessage([UInt8](repeating: 0, count: NoiseIKHandshake.maximumMessageLength + 1))
        }
        // A low-order ephemeral key from the wire is a typed error too.
        #expect(throws: CryptoError.weakSharedSecret) {
            try peers.responder.readMessage([UInt8](repeating: 0, count: 96))
        }
        _ = try peers.responder.readMessage(try peers.initiator.writeMessage(payload: []))
        _ = try peers.responder.writeMessage(payload: [])
        for length in [0, 47] {
            #expect(throws: CryptoError.invalidLength(field: "handshake response", expected: 48, actual: length)) {
                try peers.initiator.readMessage([UInt8](repeating: 1, count: length))
            }
        }
    }

    @Test func outOfTurnCallsThrow() throws {
        var peers = try Self.makePeers()
        #expect(throws: CryptoError.self) { try peers.initiator.readMessage([UInt8](repeating: 0, count: 96)) }
        #expect(throws: CryptoError.self) { try peers.responder.writeMessage(payload: []) }
        #expect(throws: CryptoError.self) { try peers.initiator.split() }
        let m1 = try peers.initiator.writeMessage(payload: [])
        #expect(throws: CryptoError.self) { try peers.initiator.writeMessage(payload: []) }
        _ = try peers.responder.readMessage(m1)
        #expect(throws: CryptoError.self) { try peers.responder.readMessage(m1) }
        #expect(throws: CryptoError.self) { try peers.responder.split() }
        let m2 = try peers.responder.writeMessage(payload: [])
        _ = try peers.initiator.readMessage(m2)
        #expect(throws: CryptoError.self) { try peers.initiator.readMessage(m2) }
        #expect(throws: CryptoError.self) { try peers.initiator.writeMessage(payload: []) }
    }

    @Test func initializerValidation() throws {
        let key = SecureRandom.bytes(32)
        #expect(throws: CryptoError.self) {
            try NoiseIKHandshake(
                role: .initiator, prologue: [], staticSecretKey: key, remoteStaticKey: nil, ephemeralSecretKey: key)
        }
        #expect(throws: CryptoError.self) {
            try NoiseIKHandshake(
                role: .responder, prologue: [], staticSecretKey: key, remoteStaticKey: key, ephemeralSecretKey: key)
        }
        #expect(throws: CryptoError.invalidLength(field: "remote static key", expected: 32, actual: 31)) {
            try NoiseIKHandshake(
                role: .initiator, prologue: [], staticSecretKey: key, remoteStaticKey: Array(key.dropLast()),
                ephemeralSecretKey: key)
        }
        #expect(throws: CryptoError.invalidLength(field: "static secret key", expected: 32, actual: 0)) {
            try NoiseIKHandshake(
                role: .responder, prologue: [], staticSecretKey: [], remoteStaticKey: nil, ephemeralSecretKey: key)
        }
    }

    @Test func cipherStateWithoutKeyPassesThroughAndFailedDecryptKeepsNonce() throws {
        var none = NoiseCipherState(key: nil)
        #expect(try none.encrypt(associatedData: [1], plaintext: [4, 5]) == [4, 5])
        #expect(none.nonce == 0)

        var sender = NoiseCipherState(key: [UInt8](repeating: 3, count: 32))
        var receiver = NoiseCipherState(key: [UInt8](repeating: 3, count: 32))
        let c0 = try sender.encrypt(associatedData: [], plaintext: [1])
        let c1 = try sender.encrypt(associatedData: [], plaintext: [2])
        #expect(sender.nonce == 2)
        #expect(
            c0
                == (try ChaCha20Poly1305.seal(
                    key: [UInt8](repeating: 3, count: 32), nonce: ChaCha20Poly1305.nonce(counter: 0), plaintext: [1])))
        #expect(throws: CryptoError.authenticationFailed) { try receiver.decrypt(associatedData: [], ciphertext: c1) }
        #expect(receiver.nonce == 0)
        #expect(try receiver.decrypt(associatedData: [], ciphertext: c0) == [1])
        #expect(try receiver.decrypt(associatedData: [], ciphertext: c1) == [2])
        #expect(receiver.nonce == 2)
    }

    @Test func hkdfOutputsAreChainedHMACs() {
        let ck = [UInt8](repeating: 0x11, count: 64)
        let ikm = [UInt8](repeating: 0x22, count: 32)
        let outputs = NoiseHKDF.hkdf(chainingKey: ck, inputKeyMaterial: ikm, outputs: 3)
        let temp = NoiseHKDF.hmac(key: ck, data: ikm)
        #expect(outputs.count == 3)
        #expect(outputs[0] == NoiseHKDF.hmac(key: temp, data: [1]))
        #expect(outputs[1] == NoiseHKDF.hmac(key: temp, data: outputs[0] + [2]))
        #expect(outputs[2] == NoiseHKDF.hmac(key: temp, data: outputs[1] + [3]))
        #expect(NoiseHKDF.hkdf(chainingKey: ck, inputKeyMaterial: ikm, outputs: 2) == Array(outputs.prefix(2)))
    }

    @Test func hmacMatchesTheRFC2104Construction() {
        // HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)) with K zero-padded to the 128-byte block.
        let key = Array("key".utf8)
        let message = Array("The quick brown fox jumps over the lazy dog".utf8)
        let padded = key + [UInt8](repeating: 0, count: 128 - key.count)
        let inner = BLAKE2b.hash(padded.map { $0 ^ 0x36 } + message)
        let expected = BLAKE2b.hash(padded.map { $0 ^ 0x5c } + inner)
        #expect(NoiseHKDF.hmac(key: key, data: message) == expected)
        // A key longer than a block is hashed first.
        let longKey = [UInt8](repeating: 0x42, count: 200)
        #expect(
            NoiseHKDF.hmac(key: longKey, data: message) == NoiseHKDF.hmac(key: BLAKE2b.hash(longKey), data: message))
    }
}

@Suite("Randomness and memory helpers")
struct SecureHelpersTests {
    @Test func randomBytes() {
        let a = SecureRandom.bytes(32)
        let b = SecureRandom.bytes(32)
        #expect(a.count == 32 && a != b)
        #expect(SecureRandom.bytes(0).isEmpty)
        var buffer = [UInt8](repeating: 0, count: 64)
        buffer.withUnsafeMutableBytes { SecureRandom.fill($0) }
        #expect(buffer != [UInt8](repeating: 0, count: 64))
        var generator = SecureRandomGenerator()
        let values = (0..<4).map { _ in generator.next() }
        #expect(Set(values).count == 4)
        #expect((1...6).contains(Int.random(in: 1...6, using: &generator)))
    }

    @Test func zeroAndEquals() {
        var secret: [UInt8] = [1, 2, 3, 4]
        SecureMemory.zero(&secret)
        #expect(secret == [0, 0, 0, 0])
        #expect(SecureMemory.equals([1, 2, 3], [1, 2, 3]))
        #expect(!SecureMemory.equals([1, 2, 3], [1, 2, 4]))
        #expect(!SecureMemory.equals([1, 2, 3], [1, 2]))
        #expect(SecureMemory.equals([], []))
    }

    @Test func errorDescriptions() {
        #expect(CryptoError.authenticationFailed.description == "authentication failed")
        #expect(
            CryptoError.invalidLength(field: "nonce", expected: 12, actual: 3).description
                == "invalid length for nonce: expected 12 bytes, got 3")
    }
}
