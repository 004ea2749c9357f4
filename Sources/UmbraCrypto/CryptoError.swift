/// Every failure the crypto layer reports. Untrusted input never traps: it ends in one of these.
public enum CryptoError: Error, Equatable, Sendable {
    /// A key was rejected by libsodium (e.g. an Ed25519 public key that is not a valid curve point).
    case invalidKey(String)
    /// An AEAD tag did not verify (tampered, truncated, wrong key, wrong nonce or wrong associated data).
    case authenticationFailed
    /// An input had the wrong length.
    case invalidLength(field: String, expected: Int, actual: Int)
    /// An X25519 result was all zeros (the peer sent a low-order point).
    case weakSharedSecret
    /// A Noise handshake was used out of order or got a malformed message.
    case handshake(String)
}

extension CryptoError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .invalidKey(let reason):
            return "invalid key: \(reason)"
        case .authenticationFailed:
            return "authentication failed"
        case .invalidLength(let field, let expected, let actual):
            return "invalid length for \(field): expected \(expected) bytes, got \(actual)"
        case .weakSharedSecret:
            return "weak (all-zero) X25519 shared secret"
        case .handshake(let reason):
            return "handshake error: \(reason)"
        }
    }
}

/// Throws `invalidLength` unless `bytes` has exactly `expected` bytes.
@inline(__always)
func requireLength(_ bytes: [UInt8], _ expected: Int, _ field: String) throws(CryptoError) {
    guard bytes.count == expected else {
        throw CryptoError.invalidLength(field: field, expected: expected, actual: bytes.count)
    }
}
