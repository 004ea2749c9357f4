import CSodium

/// Ed25519 signatures (libsodium `crypto_sign_*`), the node identity key.
public enum Ed25519 {
    public static let publicKeyBytes = 32
    public static let secretKeyBytes = 64
    public static let seedBytes = 32
    public static let signatureBytes = 64

    /// An identity key pair. `secretKey` is libsodium's 64-byte form (seed || public key).
    public struct KeyPair: Sendable {
        public let publicKey: [UInt8]
        public let secretKey: [UInt8]

        /// Derives the key pair from a 32-byte seed (RFC 8032's "secret key").
        public init(seed: [UInt8]) throws {
            try requireLength(seed, Ed25519.seedBytes, "seed")
            Sodium.initialize()
            var publicKey = [UInt8](repeating: 0, count: Ed25519.publicKeyBytes)
            var secretKey = [UInt8](repeating: 0, count: Ed25519.secretKeyBytes)
            _ = publicKey.withUnsafeMutableBufferPointer { pk in
                secretKey.withUnsafeMutableBufferPointer { sk in
                    seed.withUnsafeBufferPointer { s in
                        crypto_sign_seed_keypair(pk.baseAddress!, sk.baseAddress!, s.baseAddress!)
                    }
                }
            }
            self.publicKey = publicKey
            self.secretKey = secretKey
        }

        /// A fresh key pair from libsodium's CSPRNG.
        public static func generate() -> KeyPair {
            var seed = SecureRandom.bytes(Ed25519.seedBytes)
            defer { SecureMemory.zero(&seed) }
            // The seed has the right length by construction, so this cannot throw.
            guard let pair = try? KeyPair(seed: seed) else { fatalError("Ed25519 key generation failed") }
            return pair
        }

        /// The 32-byte seed (the first half of libsodium's secret key).
        public var seed: [UInt8] { Array(secretKey.prefix(Ed25519.seedBytes)) }

        /// A detached 64-byte signature over `message`.
        public func sign(_ message: [UInt8]) -> [UInt8] {
            var signature = [UInt8](repeating: 0, count: Ed25519.signatureBytes)
            _ = signature.withUnsafeMutableBufferPointer { sig in
                message.withUnsafeBytes { m in
                    secretKey.withUnsafeBufferPointer { sk in
                        crypto_sign_detached(sig.baseAddress!, nil, m.bytePointer, UInt64(m.count), sk.baseAddress!)
                    }
                }
            }
            return signature
        }
    }

    /// Verifies a detached signature. False on any wrong length, invalid key or bad signature.
    public static func verify(signature: [UInt8], message: [UInt8], publicKey: [UInt8]) -> Bool {
        guard signature.count == signatureBytes, publicKey.count == publicKeyBytes else { return false }
        Sodium.initialize()
        return signature.withUnsafeBufferPointer { sig in
            message.withUnsafeBytes { m in
                publicKey.withUnsafeBufferPointer { pk in
                    crypto_sign_verify_detached(sig.baseAddress!, m.bytePointer, UInt64(m.count), pk.baseAddress!)
                        == 0
                }
            }
        }
    }

    /// The X25519 (Montgomery) form of an Ed25519 public key: the node's Noise static public key.
    public static func x25519PublicKey(fromEd25519 publicKey: [UInt8]) throws -> [UInt8] {
        try requireLength(publicKey, publicKeyBytes, "ed25519 public key")
        Sodium.initialize()
        var out = [UInt8](repeating: 0, count: X25519.keyBytes)
        let rc = out.withUnsafeMutableBufferPointer { o in
            publicKey.withUnsafeBufferPointer { pk in
                crypto_sign_ed25519_pk_to_curve25519(o.baseAddress!, pk.baseAddress!)
            }
        }
        guard rc == 0 else { throw CryptoError.invalidKey("ed25519 public key is not a valid curve point") }
        return out
    }

    /// The X25519 form of an Ed25519 secret key (64-byte libsodium form): the node's Noise static secret.
    public static func x25519SecretKey(fromEd25519 secretKey: [UInt8]) throws -> [UInt8] {
        try requireLength(secretKey, secretKeyBytes, "ed25519 secret key")
        Sodium.initialize()
        var out = [UInt8](repeating: 0, count: X25519.keyBytes)
        let rc = out.withUnsafeMutableBufferPointer { o in
            secretKey.withUnsafeBufferPointer { sk in
                crypto_sign_ed25519_sk_to_curve25519(o.baseAddress!, sk.baseAddress!)
            }
        }
        guard rc == 0 else { throw CryptoError.invalidKey("ed25519 secret key conversion failed") }
        return out
    }
}
