/// Noise CipherState for ChaChaPoly: a key k (32 bytes, or none) and a 64-bit nonce n (Noise spec §5.1).
///
/// With no key, encrypt and decrypt pass the data through unchanged. The nonce 2^64-1 is reserved, so a
/// cipher state refuses to encrypt or decrypt once it is reached. A failed decrypt leaves the nonce as is.
public struct NoiseCipherState: Sendable {
    public private(set) var key: [UInt8]?
    public private(set) var nonce: UInt64

    /// `nil` means "no key" (pass-through).
    public init(key: [UInt8]?) {
        self.key = key
        self.nonce = 0
    }

    /// True when the cipher state has a key.
    public var hasKey: Bool { key != nil }

    /// ENCRYPT(k, n++, ad, plaintext), or the plaintext itself without a key.
    public mutating func encrypt(associatedData: [UInt8], plaintext: [UInt8]) throws -> [UInt8] {
        guard let key else { return plaintext }
        guard nonce < UInt64.max else { throw CryptoError.handshake("cipher state nonce exhausted") }
        let ciphertext = try ChaCha20Poly1305.seal(
            key: key, nonce: ChaCha20Poly1305.nonce(counter: nonce), plaintext: plaintext,
            associatedData: associatedData)
        nonce += 1
        return ciphertext
    }

    /// DECRYPT(k, n++, ad, ciphertext), or the ciphertext itself without a key. Throws
    /// `authenticationFailed` (and keeps n) when it does not authenticate.
    public mutating func decrypt(associatedData: [UInt8], ciphertext: [UInt8]) throws -> [UInt8] {
        guard let key else { return ciphertext }
        guard nonce < UInt64.max else { throw CryptoError.handshake("cipher state nonce exhausted") }
        let plaintext = try ChaCha20Poly1305.open(
            key: key, nonce: ChaCha20Poly1305.nonce(counter: nonce), ciphertext: ciphertext,
            associatedData: associatedData)
        nonce += 1
        return plaintext
    }
}
