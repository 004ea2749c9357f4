import CSodium

/// ChaCha20-Poly1305 IETF (RFC 8439), 12-byte nonce (libsodium `crypto_aead_chacha20poly1305_ietf_*`).
public enum ChaCha20Poly1305 {
    public static let keyBytes = 32
    public static let nonceBytes = 12
    public static let tagBytes = 16

    /// Encrypts and authenticates; returns ciphertext || tag (plaintext.count + 16 bytes).
    public static func seal(
        key: [UInt8], nonce: [UInt8], plaintext: [UInt8], associatedData: [UInt8] = []
    ) throws -> [UInt8] {
        try requireLength(key, keyBytes, "key")
        try requireLength(nonce, nonceBytes, "nonce")
        Sodium.initialize()
        let outputLength = plaintext.count + tagBytes
        return [UInt8](unsafeUninitializedCapacity: outputLength) { out, initialized in
            var written: UInt64 = 0
            plaintext.withUnsafeBytes { m in
                associatedData.withUnsafeBytes { ad in
                    key.withUnsafeBufferPointer { k in
                        nonce.withUnsafeBufferPointer { n in
                            _ = crypto_aead_chacha20poly1305_ietf_encrypt(
                                out.baseAddress!, &written, m.bytePointer, UInt64(m.count),
                                ad.bytePointer, UInt64(ad.count), nil, n.baseAddress!, k.baseAddress!)
                        }
                    }
                }
            }
            initialized = outputLength
        }
    }

    /// Verifies and decrypts ciphertext || tag. Throws `authenticationFailed` on a bad tag or when the input
    /// is shorter than a tag; nothing is returned unless it authenticated.
    public static func open(
        key: [UInt8], nonce: [UInt8], ciphertext: [UInt8], associatedData: [UInt8] = []
    ) throws -> [UInt8] {
        try requireLength(key, keyBytes, "key")
        try requireLength(nonce, nonceBytes, "nonce")
        guard ciphertext.count >= tagBytes else { throw CryptoError.authenticationFailed }
        Sodium.initialize()
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count - tagBytes)
        let rc = plaintext.withUnsafeMutableBytes { m in
            ciphertext.withUnsafeBytes { c in
                associatedData.withUnsafeBytes { ad in
                    key.withUnsafeBufferPointer { k in
                        nonce.withUnsafeBufferPointer { n in
                            var written: UInt64 = 0
                            return crypto_aead_chacha20poly1305_ietf_decrypt(
                                m.mutableBytePointer, &written, nil, c.bytePointer, UInt64(c.count),
                                ad.bytePointer, UInt64(ad.count), n.baseAddress!, k.baseAddress!)
                        }
                    }
                }
            }
        }
        guard rc == 0 else { throw CryptoError.authenticationFailed }
        return plaintext
    }

    /// Noise/WireGuard nonce: 4 zero bytes then the 64-bit counter little-endian.
    public static func nonce(counter: UInt64) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: nonceBytes)
        for i in 0..<8 { nonce[4 + i] = UInt8(truncatingIfNeeded: counter >> (8 * UInt64(i))) }
        return nonce
    }
}

/// XChaCha20-Poly1305 IETF, 24-byte nonce (libsodium `crypto_aead_xchacha20poly1305_ietf_*`); used for
/// WireGuard-style cookie replies, where the nonce is random.
public enum XChaCha20Poly1305 {
    public static let keyBytes = 32
    public static let nonceBytes = 24
    public static let tagBytes = 16

    /// Encrypts and authenticates; returns ciphertext || tag.
    public static func seal(
        key: [UInt8], nonce: [UInt8], plaintext: [UInt8], associatedData: [UInt8] = []
    ) throws -> [UInt8] {
        try requireLength(key, keyBytes, "key")
        try requireLength(nonce, nonceBytes, "nonce")
        Sodium.initialize()
        let outputLength = plaintext.count + tagBytes
        return [UInt8](unsafeUninitializedCapacity: outputLength) { out, initialized in
            var written: UInt64 = 0
            plaintext.withUnsafeBytes { m in
                associatedData.withUnsafeBytes { ad in
                    key.withUnsafeBufferPointer { k in
                        nonce.withUnsafeBufferPointer { n in
                            _ = crypto_aead_xchacha20poly1305_ietf_encrypt(
                                out.baseAddress!, &written, m.bytePointer, UInt64(m.count),
                                ad.bytePointer, UInt64(ad.count), nil, n.baseAddress!, k.baseAddress!)
                        }
                    }
                }
            }
            initialized = outputLength
        }
    }

    /// Verifies and decrypts ciphertext || tag; throws `authenticationFailed`.
    public static func open(
        key: [UInt8], nonce: [UInt8], ciphertext: [UInt8], associatedData: [UInt8] = []
    ) throws -> [UInt8] {
        try requireLength(key, keyBytes, "key")
        try requireLength(nonce, nonceBytes, "nonce")
        guard ciphertext.count >= tagBytes else { throw CryptoError.authenticationFailed }
        Sodium.initialize()
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count - tagBytes)
        let rc = plaintext.withUnsafeMutableBytes { m in
            ciphertext.withUnsafeBytes { c in
                associatedData.withUnsafeBytes { ad in
                    key.withUnsafeBufferPointer { k in
                        nonce.withUnsafeBufferPointer { n in
                            var written: UInt64 = 0
                            return crypto_aead_xchacha20poly1305_ietf_decrypt(
                                m.mutableBytePointer, &written, nil, c.bytePointer, UInt64(c.count),
                                ad.bytePointer, UInt64(ad.count), n.baseAddress!, k.baseAddress!)
                        }
                    }
                }
            }
        }
        guard rc == 0 else { throw CryptoError.authenticationFailed }
        return plaintext
    }
}
