import CSodium

/// X25519 Diffie-Hellman (libsodium `crypto_scalarmult`).
public enum X25519 {
    public static let keyBytes = 32

    /// The public key for a 32-byte secret (libsodium clamps the scalar).
    public static func publicKey(secretKey: [UInt8]) throws -> [UInt8] {
        try requireLength(secretKey, keyBytes, "x25519 secret key")
        Sodium.initialize()
        var out = [UInt8](repeating: 0, count: keyBytes)
        let rc = out.withUnsafeMutableBufferPointer { o in
            secretKey.withUnsafeBufferPointer { sk in crypto_scalarmult_base(o.baseAddress!, sk.baseAddress!) }
        }
        guard rc == 0 else { throw CryptoError.invalidKey("x25519 secret key produced the identity") }
        return out
    }

    /// The shared secret; throws `weakSharedSecret` when it is all zeros (a low-order public key).
    public static func sharedSecret(secretKey: [UInt8], publicKey: [UInt8]) throws -> [UInt8] {
        try requireLength(secretKey, keyBytes, "x25519 secret key")
        try requireLength(publicKey, keyBytes, "x25519 public key")
        Sodium.initialize()
        var out = [UInt8](repeating: 0, count: keyBytes)
        let rc = out.withUnsafeMutableBufferPointer { o in
            secretKey.withUnsafeBufferPointer { sk in
                publicKey.withUnsafeBufferPointer { pk in
                    crypto_scalarmult(o.baseAddress!, sk.baseAddress!, pk.baseAddress!)
                }
            }
        }
        guard rc == 0 else {
            SecureMemory.zero(&out)
            throw CryptoError.weakSharedSecret
        }
        return out
    }
}
